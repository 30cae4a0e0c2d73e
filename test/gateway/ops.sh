#!/usr/bin/env bash
# test/gateway/ops.sh: the gateway's operations routes.  Prints TAP.
#
#   /healthz and /readyz, with curl;
#   /metrics checked by `promtool check metrics`, and scraped by Debian's
#     prometheus, started here on loopback with its own config and storage,
#     until its API shows up == 1 for the target and evc_ series in it;
#   /openapi.json: the document in the repository, every operation in it
#     answered by the server with a status it documents
#     (ops_openapi.py), and a bounded schemathesis run against it.
#
#   EVC_GW_URL        the gateway (required)
#   EVC_GW_ADMIN_KEY  an admin key, or empty when gateway_auth = off
#   EVC_GW_CLIENT     the key's client
#   EVC_GW_SCHEMATHESIS_EXAMPLES  examples per operation (default 10)
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../tap.sh"

URL=${EVC_GW_URL:-${GW_URL:?neither EVC_GW_URL nor GW_URL (test/gateway/lib.sh) is set}}
export EVC_GW_URL=$URL
KEY=${EVC_GW_ADMIN_KEY:-}
tmp=$(mktemp -d)
prom_pid=
cleanup() {
	[ -n "$prom_pid" ] && kill "$prom_pid" 2>/dev/null && wait "$prom_pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

get() { curl -s -o "$tmp/body" -w '%{http_code} %{content_type}' "$@"; }

# --- health ---
out=$(get "$URL/healthz")
[ "${out%% *}" = 200 ] && jq -e '.status == "ok"' "$tmp/body" >/dev/null
tap $? "GET /healthz answers 200 {\"status\": \"ok\"}" "$out $(cat "$tmp/body")"
out=$(get -X POST "$URL/healthz")
[ "${out%% *}" = 405 ]; tap $? "POST /healthz answers 405" "$out"
# An empty POST carries Content-Length: 0 (python's http.client, schemathesis).
out=$(get -X POST -d '' "$URL/healthz")
[ "${out%% *}" = 405 ] && jq -e '.error.code == "method_not_allowed"' "$tmp/body" >/dev/null
tap $? "POST /healthz with Content-Length: 0 answers 405 with a JSON error" "$out $(cat "$tmp/body")"
# The same empty POST to a route that takes a body is a 400 that says so.
auth=()
[ -n "$KEY" ] && auth=(-H "Authorization: Bearer $KEY")
out=$(get -X POST -H 'Content-Type: application/json' -d '' "${auth[@]}" "$URL/v1/events")
[ "${out%% *}" = 400 ] && jq -e '.error.code == "invalid_json"' "$tmp/body" >/dev/null
tap $? "POST /v1/events with Content-Length: 0 answers 400 invalid_json" "$out $(cat "$tmp/body")"
out=$(get "$URL/readyz")
[ "${out%% *}" = 200 ] && jq -e '.status == "ready" and .database_writable and .relay_up' "$tmp/body" >/dev/null
tap $? "GET /readyz: the database accepts writes and the relay is up" "$out $(cat "$tmp/body")"

# --- metrics ---
out=$(get "$URL/metrics")
cp "$tmp/body" "$tmp/metrics"
[ "${out%% *}" = 200 ] && [ "${out#* }" = "text/plain; version=0.0.4; charset=utf-8" ]
tap $? "GET /metrics answers the Prometheus text format 0.0.4" "$out"
grep -q '^# TYPE evc_sent_total counter$' "$tmp/metrics" && grep -q '^# TYPE evc_outbox_pending gauge$' "$tmp/metrics"
tap $? "with evc_metrics()'s families" "$(head -5 "$tmp/metrics")"
lint=$(promtool check metrics <"$tmp/metrics" 2>&1)
rc=$?
[ $rc -eq 0 ] && [ -z "$lint" ]
tap $? "promtool check metrics finds nothing wrong" "$lint"

# A real Prometheus scrapes the gateway.
hostport=${URL#*://}
hostport=${hostport%%/*}
scheme=${URL%%://*}
pport=$(evc_free_port 2>/dev/null || python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$tmp/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: evc
    scheme: $scheme
    metrics_path: /metrics
    tls_config:
      insecure_skip_verify: true
    static_configs:
      - targets: ["$hostport"]
EOF
promtool check config "$tmp/prometheus.yml" >"$tmp/promtool-config" 2>&1
tap $? "promtool check config accepts the test's Prometheus config" "$(cat "$tmp/promtool-config")"
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/tsdb" \
	--web.listen-address="127.0.0.1:$pport" --log.level=warn >"$tmp/prometheus.log" 2>&1 &
prom_pid=$!
promq() { curl -s -G "http://127.0.0.1:$pport/api/v1/query" --data-urlencode "query=$1"; }
deadline=$((SECONDS + 30))
until [ "$(promq 'up{job="evc"} == 1' | jq -r '.data.result | length' 2>/dev/null)" = 1 ]; do
	[ $SECONDS -ge $deadline ] && break
	sleep 0.5
done
[ "$(promq 'up{job="evc"}' | jq -r '.data.result[0].value[1]' 2>/dev/null)" = 1 ]
tap $? "Prometheus scrapes /metrics: up == 1 for the target" \
	"$(promq 'up{job="evc"}'; tail -5 "$tmp/prometheus.log")"
[ "$(promq 'count({job="evc", __name__=~"evc_.+"})' | jq -r '.data.result[0].value[1]' 2>/dev/null)" -gt 0 ] 2>/dev/null
tap $? "and stores evc_ series from it" "$(promq 'count({job="evc", __name__=~"evc_.+"})')"
# up is 1 only when the scrape parsed: a line Prometheus cannot read fails it.
[ "$(promq 'scrape_samples_scraped{job="evc"}' | jq -r '.data.result[0].value[1]' 2>/dev/null)" -gt 10 ] 2>/dev/null
tap $? "the scrape carries evc_metrics()'s samples" "$(promq 'scrape_samples_scraped{job="evc"}')"
kill "$prom_pid" 2>/dev/null
wait "$prom_pid" 2>/dev/null
prom_pid=

# --- the OpenAPI document ---
if ! py=$(bash "$here/registry_pyenv.sh"); then
	tap 1 "the Python clients install (test/gateway/registry_pyenv.sh)"
	echo "1..$n"
	exit 1
fi
out=$(get "$URL/openapi.json")
[ "${out%% *}" = 200 ] && jq -e --slurpfile repo "$here/../../src/gateway/openapi.json" '. == $repo[0]' "$tmp/body" >/dev/null
tap $? "GET /openapi.json serves src/gateway/openapi.json" "$out"
# ops_openapi.py prints one "PASS<TAB>what" or "FAIL<TAB>what<TAB>why" per check.
while IFS=$'\t' read -r verdict what why; do
	[ "$verdict" = PASS ]
	tap $? "$what" "$why"
done < <("$py" "$here/ops_openapi.py" "$here/../../src/gateway/openapi.json" 2>&1 ||
	printf 'FAIL\tops_openapi.py ran to its end\texit status %s\n' $?)

# schemathesis: requests generated from the document, a bounded run; no
# answer may be a server error (5xx), however odd the request.  Without
# NUL bytes: libwebsockets 4.1 closes a connection whose request line has
# a %00, before the gateway sees it (docs/gateway.md, "Limits").
st=$(dirname "$py")/schemathesis
auth=()
[ -n "$KEY" ] && auth=(-H "Authorization: Bearer $KEY")
(cd "$tmp" && timeout 300 "$st" run "$URL/openapi.json" --checks not_a_server_error \
	--phases examples,coverage,fuzzing --max-examples "${EVC_GW_SCHEMATHESIS_EXAMPLES:-10}" \
	--workers 1 --request-timeout 10 --generation-allow-x00 false \
	--seed 16 --no-color "${auth[@]}") >"$tmp/schemathesis.log" 2>&1
rc=$?
cp "$tmp/schemathesis.log" "$EVC_RUN/schemathesis.log" 2>/dev/null
tap $rc "schemathesis against /openapi.json: no server error" "$(grep -vE '^\s*$' "$tmp/schemathesis.log" | tail -40)"
grep -E "passed|failed|errors?" "$tmp/schemathesis.log" | tail -3 | sed 's/^/# /'

echo "1..$n"
[ "$fails" -eq 0 ]
