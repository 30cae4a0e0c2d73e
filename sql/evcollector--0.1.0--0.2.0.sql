/* evcollector 0.1.0 -> 0.2.0: the schema registry and the JSON Schema validator. */
\echo Use "ALTER EXTENSION evcollector UPDATE TO '0.2.0'" to load this file. \quit

/*
 * Roles.  evc_registry_admin may register schemas and shared schema
 * documents; everyone may read the registry and validate.  Roles are
 * cluster-wide, so they are created only when missing and are not members
 * of the extension (DROP EXTENSION leaves them, as it must).
 */
DO $roles$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'evc_registry_admin') THEN
		CREATE ROLE evc_registry_admin NOLOGIN;
	END IF;
END
$roles$;

-- Documents that $ref may point at, by absolute URI.  The validator never
-- fetches anything from the network: a $ref to another document resolves
-- here or the schema is refused.
CREATE TABLE evc.schema_documents (
	uri text PRIMARY KEY CHECK (uri ~ '^[A-Za-z][A-Za-z0-9+.-]*:' AND position('#' IN uri) = 0),
	document jsonb NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	created_by name NOT NULL DEFAULT current_user
);
COMMENT ON TABLE evc.schema_documents IS 'JSON Schema documents that $ref can refer to by URI (no network fetch)';

INSERT INTO evc.schema_documents (uri, document, created_by) VALUES
('http://json-schema.org/draft-07/schema', $meta${
 "$schema": "http://json-schema.org/draft-07/schema#",
 "$id": "http://json-schema.org/draft-07/schema#",
 "title": "Core schema meta-schema",
 "definitions": {
  "schemaArray": {
   "type": "array",
   "minItems": 1,
   "items": {
    "$ref": "#"
   }
  },
  "nonNegativeInteger": {
   "type": "integer",
   "minimum": 0
  },
  "nonNegativeIntegerDefault0": {
   "allOf": [
    {
     "$ref": "#/definitions/nonNegativeInteger"
    },
    {
     "default": 0
    }
   ]
  },
  "simpleTypes": {
   "enum": [
    "array",
    "boolean",
    "integer",
    "null",
    "number",
    "object",
    "string"
   ]
  },
  "stringArray": {
   "type": "array",
   "items": {
    "type": "string"
   },
   "uniqueItems": true,
   "default": []
  }
 },
 "type": [
  "object",
  "boolean"
 ],
 "properties": {
  "$id": {
   "type": "string",
   "format": "uri-reference"
  },
  "$schema": {
   "type": "string",
   "format": "uri"
  },
  "$ref": {
   "type": "string",
   "format": "uri-reference"
  },
  "$comment": {
   "type": "string"
  },
  "title": {
   "type": "string"
  },
  "description": {
   "type": "string"
  },
  "default": true,
  "readOnly": {
   "type": "boolean",
   "default": false
  },
  "examples": {
   "type": "array",
   "items": true
  },
  "multipleOf": {
   "type": "number",
   "exclusiveMinimum": 0
  },
  "maximum": {
   "type": "number"
  },
  "exclusiveMaximum": {
   "type": "number"
  },
  "minimum": {
   "type": "number"
  },
  "exclusiveMinimum": {
   "type": "number"
  },
  "maxLength": {
   "$ref": "#/definitions/nonNegativeInteger"
  },
  "minLength": {
   "$ref": "#/definitions/nonNegativeIntegerDefault0"
  },
  "pattern": {
   "type": "string",
   "format": "regex"
  },
  "additionalItems": {
   "$ref": "#"
  },
  "items": {
   "anyOf": [
    {
     "$ref": "#"
    },
    {
     "$ref": "#/definitions/schemaArray"
    }
   ],
   "default": true
  },
  "maxItems": {
   "$ref": "#/definitions/nonNegativeInteger"
  },
  "minItems": {
   "$ref": "#/definitions/nonNegativeIntegerDefault0"
  },
  "uniqueItems": {
   "type": "boolean",
   "default": false
  },
  "contains": {
   "$ref": "#"
  },
  "maxProperties": {
   "$ref": "#/definitions/nonNegativeInteger"
  },
  "minProperties": {
   "$ref": "#/definitions/nonNegativeIntegerDefault0"
  },
  "required": {
   "$ref": "#/definitions/stringArray"
  },
  "additionalProperties": {
   "$ref": "#"
  },
  "definitions": {
   "type": "object",
   "additionalProperties": {
    "$ref": "#"
   },
   "default": {}
  },
  "properties": {
   "type": "object",
   "additionalProperties": {
    "$ref": "#"
   },
   "default": {}
  },
  "patternProperties": {
   "type": "object",
   "additionalProperties": {
    "$ref": "#"
   },
   "propertyNames": {
    "format": "regex"
   },
   "default": {}
  },
  "dependencies": {
   "type": "object",
   "additionalProperties": {
    "anyOf": [
     {
      "$ref": "#"
     },
     {
      "$ref": "#/definitions/stringArray"
     }
    ]
   }
  },
  "propertyNames": {
   "$ref": "#"
  },
  "const": true,
  "enum": {
   "type": "array",
   "items": true,
   "minItems": 1,
   "uniqueItems": true
  },
  "type": {
   "anyOf": [
    {
     "$ref": "#/definitions/simpleTypes"
    },
    {
     "type": "array",
     "items": {
      "$ref": "#/definitions/simpleTypes"
     },
     "minItems": 1,
     "uniqueItems": true
    }
   ]
  },
  "format": {
   "type": "string"
  },
  "contentMediaType": {
   "type": "string"
  },
  "contentEncoding": {
   "type": "string"
  },
  "if": {
   "$ref": "#"
  },
  "then": {
   "$ref": "#"
  },
  "else": {
   "$ref": "#"
  },
  "allOf": {
   "$ref": "#/definitions/schemaArray"
  },
  "anyOf": {
   "$ref": "#/definitions/schemaArray"
  },
  "oneOf": {
   "$ref": "#/definitions/schemaArray"
  },
  "not": {
   "$ref": "#"
  }
 },
 "default": true
}$meta$, 'evcollector');

CREATE FUNCTION evc_validate(schema jsonb, instance jsonb)
RETURNS boolean
LANGUAGE C STRICT STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'evc_validate';
COMMENT ON FUNCTION evc_validate(jsonb, jsonb) IS 'whether instance is valid under the JSON Schema (draft-07)';

CREATE FUNCTION evc_validation_errors(schema jsonb, instance jsonb,
	OUT instance_path text, OUT schema_path text, OUT keyword text, OUT message text)
RETURNS SETOF record
LANGUAGE C STRICT STABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'evc_validation_errors';
COMMENT ON FUNCTION evc_validation_errors(jsonb, jsonb) IS 'every reason why instance is not valid under the JSON Schema (draft-07)';

-- The registry: one row per version of each event type.
CREATE TABLE evc.event_types (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	client text NOT NULL CHECK (client ~ '^[A-Za-z0-9_-]{1,100}$'),
	event_name text NOT NULL CHECK (event_name ~ '^[A-Za-z0-9_.-]{1,100}$'),
	version int NOT NULL CHECK (version > 0),
	schema jsonb NOT NULL,
	compatibility text NOT NULL CHECK (compatibility IN ('none', 'backward', 'forward', 'full')),
	topic text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	created_by name NOT NULL DEFAULT current_user,
	UNIQUE (client, event_name, version)
);
COMMENT ON TABLE evc.event_types IS 'registered JSON Schemas, one row per version of each client.event_name';

-- Every backend caches compiled schemas; any change to these tables makes
-- them drop the cache (an INSERT sends no relcache invalidation by itself).
CREATE FUNCTION evc.registry_changed()
RETURNS trigger
LANGUAGE C
AS 'MODULE_PATHNAME', 'evc_registry_changed';

CREATE TRIGGER event_types_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON evc.event_types
	FOR EACH STATEMENT EXECUTE FUNCTION evc.registry_changed();
CREATE TRIGGER schema_documents_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON evc.schema_documents
	FOR EACH STATEMENT EXECUTE FUNCTION evc.registry_changed();

CREATE FUNCTION evc_register_schema(client text, event_name text, schema jsonb,
	compatibility text DEFAULT 'backward')
RETURNS int
LANGUAGE C STRICT VOLATILE
AS 'MODULE_PATHNAME', 'evc_register_schema';
COMMENT ON FUNCTION evc_register_schema(text, text, jsonb, text) IS 'register a JSON Schema version for client.event_name; returns its version';

CREATE FUNCTION evc_get_schema(client text, event_name text, version int DEFAULT NULL)
RETURNS jsonb
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'evc_get_schema';
COMMENT ON FUNCTION evc_get_schema(text, text, int) IS 'the JSON Schema of client.event_name, latest version or the one given';

CREATE FUNCTION evc_check_event(client text, event_name text, event jsonb, version int DEFAULT NULL)
RETURNS int
LANGUAGE C STABLE
AS 'MODULE_PATHNAME', 'evc_check_event';
COMMENT ON FUNCTION evc_check_event(text, text, jsonb, int) IS 'check an event against its registered schema (as evc_send does); returns the version, or raises an error';

CREATE FUNCTION evc_list_events(client text DEFAULT NULL)
RETURNS TABLE (client text, event_name text, latest_version int, versions bigint,
	topic text, compatibility text, created_at timestamptz, created_by name)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
	SELECT DISTINCT ON (e.client, e.event_name)
		e.client, e.event_name, e.version,
		count(*) OVER (PARTITION BY e.client, e.event_name),
		e.topic, e.compatibility, e.created_at, e.created_by
	FROM evc.event_types e
	WHERE $1 IS NULL OR e.client = $1
	ORDER BY e.client, e.event_name, e.version DESC
$$;
COMMENT ON FUNCTION evc_list_events(text) IS 'registered event types, with their latest version';

/*
 * Privileges.  Reading is for everyone, through the functions:
 * evc_get_schema, evc_list_events, evc_check_event, evc_validate and
 * evc_validation_errors (they read the tables as their owner).  The tables
 * themselves are not public, like the rest of schema evc.  Registering is
 * for members of evc_registry_admin: evc_register_schema checks the role
 * and writes as the table owner, so rows only arrive checked and numbered.
 * Shared schema documents are written directly by the same role.
 */
GRANT USAGE ON SCHEMA evc TO evc_registry_admin;
GRANT SELECT ON evc.event_types TO evc_registry_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON evc.schema_documents TO evc_registry_admin;
REVOKE ALL ON FUNCTION evc_register_schema(text, text, jsonb, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION evc_register_schema(text, text, jsonb, text) TO evc_registry_admin;
REVOKE ALL ON FUNCTION evc.registry_changed() FROM PUBLIC;
