/*
 * fuzz_pg.h
 *		What a libFuzzer target needs to run evcollector's code outside a
 *		server: PostgreSQL's own memory contexts, elog and datatypes (linked
 *		from the server's objects, see test/fuzz/README.md), set up once,
 *		and a way to run one input with ERROR caught as a backend would.
 */
#ifndef EVC_FUZZ_PG_H
#define EVC_FUZZ_PG_H

#include "postgres.h"

#include <stdint.h>

#include "utils/jsonb.h"

/*
 * Set up the backend pieces (memory contexts, UTF8 database encoding, stack
 * depth checking).  Idempotent; every fuzz_run calls it.
 */
extern void fuzz_pg_init(void);

/* Each input starts here: fuzz_pg_init, and fuzz_keep_cxt emptied. */
extern void fuzz_begin(void);

/*
 * fuzz_input_cxt is where one fuzz_run allocates; it is reset after each.
 * fuzz_keep_cxt holds what a target keeps across the runs of one input;
 * fuzz_begin resets it.
 */
extern MemoryContext fuzz_input_cxt;
extern MemoryContext fuzz_keep_cxt;

/*
 * Run fn(arg) in fuzz_input_cxt.  An ERROR it raises is caught, as the
 * caller's transaction would abort, and fuzz_run returns false; the
 * context is reset in both cases.  An ERROR with an internal SQLSTATE
 * (XX000: elog, a can't-happen) is a finding and aborts, since bad input
 * must get an ereport with its own SQLSTATE.
 */
extern bool fuzz_run(void (*fn) (void *arg), void *arg);

/* The SQLSTATE and message of the last error fuzz_run caught. */
extern int	fuzz_last_sqlerrcode;
extern char fuzz_last_message[256];

/* Report a finding (a broken invariant of the code under test) and abort. */
extern void fuzz_fail(const char *fmt,...) pg_attribute_printf(1, 2) pg_attribute_noreturn();

/* The bytes as a NUL-terminated string, in fuzz_keep_cxt. */
extern char *fuzz_cstring(const uint8_t *data, size_t len);

/*
 * jsonb_in's result in fuzz_keep_cxt, or NULL when it raised an error or
 * the text is not valid UTF-8 (which the server refuses before jsonb_in).
 */
extern Jsonb *fuzz_parse_jsonb(const char *text);

/*
 * JSON documents a fuzzed schema may $ref by URI: the JSON-Schema-Test-
 * Suite's remotes (http://localhost:1234/...) and the draft-07
 * meta-schema, read from FUZZ_REMOTES_DIR at start.  Installed as the
 * validator's document lookup in place of evc.schema_documents.
 */
extern void fuzz_install_documents(void);

#endif
