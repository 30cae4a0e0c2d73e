-- JSON Schema draft-07 conformance: the official JSON-Schema-Test-Suite as
-- installed by Debian's json-schema-test-suite, run through evc_validate.
--
-- One assertion per required file (tests/draft7/*.json): every case passes
-- except those listed, with a reason, in test/jsonschema_skip.txt.  The
-- optional files (optional/, optional/format/) are run and reported with
-- diag, never failed.  The suite's remote documents (normally served at
-- http://localhost:1234/) are preloaded into evc.schema_documents, inside
-- the transaction that is rolled back at the end.
\set ON_ERROR_STOP 1
\set QUIET 1
\pset format unaligned
\pset tuples_only true
\pset pager off
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS pgtap;
CREATE EXTENSION IF NOT EXISTS evcollector;

BEGIN;

-- The skip list is read by psql (client side), from the repository.
CREATE TEMP TABLE skip_list (line text);
\copy skip_list FROM PROGRAM 'for f in test/jsonschema_skip.txt ../jsonschema_skip.txt jsonschema_skip.txt ../test/jsonschema_skip.txt; do [ -f "$f" ] && exec cat "$f"; done; echo "#missing"' WITH (FORMAT csv, DELIMITER E'\x01', QUOTE E'\x02')
CREATE TEMP VIEW skips AS
SELECT split_part(line, E'\t', 1) AS file, split_part(line, E'\t', 2) AS grp,
       split_part(line, E'\t', 3) AS test, split_part(line, E'\t', 4) AS reason
FROM skip_list WHERE line !~ '^\s*(#|$)';

CREATE TEMP TABLE dirs (dir text, optional boolean);
INSERT INTO dirs VALUES
	('/usr/share/json-schema-test-suite/tests/draft7/', false),
	('/usr/share/json-schema-test-suite/tests/draft7/optional/', true),
	('/usr/share/json-schema-test-suite/tests/draft7/optional/format/', true);

-- Remotes, by the URI the suite serves them at.
INSERT INTO evc.schema_documents (uri, document)
SELECT 'http://localhost:1234/' || f, pg_read_file('/usr/share/json-schema-test-suite/remotes/' || f)::jsonb
FROM (SELECT f FROM pg_ls_dir('/usr/share/json-schema-test-suite/remotes') f WHERE f LIKE '%.json'
      UNION ALL
      SELECT 'folder/' || f FROM pg_ls_dir('/usr/share/json-schema-test-suite/remotes/folder') f WHERE f LIKE '%.json') r
ON CONFLICT (uri) DO NOTHING;

CREATE TEMP TABLE cases AS
SELECT replace(d.dir, '/usr/share/json-schema-test-suite/tests/draft7/', '') || f AS file,
       d.optional, g.gno, g.grp->>'description' AS grp, g.grp->'schema' AS schema,
       t.tno, t.test->>'description' AS test, t.test->'data' AS data,
       (t.test->>'valid')::boolean AS valid
FROM dirs d
CROSS JOIN LATERAL pg_ls_dir(d.dir) f
CROSS JOIN LATERAL jsonb_array_elements(pg_read_file(d.dir || f)::jsonb) WITH ORDINALITY g(grp, gno)
CROSS JOIN LATERAL jsonb_array_elements(g.grp->'tests') WITH ORDINALITY t(test, tno)
WHERE f LIKE '%.json';

-- A case that raises an error fails, and the error is kept for the report.
CREATE FUNCTION pg_temp.run_case(schema jsonb, data jsonb) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	RETURN evc_validate(schema, data)::text;
EXCEPTION WHEN OTHERS THEN
	RETURN 'error: ' || SQLERRM;
END
$$;

CREATE TEMP TABLE results AS
SELECT c.*, pg_temp.run_case(c.schema, c.data) AS got,
       EXISTS (SELECT 1 FROM skips s WHERE s.file = c.file AND s.grp = c.grp AND s.test = c.test) AS skipped
FROM cases c;
ALTER TABLE results ADD COLUMN passed boolean;
UPDATE results SET passed = (got = valid::text);

SELECT plan((SELECT count(DISTINCT file)::int FROM results WHERE NOT optional) + 2);

SELECT ok(NOT EXISTS (SELECT 1 FROM skip_list WHERE line = '#missing'), 'the skip list test/jsonschema_skip.txt is readable');
SELECT ok(NOT EXISTS (SELECT 1 FROM skips s WHERE NOT EXISTS (
		SELECT 1 FROM results r WHERE r.file = s.file AND r.grp = s.grp AND r.test = s.test AND NOT r.passed)),
	'every entry of the skip list names a case that fails: '
	|| coalesce((SELECT string_agg(s.file || ' / ' || s.grp || ' / ' || s.test, '; ') FROM skips s WHERE NOT EXISTS (
		SELECT 1 FROM results r WHERE r.file = s.file AND r.grp = s.grp AND r.test = s.test AND NOT r.passed)), 'none stale'));

-- Required files: one assertion each, failing cases named.
SELECT ok(count(*) FILTER (WHERE NOT passed AND NOT skipped) = 0,
	format('draft7/%s: %s passed, %s failed, %s skipped of %s', file,
		count(*) FILTER (WHERE passed), count(*) FILTER (WHERE NOT passed AND NOT skipped),
		count(*) FILTER (WHERE NOT passed AND skipped), count(*)))
FROM results WHERE NOT optional GROUP BY file ORDER BY file;

SELECT diag(format('FAIL %s / %s / %s: expected %s, got %s', file, grp, test, valid, got))
FROM results WHERE NOT optional AND NOT passed AND NOT skipped ORDER BY file, gno, tno;

-- Optional files: reported, never failed.
SELECT diag(format('optional draft7/%s: %s passed, %s failed of %s', file,
		count(*) FILTER (WHERE passed), count(*) FILTER (WHERE NOT passed), count(*)))
FROM results WHERE optional GROUP BY file ORDER BY file;

SELECT diag(format('required total: %s passed, %s failed, %s skipped of %s; optional total: %s passed of %s',
		count(*) FILTER (WHERE passed AND NOT optional),
		count(*) FILTER (WHERE NOT passed AND NOT skipped AND NOT optional),
		count(*) FILTER (WHERE NOT passed AND skipped AND NOT optional),
		count(*) FILTER (WHERE NOT optional),
		count(*) FILTER (WHERE passed AND optional), count(*) FILTER (WHERE optional)))
FROM results;

SELECT * FROM finish();
ROLLBACK;
