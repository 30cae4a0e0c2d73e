/*
 * validate.h
 *		JSON Schema draft-07 validation over jsonb: the compiled form of a
 *		schema and the calls that check an instance against it.
 *
 * A schema is compiled once into a tree of EvcSchemaNode kept in a memory
 * context owned by the caller (the registry's cache, or the ad hoc cache of
 * evc_validate).  Deleting that context frees everything, regexes included.
 */
#ifndef EVC_VALIDATE_H
#define EVC_VALIDATE_H

#include "nodes/pg_list.h"
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

/* Whether "format" is an assertion (evcollector.validate_formats). */
extern bool evc_validate_formats;

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

/* Check an instance and return every problem found (a List of EvcValidationError *). */
extern List *evc_validate_all_errors(EvcCompiledSchema *schema, Jsonb *instance);

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

/* Look up a compiled ad hoc schema (bounded per-backend cache keyed by hash). */
extern EvcCompiledSchema *evc_adhoc_schema(Jsonb *schema);

/* The long-lived context (child of CacheMemoryContext) compiled schemas live under. */
extern MemoryContext evc_validate_cache_context(void);

/* Drop every cached compiled schema (registry or documents changed). */
extern void evc_validate_reset_caches(void);

/* Formats (validate_formats.c).  Returns true when s is valid or the format unknown. */
typedef bool (*EvcFormatFn) (const char *s, int len);
extern EvcFormatFn evc_format_lookup(const char *format);
extern bool evc_format_check(const char *format, const char *s, int len);
extern bool evc_format_known(const char *format);

/* ECMA-262 pattern to a compiled Postgres regex (validate_regex.c). */
typedef struct EvcRegex EvcRegex;
extern EvcRegex *evc_regex_compile(const char *pattern, int len, char **errmsg);
extern bool evc_regex_match(EvcRegex *re, const char *s, int len);
extern void evc_regex_free(EvcRegex *re);

/*
 * SQLSTATEs of the registry and the validator: class "EV" is evcollector's,
 * subclass "S" the schema registry.
 */
#define EVC_ERRCODE_INVALID_SCHEMA		MAKE_SQLSTATE('E','V','S','0','1')
#define EVC_ERRCODE_VALIDATION_FAILED	MAKE_SQLSTATE('E','V','S','0','2')
#define EVC_ERRCODE_REF_CYCLE			MAKE_SQLSTATE('E','V','S','0','3')
#define EVC_ERRCODE_INCOMPATIBLE_SCHEMA	MAKE_SQLSTATE('E','V','S','0','4')
#define EVC_ERRCODE_UNKNOWN_EVENT_TYPE	MAKE_SQLSTATE('E','V','S','0','5')
#define EVC_ERRCODE_INVALID_NAME		MAKE_SQLSTATE('E','V','S','0','6')

#endif
