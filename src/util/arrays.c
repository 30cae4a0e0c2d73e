/*
 * arrays.c
 *		Owns how evcollector builds the arrays it passes to SQL: a batch
 *		goes to the server as one statement whose parameters are columns
 *		(unnest($1, $2, ...)), not as one statement per row.
 *
 * construct_array wants each element type's length, by-value flag and
 * alignment.  They are written once here, for the few built-in types the
 * batches use, rather than repeated at every call or looked up in the
 * syscache.  An array is built in the current memory context and copies
 * its elements.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"

#include "util/arrays.h"

/*
 * An array of n elements of elemtype; nulls may be NULL when none is
 * null.  n may be 0, which gives the empty array.
 */
ArrayType *
evc_array_from_datums(Oid elemtype, Datum *elems, bool *nulls, int n)
{
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int			typlen;
	bool		typbyval;
	char		typalign;

	switch (elemtype)
	{
		case TEXTOID:
		case NUMERICOID:
			typlen = -1;
			typbyval = false;
			typalign = TYPALIGN_INT;
			break;
		case INT4OID:
			typlen = sizeof(int32);
			typbyval = true;
			typalign = TYPALIGN_INT;
			break;
		case INT8OID:
		case TIMESTAMPTZOID:
			typlen = sizeof(int64);
			typbyval = FLOAT8PASSBYVAL;
			typalign = TYPALIGN_DOUBLE;
			break;
		default:
			elog(ERROR, "no array builder for element type %u", elemtype);
			return NULL;		/* keep compiler quiet */
	}
	return construct_md_array(elems, nulls, 1, dims, lbs, elemtype, typlen, typbyval, typalign);
}

/* A text[] of a list of C strings, in list order. */
ArrayType *
evc_text_array_from_list(List *strings)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(list_length(strings), 1));
	ListCell   *lc;

	foreach(lc, strings)
		elems[foreach_current_index(lc)] = CStringGetTextDatum(lfirst(lc));
	return evc_array_from_datums(TEXTOID, elems, NULL, list_length(strings));
}
