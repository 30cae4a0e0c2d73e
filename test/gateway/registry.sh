#!/usr/bin/env bash
# test/gateway/registry.sh: every schema-registry route of the gateway and
# its errors, with curl, checked against the database with psql.  Prints TAP.
#
#   EVC_GW_URL          the gateway, e.g. http://127.0.0.1:8080 (required)
#   EVC_GW_ADMIN_KEY    an admin key of client $EVC_GW_CLIENT; empty when
#                       the gateway runs with evcollector.gateway_auth = off
#   EVC_GW_READ_KEY     a read-only key of the same client (auth tests)
#   EVC_GW_OTHER_KEY    an admin key of another client (auth tests)
#   EVC_GW_CLIENT       the client the keys belong to (default: a fresh one)
#
# psql reaches the server under test through the usual PG* variables, as
# test/run sets them (database evc_test).
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/../tap.sh"

URL=${EVC_GW_URL:-${GW_URL:?neither EVC_GW_URL nor GW_URL (test/gateway/lib.sh) is set}}
ADMIN=${EVC_GW_ADMIN_KEY:-}
READ=${EVC_GW_READ_KEY:-}
OTHER=${EVC_GW_OTHER_KEY:-}
C=${EVC_GW_CLIENT:-gwreg$$}
S="$C.order-value"
SR=application/vnd.schemaregistry.v1+json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# call METHOD PATH [BODY] [KEY]: sets status, ctype and body (KEY "-" = none).
call() {
	local key=${4-$ADMIN} out
	local args=(-s -o "$tmp/body" -w '%{http_code} %{content_type}' -X "$1")
	[ -n "$key" ] && [ "$key" != - ] && args+=(-H "Authorization: Bearer $key")
	[ -n "${3-}" ] && args+=(-H "Content-Type: $SR" --data-binary "$3")
	out=$(curl "${args[@]}" "$URL$2")
	status=${out%% *}
	ctype=${out#* }
	body=$(cat "$tmp/body")
}

# expect DESC STATUS [JQ]: the last call answered STATUS and JQ holds on its body.
expect() {
	local rc=0
	[ "$status" = "$2" ] || rc=1
	if [ $rc -eq 0 ] && [ -n "${3-}" ]; then
		jq -e "$3" >/dev/null 2>&1 <<<"$body" || rc=1
	fi
	tap $rc "$1" "status $status ($ctype): $body"
}

# A JSON Schema as the string a registration request carries.
schema_req() { jq -cn --arg s "$1" '{schema: $s, schemaType: "JSON"}'; }

V1='{"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}'
V2='{"type": "object", "properties": {"id": {"type": "integer"}, "note": {"type": "string"}}, "required": ["id"]}'
BREAKING='{"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}, "required": ["id", "name"]}'

# --- subjects and registration ---
call PUT /config '{"compatibility": "BACKWARD"}'
expect "PUT /config sets the global level" 200 '.compatibility == "BACKWARD"'
[ "$ctype" = "$SR" ]; tap $? "the registry routes answer $SR" "$ctype"
call GET /subjects
expect "GET /subjects is an array without the new subject" 200 "type == \"array\" and (index(\"$S\") | not)"
call GET "/subjects/$S/versions"
expect "an unknown subject answers 40401" 404 '.error_code == 40401 and (.message | length > 0)'
call POST "/subjects/$S/versions" "$(schema_req "$V1")"
expect "POST /subjects/{s}/versions registers and answers the id" 200 '.id | type == "number"'
id1=$(jq .id <<<"$body")
[ "$(q "SELECT id FROM evc.event_types WHERE client = '$C' AND event_name = 'order' AND version = 1")" = "$id1" ]
tap $? "the id is the version's evc.event_types.id" "id $id1"
[ "$(q "SELECT evc_get_schema('$C', 'order') = '$V1'::jsonb")" = t ]
tap $? "the schema is the registry's (evc_get_schema)"
call POST "/subjects/$S/versions" "$(schema_req "$V1")"
expect "registering the same schema again answers the same id" 200 ".id == $id1"
call GET /subjects
expect "GET /subjects lists <client>.<event>-value" 200 "index(\"$S\") != null"
call GET "/subjects/$S/versions"
expect "GET /subjects/{s}/versions" 200 '. == [1]'
call GET "/subjects/$S/versions/1"
expect "GET /subjects/{s}/versions/1" 200 \
	".subject == \"$S\" and .id == $id1 and .version == 1 and .schemaType == \"JSON\" and (.schema | fromjson | .required == [\"id\"])"
call GET "/subjects/$S/versions/latest"
expect "GET /subjects/{s}/versions/latest" 200 '.version == 1'
call GET "/subjects/$S/versions/2"
expect "a version that does not exist answers 40402" 404 '.error_code == 40402'
call GET "/subjects/$S/versions/abc"
expect "a version that is not a number answers 42202" 422 '.error_code == 42202'
call GET "/subjects/$S/versions/0"
expect "version 0 answers 42202" 422 '.error_code == 42202'
call GET "/subjects/$S/versions/1/schema"
expect "GET /subjects/{s}/versions/1/schema is the schema alone" 200 '.required == ["id"]'
call GET "/schemas/ids/$id1"
expect "GET /schemas/ids/{id}" 200 '.schemaType == "JSON" and (.schema | fromjson | .properties.id.type == "integer")'
call GET /schemas/ids/999999999
expect "an unknown id answers 40403" 404 '.error_code == 40403'
call GET /schemas/ids/x
expect "an id that is not a number answers 40403" 404 '.error_code == 40403'
call GET /schemas/types
expect "GET /schemas/types" 200 '. == ["JSON"]'

# --- lookup ---
call POST "/subjects/$S" "$(schema_req '{"required": ["id"], "properties": {"id": {"type": "integer"}}, "type": "object"}')"
expect "POST /subjects/{s} finds the version (key order does not matter)" 200 ".id == $id1 and .version == 1 and .subject == \"$S\""
call POST "/subjects/$S" "$(schema_req "$V2")"
expect "a schema no version has answers 40403" 404 '.error_code == 40403'
call POST "/subjects/$C.none-value" "$(schema_req "$V1")"
expect "a lookup in an unknown subject answers 40401" 404 '.error_code == 40401'

# --- bad schemas and bodies ---
call POST "/subjects/$S/versions" "$(schema_req '{"type": 5}')"
expect "an invalid schema answers 42201, naming the place" 422 '.error_code == 42201 and (.message | test("type"))'
call POST "/subjects/$S/versions" "$(schema_req '{"type": ')"
expect "a schema that is not JSON answers 42201" 422 '.error_code == 42201'
call POST "/subjects/$S/versions" '{"schema": '
expect "a body that is not JSON answers 400" 400 '.error_code == 400'
call POST "/subjects/$S/versions" '{"schemaType": "JSON"}'
expect "a body without a schema answers 42201" 422 '.error_code == 42201'
call POST "/subjects/$S/versions" "$(jq -cn --arg s "$V1" '{schema: $s, schemaType: "AVRO"}')"
expect "schemaType AVRO answers 42201" 422 '.error_code == 42201 and (.message | test("JSON"))'
call POST "/subjects/$S/versions" "$(jq -cn --arg s "$V1" '{schema: $s, references: [{name: "x", subject: "y", version: 1}]}')"
expect "references answer 42201" 422 '.error_code == 42201'
call POST "/subjects/$C-order/versions" "$(schema_req "$V1")"
expect "a subject not named <client>.<event>-value answers 42208 on register" 422 '.error_code == 42208'
call GET "/subjects/$C-order/versions"
expect "and 40401 on read" 404 '.error_code == 40401'
if [ -z "$ADMIN" ]; then	# with keys, another client's name is refused first (403)
	call POST "/subjects/bad%20client.x-value/versions" "$(schema_req "$V1")"
	expect "an invalid client name answers 42208" 422 '.error_code == 42208'
fi

# --- compatibility ---
call POST "/subjects/$S/versions" "$(schema_req "$BREAKING")"
expect "an incompatible schema answers 409 under BACKWARD" 409 '.error_code == 409 and (.message | test("name"))'
call POST "/compatibility/subjects/$S/versions/latest" "$(schema_req "$BREAKING")"
expect "POST /compatibility/.../latest: not compatible" 200 '.is_compatible == false and (has("messages") | not)'
call POST "/compatibility/subjects/$S/versions/1?verbose=true" "$(schema_req "$BREAKING")"
expect "?verbose=true gives the reason" 200 '.is_compatible == false and (.messages[0] | test("required"))'
call POST "/compatibility/subjects/$S/versions/latest" "$(schema_req "$V2")"
expect "adding an optional property is compatible" 200 '.is_compatible == true'
call POST "/compatibility/subjects/$S/versions/7" "$(schema_req "$V2")"
expect "compatibility with a version that does not exist answers 40402" 404 '.error_code == 40402'
call POST "/compatibility/subjects/$S/versions/latest" "$(schema_req '{"type": 5}')"
expect "compatibility of an invalid schema answers 42201" 422 '.error_code == 42201'
call POST "/subjects/$S/versions" "$(schema_req "$V2")"
expect "a compatible version 2 gets a new id" 200 ".id != $id1"
id2=$(jq .id <<<"$body")
call GET "/subjects/$S/versions"
expect "two versions" 200 '. == [1, 2]'
call GET "/schemas/ids/$id1"
expect "the first id still names version 1" 200 '(.schema | fromjson | .properties | has("note") | not)'

# --- config ---
call GET /config
expect "GET /config" 200 '.compatibilityLevel == "BACKWARD"'
call GET "/config/$S"
expect "a subject without its own level answers 40408" 404 '.error_code == 40408'
call GET "/config/$S?defaultToGlobal=true"
expect "unless ?defaultToGlobal=true" 200 '.compatibilityLevel == "BACKWARD"'
call PUT "/config/$S" '{"compatibility": "none"}'
expect "PUT /config/{s}" 200 '.compatibility == "NONE"'
[ "$(q "SELECT compatibility FROM evc.registry_config WHERE client = '$C' AND event_name = 'order'")" = none ]
tap $? "the level is a row of evc.registry_config"
call GET "/config/$S"
expect "GET /config/{s} answers it" 200 '.compatibilityLevel == "NONE"'
call POST "/subjects/$S/versions" "$(schema_req "$BREAKING")"
expect "under NONE the breaking schema registers" 200 ".id != $id2"
[ "$(q "SELECT compatibility FROM evc.event_types WHERE client = '$C' AND event_name = 'order' AND version = 3")" = none ]
tap $? "and the registry records the mode it was registered under"
call PUT "/config/$S" '{"compatibility": "BOGUS"}'
expect "an unknown level answers 42203" 422 '.error_code == 42203'
call PUT "/config/$S" '{"compatibility": '
expect "a config body that is not JSON answers 400" 400 '.error_code == 400'
call PUT "/config/not-a-subject" '{"compatibility": "FULL"}'
expect "a config for a subject that cannot exist answers 42208" 422 '.error_code == 42208'
call DELETE "/config/$S"
expect "DELETE /config/{s} answers the level it had" 200 '.compatibilityLevel == "NONE"'
call GET "/config/$S"
expect "after which the subject has no level of its own" 404 '.error_code == 40408'

# The transitive levels check every version, not only the latest.
T="$C.trans-value"
call POST "/subjects/$T/versions" "$(schema_req '{"properties": {"id": {"type": "integer"}}}')"
expect "transitive: version 1" 200 '.id > 0'
call PUT "/config/$T" '{"compatibility": "NONE"}'
call POST "/subjects/$T/versions" "$(schema_req '{"properties": {"id": {"type": "string"}}}')"
expect "transitive: version 2 under NONE" 200 '.id > 0'
call PUT "/config/$T" '{"compatibility": "BACKWARD_TRANSITIVE"}'
expect "PUT BACKWARD_TRANSITIVE" 200 '.compatibility == "BACKWARD_TRANSITIVE"'
call POST "/subjects/$T/versions" "$(schema_req '{"properties": {"id": {"type": "string"}, "note": {"type": "string"}}}')"
expect "compatible with the latest but not with version 1: 409 under BACKWARD_TRANSITIVE" 409 '.message | test("version 1")'
call PUT "/config/$T" '{"compatibility": "BACKWARD"}'
call POST "/subjects/$T/versions" "$(schema_req '{"properties": {"id": {"type": "string"}, "note": {"type": "string"}}}')"
expect "and registered under BACKWARD" 200 '.id > 0'

call PUT /config '{"compatibility": "FULL"}'
expect "PUT /config FULL" 200 '.compatibility == "FULL"'
call GET /config
expect "GET /config FULL" 200 '.compatibilityLevel == "FULL"'
call PUT /config '{"compatibility": "BACKWARD"}'

# --- methods ---
call DELETE /subjects
expect "a method a registry path does not serve answers 405" 405 '.error_code == 405'

# --- the seed event gateway's routes ---
SIGNUP='{"type": "object", "properties": {"email": {"type": "string", "format": "email"}}, "required": ["email"]}'
gw() { local key=${3-$ADMIN}; local args=(-s -o "$tmp/body" -w '%{http_code} %{content_type}' -X "$1")
	[ -n "$key" ] && [ "$key" != - ] && args+=(-H "Authorization: Bearer $key")
	[ -n "${4-}" ] && args+=(-H 'Content-Type: application/json' --data-binary "$4")
	out=$(curl "${args[@]}" "$URL$2"); status=${out%% *}; ctype=${out#* }; body=$(cat "$tmp/body"); }
gw POST "/$C/signup/register_event" "$ADMIN" "$SIGNUP"
expect "POST /<client>/<event>/register_event" 200 \
	".client == \"$C\" and .event == \"signup\" and .version == 1 and .topic == \"$C.signup\" and .compatibility == \"backward\""
gw GET "/$C/signup/schema"
expect "GET /<client>/<event>/schema answers the schema itself" 200 ". == $SIGNUP"
[ "${ctype%%;*}" = application/json ]; tap $? "as application/json" "$ctype"
gw GET "/$C/signup/schema?version=1"
expect "?version=1" 200 '.required == ["email"]'
gw GET "/$C/signup/schema?version=9"
expect "an unknown version answers 404 with our error body" 404 '.error.code == "unknown_event_type" and (.error.message | length > 0)'
gw GET "/$C/nothing/schema"
expect "an unknown event answers 404" 404 '.error.code == "unknown_event_type"'
gw GET "/$C/list_events"
expect "GET /<client>/list_events" 200 \
	".client == \"$C\" and ([.events[].event] | index(\"signup\") != null and index(\"order\") != null) and (.events[] | select(.event == \"order\") | .version == 3 and .versions == 3)"
if [ -z "$ADMIN" ]; then
	gw GET "/${C}x/list_events"
	expect "a client with no events lists none" 200 '.events == []'
fi
gw POST "/$C/signup/register_event" "$ADMIN" '{"type": "strin"}'
expect "register_event of an invalid schema answers 422 naming the place" 422 '.error.code == "invalid_schema" and (.error.message | test("type"))'
gw POST "/$C/signup/register_event" "$ADMIN" '{"type": '
expect "register_event of a body that is not JSON answers 422" 422 '.error.code == "invalid_schema"'
gw POST "/$C/signup/register_event" "$ADMIN" '{"type": "object", "required": ["email", "age"]}'
expect "register_event of an incompatible schema answers 409" 409 '.error.code == "incompatible_schema"'
gw POST "/$C/bad%20name/register_event" "$ADMIN" '{}'
expect "register_event of an invalid event name answers 400" 400 '.error.code == "invalid_name"'
gw GET "/$C/signup/register_event"
expect "GET on register_event answers 405" 405 '.error.code == "method_not_allowed"'

# --- keys ---
# Under test/run the gateway runs with gateway_auth = off; the key checks
# turn it on for themselves (gw_set, test/gateway/lib.sh) and back off.
auth_was_off=
if [ -z "$ADMIN" ] && type gw_set >/dev/null 2>&1; then
	ADMIN=$(q "SELECT evc_gateway_key_create('$C', 'admin')")
	READ=$(q "SELECT evc_gateway_key_create('$C', 'read')")
	OTHER=$(q "SELECT evc_gateway_key_create('${C}o', 'admin')")
	gw_set gateway_auth on
	auth_was_off=1
fi
if [ -n "$ADMIN" ]; then
	call GET /subjects "" -
	expect "no key answers 401 (the server's own answer, before any route)" 401 '.error.code == "missing_key"'
	call POST "/subjects/$S/versions" "$(schema_req "$V2")" "$READ"
	expect "a read key may not register: 403" 403 '.error_code == 40301'
	call GET "/subjects/$S/versions" "" "$READ"
	expect "a read key may read" 200 '. == [1, 2, 3]'
	call GET "/subjects/$S/versions" "" "$OTHER"
	expect "another client's key may not read this client's subject: 403" 403 '.error_code == 40301'
	call GET /subjects "" "$OTHER"
	expect "and does not see it in GET /subjects" 200 "index(\"$S\") == null"
	call GET "/schemas/ids/$id1" "" "$OTHER"
	expect "nor its schemas by id" 404 '.error_code == 40403'
	gw POST "/$C/signup/register_event" "$READ" "$SIGNUP"
	expect "a read key may not register_event: 403" 403 '.error.code == "forbidden"'
	call PUT /config '{"compatibility": "NONE"}' "$READ"
	expect "a read key may not set config: 403" 403 '.error_code == 40301'
	call GET "/subjects/$S/versions" "" "$READ:x"
	expect "a key that is not one answers 401" 401
	out=$(curl -s -o "$tmp/body" -w '%{http_code}' -u "anyone:$READ" "$URL/subjects/$S/versions")
	[ "$out" = 200 ] && [ "$(jq -c . "$tmp/body")" = "[1,2,3]" ]
	tap $? "the key as the Basic password (registry clients) reads" "$out $(cat "$tmp/body")"
	out=$(curl -s -o "$tmp/body" -w '%{http_code}' "$URL/healthz")
	[ "$out" = 200 ]; tap $? "the operations routes need no key" "$out"
else
	echo "# gateway_auth is off and cannot be turned on here: the key checks are not run"
fi
# back to what test/run set (gw_start): off
[ -n "$auth_was_off" ] && gw_set gateway_auth off

echo "1..$n"
[ "$fails" -eq 0 ]
