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

/*
 * Most schema patterns are a plain sequence of characters and classes with
 * quantifiers (^[A-Z]{2}$, ^ord_[0-9a-f]{12}$).  For those, and for ASCII
 * strings, a bit-parallel NFA answers with no allocation and no setup:
 * item i of the sequence is bit i, and bit n is "matched".  Anything else
 * (groups, alternation, backreferences, lookaround, non-ASCII text ...)
 * goes to the regex engine, which stays the reference: the simple matcher
 * takes only patterns whose meaning is the same in ECMA-262 and in ARE.
 */
#define SIMPLE_MAX_ITEMS 63

typedef struct SimpleRe
{
	uint64		accepts[128];	/* bit i: item i accepts this ASCII byte */
	uint64		loop;			/* items that may repeat */
	uint64		skip;			/* items that may be left out */
	uint64		start;			/* the states before any input */
	int			n;				/* items; bit n is the accepting state */
	bool		anchored_start;
	bool		anchored_end;
	bool		fixed;			/* anchored at both ends, no item repeats or may be
								 * left out: a match is n bytes, byte i taken by item i */
} SimpleRe;

struct EvcRegex
{
	regex_t		re;
	const char *source;			/* the ECMA-262 pattern, for messages */
	SimpleRe   *simple;			/* or NULL */
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

/* ---------- the simple matcher ---------- */

/* States reachable from d by leaving out optional items. */
static inline uint64
simple_closure(const SimpleRe *sr, uint64 d)
{
	uint64		next;

	while ((next = d | ((d & sr->skip) << 1)) != d)
		d = next;
	return d;
}

typedef struct ClassSet
{
	uint64		lo;				/* bytes 0..63 */
	uint64		hi;				/* bytes 64..127 */
} ClassSet;

static inline void
class_add(ClassSet *c, int ch)
{
	if (ch < 64)
		c->lo |= UINT64CONST(1) << ch;
	else
		c->hi |= UINT64CONST(1) << (ch - 64);
}

static void
class_add_range(ClassSet *c, int from, int to)
{
	for (int ch = from; ch <= to; ch++)
		class_add(c, ch);
}

/* \d \w \s (their ASCII part: the text is ASCII), or false for other letters. */
static bool
class_escape(ClassSet *c, char e)
{
	switch (e)
	{
		case 'd':
			class_add_range(c, '0', '9');
			return true;
		case 'w':
			class_add_range(c, '0', '9');
			class_add_range(c, 'A', 'Z');
			class_add_range(c, 'a', 'z');
			class_add(c, '_');
			return true;
		case 's':
			class_add_range(c, '\t', '\r');	/* \t \n \v \f \r */
			class_add(c, ' ');
			return true;
	}
	return false;
}

/* A single escaped character (\. \n ...): its byte, or -1. */
static int
escaped_char(char e)
{
	switch (e)
	{
		case 'n':
			return '\n';
		case 'r':
			return '\r';
		case 't':
			return '\t';
		case 'f':
			return '\f';
		case 'v':
			return '\v';
	}
	if ((unsigned char) e < 0x80 && !isalnum((unsigned char) e) && e != '\0')
		return e;
	return -1;
}

/* A bracket class at p[*i] ("["): false when the dialects could differ on it. */
static bool
simple_class(const char *p, int len, int *i, ClassSet *c)
{
	bool		negate = false;
	int			j = *i + 1;
	int			first;

	if (j < len && p[j] == '^')
	{
		negate = true;
		j++;
	}
	/* "[]" and "[^]" mean different things in the two dialects */
	if (j >= len || p[j] == ']')
		return false;
	first = j;
	while (j < len && p[j] != ']')
	{
		int			from;
		int			to;

		/* "[" may start [:class:], [.x.] or [=x=] in ARE */
		if ((unsigned char) p[j] >= 0x80 || p[j] == '[')
			return false;
		if (p[j] == '\\')
		{
			if (j + 1 >= len)
				return false;
			if (class_escape(c, p[j + 1]))
			{
				j += 2;
				continue;
			}
			if ((from = escaped_char(p[j + 1])) < 0)
				return false;
			j += 2;
		}
		else
		{
			/* a bare "-" only first or last: elsewhere ARE reads ranges differently */
			if (p[j] == '-' && j != first && !(j + 1 < len && p[j + 1] == ']'))
				return false;
			from = p[j++];
		}
		to = from;
		if (j + 1 < len && p[j] == '-' && p[j + 1] != ']')
		{
			if ((unsigned char) p[j + 1] >= 0x80 || p[j + 1] == '[')
				return false;
			if (p[j + 1] == '\\')
			{
				if (j + 2 >= len || (to = escaped_char(p[j + 2])) < 0)
					return false;
				j += 3;
			}
			else
			{
				to = p[j + 1];
				j += 2;
			}
			if (to < from)
				return false;
		}
		class_add_range(c, from, to);
	}
	if (j >= len)
		return false;
	*i = j + 1;
	if (negate)
	{
		c->lo = ~c->lo;
		c->hi = ~c->hi;
	}
	return true;
}

/* One atom at p[*i]: a character, an escape, "." or a bracket class. */
static bool
simple_atom(const char *p, int len, int *i, ClassSet *c)
{
	unsigned char ch = p[*i];

	memset(c, 0, sizeof(*c));
	if (ch >= 0x80 || ch == '\0' || strchr("()|*+?{}]^$", ch) != NULL)
		return false;
	if (ch == '[')
		return simple_class(p, len, i, c);
	if (ch == '.')
	{
		/* ECMA's "." stops at line terminators (the others are not ASCII) */
		c->lo = ~((UINT64CONST(1) << '\n') | (UINT64CONST(1) << '\r'));
		c->hi = ~UINT64CONST(0);
		(*i)++;
		return true;
	}
	if (ch == '\\')
	{
		char		e;
		int			lit;

		if (*i + 1 >= len)
			return false;
		e = p[*i + 1];
		*i += 2;
		if (class_escape(c, e))
			return true;
		if (e == 'D' || e == 'W' || e == 'S')
		{
			class_escape(c, e - 'A' + 'a');
			c->lo = ~c->lo;
			c->hi = ~c->hi;
			return true;
		}
		if ((lit = escaped_char(e)) < 0)
			return false;
		class_add(c, lit);
		return true;
	}
	class_add(c, ch);
	(*i)++;
	return true;
}

/* A quantifier at p[*i], if any: {min, max}, max -1 for no limit. */
static bool
simple_quantifier(const char *p, int len, int *i, int *min, int *max)
{
	*min = *max = 1;
	if (*i >= len)
		return true;
	switch (p[*i])
	{
		case '*':
			*min = 0;
			*max = -1;
			(*i)++;
			break;
		case '+':
			*max = -1;
			(*i)++;
			break;
		case '?':
			*min = 0;
			(*i)++;
			break;
		case '{':
			{
				int			j = *i + 1;
				int			a = 0,
							b;

				if (j >= len || !isdigit((unsigned char) p[j]))
					return false;
				while (j < len && isdigit((unsigned char) p[j]) && a <= SIMPLE_MAX_ITEMS)
					a = a * 10 + (p[j++] - '0');
				b = a;
				if (j < len && p[j] == ',')
				{
					j++;
					if (j < len && p[j] == '}')
						b = -1;
					else
					{
						if (j >= len || !isdigit((unsigned char) p[j]))
							return false;
						b = 0;
						while (j < len && isdigit((unsigned char) p[j]) && b <= SIMPLE_MAX_ITEMS)
							b = b * 10 + (p[j++] - '0');
						if (b < a)
							return false;
					}
				}
				if (j >= len || p[j] != '}' || a > SIMPLE_MAX_ITEMS || b > SIMPLE_MAX_ITEMS)
					return false;
				*min = a;
				*max = b;
				*i = j + 1;
			}
			break;
		default:
			return true;
	}
	/* a lazy quantifier changes which match is found, never whether one is */
	if (*i < len && p[*i] == '?')
		(*i)++;
	/* a quantified quantifier is an error in ECMA-262: leave it to ARE */
	if (*i < len && strchr("*+?{", p[*i]) != NULL)
		return false;
	return true;
}

static void
simple_add_item(SimpleRe *sr, const ClassSet *c, bool loop, bool skip)
{
	uint64		bit = UINT64CONST(1) << sr->n;

	for (int ch = 0; ch < 128; ch++)
		if (ch < 64 ? (c->lo >> ch) & 1 : (c->hi >> (ch - 64)) & 1)
			sr->accepts[ch] |= bit;
	if (loop)
		sr->loop |= bit;
	if (skip)
		sr->skip |= bit;
	sr->n++;
}

/* The simple form of an ECMA-262 pattern, or NULL when it has none. */
static SimpleRe *
simple_compile(const char *p, int len)
{
	SimpleRe   *sr = palloc0(sizeof(SimpleRe));
	int			i = 0;

	if (len > 0 && p[0] == '^')
	{
		sr->anchored_start = true;
		i++;
	}
	while (i < len)
	{
		ClassSet	c;
		int			min,
					max;

		if (p[i] == '$' && i == len - 1)
		{
			sr->anchored_end = true;
			break;
		}
		if (!simple_atom(p, len, &i, &c) || !simple_quantifier(p, len, &i, &min, &max) ||
			sr->n + Max(min, 1) + (max > min ? max - min : 0) > SIMPLE_MAX_ITEMS)
		{
			pfree(sr);
			return NULL;
		}
		for (int k = 0; k < min; k++)
			simple_add_item(sr, &c, false, false);
		if (max < 0)
			simple_add_item(sr, &c, true, true);
		else
			for (int k = min; k < max; k++)
				simple_add_item(sr, &c, false, true);
	}
	sr->start = simple_closure(sr, 1);
	sr->fixed = sr->anchored_start && sr->anchored_end && sr->loop == 0 && sr->skip == 0;
	return sr;
}

/*
 * simple_match for a fixed pattern ("^ord_[0-9a-f]{12}$"): each byte is
 * checked against its own item, with no state carried from one byte to the
 * next, so the checks do not wait on each other.  Text that is not ASCII
 * still goes to the regex engine: a negated class may take a character of
 * several bytes.
 */
static int
simple_match_fixed(const SimpleRe *sr, const char *s, int len)
{
	uint64		missed = 0;
	unsigned char high = 0;

	if (len != sr->n)
	{
		for (int i = 0; i < len; i++)
			high |= (unsigned char) s[i];
		return (high & 0x80) ? -1 : 0;
	}
	for (int i = 0; i < len; i++)
	{
		unsigned char ch = s[i];

		high |= ch;
		missed |= ~sr->accepts[ch & 0x7F] & (UINT64CONST(1) << i);
	}
	if (high & 0x80)
		return -1;
	return missed == 0;
}

/* 1 match, 0 no match, -1 the text is not ASCII (ask the regex engine). */
static int
simple_match(const SimpleRe *sr, const char *s, int len)
{
	uint64		accept = UINT64CONST(1) << sr->n;
	uint64		d = sr->start;

	if (sr->fixed)
		return simple_match_fixed(sr, s, len);
	if (!sr->anchored_end && (d & accept))
		return 1;
	for (int i = 0; i < len; i++)
	{
		unsigned char ch = s[i];
		uint64		m;

		if (ch >= 0x80)
			return -1;
		m = d & sr->accepts[ch];
		d = simple_closure(sr, ((m & ~sr->loop) << 1) | (m & sr->loop));
		if (!sr->anchored_start)
			d |= sr->start;
		if (!sr->anchored_end && (d & accept))
			return 1;
		if (d == 0)
			return 0;			/* anchored at the start, and no way on */
	}
	return (d & accept) != 0;
}

/* ---------- the regex engine ---------- */

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

		CHECK_FOR_INTERRUPTS();
		pg_regerror(rc, &re->re, buf, sizeof(buf));
		*errmsg = psprintf("pattern \"%.*s\" is not supported: %s", len, pattern, buf);
		pfree(re);
		return NULL;
	}
	re->live = true;
	re->source = pnstrdup(pattern, len);
	re->simple = simple_compile(pattern, len);
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

	if (re->simple)
	{
		int			r = simple_match(re->simple, s, len);

		if (r >= 0)
			return r == 1;
	}
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
				 errmsg("regular expression failed: %s", buf),
				 errdetail("The pattern is \"%s\".", re->source)));
	}
	return false;
}
