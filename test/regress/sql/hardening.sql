-- Inputs that the fuzz targets and the differential check (test/fuzz) found
-- mishandled: one case for each bug fixed.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS evcollector;
RESET client_min_messages;

-- The draft-07 meta-schema allows an enum with repeated values, or none.
BEGIN;
SELECT evc_register_schema('regress_fuzz', 'enum_repeated', '{"properties": {"a": {"enum": [1, 1]}}}') AS version;
SELECT evc_register_schema('regress_fuzz', 'enum_empty', '{"properties": {"a": {"enum": []}}}') AS version;
SELECT evc_validate('{"enum": [1, 1]}', '1') AS repeated_ok, evc_validate('{"enum": []}', '1') AS empty_refuses;
ROLLBACK;

-- evc_decode_event: a data_json that is not one JSON value is refused,
-- not pasted into the decoded text (client "c", event_name "e").
SELECT evc_decode_event('\x0a0163120165' || '\x2a03312c32'::bytea);
SELECT evc_decode_event('\x0a0163120165' || convert_to('*' || chr(16) || '1, "client": "x"', 'UTF8'));
SELECT evc_decode_event('\x0a0163120165' || '\x2a035b315d'::bytea) -> 'data' AS data;

-- An image header's size of 0 is no size: GIF 26x0, PNG 2^31 x 1.
BEGIN;
SELECT evc_send_image('cam', '\x4749463839611a000000800000'::bytea) IS NOT NULL AS gif;
SELECT evc_send_image('cam', '\x89504e470d0a1a0a0000000d494844528000000000000001080200000000'::bytea) IS NOT NULL AS png;
SELECT evc_decode_event(payload) -> 'data' ->> 'width' AS width, evc_decode_event(payload) -> 'data' ->> 'height' AS height
FROM evc.outbox WHERE topic LIKE '%images' ORDER BY id DESC LIMIT 2;
ROLLBACK;

-- The text reader leaves a zero whose display scale numeric cannot hold to
-- jsonb_in, so the text path raises the jsonb path's error.
SELECT evc_validate('{}', '0e-20000'::text);
SELECT evc_validate('{}', '0e-16383'::text) AS zero_ok;

-- A decoded string that is not valid UTF-8 is refused, not put in the jsonb.
SELECT evc_decode('\x0a01ff'::bytea, 'Event');
SELECT evc_decode_event('\x0a01ff'::bytea);
