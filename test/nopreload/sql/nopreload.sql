-- Without shared_preload_libraries: the extension installs, functions that
-- need no workers run, and those that do say what to change.
CREATE EXTENSION evcollector;
SELECT evc_version() = extversion AS library_matches FROM pg_extension WHERE extname = 'evcollector';
SELECT * FROM evc.workers;
DROP EXTENSION evcollector;
