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
