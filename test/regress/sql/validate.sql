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

-- Numbers at the edges.  Every answer below is draft-07's: numbers are
-- compared and divided as exact decimals, whatever their size.
-- jsonb holds no NaN or infinity: a numeric that is one reaches the
-- validator as a string, a schema can only give it as a string, and JSON
-- text that spells one is refused as jsonb refuses it.
SELECT v, to_jsonb(v::numeric) AS as_jsonb,
       evc_validate('{"type": "number"}', to_jsonb(v::numeric)) AS is_number,
       evc_validate('{"type": "string"}', to_jsonb(v::numeric)) AS is_string
FROM (VALUES ('NaN'), ('Infinity'), ('-Infinity')) t(v);
SELECT evc_validate(jsonb_build_object('minimum', 'Infinity'::numeric), '1');
SELECT evc_validate(jsonb_build_object('multipleOf', 'NaN'::numeric), '1');
SELECT evc_validate('{}', 'NaN'::text);
SELECT evc_validate('{}', '-Infinity'::text);
-- numeric's two header forms: the short one (8 bytes for one digit group)
-- holds a display scale and a weight up to 63, the long one (10 bytes)
-- anything beyond.
SELECT f, pg_column_size(v::numeric) AS bytes
FROM (VALUES ('0.5', '0.5'), ('0.5, scale 63', '0.5' || repeat('0', 62)),
             ('0.5, scale 64', '0.5' || repeat('0', 63)), ('-0.5, scale 64', '-0.5' || repeat('0', 63)),
             ('1e252, weight 63', '1e252'), ('1e256, weight 64', '1e256'),
             ('-1e256, weight 64', '-1e256')) t(f, v);
SELECT evc_validate('{"const": 0.5}', ('0.5' || repeat('0', 63))::jsonb) AS long_equals_short,
       evc_validate('{"maximum": -0.5}', ('-0.5' || repeat('0', 63))::jsonb) AS long_negative_max,
       evc_validate('{"exclusiveMaximum": -0.5}', ('-0.5' || repeat('0', 63))::jsonb) AS long_negative_xmax,
       evc_validate('{"minimum": 0}', ('-0.5' || repeat('0', 63))::jsonb) AS long_negative_min,
       evc_validate('{"type": "integer"}', ('1.' || repeat('0', 70))::jsonb) AS long_integer,
       evc_validate('{"enum": [1e256]}', '10e255') AS long_weight_enum,
       evc_validate('{"minimum": 1e256}', '1e255') AS long_weight_min;
-- Negative zero is zero.
SELECT evc_validate('{"const": 0}', '-0') AS const_zero,
       evc_validate('{"const": 0}', '-0.0'::text) AS const_zero_text,
       evc_validate('{"type": "integer"}', '-0.0') AS integer,
       evc_validate('{"exclusiveMaximum": 0}', '-0') AS below_zero,
       evc_validate('{"minimum": -0}', '0') AS minimum,
       evc_validate('{"uniqueItems": true}', '[0, -0]') AS unique,
       evc_validate('{"uniqueItems": true}', '[0, -0.0]'::text) AS unique_text;
-- Huge and tiny scales, and numbers of 1000 digits.
SELECT evc_validate('{"maximum": 1e300}', '1e301') AS above_1e300,
       evc_validate('{"minimum": 1e-300}', '1e-301') AS below_1e_300,
       evc_validate('{"exclusiveMinimum": 0}', '1e-300') AS above_zero,
       evc_validate('{"exclusiveMaximum": 0}', '-1e-300') AS below_zero,
       evc_validate('{"type": "integer"}', '1e300') AS integer_1e300,
       evc_validate('{"type": "integer"}', '1e-300') AS integer_1e_300;
SELECT evc_validate('{"type": "integer"}', repeat('9', 1000)::jsonb) AS integer_1000,
       evc_validate('{"type": "integer"}', (repeat('9', 1000) || '.5')::jsonb) AS fraction_1000,
       evc_validate('{"type": "integer"}', (repeat('9', 1000) || '.5')::text) AS fraction_1000_text,
       evc_validate(format('{"maximum": %s}', repeat('9', 1000))::jsonb, ('1' || repeat('0', 1000))::jsonb) AS above_max,
       evc_validate(format('{"minimum": %s}', repeat('9', 1000))::jsonb, ('1' || repeat('0', 1000))::text) AS above_min,
       evc_validate('{"multipleOf": 7}', ('7' || repeat('0', 999))::jsonb) AS multiple_of_7,
       evc_validate('{"multipleOf": 7}', ('7' || repeat('0', 998) || '1')::jsonb) AS not_multiple_of_7,
       evc_validate('{"multipleOf": 1e-300}', repeat('3', 1000)::jsonb) AS multiple_of_1e_300;
-- Integers beyond int64.
SELECT evc_validate('{"type": "integer"}', '9223372036854775808') AS int64_max_plus_1,
       evc_validate('{"type": "integer"}', '-9223372036854775809') AS int64_min_minus_1,
       evc_validate('{"minimum": -9223372036854775808}', '-9223372036854775809') AS below_int64_min,
       evc_validate('{"multipleOf": 2}', '18446744073709551616') AS even_2_64,
       evc_validate('{"multipleOf": 2}', '18446744073709551617') AS odd_2_64_plus_1,
       evc_validate('{"multipleOf": 3}', repeat('9', 38)::jsonb) AS thirty_eight_nines,
       evc_validate('{"const": 18446744073709551616}', '1.8446744073709551616e19') AS const_2_64;
-- Tiny multipleOf: exact, where binary floating point is not.
SELECT evc_validate('{"multipleOf": 0.0001}', '0.0003') AS m_0_0003,
       evc_validate('{"multipleOf": 0.0003}', '0.0001') AS m_0_0001,
       evc_validate('{"multipleOf": 0.1}', '0.3') AS m_0_3,
       evc_validate('{"multipleOf": 1e-10}', '0.0000000003') AS m_3e_10,
       evc_validate('{"multipleOf": 1e-10}', '3e-11') AS m_3e_11,
       evc_validate('{"multipleOf": 1e-19}', '1.0000000000000000001') AS m_1e_19,
       evc_validate('{"multipleOf": 1e-300}', '1e-299') AS m_1e_299,
       evc_validate('{"multipleOf": 3e-300}', '1e-299') AS m_3e_300,
       evc_validate('{"multipleOf": 1e300}', '1e301') AS m_1e301,
       evc_validate('{"multipleOf": 1e300}', '1e299') AS m_1e299,
       evc_validate('{"type": "integer", "multipleOf": 0.123456789}', '1e308') AS m_1e308;
-- The same edges on JSON text.
SELECT s, t, evc_validate(s::jsonb, t) AS on_text, evc_validate(s::jsonb, t::jsonb) AS on_jsonb
FROM (VALUES ('{"multipleOf": 0.0001}', '0.0003'), ('{"multipleOf": 1e-10}', '3e-11'),
             ('{"exclusiveMaximum": 0}', '-0.0'), ('{"maximum": 1e300}', '1e301'),
             ('{"minimum": -9223372036854775808}', '-9223372036854775809'),
             ('{"type": "integer"}', '-1.0e400'), ('{"enum": [1e256]}', '1.0e256'),
             ('{"multipleOf": 1e-19}', '1.00000000000000000001')) v(s, t);
-- Counts are non-negative integers, read exactly: 2.0 and 1e400 are
-- integers, 2.0000000000000000001 is not.
SELECT evc_validate('{"maxLength": 2.0}', '"abc"') AS max_length_2_0,
       evc_validate('{"minLength": 1e400}', '"a"') AS min_length_huge,
       evc_validate('{"maxItems": 1e400}', '[1]') AS max_items_huge,
       evc_validate('{"maxProperties": -0}', '{}') AS max_properties_zero;
SELECT evc_validate('{"minLength": 2.0000000000000000001}', '"ab"');
SELECT evc_validate('{"maxItems": 1e-400}', '[]');
SELECT evc_validate('{"minProperties": -1e400}', '{}');
-- Against numeric's own operators, over those values (short and long
-- header forms, both signs, exact in 64 bits or not): every bound, const,
-- uniqueItems, multipleOf and "integer" answer agrees, on jsonb and on text.
CREATE TEMP TABLE edge_numbers (v text);
INSERT INTO edge_numbers
VALUES ('0'), ('-0'), ('0.0'), ('1'), ('-1'), ('1.0'), ('1.5'), ('-1.5'), ('0.0001'), ('-0.0001'),
       ('0.0003'), ('3e-11'), ('1e-10'), ('0.1'), ('0.3'), ('123456789012345678'),
       ('1234567890123456789'), ('9223372036854775807'), ('9223372036854775808'),
       ('-9223372036854775809'), ('18446744073709551616'), ('1e18'), ('1e19'), ('1e-18'),
       ('1e-19'), ('1.0000000000000000001'), ('1e252'), ('1e256'), ('-1e256'), ('1e300'),
       ('-1e300'), ('1e-300'), ('0.5' || repeat('0', 62)), ('0.5' || repeat('0', 63)),
       ('-0.5' || repeat('0', 63)), ('1.' || repeat('0', 70)), (repeat('9', 1000)),
       ('-' || repeat('9', 1000)), (repeat('3', 1000) || 'e-1000'),
       -- around the integers read inline (four base-10000 digits at most)
       ('9999'), ('10000'), ('-10000'), ('10001'), ('100000000'), ('9999999999999999'),
       ('10000000000000000'), ('-9999999999999999'), ('10000000000000001');
CREATE TEMP TABLE edge_checks AS
SELECT c.kw, format('{"%s": %s}', c.kw, b.v)::jsonb AS schema, x.v AS instance,
       CASE c.kw WHEN 'minimum' THEN x.v::numeric >= b.v::numeric
                 WHEN 'maximum' THEN x.v::numeric <= b.v::numeric
                 WHEN 'exclusiveMinimum' THEN x.v::numeric > b.v::numeric
                 WHEN 'exclusiveMaximum' THEN x.v::numeric < b.v::numeric
                 WHEN 'const' THEN x.v::numeric = b.v::numeric
                 WHEN 'multipleOf' THEN x.v::numeric % b.v::numeric = 0 END AS want
FROM edge_numbers b, edge_numbers x,
     (VALUES ('minimum'), ('maximum'), ('exclusiveMinimum'), ('exclusiveMaximum'),
             ('const'), ('multipleOf')) c(kw)
WHERE c.kw <> 'multipleOf' OR b.v::numeric > 0
UNION ALL
-- two items are compared pairwise, ten are hashed first
SELECT 'uniqueItems', '{"uniqueItems": true}', a, b.v::numeric <> x.v::numeric
FROM edge_numbers b, edge_numbers x,
     LATERAL (VALUES (format('[%s, %s]', b.v, x.v)),
                     (format('["a", "b", "c", "d", "e", "f", "g", "h", %s, %s]', b.v, x.v))) i(a)
UNION ALL
SELECT 'type integer', '{"type": "integer"}', x.v, x.v::numeric = trunc(x.v::numeric)
FROM edge_numbers x;
SELECT kw, count(*) AS checks,
       count(*) FILTER (WHERE evc_validate(schema, instance::jsonb) IS DISTINCT FROM want) AS wrong_on_jsonb,
       count(*) FILTER (WHERE evc_validate(schema, instance) IS DISTINCT FROM want) AS wrong_on_text
FROM edge_checks GROUP BY kw ORDER BY kw;
-- A lower and an upper bound at once (integer bounds make one window that
-- integers are checked against inline), against numeric's operators.
SELECT count(*) AS checks,
       count(*) FILTER (WHERE evc_validate(schema, instance::jsonb) IS DISTINCT FROM want) AS wrong_on_jsonb,
       count(*) FILTER (WHERE evc_validate(schema, instance) IS DISTINCT FROM want) AS wrong_on_text
FROM (SELECT format('{"%s": %s, "%s": %s}', k.lo, l.v, k.hi, h.v)::jsonb AS schema, x.v AS instance,
             CASE k.lo WHEN 'minimum' THEN x.v::numeric >= l.v ELSE x.v::numeric > l.v END AND
             CASE k.hi WHEN 'maximum' THEN x.v::numeric <= h.v ELSE x.v::numeric < h.v END AS want
      FROM (VALUES ('minimum', 'maximum'), ('minimum', 'exclusiveMaximum'),
                   ('exclusiveMinimum', 'maximum'), ('exclusiveMinimum', 'exclusiveMaximum')) k(lo, hi),
           (VALUES (-1::numeric), (0), (1), (1.5)) l(v), (VALUES (0::numeric), (1), (2), (10000)) h(v),
           edge_numbers x) t;
-- Equal numbers stored differently (one more trailing zero: for 0.5 at
-- scale 63, the long header form instead of the short one) are equal, and
-- hash alike.
SELECT count(*) AS values,
       count(*) FILTER (WHERE NOT evc_validate(format('{"enum": [%s]}', twin)::jsonb, v)) AS enum_wrong,
       count(*) FILTER (WHERE evc_validate('{"uniqueItems": true}',
                                           format('["a", "b", "c", "d", "e", "f", "g", "h", %s, %s]', v, twin)::jsonb))
           AS unique_wrong
FROM (SELECT v, v::numeric::text || CASE WHEN v::numeric::text LIKE '%.%' THEN '0' ELSE '.0' END AS twin
      FROM edge_numbers) t;
-- One call site sees objects of changing keys: the match of keys to
-- properties that a node remembers from the last object (EvcShape) must be
-- used only for the same keys (same lengths, other bytes, other splits).
SELECT count(*) AS checks,
       count(*) FILTER (WHERE evc_validate('{"required": ["ab"], "additionalProperties": false,
           "properties": {"ab": {"type": "integer"}, "ba": {"type": "string"}, "b": {"const": 1}}}',
           doc::jsonb) IS DISTINCT FROM want) AS wrong_on_jsonb,
       count(*) FILTER (WHERE evc_validate('{"required": ["ab"], "additionalProperties": false,
           "properties": {"ab": {"type": "integer"}, "ba": {"type": "string"}, "b": {"const": 1}}}',
           doc) IS DISTINCT FROM want) AS wrong_on_text
FROM (VALUES ('{"ab": 1}', true), ('{"ba": "s"}', false), ('{"ab": 1}', true),
             ('{"ab": "x"}', false), ('{"ab": 1, "ba": "s"}', true), ('{"ab": 1, "cd": "s"}', false),
             ('{"ab": 1, "ba": "s"}', true), ('{"abc": 1}', false), ('{"ab": 1, "b": 1}', true),
             ('{"a": 1, "bb": 1}', false), ('{"ab": 1, "b": 2}', false), ('{}', false),
             ('{"ab": 1, "b": 1}', true)) t(doc, want);
-- A recursive schema meets its own node again while it walks the outer
-- object's values, in key order: the outer match must survive that.
SELECT array_agg(instance_path || ' ' || keyword ORDER BY instance_path)
       = ARRAY['/a/c additionalProperties', '/b type'] AS errors_right
FROM evc_validation_errors('{"additionalProperties": false,
    "properties": {"a": {"$ref": "#"}, "b": {"type": "integer"}}}', '{"a": {"c": 1}, "b": "x"}');
