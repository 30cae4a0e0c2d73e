/*
 * validate_text.c
 *		JSON text read straight into the validator's own tree (JvTree), so
 *		that evc_validate(schema, text) checks an instance without first
 *		building jsonb.  The tree holds the same values jsonb would: object
 *		keys unescaped, sorted in jsonb's order, the last duplicate winning.
 *
 * The reader is deliberately strict.  It answers "not sure" for anything
 * that jsonb_in could treat specially: syntax errors, \u0000 and lone
 * surrogates, non-ASCII \u escapes in a non-UTF-8 database, numbers that
 * are not exact in 64 bits (numeric may overflow), deep nesting, and very
 * large texts.  The caller then goes through jsonb_in, which raises the
 * error jsonb would (or accepts the text), so both ways give one answer.
 *
 * Memory: the tree is bump-allocated in a buffer kept by the caller across
 * calls (one call site, fn_extra), with overflow in CurrentMemoryContext.
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "miscadmin.h"

#include "validate_int.h"

/* Deeper than this, jsonb_in decides (it may run out of stack). */
#define TEXT_MAX_DEPTH	1000

/* Larger than this, jsonb_in decides (jsonb has size limits). */
#define TEXT_MAX_BYTES	(64 * 1024 * 1024)

/* The arena is kept between calls up to this size. */
#define ARENA_KEEP_MAX	(1024 * 1024)

typedef struct Frame
{
	int			start;			/* first stack slot of this container */
	bool		is_object;
} Frame;

typedef struct Reader
{
	const char *p;
	const char *end;
	EvcTextBuf *buf;
	Size		arena_wanted;	/* bytes the arena would need for this text */
} Reader;

void
evc_text_buf_init(EvcTextBuf *buf, MemoryContext cxt)
{
	memset(buf, 0, sizeof(*buf));
	buf->cxt = cxt;
}

static void *
arena_alloc(Reader *r, Size size)
{
	EvcTextBuf *buf = r->buf;
	void	   *mem;

	size = MAXALIGN(size);
	r->arena_wanted += size;
	if (buf->arena_used + size <= buf->arena_cap)
	{
		mem = buf->arena + buf->arena_used;
		buf->arena_used += size;
		return mem;
	}
	/* overflow lives as long as the call's memory */
	return palloc(size);
}

/*
 * A new slot on the stack.  Values are read straight into their slot: a
 * JV built elsewhere and copied in would be written and read back at
 * different widths, which stalls store forwarding.
 */
static inline JV *
stack_slot(Reader *r)
{
	EvcTextBuf *buf = r->buf;

	if (unlikely(buf->sp == buf->stack_cap))
	{
		int			cap = Max(64, buf->stack_cap * 2);

		if (buf->stack == NULL)
			buf->stack = MemoryContextAlloc(buf->cxt, sizeof(JV) * cap);
		else
			buf->stack = repalloc(buf->stack, sizeof(JV) * cap);
		buf->stack_cap = cap;
	}
	return &buf->stack[buf->sp++];
}

static inline void
skip_ws(Reader *r)
{
	/* JSON's four white space characters are all below '!' */
	while (r->p < r->end && (unsigned char) *r->p <= ' ' &&
		   (*r->p == ' ' || *r->p == '\n' || *r->p == '\t' || *r->p == '\r'))
		r->p++;
}

static inline int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool
read_hex4(const char *s, const char *end, pg_wchar *out)
{
	pg_wchar	v = 0;

	if (end - s < 4)
		return false;
	for (int i = 0; i < 4; i++)
	{
		int			h = hex_value(s[i]);

		if (h < 0)
			return false;
		v = (v << 4) | h;
	}
	*out = v;
	return true;
}

/*
 * The XXXX of \uXXXX at *s (and a second \uXXXX for a surrogate pair),
 * written at *d in the database encoding.  False for what jsonb refuses
 * (\u0000, a lone surrogate) or converts (non-ASCII in another encoding
 * than UTF-8): jsonb_in will say.
 */
static bool
read_unicode_escape(const char **s, const char *close, char **d)
{
	pg_wchar	cp,
				lo;

	if (!read_hex4(*s, close, &cp))
		return false;
	*s += 4;
	if (cp == 0 || is_utf16_surrogate_second(cp))
		return false;
	if (is_utf16_surrogate_first(cp))
	{
		const char *t = *s;

		if (close - t < 6 || t[0] != '\\' || t[1] != 'u' ||
			!read_hex4(t + 2, close, &lo) || !is_utf16_surrogate_second(lo))
			return false;
		*s += 6;
		cp = surrogate_pair_to_codepoint(cp, lo);
	}
	if (cp < 0x80)
		*(*d)++ = (char) cp;
	else
	{
		/* the escape's six (or twelve) bytes always hold the UTF-8 bytes */
		if (GetDatabaseEncoding() != PG_UTF8)
			return false;
		unicode_to_utf8(cp, (unsigned char *) *d);
		*d += pg_utf_mblen((unsigned char *) *d);
	}
	return true;
}

/* The body of a string with escapes, from start (after the quote) to its closing quote. */
static bool
read_escaped_string(Reader *r, const char *start, JV *out)
{
	const char *s;
	const char *close = NULL;
	char	   *dst;
	char	   *d;

	/* find the closing quote first, to size the buffer */
	for (s = start; s < r->end; s++)
	{
		if (*s == '\\')
			s++;
		else if (*s == '"')
		{
			close = s;
			break;
		}
	}
	if (close == NULL)
		return false;
	d = dst = arena_alloc(r, close - start);
	for (s = start; s < close;)
	{
		unsigned char c = *s;

		if (c < 0x20)
			return false;		/* control characters must be escaped */
		if (c != '\\')
		{
			*d++ = *s++;
			continue;
		}
		s++;
		switch (*s++)
		{
			case '"':
				*d++ = '"';
				break;
			case '\\':
				*d++ = '\\';
				break;
			case '/':
				*d++ = '/';
				break;
			case 'b':
				*d++ = '\b';
				break;
			case 'f':
				*d++ = '\f';
				break;
			case 'n':
				*d++ = '\n';
				break;
			case 'r':
				*d++ = '\r';
				break;
			case 't':
				*d++ = '\t';
				break;
			case 'u':
				if (!read_unicode_escape(&s, close, &d))
					return false;
				break;
			default:
				return false;
		}
	}
	out->type = JV_STRING;
	out->src = JVS_TREE;
	out->u.str = dst;
	out->len = d - dst;
	r->p = close + 1;
	return true;
}

/* Bytes of w that are '"', '\\' or a control character, as high bits. */
static inline uint64
string_stoppers(uint64 w)
{
	const uint64 ones = UINT64CONST(0x0101010101010101);
	const uint64 highs = UINT64CONST(0x8080808080808080);
	uint64		quote = w ^ (ones * '"');
	uint64		backslash = w ^ (ones * '\\');

	return (((quote - ones) & ~quote) |
			((backslash - ones) & ~backslash) |
			((w - ones * 0x20) & ~w)) & highs;
}

static bool
read_string(Reader *r, JV *out)
{
	const char *start = ++r->p;	/* after the opening quote */
	const char *s = start;

	/* eight bytes at a time up to the first byte that needs a look */
	while (r->end - s >= 8)
	{
		uint64		w;

		memcpy(&w, s, 8);
		if (string_stoppers(w))
			break;
		s += 8;
	}
	while (s < r->end)
	{
		unsigned char c = *s;

		if (c == '"')
		{
			out->type = JV_STRING;
			out->src = JVS_TREE;
			out->u.str = start;
			out->len = s - start;
			r->p = s + 1;
			return true;
		}
		if (c == '\\')
			return read_escaped_string(r, start, out);
		if (c < 0x20)
			return false;
		s++;
	}
	return false;
}

static bool
read_number(Reader *r, JV *out)
{
	const char *start = r->p;
	const char *s = start;
	const char *end = r->end;
	const char *digits;
	bool		exponent = false;
	EvcNum		x;

	if (s < end && *s == '-')
		s++;
	digits = s;
	if (s < end && *s == '0')
		s++;
	else if (s < end && *s >= '1' && *s <= '9')
		while (s < end && *s >= '0' && *s <= '9')
			s++;
	else
		return false;
	if (s < end && *s == '.')
	{
		s++;
		if (s >= end || *s < '0' || *s > '9')
			return false;
		while (s < end && *s >= '0' && *s <= '9')
			s++;
	}
	if (s < end && (*s == 'e' || *s == 'E'))
	{
		exponent = true;
		s++;
		if (s < end && (*s == '+' || *s == '-'))
			s++;
		if (s >= end || *s < '0' || *s > '9')
			return false;
		while (s < end && *s >= '0' && *s <= '9')
			s++;
	}
	/*
	 * Only exact numbers: anything else is numeric_in's to judge.  At most
	 * 18 characters of digits and point, and no exponent, are exact
	 * for sure.
	 */
	if ((exponent || s - digits > 18) && !evc_num_from_text(start, s - start, &x))
		return false;
	out->type = JV_NUMBER;
	out->src = JVS_TREE;
	out->u.str = start;
	out->len = s - start;
	r->p = s;
	return true;
}

static bool
read_literal(Reader *r, const char *word, int len, JV *out)
{
	if (r->end - r->p < len || memcmp(r->p, word, len) != 0)
		return false;
	r->p += len;
	out->src = JVS_TREE;
	out->len = 0;
	return true;
}

/* Stable sort of n pairs by key: a merge sort of their positions into order[]. */
static void
sort_positions_large(const JV *pairs, int n, int *order)
{
	int		   *tmp = palloc(sizeof(int) * n);
	int		   *from = order;
	int		   *to = tmp;

	for (int i = 0; i < n; i++)
		order[i] = i;
	for (int width = 1; width < n; width *= 2)
	{
		int		   *swap;

		for (int lo = 0; lo < n; lo += 2 * width)
		{
			int			mid = Min(lo + width, n),
						hi = Min(lo + 2 * width, n),
						a = lo,
						b = mid,
						t = lo;

			while (a < mid && b < hi)
			{
				const JV   *ka = &pairs[2 * from[a]],
						   *kb = &pairs[2 * from[b]];

				if (jv_key_cmp(ka->u.str, ka->len, kb->u.str, kb->len) <= 0)
					to[t++] = from[a++];
				else
					to[t++] = from[b++];
			}
			while (a < mid)
				to[t++] = from[a++];
			while (b < hi)
				to[t++] = from[b++];
		}
		swap = from;
		from = to;
		to = swap;
	}
	if (from != order)
		memcpy(order, from, sizeof(int) * n);
	pfree(tmp);
}

/*
 * Copy n pairs (key, value) to dst in jsonb key order, dropping duplicate
 * keys but the last, as jsonb does.  Positions are sorted, not the pairs
 * themselves.  Returns the number of pairs written.
 */
static int
copy_pairs_sorted(const JV *pairs, int n, JV *dst)
{
	int			local[64];
	int		   *order = n <= lengthof(local) ? local : palloc(sizeof(int) * n);
	int			out = 0;

	if (n <= lengthof(local))
	{
		/* insertion sort of positions: stable */
		for (int i = 0; i < n; i++)
		{
			const JV   *k = &pairs[2 * i];
			int			j = i;

			while (j > 0 && jv_key_cmp(pairs[2 * order[j - 1]].u.str, pairs[2 * order[j - 1]].len,
									   k->u.str, k->len) > 0)
			{
				order[j] = order[j - 1];
				j--;
			}
			order[j] = i;
		}
	}
	else
		sort_positions_large(pairs, n, order);

	for (int i = 0; i < n; i++)
	{
		const JV   *k = &pairs[2 * order[i]];

		if (i + 1 < n)
		{
			const JV   *next = &pairs[2 * order[i + 1]];

			if (jv_key_cmp(k->u.str, k->len, next->u.str, next->len) == 0)
				continue;		/* a later duplicate wins */
		}
		dst[2 * out] = k[0];
		dst[2 * out + 1] = k[1];
		out++;
	}
	if (order != local)
		pfree(order);
	return out;
}

/*
 * Close the innermost container: its items move from the stack into the
 * arena, and the container takes their place on the stack.
 */
static bool
close_container(Reader *r, Frame *f)
{
	EvcTextBuf *buf = r->buf;
	JV		   *items;
	int			n_items = buf->sp - f->start;
	int			n = f->is_object ? n_items / 2 : n_items;
	JvTree	   *tree;

	/* an empty container still needs its own slot */
	if (n_items == 0)
	{
		(void) stack_slot(r);
		buf->sp = f->start;
	}
	items = &buf->stack[f->start];
	if (n > JB_CMASK)
		return false;
	tree = arena_alloc(r, MAXALIGN(sizeof(JvTree)) + sizeof(JV) * n_items);
	tree->items = (JV *) ((char *) tree + MAXALIGN(sizeof(JvTree)));
	if (f->is_object && n > 1)
		n = copy_pairs_sorted(items, n, tree->items);
	else
		memcpy(tree->items, items, sizeof(JV) * n_items);
	tree->n = n;
	buf->sp = f->start + 1;
	items->type = f->is_object ? JV_OBJECT : JV_ARRAY;
	items->src = JVS_TREE;
	items->len = n;
	items->u.tree = tree;
	return true;
}

static bool
read_scalar(Reader *r, JV *v)
{
	switch (*r->p)
	{
		case '"':
			return read_string(r, v);
		case 't':
			v->type = JV_BOOL;
			v->u.boolean = true;
			return read_literal(r, "true", 4, v);
		case 'f':
			v->type = JV_BOOL;
			v->u.boolean = false;
			return read_literal(r, "false", 5, v);
		case 'n':
			v->type = JV_NULL;
			return read_literal(r, "null", 4, v);
		default:
			return read_number(r, v);
	}
}

/* After '{' or ',' in an object: the key and its ':'. */
static inline bool
read_key(Reader *r)
{
	skip_ws(r);
	if (r->p >= r->end || *r->p != '"' || !read_string(r, stack_slot(r)))
		return false;
	skip_ws(r);
	if (r->p >= r->end || *r->p != ':')
		return false;
	r->p++;
	return true;
}

/*
 * Read the whole text into *out.  False means "not sure": the caller must
 * give the text to jsonb_in.
 */
static bool
read_text(Reader *r, JV *out)
{
	Frame		frames[TEXT_MAX_DEPTH];
	int			depth = 0;

	for (;;)
	{
		/* a value */
		skip_ws(r);
		if (r->p >= r->end)
			return false;
		if (*r->p == '{' || *r->p == '[')
		{
			bool		is_object = (*r->p == '{');

			if (depth == TEXT_MAX_DEPTH)
				return false;
			frames[depth].start = r->buf->sp;
			frames[depth].is_object = is_object;
			depth++;
			r->p++;
			skip_ws(r);
			if (r->p < r->end && *r->p == (is_object ? '}' : ']'))
			{
				r->p++;
				if (!close_container(r, &frames[--depth]))
					return false;
			}
			else if (is_object)
			{
				if (!read_key(r))
					return false;
				continue;
			}
			else
				continue;
		}
		else if (!read_scalar(r, stack_slot(r)))
			return false;

		/* after a value: the container goes on, closes, or the text ends */
		for (;;)
		{
			Frame	   *f;

			if (depth == 0)
			{
				skip_ws(r);
				if (r->p != r->end)
					return false;
				*out = r->buf->stack[0];
				return true;
			}
			f = &frames[depth - 1];
			skip_ws(r);
			if (r->p >= r->end)
				return false;
			if (*r->p == ',')
			{
				r->p++;
				if (f->is_object && !read_key(r))
					return false;
				break;			/* read the next value */
			}
			if (*r->p != (f->is_object ? '}' : ']'))
				return false;
			r->p++;
			if (!close_container(r, f))
				return false;
			depth--;
		}
	}
}

bool
evc_text_to_tree(const char *text, int len, EvcTextBuf *buf, JV *out)
{
	Reader		r;
	bool		ok;

	if (len > TEXT_MAX_BYTES)
		return false;

	/* the last call's tree is dead: the arena may grow to what it needed */
	if (buf->arena_wanted > buf->arena_cap)
	{
		Size		cap = Min(Max(buf->arena_wanted * 2, 8192), ARENA_KEEP_MAX);

		if (buf->arena)
			pfree(buf->arena);
		buf->arena = MemoryContextAlloc(buf->cxt, cap);
		buf->arena_cap = cap;
	}
	r.p = text;
	r.end = text + len;
	r.buf = buf;
	r.arena_wanted = 0;
	buf->sp = 0;
	buf->arena_used = 0;
	ok = read_text(&r, out);
	buf->arena_wanted = Min(r.arena_wanted, ARENA_KEEP_MAX);
	return ok;
}
