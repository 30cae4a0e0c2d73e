/*
 * fuzz_json_text.c
 *		The validator's JSON text reader (validate_text.c) against jsonb_in.
 *
 * The reader promises one answer on both paths (src/jsonschema/README.md):
 * when it says it is sure, jsonb_in must accept the same text and hold the
 * same value (evc_jv_equal, and the same hash, since uniqueItems relies on
 * it).  When it is not sure, jsonb_in decides, and may raise its error.
 *
 * The gateway's batch path (validate_textapi.c) also prints values read
 * this way as the event's data_json: when evc_jtext_print says it can, its
 * text must be JsonbToCString's of the same value, byte for byte.
 */
#include "fuzz_pg.h"

#include "mb/pg_wchar.h"
#include "utils/memutils.h"

#include "jsonschema/validate.h"
#include "jsonschema/validate_int.h"

typedef struct TextCase
{
	const char *text;
	int			len;
	EvcTextBuf *buf;
} TextCase;

/* evc_jtext_print of the text against jsonb's own printing of jb. */
static void
print_both(TextCase *tc, Jsonb *jb)
{
	const EvcJtextValue *v = evc_jtext_read(tc->text, tc->len);
	StringInfoData printed;
	char	   *want;

	if (v == NULL)
		fuzz_fail("evc_jtext_read refused a text the reader accepted");
	initStringInfo(&printed);
	if (!evc_jtext_print(&printed, v))
		return;
	want = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	if (strcmp(printed.data, want) != 0)
		fuzz_fail("evc_jtext_print gave %s where jsonb prints %s", printed.data, want);
}

static void
read_both(void *arg)
{
	TextCase   *tc = arg;
	JV			tree;
	JV			root;
	Jsonb	   *jb;

	if (!evc_text_to_tree(tc->text, tc->len, tc->buf, &tree))
		return;
	jb = fuzz_parse_jsonb(tc->text);
	if (jb == NULL)
		fuzz_fail("the text reader accepted what jsonb_in refuses: %s", fuzz_last_message);
	evc_jv_root(jb, &root);
	if (!evc_jv_equal(&tree, &root) || !evc_jv_equal(&root, &tree))
		fuzz_fail("the text reader and jsonb_in read different values");
	if (evc_jv_hash(&tree) != evc_jv_hash(&root))
		fuzz_fail("equal values from the text reader and jsonb_in hash differently");
	print_both(tc, jb);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static EvcTextBuf buf;
	static bool buf_ready = false;
	TextCase	tc;

	fuzz_begin();
	if (!buf_ready)
	{
		/* kept across inputs, as the reader's call site keeps it in fn_extra */
		evc_text_buf_init(&buf, TopMemoryContext);
		buf_ready = true;
	}
	/* jsonb_in reads a C string: a NUL in the input ends the text for both */
	tc.text = fuzz_cstring(data, size);
	tc.len = strlen(tc.text);
	/* text reaches evc_validate only once the server checked its encoding */
	if (!pg_verifymbstr(tc.text, tc.len, true))
		return 0;
	tc.buf = &buf;
	fuzz_run(read_both, &tc);
	return 0;
}
