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
 * src/backend/utils/adt/numeric.c, which pg_upgrade keeps stable), through
 * the copies of numeric.c's constants in validate_int.h: a uint16 header,
 * a weight, and base-10000 digits.
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

	/*
	 * An integer, the usual case: its canonical form is itself, so there
	 * are no trailing zeros to strip only to multiply them back below.
	 */
	if (exp10 >= 0)
	{
		if (exp10 > EVC_NUM_MAX_SCALE || acc >= pow10_u64[EVC_NUM_MAX_SCALE - exp10])
			return false;
		acc *= pow10_u64[exp10];
		out->mant = neg ? -(int64) acc : (int64) acc;
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
 * The copies of numeric.c's constants (validate_int.h) must at least fit
 * together: the flag bits and the display scale share the header word, the
 * short form's fields share the 14 bits below the flags, the special values
 * carry the special flag, and numeric's largest display scale fits.
 */
StaticAssertDecl((EVC_NUMERIC_SIGN_MASK & EVC_NUMERIC_DSCALE_MASK) == 0 &&
				 (EVC_NUMERIC_SIGN_MASK | EVC_NUMERIC_DSCALE_MASK) == 0xFFFF,
				 "numeric flag bits and display scale must fill the header word");
StaticAssertDecl(EVC_NUMERIC_SHORT_SIGN_MASK + EVC_NUMERIC_SHORT_DSCALE_MASK +
				 EVC_NUMERIC_SHORT_WEIGHT_SIGN_MASK + EVC_NUMERIC_SHORT_WEIGHT_MASK ==
				 EVC_NUMERIC_DSCALE_MASK &&
				 (EVC_NUMERIC_SHORT_SIGN_MASK | EVC_NUMERIC_SHORT_DSCALE_MASK |
				  EVC_NUMERIC_SHORT_WEIGHT_SIGN_MASK | EVC_NUMERIC_SHORT_WEIGHT_MASK) ==
				 EVC_NUMERIC_DSCALE_MASK,
				 "short numeric header fields must partition the bits below the flags");
StaticAssertDecl(EVC_NUMERIC_SHORT_DSCALE_MAX == 63 &&
				 (EVC_NUMERIC_SHORT_DSCALE_MAX << EVC_NUMERIC_SHORT_DSCALE_SHIFT) ==
				 EVC_NUMERIC_SHORT_DSCALE_MASK,
				 "short numeric display scale must be 6 contiguous bits");
StaticAssertDecl(EVC_NUMERIC_SHORT_WEIGHT_SIGN_MASK == EVC_NUMERIC_SHORT_WEIGHT_MASK + 1,
				 "short numeric weight sign must sit just above the weight");
StaticAssertDecl((EVC_NUMERIC_NAN & EVC_NUMERIC_SIGN_MASK) == EVC_NUMERIC_SPECIAL &&
				 (EVC_NUMERIC_PINF & EVC_NUMERIC_SIGN_MASK) == EVC_NUMERIC_SPECIAL &&
				 (EVC_NUMERIC_NINF & EVC_NUMERIC_SIGN_MASK) == EVC_NUMERIC_SPECIAL &&
				 (EVC_NUMERIC_NINF & ~EVC_NUMERIC_EXT_SIGN_MASK) == 0,
				 "numeric special values must carry the special flag");
StaticAssertDecl(EVC_NUMERIC_POS != EVC_NUMERIC_NEG &&
				 EVC_NUMERIC_NEG != EVC_NUMERIC_SHORT &&
				 EVC_NUMERIC_SHORT != EVC_NUMERIC_SPECIAL &&
				 ((EVC_NUMERIC_POS | EVC_NUMERIC_NEG | EVC_NUMERIC_SHORT) &
				  ~EVC_NUMERIC_SIGN_MASK) == 0,
				 "numeric forms must be distinct values of the flag bits");
StaticAssertDecl(NUMERIC_MAX_DISPLAY_SCALE <= EVC_NUMERIC_DSCALE_MASK,
				 "numeric's display scale must fit in the long header");

/* Up to this many base-NBASE digits are read into 64 bits directly. */
#define NUM_GROUPS_64	4
StaticAssertDecl(NUM_GROUPS_64 * EVC_DEC_DIGITS <= 19,
				 "the 64-bit fast path must not overflow");

/*
 * The parts of a stored numeric: sign, weight (of the first base-NBASE
 * digit) and where its digits are.  False for NaN and the infinities.
 *
 * A numeric in jsonb normally has a 4-byte varlena header, but jsonb copies
 * whatever header its value had, so a 1-byte one is read too: whether a
 * number has an exact form must depend on its value only (evc_jv_equal and
 * evc_jv_hash rely on it).  Its digits are then not aligned, hence
 * numeric_digit().
 */
static bool
numeric_parts(Numeric num, bool *neg, int *weight, const char **digits, int *ndigits)
{
	const char *data;
	Size		len;
	uint16		header;

	if (VARATT_IS_EXTERNAL(num) || VARATT_IS_COMPRESSED(num))
		return false;			/* never inside jsonb */
	data = VARDATA_ANY(num);
	len = VARSIZE_ANY_EXHDR(num);
	if (len < sizeof(uint16))
		return false;
	memcpy(&header, data, sizeof(uint16));
	switch (header & EVC_NUMERIC_SIGN_MASK)
	{
		case EVC_NUMERIC_SPECIAL:
			return false;		/* NaN or an infinity */
		case EVC_NUMERIC_SHORT:
			*neg = (header & EVC_NUMERIC_SHORT_SIGN_MASK) != 0;
			*weight = ((header & EVC_NUMERIC_SHORT_WEIGHT_SIGN_MASK) ?
					   ~EVC_NUMERIC_SHORT_WEIGHT_MASK : 0) |
				(header & EVC_NUMERIC_SHORT_WEIGHT_MASK);
			*digits = data + sizeof(uint16);
			*ndigits = (len - sizeof(uint16)) / sizeof(int16);
			return true;
		default:
			{
				int16		w;

				if (len < sizeof(uint16) + sizeof(int16))
					return false;
				*neg = (header & EVC_NUMERIC_SIGN_MASK) == EVC_NUMERIC_NEG;
				memcpy(&w, data + sizeof(uint16), sizeof(int16));
				*weight = w;
				*digits = data + sizeof(uint16) + sizeof(int16);
				*ndigits = (len - sizeof(uint16) - sizeof(int16)) / sizeof(int16);
				return true;
			}
	}
}

/* Digit i of a numeric; -1 when it is not a base-NBASE digit. */
static inline int
numeric_digit(const char *digits, int i)
{
	int16		d;

	memcpy(&d, digits + i * sizeof(int16), sizeof(int16));
	return d >= 0 && d < EVC_NBASE ? d : -1;
}

#ifdef USE_ASSERT_CHECKING
/* The exact form read is the value numeric itself sees. */
static void
check_exact(Numeric num, const EvcNum *x)
{
	Numeric		back = int64_div_fast_to_numeric(x->mant, x->scale);

	Assert(DatumGetInt32(DirectFunctionCall2(numeric_cmp, NumericGetDatum(num),
											 NumericGetDatum(back))) == 0);
}
#endif

static bool
num_from_numeric(Numeric num, EvcNum *out)
{
	const char *digits;
	int			ndigits;
	int			weight;
	bool		neg;
	uint128		acc = 0;
	int			pending_zero_groups = 0;
	int			last = 0;

	if (!numeric_parts(num, &neg, &weight, &digits, &ndigits))
		return false;

	if (ndigits <= NUM_GROUPS_64)
	{
		uint64		acc64 = 0;

		for (int i = 0; i < ndigits; i++)
		{
			int			d = numeric_digit(digits, i);

			if (d < 0)
				return false;	/* not the layout we know */
			acc64 = acc64 * EVC_NBASE + d;
		}
		return num_normalise64(acc64, EVC_DEC_DIGITS * (weight - (ndigits - 1)), neg, out);
	}

	/*
	 * Accumulate the base-NBASE digits.  Zero groups are only multiplied in
	 * when a non-zero group follows, so trailing zeros never overflow acc.
	 */
	for (int i = 0; i < ndigits; i++)
	{
		int			d = numeric_digit(digits, i);

		if (d < 0)
			return false;		/* not the layout we know */
		if (d == 0)
		{
			if (acc != 0)
				pending_zero_groups++;
			continue;
		}
		while (pending_zero_groups > 0)
		{
			if (acc >= ACC_LIMIT / EVC_NBASE)
				return false;
			acc *= EVC_NBASE;
			pending_zero_groups--;
		}
		if (acc >= ACC_LIMIT / EVC_NBASE)
			return false;
		acc = acc * EVC_NBASE + d;
		last = i;
	}
	if (acc == 0)
		return num_normalise(0, 0, false, out);
	/* the last non-zero group has weight (weight - last) */
	return num_normalise(acc, EVC_DEC_DIGITS * (weight - last), neg, out);
}

bool
evc_num_from_numeric(Numeric num, EvcNum *out)
{
	if (!num_from_numeric(num, out))
		return false;
#ifdef USE_ASSERT_CHECKING
	check_exact(num, out);
#endif
	return true;
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
	{
		/*
		 * Zero is exact at any exponent, but numeric keeps its display
		 * scale, the digits after the point less the exponent, and refuses
		 * one past EVC_NUMERIC_DSCALE_MASK ("0e-20000" overflows numeric
		 * format).  Such a zero is numeric_in's to judge.
		 */
		if (-exp10 > EVC_NUMERIC_DSCALE_MASK)
			return false;
		return num_normalise(0, 0, false, out);
	}
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
