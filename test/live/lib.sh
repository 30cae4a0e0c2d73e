# test/live/lib.sh: what the live-rooms scripts share.  Sourced after
# test/lib.sh and test/gateway/lib.sh.
#
#   live_venv_install    a virtualenv with python-socketio and websocket-client
#                        (test/live/requirements.txt), cached; exports LIVE_PY
#   live_setup           the aggregates pipeline of the tests: schema
#                        livetest.reading, count and sum by /room, the topics,
#                        a table sink and an aggregates sink; auth on and a
#                        read-only key in LIVE_KEY

LIVE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

live_venv_install() {
	LIVE_PY=$("$LIVE_DIR/../wire/pyenv.sh" "$LIVE_DIR/requirements.txt" liveclients) ||
		evc_die "the socket.io clients (test/live/requirements.txt) could not be installed"
	export LIVE_PY
}

live_setup() {
	local t
	for t in livetest.reading aggregates.1m aggregates.5m aggregates.10m; do
		"$EVC_ROOT/test/kafkactl" create_topic "$t" 2 >/dev/null
	done
	psql -X -q -d evc_test -v ON_ERROR_STOP=1 >/dev/null <<'SQL' || return 1
SET client_min_messages = warning;
SELECT evc_register_schema('livetest', 'reading', '{"type": "object", "required": ["room", "value"],
	"properties": {"room": {"type": "string"}, "value": {"type": "number"}}}');
SELECT evc_declare_aggregation('livetest', 'reading', '/value', '{count,sum}', '{/room}');
SELECT evc_consumer_create('live_rows', ARRAY['livetest.reading'], 'table', '{"flush_interval": "100ms"}')
	WHERE NOT EXISTS (SELECT FROM evc.consumers WHERE name = 'live_rows');
SELECT evc_consumer_create('live_aggs', ARRAY['aggregates.1m', 'aggregates.5m', 'aggregates.10m'], 'aggregates',
	'{"flush_interval": "100ms"}') WHERE NOT EXISTS (SELECT FROM evc.consumers WHERE name = 'live_aggs');
ALTER SYSTEM SET evcollector.live_ping_interval = '1s';
ALTER SYSTEM SET evcollector.live_ping_timeout = '1s';
ALTER SYSTEM SET evcollector.live_max_payload = '65536';
ALTER SYSTEM SET log_min_messages = 'debug1';
SELECT pg_reload_conf();
SQL
	LIVE_KEY=$(psql -X -qAt -d evc_test -c "SELECT evc_gateway_key_create('livetest', 'read')") || return 1
	export LIVE_KEY
	gw_set gateway_auth on
}
