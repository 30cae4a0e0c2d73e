/*
 * fuzz_schema_compat.c
 *		The registry's compatibility check (src/registry/compat.c) and the
 *		inclusion proof under it (src/jsonschema/validate_subset.c), on two
 *		schemas.
 *
 * Input: two JSON schemas separated by a 0xFF byte (never part of UTF-8
 * text).  The proof is conservative: it may fail to prove an inclusion,
 * but when it claims "every value valid under A is valid under B", that
 * must hold, so each claim is tested on a set of values: a few fixed ones
 * and every value written in either schema (enum members, consts,
 * defaults, examples, the subschemas themselves).
 *
 * The proof makes one documented relaxation (validate_subset.c,
 * docs/registry.md): a property the subset side never declared is taken to
 * be absent from existing events.  So a claim is tested only on values
 * whose object keys are all declared somewhere in the subset side's
 * "properties".  That filter is coarser than the relaxation (a name
 * declared in one place passes everywhere), so a finding here needs a look
 * at where its names are declared before it is called a bug.
 */
#include "fuzz_pg.h"

#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/memutils.h"

#include "jsonschema/validate_int.h"
#include "registry/registry.h"

static const char *const fixed_values[] = {
	"null", "true", "false", "0", "1", "-1", "0.5", "2.0", "1e400", "-1e400", "100",
	"\"\"", "\"a\"", "\"2026-12-01\"", "\"abc\"", "[]", "[1]", "[1, 1]", "[\"a\", 2]",
	"{}", "{\"a\": 1}", "{\"a\": \"x\", \"b\": null}", "{\"b\": [true]}",
};

/* Every value inside v, v included, appended to *vals. */
static void
collect_values(const JV *v, JV **vals, int *n, int *cap)
{
	JvIter		it;
	JV			k,
				e;

	if (*n == *cap)
	{
		*cap *= 2;
		*vals = repalloc(*vals, sizeof(JV) * *cap);
	}
	(*vals)[(*n)++] = *v;
	if (v->type != JV_ARRAY && v->type != JV_OBJECT)
		return;
	jv_iter_init(&it, v);
	while (jv_iter_next(&it, &k, &e))
		collect_values(&e, vals, n, cap);
}

/* Every name under a "properties" keyword anywhere in a schema document. */
static void
collect_declared(const JV *v, List **names)
{
	JvIter		it;
	JV			k,
				e,
				props;

	if (v->type == JV_OBJECT && evc_jv_object_get(v, "properties", 10, &props) &&
		props.type == JV_OBJECT)
	{
		jv_iter_init(&it, &props);
		while (jv_iter_next(&it, &k, &e))
			*names = lappend(*names, pnstrdup(k.u.str, k.len));
	}
	if (v->type != JV_ARRAY && v->type != JV_OBJECT)
		return;
	jv_iter_init(&it, v);
	while (jv_iter_next(&it, &k, &e))
		collect_declared(&e, names);
}

/* Whether every object key inside v is one of names. */
static bool
keys_declared(const JV *v, List *names)
{
	JvIter		it;
	JV			k,
				e;

	if (v->type != JV_ARRAY && v->type != JV_OBJECT)
		return true;
	jv_iter_init(&it, v);
	while (jv_iter_next(&it, &k, &e))
	{
		if (v->type == JV_OBJECT)
		{
			ListCell   *lc;
			bool		found = false;

			foreach(lc, names)
				if (strlen(lfirst(lc)) == k.len && memcmp(lfirst(lc), k.u.str, k.len) == 0)
					found = true;
			if (!found)
				return false;
		}
		if (!keys_declared(&e, names))
			return false;
	}
	return true;
}

/* A value as JSON text, for the finding's message. */
static char *
jv_text(const JV *v)
{
	switch (v->type)
	{
		case JV_NULL:
			return "null";
		case JV_BOOL:
			return v->u.boolean ? "true" : "false";
		case JV_NUMBER:
			return DatumGetCString(DirectFunctionCall1(numeric_out,
													   NumericGetDatum(evc_jv_num_numeric(v))));
		case JV_STRING:
			return psprintf("\"%.*s\"", v->len, v->u.str);
		default:
			return JsonbToCString(NULL, v->u.jc, -1);
	}
}

typedef struct CompatCase
{
	Jsonb	   *a;
	Jsonb	   *b;
} CompatCase;

static void
check_claim(EvcCompiledSchema *sub, EvcCompiledSchema *sup, JV *vals, int n, const char *which)
{
	char	   *where,
			   *reason;
	List	   *declared = NIL;

	if (!evc_schema_subset(sub, sup, &where, &reason))
	{
		if (where == NULL || reason == NULL)
			fuzz_fail("an unproven inclusion without a place or a reason");
		return;
	}
	collect_declared(&sub->root->src, &declared);
	for (int i = 0; i < n; i++)
		if (keys_declared(&vals[i], declared) &&
			evc_node_accepts(sub->root, &vals[i]) && !evc_node_accepts(sup->root, &vals[i]))
			fuzz_fail("%s: inclusion proven, but %s is valid under one and not the other",
					  which, jv_text(&vals[i]));
}

static void
compat(void *arg)
{
	CompatCase *cc = arg;
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "fuzz compat",
											  ALLOCSET_SMALL_SIZES);
	EvcCompiledSchema *a = evc_schema_compile(cc->a, NULL, cxt);
	EvcCompiledSchema *b = evc_schema_compile(cc->b, NULL, cxt);
	int			cap = 64,
				n = 0;
	JV		   *vals = palloc(sizeof(JV) * cap);
	JV			root;
	char	   *why;

	for (int i = 0; i < lengthof(fixed_values); i++)
	{
		Jsonb	   *jb = fuzz_parse_jsonb(fixed_values[i]);

		evc_jv_root(jb, &root);
		collect_values(&root, &vals, &n, &cap);
	}
	evc_jv_root(cc->a, &root);
	collect_values(&root, &vals, &n, &cap);
	evc_jv_root(cc->b, &root);
	collect_values(&root, &vals, &n, &cap);

	check_claim(a, b, vals, n, "A within B");
	check_claim(b, a, vals, n, "B within A");
	for (int mode = EVC_COMPAT_NONE; mode <= EVC_COMPAT_FULL; mode++)
	{
		why = NULL;
		if (!evc_schema_compatible(a, b, (EvcCompatibility) mode, &why) &&
			(why == NULL || why[0] == '\0'))
			fuzz_fail("a change was refused without a reason");
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *sep = memchr(data, 0xFF, size);
	CompatCase	cc;

	if (sep == NULL)
		return 0;
	fuzz_begin();
	cc.a = fuzz_parse_jsonb(fuzz_cstring(data, sep - data));
	cc.b = fuzz_parse_jsonb(fuzz_cstring(sep + 1, size - (sep + 1 - data)));
	if (cc.a == NULL || cc.b == NULL)
		return 0;
	fuzz_run(compat, &cc);
	return 0;
}
