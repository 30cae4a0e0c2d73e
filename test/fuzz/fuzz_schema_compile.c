/*
 * fuzz_schema_compile.c
 *		The JSON Schema compiler on any JSON: evc_schema_compile, then the
 *		compiled schema checking a few instances, itself among them, and
 *		evc_check_schema (the meta-schema check the registry runs first).
 *
 * Input: JSON text.  Text that jsonb_in refuses is of no interest here (the
 * text reader has a target of its own).  A schema that does not compile
 * must be refused with an ereport; anything else is a finding.
 */
#include "fuzz_pg.h"

#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/memutils.h"

#include "jsonschema/validate_int.h"

static const char *const instances[] = {
	"null", "true", "0", "-1.5", "1e400", "\"\"", "\"a\"", "[]", "[1, \"a\", null]",
	"{}", "{\"a\": 1, \"b\": [true]}",
};

static void
compile_and_use(void *arg)
{
	Jsonb	   *schema = arg;
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "fuzz schema",
											  ALLOCSET_SMALL_SIZES);
	EvcCompiledSchema *cs = evc_schema_compile(schema, NULL, cxt);
	EvcValidationError err;
	char	   *where,
			   *reason;

	evc_validate_jsonb(cs, schema, &err);
	for (int i = 0; i < lengthof(instances); i++)
	{
		Jsonb	   *inst = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
															  CStringGetDatum(instances[i])));
		bool		quiet = evc_validate_jsonb(cs, inst, NULL);

		if (quiet != evc_validate_jsonb(cs, inst, &err))
			fuzz_fail("validation gives two answers with and without an error report");
	}
	evc_schema_subset(cs, cs, &where, &reason);
	MemoryContextDelete(cxt);
}

static void
check_schema(void *arg)
{
	evc_check_schema((Jsonb *) arg);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Jsonb	   *schema;

	fuzz_begin();
	schema = fuzz_parse_jsonb(fuzz_cstring(data, size));
	if (schema == NULL)
		return 0;
	fuzz_run(compile_and_use, schema);
	fuzz_run(check_schema, schema);
	return 0;
}
