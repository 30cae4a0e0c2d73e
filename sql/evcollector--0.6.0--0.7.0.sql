-- evcollector 0.6.0 -> 0.7.0
--
-- Each part below belongs to one capability; keep them in this order.
\echo Use "ALTER EXTENSION evcollector UPDATE TO '0.7.0'" to load this file. \quit

-- == backups: pg_dump keeps user state (issue 15) ==

-- == relay: exactly once into Kafka (issue 13) ==

-- == gateway: write keys and the HTTP API (issue 16) ==

-- == live rooms (issue 17) ==

-- == hardening: fuzzing and the differential check (issue 18) ==
-- The draft-07 meta-schema stored in 0.2.0 gave "enum" draft-06's
-- "minItems": 1 and "uniqueItems": true.  The published draft-07
-- meta-schema has neither, so {"enum": [1, 1]} and {"enum": []} are valid
-- schemas; the differential check against Python's jsonschema found it.
UPDATE evc.schema_documents
   SET document = jsonb_set(document, '{properties,enum}', '{"type": "array", "items": true}')
 WHERE uri = 'http://json-schema.org/draft-07/schema'
   AND document -> 'properties' -> 'enum' = '{"type": "array", "items": true, "minItems": 1, "uniqueItems": true}';

SELECT evc.wake_launcher();
