-- evcollector 0.6.0 -> 0.7.0
--
-- Each part below belongs to one capability; keep them in this order.
\echo Use "ALTER EXTENSION evcollector UPDATE TO '0.7.0'" to load this file. \quit

-- == backups: pg_dump keeps user state (issue 15) ==

-- == relay: exactly once into Kafka (issue 13) ==

-- == gateway: write keys and the HTTP API (issue 16) ==

-- == live rooms (issue 17) ==

SELECT evc.wake_launcher();
