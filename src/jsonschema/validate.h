/*
 * validate.h
 *		JSON Schema draft-07 validation over jsonb: the compiled form of a
 *		schema and the calls that check an instance against it.
 *
 * A schema is compiled once into a tree of nodes kept in a memory context
 * owned by the caller (the registry's cache, or the ad hoc cache of
 * evc_validate).  Deleting that context frees everything, regexes included.
 *
 * This header is the library's only way in: nothing outside src/jsonschema
 * includes validate_int.h (see src/jsonschema/README.md).
 */
#ifndef EVC_VALIDATE_H
#define EVC_VALIDATE_H

#include "lib/stringinfo.h"
#include "utils/jsonb.h"

typedef struct EvcCompiledSchema EvcCompiledSchema;

/* One validation failure.  All strings are palloc'd in the caller's context. */
typedef struct EvcValidationError
{
	char	   *instance_path;	/* JSON pointer into the instance, "" = root */
	char	   *schema_path;	/* "#/properties/a/type" */
	char	   *keyword;		/* "type" */
	char	   *message;		/* "value is a string, expected integer" */
} EvcValidationError;

/* Defines evcollector.validate_formats; safe to call more than once. */
extern void evc_validate_define_gucs(void);

/*
 * Compile a schema.  Everything is allocated in cxt (including copies of the
 * schema documents), so it lives as long as cxt.  External $refs are looked
 * up in evc.schema_documents; a schema that is not valid raises ERROR with
 * SQLSTATE EVC_ERRCODE_INVALID_SCHEMA.
 */
extern EvcCompiledSchema *evc_schema_compile(Jsonb *schema, const char *base_uri,
											 MemoryContext cxt);

/*
 * Check an instance.  Returns true when it is valid.  On failure, when err is
 * not NULL, *err describes the first problem found.
 */
extern bool evc_validate_jsonb(EvcCompiledSchema *schema, Jsonb *instance,
							   EvcValidationError *err);

/*
 * Check that a schema is a valid draft-07 schema (against the meta-schema)
 * and compiles.  Raises ERROR with a detail naming the place otherwise.
 */
extern void evc_check_schema(Jsonb *schema);

/*
 * Whether every instance valid under a is valid under b (validate_subset.c).
 * The proof is conservative: false means inclusion could not be proven, and
 * *where and *reason then say where and why.
 */
extern bool evc_schema_subset(EvcCompiledSchema *a, EvcCompiledSchema *b,
							  char **where, char **reason);

/*
 * JSON text read without jsonb (validate_textapi.c), for a caller that
 * would otherwise run jsonb_in on a large text only to read parts of it.
 * evc_jtext_read gives the root, or NULL when jsonb_in must decide (bad or
 * unusual text).  The values stay valid until the next evc_jtext_read, and
 * strings point into text, which must outlive them.  A member or element
 * that is JSON null is a value (evc_jtext_is_null), not NULL.
 */
typedef struct EvcJtextValue EvcJtextValue;

extern const EvcJtextValue *evc_jtext_read(const char *text, int len);
extern bool evc_jtext_is_object(const EvcJtextValue *v);
extern bool evc_jtext_is_null(const EvcJtextValue *v);
extern int	evc_jtext_array_length(const EvcJtextValue *v);	/* -1: not an array */
extern const EvcJtextValue *evc_jtext_array_element(const EvcJtextValue *v, int i);
extern const EvcJtextValue *evc_jtext_object_field(const EvcJtextValue *v, const char *key);
extern const char *evc_jtext_string(const EvcJtextValue *v, int *len);	/* NULL: not a string */

/* evc_validate_jsonb's yes or no for a value of such a text. */
extern bool evc_validate_json_value(EvcCompiledSchema *schema, const EvcJtextValue *v);

/*
 * Append v as JsonbToCString would print it once stored as jsonb; false
 * (out partly written) when that text cannot be told without numeric.
 */
extern bool evc_jtext_print(StringInfo out, const EvcJtextValue *v);

/* The long-lived context (child of CacheMemoryContext) compiled schemas live under. */
extern MemoryContext evc_validate_cache_context(void);

/*
 * The validator's SQLSTATEs: class "EV" is evcollector's, subclass "S" the
 * schema registry, whose own codes (EVS04 on) are in registry/registry.h.
 */
#define EVC_ERRCODE_INVALID_SCHEMA		MAKE_SQLSTATE('E','V','S','0','1')
#define EVC_ERRCODE_VALIDATION_FAILED	MAKE_SQLSTATE('E','V','S','0','2')
#define EVC_ERRCODE_REF_CYCLE			MAKE_SQLSTATE('E','V','S','0','3')

#endif
