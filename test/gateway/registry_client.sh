#!/usr/bin/env bash
# test/gateway/registry_client.sh: run registry_client.py (confluent-kafka's
# SchemaRegistryClient, JSONSerializer and JSONDeserializer, and requests)
# against the gateway, with a fresh admin key sent as Basic, as the
# registry clients send it.  Under test/run (gateway_auth = off) it turns
# authentication on for the run and off again.  Prints the script's TAP.
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../tap.sh"
export EVC_GW_URL=${EVC_GW_URL:-${GW_URL:?neither EVC_GW_URL nor GW_URL is set}}
py=$(bash "$here/registry_pyenv.sh") || { echo "not ok 1 - the Python clients install (registry_pyenv.sh)"; exit 1; }
auth_was_off=
if [ -z "${EVC_GW_ADMIN_KEY:-}" ] && type gw_set >/dev/null 2>&1; then
	EVC_GW_CLIENT=gwpy$$
	EVC_GW_ADMIN_KEY=$(q "SELECT evc_gateway_key_create('$EVC_GW_CLIENT', 'admin')")
	export EVC_GW_CLIENT EVC_GW_ADMIN_KEY
	gw_set gateway_auth on
	auth_was_off=1
fi
"$py" "$here/registry_client.py"
rc=$?
# back to what test/run set (gw_start): off
[ -n "$auth_was_off" ] && gw_set gateway_auth off
exit $rc
