/*
 * validate.c
 *		Evaluates a compiled JSON Schema (validate_compile.c) against a JSON
 *		instance, and owns the ad hoc SQL entry points evc_validate() (on
 *		jsonb or on text) and evc_validation_errors() with their small
 *		per-backend cache.
 *
 * Evaluation reads the instance in place (validate_jv.c), from jsonb or
 * from the tree validate_text.c reads JSON text into.  In "first error"
 * mode it stops at the first failure; in "all errors" mode it goes on and
 * collects every failing keyword.  Messages and paths are only built when
 * an error is recorded, so a valid event costs no string work at all.
 * When only a yes or no is wanted, the order of the checks is free, and
 * cheap ones go first (see eval_object and eval_members).
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/primnodes.h"
#include "port/pg_bitutils.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/memutils.h"

#include "validate_int.h"

/* Whether "format" is an assertion (evcollector.validate_formats). */
static bool validate_formats = true;

typedef struct PathSeg
{
	const char *key;			/* NULL for an array index */
	int			len;			/* key length, or the index */
} PathSeg;

typedef struct RefFrame
{
	EvcNode    *target;
	int			depth;
} RefFrame;

#define LOCAL_PATH	32
#define LOCAL_REFS	16

typedef struct EvalCtx
{
	bool		collect_all;
	bool		want_errors;
	int			suppress;		/* > 0 inside anyOf, oneOf, not, if, contains */
	List	   *errors;
	PathSeg    *path;
	int			depth;
	int			path_cap;
	RefFrame   *refs;
	int			n_refs;
	int			refs_cap;
	EvcNum		num;			/* the number eval_node is looking at */
	/* the first levels need no allocation */
	PathSeg		path_local[LOCAL_PATH];
	RefFrame	refs_local[LOCAL_REFS];
} EvalCtx;

static bool eval_node(EvalCtx *cx, EvcNode *n, const JV *v);

/* ---------- errors ---------- */

/*
 * Whether a failure here is recorded.  Reports go through REPORT, which
 * does not even evaluate its arguments otherwise: a check that only needs
 * a yes or no builds no message, path or number text.
 */
#define WANT(cx)	((cx)->want_errors && (cx)->suppress == 0)
#define REPORT(cx, ...) \
	do { \
		if (WANT(cx)) \
			report((cx), __VA_ARGS__); \
	} while (0)

static char *
instance_path(EvalCtx *cx)
{
	StringInfoData s;

	initStringInfo(&s);
	for (int i = 0; i < cx->depth; i++)
	{
		PathSeg    *p = &cx->path[i];

		appendStringInfoChar(&s, '/');
		if (p->key == NULL)
			appendStringInfo(&s, "%d", p->len);
		else
			for (int j = 0; j < p->len; j++)
			{
				if (p->key[j] == '~')
					appendStringInfoString(&s, "~0");
				else if (p->key[j] == '/')
					appendStringInfoString(&s, "~1");
				else
					appendStringInfoChar(&s, p->key[j]);
			}
	}
	return s.data;
}

static void
report(EvalCtx *cx, EvcNode *n, const char *keyword, const char *fmt,...)
	pg_attribute_printf(4, 5);

static void
report(EvalCtx *cx, EvcNode *n, const char *keyword, const char *fmt,...)
{
	EvcValidationError *e;
	StringInfoData msg;

	e = palloc(sizeof(EvcValidationError));
	e->instance_path = instance_path(cx);
	e->schema_path = strcmp(keyword, "false") != 0 ?
		psprintf("%s/%s", evc_node_path(n), keyword) : evc_node_path(n);
	e->keyword = pstrdup(keyword);
	initStringInfo(&msg);
	for (;;)
	{
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&msg, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&msg, needed);
	}
	e->message = msg.data;
	cx->errors = lappend(cx->errors, e);
}

/* Quote a string for a message, cut to a readable length. */
static char *
quote_short(const char *s, int len)
{
	if (len > 60)
		return psprintf("\"%.*s...\"", pg_mbcliplen(s, len, 57), s);
	return psprintf("\"%.*s\"", len, s);
}

/*
 * check_stack_depth for containers, at every fourth level of the instance
 * only: it is a call into the server, made for every object and array, and
 * a level of evaluation takes well under 2 kB of stack, far inside the
 * slack PostgreSQL keeps beyond max_stack_depth.  Recursion that does not
 * move into the instance (combinators, $ref) checks at every step.
 */
#define STACK_CHECK(cx) \
	do { \
		if (((cx)->depth & 3) == 0) \
			check_stack_depth(); \
	} while (0)

/* ---------- instance paths ---------- */

static inline void
path_push(EvalCtx *cx, const char *key, int len)
{
	if (cx->depth == cx->path_cap)
	{
		PathSeg    *grown = palloc(sizeof(PathSeg) * cx->path_cap * 2);

		memcpy(grown, cx->path, sizeof(PathSeg) * cx->path_cap);
		if (cx->path != cx->path_local)
			pfree(cx->path);
		cx->path = grown;
		cx->path_cap *= 2;
	}
	cx->path[cx->depth].key = key;
	cx->path[cx->depth].len = len;
	cx->depth++;
}

static inline void
path_pop(EvalCtx *cx)
{
	cx->depth--;
}

static inline bool
eval_child(EvalCtx *cx, EvcNode *n, const JV *v, const char *key, int len)
{
	bool		ok;

	path_push(cx, key, len);
	ok = eval_node(cx, n, v);
	path_pop(cx);
	return ok;
}

static bool
eval_quiet(EvalCtx *cx, EvcNode *n, const JV *v)
{
	bool		ok;

	cx->suppress++;
	ok = eval_node(cx, n, v);
	cx->suppress--;
	return ok;
}

/* ---------- numbers ---------- */

/*
 * Numbers are compared in their exact form (validate_num.c) when both sides
 * have one, which is nearly always; otherwise as numeric.  Either way the
 * answer is exact.
 */

static inline int
num_cmp(Numeric a, Numeric b)
{
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(a),
											 NumericGetDatum(b)));
}

static Numeric
numeric_zero(void)
{
	static Numeric zero = NULL;

	if (zero == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		zero = int64_to_numeric(0);
		MemoryContextSwitchTo(old);
	}
	return zero;
}

static bool
num_is_integer(const JV *v, const EvcNum *x)
{
	if (x)
		return x->scale == 0;
	return DatumGetInt32(DirectFunctionCall1(numeric_min_scale,
											 NumericGetDatum(evc_jv_num_numeric(v)))) == 0;
}

static char *
num_text(Numeric n)
{
	return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(n)));
}

/* x (exact form, or NULL) compared with bound number `which` of n. */
static inline int
bound_cmp(const JV *v, const EvcNum *x, EvcNode *n, int which, Numeric bound)
{
	if (x && (n->num_fast_ok & (1 << which)))
	{
		const EvcNum *b = &n->num_fast[which];

		/* equal scales (integers against integer bounds) need no call */
		if (x->scale == b->scale)
			return (x->mant > b->mant) - (x->mant < b->mant);
		return evc_num_cmp(x, b);
	}
	return num_cmp(evc_jv_num_numeric(v), bound);
}

static bool
is_multiple(const JV *v, const EvcNum *x, EvcNode *n)
{
	Numeric		rem;

	if (x && (n->num_fast_ok & (1 << EVC_NB_MULTIPLE_OF)))
		return evc_num_is_multiple(x, &n->num_fast[EVC_NB_MULTIPLE_OF]);
	rem = DatumGetNumeric(DirectFunctionCall2(numeric_mod,
											  NumericGetDatum(evc_jv_num_numeric(v)),
											  NumericGetDatum(n->multiple_of)));
	return num_cmp(rem, numeric_zero()) == 0;
}

#define FAIL() \
	do { \
		valid = false; \
		if (!cx->collect_all || cx->suppress > 0) \
			return false; \
	} while (0)

static pg_noinline bool
eval_number(EvalCtx *cx, EvcNode *n, const JV *v, const EvcNum *x)
{
	bool		valid = true;

	if (n->minimum && bound_cmp(v, x, n, EVC_NB_MINIMUM, n->minimum) < 0)
	{
		REPORT(cx, n, "minimum", "%s is less than the minimum of %s",
			   num_text(evc_jv_num_numeric(v)), num_text(n->minimum));
		FAIL();
	}
	if (n->maximum && bound_cmp(v, x, n, EVC_NB_MAXIMUM, n->maximum) > 0)
	{
		REPORT(cx, n, "maximum", "%s is greater than the maximum of %s",
			   num_text(evc_jv_num_numeric(v)), num_text(n->maximum));
		FAIL();
	}
	if (n->exclusive_minimum &&
		bound_cmp(v, x, n, EVC_NB_XMINIMUM, n->exclusive_minimum) <= 0)
	{
		REPORT(cx, n, "exclusiveMinimum", "%s is not greater than %s",
			   num_text(evc_jv_num_numeric(v)), num_text(n->exclusive_minimum));
		FAIL();
	}
	if (n->exclusive_maximum &&
		bound_cmp(v, x, n, EVC_NB_XMAXIMUM, n->exclusive_maximum) >= 0)
	{
		REPORT(cx, n, "exclusiveMaximum", "%s is not less than %s",
			   num_text(evc_jv_num_numeric(v)), num_text(n->exclusive_maximum));
		FAIL();
	}
	if (n->multiple_of && !is_multiple(v, x, n))
	{
		REPORT(cx, n, "multipleOf", "%s is not a multiple of %s",
			   num_text(evc_jv_num_numeric(v)), num_text(n->multiple_of));
		FAIL();
	}
	return valid;
}

/* ---------- strings ---------- */

/* Code points in a string; UTF-8 is counted here, other encodings by Postgres. */
static int
string_chars(const char *s, int len)
{
	int			chars = 0;

	if (GetDatabaseEncoding() != PG_UTF8)
		return pg_mbstrlen_with_len(s, len);
	for (int i = 0; i < len; i++)
		chars += ((unsigned char) s[i] & 0xC0) != 0x80;
	return chars;
}

static pg_noinline bool
eval_string(EvalCtx *cx, EvcNode *n, const JV *v)
{
	bool		valid = true;

	/*
	 * A string of len bytes has at most len and at least len / 4 code
	 * points, which settles most length checks without counting.
	 */
	if ((n->max_length >= 0 && v->len > n->max_length) ||
		(n->min_length >= 0 && v->len / 4 < n->min_length))
	{
		int			chars = string_chars(v->u.str, v->len);

		if (n->min_length >= 0 && chars < n->min_length)
		{
			REPORT(cx, n, "minLength", "string is %d characters long, shorter than %d",
				   chars, n->min_length);
			FAIL();
		}
		if (n->max_length >= 0 && chars > n->max_length)
		{
			REPORT(cx, n, "maxLength", "string is %d characters long, longer than %d",
				   chars, n->max_length);
			FAIL();
		}
	}
	if (n->pattern && !evc_regex_match(n->pattern, v->u.str, v->len))
	{
		REPORT(cx, n, "pattern", "string %s does not match pattern \"%s\"",
			   quote_short(v->u.str, v->len), n->pattern_src);
		FAIL();
	}
	if (n->format_fn && validate_formats && !n->format_fn(v->u.str, v->len))
	{
		REPORT(cx, n, "format", "string %s is not a valid %s",
			   quote_short(v->u.str, v->len), n->format);
		FAIL();
	}
	return valid;
}

/* ---------- arrays ---------- */

typedef struct HashedItem
{
	uint32		hash;
	int			index;
	JV			value;
} HashedItem;

static int
hashed_item_cmp(const void *a, const void *b)
{
	const HashedItem *x = a;
	const HashedItem *y = b;

	if (x->hash != y->hash)
		return x->hash < y->hash ? -1 : 1;
	return x->index - y->index;
}

/* Unique items by hashing then comparing equal hashes: O(n log n), not n^2. */
static bool
find_duplicate(const JV *arr, int *first, int *second)
{
	HashedItem *items = palloc(sizeof(HashedItem) * arr->len);
	JvIter		it;
	JV			k;
	int			n = 0;
	bool		dup = false;

	jv_iter_init(&it, arr);
	while (jv_iter_next(&it, &k, &items[n].value))
	{
		items[n].hash = evc_jv_hash(&items[n].value);
		items[n].index = n;
		n++;
	}
	qsort(items, n, sizeof(HashedItem), hashed_item_cmp);
	for (int i = 0; i < n && !dup; i++)
		for (int j = i + 1; j < n && items[j].hash == items[i].hash; j++)
		{
			CHECK_FOR_INTERRUPTS();
			if (evc_jv_equal(&items[i].value, &items[j].value))
			{
				*first = Min(items[i].index, items[j].index);
				*second = Max(items[i].index, items[j].index);
				dup = true;
				break;
			}
		}
	pfree(items);
	return dup;
}

/* A small array of scalars: pairwise, with no hashing or allocation. */
static bool
find_duplicate_small(const JV *arr, int *first, int *second)
{
	JV			items[8];
	JvIter		it;
	JV			k;
	int			n = 0;

	jv_iter_init(&it, arr);
	while (jv_iter_next(&it, &k, &items[n]))
		n++;
	for (int i = 1; i < n; i++)
		for (int j = 0; j < i; j++)
			if (evc_jv_equal(&items[j], &items[i]))
			{
				*first = j;
				*second = i;
				return true;
			}
	return false;
}

static pg_noinline bool
eval_array(EvalCtx *cx, EvcNode *n, const JV *v)
{
	bool		valid = true;
	JvIter		it;
	JV			k,
				e;
	int			i = 0;
	bool		found = false;

	STACK_CHECK(cx);
	CHECK_FOR_INTERRUPTS();

	if (n->min_items >= 0 && v->len < n->min_items)
	{
		REPORT(cx, n, "minItems", "array has %d items, fewer than %d", v->len, n->min_items);
		FAIL();
	}
	if (n->max_items >= 0 && v->len > n->max_items)
	{
		REPORT(cx, n, "maxItems", "array has %d items, more than %d", v->len, n->max_items);
		FAIL();
	}
	if (n->items || n->items_list || n->contains)
	{
		jv_iter_init(&it, v);
		while (jv_iter_next(&it, &k, &e))
		{
			EvcNode    *s = n->items;

			if (n->items_list)
				s = i < n->n_items_list ? n->items_list[i] : n->additional_items;
			if (s && s == n->additional_items && s->is_bool && !s->bool_value)
			{
				REPORT(cx, n, "additionalItems", "array has %d items, more than the %d allowed",
					   v->len, n->n_items_list);
				FAIL();
				break;
			}
			if ((i & 1023) == 1023)
				CHECK_FOR_INTERRUPTS();
			if (s && !eval_child(cx, s, &e, NULL, i))
				FAIL();
			if (n->contains && !found)
			{
				path_push(cx, NULL, i);
				found = eval_quiet(cx, n->contains, &e);
				path_pop(cx);
			}
			i++;
		}
		if (n->contains && !found)
		{
			REPORT(cx, n, "contains", "no item matches the \"contains\" schema");
			FAIL();
		}
	}
	if (n->unique_items && v->len > 1)
	{
		int			a,
					b;

		/*
		 * Both find the pair (a, b) with the smallest b, then the smallest a:
		 * for the hashed search, equal items sort by index.
		 */
		if (v->len <= 8 ? find_duplicate_small(v, &a, &b) : find_duplicate(v, &a, &b))
		{
			REPORT(cx, n, "uniqueItems", "items %d and %d are equal", a, b);
			FAIL();
		}
	}
	return valid;
}

/* ---------- objects ---------- */

static bool
eval_property_names(EvalCtx *cx, EvcNode *n, const JV *key)
{
	JV			name = *key;
	bool		ok;

	path_push(cx, key->u.str, key->len);
	ok = eval_node(cx, n->property_names, &name);
	path_pop(cx);
	if (!ok)
		REPORT(cx, n, "propertyNames", "property name %s is not valid",
			   quote_short(key->u.str, key->len));
	return ok;
}

/* A member no property or pattern took: additionalProperties says. */
static bool
eval_additional(EvalCtx *cx, EvcNode *n, const JV *k, const JV *e)
{
	if (n->additional_props->is_bool && !n->additional_props->bool_value)
	{
		if (WANT(cx))
		{
			path_push(cx, k->u.str, k->len);
			report(cx, n, "additionalProperties", "property %s is not allowed",
				   quote_short(k->u.str, k->len));
			path_pop(cx);
		}
		return false;
	}
	return eval_child(cx, n->additional_props, e, k->u.str, k->len);
}

/*
 * The members of an object for a yes or no, when its keys are matched to
 * "properties" (match[i]: the property of key i, -1 for none) and there are
 * no patternProperties or propertyNames.  Any order will do, so the cheap
 * checks go first and a wrong value is found with the least work: scalars
 * under plain schemas (types, enums, bounds, lengths) at once, during the
 * pass over the entries, then the members left to additionalProperties,
 * then scalars under costly schemas (patterns, formats, $ref:
 * EvcNode.costly), then the objects and arrays, the nested work, last;
 * each in key order.  The later rounds are bit masks over the members, and
 * a member's key and value are read again from their offsets when its
 * round comes: copying the values read in the first pass would load each
 * one back whole right after storing it field by field, which the CPU
 * cannot forward from its store buffer.
 */
static bool
eval_members_quick(EvalCtx *cx, EvcNode *n, const JV *v, const int8 *match, uint32 keys_end)
{
	int			nm = v->len;
	bool		tree = v->src == JVS_TREE;
	JsonbContainer *jc = tree ? NULL : v->u.jc;
	const char *base = tree ? NULL : (const char *) &jc->children[nm * 2];
	uint32		koff[EVC_MATCH_LOCAL + 1];
	uint32		voff[EVC_MATCH_LOCAL + 1];
	uint64		rounds[3] = {0, 0, 0};
	uint32		kend = 0,
				vend = keys_end;

	Assert(nm <= EVC_MATCH_LOCAL);
	for (int i = 0; i < nm; i++)
	{
		int			p = match[i];
		bool		container;

		if (tree)
			container = v->u.tree->items[2 * i + 1].type >= JV_ARRAY;
		else
		{
			JEntry		ve = jc->children[nm + i];

			koff[i] = kend;
			voff[i] = vend;
			kend = jv_entry_end(jc->children[i], kend);
			vend = jv_entry_end(ve, vend);
			container = JBE_ISCONTAINER(ve);
		}
		if (p < 0)
		{
			/* no property: additionalProperties says (a schema, not false, here) */
			if (n->additional_props)
				rounds[0] |= UINT64CONST(1) << i;
		}
		else if (container)
			rounds[2] |= UINT64CONST(1) << i;
		else if (n->props[p].schema->costly)
			rounds[1] |= UINT64CONST(1) << i;
		else
		{
			/*
			 * A scalar under a plain schema, checked at once: nothing below
			 * looks at the instance path (no message, no $ref, no recursion).
			 */
			JV			e;

			if (tree)
				e = v->u.tree->items[2 * i + 1];
			else
				jv_from_entry(jc, nm + i, (char *) base, voff[i], vend, &e);
			if (!eval_node(cx, n->props[p].schema, &e))
				return false;
		}
	}
	if (!tree)
	{
		koff[nm] = kend;
		voff[nm] = vend;
	}
	for (int r = 0; r < lengthof(rounds); r++)
	{
		uint64		mask = rounds[r];

		while (mask)
		{
			int			i = pg_rightmost_one_pos64(mask);
			JV			k,
						e;

			mask &= mask - 1;
			if (tree)
			{
				k = v->u.tree->items[2 * i];
				e = v->u.tree->items[2 * i + 1];
			}
			else
			{
				k.type = JV_STRING;
				k.src = JVS_JSONB;
				k.u.str = base + koff[i];
				k.len = koff[i + 1] - koff[i];
				jv_from_entry(jc, nm + i, (char *) base, voff[i], voff[i + 1], &e);
			}
			if (match[i] < 0)
			{
				if (!eval_additional(cx, n, &k, &e))
					return false;
			}
			else if (!eval_child(cx, n->props[match[i]].schema, &e, k.u.str, k.len))
				return false;
		}
	}
	return true;
}

/*
 * properties / patternProperties / additionalProperties / propertyNames in
 * one pass, in key order.  match[i], when given, is the property of key i
 * (-1: none).
 */
static bool
eval_members(EvalCtx *cx, EvcNode *n, const JV *v, const int8 *match, uint32 keys_end)
{
	bool		valid = true;
	JvIter		it;
	JV			k,
				e;
	int			p = 0;

	if (match != NULL && !WANT(cx) && n->n_pat_props == 0 && !n->property_names)
		return eval_members_quick(cx, n, v, match, keys_end);

	jv_iter_init_known(&it, v, match ? keys_end : 0);
	while (jv_iter_next(&it, &k, &e))
	{
		bool		matched = false;
		int			c = 1;

		if (match)
		{
			p = match[it.i - 1];
			c = p >= 0 ? 0 : 1;
		}
		else
		{
			/* only large objects go this way (see EVC_MATCH_LOCAL) */
			if ((it.i & 1023) == 1023)
				CHECK_FOR_INTERRUPTS();
			/* instance keys and n->props are both in jsonb order: merge */
			while (p < n->n_props &&
				   (c = jv_key_cmp(n->props[p].name, n->props[p].len, k.u.str, k.len)) < 0)
				p++;
		}
		if (p >= 0 && p < n->n_props && c == 0)
		{
			matched = true;
			if (!eval_child(cx, n->props[p].schema, &e, k.u.str, k.len))
				FAIL();
		}
		for (int j = 0; j < n->n_pat_props; j++)
		{
			if (!evc_regex_match(n->pat_props[j].re, k.u.str, k.len))
				continue;
			matched = true;
			if (!eval_child(cx, n->pat_props[j].schema, &e, k.u.str, k.len))
				FAIL();
		}
		if (!matched && n->additional_props && !eval_additional(cx, n, &k, &e))
			FAIL();
		if (n->property_names && !eval_property_names(cx, n, &k))
			FAIL();
	}
	return valid;
}

/* The keys of an object in stored order, without their values. */
typedef struct KeyWalk
{
	const JV   *obj;
	const char *base;
	uint32		off;
	int			i;
} KeyWalk;

static inline void
key_walk_init(KeyWalk *w, const JV *obj)
{
	w->obj = obj;
	w->i = 0;
	w->off = 0;
	w->base = obj->src == JVS_TREE ? NULL :
		(const char *) &obj->u.jc->children[obj->len * 2];
}

static inline bool
key_walk_next(KeyWalk *w, const char **key, int *len)
{
	if (w->i >= w->obj->len)
		return false;
	if (w->base == NULL)
	{
		const JV   *k = &w->obj->u.tree->items[2 * w->i];

		*key = k->u.str;
		*len = k->len;
	}
	else
	{
		uint32		end = jv_entry_end(w->obj->u.jc->children[w->i], w->off);

		*key = w->base + w->off;
		*len = end - w->off;
		w->off = end;
	}
	w->i++;
	return true;
}

/*
 * Whether every required name is present, by merging two sorted lists:
 * the instance's keys and the required names.
 */
static bool
has_all_required(EvcNode *n, const JV *v)
{
	KeyWalk		w;
	const char *key;
	int			len;
	int			r = 0;

	if (v->len < n->n_required)
		return false;
	key_walk_init(&w, v);
	while (r < n->n_required && key_walk_next(&w, &key, &len))
	{
		int			c = jv_key_cmp(n->required[r].name, n->required[r].len, key, len);

		if (c == 0)
			r++;
		else if (c < 0)
			return false;		/* required name r is not in the instance */
	}
	return r == n->n_required;
}

/*
 * One pass over the keys (not the values), merged with the sorted names of
 * "properties": match[i] gets the property of key i, or -1.  Then whether
 * every required name is present follows from counting required
 * properties, and whether a key is not allowed at all is known before any
 * value is looked at.
 */
static void
match_keys(EvcNode *n, const JV *v, int8 *match, bool *all_required, bool *undeclared,
		   uint32 *keys_end)
{
	KeyWalk		w;
	const char *key;
	int			len;
	int			p = 0;
	int			required_seen = 0;

	*undeclared = false;
	key_walk_init(&w, v);
	while (key_walk_next(&w, &key, &len))
	{
		int			c = 1;

		while (p < n->n_props &&
			   (c = jv_key_cmp(n->props[p].name, n->props[p].len, key, len)) < 0)
			p++;
		if (p < n->n_props && c == 0)
		{
			match[w.i - 1] = p;
			required_seen += n->props[p].required;
		}
		else
		{
			match[w.i - 1] = -1;
			*undeclared |= n->closed;
		}
	}
	*all_required = n->required_in_props ? required_seen == n->n_required :
		has_all_required(n, v);
	*keys_end = w.off;
}

/* Whether object v (jsonb) has the keys that shape remembers. */
static inline bool
shape_matches(const EvcShape *shape, const JV *v)
{
	JsonbContainer *jc = v->u.jc;

	/* equal key entries mean equal key lengths, and then equal bytes equal keys */
	return shape->valid && shape->n == v->len &&
		memcmp(jc->children, shape->entries, sizeof(JEntry) * v->len) == 0 &&
		memcmp(&jc->children[v->len * 2], shape->keys, shape->keys_end) == 0;
}

/*
 * Whether object v has the keys of one of the shapes remembered, and if so
 * the match found for them.  The match is copied out: evaluating the
 * values may meet this node again (a recursive schema) and overwrite it.
 */
static inline bool
shape_recall(EvcShapeSet *set, const JV *v, int8 *match, bool *all_required,
			 bool *undeclared, uint32 *keys_end)
{
	if (set == NULL || v->src != JVS_JSONB)
		return false;
	for (int j = 0; j < EVC_SHAPE_SLOTS; j++)
	{
		int			s = (set->last + j) % EVC_SHAPE_SLOTS;
		const EvcShape *shape = set->slot[s];

		if (!shape_matches(shape, v))
			continue;
		/* the whole buffer: a copy of fixed size is a few moves, not a call */
		memcpy(match, shape->match, EVC_MATCH_LOCAL);
		*all_required = shape->all_required;
		*undeclared = shape->undeclared;
		*keys_end = shape->keys_end;
		set->last = s;
		return true;
	}
	return false;
}

/* Remember object v's keys and their match, when they fit, in the next slot. */
static inline void
shape_remember(EvcShapeSet *set, const JV *v, const int8 *match, bool all_required,
			   bool undeclared, uint32 keys_end)
{
	EvcShape   *shape;

	if (set == NULL || v->src != JVS_JSONB)
		return;
	shape = set->slot[set->next];
	if (keys_end > shape->keys_cap)
		return;
	shape->valid = false;
	shape->n = v->len;
	memcpy(shape->entries, v->u.jc->children, sizeof(JEntry) * v->len);
	memcpy(shape->keys, &v->u.jc->children[v->len * 2], keys_end);
	memcpy(shape->match, match, v->len);
	shape->all_required = all_required;
	shape->undeclared = undeclared;
	shape->keys_end = keys_end;
	shape->valid = true;
	set->last = set->next;
	set->next = (set->next + 1) % EVC_SHAPE_SLOTS;
}

static pg_noinline bool
eval_object(EvalCtx *cx, EvcNode *n, const JV *v)
{
	bool		valid = true;
	JV			dummy;
	int8		match_local[EVC_MATCH_LOCAL];
	int8	   *match = NULL;
	bool		all_required = true;
	bool		undeclared = false;
	uint32		keys_end = 0;

	STACK_CHECK(cx);
	CHECK_FOR_INTERRUPTS();

	if (n->min_props >= 0 && v->len < n->min_props)
	{
		REPORT(cx, n, "minProperties", "object has %d properties, fewer than %d",
			   v->len, n->min_props);
		FAIL();
	}
	if (n->max_props >= 0 && v->len > n->max_props)
	{
		REPORT(cx, n, "maxProperties", "object has %d properties, more than %d",
			   v->len, n->max_props);
		FAIL();
	}
	if (n->n_props > 0 && n->n_props <= PG_INT8_MAX && v->len <= EVC_MATCH_LOCAL)
	{
		match = match_local;
		if (!shape_recall(n->shapes, v, match, &all_required, &undeclared, &keys_end))
		{
			match_keys(n, v, match, &all_required, &undeclared, &keys_end);
			shape_remember(n->shapes, v, match, all_required, undeclared, keys_end);
		}
	}
	else if (n->n_required > 0)
		all_required = has_all_required(n, v);
	if (!all_required)
	{
		/* which name is missing matters only to a message */
		if (!WANT(cx) && (!cx->collect_all || cx->suppress > 0))
			return false;
		for (int i = 0; i < n->n_required; i++)
			if (!evc_jv_object_get(v, n->required[i].name, n->required[i].len, &dummy))
			{
				REPORT(cx, n, "required", "required property %s is missing",
					   quote_short(n->required[i].name, n->required[i].len));
				FAIL();
			}
	}

	/*
	 * A key that is not allowed makes the object invalid whatever its
	 * values: with no message wanted, say so before evaluating them.  (With
	 * messages, the first one must stay the first in key order.)
	 */
	if (undeclared && !WANT(cx))
		return false;
	if ((n->kw & EVC_KW_MEMBERS) && !eval_members(cx, n, v, match, keys_end))
		FAIL();
	for (int i = 0; i < n->n_deps; i++)
	{
		EvcDep	   *d = &n->deps[i];

		if (!evc_jv_object_get(v, d->name, d->len, &dummy))
			continue;
		if (d->schema && !eval_node(cx, d->schema, v))
			FAIL();
		for (int j = 0; j < d->n_required; j++)
			if (!evc_jv_object_get(v, d->required[j].name, d->required[j].len, &dummy))
			{
				REPORT(cx, n, "dependencies", "property %s is required when %s is present",
					   quote_short(d->required[j].name, d->required[j].len),
					   quote_short(d->name, d->len));
				FAIL();
			}
	}
	return valid;
}

/* ---------- combinators ---------- */

static pg_noinline bool
eval_combinators(EvalCtx *cx, EvcNode *n, const JV *v)
{
	bool		valid = true;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();

	for (int i = 0; i < n->n_all_of; i++)
		if (!eval_node(cx, n->all_of[i], v))
			FAIL();
	if (n->any_of)
	{
		bool		any = false;

		for (int i = 0; i < n->n_any_of && !any; i++)
			any = eval_quiet(cx, n->any_of[i], v);
		if (!any)
		{
			REPORT(cx, n, "anyOf", "value matches none of the %d schemas in \"anyOf\"", n->n_any_of);
			FAIL();
		}
	}
	if (n->one_of)
	{
		int			matches = 0;
		int			first = -1;
		int			second = -1;

		for (int i = 0; i < n->n_one_of && matches < 2; i++)
			if (eval_quiet(cx, n->one_of[i], v))
			{
				if (matches++ == 0)
					first = i;
				else
					second = i;
			}
		if (matches == 0)
		{
			REPORT(cx, n, "oneOf", "value matches none of the %d schemas in \"oneOf\"", n->n_one_of);
			FAIL();
		}
		else if (matches > 1)
		{
			REPORT(cx, n, "oneOf", "value matches both schema %d and schema %d of \"oneOf\"", first, second);
			FAIL();
		}
	}
	if (n->not_ && eval_quiet(cx, n->not_, v))
	{
		REPORT(cx, n, "not", "value matches the schema in \"not\"");
		FAIL();
	}
	if (n->if_ && (n->then_ || n->else_))
	{
		EvcNode    *branch = eval_quiet(cx, n->if_, v) ? n->then_ : n->else_;

		if (branch && !eval_node(cx, branch, v))
			FAIL();
	}
	return valid;
}

/* ---------- the node ---------- */

/* The "type" bit of each JvType; a number may also be an "integer". */
static const uint8 type_bit[] = {
	[JV_NULL] = EVC_T_NULL,
	[JV_BOOL] = EVC_T_BOOLEAN,
	[JV_NUMBER] = EVC_T_NUMBER,
	[JV_STRING] = EVC_T_STRING,
	[JV_ARRAY] = EVC_T_ARRAY,
	[JV_OBJECT] = EVC_T_OBJECT,
};

/* The keyword group that applies to each JvType. */
static const uint8 type_kw[] = {
	[JV_NULL] = 0,
	[JV_BOOL] = 0,
	[JV_NUMBER] = EVC_KW_NUMBER,
	[JV_STRING] = EVC_KW_STRING,
	[JV_ARRAY] = EVC_KW_ARRAY,
	[JV_OBJECT] = EVC_KW_OBJECT,
};

/* A table, not a switch: the instance's types vary, and a jump mispredicts. */
static inline bool
type_matches(uint8 types, const JV *v, const EvcNum *x)
{
	if (types & type_bit[v->type])
		return true;
	return v->type == JV_NUMBER && (types & EVC_T_INTEGER) && num_is_integer(v, x);
}

/* Out of line: its StringInfo would give eval_node a stack guard of its own. */
static pg_noinline char *
types_text(uint8 types)
{
	static const char *const names[] = {"null", "boolean", "object", "array",
	"number", "string", "integer"};
	StringInfoData s;

	initStringInfo(&s);
	for (int i = 0; i < lengthof(names); i++)
		if (types & (1 << i))
			appendStringInfo(&s, "%s%s", s.len ? " or " : "", names[i]);
	return s.data;
}

static bool
enum_contains(EvcNode *n, const JV *v)
{
	for (int i = 0; i < n->n_enum; i++)
	{
		const JV   *e = &n->enum_vals[i];

		if (e->type != v->type)
			continue;
		if (v->type == JV_STRING)
		{
			if (e->len == v->len && jv_bytes_cmp(e->u.str, v->u.str, v->len) == 0)
				return true;
		}
		else if (evc_jv_equal(e, v))
			return true;
	}
	return false;
}

/* A $ref followed again at the same instance location is a loop. */
static pg_noinline bool
eval_ref(EvalCtx *cx, EvcNode *n, const JV *v)
{
	bool		ok;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();

	for (int i = cx->n_refs - 1; i >= 0 && cx->refs[i].depth == cx->depth; i--)
		if (cx->refs[i].target == n->ref)
			ereport(ERROR,
					(errcode(EVC_ERRCODE_REF_CYCLE),
					 errmsg("JSON schema $ref cycle"),
					 errdetail("At %s: $ref \"%s\" was reached again without moving into the instance (schema path %s).",
							   cx->depth ? instance_path(cx) : "the root",
							   n->ref_uri, evc_node_path(n))));
	if (cx->n_refs == cx->refs_cap)
	{
		RefFrame   *grown = palloc(sizeof(RefFrame) * cx->refs_cap * 2);

		memcpy(grown, cx->refs, sizeof(RefFrame) * cx->refs_cap);
		if (cx->refs != cx->refs_local)
			pfree(cx->refs);
		cx->refs = grown;
		cx->refs_cap *= 2;
	}
	cx->refs[cx->n_refs].target = n->ref;
	cx->refs[cx->n_refs].depth = cx->depth;
	cx->n_refs++;
	ok = eval_node(cx, n->ref, v);
	cx->n_refs--;
	return ok;
}

/*
 * Every node of the instance goes through here, so it is kept small: the
 * keyword groups a node lacks cost one test each, and the stack depth and
 * interrupt checks are made where evaluation recurses (containers,
 * combinators, $ref), not at every leaf.
 */
static bool
eval_node(EvalCtx *cx, EvcNode *n, const JV *v)
{
	bool		valid = true;
	const EvcNum *x = NULL;

	if (n->is_bool)
	{
		if (!n->bool_value)
			REPORT(cx, n, "false", "no value is allowed here (the schema is false)");
		return n->bool_value;
	}
	if (n->ref)
		return eval_ref(cx, n, v);

	/* a number is read once, for "integer" and for every bound (a leaf: no recursion) */
	if (v->type == JV_NUMBER && ((n->types & EVC_T_INTEGER) || (n->kw & EVC_KW_NUMBER)) &&
		jv_num_exact(v, &cx->num))
		x = &cx->num;

	if (n->types && !type_matches(n->types, v, x))
	{
		REPORT(cx, n, "type", "value is %s, expected %s", evc_jv_type_name(v), types_text(n->types));
		FAIL();
	}
	if (n->kw & EVC_KW_VALUE)
	{
		if (n->enum_vals && !enum_contains(n, v))
		{
			REPORT(cx, n, "enum", "value is not one of the %d allowed values", n->n_enum);
			FAIL();
		}
		if (n->has_const && !evc_jv_equal(&n->const_val, v))
		{
			REPORT(cx, n, "const", "value is not the constant the schema requires");
			FAIL();
		}
	}
	if (n->kw & type_kw[v->type])
	{
		switch (v->type)
		{
			case JV_NUMBER:
				/* an integer within integer bounds needs no call */
				if (x && x->scale == 0 && n->int_window &&
					x->mant >= n->int_lo && x->mant <= n->int_hi)
					break;
				if (!eval_number(cx, n, v, x))
					FAIL();
				break;
			case JV_STRING:
				if (!eval_string(cx, n, v))
					FAIL();
				break;
			case JV_ARRAY:
				if (!eval_array(cx, n, v))
					FAIL();
				break;
			case JV_OBJECT:
				if (!eval_object(cx, n, v))
					FAIL();
				break;
			default:
				break;
		}
	}
	if ((n->kw & EVC_KW_COMB) && !eval_combinators(cx, n, v))
		FAIL();
	return valid;
}

/* ---------- public API ---------- */

static void
eval_init(EvalCtx *cx, bool collect_all, bool want_errors)
{
	cx->collect_all = collect_all;
	cx->want_errors = want_errors;
	cx->suppress = 0;
	cx->errors = NIL;
	cx->depth = 0;
	cx->n_refs = 0;
	cx->path = cx->path_local;
	cx->path_cap = LOCAL_PATH;
	cx->refs = cx->refs_local;
	cx->refs_cap = LOCAL_REFS;
}

static void
eval_done(EvalCtx *cx)
{
	if (cx->path != cx->path_local)
		pfree(cx->path);
	if (cx->refs != cx->refs_local)
		pfree(cx->refs);
}

/* Check one value; on failure *err (when not NULL) gets the first problem. */
static bool
validate_value(EvcCompiledSchema *schema, const JV *root, EvcValidationError *err)
{
	EvalCtx		cx;
	bool		ok;

	eval_init(&cx, false, err != NULL);
	ok = eval_node(&cx, schema->root, root);
	if (!ok && err != NULL)
	{
		if (cx.errors != NIL)
			*err = *(EvcValidationError *) linitial(cx.errors);
		else
		{
			err->instance_path = pstrdup("");
			err->schema_path = pstrdup("#");
			err->keyword = pstrdup("");
			err->message = pstrdup("value does not match the schema");
		}
	}
	eval_done(&cx);
	return ok;
}

bool
evc_validate_jsonb(EvcCompiledSchema *schema, Jsonb *instance, EvcValidationError *err)
{
	JV			root;

	evc_jv_root(instance, &root);
	return validate_value(schema, &root, err);
}

bool
evc_node_accepts(EvcNode *node, const JV *value)
{
	EvalCtx		cx;
	bool		ok;

	eval_init(&cx, false, false);
	ok = eval_node(&cx, node, value);
	eval_done(&cx);
	return ok;
}

static List *
validate_all_errors(EvcCompiledSchema *schema, Jsonb *instance)
{
	EvalCtx		cx;
	JV			root;

	eval_init(&cx, true, true);
	evc_jv_root(instance, &root);
	(void) eval_node(&cx, schema->root, &root);
	eval_done(&cx);
	return cx.errors;
}

void
evc_validate_define_gucs(void)
{
	static bool done = false;

	if (done)
		return;
	done = true;
	DefineCustomBoolVariable("evcollector.validate_formats",
							 "Whether the JSON Schema keyword \"format\" is checked.",
							 "When off, \"format\" is an annotation only, as draft-07 allows.",
							 &validate_formats, true,
							 PGC_USERSET, 0, NULL, NULL, NULL);
}

/* ---------- ad hoc cache ---------- */

#define ADHOC_SLOTS 16

typedef struct AdhocEntry
{
	uint32		hash;
	Jsonb	   *schema;			/* copy, for an exact comparison */
	EvcCompiledSchema *compiled;
	MemoryContext cxt;
	uint64		last_used;
} AdhocEntry;

static AdhocEntry adhoc[ADHOC_SLOTS];
static uint64 adhoc_clock = 0;
static uint64 adhoc_generation = 1;

/* Any relcache flush may be a change to evc.schema_documents: drop lazily. */
static bool adhoc_stale = false;	/* bumped whenever a compiled schema is freed */

/*
 * What evc_validate keeps in fn_extra, for one call site: the compiled
 * schema it used last, and the buffers the text form reads into.
 */
typedef struct AdhocCall
{
	EvcCompiledSchema *compiled;	/* NULL until looked up */
	uint64		generation;		/* adhoc_generation when looked up */
	bool		constant;		/* the schema argument is a Const */
	Jsonb	   *last_schema;	/* otherwise a copy of the schema compiled */
	Size		last_schema_cap;
	EvcTextBuf	text;
} AdhocCall;
static MemoryContext validate_cache_cxt = NULL;
static bool inval_registered = false;

static void
validate_reset_caches(void)
{
	adhoc_generation++;
	for (int i = 0; i < ADHOC_SLOTS; i++)
		if (adhoc[i].cxt)
		{
			MemoryContextDelete(adhoc[i].cxt);
			memset(&adhoc[i], 0, sizeof(AdhocEntry));
		}
}


static void
adhoc_inval_callback(Datum arg, Oid relid)
{
	adhoc_stale = true;
}

MemoryContext
evc_validate_cache_context(void)
{
	if (validate_cache_cxt == NULL)
		validate_cache_cxt = AllocSetContextCreate(CacheMemoryContext,
												   "evcollector compiled schemas",
												   ALLOCSET_SMALL_SIZES);
	return validate_cache_cxt;
}

static EvcCompiledSchema *
adhoc_schema(Jsonb *schema)
{
	uint32		h = hash_bytes((unsigned char *) schema, VARSIZE(schema));
	AdhocEntry *victim = &adhoc[0];
	MemoryContext cxt;

	evc_validate_define_gucs();
	if (!inval_registered)
	{
		CacheRegisterRelcacheCallback(adhoc_inval_callback, (Datum) 0);
		inval_registered = true;
	}
	if (adhoc_stale)
	{
		validate_reset_caches();
		adhoc_stale = false;
	}
	for (int i = 0; i < ADHOC_SLOTS; i++)
	{
		AdhocEntry *e = &adhoc[i];

		if (e->cxt && e->hash == h && VARSIZE(e->schema) == VARSIZE(schema) &&
			memcmp(e->schema, schema, VARSIZE(schema)) == 0)
		{
			e->last_used = ++adhoc_clock;
			return e->compiled;
		}
		if (e->last_used < victim->last_used)
			victim = e;
	}
	if (victim->cxt)
	{
		MemoryContextDelete(victim->cxt);
		adhoc_generation++;
	}
	memset(victim, 0, sizeof(AdhocEntry));

	/* compile into a fresh context: an error leaves nothing behind */
	cxt = AllocSetContextCreate(evc_validate_cache_context(), "evcollector ad hoc schema",
								ALLOCSET_SMALL_SIZES);
	PG_TRY();
	{
		victim->compiled = evc_schema_compile(schema, NULL, cxt);
	}
	PG_CATCH();
	{
		MemoryContextDelete(cxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	victim->schema = MemoryContextAlloc(cxt, VARSIZE(schema));
	memcpy(victim->schema, schema, VARSIZE(schema));
	victim->hash = h;
	victim->cxt = cxt;
	victim->last_used = ++adhoc_clock;
	return victim->compiled;
}

/* ---------- meta-schema ---------- */

void
evc_check_schema(Jsonb *schema)
{
	static Jsonb *meta_ref = NULL;
	EvcValidationError err;

	if (meta_ref == NULL)
	{
		Datum		d = DirectFunctionCall1(jsonb_in,
										   CStringGetDatum("{\"$ref\": \"http://json-schema.org/draft-07/schema#\"}"));

		meta_ref = MemoryContextAlloc(TopMemoryContext, VARSIZE(DatumGetPointer(d)));
		memcpy(meta_ref, DatumGetPointer(d), VARSIZE(DatumGetPointer(d)));
	}
	if (!evc_validate_jsonb(adhoc_schema(meta_ref), schema, &err))
		ereport(ERROR,
				(errcode(EVC_ERRCODE_INVALID_SCHEMA),
				 errmsg("invalid JSON schema"),
				 errdetail("At %s: %s (keyword \"%s\", meta-schema path %s).",
						   err.instance_path[0] ? err.instance_path : "the root",
						   err.message, err.keyword, err.schema_path),
				 errhint("A schema must be valid under the JSON Schema draft-07 meta-schema.")));
}

/* ---------- SQL ---------- */

/*
 * Whether evc_validate's schema argument is a Const of the query.  (A Param
 * is not enough: PL/pgSQL keeps simple expressions, and fn_extra with them,
 * across calls with different parameter values.)
 */
static bool
schema_is_constant(FmgrInfo *flinfo)
{
	Node	   *expr = flinfo->fn_expr;

	return expr != NULL && IsA(expr, FuncExpr) &&
		list_length(((FuncExpr *) expr)->args) == 2 &&
		IsA(linitial(((FuncExpr *) expr)->args), Const);
}

static AdhocCall *
adhoc_call(FunctionCallInfo fcinfo)
{
	AdhocCall  *call = fcinfo->flinfo->fn_extra;

	if (call == NULL)
	{
		call = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(AdhocCall));
		call->constant = schema_is_constant(fcinfo->flinfo);
		evc_text_buf_init(&call->text, fcinfo->flinfo->fn_mcxt);
		fcinfo->flinfo->fn_extra = call;
	}
	return call;
}

/*
 * The compiled form of the schema argument.  A schema that is a constant
 * of the query is looked up once per query; any other is compared with the
 * last one this call site compiled (a memcmp, cheaper than hashing it for
 * the cache).  The generation tells when the cache freed a compiled schema.
 */
static EvcCompiledSchema *
adhoc_call_schema(FunctionCallInfo fcinfo, AdhocCall *call)
{
	Jsonb	   *schema;

	if (call->compiled != NULL && call->generation == adhoc_generation && !adhoc_stale)
	{
		if (call->constant)
			return call->compiled;
		schema = PG_GETARG_JSONB_P(0);
		if (VARSIZE(schema) == VARSIZE(call->last_schema) &&
			memcmp(schema, call->last_schema, VARSIZE(schema)) == 0)
			return call->compiled;
	}
	else
		schema = PG_GETARG_JSONB_P(0);

	call->compiled = NULL;
	call->compiled = adhoc_schema(schema);
	call->generation = adhoc_generation;
	if (!call->constant)
	{
		if (call->last_schema_cap < VARSIZE(schema))
		{
			if (call->last_schema)
				pfree(call->last_schema);
			call->last_schema = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, VARSIZE(schema));
			call->last_schema_cap = VARSIZE(schema);
		}
		memcpy(call->last_schema, schema, VARSIZE(schema));
	}
	return call->compiled;
}

PG_FUNCTION_INFO_V1(evc_validate);
Datum
evc_validate(PG_FUNCTION_ARGS)
{
	Jsonb	   *instance = PG_GETARG_JSONB_P(1);
	AdhocCall  *call = adhoc_call(fcinfo);

	PG_RETURN_BOOL(evc_validate_jsonb(adhoc_call_schema(fcinfo, call), instance, NULL));
}

/*
 * evc_validate(schema jsonb, instance text): the text is read straight into
 * the validator's tree (validate_text.c), with no jsonb built.  Text that
 * reader is not sure of goes through jsonb_in, so a bad text raises the
 * error a cast to jsonb would, before the schema is looked at, as it does
 * when the instance is cast.
 */
PG_FUNCTION_INFO_V1(evc_validate_text);
Datum
evc_validate_text(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(1);
	AdhocCall  *call = adhoc_call(fcinfo);
	JV			root;
	Jsonb	   *jb;

	if (evc_text_to_tree(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), &call->text, &root))
		PG_RETURN_BOOL(validate_value(adhoc_call_schema(fcinfo, call), &root, NULL));
	jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text_to_cstring(t))));
	PG_RETURN_BOOL(evc_validate_jsonb(adhoc_call_schema(fcinfo, call), jb, NULL));
}

PG_FUNCTION_INFO_V1(evc_validation_errors);
Datum
evc_validation_errors(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Jsonb	   *schema = PG_GETARG_JSONB_P(0);
	Jsonb	   *instance = PG_GETARG_JSONB_P(1);
	List	   *errors;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	errors = validate_all_errors(adhoc_schema(schema), instance);
	foreach(lc, errors)
	{
		EvcValidationError *e = lfirst(lc);
		Datum		values[4];
		bool		nulls[4] = {0};

		values[0] = CStringGetTextDatum(e->instance_path);
		values[1] = CStringGetTextDatum(e->schema_path);
		values[2] = CStringGetTextDatum(e->keyword);
		values[3] = CStringGetTextDatum(e->message);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
