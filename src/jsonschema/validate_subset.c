/*
 * validate_subset.c
 *		Static inclusion between two compiled schemas: "is every value valid
 *		under A also valid under B?" (A is a subset of B).
 *
 * The registry's compatibility modes are all built on this one question
 * (registry/compat.c asks it with A = old, B = new for backward, the other
 * way round for forward, and both for full).  The proof
 * is conservative: a rule either proves inclusion from the keywords or
 * gives up with a reason, and an unproven inclusion is refused.
 *
 * One deliberate relaxation, documented in docs/registry.md (the registry calls it a relaxation of
 * Confluent's rules): a property
 * that the subset side never declared (it was only let through by an open
 * additionalProperties) is taken to be absent from existing events.  That
 * is what makes adding an optional property to an open object compatible,
 * which a strict set check (and Confluent's registry) refuses.
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"

#include "validate_int.h"

typedef struct ProofCtx
{
	List	   *assumed;		/* (A, B) pairs under proof: assumed true */
	char	   *reason;			/* why the last proof failed */
	StringInfoData where;		/* instance-side path of the failure */
} ProofCtx;

static bool subset(ProofCtx *pc, EvcNode *a, EvcNode *b, const char *where);
static bool subset_keywords_of(ProofCtx *pc, EvcNode *a, EvcNode *b, const char *where);

static bool
fail(ProofCtx *pc, const char *where, const char *fmt,...)
	pg_attribute_printf(3, 4);

static bool
fail(ProofCtx *pc, const char *where, const char *fmt,...)
{
	va_list		args;
	StringInfoData s;

	if (pc->reason)
		return false;			/* keep the innermost reason */
	initStringInfo(&s);
	for (;;)
	{
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&s, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&s, needed);
	}
	pc->reason = s.data;
	resetStringInfo(&pc->where);
	appendStringInfoString(&pc->where, where[0] ? where : "the root");
	return false;
}

static int
ncmp(Numeric a, Numeric b)
{
	return DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(a), NumericGetDatum(b)));
}

static bool
is_true(EvcNode *n)
{
	return n == NULL || (n->is_bool && n->bool_value) ||
		(!n->is_bool && n->ref == NULL && n->src.type == JV_OBJECT && n->src.len == 0);
}

static bool
same_keyword(EvcNode *a, EvcNode *b, const char *kw)
{
	JV			va,
				vb;
	bool		ha = a->src.type == JV_OBJECT && evc_jv_object_get(&a->src, kw, strlen(kw), &va);
	bool		hb = b->src.type == JV_OBJECT && evc_jv_object_get(&b->src, kw, strlen(kw), &vb);

	if (!hb)
		return true;
	return ha && evc_jv_equal(&va, &vb);
}

static const char *
sub(const char *where, const char *seg)
{
	return psprintf("%s/%s", where, seg);
}

static uint8
effective_types(EvcNode *n)
{
	uint8		t = n->types ? n->types : 0x7f;

	if (t & EVC_T_NUMBER)
		t |= EVC_T_INTEGER;
	return t;
}

static bool
numbers_subset(ProofCtx *pc, EvcNode *a, EvcNode *b, const char *where)
{
	if (b->minimum &&
		!((a->minimum && ncmp(a->minimum, b->minimum) >= 0) ||
		  (a->exclusive_minimum && ncmp(a->exclusive_minimum, b->minimum) >= 0)))
		return fail(pc, where, "\"minimum\" %s is not implied by the other version",
					DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(b->minimum))));
	if (b->maximum &&
		!((a->maximum && ncmp(a->maximum, b->maximum) <= 0) ||
		  (a->exclusive_maximum && ncmp(a->exclusive_maximum, b->maximum) <= 0)))
		return fail(pc, where, "\"maximum\" %s is not implied by the other version",
					DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(b->maximum))));
	if (b->exclusive_minimum &&
		!((a->minimum && ncmp(a->minimum, b->exclusive_minimum) > 0) ||
		  (a->exclusive_minimum && ncmp(a->exclusive_minimum, b->exclusive_minimum) >= 0)))
		return fail(pc, where, "%s", "\"exclusiveMinimum\" is not implied by the other version");
	if (b->exclusive_maximum &&
		!((a->maximum && ncmp(a->maximum, b->exclusive_maximum) < 0) ||
		  (a->exclusive_maximum && ncmp(a->exclusive_maximum, b->exclusive_maximum) <= 0)))
		return fail(pc, where, "%s", "\"exclusiveMaximum\" is not implied by the other version");
	if (b->multiple_of)
	{
		Numeric		rem;

		if (!a->multiple_of)
			return fail(pc, where, "%s", "\"multipleOf\" was added");
		rem = DatumGetNumeric(DirectFunctionCall2(numeric_mod, NumericGetDatum(a->multiple_of),
												  NumericGetDatum(b->multiple_of)));
		if (ncmp(rem, int64_to_numeric(0)) != 0)
			return fail(pc, where, "%s", "\"multipleOf\" is not a divisor of the other version's");
	}
	return true;
}

static bool
strings_subset(ProofCtx *pc, EvcNode *a, EvcNode *b, const char *where)
{
	if (b->min_length > 0 && a->min_length < b->min_length)
		return fail(pc, where, "\"minLength\" %d is not implied by the other version", b->min_length);
	if (b->max_length >= 0 && (a->max_length < 0 || a->max_length > b->max_length))
		return fail(pc, where, "\"maxLength\" %d is not implied by the other version", b->max_length);
	if (b->pattern_src && (!a->pattern_src || strcmp(a->pattern_src, b->pattern_src) != 0))
		return fail(pc, where, "\"pattern\" \"%s\" differs from the other version", b->pattern_src);
	if (b->format && (!a->format || strcmp(a->format, b->format) != 0))
		return fail(pc, where, "\"format\" \"%s\" differs from the other version", b->format);
	return true;
}

/* The schema an array item at index i must match (NULL: anything). */
static EvcNode *
item_schema(EvcNode *n, int i)
{
	if (n->items_list)
		return i < n->n_items_list ? n->items_list[i] : n->additional_items;
	return n->items;
}

static bool
arrays_subset(ProofCtx *pc, EvcNode *a, EvcNode *b, const char *where)
{
	int			n = Max(a->n_items_list, b->n_items_list);

	if (b->min_items > 0 && a->min_items < b->min_items)
		return fail(pc, where, "\"minItems\" %d is not implied by the other version", b->min_items);
	if (b->max_items >= 0 && (a->max_items < 0 || a->max_items > b->max_items))
		return fail(pc, where, "\"maxItems\" %d is not implied by the other version", b->max_items);
	if (b->unique_items && !a->unique_items)
		return fail(pc, where, "%s", "\"uniqueItems\" was added");
	if (!same_keyword(a, b, "contains"))
		return fail(pc, where, "%s", "\"contains\" differs from the other version");
	for (int i = 0; i <= n; i++)
	{
		EvcNode    *ai = item_schema(a, i);
		EvcNode    *bi = item_schema(b, i);

		if (is_true(bi))
			continue;
		if (ai == NULL)
			return fail(pc, sub(where, psprintf("%d", i)), "%s", "items became constrained");
		if (!subset(pc, ai, bi, sub(where, psprintf("%d", i))))
			return false;
	}
	return true;
}

static EvcNode *
prop_schema(EvcNode *n, const char *name, int len, bool *declared)
{
	*declared = false;
	for (int i = 0; i < n->n_props; i++)
		if (n->props[i].len == len && memcmp(n->props[i].name, name, len) == 0)
		{
			*declared = true;
			return n->props[i].schema;
		}
	return n->additional_props;
}

static bool
has_name(EvcProp *names, int n, const char *name, int len)
{
	for (int i = 0; i < n; i++)
		if (names[i].len == len && memcmp(names[i].name, name, len) == 0)
			return true;
	return false;
}

static bool
objects_subset(ProofCtx *pc, EvcNode *a, EvcNode *b, const char *where)
{
	if (b->min_props > 0 && a->min_props < b->min_props)
		return fail(pc, where, "\"minProperties\" %d is not implied by the other version", b->min_props);
	if (b->max_props >= 0 && (a->max_props < 0 || a->max_props > b->max_props))
		return fail(pc, where, "\"maxProperties\" %d is not implied by the other version", b->max_props);
	for (int i = 0; i < b->n_required; i++)
		if (!has_name(a->required, a->n_required, b->required[i].name, b->required[i].len))
			return fail(pc, where, "property \"%.*s\" became required",
						b->required[i].len, b->required[i].name);
	if (!same_keyword(a, b, "patternProperties") || !same_keyword(a, b, "propertyNames") ||
		!same_keyword(a, b, "dependencies"))
		return fail(pc, where, "%s", "\"patternProperties\", \"propertyNames\" or \"dependencies\" changed; only identical ones can be proven");
	if (a->n_pat_props > 0 && !same_keyword(b, a, "patternProperties"))
		return fail(pc, where, "%s", "\"patternProperties\" was removed");

	/* properties named on either side */
	for (int side = 0; side < 2; side++)
	{
		EvcNode    *n = side == 0 ? a : b;

		for (int i = 0; i < n->n_props; i++)
		{
			bool		a_declared,
						b_declared;
			const char *name = n->props[i].name;
			int			len = n->props[i].len;
			EvcNode    *as = prop_schema(a, name, len, &a_declared);
			EvcNode    *bs = prop_schema(b, name, len, &b_declared);
			const char *w = sub(where, pnstrdup(name, len));

			if (side == 1 && a_declared)
				continue;		/* done in the first pass */
			if (is_true(bs))
				continue;
			if (!a_declared && a->n_pat_props == 0 && is_true(as))
				continue;		/* the relaxation: an undeclared property of an open object */
			if (as != NULL && as->is_bool && !as->bool_value)
				continue;		/* A never allowed it */
			if (as == NULL)
				return fail(pc, w, "%s", "property became constrained");
			if (!subset(pc, as, bs, w))
				return false;
		}
	}
	/* every other name */
	if (!is_true(b->additional_props))
	{
		if (a->additional_props == NULL)
			return fail(pc, where, "%s", "\"additionalProperties\" became constrained");
		if (!subset(pc, a->additional_props, b->additional_props, sub(where, "*")))
			return false;
	}
	return true;
}

static bool
keywords_subset(ProofCtx *pc, EvcNode *a, EvcNode *b, const char *where)
{
	uint8		ta = effective_types(a);
	uint8		tb = effective_types(b);

	if (ta & ~tb)
		return fail(pc, where, "\"type\" no longer allows %s", 
					(ta & ~tb & EVC_T_STRING) ? "strings" : (ta & ~tb & EVC_T_OBJECT) ? "objects" :
					(ta & ~tb & EVC_T_ARRAY) ? "arrays" : (ta & ~tb & EVC_T_NULL) ? "null" :
					(ta & ~tb & EVC_T_BOOLEAN) ? "booleans" : "numbers");
	if (b->enum_vals || b->has_const)
		return fail(pc, where, "%s", "\"enum\" or \"const\" does not cover every value the other version allows");
	if ((ta & (EVC_T_NUMBER | EVC_T_INTEGER)) && !numbers_subset(pc, a, b, where))
		return false;
	if ((ta & EVC_T_STRING) && !strings_subset(pc, a, b, where))
		return false;
	if ((ta & EVC_T_ARRAY) && !arrays_subset(pc, a, b, where))
		return false;
	if ((ta & EVC_T_OBJECT) && !objects_subset(pc, a, b, where))
		return false;
	if (b->not_ || b->one_of || b->if_)
	{
		if (!same_keyword(a, b, "not") || !same_keyword(a, b, "oneOf") ||
			!same_keyword(a, b, "if") || !same_keyword(a, b, "then") ||
			!same_keyword(a, b, "else"))
			return fail(pc, where, "%s", "\"not\", \"oneOf\" or \"if\" changed; only identical ones can be proven");
	}
	for (int i = 0; i < b->n_all_of; i++)
		if (!subset(pc, a, b->all_of[i], sub(where, "")))
			return false;
	if (b->any_of)
	{
		if (same_keyword(a, b, "anyOf") && a->any_of)
			return true;
		for (int i = 0; i < b->n_any_of; i++)
		{
			char	   *saved = pc->reason;

			if (subset(pc, a, b->any_of[i], where))
				return true;
			pc->reason = saved;
		}
		return fail(pc, where, "%s", "no branch of \"anyOf\" covers the other version");
	}
	return true;
}

static bool
subset(ProofCtx *pc, EvcNode *a, EvcNode *b, const char *where)
{
	ListCell   *lc;

	check_stack_depth();
	CHECK_FOR_INTERRUPTS();
	while (a->ref)
		a = a->ref;
	while (b->ref)
		b = b->ref;
	if (is_true(b) || (a->is_bool && !a->bool_value))
		return true;
	if (evc_jv_equal(&a->src, &b->src))
		return true;
	if (a->is_bool)
		return fail(pc, where, "%s", "the other version allowed any value here");
	if (b->is_bool)
		return fail(pc, where, "%s", "no value is allowed here any more");

	/*
	 * Recursive schemas: a pair already being proven, further up this
	 * proof, is assumed to hold.  Only while it is being proven: once its
	 * proof returns, the pair comes off the list, so that a pair whose proof
	 * failed is never taken as proven by a later step.
	 */
	for (lc = list_head(pc->assumed); lc; lc = lnext(pc->assumed, lc))
	{
		EvcNode   **pair = lfirst(lc);

		if (pair[0] == a && pair[1] == b)
			return true;
	}
	{
		EvcNode   **pair = palloc(sizeof(EvcNode *) * 2);
		bool		proven;

		pair[0] = a;
		pair[1] = b;
		pc->assumed = lappend(pc->assumed, pair);
		proven = subset_keywords_of(pc, a, b, where);
		Assert(llast(pc->assumed) == pair);
		pc->assumed = list_delete_last(pc->assumed);
		pfree(pair);
		return proven;
	}
}

/* subset() past the trivial cases, with the pair (a, b) assumed. */
static bool
subset_keywords_of(ProofCtx *pc, EvcNode *a, EvcNode *b, const char *where)
{
	/* A with a finite set of values: check each value */
	if (a->enum_vals || a->has_const)
	{
		if (a->has_const)
			return evc_node_accepts(b, &a->const_val) ||
				fail(pc, where, "%s", "the constant of the other version is not valid here");
		for (int i = 0; i < a->n_enum; i++)
			if (!evc_node_accepts(b, &a->enum_vals[i]))
				return fail(pc, where, "enum value %d of the other version is not valid here", i);
		return true;
	}
	/* A as a union: every branch must be included */
	if (a->any_of || a->one_of)
	{
		EvcNode   **br = a->any_of ? a->any_of : a->one_of;
		int			nbr = a->any_of ? a->n_any_of : a->n_one_of;
		bool		all = true;

		for (int i = 0; i < nbr && all; i++)
			all = subset(pc, br[i], b, where);
		if (all)
			return true;
		pc->reason = NULL;
	}
	if (keywords_subset(pc, a, b, where))
		return true;
	/* A as an intersection: one part may be enough */
	for (int i = 0; i < a->n_all_of; i++)
	{
		char	   *saved = pc->reason;

		pc->reason = NULL;
		if (subset(pc, a->all_of[i], b, where))
			return true;
		pc->reason = saved;
	}
	return false;
}

/*
 * Whether every instance valid under a is also valid under b.  When that
 * cannot be proven, *where names the instance-side place ("the root" or a
 * path) and *reason what broke there.
 */
bool
evc_schema_subset(EvcCompiledSchema *a, EvcCompiledSchema *b,
				  char **where, char **reason)
{
	ProofCtx	pc;

	memset(&pc, 0, sizeof(pc));
	initStringInfo(&pc.where);
	if (subset(&pc, a->root, b->root, ""))
		return true;
	*where = pc.where.data[0] ? pc.where.data : "the root";
	*reason = pc.reason ? pc.reason : "inclusion cannot be proven";
	return false;
}
