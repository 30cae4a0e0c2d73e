/*
 * fuzz_validate_instance.c
 *		The validator: a fixed set of schemas, compiled once, against any
 *		instance.
 *
 * Input: one byte choosing the schema, then the instance as JSON text.
 * Each instance is checked on both of the validator's paths, the jsonb one
 * (evc_validate_jsonb, as the registry runs it) and the text one
 * (validate_text.c's tree, as evc_validate(schema, text) runs it), with and
 * without an error report.  All must give one answer.
 */
#include "fuzz_pg.h"

#include "utils/memutils.h"

#include "jsonschema/validate_int.h"

/*
 * Schemas that between them use every keyword group: formats, patterns
 * (ECMA-262 rewritten for PostgreSQL's regex engine), exact decimal bounds,
 * uniqueItems, dependencies, combinators, and recursive and remote $refs.
 */
static const char *const schema_texts[] = {
	"{\"$ref\": \"http://json-schema.org/draft-07/schema#\"}",
	"{\"type\": \"object\", \"required\": [\"fruit\", \"quantity\"],"
	" \"properties\": {\"fruit\": {\"enum\": [\"apple\", \"banana\", \"cherry\"]},"
	" \"quantity\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 1000}},"
	" \"additionalProperties\": false}",
	"{\"type\": \"object\", \"properties\": {\"d\": {\"format\": \"date-time\"},"
	" \"e\": {\"format\": \"email\"}, \"h\": {\"format\": \"hostname\"},"
	" \"i\": {\"format\": \"ipv6\"}, \"u\": {\"format\": \"uri\"}, \"r\": {\"format\": \"regex\"},"
	" \"p\": {\"format\": \"json-pointer\"}, \"t\": {\"format\": \"uri-template\"},"
	" \"id\": {\"format\": \"uuid\"}, \"v4\": {\"format\": \"ipv4\"}, \"tm\": {\"format\": \"time\"}},"
	" \"patternProperties\": {\"^x-[a-z]+$\": {\"type\": \"string\", \"pattern\": \"^\\\\w+\\\\d*$\"}}}",
	"{\"anyOf\": [{\"multipleOf\": 0.1}, {\"multipleOf\": 7, \"exclusiveMinimum\": -1e20}],"
	" \"not\": {\"const\": 12345678901234567890.5}, \"maximum\": 1e400}",
	"{\"type\": \"array\", \"uniqueItems\": true, \"items\": [{\"type\": \"string\", \"minLength\": 2,"
	" \"maxLength\": 5}], \"additionalItems\": {\"type\": [\"number\", \"null\", \"object\"]},"
	" \"contains\": {\"const\": {\"a\": [1, 2.0]}}, \"maxItems\": 50}",
	"{\"definitions\": {\"node\": {\"type\": \"object\", \"properties\": {\"v\": {\"type\": \"number\"},"
	" \"next\": {\"$ref\": \"#/definitions/node\"}}, \"dependencies\": {\"v\": [\"next\"],"
	" \"w\": {\"required\": [\"v\"]}}, \"propertyNames\": {\"maxLength\": 4}}},"
	" \"oneOf\": [{\"$ref\": \"#/definitions/node\"}, {\"type\": \"array\"}],"
	" \"if\": {\"minProperties\": 2}, \"then\": {\"maxProperties\": 3}, \"else\": true}",
	"{\"$id\": \"http://localhost:1234/\", \"items\": {\"$ref\": \"folder/folderInteger.json\"},"
	" \"properties\": {\"n\": {\"$ref\": \"name.json#/definitions/orNull\"}}}",
	"{\"properties\": {\"s\": {\"pattern\": \"^[\\\\u0041-\\\\u005a]{2,}(?:-\\\\d+)?$\"},"
	" \"c\": {\"pattern\": \"\\\\cJ|[^\\\\s\\\\S]|\\\\bx\\\\B|\\\\D\\\\W\"}}, \"additionalProperties\": {\"not\": {}}}",
};

#define N_SCHEMAS lengthof(schema_texts)

static EvcCompiledSchema *schemas[N_SCHEMAS];

static void
compile_all(void *arg)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "fuzz schemas",
											  ALLOCSET_DEFAULT_SIZES);

	for (int i = 0; i < N_SCHEMAS; i++)
	{
		Jsonb	   *jb = fuzz_parse_jsonb(schema_texts[i]);

		if (jb == NULL)
			fuzz_fail("schema %d is not JSON: %s", i, fuzz_last_message);
		schemas[i] = evc_schema_compile(jb, NULL, cxt);
	}
}

typedef struct InstanceCase
{
	EvcCompiledSchema *schema;
	const char *text;
	EvcTextBuf *buf;
} InstanceCase;

static void
validate_both(void *arg)
{
	InstanceCase *ic = arg;
	Jsonb	   *jb = fuzz_parse_jsonb(ic->text);
	EvcValidationError err;
	JV			tree;
	bool		answer;

	if (jb == NULL)
		return;
	answer = evc_validate_jsonb(ic->schema, jb, NULL);
	if (evc_validate_jsonb(ic->schema, jb, &err) != answer)
		fuzz_fail("the jsonb path gives two answers with and without an error report");
	if (!answer && (err.message == NULL || err.keyword == NULL || err.schema_path == NULL))
		fuzz_fail("an invalid instance has no error report");
	if (evc_text_to_tree(ic->text, strlen(ic->text), ic->buf, &tree))
	{
		if (evc_node_accepts(ic->schema->root, &tree) != answer)
			fuzz_fail("the text path and the jsonb path disagree");
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static EvcTextBuf buf;
	InstanceCase ic;

	if (size < 1)
		return 0;
	fuzz_begin();
	if (schemas[0] == NULL)
	{
		if (!fuzz_run(compile_all, NULL))
			fuzz_fail("the fixed schemas do not compile: %s", fuzz_last_message);
		evc_text_buf_init(&buf, TopMemoryContext);
	}
	ic.schema = schemas[data[0] % N_SCHEMAS];
	ic.text = fuzz_cstring(data + 1, size - 1);
	ic.buf = &buf;
	fuzz_run(validate_both, &ic);
	return 0;
}
