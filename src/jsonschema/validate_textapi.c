/*
 * validate_textapi.c
 *		The text reader's tree (validate_text.c) as a document for callers
 *		outside the validator: read a JSON text once, walk it, check a value
 *		against a compiled schema, and print a value as JsonbToCString
 *		prints the same value stored as jsonb.  The gateway's /v1/batch
 *		reads its body this way instead of through jsonb_in.
 *
 * Every answer either is the one the jsonb way gives or is "not sure"
 * (NULL or false), and the caller then takes the jsonb way: the reader
 * already says "not sure" for whatever jsonb_in could treat specially, and
 * the printer does for the one thing it cannot print exactly, a number
 * that numeric_out would write differently (an exponent, a negative zero).
 *
 * Memory: the tree lives in a buffer kept in TopMemoryContext and reused
 * by the next evc_jtext_read, which makes every value of the document
 * before it dead.  The buffer's overflow, for a large text, is in
 * CurrentMemoryContext.
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/memutils.h"

#include "validate_int.h"

static EvcTextBuf doc_buf;
static bool doc_buf_ready = false;
static JV	doc_root;

static inline const JV *
as_jv(const EvcJtextValue *v)
{
	return (const JV *) v;
}

const EvcJtextValue *
evc_jtext_read(const char *text, int len)
{
	if (!doc_buf_ready)
	{
		evc_text_buf_init(&doc_buf, TopMemoryContext);
		doc_buf_ready = true;
	}
	if (!evc_text_to_tree(text, len, &doc_buf, &doc_root))
		return NULL;
	return (const EvcJtextValue *) &doc_root;
}

bool
evc_jtext_is_object(const EvcJtextValue *v)
{
	return as_jv(v)->type == JV_OBJECT;
}

bool
evc_jtext_is_null(const EvcJtextValue *v)
{
	return as_jv(v)->type == JV_NULL;
}

int
evc_jtext_array_length(const EvcJtextValue *v)
{
	return as_jv(v)->type == JV_ARRAY ? as_jv(v)->len : -1;
}

const EvcJtextValue *
evc_jtext_array_element(const EvcJtextValue *v, int i)
{
	const JV   *a = as_jv(v);

	Assert(a->type == JV_ARRAY && a->src == JVS_TREE && i >= 0 && i < a->len);
	return (const EvcJtextValue *) &a->u.tree->items[i];
}

/* The member key of an object, or NULL; the tree keeps one per key. */
const EvcJtextValue *
evc_jtext_object_field(const EvcJtextValue *v, const char *key)
{
	const JV   *o = as_jv(v);
	int			keylen = strlen(key);

	Assert(o->type == JV_OBJECT && o->src == JVS_TREE);
	for (int i = 0; i < o->len; i++)
	{
		const JV   *k = &o->u.tree->items[2 * i];

		if (k->len == keylen && memcmp(k->u.str, key, keylen) == 0)
			return (const EvcJtextValue *) (k + 1);
	}
	return NULL;
}

const char *
evc_jtext_string(const EvcJtextValue *v, int *len)
{
	const JV   *s = as_jv(v);

	if (s->type != JV_STRING)
		return NULL;
	*len = s->len;
	return s->u.str;
}

bool
evc_validate_json_value(EvcCompiledSchema *schema, const EvcJtextValue *v)
{
	return evc_node_accepts(schema->root, as_jv(v));
}

/*
 * A string as escape_json writes it.  The tree's strings are not
 * NUL-terminated (and hold no NUL: the reader refuses \u0000), so runs of
 * bytes that need no escape go in whole.
 */
static void
print_string(StringInfo out, const char *s, int len)
{
	int			run = 0;

	appendStringInfoCharMacro(out, '"');
	for (int i = 0; i < len; i++)
	{
		unsigned char c = s[i];
		const char *esc;

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		appendBinaryStringInfo(out, s + run, i - run);
		run = i + 1;
		switch (c)
		{
			case '\b':
				esc = "\\b";
				break;
			case '\f':
				esc = "\\f";
				break;
			case '\n':
				esc = "\\n";
				break;
			case '\r':
				esc = "\\r";
				break;
			case '\t':
				esc = "\\t";
				break;
			case '"':
				esc = "\\\"";
				break;
			case '\\':
				esc = "\\\\";
				break;
			default:
				appendStringInfo(out, "\\u%04x", (int) c);
				continue;
		}
		appendStringInfoString(out, esc);
	}
	appendBinaryStringInfo(out, s + run, len - run);
	appendStringInfoCharMacro(out, '"');
}

/*
 * A number's JSON text is what numeric_out writes for it unless it has an
 * exponent (numeric_out writes none) or is a negative zero (numeric has
 * none): JSON allows no leading zeros or "+", and numeric keeps the
 * digits after the point that the text has.
 */
static bool
print_number(StringInfo out, const char *s, int len)
{
	bool		nonzero = false;

	for (int i = 0; i < len; i++)
	{
		if (s[i] == 'e' || s[i] == 'E')
			return false;
		if (s[i] >= '1' && s[i] <= '9')
			nonzero = true;
	}
	if (s[0] == '-' && !nonzero)
		return false;
	appendBinaryStringInfo(out, s, len);
	return true;
}

/* JsonbToCString's layout: ", " between members, ": " after a key. */
static bool
print_value(StringInfo out, const JV *v, int depth)
{
	if (depth % 4 == 0)
		check_stack_depth();
	switch (v->type)
	{
		case JV_NULL:
			appendStringInfoString(out, "null");
			return true;
		case JV_BOOL:
			appendStringInfoString(out, v->u.boolean ? "true" : "false");
			return true;
		case JV_STRING:
			print_string(out, v->u.str, v->len);
			return true;
		case JV_NUMBER:
			return print_number(out, v->u.str, v->len);
		case JV_ARRAY:
		case JV_OBJECT:
			{
				bool		object = (v->type == JV_OBJECT);
				const JV   *items = v->u.tree->items;

				appendStringInfoCharMacro(out, object ? '{' : '[');
				for (int i = 0; i < v->len; i++)
				{
					if (i > 0)
						appendBinaryStringInfo(out, ", ", 2);
					if (object)
					{
						print_string(out, items->u.str, items->len);
						appendBinaryStringInfo(out, ": ", 2);
						items++;
					}
					if (!print_value(out, items++, depth + 1))
						return false;
				}
				appendStringInfoCharMacro(out, object ? '}' : ']');
				return true;
			}
	}
	return false;
}

bool
evc_jtext_print(StringInfo out, const EvcJtextValue *v)
{
	Assert(as_jv(v)->src == JVS_TREE);
	return print_value(out, as_jv(v), 0);
}
