/*
 * validate_jv.c
 *		Read jsonb values in place for the validator: no JsonbIterator, no
 *		copies.  The layout is the one documented in utils/jsonb.h: a
 *		container's JEntry array is followed by the data, each entry storing
 *		either its length or (every JB_OFFSET_STRIDE entries) its end offset.
 *		Object keys come first, in (length, bytes) order, then the values.
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"

#include "validate_int.h"

static inline uint32
entry_end(JEntry e, uint32 start)
{
	return JBE_HAS_OFF(e) ? JBE_OFFLENFLD(e) : start + JBE_OFFLENFLD(e);
}

static inline void
jv_from_entry(JsonbContainer *jc, int idx, char *base, uint32 off, uint32 end, JV *out)
{
	JEntry		e = jc->children[idx];

	switch (e & JENTRY_TYPEMASK)
	{
		case JENTRY_ISSTRING:
			out->type = JV_STRING;
			out->u.str = base + off;
			out->len = end - off;
			break;
		case JENTRY_ISNUMERIC:
			out->type = JV_NUMBER;
			out->u.num = (Numeric) (base + INTALIGN(off));
			out->len = 0;
			break;
		case JENTRY_ISBOOL_FALSE:
			out->type = JV_BOOL;
			out->u.boolean = false;
			out->len = 0;
			break;
		case JENTRY_ISBOOL_TRUE:
			out->type = JV_BOOL;
			out->u.boolean = true;
			out->len = 0;
			break;
		case JENTRY_ISNULL:
			out->type = JV_NULL;
			out->len = 0;
			break;
		default:
			{
				JsonbContainer *c = (JsonbContainer *) (base + INTALIGN(off));

				out->u.jc = c;
				out->len = c->header & JB_CMASK;
				out->type = (c->header & JB_FOBJECT) ? JV_OBJECT : JV_ARRAY;
			}
			break;
	}
}

static inline char *
container_data(JsonbContainer *jc, int nentries)
{
	return (char *) &jc->children[nentries];
}

void
jv_root(Jsonb *jb, JV *out)
{
	JsonbContainer *jc = &jb->root;

	if (JB_ROOT_IS_SCALAR(jb))
		jv_from_entry(jc, 0, container_data(jc, 1), 0,
					  entry_end(jc->children[0], 0), out);
	else
	{
		out->u.jc = jc;
		out->len = jc->header & JB_CMASK;
		out->type = (jc->header & JB_FOBJECT) ? JV_OBJECT : JV_ARRAY;
	}
}

void
jv_iter_init(JvIter *it, const JV *v)
{
	it->jc = v->u.jc;
	it->n = v->len;
	it->i = 0;
	it->koff = 0;
	it->is_object = (v->type == JV_OBJECT);
	it->base = container_data(it->jc, it->is_object ? it->n * 2 : it->n);
	it->voff = (it->is_object && it->n > 0) ? getJsonbOffset(it->jc, it->n) : 0;
}

/* Next element (key is left alone) or pair.  False at the end. */
bool
jv_iter_next(JvIter *it, JV *key, JV *val)
{
	JsonbContainer *jc = it->jc;
	uint32		end;

	if (it->i >= it->n)
		return false;
	end = entry_end(jc->children[it->i], it->koff);
	if (it->is_object)
	{
		int			vi = it->n + it->i;
		uint32		vend = entry_end(jc->children[vi], it->voff);

		key->type = JV_STRING;
		key->u.str = it->base + it->koff;
		key->len = end - it->koff;
		jv_from_entry(jc, vi, it->base, it->voff, vend, val);
		it->voff = vend;
	}
	else
		jv_from_entry(jc, it->i, it->base, it->koff, end, val);
	it->koff = end;
	it->i++;
	return true;
}

/* jsonb's own key order: shorter first, then bytewise. */
int
jv_key_cmp(const char *a, int alen, const char *b, int blen)
{
	if (alen != blen)
		return alen < blen ? -1 : 1;
	return memcmp(a, b, alen);
}

bool
jv_object_get(const JV *obj, const char *key, int keylen, JV *out)
{
	JsonbContainer *jc = obj->u.jc;
	int			n = obj->len;
	char	   *base = container_data(jc, n * 2);
	int			lo = 0,
				hi = n;

	while (lo < hi)
	{
		int			mid = lo + (hi - lo) / 2;
		uint32		off = getJsonbOffset(jc, mid);
		uint32		len = getJsonbLength(jc, mid);
		int			c = jv_key_cmp(base + off, len, key, keylen);

		if (c == 0)
		{
			uint32		voff = getJsonbOffset(jc, n + mid);

			jv_from_entry(jc, n + mid, base, voff,
						  voff + getJsonbLength(jc, n + mid), out);
			return true;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

bool
jv_array_get(const JV *arr, int idx, JV *out)
{
	JsonbContainer *jc = arr->u.jc;
	uint32		off;

	if (idx < 0 || idx >= arr->len)
		return false;
	off = getJsonbOffset(jc, idx);
	jv_from_entry(jc, idx, container_data(jc, arr->len), off,
				  off + getJsonbLength(jc, idx), out);
	return true;
}

static int
numeric_compare(Numeric a, Numeric b)
{
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(a),
											 NumericGetDatum(b)));
}

/* JSON equality: 1 equals 1.0, objects compare regardless of key order. */
bool
jv_equal(const JV *a, const JV *b)
{
	JvIter		ia,
				ib;
	JV			ka,
				va,
				kb,
				vb;

	if (a->type != b->type)
		return false;
	switch (a->type)
	{
		case JV_NULL:
			return true;
		case JV_BOOL:
			return a->u.boolean == b->u.boolean;
		case JV_NUMBER:
			return numeric_compare(a->u.num, b->u.num) == 0;
		case JV_STRING:
			return a->len == b->len && memcmp(a->u.str, b->u.str, a->len) == 0;
		case JV_ARRAY:
		case JV_OBJECT:
			if (a->len != b->len)
				return false;
			check_stack_depth();
			CHECK_FOR_INTERRUPTS();
			jv_iter_init(&ia, a);
			jv_iter_init(&ib, b);
			/* keys are stored sorted, so pairs line up */
			while (jv_iter_next(&ia, &ka, &va) && jv_iter_next(&ib, &kb, &vb))
			{
				if (a->type == JV_OBJECT &&
					(ka.len != kb.len || memcmp(ka.u.str, kb.u.str, ka.len) != 0))
					return false;
				if (!jv_equal(&va, &vb))
					return false;
			}
			return true;
	}
	return false;
}

/* A hash consistent with jv_equal (hash_numeric ignores trailing zeros). */
uint32
jv_hash(const JV *v)
{
	JvIter		it;
	JV			k,
				e;
	uint32		h;

	switch (v->type)
	{
		case JV_NULL:
			return 0x9e3779b9;
		case JV_BOOL:
			return v->u.boolean ? 0x51ed270b : 0x2545f491;
		case JV_NUMBER:
			return DatumGetUInt32(DirectFunctionCall1(hash_numeric,
													  NumericGetDatum(v->u.num)));
		case JV_STRING:
			return hash_bytes((const unsigned char *) v->u.str, v->len);
		case JV_ARRAY:
		case JV_OBJECT:
			check_stack_depth();
			CHECK_FOR_INTERRUPTS();
			h = v->type == JV_ARRAY ? 0x1234567 : 0x7654321;
			jv_iter_init(&it, v);
			while (jv_iter_next(&it, &k, &e))
			{
				if (v->type == JV_OBJECT)
					h = hash_combine(h, hash_bytes((const unsigned char *) k.u.str, k.len));
				h = hash_combine(h, jv_hash(&e));
			}
			return h;
	}
	return 0;
}

const char *
jv_type_name(const JV *v)
{
	switch (v->type)
	{
		case JV_NULL:
			return "null";
		case JV_BOOL:
			return "boolean";
		case JV_NUMBER:
			return "number";
		case JV_STRING:
			return "string";
		case JV_ARRAY:
			return "array";
		case JV_OBJECT:
			return "object";
	}
	return "unknown";
}
