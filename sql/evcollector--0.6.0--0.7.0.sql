-- evcollector 0.6.0 -> 0.7.0
--
-- Each part below belongs to one capability; keep them in this order.
\echo Use "ALTER EXTENSION evcollector UPDATE TO '0.7.0'" to load this file. \quit

-- == backups: pg_dump keeps user state (issue 15) ==

-- == relay: exactly once into Kafka (issue 13) ==

-- == gateway: write keys and the HTTP API (issue 16) ==

-- gateway: schema registry ids and config (src/gateway/routes_registry.c)
--
-- The Confluent Schema Registry routes need a global, stable id per
-- schema version: evc.event_types.id (an identity, kept by pg_dump) is
-- that id, so nothing is added for it.  What they need besides is the
-- registry's compatibility config: a global level and one per subject
-- (<client>.<event>-value).  A subject without a row has no config of its
-- own (GET /config/{subject} answers 40408); the global row, when there is
-- none, is the registry's default, backward.  The levels are the registry's
-- modes; a _transitive one checks the mode against every stored version,
-- not only the latest.
CREATE TABLE evc.registry_config (
	client text CHECK (client ~ '^[A-Za-z0-9_-]{1,100}$'),
	event_name text CHECK (event_name ~ '^[A-Za-z0-9_.-]{1,100}$'),
	compatibility text NOT NULL CHECK (compatibility IN ('none', 'backward', 'forward', 'full',
		'backward_transitive', 'forward_transitive', 'full_transitive')),
	updated_at timestamptz NOT NULL DEFAULT now(),
	updated_by name NOT NULL DEFAULT current_user,
	CHECK ((client IS NULL) = (event_name IS NULL)),
	UNIQUE NULLS NOT DISTINCT (client, event_name)
);
COMMENT ON TABLE evc.registry_config IS 'compatibility config of the schema registry routes: the global level (client and event_name NULL) and one per subject';
SELECT pg_catalog.pg_extension_config_dump('evc.registry_config', '');
GRANT SELECT, INSERT, UPDATE, DELETE ON evc.registry_config TO evc_registry_admin;
-- end of gateway: schema registry ids and config

-- == live rooms (issue 17) ==

SELECT evc.wake_launcher();
