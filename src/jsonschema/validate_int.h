/*
 * validate_int.h
 *		Internals shared by the validator's files: a light view of jsonb
 *		values (JV) read straight from the binary container, and the compiled
 *		schema tree.  Private to src/jsonschema: the rest of evcollector
 *		goes through validate.h only.
 */
#ifndef EVC_VALIDATE_INT_H
#define EVC_VALIDATE_INT_H

#include "port/pg_bswap.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "jsonschema/validate.h"

/*
 * A JSON value seen in place: nothing is copied.  It lives either in a jsonb
 * container (JVS_JSONB) or in the tree validate_text.c builds from JSON
 * text (JVS_TREE); the two differ only in how containers and numbers are
 * stored, and every reader below handles both.
 */
typedef enum JvType
{
	JV_NULL,
	JV_BOOL,
	JV_NUMBER,
	JV_STRING,
	JV_ARRAY,
	JV_OBJECT
} JvType;

#define JVS_JSONB	0
#define JVS_TREE	1

typedef struct JV JV;

/* Formats (validate_formats.c): NULL for a format that is not known. */
typedef bool (*EvcFormatFn) (const char *s, int len);
extern EvcFormatFn evc_format_lookup(const char *format);

/*
 * ECMA-262 pattern to a compiled Postgres regex (validate_regex.c), in
 * CurrentMemoryContext; it is freed with that context.
 */
typedef struct EvcRegex EvcRegex;
extern EvcRegex *evc_regex_compile(const char *pattern, int len, char **errmsg);
extern bool evc_regex_match(EvcRegex *re, const char *s, int len);

/* A container of the text tree: n elements, or n pairs stored key, value, in jsonb key order. */
typedef struct JvTree
{
	int			n;
	JV		   *items;
} JvTree;

struct JV
{
	uint8		type;			/* JvType */
	uint8		src;			/* JVS_JSONB or JVS_TREE */
	int			len;			/* string bytes, number text bytes (tree), or element / pair count */
	union
	{
		const char *str;		/* strings; numbers of the tree (their JSON text) */
		Numeric		num;		/* numbers of jsonb */
		bool		boolean;
		JsonbContainer *jc;
		JvTree	   *tree;
	}			u;
};

/* Walks the elements of an array or the pairs of an object, in stored order. */
typedef struct JvIter
{
	JsonbContainer *jc;
	JV		   *items;			/* tree: the next element or pair */
	char	   *base;
	int			n;
	int			i;
	uint32		koff;
	uint32		voff;
	bool		is_object;
	bool		is_tree;
} JvIter;

extern void evc_jv_root(Jsonb *jb, JV *out);
extern bool evc_jv_object_get(const JV *obj, const char *key, int keylen, JV *out);
extern bool evc_jv_array_get(const JV *arr, int idx, JV *out);
extern bool evc_jv_equal(const JV *a, const JV *b);
extern uint32 evc_jv_hash(const JV *v);
extern const char *evc_jv_type_name(const JV *v);

/*
 * numeric's on-disk layout.  numeric.c (src/backend/utils/adt/numeric.c)
 * keeps its definitions private, so these are EVC_-prefixed copies of
 * them, under the same names: they mirror PostgreSQL 15's on-disk format,
 * which pg_upgrade keeps stable across versions.  validate_num.c checks at
 * compile time that they fit together, and validate.sql checks that the
 * answers read through them are numeric's own, on both header forms.
 *
 * After the varlena header comes a uint16 header word whose top two bits
 * (EVC_NUMERIC_SIGN_MASK) say what follows:
 *	 EVC_NUMERIC_POS, EVC_NUMERIC_NEG: the long form.  The other 14 bits are
 *		the display scale, then an int16 weight;
 *	 EVC_NUMERIC_SHORT: the short form, used when the display scale is at most
 *		63 and the weight fits in 7 bits.  Sign, display scale and weight are
 *		all in the word;
 *	 EVC_NUMERIC_SPECIAL: NaN or an infinity (jsonb holds neither).
 * Then the digits, base EVC_NBASE (int16 each), most significant first; the
 * weight is the power of EVC_NBASE of the first one.
 */
#define EVC_NUMERIC_SIGN_MASK	0xC000
#define EVC_NUMERIC_POS			0x0000
#define EVC_NUMERIC_NEG			0x4000
#define EVC_NUMERIC_SHORT		0x8000
#define EVC_NUMERIC_SPECIAL		0xC000

#define EVC_NUMERIC_EXT_SIGN_MASK	0xF000	/* flag bits plus NaN/Inf bits */
#define EVC_NUMERIC_NAN			0xC000
#define EVC_NUMERIC_PINF		0xD000
#define EVC_NUMERIC_NINF		0xF000

#define EVC_NUMERIC_SHORT_SIGN_MASK			0x2000
#define EVC_NUMERIC_SHORT_DSCALE_MASK		0x1F80
#define EVC_NUMERIC_SHORT_DSCALE_SHIFT		7
#define EVC_NUMERIC_SHORT_DSCALE_MAX \
	(EVC_NUMERIC_SHORT_DSCALE_MASK >> EVC_NUMERIC_SHORT_DSCALE_SHIFT)
#define EVC_NUMERIC_SHORT_WEIGHT_SIGN_MASK	0x0040
#define EVC_NUMERIC_SHORT_WEIGHT_MASK		0x003F
#define EVC_NUMERIC_SHORT_WEIGHT_MAX		EVC_NUMERIC_SHORT_WEIGHT_MASK
#define EVC_NUMERIC_SHORT_WEIGHT_MIN		(-(EVC_NUMERIC_SHORT_WEIGHT_MASK + 1))

#define EVC_NUMERIC_DSCALE_MASK	0x3FFF

#define EVC_NBASE		10000
#define EVC_DEC_DIGITS	4		/* decimal digits per EVC_NBASE digit */

/*
 * Exact decimal numbers (validate_num.c): value = mant / 10^scale, in a
 * canonical form; false from the readers when the value does not fit, and
 * the caller then uses numeric.
 */
typedef struct EvcNum
{
	int64		mant;
	int16		scale;
} EvcNum;

extern bool evc_num_from_numeric(Numeric num, EvcNum *out);
extern bool evc_num_from_text(const char *s, int len, EvcNum *out);
extern int	evc_num_cmp(const EvcNum *a, const EvcNum *b);
extern bool evc_num_is_multiple(const EvcNum *x, const EvcNum *m);
extern uint32 evc_num_hash(const EvcNum *n);

/*
 * The exact form of an integer below 10^16 in numeric's short form (at most
 * four base-NBASE digits, none after the point): nearly every id, count and
 * amount.  Read here, inline, because numbers are read all the time; false
 * sends the caller to evc_num_from_numeric, which reads every number and
 * gives these the same form.
 */
static inline bool
jv_num_small_int(Numeric num, EvcNum *out)
{
#ifdef HAVE_INT128
	const char *data;
	int			ndigits;
	int			weight;
	uint16		header;
	uint64		acc = 0;

	if (VARATT_IS_EXTERNAL(num) || VARATT_IS_COMPRESSED(num) ||
		VARSIZE_ANY_EXHDR(num) < sizeof(uint16))
		return false;
	data = VARDATA_ANY(num);
	memcpy(&header, data, sizeof(uint16));
	if ((header & EVC_NUMERIC_SIGN_MASK) != EVC_NUMERIC_SHORT ||
		(header & EVC_NUMERIC_SHORT_WEIGHT_SIGN_MASK))
		return false;
	weight = header & EVC_NUMERIC_SHORT_WEIGHT_MASK;
	ndigits = (VARSIZE_ANY_EXHDR(num) - sizeof(uint16)) / sizeof(int16);
	if (weight > 3 || ndigits > weight + 1)
		return false;
	for (int i = 0; i < ndigits; i++)
	{
		int16		d;

		memcpy(&d, data + sizeof(uint16) + i * sizeof(int16), sizeof(int16));
		if (d < 0 || d >= EVC_NBASE)
			return false;		/* not the layout we know */
		acc = acc * EVC_NBASE + d;
	}
	if (ndigits == 0)
		weight = 0;				/* zero */
	for (int i = ndigits; i <= weight; i++)
		acc *= EVC_NBASE;
	out->mant = (header & EVC_NUMERIC_SHORT_SIGN_MASK) ? -(int64) acc : (int64) acc;
	out->scale = 0;
	return true;
#else
	return false;
#endif
}

/* A number's exact form, if it has one. */
static inline bool
jv_num_exact(const JV *v, EvcNum *out)
{
	if (v->src == JVS_JSONB)
		return jv_num_small_int(v->u.num, out) || evc_num_from_numeric(v->u.num, out);
	return evc_num_from_text(v->u.str, v->len, out);
}

/*
 * JSON text to the tree (validate_text.c).  The buffers are reused from one
 * call to the next; false means "not sure", and the text must then go
 * through jsonb_in, which raises jsonb's own error or accepts it.
 */
typedef struct EvcTextBuf
{
	MemoryContext cxt;			/* where the reused buffers live */
	JV		   *stack;			/* items of the open containers */
	int			sp;
	int			stack_cap;
	char	   *arena;			/* the tree */
	Size		arena_used;
	Size		arena_cap;
	Size		arena_wanted;	/* what the last text needed */
} EvcTextBuf;

extern void evc_text_buf_init(EvcTextBuf *buf, MemoryContext cxt);
extern bool evc_text_to_tree(const char *text, int len, EvcTextBuf *buf, JV *out);

/* A number as numeric (for a tree number: parsed, in CurrentMemoryContext). */
extern Numeric evc_jv_num_numeric(const JV *v);

/*
 * memcmp's sign for short byte strings, eight bytes at a time (keys are
 * compared all the time and are rarely longer than a few words).  The last
 * word overlaps the one before it, whose bytes are already known equal.
 */
static inline int
jv_bytes_cmp(const char *a, const char *b, int len)
{
	uint64		x,
				y;
	int			i;

	if (len < 8)
	{
		uint32		x4,
					y4;

		if (len < 4)
		{
			for (i = 0; i < len; i++)
				if (a[i] != b[i])
					return (unsigned char) a[i] < (unsigned char) b[i] ? -1 : 1;
			return 0;
		}
		/* two overlapping words, as below */
		for (i = 0;; i = len - 4)
		{
			memcpy(&x4, a + i, 4);
			memcpy(&y4, b + i, 4);
			if (x4 != y4)
			{
#ifndef WORDS_BIGENDIAN
				x4 = pg_bswap32(x4);
				y4 = pg_bswap32(y4);
#endif
				return x4 < y4 ? -1 : 1;
			}
			if (i == len - 4)
				return 0;
		}
	}
	for (i = 0;; i += 8)
	{
		if (i + 8 > len)
			i = len - 8;
		memcpy(&x, a + i, 8);
		memcpy(&y, b + i, 8);
		if (x != y)
		{
#ifndef WORDS_BIGENDIAN
			x = pg_bswap64(x);
			y = pg_bswap64(y);
#endif
			return x < y ? -1 : 1;
		}
		if (i + 8 >= len)
			return 0;
	}
}

/* jsonb's own key order: shorter first, then bytewise. */
static inline int
jv_key_cmp(const char *a, int alen, const char *b, int blen)
{
	if (alen != blen)
		return alen < blen ? -1 : 1;
	return jv_bytes_cmp(a, b, alen);
}

static inline uint32
jv_entry_end(JEntry e, uint32 start)
{
	return JBE_HAS_OFF(e) ? JBE_OFFLENFLD(e) : start + JBE_OFFLENFLD(e);
}

static inline void
jv_from_entry(JsonbContainer *jc, int idx, char *base, uint32 off, uint32 end, JV *out)
{
	JEntry		e = jc->children[idx];

	out->src = JVS_JSONB;
	switch (e & JENTRY_TYPEMASK)
	{
		case JENTRY_ISSTRING:
			out->type = JV_STRING;
			out->u.str = base + off;
			out->len = end - off;
			break;
		case JENTRY_ISNUMERIC:
			out->type = JV_NUMBER;
			out->u.num = (Numeric) (base + INTALIGN(off));
			out->len = 0;
			break;
		case JENTRY_ISBOOL_FALSE:
			out->type = JV_BOOL;
			out->u.boolean = false;
			out->len = 0;
			break;
		case JENTRY_ISBOOL_TRUE:
			out->type = JV_BOOL;
			out->u.boolean = true;
			out->len = 0;
			break;
		case JENTRY_ISNULL:
			out->type = JV_NULL;
			out->len = 0;
			break;
		default:
			{
				JsonbContainer *c = (JsonbContainer *) (base + INTALIGN(off));

				out->u.jc = c;
				out->len = c->header & JB_CMASK;
				out->type = (c->header & JB_FOBJECT) ? JV_OBJECT : JV_ARRAY;
			}
			break;
	}
}

static inline void
jv_iter_init(JvIter *it, const JV *v)
{
	it->n = v->len;
	it->i = 0;
	it->is_object = (v->type == JV_OBJECT);
	it->is_tree = (v->src == JVS_TREE);
	it->koff = 0;
	it->voff = 0;
	if (it->is_tree)
	{
		it->items = v->u.tree->items;
		it->jc = NULL;
		it->base = NULL;
		return;
	}
	it->items = NULL;
	it->jc = v->u.jc;
	it->base = (char *) &it->jc->children[it->is_object ? it->n * 2 : it->n];
	if (it->is_object && it->n > 0)
		it->voff = getJsonbOffset(it->jc, it->n);
}

/*
 * jv_iter_init for an object whose keys were just walked (KeyWalk): the
 * first value starts where the last key ends, keys_end, which saves
 * getJsonbOffset's walk back over the entries.  0 when not known.
 */
static inline void
jv_iter_init_known(JvIter *it, const JV *v, uint32 keys_end)
{
	if (keys_end == 0 || v->src == JVS_TREE || v->type != JV_OBJECT)
	{
		jv_iter_init(it, v);
		return;
	}
	it->n = v->len;
	it->i = 0;
	it->is_object = true;
	it->is_tree = false;
	it->koff = 0;
	it->voff = keys_end;
	it->items = NULL;
	it->jc = v->u.jc;
	it->base = (char *) &it->jc->children[it->n * 2];
}

/* Next element (key is left alone) or pair.  False at the end. */
static pg_attribute_always_inline bool
jv_iter_next(JvIter *it, JV *key, JV *val)
{
	JsonbContainer *jc;
	uint32		end;

	if (it->i >= it->n)
		return false;
	if (it->is_tree)
	{
		if (it->is_object)
			*key = *it->items++;
		*val = *it->items++;
		it->i++;
		return true;
	}
	jc = it->jc;
	end = jv_entry_end(jc->children[it->i], it->koff);
	if (it->is_object)
	{
		int			vi = it->n + it->i;
		uint32		vend = jv_entry_end(jc->children[vi], it->voff);

		key->type = JV_STRING;
		key->src = JVS_JSONB;
		key->u.str = it->base + it->koff;
		key->len = end - it->koff;
		jv_from_entry(jc, vi, it->base, it->voff, vend, val);
		it->voff = vend;
	}
	else
		jv_from_entry(jc, it->i, it->base, it->koff, end, val);
	it->koff = end;
	it->i++;
	return true;
}

/* Type bits of the "type" keyword. */
#define EVC_T_NULL		0x01
#define EVC_T_BOOLEAN	0x02
#define EVC_T_OBJECT	0x04
#define EVC_T_ARRAY		0x08
#define EVC_T_NUMBER	0x10
#define EVC_T_STRING	0x20
#define EVC_T_INTEGER	0x40

/* Groups of keywords, so that evaluation skips what a node does not have. */
#define EVC_KW_NUMBER	0x01	/* minimum ... multipleOf */
#define EVC_KW_STRING	0x02	/* minLength, maxLength, pattern, format */
#define EVC_KW_ARRAY	0x04	/* items ... maxItems */
#define EVC_KW_OBJECT	0x08	/* properties ... maxProperties */
#define EVC_KW_MEMBERS	0x10	/* properties, patternProperties, additionalProperties, propertyNames */
#define EVC_KW_COMB		0x20	/* allOf, anyOf, oneOf, not, if */
#define EVC_KW_VALUE	0x40	/* enum, const */

/* The numeric bounds, in the order eval_number checks them. */
#define EVC_NB_MINIMUM		0
#define EVC_NB_MAXIMUM		1
#define EVC_NB_XMINIMUM		2
#define EVC_NB_XMAXIMUM		3
#define EVC_NB_MULTIPLE_OF	4
#define EVC_NB_COUNT		5

typedef struct EvcNode EvcNode;

/*
 * Objects with at most this many members have their keys matched to
 * "properties" up front (eval_object), and may be remembered in an EvcShape.
 */
#define EVC_MATCH_LOCAL 64

/*
 * The keys of an object a node with "properties" matched lately, and what
 * the match found (eval_object).  Events of one type nearly always have the
 * same keys, and an object whose key entries and key bytes are those
 * remembered here has the same match, found with two memcmp's instead of a
 * merge of the keys with the properties.  Written during evaluation, in
 * memory allocated with the node; valid is cleared while it is rewritten.
 */
typedef struct EvcShape
{
	bool		valid;
	bool		all_required;
	bool		undeclared;
	int			n;				/* members */
	uint32		keys_end;		/* bytes of the keys */
	uint32		keys_cap;
	int8		match[EVC_MATCH_LOCAL];
	JEntry		entries[EVC_MATCH_LOCAL];
	char		keys[FLEXIBLE_ARRAY_MEMBER];
} EvcShape;

/*
 * A node's few remembered shapes.  An event type with optional members has
 * a few shapes, not one (and invalid events add a missing or an extra key),
 * so one slot alone would be rewritten at nearly every change of shape.
 * The slot that matched last is tried first; a new shape replaces the
 * slots in turn.
 */
#define EVC_SHAPE_SLOTS 4

typedef struct EvcShapeSet
{
	int			last;			/* the slot that matched or was written last */
	int			next;			/* the slot the next new shape goes to */
	EvcShape   *slot[EVC_SHAPE_SLOTS];
} EvcShapeSet;

typedef struct EvcProp
{
	const char *name;
	int			len;
	EvcNode    *schema;
	bool		required;		/* in "properties": the name is also in "required" */
} EvcProp;

typedef struct EvcPatProp
{
	EvcRegex   *re;
	const char *source;
	EvcNode    *schema;
} EvcPatProp;

typedef struct EvcDep
{
	const char *name;
	int			len;
	EvcNode    *schema;			/* schema dependency, or NULL */
	EvcProp    *required;		/* property dependency: names (schema unused) */
	int			n_required;
} EvcDep;

/* One compiled (sub)schema.  Absent keywords are NULL / -1 / 0. */
struct EvcNode
{
	bool		is_bool;
	bool		bool_value;
	bool		costly;			/* its scalar checks cost more than a few compares:
								 * pattern, format, multipleOf, $ref, combinators */
	EvcNode    *parent;			/* where this node was first found, for paths */
	const char *seg;			/* path segment(s) below parent, escaped */
	JV			src;			/* the schema text, for comparisons */

	const char *ref_uri;		/* $ref, resolved to an absolute URI */
	EvcNode    *ref;			/* its target, once linked */

	uint8		types;
	JV		   *enum_vals;
	int			n_enum;
	bool		has_const;
	JV			const_val;

	Numeric		minimum;
	Numeric		maximum;
	Numeric		exclusive_minimum;
	Numeric		exclusive_maximum;
	Numeric		multiple_of;
	EvcNum		num_fast[EVC_NB_COUNT];	/* the same bounds, exact form */
	uint8		num_fast_ok;	/* bit EVC_NB_*: num_fast holds that bound */
	bool		int_window;		/* the bounds are integers, and no multipleOf: */
	int64		int_lo;			/* an integer is within them when it is */
	int64		int_hi;			/* within [int_lo, int_hi] */
	uint8		kw;				/* EVC_KW_*: which groups of keywords are present */

	int32		min_length;
	int32		max_length;
	EvcRegex   *pattern;
	const char *pattern_src;
	const char *format;
	EvcFormatFn format_fn;

	EvcNode    *items;
	EvcNode   **items_list;
	int			n_items_list;
	EvcNode    *additional_items;
	EvcNode    *contains;
	bool		unique_items;
	int32		min_items;
	int32		max_items;

	EvcProp    *props;			/* sorted in jsonb key order */
	int			n_props;
	EvcShapeSet *shapes;		/* with props: the last objects' keys, or NULL */
	EvcPatProp *pat_props;
	int			n_pat_props;
	EvcNode    *additional_props;
	EvcProp    *required;		/* sorted, schema unused */
	int			n_required;
	bool		required_in_props;	/* every required name is in "properties" */
	bool		closed;			/* additionalProperties false, no patternProperties */
	EvcDep	   *deps;
	int			n_deps;
	EvcNode    *property_names;
	int32		min_props;
	int32		max_props;

	EvcNode    *if_;
	EvcNode    *then_;
	EvcNode    *else_;
	EvcNode   **all_of;
	int			n_all_of;
	EvcNode   **any_of;
	int			n_any_of;
	EvcNode   **one_of;
	int			n_one_of;
	EvcNode    *not_;
};

struct EvcCompiledSchema
{
	MemoryContext cxt;
	EvcNode    *root;
	int			n_nodes;
};

extern char *evc_node_path(EvcNode *node);

/*
 * The lookup of an external $ref's document by URI (no fragment): a copy
 * in cxt, or NULL when there is none.  evc.schema_documents by default.
 */
typedef Jsonb *(*EvcDocumentLookup) (const char *uri, MemoryContext cxt);
extern EvcDocumentLookup evc_schema_document_lookup;

/* Evaluate one value against a node (compat.c proves enum values). */
extern bool evc_node_accepts(EvcNode *node, const JV *value);

#endif
