# test/gateway/https.sh: HTTPS with a self-signed certificate, through curl
# and Python requests, and the same routes over HTTP with requests.  TAP.
. "$EVC_ROOT/test/tap.sh"
py() { "$GW_PY" "$EVC_ROOT/test/gateway/clients.py" "$@"; }
q "SELECT evc_register_schema('default', 'page_view',
	'{\"type\":\"object\",\"properties\":{\"url\":{\"type\":\"string\"}},\"required\":[\"url\"]}')" >/dev/null 2>&1

out=$(py session "$GW_URL")
tap $(echo "$out" | jq -e '.store[0] == 200 and .store[1].client_message_id == "py-1" and .events[0] == 200 and .batch == [200, 50] and .invalid[0] == 422 and .keepalive[0] == 200' >/dev/null; echo $?) \
	"Python requests: /store, /v1/events, /v1/batch, a 422, 200 requests on one Session" "$out"

dir="$EVC_RUN/tls"
mkdir -p "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
	-addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
	-keyout "$dir/key.pem" -out "$dir/cert.pem" >/dev/null 2>&1
chown -R postgres "$dir"
chmod 600 "$dir/key.pem"
psql -X -q -d evc_test -c "ALTER SYSTEM SET evcollector.gateway_tls_cert = '$dir/cert.pem'" \
	-c "ALTER SYSTEM SET evcollector.gateway_tls_key = '$dir/key.pem'" -c "SELECT pg_reload_conf()" >/dev/null
https="https://localhost:$GW_PORT"
tls_up() { curl -s -o /dev/null --cacert "$dir/cert.pem" "$https/healthz"; }
evc_wait_for 30 tls_up
tap $? "the gateway serves HTTPS once gateway_tls_cert and gateway_tls_key are set"
r=$(curl -s -w '\n%{http_code}' --cacert "$dir/cert.pem" -X POST "$https/store" -H 'Content-Type: application/json' \
	-d '{"event_name":"page_view","context":{"sent_at":1690000000,"message_id":"tls-1"},"data":{"url":"/tls"}}')
tap $([ "$(echo "$r" | tail -1)" = 200 ]; echo $?) "curl over HTTPS, the certificate verified" "$r"
out=$(curl -sv -o /dev/null -o /dev/null --cacert "$dir/cert.pem" "$https/x" "$https/y" 2>&1)
tap $(echo "$out" | grep -q 'Re-using existing connection'; echo $?) "HTTPS keep-alive" "$(echo "$out" | grep -E '^\*' | tail -5)"
r=$(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://127.0.0.1:$GW_PORT/store")
tap $([ "$r" != 200 ] && [ "$r" != 405 ]; echo $?) "plain HTTP is not served on the HTTPS port" "$r"
out=$(py session "$https" "$dir/cert.pem")
tap $(echo "$out" | jq -e '.store[0] == 200 and .batch == [200, 50] and .keepalive[0] == 200' >/dev/null; echo $?) \
	"Python requests over HTTPS, verifying the self-signed certificate" "$out"
psql -X -q -d evc_test -c "ALTER SYSTEM RESET evcollector.gateway_tls_cert" \
	-c "ALTER SYSTEM RESET evcollector.gateway_tls_key" -c "SELECT pg_reload_conf()" >/dev/null
sleep 0.5
gw_restart_wait

[ $fails -eq 0 ]
