-- JSON Schema validation: evc_validate, evc_validation_errors, hostile input.
CREATE EXTENSION IF NOT EXISTS evcollector;
SET client_min_messages = warning;

-- Keywords, one line each.
SELECT evc_validate('{"type": "integer"}', '1.0') AS integer_1_0,
       evc_validate('{"type": "integer"}', '1.5') AS integer_1_5,
       evc_validate('{"type": ["string", "null"]}', 'null') AS string_or_null,
       evc_validate('{"enum": [1, "a", {"b": [1]}]}', '{"b": [1.0]}') AS enum_deep,
       evc_validate('{"const": {"a": 1, "b": 2}}', '{"b": 2, "a": 1}') AS const_obj,
       evc_validate('{"multipleOf": 0.01}', '19.99') AS multiple_of,
       evc_validate('{"maxLength": 2}', '"日本"') AS code_points,
       evc_validate('{"pattern": "^\\d+$"}', '"١٢"') AS ecma_digits_ascii_only;

SELECT * FROM evc_validation_errors(
	'{"type": "object",
	  "properties": {
	    "user": {"type": "object", "properties": {"id": {"type": "integer", "minimum": 1}},
	             "required": ["id"], "additionalProperties": false},
	    "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": true, "maxItems": 3},
	    "kind": {"enum": ["a", "b"]},
	    "at": {"type": "string", "format": "date-time"},
	    "code": {"type": "string", "pattern": "^[A-Z]{3}$"}
	  },
	  "required": ["user", "kind"]}',
	'{"user": {"id": 0, "x/y": 1}, "tags": ["a", "a", "b", "c"], "kind": "z",
	  "at": "2024-02-30T10:00:00Z", "code": "abc"}');

SELECT * FROM evc_validation_errors('{"oneOf": [{"type": "integer"}, {"minimum": 2}]}', '3');
SELECT * FROM evc_validation_errors('{"not": {"type": "string"}}', '"s"');
SELECT * FROM evc_validation_errors('{"if": {"properties": {"a": {"const": 1}}}, "then": {"required": ["b"]}}', '{"a": 1}');
SELECT * FROM evc_validation_errors('{"items": [{"type": "integer"}], "additionalItems": false}', '[1, 2]');
SELECT * FROM evc_validation_errors('{"dependencies": {"a": ["b"]}, "propertyNames": {"maxLength": 1}}', '{"a": 1, "cc": 2}');
SELECT * FROM evc_validation_errors('{"$ref": "#/definitions/p", "definitions": {"p": {"type": "string"}}}', '5');

-- Formats are assertions, and can be switched off.
SELECT evc_validate('{"format": "uuid"}', '"not-a-uuid"') AS uuid_checked;
SET evcollector.validate_formats = off;
SELECT evc_validate('{"format": "uuid"}', '"not-a-uuid"') AS uuid_unchecked;
RESET evcollector.validate_formats;
SELECT f, evc_validate(format('{"format": "%s"}', f)::jsonb, to_jsonb(v)) AS ok
FROM (VALUES ('date-time', '2024-01-01T00:00:00+01:00'), ('date', '2024-02-29'), ('date', '2023-02-29'),
             ('time', '23:59:60Z'), ('email', 'a.b@example.com'), ('hostname', '-bad.example'),
             ('ipv4', '10.0.0.256'), ('ipv6', '::ffff:10.0.0.1'), ('uri', 'https://x.org/a?b#c'),
             ('uri', '/relative'), ('uuid', '123e4567-e89b-12d3-a456-426614174000'), ('regex', '(?<n>x)')) t(f, v);

-- Bad schemas are refused with the place named.
SELECT evc_validate('{"type": "strin"}', '1');
SELECT evc_validate('{"properties": {"a": {"minimum": "1"}}}', '1');
SELECT evc_validate('{"pattern": "(unclosed"}', '"x"');
SELECT evc_validate('{"pattern": "\\p{L}"}', '"x"');
SELECT evc_validate('{"$ref": "#/definitions/missing"}', '1');
SELECT evc_validate('{"$ref": "http://example.com/not-preloaded.json"}', '1');
SELECT evc_validate('{"allOf": [1]}', '1');

-- Hostile input: $ref cycles are refused, without any stack overflow.
SELECT evc_validate('{"$ref": "#/definitions/a", "definitions": {"a": {"$ref": "#/definitions/b"}, "b": {"$ref": "#/definitions/a"}}}', '1');
SELECT evc_validate('{"allOf": [{"$ref": "#"}]}', '1');
-- Recursion that moves into the instance is fine.
SELECT evc_validate('{"items": {"$ref": "#"}, "type": "array"}', '[[[[]]]]') AS recursive_ok;
SET client_min_messages = notice;
-- 10,000 levels of nesting: a recursive schema fails cleanly with an error,
-- a flat one validates.
SELECT evc_validate('{"type": "array"}', (repeat('[', 10000) || repeat(']', 10000))::jsonb) AS deep_flat_schema;
DO $$
BEGIN
	PERFORM evc_validate('{"items": {"$ref": "#"}}', (repeat('[', 10000) || repeat(']', 10000))::jsonb);
	RAISE NOTICE 'deep recursive schema: validated';
EXCEPTION WHEN statement_too_complex THEN
	RAISE NOTICE 'deep recursive schema: %', SQLERRM;
END
$$;
-- Schemas nested 10,000 deep are refused cleanly too.
DO $$
BEGIN
	PERFORM evc_validate((repeat('{"not":', 10000) || '{}' || repeat('}', 10000))::jsonb, '1');
	RAISE NOTICE 'deep schema: validated';
EXCEPTION WHEN statement_too_complex THEN
	RAISE NOTICE 'deep schema: %', SQLERRM;
END
$$;
SET client_min_messages = warning;
-- 1 MB strings: lengths in code points, patterns, formats.
SELECT evc_validate('{"maxLength": 1048576, "pattern": "^(a|b)*$"}', to_jsonb(repeat('ab', 524288))) AS one_mb_ok,
       evc_validate('{"minLength": 1048577}', to_jsonb(repeat('é', 1048576))) AS one_mb_code_points,
       evc_validate('{"format": "email"}', to_jsonb(repeat('a', 1048576))) AS one_mb_email;
-- Patterns that backtrack catastrophically in ECMA engines finish at once:
-- PostgreSQL's engine runs them as automata.
SET statement_timeout = '5s';
SELECT evc_validate('{"pattern": "^(a+)+$"}', to_jsonb(repeat('a', 100000) || '!')) AS nested_quantifier,
       evc_validate('{"pattern": "^(a|aa)*$"}', to_jsonb(repeat('a', 100000) || 'b')) AS ambiguous_alternation,
       evc_validate('{"pattern": "(x+x+)+y"}', to_jsonb(repeat('x', 50000))) AS classic_redos;
RESET statement_timeout;
-- Big arrays with uniqueItems are hashed, not compared pairwise.
SELECT evc_validate('{"uniqueItems": true}', (SELECT jsonb_agg(i) FROM generate_series(1, 200000) i)) AS unique_200k;

-- The fast paths give the answers of the general ones.
-- Numbers: exact in 64 bits when they fit, numeric otherwise.
SELECT evc_validate('{"maximum": 9223372036854775807}', '9223372036854775808'::jsonb) AS over_int64,
       evc_validate('{"multipleOf": 0.0001}', '0.0075'::jsonb) AS small_multiple,
       evc_validate('{"exclusiveMinimum": 0.1}', '0.10000000000000000001'::jsonb) AS long_decimal,
       evc_validate('{"type": "integer", "minimum": 1e399}', '1e400'::jsonb) AS huge_integer,
       evc_validate('{"enum": [100]}', '1E2'::jsonb) AS exponent,
       evc_validate('{"uniqueItems": true}', '[1, 1.0, 2]'::jsonb) AS one_equals_one_point_zero;
-- Patterns: plain sequences of characters and classes match ASCII text
-- directly, anything else goes to the regex engine.
SELECT evc_validate('{"pattern": "^[A-Z]{2}$"}', '"FR"'::jsonb) AS simple_yes,
       evc_validate('{"pattern": "^[A-Z]{2}$"}', '"FRA"'::jsonb) AS simple_no,
       evc_validate('{"pattern": "^.{2}$"}', '"é!"'::jsonb) AS non_ascii_text,
       evc_validate('{"pattern": "a.c"}', '"a\nc"'::jsonb) AS dot_stops_at_newline,
       evc_validate('{"pattern": "^\\w+-\\d*$"}', '"ab_1-"'::jsonb) AS escapes,
       evc_validate('{"pattern": "[a-]x"}', '"-x"'::jsonb) AS dash_in_class;
-- A key that additionalProperties refuses: no for the yes/no check, and
-- the errors still come in key order.
SELECT evc_validate('{"properties": {"a": {"type": "string"}}, "additionalProperties": false}',
                    '{"a": 1, "b": 2}'::jsonb) AS closed_object;
SELECT * FROM evc_validation_errors('{"properties": {"a": {"type": "string"}}, "additionalProperties": false}',
                                    '{"a": 1, "b": 2}');

-- evc_validate on text reads the JSON text itself, with no jsonb built:
-- the same answers as on jsonb (duplicate keys: the last one wins).
SELECT t, evc_validate(s, t) AS on_text, evc_validate(s, t::jsonb) AS on_jsonb
FROM (VALUES ('{"properties": {"a": {"maxLength": 1}}, "required": ["a"]}'::jsonb, '{"a": "\u00e9"}'),
             ('{"properties": {"a": {"maxLength": 1}}, "required": ["a"]}', '{"a": "x", "a": "yy"}'),
             ('{"properties": {"a": {"maxLength": 1}}, "required": ["a"]}', '{"a": "yy", "a": "x"}'),
             ('{"const": "A😀"}', '"\u0041\ud83d\ude00"'),
             ('{"minimum": 1e30}', '123456789012345678901234567890'),
             ('{"uniqueItems": true}', '[{"a": [1]}, {"a": [1.0]}]'),
             ('{"type": "integer"}', ' 1e2 ')) v(s, t);
-- Text that is not JSON fails as a cast to jsonb would.
SELECT evc_validate('{}', '{"a": 1,}'::text);
SELECT evc_validate('{}', '"\u0000"'::text);
SELECT evc_validate('{}', '1e1000000'::text);
