/*
 * validate_int.h
 *		Internals shared by the validator's files: a light view of jsonb
 *		values (JV) read straight from the binary container, and the compiled
 *		schema tree.  Not for use outside src/validate*.c.
 */
#ifndef EVC_VALIDATE_INT_H
#define EVC_VALIDATE_INT_H

#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "validate.h"

/* A jsonb value seen in place: nothing is copied. */
typedef enum JvType
{
	JV_NULL,
	JV_BOOL,
	JV_NUMBER,
	JV_STRING,
	JV_ARRAY,
	JV_OBJECT
} JvType;

typedef struct JV
{
	JvType		type;
	int			len;			/* string bytes, or element / pair count */
	union
	{
		const char *str;
		Numeric		num;
		bool		boolean;
		JsonbContainer *jc;
	}			u;
} JV;

/* Walks the elements of an array or the pairs of an object, in stored order. */
typedef struct JvIter
{
	JsonbContainer *jc;
	char	   *base;
	int			n;
	int			i;
	uint32		koff;
	uint32		voff;
	bool		is_object;
} JvIter;

extern void jv_root(Jsonb *jb, JV *out);
extern void jv_iter_init(JvIter *it, const JV *container);
extern bool jv_iter_next(JvIter *it, JV *key, JV *val);
extern bool jv_object_get(const JV *obj, const char *key, int keylen, JV *out);
extern bool jv_array_get(const JV *arr, int idx, JV *out);
extern bool jv_equal(const JV *a, const JV *b);
extern uint32 jv_hash(const JV *v);
extern int	jv_key_cmp(const char *a, int alen, const char *b, int blen);
extern const char *jv_type_name(const JV *v);

/* Type bits of the "type" keyword. */
#define EVC_T_NULL		0x01
#define EVC_T_BOOLEAN	0x02
#define EVC_T_OBJECT	0x04
#define EVC_T_ARRAY		0x08
#define EVC_T_NUMBER	0x10
#define EVC_T_STRING	0x20
#define EVC_T_INTEGER	0x40

typedef struct EvcNode EvcNode;

typedef struct EvcProp
{
	const char *name;
	int			len;
	EvcNode    *schema;
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
	EvcPatProp *pat_props;
	int			n_pat_props;
	EvcNode    *additional_props;
	EvcProp    *required;		/* sorted, schema unused */
	int			n_required;
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

/* Evaluate one value against a node (compat.c proves enum values). */
extern bool evc_node_accepts(EvcNode *node, const JV *value);

#endif
