/*
 * validate_formats.c
 *		The "format" keyword of JSON Schema draft-07: date-time, date, time
 *		(RFC 3339), email (RFC 5321 mailbox, ASCII), hostname (RFC 1123),
 *		ipv4, ipv6, uri, uri-reference, iri, iri-reference (RFC 3986/3987),
 *		uri-template (RFC 6570), json-pointer, relative-json-pointer, uuid
 *		and regex.  Hand-written checks: no allocation on the common path.
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "validate_int.h"

typedef EvcFormatFn FormatFn;

/* ASCII classes, without the C library's locale tables (formats are ASCII). */
static inline bool
is_digit(unsigned char c)
{
	return (unsigned) (c - '0') < 10;
}

static inline bool
is_alpha(unsigned char c)
{
	return (unsigned) ((c | 0x20) - 'a') < 26;
}

static inline bool
is_alnum(unsigned char c)
{
	return is_digit(c) || is_alpha(c);
}

/* Character classes of the formats, filled in by evc_format_lookup. */
#define C_XDIGIT	0x01
#define C_HOST		0x02		/* hostname label: letter, digit, "-" */
#define C_EMAIL		0x04		/* email local part (dot-atom text and ".") */
#define C_URI		0x08		/* RFC 3986 unreserved, reserved */

static uint8 cclass[256];

static void
cclass_init(void)
{
	if (cclass['0'] != 0)
		return;
	for (int c = 0; c < 128; c++)
	{
		uint8		bits = 0;

		if (is_digit(c) || (unsigned) ((c | 0x20) - 'a') < 6)
			bits |= C_XDIGIT;
		if (is_alnum(c) || c == '-')
			bits |= C_HOST;
		if (is_alnum(c) || (c != 0 && strchr("!#$%&'*+/=?^_`{|}~.-", c)))
			bits |= C_EMAIL;
		if (is_alnum(c) || (c != 0 && strchr("-._~:/?#[]@!$&'()*+,;=", c)))
			bits |= C_URI;
		cclass[c] = bits;
	}
}

static inline bool
is_xdigit(unsigned char c)
{
	return (cclass[c] & C_XDIGIT) != 0;
}

static bool
digits(const char *s, int n)
{
	for (int i = 0; i < n; i++)
		if (!is_digit((unsigned char) s[i]))
			return false;
	return true;
}

static int
num2(const char *s)
{
	return (s[0] - '0') * 10 + (s[1] - '0');
}

static bool
is_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static bool
fmt_date(const char *s, int len)
{
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int			y,
				m,
				d;

	if (len != 10 || s[4] != '-' || s[7] != '-' || !digits(s, 4) ||
		!digits(s + 5, 2) || !digits(s + 8, 2))
		return false;
	y = num2(s) * 100 + num2(s + 2);
	m = num2(s + 5);
	d = num2(s + 8);
	if (m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
		return false;
	return !(m == 2 && d == 29 && !is_leap(y));
}

/* RFC 3339 full-time: hh:mm:ss[.frac](Z|+hh:mm|-hh:mm) */
static bool
fmt_time(const char *s, int len)
{
	int			i = 8;
	int			h,
				mi,
				sec;

	if (len < 9 || s[2] != ':' || s[5] != ':' || !digits(s, 2) ||
		!digits(s + 3, 2) || !digits(s + 6, 2))
		return false;
	h = num2(s);
	mi = num2(s + 3);
	sec = num2(s + 6);
	if (h > 23 || mi > 59 || sec > 60)
		return false;
	if (s[i] == '.')
	{
		int			start = ++i;

		while (i < len && is_digit((unsigned char) s[i]))
			i++;
		if (i == start)
			return false;
	}
	if (i < len && (s[i] == 'Z' || s[i] == 'z'))
		return i + 1 == len;
	if (i < len && (s[i] == '+' || s[i] == '-'))
	{
		const char *o = s + i + 1;

		return len - i - 1 == 5 && o[2] == ':' && digits(o, 2) && digits(o + 3, 2) &&
			num2(o) <= 23 && num2(o + 3) <= 59;
	}
	return false;
}

static bool
fmt_date_time(const char *s, int len)
{
	return len > 11 && (s[10] == 'T' || s[10] == 't') &&
		fmt_date(s, 10) && fmt_time(s + 11, len - 11);
}

static inline bool
hostname_label_char(char c)
{
	return (cclass[(unsigned char) c] & C_HOST) != 0;
}

static bool
fmt_hostname(const char *s, int len)
{
	int			start = 0;

	if (len == 0 || len > 253)
		return false;
	for (int i = 0; i <= len; i++)
	{
		if (i == len || s[i] == '.')
		{
			int			l = i - start;

			if (l < 1 || l > 63 || s[start] == '-' || s[i - 1] == '-')
				return false;
			start = i + 1;
		}
		else if (!hostname_label_char(s[i]))
			return false;
	}
	return true;
}

static bool
fmt_ipv4(const char *s, int len)
{
	int			parts = 0;
	int			i = 0;

	while (i < len)
	{
		int			start = i;
		int			v = 0;

		while (i < len && is_digit((unsigned char) s[i]))
			v = v * 10 + (s[i++] - '0');
		if (i == start || i - start > 3 || v > 255 ||
			(i - start > 1 && s[start] == '0'))
			return false;
		parts++;
		if (i < len)
		{
			if (s[i] != '.' || parts == 4)
				return false;
			i++;
			if (i == len)
				return false;
		}
	}
	return parts == 4;
}

static bool
fmt_ipv6(const char *s, int len)
{
	int			groups = 0;
	bool		gap = false;
	int			i = 0;

	if (len < 2)
		return false;
	if (s[0] == ':')
	{
		if (s[1] != ':')
			return false;
		gap = true;
		i = 2;
		if (i == len)
			return true;
	}
	while (i < len)
	{
		int			start = i;

		while (i < len && is_xdigit((unsigned char) s[i]))
			i++;
		if (i < len && s[i] == '.')
		{
			/* embedded IPv4 tail counts as two groups */
			if (!fmt_ipv4(s + start, len - start))
				return false;
			groups += 2;
			i = len;
			break;
		}
		if (i == start || i - start > 4)
			return false;
		groups++;
		if (i == len)
			break;
		if (s[i] != ':')
			return false;
		i++;
		if (i < len && s[i] == ':')
		{
			if (gap)
				return false;
			gap = true;
			i++;
			if (i == len)
				break;
		}
		else if (i == len)
			return false;
	}
	return gap ? groups < 8 : groups == 8;
}

static bool
fmt_email(const char *s, int len)
{
	const char *at = memchr(s, '@', len);
	int			local;

	if (at == NULL || memchr(at + 1, '@', len - (at + 1 - s)) != NULL)
		return false;
	local = at - s;
	if (local == 0 || local > 64 || s[0] == '.' || s[local - 1] == '.')
		return false;
	for (int i = 0; i < local; i++)
	{
		if (s[i] == '.' && s[i + 1] == '.')
			return false;
		if (!(cclass[(unsigned char) s[i]] & C_EMAIL))
			return false;
	}
	return fmt_hostname(at + 1, len - local - 1);
}

static bool
fmt_uuid(const char *s, int len)
{
	uint8		hex = C_XDIGIT;

	if (len != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-')
		return false;
	/* one loop of fixed length, which the compiler unrolls: no branch per group */
	for (int i = 0; i < 36; i++)
		hex &= (i == 8 || i == 13 || i == 18 || i == 23) ? C_XDIGIT :
			cclass[(unsigned char) s[i]];
	return hex != 0;
}

/* Characters RFC 3986 allows in a URI reference, with %XX escapes. */
static bool
uri_chars_ok(const char *s, int len, bool allow_non_ascii)
{
	for (int i = 0; i < len; i++)
	{
		unsigned char c = s[i];

		if (c == '%')
		{
			if (i + 2 >= len || !is_xdigit((unsigned char) s[i + 1]) ||
				!is_xdigit((unsigned char) s[i + 2]))
				return false;
			i += 2;
		}
		else if (c >= 0x80)
		{
			if (!allow_non_ascii)
				return false;
		}
		else if (!(cclass[c] & C_URI))
			return false;
	}
	return true;
}

static bool
uri_reference(const char *s, int len, bool iri)
{
	if (!uri_chars_ok(s, len, iri))
		return false;
	/* "//" authority: no "\\", and a bracketed IPv6 host must close */
	for (int i = 0; i < len && s[i] != '#'; i++)
		if (s[i] == '[' && memchr(s + i, ']', len - i) == NULL)
			return false;
	return true;
}

static bool
uri_absolute(const char *s, int len, bool iri)
{
	int			i = 0;

	if (len == 0 || !is_alpha((unsigned char) s[0]))
		return false;
	while (i < len && (is_alnum((unsigned char) s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.'))
		i++;
	if (i == len || s[i] != ':')
		return false;
	return uri_reference(s, len, iri);
}

static bool
fmt_uri(const char *s, int len)
{
	return uri_absolute(s, len, false);
}

static bool
fmt_uri_reference(const char *s, int len)
{
	return uri_reference(s, len, false);
}

static bool
fmt_iri(const char *s, int len)
{
	return uri_absolute(s, len, true);
}

static bool
fmt_iri_reference(const char *s, int len)
{
	return uri_reference(s, len, true);
}

static bool
fmt_uri_template(const char *s, int len)
{
	bool		open = false;

	for (int i = 0; i < len; i++)
	{
		if (s[i] == '{')
		{
			if (open)
				return false;
			open = true;
		}
		else if (s[i] == '}')
		{
			if (!open)
				return false;
			open = false;
		}
	}
	return !open;
}

static bool
json_pointer_tail(const char *s, int len)
{
	for (int i = 0; i < len; i++)
		if (s[i] == '~' && (i + 1 == len || (s[i + 1] != '0' && s[i + 1] != '1')))
			return false;
	return true;
}

static bool
fmt_json_pointer(const char *s, int len)
{
	return (len == 0 || s[0] == '/') && json_pointer_tail(s, len);
}

static bool
fmt_relative_json_pointer(const char *s, int len)
{
	int			i = 0;

	while (i < len && is_digit((unsigned char) s[i]))
		i++;
	if (i == 0 || (i > 1 && s[0] == '0'))
		return false;
	if (i == len)
		return true;
	if (s[i] == '#')
		return i + 1 == len;
	return fmt_json_pointer(s + i, len - i);
}

static bool
fmt_regex(const char *s, int len)
{
	char	   *msg;
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "evcollector regex check",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	bool		ok = evc_regex_compile(s, len, &msg) != NULL;

	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return ok;
}

static bool
fmt_idn_hostname(const char *s, int len)
{
	/* non-ASCII labels are accepted as they are (no IDNA tables here) */
	for (int i = 0; i < len; i++)
		if ((unsigned char) s[i] >= 0x80)
			return len <= 253 && memchr(s, ' ', len) == NULL;
	return fmt_hostname(s, len);
}

static bool
fmt_idn_email(const char *s, int len)
{
	const char *at = memchr(s, '@', len);

	return at != NULL && at > s && at < s + len - 1 &&
		fmt_idn_hostname(at + 1, len - (at + 1 - s));
}

static const struct
{
	const char *name;
	FormatFn	fn;
}			formats[] =
{
	{"date-time", fmt_date_time},
	{"date", fmt_date},
	{"time", fmt_time},
	{"email", fmt_email},
	{"idn-email", fmt_idn_email},
	{"hostname", fmt_hostname},
	{"idn-hostname", fmt_idn_hostname},
	{"ipv4", fmt_ipv4},
	{"ipv6", fmt_ipv6},
	{"uri", fmt_uri},
	{"uri-reference", fmt_uri_reference},
	{"iri", fmt_iri},
	{"iri-reference", fmt_iri_reference},
	{"uri-template", fmt_uri_template},
	{"json-pointer", fmt_json_pointer},
	{"relative-json-pointer", fmt_relative_json_pointer},
	{"uuid", fmt_uuid},
	{"regex", fmt_regex},
};

EvcFormatFn
evc_format_lookup(const char *name)
{
	cclass_init();
	for (int i = 0; i < lengthof(formats); i++)
		if (strcmp(formats[i].name, name) == 0)
			return formats[i].fn;
	return NULL;
}
