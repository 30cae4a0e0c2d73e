/*
 * validate_jv.c
 *		Read JSON values in place for the validator: jsonb containers with no
 *		JsonbIterator and no copies, and the tree that validate_text.c builds
 *		from JSON text.  The iterator itself is inline in validate_int.h.
 *
 * The jsonb layout is the one documented in utils/jsonb.h: a container's
 * JEntry array is followed by the data, each entry storing either its
 * length or (every JB_OFFSET_STRIDE entries) its end offset.  Object keys
 * come first, in (length, bytes) order, then the values.
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"

#include "validate_int.h"

static inline char *
container_data(JsonbContainer *jc, int nentries)
{
	return (char *) &jc->children[nentries];
}

void
evc_jv_root(Jsonb *jb, JV *out)
{
	JsonbContainer *jc = &jb->root;

	if (JB_ROOT_IS_SCALAR(jb))
		jv_from_entry(jc, 0, container_data(jc, 1), 0,
					  jv_entry_end(jc->children[0], 0), out);
	else
	{
		out->src = JVS_JSONB;
		out->u.jc = jc;
		out->len = jc->header & JB_CMASK;
		out->type = (jc->header & JB_FOBJECT) ? JV_OBJECT : JV_ARRAY;
	}
}

bool
evc_jv_object_get(const JV *obj, const char *key, int keylen, JV *out)
{
	int			lo = 0,
				hi = obj->len;

	if (obj->src == JVS_TREE)
	{
		JV		   *items = obj->u.tree->items;

		while (lo < hi)
		{
			int			mid = lo + (hi - lo) / 2;
			int			c = jv_key_cmp(items[2 * mid].u.str, items[2 * mid].len, key, keylen);

			if (c == 0)
			{
				*out = items[2 * mid + 1];
				return true;
			}
			if (c < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		return false;
	}
	else
	{
		JsonbContainer *jc = obj->u.jc;
		int			n = obj->len;
		char	   *base = container_data(jc, n * 2);

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
}

bool
evc_jv_array_get(const JV *arr, int idx, JV *out)
{
	JsonbContainer *jc = arr->u.jc;
	uint32		off;

	if (idx < 0 || idx >= arr->len)
		return false;
	if (arr->src == JVS_TREE)
	{
		*out = arr->u.tree->items[idx];
		return true;
	}
	off = getJsonbOffset(jc, idx);
	jv_from_entry(jc, idx, container_data(jc, arr->len), off,
				  off + getJsonbLength(jc, idx), out);
	return true;
}

Numeric
evc_jv_num_numeric(const JV *v)
{
	if (v->src == JVS_JSONB)
		return v->u.num;
	return DatumGetNumeric(DirectFunctionCall3(numeric_in,
											   CStringGetDatum(pnstrdup(v->u.str, v->len)),
											   ObjectIdGetDatum(InvalidOid),
											   Int32GetDatum(-1)));
}

/*
 * Numbers are equal by value (1 equals 1.0).  The exact form is canonical,
 * so two exact numbers are equal when their forms are, and an exact number
 * never equals one that is not.
 */
static bool
jv_number_equal(const JV *a, const JV *b)
{
	EvcNum		x,
				y;
	bool		xa = jv_num_exact(a, &x);
	bool		ya = jv_num_exact(b, &y);

	if (xa && ya)
		return x.mant == y.mant && x.scale == y.scale;
	if (xa != ya)
		return false;
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp,
											 NumericGetDatum(evc_jv_num_numeric(a)),
											 NumericGetDatum(evc_jv_num_numeric(b)))) == 0;
}

/* JSON equality: 1 equals 1.0, objects compare regardless of key order. */
bool
evc_jv_equal(const JV *a, const JV *b)
{
	JvIter		ia,
				ib;
	JV			ka = {0},
				va,
				kb = {0},
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
			return jv_number_equal(a, b);
		case JV_STRING:
			return a->len == b->len && jv_bytes_cmp(a->u.str, b->u.str, a->len) == 0;
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
				if (!evc_jv_equal(&va, &vb))
					return false;
			}
			return true;
	}
	return false;
}

/*
 * A hash consistent with evc_jv_equal.  Whether a number is exact depends only
 * on its value, so equal numbers take the same branch (and hash_numeric
 * ignores trailing zeros).
 */
uint32
evc_jv_hash(const JV *v)
{
	JvIter		it;
	JV			k = {0},
				e;
	EvcNum		x;
	uint32		h;

	switch (v->type)
	{
		case JV_NULL:
			return 0x9e3779b9;
		case JV_BOOL:
			return v->u.boolean ? 0x51ed270b : 0x2545f491;
		case JV_NUMBER:
			if (jv_num_exact(v, &x))
				return evc_num_hash(&x);
			return DatumGetUInt32(DirectFunctionCall1(hash_numeric,
													  NumericGetDatum(evc_jv_num_numeric(v))));
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
				h = hash_combine(h, evc_jv_hash(&e));
			}
			return h;
	}
	return 0;
}

const char *
evc_jv_type_name(const JV *v)
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
