# test/gateway/auth.sh: write keys (Bearer and Basic), roles, clients,
# revoke, expiry, and gateway_auth = off refused off loopback.  Prints TAP.
. "$EVC_ROOT/test/tap.sh"
post() {
	local auth=$1 path=$2 data=$3
	shift 3
	curl -s -w '\n%{http_code}' -X POST "$GW_URL$path" -H 'Content-Type: application/json' \
		${auth:+-H "Authorization: $auth"} -d "$data" "$@" | tr '\n' ' '
}
code() { echo "$1" | awk '{ print $NF }'; }
ev='{"event_name":"order","data":{"total":1}}'
q "SELECT evc_register_schema('keyshop', 'order',
	'{\"type\":\"object\",\"properties\":{\"total\":{\"type\":\"number\"}},\"required\":[\"total\"]}')" >/dev/null 2>&1

w=$(q "SELECT evc_gateway_key_create('keyshop', 'write')")
r=$(q "SELECT evc_gateway_key_create('keyshop', 'read')")
a=$(q "SELECT evc_gateway_key_create('keyshop', 'admin')")
x=$(q "SELECT evc_gateway_key_create('keyshop', 'write', now() - interval '1 minute')")
tap $(echo "$w" | grep -qE '^evk_[0-9]+_[0-9a-f]{64}$'; echo $?) "evc_gateway_key_create returns evk_<id>_<secret>" "$w"
wid=$(echo "$w" | cut -d_ -f2)
secret=$(echo "$w" | cut -d_ -f3)
stored=$(q "SELECT encode(secret_hash, 'hex') FROM evc.gateway_keys WHERE id = $wid")
tap $([ "$stored" = "$(printf '%s' "$secret" | sha256sum | cut -c1-64)" ] && [ "$(q "SELECT count(*) FROM evc.gateway_keys WHERE position('$secret' in secret_hash::text) > 0")" = 0 ]; echo $?) \
	"only the SHA-256 of the secret is stored" "$stored"
out=$(q "SELECT evc_gateway_key_create('keyshop', 'superuser')" 2>&1)
tap $(echo "$out" | grep -q 'invalid gateway key role'; echo $?) "an unknown role is refused" "$out"

gw_set gateway_auth on
o=$(post "" /store "$ev")
tap $([ "$(code "$o")" = 401 ] && echo "$o" | grep -q missing_key; echo $?) "no key: 401 missing_key" "$o"
o=$(post "Bearer evk_${wid}_$(printf '%064d' 0)" /store "$ev")
tap $([ "$(code "$o")" = 401 ] && echo "$o" | grep -q invalid_key; echo $?) "a wrong secret: 401 invalid_key" "$o"
o=$(post "Bearer garbage" /store "$ev")
tap $([ "$(code "$o")" = 401 ]; echo $?) "a malformed key: 401" "$o"
o=$(post "Bearer $w" /store "$ev")
tap $([ "$(code "$o")" = 200 ] && echo "$o" | grep -q '"topic":"keyshop.order"'; echo $?) "a write key sends as its client (no client named)" "$o"
o=$(post "Basic $(printf 'keyshop:%s' "$w" | base64 -w0)" /keyshop/order/send_event '{"total":2}')
tap $([ "$(code "$o")" = 200 ]; echo $?) "Basic with the key as password works (registry clients)" "$o"
o=$(post "Bearer $w" /other/order/send_event '{"total":2}')
tap $([ "$(code "$o")" = 403 ] && echo "$o" | grep -q 'cannot send as client'; echo $?) "a key cannot send as another client" "$o"
o=$(post "Bearer $w" /store "$ev" -H 'X-Evc-Client: other')
tap $([ "$(code "$o")" = 403 ]; echo $?) "nor name another client in X-Evc-Client" "$o"
o=$(post "Bearer $r" /store "$ev")
tap $([ "$(code "$o")" = 403 ] && echo "$o" | grep -q 'read-only'; echo $?) "a read key cannot send" "$o"
o=$(post "Bearer $a" /v1/batch "[$ev,$ev]")
tap $([ "$(code "$o")" = 200 ] && echo "$o" | grep -q '"accepted":2'; echo $?) "an admin key sends too" "$o"
o=$(post "Bearer $x" /store "$ev")
tap $([ "$(code "$o")" = 401 ] && echo "$o" | grep -q key_expired; echo $?) "an expired key: 401 key_expired" "$o"
tap $([ "$(q "SELECT evc_gateway_key_revoke($wid)")" = t ] && [ "$(q "SELECT evc_gateway_key_revoke($wid)")" = f ]; echo $?) \
	"evc_gateway_key_revoke revokes once"
o=$(post "Bearer $w" /store "$ev")
tap $([ "$(code "$o")" = 401 ] && echo "$o" | grep -q key_revoked; echo $?) "a revoked key: 401 key_revoked, from the next request" "$o"
tap $([ "$(q "SELECT string_agg(role || ':' || live, ',' ORDER BY id) FROM evc.gateway_keys_status")" = "write:false,read:true,admin:true,write:false" ]; echo $?) \
	"evc.gateway_keys_status shows the keys without their hashes" "$(q "SELECT * FROM evc.gateway_keys_status")"
gw_set gateway_auth off

# gateway_auth = off is for loopback only.
port2=$(evc_free_port)
psql -X -q -d evc_test -c "ALTER SYSTEM SET evcollector.gateway_listen = '0.0.0.0:$port2'" -c "SELECT pg_reload_conf()" >/dev/null
wait_log() { grep -q "gateway_auth is off and evcollector.gateway_listen \"0.0.0.0:$port2\" is not a loopback address" "$EVC_RUN/postgresql.log"; }
evc_wait_for 20 wait_log
tap $? "gateway_auth = off on a non-loopback address: the gateway says why and does not serve"
tap $(curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port2/store"; [ $? -ne 0 ]; echo $?) "and nothing listens there"
psql -X -q -d evc_test -c "ALTER SYSTEM SET evcollector.gateway_listen = '127.0.0.1:$GW_PORT'" -c "SELECT pg_reload_conf()" >/dev/null
gw_restart_wait
tap $? "back on loopback it serves again"

[ $fails -eq 0 ]
