/*
 * validate_regex.c
 *		JSON Schema "pattern" and "patternProperties" on PostgreSQL's regex
 *		engine (Henry Spencer's ARE: a hybrid DFA/NFA that does not
 *		backtrack on plain alternation and repetition).
 *
 * Patterns are written for ECMA-262.  The few places where the two
 * dialects mean different things are rewritten before compiling:
 *	\d \w \s (and \D \W \S outside brackets) get ECMA's ASCII / Unicode
 *	space sets; "." stops at line terminators; \b and \B become \y and \Y.
 * Everything else is passed through, so ECMA features ARE lacks (named
 * groups, \p{...}, [^] ...) are refused when the schema is compiled.
 *
 * regex_t keeps its state in malloc'd memory: a reset callback on the
 * owning memory context frees it when the compiled schema goes away.
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "regex/regex.h"
#include "utils/memutils.h"

#include "validate_int.h"

struct EvcRegex
{
	regex_t		re;
	MemoryContextCallback cb;
	bool		live;
};

#define ECMA_SPACE "\\t\\n\\v\\f\\r \\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000\\ufeff"

/* Rewrite an ECMA-262 pattern into ARE syntax (see the file comment). */
static char *
ecma_to_are(const char *p, int len)
{
	StringInfoData s;
	bool		in_class = false;

	initStringInfo(&s);
	for (int i = 0; i < len; i++)
	{
		char		c = p[i];

		if (c == '\\' && i + 1 < len)
		{
			char		n = p[++i];
			const char *rep = NULL;

			if (in_class)
			{
				if (n == 'd')
					rep = "0-9";
				else if (n == 'w')
					rep = "A-Za-z0-9_";
				else if (n == 's')
					rep = ECMA_SPACE;
			}
			else
			{
				switch (n)
				{
					case 'd':
						rep = "[0-9]";
						break;
					case 'D':
						rep = "[^0-9]";
						break;
					case 'w':
						rep = "[A-Za-z0-9_]";
						break;
					case 'W':
						rep = "[^A-Za-z0-9_]";
						break;
					case 's':
						rep = "[" ECMA_SPACE "]";
						break;
					case 'S':
						rep = "[^" ECMA_SPACE "]";
						break;
					case 'b':
						rep = "\\y";
						break;
					case 'B':
						rep = "\\Y";
						break;
				}
			}
			if (rep)
				appendStringInfoString(&s, rep);
			else
			{
				appendStringInfoChar(&s, '\\');
				appendStringInfoChar(&s, n);
			}
			continue;
		}
		if (in_class)
		{
			if (c == ']')
				in_class = false;
			appendStringInfoChar(&s, c);
		}
		else if (c == '[')
		{
			in_class = true;
			appendStringInfoChar(&s, c);
			/* a leading ] or ^] is literal in ARE but ends the class in ECMA */
			if (i + 1 < len && p[i + 1] == '^')
				appendStringInfoChar(&s, p[++i]);
		}
		else if (c == '.')
			appendStringInfoString(&s, "[^\\n\\r\\u2028\\u2029]");
		else
			appendStringInfoChar(&s, c);
	}
	return s.data;
}

static void
regex_free_callback(void *arg)
{
	EvcRegex   *re = arg;

	if (re->live)
		pg_regfree(&re->re);
	re->live = false;
}

/* Compile in CurrentMemoryContext; NULL and *errmsg when the pattern is bad. */
EvcRegex *
evc_regex_compile(const char *pattern, int len, char **errmsg)
{
	char	   *are = ecma_to_are(pattern, len);
	int			alen = strlen(are);
	pg_wchar   *w = palloc((alen + 1) * sizeof(pg_wchar));
	int			wlen = pg_mb2wchar_with_len(are, w, alen);
	EvcRegex   *re = palloc0(sizeof(EvcRegex));
	int			rc;

	rc = pg_regcomp(&re->re, w, wlen, REG_ADVANCED | REG_NOSUB, C_COLLATION_OID);
	pfree(w);
	if (rc != REG_OKAY)
	{
		char		buf[256];

		pg_regerror(rc, &re->re, buf, sizeof(buf));
		*errmsg = psprintf("pattern \"%.*s\" is not supported: %s", len, pattern, buf);
		pfree(re);
		return NULL;
	}
	re->live = true;
	re->cb.func = regex_free_callback;
	re->cb.arg = re;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &re->cb);
	return re;
}

/* ECMA semantics: a match anywhere in the string (search, not full match). */
bool
evc_regex_match(EvcRegex *re, const char *s, int len)
{
	pg_wchar	local[256];
	pg_wchar   *w = local;
	int			wlen;
	int			rc;
	bool		ascii = true;

	if (len >= lengthof(local))
		w = palloc((len + 1) * sizeof(pg_wchar));
	for (int i = 0; i < len; i++)
		if ((unsigned char) s[i] >= 0x80)
		{
			ascii = false;
			break;
		}
	if (ascii)
	{
		for (int i = 0; i < len; i++)
			w[i] = (unsigned char) s[i];
		wlen = len;
	}
	else
		wlen = pg_mb2wchar_with_len(s, w, len);

	rc = pg_regexec(&re->re, w, wlen, 0, NULL, 0, NULL, 0);
	if (w != local)
		pfree(w);
	if (rc == REG_OKAY)
		return true;
	if (rc == REG_NOMATCH)
		return false;
	{
		char		buf[256];

		CHECK_FOR_INTERRUPTS();
		pg_regerror(rc, &re->re, buf, sizeof(buf));
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_REGULAR_EXPRESSION),
				 errmsg("regular expression failed: %s", buf)));
	}
	return false;
}

void
evc_regex_free(EvcRegex *re)
{
	regex_free_callback(re);
}
