/*
 * validate.c
 *		Evaluates a compiled JSON Schema (validate_compile.c) against a jsonb
 *		instance, and owns the ad hoc SQL entry points evc_validate() and
 *		evc_validation_errors() with their small per-backend cache.
 *
 * Evaluation reads the instance in place (validate_jv.c).  In "first
 * error" mode it stops at the first failure; in "all errors" mode it goes
 * on and collects every failing keyword.  Paths are only built when an
 * error is recorded, so a valid event costs no string work at all.
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/primnodes.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/memutils.h"

#include "validate_int.h"

bool		evc_validate_formats = true;

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
} EvalCtx;

static bool eval_node(EvalCtx *cx, EvcNode *n, const JV *v);

/* ---------- errors ---------- */

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

	if (cx->suppress > 0 || !cx->want_errors)
		return;
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

/* ---------- instance paths ---------- */

static inline void
path_push(EvalCtx *cx, const char *key, int len)
{
	if (cx->depth == cx->path_cap)
	{
		cx->path_cap *= 2;
		cx->path = repalloc(cx->path, sizeof(PathSeg) * cx->path_cap);
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

static bool
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
num_is_integer(Numeric n)
{
	return DatumGetInt32(DirectFunctionCall1(numeric_min_scale, NumericGetDatum(n))) == 0;
}

static char *
num_text(Numeric n)
{
	return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(n)));
}

#define FAIL() \
	do { \
		valid = false; \
		if (!cx->collect_all || cx->suppress > 0) \
			return false; \
	} while (0)

static bool
eval_number(EvalCtx *cx, EvcNode *n, const JV *v)
{
	bool		valid = true;
	Numeric		x = v->u.num;

	if (n->minimum && num_cmp(x, n->minimum) < 0)
	{
		report(cx, n, "minimum", "%s is less than the minimum of %s",
			   num_text(x), num_text(n->minimum));
		FAIL();
	}
	if (n->maximum && num_cmp(x, n->maximum) > 0)
	{
		report(cx, n, "maximum", "%s is greater than the maximum of %s",
			   num_text(x), num_text(n->maximum));
		FAIL();
	}
	if (n->exclusive_minimum && num_cmp(x, n->exclusive_minimum) <= 0)
	{
		report(cx, n, "exclusiveMinimum", "%s is not greater than %s",
			   num_text(x), num_text(n->exclusive_minimum));
		FAIL();
	}
	if (n->exclusive_maximum && num_cmp(x, n->exclusive_maximum) >= 0)
	{
		report(cx, n, "exclusiveMaximum", "%s is not less than %s",
			   num_text(x), num_text(n->exclusive_maximum));
		FAIL();
	}
	if (n->multiple_of)
	{
		Numeric		rem = DatumGetNumeric(DirectFunctionCall2(numeric_mod,
															  NumericGetDatum(x),
															  NumericGetDatum(n->multiple_of)));

		if (num_cmp(rem, numeric_zero()) != 0)
		{
			report(cx, n, "multipleOf", "%s is not a multiple of %s",
				   num_text(x), num_text(n->multiple_of));
			FAIL();
		}
	}
	return valid;
}

/* ---------- strings ---------- */

static bool
eval_string(EvalCtx *cx, EvcNode *n, const JV *v)
{
	bool		valid = true;

	if (n->min_length >= 0 || n->max_length >= 0)
	{
		/* a byte count bounds the code point count from above */
		int			chars = (n->max_length >= 0 && v->len <= n->max_length &&
							 (n->min_length < 0 || v->len < n->min_length))
			? v->len : pg_mbstrlen_with_len(v->u.str, v->len);

		if (n->min_length >= 0 && chars < n->min_length)
		{
			report(cx, n, "minLength", "string is %d characters long, shorter than %d",
				   chars, n->min_length);
			FAIL();
		}
		if (n->max_length >= 0 && chars > n->max_length)
		{
			report(cx, n, "maxLength", "string is %d characters long, longer than %d",
				   chars, n->max_length);
			FAIL();
		}
	}
	if (n->pattern && !evc_regex_match(n->pattern, v->u.str, v->len))
	{
		report(cx, n, "pattern", "string %s does not match pattern \"%s\"",
			   quote_short(v->u.str, v->len), n->pattern_src);
		FAIL();
	}
	if (n->format_fn && evc_validate_formats && !n->format_fn(v->u.str, v->len))
	{
		report(cx, n, "format", "string %s is not a valid %s",
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
		items[n].hash = jv_hash(&items[n].value);
		items[n].index = n;
		n++;
	}
	qsort(items, n, sizeof(HashedItem), hashed_item_cmp);
	for (int i = 0; i < n && !dup; i++)
		for (int j = i + 1; j < n && items[j].hash == items[i].hash; j++)
		{
			CHECK_FOR_INTERRUPTS();
			if (jv_equal(&items[i].value, &items[j].value))
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

static bool
eval_array(EvalCtx *cx, EvcNode *n, const JV *v)
{
	bool		valid = true;
	JvIter		it;
	JV			k,
				e;
	int			i = 0;
	bool		found = false;

	if (n->min_items >= 0 && v->len < n->min_items)
	{
		report(cx, n, "minItems", "array has %d items, fewer than %d", v->len, n->min_items);
		FAIL();
	}
	if (n->max_items >= 0 && v->len > n->max_items)
	{
		report(cx, n, "maxItems", "array has %d items, more than %d", v->len, n->max_items);
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
				report(cx, n, "additionalItems", "array has %d items, more than the %d allowed",
					   v->len, n->n_items_list);
				FAIL();
				break;
			}
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
			report(cx, n, "contains", "no item matches the \"contains\" schema");
			FAIL();
		}
	}
	if (n->unique_items && v->len > 1)
	{
		int			a,
					b;

		if (find_duplicate(v, &a, &b))
		{
			report(cx, n, "uniqueItems", "items %d and %d are equal", a, b);
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
		report(cx, n, "propertyNames", "property name %s is not valid",
			   quote_short(key->u.str, key->len));
	return ok;
}

/* properties / patternProperties / additionalProperties / propertyNames in one pass */
static bool
eval_members(EvalCtx *cx, EvcNode *n, const JV *v)
{
	bool		valid = true;
	JvIter		it;
	JV			k,
				e;
	int			p = 0;

	jv_iter_init(&it, v);
	while (jv_iter_next(&it, &k, &e))
	{
		bool		matched = false;

		/* instance keys and n->props are both in jsonb order: merge */
		while (p < n->n_props && jv_key_cmp(n->props[p].name, n->props[p].len, k.u.str, k.len) < 0)
			p++;
		if (p < n->n_props && jv_key_cmp(n->props[p].name, n->props[p].len, k.u.str, k.len) == 0)
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
		if (!matched && n->additional_props)
		{
			if (n->additional_props->is_bool && !n->additional_props->bool_value)
			{
				path_push(cx, k.u.str, k.len);
				report(cx, n, "additionalProperties", "property %s is not allowed",
					   quote_short(k.u.str, k.len));
				path_pop(cx);
				FAIL();
			}
			else if (!eval_child(cx, n->additional_props, &e, k.u.str, k.len))
				FAIL();
		}
		if (n->property_names && !eval_property_names(cx, n, &k))
			FAIL();
	}
	return valid;
}

/* Fast path: instance keys and required names are both sorted, so merge. */
static bool
has_all_required(EvcNode *n, const JV *v)
{
	JvIter		it;
	JV			k,
				e;
	int			r = 0;

	if (v->len < n->n_required)
		return false;
	jv_iter_init(&it, v);
	while (r < n->n_required && jv_iter_next(&it, &k, &e))
	{
		int			c = jv_key_cmp(n->required[r].name, n->required[r].len, k.u.str, k.len);

		if (c == 0)
			r++;
		else if (c < 0)
			return false;		/* required name r is not in the instance */
	}
	return r == n->n_required;
}

static bool
eval_object(EvalCtx *cx, EvcNode *n, const JV *v)
{
	bool		valid = true;
	JV			dummy;

	if (n->min_props >= 0 && v->len < n->min_props)
	{
		report(cx, n, "minProperties", "object has %d properties, fewer than %d",
			   v->len, n->min_props);
		FAIL();
	}
	if (n->max_props >= 0 && v->len > n->max_props)
	{
		report(cx, n, "maxProperties", "object has %d properties, more than %d",
			   v->len, n->max_props);
		FAIL();
	}
	if (n->n_required > 0 && !has_all_required(n, v))
		for (int i = 0; i < n->n_required; i++)
			if (!jv_object_get(v, n->required[i].name, n->required[i].len, &dummy))
			{
				report(cx, n, "required", "required property %s is missing",
					   quote_short(n->required[i].name, n->required[i].len));
				FAIL();
			}
	if ((n->props || n->pat_props || n->additional_props || n->property_names) &&
		!eval_members(cx, n, v))
		FAIL();
	for (int i = 0; i < n->n_deps; i++)
	{
		EvcDep	   *d = &n->deps[i];

		if (!jv_object_get(v, d->name, d->len, &dummy))
			continue;
		if (d->schema && !eval_node(cx, d->schema, v))
			FAIL();
		for (int j = 0; j < d->n_required; j++)
			if (!jv_object_get(v, d->required[j].name, d->required[j].len, &dummy))
			{
				report(cx, n, "dependencies", "property %s is required when %s is present",
					   quote_short(d->required[j].name, d->required[j].len),
					   quote_short(d->name, d->len));
				FAIL();
			}
	}
	return valid;
}

/* ---------- combinators ---------- */

static bool
eval_combinators(EvalCtx *cx, EvcNode *n, const JV *v)
{
	bool		valid = true;

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
			report(cx, n, "anyOf", "value matches none of the %d schemas in \"anyOf\"", n->n_any_of);
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
			report(cx, n, "oneOf", "value matches none of the %d schemas in \"oneOf\"", n->n_one_of);
			FAIL();
		}
		else if (matches > 1)
		{
			report(cx, n, "oneOf", "value matches both schema %d and schema %d of \"oneOf\"", first, second);
			FAIL();
		}
	}
	if (n->not_ && eval_quiet(cx, n->not_, v))
	{
		report(cx, n, "not", "value matches the schema in \"not\"");
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

static bool
type_matches(uint8 types, const JV *v)
{
	switch (v->type)
	{
		case JV_NULL:
			return types & EVC_T_NULL;
		case JV_BOOL:
			return types & EVC_T_BOOLEAN;
		case JV_OBJECT:
			return types & EVC_T_OBJECT;
		case JV_ARRAY:
			return types & EVC_T_ARRAY;
		case JV_STRING:
			return types & EVC_T_STRING;
		case JV_NUMBER:
			return (types & EVC_T_NUMBER) ||
				((types & EVC_T_INTEGER) && num_is_integer(v->u.num));
	}
	return false;
}

static char *
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

/* A $ref followed again at the same instance location is a loop. */
static bool
eval_ref(EvalCtx *cx, EvcNode *n, const JV *v)
{
	bool		ok;

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
		cx->refs_cap *= 2;
		cx->refs = repalloc(cx->refs, sizeof(RefFrame) * cx->refs_cap);
	}
	cx->refs[cx->n_refs].target = n->ref;
	cx->refs[cx->n_refs].depth = cx->depth;
	cx->n_refs++;
	ok = eval_node(cx, n->ref, v);
	cx->n_refs--;
	return ok;
}

static bool
eval_node(EvalCtx *cx, EvcNode *n, const JV *v)
{
	bool		valid = true;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();

	if (n->is_bool)
	{
		if (!n->bool_value)
			report(cx, n, "false", "no value is allowed here (the schema is false)");
		return n->bool_value;
	}
	if (n->ref)
		return eval_ref(cx, n, v);

	if (n->types && !type_matches(n->types, v))
	{
		report(cx, n, "type", "value is %s, expected %s", jv_type_name(v), types_text(n->types));
		FAIL();
	}
	if (n->enum_vals)
	{
		bool		any = false;

		for (int i = 0; i < n->n_enum && !any; i++)
			any = jv_equal(&n->enum_vals[i], v);
		if (!any)
		{
			report(cx, n, "enum", "value is not one of the %d allowed values", n->n_enum);
			FAIL();
		}
	}
	if (n->has_const && !jv_equal(&n->const_val, v))
	{
		report(cx, n, "const", "value is not the constant the schema requires");
		FAIL();
	}
	switch (v->type)
	{
		case JV_NUMBER:
			if (!eval_number(cx, n, v))
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
	if (!eval_combinators(cx, n, v))
		FAIL();
	return valid;
}

/* ---------- public API ---------- */

static void
eval_init(EvalCtx *cx, bool collect_all, bool want_errors)
{
	memset(cx, 0, sizeof(*cx));
	cx->collect_all = collect_all;
	cx->want_errors = want_errors;
	cx->path_cap = 16;
	cx->path = palloc(sizeof(PathSeg) * cx->path_cap);
	cx->refs_cap = 16;
	cx->refs = palloc(sizeof(RefFrame) * cx->refs_cap);
}

bool
evc_validate_jsonb(EvcCompiledSchema *schema, Jsonb *instance, EvcValidationError *err)
{
	EvalCtx		cx;
	JV			root;
	bool		ok;

	eval_init(&cx, false, err != NULL);
	jv_root(instance, &root);
	ok = eval_node(&cx, schema->root, &root);
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
	pfree(cx.path);
	pfree(cx.refs);
	return ok;
}

bool
evc_node_accepts(EvcNode *node, const JV *value)
{
	EvalCtx		cx;

	eval_init(&cx, false, false);
	return eval_node(&cx, node, value);
}

List *
evc_validate_all_errors(EvcCompiledSchema *schema, Jsonb *instance)
{
	EvalCtx		cx;
	JV			root;

	eval_init(&cx, true, true);
	jv_root(instance, &root);
	(void) eval_node(&cx, schema->root, &root);
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
							 &evc_validate_formats, true,
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

/* What evc_validate keeps in fn_extra when its schema argument is a constant. */
typedef struct AdhocCall
{
	EvcCompiledSchema *compiled;
	uint64		generation;
} AdhocCall;
static MemoryContext validate_cache_cxt = NULL;
static bool inval_registered = false;

void
evc_validate_reset_caches(void)
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

EvcCompiledSchema *
evc_adhoc_schema(Jsonb *schema)
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
		evc_validate_reset_caches();
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
	if (!evc_validate_jsonb(evc_adhoc_schema(meta_ref), schema, &err))
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

PG_FUNCTION_INFO_V1(evc_validate);
Datum
evc_validate(PG_FUNCTION_ARGS)
{
	Jsonb	   *instance = PG_GETARG_JSONB_P(1);
	AdhocCall  *call = fcinfo->flinfo->fn_extra;

	/*
	 * A schema that is a constant of the query is looked up once per query,
	 * not hashed per row.  The generation tells when the cache freed it.
	 */
	if (call == NULL || call->generation != adhoc_generation || adhoc_stale)
	{
		EvcCompiledSchema *compiled = evc_adhoc_schema(PG_GETARG_JSONB_P(0));

		if (!schema_is_constant(fcinfo->flinfo))
			PG_RETURN_BOOL(evc_validate_jsonb(compiled, instance, NULL));
		if (call == NULL)
			call = fcinfo->flinfo->fn_extra =
				MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(AdhocCall));
		call->compiled = compiled;
		call->generation = adhoc_generation;
	}
	PG_RETURN_BOOL(evc_validate_jsonb(call->compiled, instance, NULL));
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
	errors = evc_validate_all_errors(evc_adhoc_schema(schema), instance);
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
