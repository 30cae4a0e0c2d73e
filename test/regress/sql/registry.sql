-- The schema registry: registration, versions, names, compatibility,
-- privileges and the cache.
CREATE EXTENSION IF NOT EXISTS evcollector;
SET client_min_messages = warning;

SELECT evc_register_schema('reg_acme', 'signup', '{
	"type": "object",
	"properties": {"email": {"type": "string", "format": "email"}, "plan": {"enum": ["free", "pro"]}},
	"required": ["email"]}') AS v1;
-- The same schema again: the same version.
SELECT evc_register_schema('reg_acme', 'signup', '{
	"type": "object",
	"properties": {"email": {"type": "string", "format": "email"}, "plan": {"enum": ["free", "pro"]}},
	"required": ["email"]}') AS v1_again;
-- Adding an optional property to an open object is backward compatible.
SELECT evc_register_schema('reg_acme', 'signup', '{
	"type": "object",
	"properties": {"email": {"type": "string", "format": "email"}, "plan": {"enum": ["free", "pro"]},
	               "referrer": {"type": "string", "maxLength": 200}},
	"required": ["email"]}') AS v2;
-- So is widening an enum, and relaxing a bound.
SELECT evc_register_schema('reg_acme', 'signup', '{
	"type": "object",
	"properties": {"email": {"type": "string", "format": "email"}, "plan": {"enum": ["free", "pro", "team"]},
	               "referrer": {"type": "string", "maxLength": 500}},
	"required": ["email"]}') AS v3;

SELECT client, event_name, latest_version, versions, topic, compatibility, created_by
FROM evc_list_events('reg_acme');
SELECT evc_get_schema('reg_acme', 'signup', 1) -> 'properties' -> 'plan' AS v1_plan;
SELECT evc_get_schema('reg_acme', 'signup') -> 'properties' -> 'plan' AS latest_plan;
SELECT version, topic, compatibility FROM evc.event_types WHERE client = 'reg_acme' ORDER BY version;

-- Events are checked against the latest version, or the one asked for.
SELECT evc_check_event('reg_acme', 'signup', '{"email": "a@example.com", "plan": "team"}') AS latest;
SELECT evc_check_event('reg_acme', 'signup', '{"email": "a@example.com", "plan": "team"}', 1) AS v1;
SELECT evc_check_event('reg_acme', 'signup', '{"plan": "pro"}');
SELECT evc_check_event('reg_acme', 'signup', '{"email": "a@example.com", "referrer": 7}');

-- Incompatible versions are refused, saying what broke.
SELECT evc_register_schema('reg_acme', 'signup', '{
	"type": "object",
	"properties": {"email": {"type": "string", "format": "email"}, "plan": {"enum": ["free", "pro", "team"]},
	               "referrer": {"type": "string", "maxLength": 500}},
	"required": ["email", "plan"]}');
SELECT evc_register_schema('reg_acme', 'signup', '{
	"type": "object",
	"properties": {"email": {"type": "string", "format": "email"}, "plan": {"enum": ["free", "pro"]},
	               "referrer": {"type": "string", "maxLength": 500}},
	"required": ["email"]}');
SELECT evc_register_schema('reg_acme', 'signup', '{
	"type": "object",
	"properties": {"email": {"type": "string", "format": "email"}, "plan": {"enum": ["free", "pro", "team"]},
	               "referrer": {"type": "string", "maxLength": 100}},
	"required": ["email"]}');
SELECT evc_register_schema('reg_acme', 'signup', '{"type": "object", "additionalProperties": false,
	"properties": {"email": {"type": "string"}}}');
-- Forward: the new version may only narrow.  Full: both ways.
SELECT evc_register_schema('reg_acme', 'login', '{"type": "object", "properties": {"n": {"type": "number"}}}', 'forward') AS login_v1;
SELECT evc_register_schema('reg_acme', 'login', '{"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}}', 'forward') AS login_v2;
SELECT evc_register_schema('reg_acme', 'login', '{"type": "object", "properties": {"n": {"type": ["integer", "string"]}}}', 'forward');
SELECT evc_register_schema('reg_acme', 'login', '{"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}, "m": {"type": "string"}}}', 'full') AS login_v3;
SELECT evc_register_schema('reg_acme', 'login', '{"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}}', 'full');
-- What cannot be proven is refused; "none" lets anything through.
SELECT evc_register_schema('reg_acme', 'login', '{"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}, "m": {"type": "string", "pattern": "^x"}}}', 'backward');
SELECT evc_register_schema('reg_acme', 'login', '{"type": "string"}', 'none') AS login_v4;
SELECT evc_register_schema('reg_acme', 'login', '{}', 'sideways');

-- Bad schemas, checked by the compiler and by the draft-07 meta-schema.
SELECT evc_register_schema('reg_acme', 'bad', '{"type": "object", "properties": {"a": {"type": "text"}}}');
SELECT evc_register_schema('reg_acme', 'bad', '{"type": "object", "required": "a"}');
SELECT evc_register_schema('reg_acme', 'bad', '{"properties": {"a": {"uniqueItems": "yes"}}}');
SELECT evc_register_schema('reg_acme', 'bad', '{"$ref": "#/definitions/nowhere"}');
SELECT evc_register_schema('reg_acme', 'bad', '[]');

-- Bad names: the topic is <topic_prefix><client>.<event_name>.
SELECT evc_register_schema('reg.acme', 'x', '{}');
SELECT evc_register_schema('reg_acme', 'x y', '{}');
SELECT evc_register_schema('', 'x', '{}');
SELECT evc_register_schema(repeat('c', 101), 'x', '{}');
SELECT evc_register_schema('reg_acme', 'ok.with-dots_1', '{}') AS dotted_event;

-- Unknown event types and versions.
SELECT evc_get_schema('reg_acme', 'nothing');
SELECT evc_get_schema('reg_acme', 'signup', 99);
SELECT evc_get_schema('reg_acme', 'signup', 0);
SELECT evc_check_event('nobody', 'nothing', '{}');

-- The cache follows the registry, in this backend and others.
SELECT evc_check_event('reg_acme', 'cached', '{}');
SELECT evc_register_schema('reg_acme', 'cached', '{"type": "object"}') AS cached_v1;
SELECT evc_check_event('reg_acme', 'cached', '[]');
SELECT evc_register_schema('reg_acme', 'cached', '{"type": ["object", "array"]}') AS cached_v2;
SELECT evc_check_event('reg_acme', 'cached', '[]') AS now_valid;
-- Documents that $ref points at are shared by URI; changing one is seen at once.
INSERT INTO evc.schema_documents (uri, document)
VALUES ('https://schemas.example.com/money.json', '{"type": "integer", "minimum": 0}');
SELECT evc_register_schema('reg_acme', 'order', '{"properties": {"total": {"$ref": "https://schemas.example.com/money.json"}}}') AS order_v1;
SELECT evc_check_event('reg_acme', 'order', '{"total": -1}');
UPDATE evc.schema_documents SET document = '{"type": "integer"}' WHERE uri = 'https://schemas.example.com/money.json';
SELECT evc_check_event('reg_acme', 'order', '{"total": -1}') AS after_document_change;

-- Privileges: reading is for everyone, registering for evc_registry_admin.
CREATE ROLE reg_reader;
CREATE ROLE reg_writer IN ROLE evc_registry_admin;
SET ROLE reg_reader;
SELECT evc_get_schema('reg_acme', 'cached') AS reader_reads;
SELECT count(*) > 0 AS reader_lists FROM evc_list_events('reg_acme');
SELECT evc_check_event('reg_acme', 'cached', '{}') AS reader_checks;
SELECT evc_register_schema('reg_acme', 'sneaky', '{}');
SELECT * FROM evc.event_types;
RESET ROLE;
GRANT EXECUTE ON FUNCTION evc_register_schema(text, text, jsonb, text) TO reg_reader;
SET ROLE reg_reader;
SELECT evc_register_schema('reg_acme', 'sneaky', '{}');
SET ROLE reg_writer;
SELECT evc_register_schema('reg_acme', 'by_writer', '{}') AS writer_registers;
SELECT created_by FROM evc.event_types WHERE client = 'reg_acme' AND event_name = 'by_writer';
INSERT INTO evc.event_types (client, event_name, version, schema, compatibility, topic)
VALUES ('reg_acme', 'direct', 1, '{}', 'none', 'reg_acme.direct');
RESET ROLE;

-- Clean up.
DELETE FROM evc.event_types WHERE client = 'reg_acme';
DELETE FROM evc.schema_documents WHERE uri = 'https://schemas.example.com/money.json';
REVOKE EXECUTE ON FUNCTION evc_register_schema(text, text, jsonb, text) FROM reg_reader;
DROP ROLE reg_reader;
DROP ROLE reg_writer;
