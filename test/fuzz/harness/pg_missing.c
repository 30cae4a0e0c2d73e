/*
 * pg_missing.c
 *		The few symbols the server's objects refer to that Debian does not
 *		ship as bitcode: they live in src/timezone, in the dtrace probes
 *		object, and in the server builds of src/common and src/port (the
 *		fuzz targets link the frontend builds, libpgcommon.a and
 *		libpgport.a, instead; see test/fuzz/README.md).
 *
 * Nothing here stands in for code under test.  The functions the targets
 * must never reach abort, naming themselves, so that a path that did reach
 * one shows up as a crash with its stack.
 */
#include "postgres.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "common/file_utils.h"
#include "common/jsonapi.h"
#include "common/unicode_norm.h"
#include "pgtime.h"

/*
 * dtrace probe semaphores: a probe fires only when a tracer has attached
 * and set its semaphore, and none ever attaches here.
 */
#define SEMAPHORE(name) unsigned short postgresql_##name##_semaphore = 0
SEMAPHORE(buffer__checkpoint__done);
SEMAPHORE(buffer__checkpoint__start);
SEMAPHORE(buffer__checkpoint__sync__start);
SEMAPHORE(buffer__flush__done);
SEMAPHORE(buffer__flush__start);
SEMAPHORE(buffer__read__done);
SEMAPHORE(buffer__read__start);
SEMAPHORE(buffer__sync__done);
SEMAPHORE(buffer__sync__start);
SEMAPHORE(buffer__sync__written);
SEMAPHORE(buffer__write__dirty__done);
SEMAPHORE(buffer__write__dirty__start);
SEMAPHORE(checkpoint__done);
SEMAPHORE(checkpoint__start);
SEMAPHORE(clog__checkpoint__done);
SEMAPHORE(clog__checkpoint__start);
SEMAPHORE(deadlock__found);
SEMAPHORE(lock__wait__done);
SEMAPHORE(lock__wait__start);
SEMAPHORE(lwlock__acquire__or__wait__fail);
SEMAPHORE(lwlock__acquire__or__wait);
SEMAPHORE(lwlock__acquire);
SEMAPHORE(lwlock__condacquire__fail);
SEMAPHORE(lwlock__condacquire);
SEMAPHORE(lwlock__release);
SEMAPHORE(lwlock__wait__done);
SEMAPHORE(lwlock__wait__start);
SEMAPHORE(multixact__checkpoint__done);
SEMAPHORE(multixact__checkpoint__start);
SEMAPHORE(query__done);
SEMAPHORE(query__execute__done);
SEMAPHORE(query__execute__start);
SEMAPHORE(query__parse__done);
SEMAPHORE(query__parse__start);
SEMAPHORE(query__plan__done);
SEMAPHORE(query__plan__start);
SEMAPHORE(query__rewrite__done);
SEMAPHORE(query__rewrite__start);
SEMAPHORE(query__start);
SEMAPHORE(smgr__md__read__done);
SEMAPHORE(smgr__md__read__start);
SEMAPHORE(smgr__md__write__done);
SEMAPHORE(smgr__md__write__start);
SEMAPHORE(sort__done);
SEMAPHORE(sort__start);
SEMAPHORE(statement__status);
SEMAPHORE(subtrans__checkpoint__done);
SEMAPHORE(subtrans__checkpoint__start);
SEMAPHORE(transaction__abort);
SEMAPHORE(transaction__commit);
SEMAPHORE(transaction__start);
SEMAPHORE(twophase__checkpoint__done);
SEMAPHORE(twophase__checkpoint__start);
SEMAPHORE(wal__buffer__write__dirty__done);
SEMAPHORE(wal__buffer__write__dirty__start);
SEMAPHORE(wal__insert);
SEMAPHORE(wal__switch);

/* src/common/logging.c (frontend) names the program in its messages. */
const char *progname = "evc-fuzz";

static void pg_attribute_noreturn()
unreachable(const char *name)
{
	fprintf(stderr, "FUZZ HARNESS: %s is not linked into the fuzz targets (see test/fuzz/README.md)\n", name);
	abort();
}

#define UNREACHABLE(ret, name, args) ret name args { unreachable(#name); }

/*
 * src/timezone, which Debian does not ship as bitcode, for a zone database
 * that holds UTC alone: the server as it runs with timezone = 'UTC', except
 * that a zone name (DecodeDateTime's "Europe/Paris") is unknown, as a name
 * missing from the database is.  Times that carry "Z" or an offset, which
 * is what the wire format carries, parse exactly as in the server.
 */
struct pg_tz
{
	char		name[4];
};

static pg_tz utc = {"UTC"};
pg_tz	   *session_timezone = &utc;
pg_tz	   *log_timezone = &utc;

pg_tz *
pg_tzset(const char *tzname)
{
	return pg_strcasecmp(tzname, "UTC") == 0 ? &utc : NULL;
}

static struct pg_tm *
utc_tm(const pg_time_t *timep)
{
	static struct pg_tm result;
	struct tm	tm;
	time_t		t = (time_t) *timep;

	if (gmtime_r(&t, &tm) == NULL)
		return NULL;
	result.tm_sec = tm.tm_sec;
	result.tm_min = tm.tm_min;
	result.tm_hour = tm.tm_hour;
	result.tm_mday = tm.tm_mday;
	result.tm_mon = tm.tm_mon;
	result.tm_year = tm.tm_year;
	result.tm_wday = tm.tm_wday;
	result.tm_yday = tm.tm_yday;
	result.tm_isdst = 0;
	result.tm_gmtoff = 0;
	result.tm_zone = "UTC";
	return &result;
}

struct pg_tm *
pg_localtime(const pg_time_t *timep, const pg_tz *tz)
{
	return utc_tm(timep);
}

struct pg_tm *
pg_gmtime(const pg_time_t *timep)
{
	return utc_tm(timep);
}

/* UTC has no daylight saving time, so no boundary ever comes. */
int
pg_next_dst_boundary(const pg_time_t *timep, long int *before_gmtoff, int *before_isdst,
					 pg_time_t *boundary, long int *after_gmtoff, int *after_isdst,
					 const pg_tz *tz)
{
	*before_gmtoff = 0;
	*before_isdst = 0;
	return 0;
}

bool
pg_interpret_timezone_abbrev(const char *abbrev, const pg_time_t *timep, long int *gmtoff,
							 int *isdst, const pg_tz *tz)
{
	return false;
}

bool
pg_get_timezone_offset(const pg_tz *tz, long int *gmtoff)
{
	*gmtoff = 0;
	return true;
}

const char *
pg_get_timezone_name(pg_tz *tz)
{
	return tz->name;
}

UNREACHABLE(size_t, pg_strftime, (char *s, size_t max, const char *format, const struct pg_tm *tm))
UNREACHABLE(pg_tz *, pg_tzset_offset, (long gmtoffset))
UNREACHABLE(pg_tzenum *, pg_tzenumerate_start, (void))
UNREACHABLE(pg_tz *, pg_tzenumerate_next, (pg_tzenum *dir))
UNREACHABLE(void, pg_tzenumerate_end, (pg_tzenum *dir))

/* src/port/pqsignal.c (server build): no target installs a handler. */
UNREACHABLE(pqsigfunc, pqsignal, (int signo, pqsigfunc func))

/* src/common/unicode_norm.c (server build): SQL's normalize() only. */
UNREACHABLE(UnicodeNormalizationQC, unicode_is_normalized_quickcheck,
			(UnicodeNormalizationForm form, const pg_wchar *input))

/*
 * src/common/jsonapi.c's json_errdetail, which its frontend build leaves
 * out.  jsonb_in's errors and a sink's check of data_json (sinks.c) reach
 * it, so it is here with the server's messages, word for word (PostgreSQL
 * 15, src/common/jsonapi.c).
 */
static char *
extract_token(JsonLexContext *lex)
{
	int			toklen = lex->token_terminator - lex->token_start;
	char	   *token = palloc(toklen + 1);

	memcpy(token, lex->token_start, toklen);
	token[toklen] = '\0';
	return token;
}

char *
json_errdetail(JsonParseErrorType error, JsonLexContext *lex)
{
	switch (error)
	{
		case JSON_SUCCESS:
			break;
		case JSON_ESCAPING_INVALID:
			return psprintf("Escape sequence \"\\%s\" is invalid.", extract_token(lex));
		case JSON_ESCAPING_REQUIRED:
			return psprintf("Character with value 0x%02x must be escaped.",
							(unsigned char) *(lex->token_terminator));
		case JSON_EXPECTED_END:
			return psprintf("Expected end of input, but found \"%s\".", extract_token(lex));
		case JSON_EXPECTED_ARRAY_FIRST:
			return psprintf("Expected array element or \"]\", but found \"%s\".", extract_token(lex));
		case JSON_EXPECTED_ARRAY_NEXT:
			return psprintf("Expected \",\" or \"]\", but found \"%s\".", extract_token(lex));
		case JSON_EXPECTED_COLON:
			return psprintf("Expected \":\", but found \"%s\".", extract_token(lex));
		case JSON_EXPECTED_JSON:
			return psprintf("Expected JSON value, but found \"%s\".", extract_token(lex));
		case JSON_EXPECTED_MORE:
			return "The input string ended unexpectedly.";
		case JSON_EXPECTED_OBJECT_FIRST:
			return psprintf("Expected string or \"}\", but found \"%s\".", extract_token(lex));
		case JSON_EXPECTED_OBJECT_NEXT:
			return psprintf("Expected \",\" or \"}\", but found \"%s\".", extract_token(lex));
		case JSON_EXPECTED_STRING:
			return psprintf("Expected string, but found \"%s\".", extract_token(lex));
		case JSON_INVALID_TOKEN:
			return psprintf("Token \"%s\" is invalid.", extract_token(lex));
		case JSON_UNICODE_CODE_POINT_ZERO:
			return "\\u0000 cannot be converted to text.";
		case JSON_UNICODE_ESCAPE_FORMAT:
			return "\"\\u\" must be followed by four hexadecimal digits.";
		case JSON_UNICODE_HIGH_ESCAPE:
			return "Unicode escape values cannot be used for code point values above 007F when the encoding is not UTF8.";
		case JSON_UNICODE_HIGH_SURROGATE:
			return "Unicode high surrogate must not follow a high surrogate.";
		case JSON_UNICODE_LOW_SURROGATE:
			return "Unicode low surrogate must follow a high surrogate.";
	}
	elog(ERROR, "unexpected json parse error type: %d", (int) error);
	return NULL;
}

/*
 * src/common/file_utils.c: its frontend build also defines fsync_fname and
 * durable_rename, which the server's fd.c defines, so it is left out; the
 * directory walks that call this run in no target.
 */
UNREACHABLE(PGFileType, get_dirent_type, (const char *path, const struct dirent *de,
										  bool look_through_symlinks, int elevel))

/* src/common/fe_memutils.c, left out for the server's palloc: logging.c's. */
UNREACHABLE(void *, pg_malloc_extended, (size_t size, int flags))
