/*
 * fuzz_pg.c
 *		Runs evcollector's code on PostgreSQL's own backend objects without a
 *		server: sets up memory contexts, the database encoding and stack
 *		checking, and catches ERROR around each input as a backend's
 *		transaction abort would.
 *
 * Memory: aset.c is the one server object left out (see
 * test/fuzz/README.md).  In its place, a context of the same interface
 * gives each palloc chunk a malloc block of its own, so that
 * AddressSanitizer sees the bounds of every chunk.  aset.c carves chunks
 * out of large blocks, and an overrun of a chunk would land in its
 * neighbour unseen.  PostgreSQL's own remedy, its Valgrind mode, is not
 * compiled into Debian's server.  Everything else in mcxt.c (palloc,
 * repalloc, reset callbacks, the context tree) is the server's.
 */
#include "postgres.h"

#include <stdio.h>
#include <stdlib.h>

#include "lib/ilist.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/memnodes.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/tzparser.h"

#include "jsonschema/validate_int.h"

#include "fuzz_pg.h"

MemoryContext fuzz_input_cxt = NULL;
MemoryContext fuzz_keep_cxt = NULL;
int			fuzz_last_sqlerrcode = 0;
char		fuzz_last_message[256];

/* ---------- a context with one malloc block per chunk ---------- */

typedef struct FuzzContext
{
	MemoryContextData header;
	dlist_head	chunks;
	Size		allocated;
} FuzzContext;

/*
 * The chunk header.  mcxt.c finds a chunk's context in the pointer-sized
 * word just before it (GetMemoryChunkContext), so context comes last, and
 * the header is a multiple of MAXALIGN.
 */
typedef struct FuzzChunk
{
	dlist_node	node;
	Size		size;
	MemoryContext context;
} FuzzChunk;

StaticAssertDecl(sizeof(FuzzChunk) % MAXIMUM_ALIGNOF == 0, "FuzzChunk must keep MAXALIGN");

#define FUZZ_CHUNK(ptr)	((FuzzChunk *) ((char *) (ptr) - sizeof(FuzzChunk)))

static void *
fuzz_cxt_alloc(MemoryContext context, Size size)
{
	FuzzContext *fc = (FuzzContext *) context;
	FuzzChunk  *c = malloc(sizeof(FuzzChunk) + size);

	if (c == NULL)
		return NULL;
	c->size = size;
	c->context = context;
	dlist_push_tail(&fc->chunks, &c->node);
	fc->allocated += size;
	return (char *) c + sizeof(FuzzChunk);
}

static void
fuzz_cxt_free(MemoryContext context, void *pointer)
{
	FuzzContext *fc = (FuzzContext *) context;
	FuzzChunk  *c = FUZZ_CHUNK(pointer);

	dlist_delete(&c->node);
	fc->allocated -= c->size;
	free(c);
}

static void *
fuzz_cxt_realloc(MemoryContext context, void *pointer, Size size)
{
	FuzzChunk  *old = FUZZ_CHUNK(pointer);
	void	   *p = fuzz_cxt_alloc(context, size);

	/* a new block every time, so a stale pointer to the old one is caught */
	if (p == NULL)
		return NULL;
	memcpy(p, pointer, Min(old->size, size));
	fuzz_cxt_free(context, pointer);
	return p;
}

static void
fuzz_cxt_reset(MemoryContext context)
{
	FuzzContext *fc = (FuzzContext *) context;
	dlist_mutable_iter it;

	dlist_foreach_modify(it, &fc->chunks)
	{
		dlist_delete(it.cur);
		free(it.cur);
	}
	fc->allocated = 0;
}

static void
fuzz_cxt_delete(MemoryContext context)
{
	fuzz_cxt_reset(context);
	free(context);
}

static Size
fuzz_cxt_chunk_space(MemoryContext context, void *pointer)
{
	return FUZZ_CHUNK(pointer)->size + sizeof(FuzzChunk);
}

static bool
fuzz_cxt_is_empty(MemoryContext context)
{
	return dlist_is_empty(&((FuzzContext *) context)->chunks);
}

static void
fuzz_cxt_stats(MemoryContext context, MemoryStatsPrintFunc printfunc, void *passthru,
			   MemoryContextCounters *totals, bool print_to_stderr)
{
	FuzzContext *fc = (FuzzContext *) context;

	if (printfunc)
	{
		char		line[64];

		snprintf(line, sizeof(line), "%zu bytes in malloc chunks", fc->allocated);
		printfunc(context, passthru, line, print_to_stderr);
	}
	if (totals)
		totals->totalspace += fc->allocated;
}

#ifdef MEMORY_CONTEXT_CHECKING
static void
fuzz_cxt_check(MemoryContext context)
{
}
#endif

static const MemoryContextMethods fuzz_cxt_methods = {
	fuzz_cxt_alloc,
	fuzz_cxt_free,
	fuzz_cxt_realloc,
	fuzz_cxt_reset,
	fuzz_cxt_delete,
	fuzz_cxt_chunk_space,
	fuzz_cxt_is_empty,
	fuzz_cxt_stats
#ifdef MEMORY_CONTEXT_CHECKING
	,fuzz_cxt_check
#endif
};

/*
 * aset.c's entry point, which AllocSetContextCreate() expands to: every
 * "AllocSet" of the process, TopMemoryContext included, is a FuzzContext.
 */
MemoryContext
AllocSetContextCreateInternal(MemoryContext parent, const char *name,
							  Size minContextSize, Size initBlockSize, Size maxBlockSize)
{
	FuzzContext *fc = malloc(sizeof(FuzzContext));

	if (fc == NULL)
	{
		if (TopMemoryContext)
			MemoryContextStats(TopMemoryContext);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Failed while creating memory context \"%s\".", name)));
	}
	dlist_init(&fc->chunks);
	fc->allocated = 0;
	/* the tag aset.c uses, so that IsA(cxt, AllocSetContext) holds */
	MemoryContextCreate((MemoryContext) fc, T_AllocSetContext, &fuzz_cxt_methods, parent, name);
	return (MemoryContext) fc;
}

/* aset.c keeps freed contexts for reuse; this context keeps none. */
void
AllocSetDeleteFreeList(MemoryContext context)
{
}

/* ---------- setup and one input ---------- */

void
fuzz_pg_init(void)
{
	static bool done = false;

	if (done)
		return;
	done = true;
	MemoryContextInit();
	SetDatabaseEncoding(PG_UTF8);
	SetMessageEncoding(PG_UTF8);
	/* what a backend's log would show goes to stderr, above WARNING only */
	log_min_messages = ERROR;
	client_min_messages = ERROR;

	/*
	 * The zone abbreviations ("Z", "UTC", "EST"), as the server loads them
	 * for timezone_abbreviations = 'Default': from share/timezonesets, found
	 * from the server's own path.
	 */
	{
		TimeZoneAbbrevTable *abbrevs;

		strlcpy(my_exec_path, FUZZ_PG_BINDIR "/postgres", MAXPGPATH);
		abbrevs = load_tzoffsets("Default");
		if (abbrevs == NULL)
			fuzz_fail("could not load the zone abbreviations (timezonesets/Default)");
		InstallTimeZoneAbbrevs(abbrevs);
	}
	fuzz_input_cxt = AllocSetContextCreate(TopMemoryContext, "fuzz input",
										   ALLOCSET_DEFAULT_SIZES);
	fuzz_keep_cxt = AllocSetContextCreate(TopMemoryContext, "fuzz input, kept across runs",
										  ALLOCSET_DEFAULT_SIZES);
	fuzz_install_documents();
}

void
fuzz_begin(void)
{
	fuzz_pg_init();
	MemoryContextReset(fuzz_keep_cxt);
}

bool
fuzz_run(void (*fn) (void *arg), void *arg)
{
	static int	depth = 0;
	bool		ok = true;
	pg_stack_base_t save_stack = set_stack_base();
	MemoryContext outer = CurrentMemoryContext;
	MemoryContext run_cxt;

	fuzz_pg_init();
	/* a run nested in another allocates in a child, so it frees only its own */
	run_cxt = depth == 0 ? fuzz_input_cxt :
		AllocSetContextCreate(CurrentMemoryContext, "fuzz nested run", ALLOCSET_SMALL_SIZES);
	MemoryContextSwitchTo(run_cxt);
	depth++;
	PG_TRY();
	{
		fn(arg);
	}
	PG_CATCH();
	{
		ErrorData  *e;

		MemoryContextSwitchTo(run_cxt);
		e = CopyErrorData();
		FlushErrorState();
		fuzz_last_sqlerrcode = e->sqlerrcode;
		strlcpy(fuzz_last_message, e->message ? e->message : "", sizeof(fuzz_last_message));
		if (getenv("FUZZ_VERBOSE"))
			fprintf(stderr, "fuzz: caught ERROR %s: %s (%s)\n", unpack_sql_state(e->sqlerrcode),
					e->message, e->detail ? e->detail : "");
		if (e->sqlerrcode == ERRCODE_INTERNAL_ERROR && getenv("FUZZ_ALLOW_INTERNAL") == NULL)
			fuzz_fail("internal error (XX000) on input: %s (%s:%d)",
					  e->message, e->filename ? e->filename : "?", e->lineno);
		ok = false;
	}
	PG_END_TRY();
	depth--;
	restore_stack_base(save_stack);
	MemoryContextSwitchTo(depth == 0 ? TopMemoryContext : outer);
	if (depth == 0)
		MemoryContextReset(fuzz_input_cxt);
	else
		MemoryContextDelete(run_cxt);
	return ok;
}

void
fuzz_fail(const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "FUZZ FINDING: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	abort();
}

char *
fuzz_cstring(const uint8_t *data, size_t len)
{
	char	   *s = MemoryContextAlloc(fuzz_keep_cxt, len + 1);

	memcpy(s, data, len);
	s[len] = '\0';
	return s;
}

/* ---------- the documents a $ref may name ---------- */

typedef struct FuzzDoc
{
	char	   *uri;
	Jsonb	   *doc;			/* NULL: there is none */
	struct FuzzDoc *next;
} FuzzDoc;

static FuzzDoc *fuzz_docs = NULL;

/*
 * http://HOST/PATH is the file FUZZ_DOCUMENTS/HOST/PATH, as make lays them
 * out (.build/fuzz/documents): the test suite's remotes under
 * localhost:1234, the draft-07 meta-schema under json-schema.org.  Read
 * once, kept for the process.
 */
static Jsonb *
fuzz_lookup_document(const char *uri, MemoryContext cxt)
{
	const char *dir = getenv("FUZZ_DOCUMENTS");
	FuzzDoc    *d;
	FILE	   *f;
	StringInfoData buf;
	char		path[MAXPGPATH];
	MemoryContext old;

	for (d = fuzz_docs; d; d = d->next)
		if (strcmp(d->uri, uri) == 0)
			goto found;
	old = MemoryContextSwitchTo(TopMemoryContext);
	d = palloc0(sizeof(FuzzDoc));
	d->uri = pstrdup(uri);
	d->next = fuzz_docs;
	fuzz_docs = d;
	if (dir == NULL)
		dir = FUZZ_DOCUMENTS_DEFAULT;
	if (strncmp(uri, "http://", 7) == 0 && strstr(uri, "..") == NULL &&
		snprintf(path, sizeof(path), "%s/%s", dir, uri + 7) < sizeof(path) &&
		(f = fopen(path, "r")) != NULL)
	{
		char		chunk[4096];
		size_t		n;

		initStringInfo(&buf);
		while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
			appendBinaryStringInfo(&buf, chunk, n);
		fclose(f);
		d->doc = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
	}
	MemoryContextSwitchTo(old);
found:
	if (d->doc == NULL)
		return NULL;
	{
		Jsonb	   *copy = MemoryContextAlloc(cxt, VARSIZE(d->doc));

		memcpy(copy, d->doc, VARSIZE(d->doc));
		return copy;
	}
}

void
fuzz_install_documents(void)
{
	evc_schema_document_lookup = fuzz_lookup_document;
}

static void
parse_jsonb(void *arg)
{
	void	  **io = arg;
	Jsonb	   *jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(io[0])));

	io[1] = MemoryContextAlloc(fuzz_keep_cxt, VARSIZE(jb));
	memcpy(io[1], jb, VARSIZE(jb));
}

Jsonb *
fuzz_parse_jsonb(const char *text)
{
	void	   *io[2] = {(void *) text, NULL};

	/*
	 * The server checks the encoding of text when it comes in, before any
	 * input function sees it, and jsonb_in checks none: text that is not
	 * UTF-8 never reaches it there, so it does not here.
	 */
	if (!pg_verifymbstr(text, strlen(text), true))
	{
		fuzz_last_sqlerrcode = ERRCODE_CHARACTER_NOT_IN_REPERTOIRE;
		strlcpy(fuzz_last_message, "invalid byte sequence for encoding \"UTF8\"",
				sizeof(fuzz_last_message));
		return NULL;
	}
	return fuzz_run(parse_jsonb, io) ? io[1] : NULL;
}
