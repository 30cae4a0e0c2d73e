-- evcollector 0.6.0 -> 0.7.0
--
-- Each part below belongs to one capability; keep them in this order.
\echo Use "ALTER EXTENSION evcollector UPDATE TO '0.7.0'" to load this file. \quit

-- == backups: pg_dump keeps user state (issue 15) ==

-- == relay: exactly once into Kafka (issue 13) ==

-- == gateway: write keys and the HTTP API (issue 16) ==

-- Write keys of the HTTP gateway.  Only the SHA-256 of a key's secret is
-- kept; the key itself is shown once, by evc_gateway_key_create.
CREATE TABLE evc.gateway_keys (
	id bigserial PRIMARY KEY,
	client text NOT NULL,
	role text NOT NULL CHECK (role IN ('read', 'write', 'admin')),
	secret_hash bytea NOT NULL CHECK (length(secret_hash) = 32),
	created_at timestamptz NOT NULL DEFAULT now(),
	expires_at timestamptz,
	revoked_at timestamptz
);
COMMENT ON TABLE evc.gateway_keys IS 'write keys of the HTTP gateway (the SHA-256 of each secret, never the secret)';
REVOKE ALL ON evc.gateway_keys FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('evc.gateway_keys', '');
SELECT pg_catalog.pg_extension_config_dump('evc.gateway_keys_id_seq', '');

CREATE FUNCTION evc_gateway_key_create(client text, role text DEFAULT 'write',
									   expires_at timestamptz DEFAULT NULL)
RETURNS text
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'evc_gateway_key_create';
COMMENT ON FUNCTION evc_gateway_key_create(text, text, timestamptz) IS
	'create a gateway key for a client (role read, write or admin); the key is returned this once';
REVOKE ALL ON FUNCTION evc_gateway_key_create(text, text, timestamptz) FROM PUBLIC;

CREATE FUNCTION evc_gateway_key_revoke(id bigint)
RETURNS boolean
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS 'MODULE_PATHNAME', 'evc_gateway_key_revoke';
COMMENT ON FUNCTION evc_gateway_key_revoke(bigint) IS 'revoke a gateway key; true if it was live';
REVOKE ALL ON FUNCTION evc_gateway_key_revoke(bigint) FROM PUBLIC;

-- The keys without their hashes, for operators.
CREATE VIEW evc.gateway_keys_status AS
SELECT id, client, role, created_at, expires_at, revoked_at,
	   revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) AS live
FROM evc.gateway_keys;
REVOKE ALL ON evc.gateway_keys_status FROM PUBLIC;

-- == live rooms (issue 17) ==
-- No SQL objects: the live rooms read evc.aggregates and the views, and keep
-- their state in the gateway (src/gateway/README-live.md).

SELECT evc.wake_launcher();
