/*
 * fmgr_args.c
 *		Owns how evcollector's SQL functions take their arguments.
 *
 * Functions with optional arguments cannot be STRICT, so they check their
 * required ones themselves.  A NULL there is refused with
 * ERRCODE_NULL_VALUE_NOT_ALLOWED and the argument's SQL name ("client must
 * not be null"), rather than answered with a NULL that would hide the
 * mistake; the regression tests pin these messages.  An optional argument
 * comes back as C NULL.
 */
#include "postgres.h"

#include "utils/builtins.h"

#include "util/fmgr_args.h"

/* Argument n as a Datum; name is its SQL name, for the error. */
Datum
evc_arg_required(FunctionCallInfo fcinfo, int n, const char *name)
{
	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
	return PG_GETARG_DATUM(n);
}

/* A required text argument, as a C string. */
char *
evc_arg_text(FunctionCallInfo fcinfo, int n, const char *name)
{
	return TextDatumGetCString(evc_arg_required(fcinfo, n, name));
}

/* An optional text argument, as a C string; NULL when SQL NULL. */
char *
evc_arg_text_or_null(FunctionCallInfo fcinfo, int n)
{
	return PG_ARGISNULL(n) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(n));
}

/* A required jsonb argument, detoasted. */
Jsonb *
evc_arg_jsonb(FunctionCallInfo fcinfo, int n, const char *name)
{
	return DatumGetJsonbP(evc_arg_required(fcinfo, n, name));
}

/* An optional jsonb argument, detoasted; NULL when SQL NULL. */
Jsonb *
evc_arg_jsonb_or_null(FunctionCallInfo fcinfo, int n)
{
	return PG_ARGISNULL(n) ? NULL : PG_GETARG_JSONB_P(n);
}
