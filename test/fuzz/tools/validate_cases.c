/*
 * validate_cases.c
 *		The validator as a filter, for the differential check against
 *		Python's jsonschema (test/fuzz/differential.py): reads one case a
 *		line, the schema's JSON text, a tab, the instance's JSON text (JSON
 *		text has no raw tab), and writes one answer a
 *		line: "valid", "invalid", or "error SQLSTATE message" when the
 *		schema does not compile.  The instance also goes through the text
 *		path, which must agree.  Built on the fuzz harness, with the
 *		sanitizers, but no libFuzzer.
 */
#include "fuzz_pg.h"

#include <stdio.h>

#include "utils/memutils.h"

#include "jsonschema/validate_int.h"

typedef struct Case
{
	Jsonb	   *schema;
	Jsonb	   *instance;
	const char *instance_text;
	const char *answer;
} Case;

static EvcTextBuf text_buf;

static void
run_case(void *arg)
{
	Case	   *c = arg;
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "case", ALLOCSET_SMALL_SIZES);
	EvcCompiledSchema *cs;

	/* as the registry takes a schema: the meta-schema first, then compiled */
	evc_check_schema(c->schema);
	cs = evc_schema_compile(c->schema, NULL, cxt);

	c->answer = evc_validate_jsonb(cs, c->instance, NULL) ? "valid" : "invalid";
	/* the text path (evc_validate(schema, text)) must give the same answer */
	{
		JV			tree;

		if (evc_text_to_tree(c->instance_text, strlen(c->instance_text), &text_buf, &tree) &&
			evc_node_accepts(cs->root, &tree) != (c->answer[0] == 'v'))
			c->answer = "text path disagrees with jsonb path";
	}
}

int
main(int argc, char **argv)
{
	char	   *line = NULL;
	size_t		cap = 0;
	ssize_t		n;

	fuzz_pg_init();
	evc_text_buf_init(&text_buf, TopMemoryContext);
	while ((n = getline(&line, &cap, stdin)) > 0)
	{
		Case		c = {NULL, NULL, NULL, NULL};
		char	   *tab = strchr(line, '\t');

		fuzz_begin();
		if (line[n - 1] == '\n')
			line[n - 1] = '\0';
		if (tab == NULL)
			fuzz_fail("a case has no tab");
		*tab = '\0';
		c.schema = fuzz_parse_jsonb(line);
		c.instance = fuzz_parse_jsonb(tab + 1);
		c.instance_text = tab + 1;
		if (c.schema == NULL || c.instance == NULL)
			printf("error %s %s\n", unpack_sql_state(fuzz_last_sqlerrcode), fuzz_last_message);
		else if (fuzz_run(run_case, &c))
			printf("%s\n", c.answer);
		else
			printf("error %s %s\n", unpack_sql_state(fuzz_last_sqlerrcode), fuzz_last_message);
		fflush(stdout);
	}
	free(line);
	return 0;
}
