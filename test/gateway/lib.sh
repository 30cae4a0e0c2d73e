# test/gateway/lib.sh: what the gateway scripts share.  Sourced by test/run
# (gw_venv_install, gw_start) and by each script (the helpers below).
#
#   gw_venv_install          a virtualenv with Python requests (requirements.txt),
#                            cached; exports GW_PY
#   gw_start                 point the harness cluster's gateway at a free port,
#                            auth off; exports GW_URL, GW_PORT
#   gw_set NAME VALUE        ALTER SYSTEM one evcollector.gateway_* setting and
#                            reload; waits for the gateway to answer again
#   gw_restart_wait          wait for the gateway to answer after a restart
#   gw_post PATH BODY [curl args]   POST JSON; prints "<status> <body>"

: "${EVC_CACHE:=/var/cache/evcollector}"
GW_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

gw_venv_install() {
	GW_PY=$("$GW_DIR/../wire/pyenv.sh" "$GW_DIR/requirements.txt" gwclients) || evc_die "the Python HTTP clients (test/gateway/requirements.txt) could not be installed"
	export GW_PY
}

# Any HTTP answer at all means the gateway is serving.
gw_answers() { curl -s -o /dev/null --max-time 2 "$GW_URL/healthz"; }

gw_restart_wait() { evc_wait_for 30 gw_answers; }

gw_start() {
	GW_PORT=$(evc_free_port) || return 1
	GW_URL="http://127.0.0.1:$GW_PORT"
	export GW_URL GW_PORT
	psql -X -q -d evc_test -v ON_ERROR_STOP=1 >/dev/null <<SQL || return 1
CREATE EXTENSION IF NOT EXISTS evcollector;
ALTER SYSTEM SET evcollector.gateway_listen = '127.0.0.1:$GW_PORT';
ALTER SYSTEM SET evcollector.gateway_auth = off;
SELECT pg_reload_conf();
SQL
	gw_restart_wait || { evc_log "the gateway did not answer on $GW_URL"; return 1; }
	evc_log "gateway at $GW_URL"
}

gw_set() {
	psql -X -q -d evc_test -v ON_ERROR_STOP=1 >/dev/null \
		-c "ALTER SYSTEM SET evcollector.$1 = '$2'" -c "SELECT pg_reload_conf()"
	sleep 0.3
	gw_restart_wait
}

gw_reset() {
	psql -X -q -d evc_test -v ON_ERROR_STOP=1 >/dev/null \
		-c "ALTER SYSTEM RESET evcollector.$1" -c "SELECT pg_reload_conf()"
	sleep 0.3
	gw_restart_wait
}

gw_post() {
	local path=$1 body=$2
	shift 2
	curl -s -w '\n%{http_code}' -X POST "$GW_URL$path" -H 'Content-Type: application/json' \
		-d "$body" "$@" | awk '{ lines[NR] = $0 } END { printf "%s", lines[NR]; for (i = 1; i < NR; i++) printf " %s", lines[i]; print "" }'
}
