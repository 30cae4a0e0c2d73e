/*
 * validate_num.c
 *		Exact decimal numbers for the validator without going through the
 *		numeric type's functions: a number whose normalised form has at most
 *		18 significant digits and at most 18 digits after the point is held
 *		as (mant, scale), value = mant / 10^scale.  Comparison, "integer" and
 *		multipleOf on that form are exact integer arithmetic in 128 bits.
 *
 * Everything else (very large or very long numbers) is "not exact" and the
 * callers fall back to numeric, so exactness never depends on this file.
 * The form is canonical: trailing zeros are stripped, so whether a value is
 * exact depends only on the value, and two exact values are equal exactly
 * when their (mant, scale) are equal.
 *
 * Numerics are read in their stored layout (the on-disk format of
 * src/backend/utils/adt/numeric.c, which pg_upgrade keeps stable): a
 * uint16 header, a weight, and base-10000 digits.
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "utils/fmgrprotos.h"

#include "validate_int.h"

#define EVC_NUM_MAX_SCALE	18

#ifdef HAVE_INT128

static const uint64 pow10_u64[] = {
	UINT64CONST(1), UINT64CONST(10), UINT64CONST(100), UINT64CONST(1000),
	UINT64CONST(10000), UINT64CONST(100000), UINT64CONST(1000000),
	UINT64CONST(10000000), UINT64CONST(100000000), UINT64CONST(1000000000),
	UINT64CONST(10000000000), UINT64CONST(100000000000),
	UINT64CONST(1000000000000), UINT64CONST(10000000000000),
	UINT64CONST(100000000000000), UINT64CONST(1000000000000000),
	UINT64CONST(10000000000000000), UINT64CONST(100000000000000000),
	UINT64CONST(1000000000000000000)
};

#define EVC_NUM_LIMIT	UINT64CONST(1000000000000000000)	/* 10^18 */

/* Significant digits of at most 36 decimal digits fit in acc. */
#define ACC_LIMIT		((uint128) EVC_NUM_LIMIT * EVC_NUM_LIMIT)

/* num_normalise for a 64-bit acc: the usual case, with no 128-bit division. */
static inline bool
num_normalise64(uint64 acc, int exp10, bool neg, EvcNum *out)
{
	if (acc == 0)
	{
		out->mant = 0;
		out->scale = 0;
		return true;
	}
	while (acc % 10 == 0)
	{
		acc /= 10;
		exp10++;
	}
	if (acc >= EVC_NUM_LIMIT)
		return false;
	if (exp10 > 0)
	{
		/* 10^18 / 10^exp10 is 10^(18 - exp10): no division needed */
		if (exp10 > EVC_NUM_MAX_SCALE || acc >= pow10_u64[EVC_NUM_MAX_SCALE - exp10])
			return false;
		acc *= pow10_u64[exp10];
		exp10 = 0;
	}
	else if (-exp10 > EVC_NUM_MAX_SCALE)
		return false;
	out->mant = neg ? -(int64) acc : (int64) acc;
	out->scale = -exp10;
	return true;
}

/* acc * 10^exp10, negated when neg, to the canonical form. */
static bool
num_normalise(uint128 acc, int exp10, bool neg, EvcNum *out)
{
	if (acc <= PG_UINT64_MAX)
		return num_normalise64((uint64) acc, exp10, neg, out);
	if (acc == 0)
	{
		out->mant = 0;
		out->scale = 0;
		return true;
	}
	while (acc % 10 == 0)
	{
		acc /= 10;
		exp10++;
	}
	if (acc >= EVC_NUM_LIMIT)
		return false;
	if (exp10 >= 0)
	{
		if (exp10 > EVC_NUM_MAX_SCALE)
			return false;
		acc *= pow10_u64[exp10];
		if (acc >= EVC_NUM_LIMIT)
			return false;
		exp10 = 0;
	}
	else if (-exp10 > EVC_NUM_MAX_SCALE)
		return false;
	out->mant = neg ? -(int64) acc : (int64) acc;
	out->scale = -exp10;
	return true;
}

/*
 * The parts of a stored numeric: sign, weight (of the first base-10000
 * digit) and digits.  False for NaN, infinities, and a header we do not
 * expect (a stored numeric has a plain 4-byte varlena header).
 */
static bool
numeric_parts(Numeric num, bool *neg, int *weight, const int16 **digits, int *ndigits)
{
	const char *data;
	uint16		header;

	if (!VARATT_IS_4B_U(num))
		return false;
	data = VARDATA(num);
	memcpy(&header, data, sizeof(uint16));
	if ((header & 0xC000) == 0xC000)
		return false;			/* NaN or infinity */
	if (header & 0x8000)
	{
		/* short format: sign, display scale and a 7-bit weight in the header */
		*neg = (header & 0x2000) != 0;
		*weight = ((header & 0x0040) ? ~0x003F : 0) | (header & 0x003F);
		*digits = (const int16 *) (data + sizeof(uint16));
		*ndigits = (VARSIZE(num) - VARHDRSZ - sizeof(uint16)) / sizeof(int16);
	}
	else
	{
		int16		w;

		*neg = (header & 0xC000) == 0x4000;
		memcpy(&w, data + sizeof(uint16), sizeof(int16));
		*weight = w;
		*digits = (const int16 *) (data + 2 * sizeof(uint16));
		*ndigits = (VARSIZE(num) - VARHDRSZ - 2 * sizeof(uint16)) / sizeof(int16);
	}
	return true;
}

bool
evc_num_from_numeric(Numeric num, EvcNum *out)
{
	const int16 *digits;
	int			ndigits;
	int			weight;
	bool		neg;
	uint128		acc = 0;
	int			pending_zero_groups = 0;
	int			last = 0;

	if (!numeric_parts(num, &neg, &weight, &digits, &ndigits))
		return false;

	/* up to four groups (16 digits) fit in 64 bits */
	if (ndigits <= 4)
	{
		uint64		acc64 = 0;

		for (int i = 0; i < ndigits; i++)
		{
			if (digits[i] < 0 || digits[i] >= 10000)
				return false;	/* not the layout we know */
			acc64 = acc64 * 10000 + digits[i];
		}
		return num_normalise64(acc64, 4 * (weight - (ndigits - 1)), neg, out);
	}

	/*
	 * Accumulate the base-10000 digits.  Zero groups are only multiplied in
	 * when a non-zero group follows, so trailing zeros never overflow acc.
	 */
	for (int i = 0; i < ndigits; i++)
	{
		int16		d = digits[i];

		if (d < 0 || d >= 10000)
			return false;		/* not the layout we know */
		if (d == 0)
		{
			if (acc != 0)
				pending_zero_groups++;
			continue;
		}
		while (pending_zero_groups > 0)
		{
			if (acc >= ACC_LIMIT / 10000)
				return false;
			acc *= 10000;
			pending_zero_groups--;
		}
		if (acc >= ACC_LIMIT / 10000)
			return false;
		acc = acc * 10000 + d;
		last = i;
	}
	if (acc == 0)
		return num_normalise(0, 0, false, out);
	/* the last non-zero group has weight (weight - last) */
	return num_normalise(acc, 4 * (weight - last), neg, out);
}

/* A JSON number's text (the grammar is assumed checked). */
bool
evc_num_from_text(const char *s, int len, EvcNum *out)
{
	const char *end = s + len;
	bool		neg = false;
	uint128		acc = 0;
	int			pending_zeros = 0;
	int			exp10 = 0;
	bool		frac = false;

	if (s < end && *s == '-')
	{
		neg = true;
		s++;
	}
	for (; s < end; s++)
	{
		char		c = *s;

		if (c == '.')
		{
			frac = true;
			continue;
		}
		if (c < '0' || c > '9')
			break;
		if (frac)
			exp10--;
		if (c == '0')
		{
			if (acc != 0)
				pending_zeros++;
			continue;
		}
		while (pending_zeros > 0)
		{
			if (acc >= ACC_LIMIT / 10)
				return false;
			acc *= 10;
			pending_zeros--;
		}
		if (acc >= ACC_LIMIT / 10)
			return false;
		acc = acc * 10 + (c - '0');
	}
	/* zeros still pending are trailing: they only move the exponent */
	exp10 += pending_zeros;
	if (s < end && (*s == 'e' || *s == 'E'))
	{
		bool		eneg = false;
		int			e = 0;

		s++;
		if (s < end && (*s == '+' || *s == '-'))
			eneg = (*s++ == '-');
		for (; s < end && *s >= '0' && *s <= '9'; s++)
		{
			if (e > 100000)
				return false;
			e = e * 10 + (*s - '0');
		}
		exp10 += eneg ? -e : e;
	}
	if (s != end)
		return false;
	if (acc == 0)
		return num_normalise(0, 0, false, out);
	return num_normalise(acc, exp10, neg, out);
}

static inline void
num_align(const EvcNum *a, const EvcNum *b, int128 *x, int128 *y)
{
	*x = a->mant;
	*y = b->mant;
	if (a->scale < b->scale)
		*x *= (int128) pow10_u64[b->scale - a->scale];
	else if (b->scale < a->scale)
		*y *= (int128) pow10_u64[a->scale - b->scale];
}

int
evc_num_cmp(const EvcNum *a, const EvcNum *b)
{
	int128		x,
				y;

	if (a->scale == b->scale)
		return (a->mant > b->mant) - (a->mant < b->mant);
	num_align(a, b, &x, &y);
	return (x > y) - (x < y);
}

/* Whether x is an integer multiple of m (m is not zero). */
bool
evc_num_is_multiple(const EvcNum *x, const EvcNum *m)
{
	int128		a,
				b;

	if (x->scale == 0 && m->scale == 0)
		return x->mant % m->mant == 0;
	num_align(x, m, &a, &b);
	return a % b == 0;
}

#else							/* !HAVE_INT128: always the numeric path */

bool
evc_num_from_numeric(Numeric num, EvcNum *out)
{
	return false;
}

bool
evc_num_from_text(const char *s, int len, EvcNum *out)
{
	return false;
}

int
evc_num_cmp(const EvcNum *a, const EvcNum *b)
{
	elog(ERROR, "evc_num_cmp without 128-bit integers");
	return 0;
}

bool
evc_num_is_multiple(const EvcNum *x, const EvcNum *m)
{
	elog(ERROR, "evc_num_is_multiple without 128-bit integers");
	return false;
}

#endif

/* A hash of an exact number, equal for equal values. */
uint32
evc_num_hash(const EvcNum *n)
{
	return hash_combine(hash_bytes_uint32((uint32) n->mant ^ (uint32) (n->mant >> 32)),
						(uint32) n->scale);
}
