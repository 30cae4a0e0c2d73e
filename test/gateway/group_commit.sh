# test/gateway/group_commit.sh: 1,000 concurrent requests, 10 invalid: the
# 990 answered 200 are on Kafka one to one, the 10 get precise errors, and
# the requests were committed in groups (fewer commits than requests).  TAP.
. "$EVC_ROOT/test/tap.sh"
q "SELECT evc_register_schema('default', 'page_view',
	'{\"type\":\"object\",\"properties\":{\"url\":{\"type\":\"string\"}},\"required\":[\"url\"]}')" >/dev/null 2>&1
topic=$(q "SELECT topic FROM evc.event_types WHERE client = 'default' AND event_name = 'page_view' ORDER BY version DESC LIMIT 1" 2>/dev/null)
[ -n "$topic" ] || topic=default.page_view
# Distinct ids: librdkafka's mock cluster ignores isolation.level, so a
# relay transaction aborted and sent again (after a crash restart, for one)
# shows twice there; on a real broker test/kafka/eos.sh counts duplicates.
kafka_ids() { kcat -C -b "$EVC_KAFKA_BOOTSTRAP" -t "$topic" -e -q -f '%h\n' 2>/dev/null | sed -n 's/.*message_id=\([0-9a-f-]*\).*/\1/p' | sort -u; }
q "SELECT evc_flush('60 s')" >/dev/null
kafka_ids >"$EVC_RUN/tmp/gc.before"
groups() { q "SELECT batches FROM evc.stats WHERE kind = 'gateway'"; }
groups0=$(groups)

"$GW_PY" "$EVC_ROOT/test/gateway/clients.py" concurrent "$GW_URL" 1000 10 >"$EVC_RUN/tmp/gc.json"
ok=$(jq '[.[] | select(.status == 200)] | length' "$EVC_RUN/tmp/gc.json")
bad=$(jq '[.[] | select(.bad and .status == 422 and .error.code == "schema_violation" and (.error.message | test("At /url: value is number, expected string")))] | length' "$EVC_RUN/tmp/gc.json")
tap $([ "$ok" = 990 ]; echo $?) "990 of 1,000 concurrent requests are answered 200" "$(jq -c '[.[] | select(.status != 200 and (.bad | not))][:3]' "$EVC_RUN/tmp/gc.json")"
tap $([ "$bad" = 10 ]; echo $?) "the 10 invalid ones each get 422 with the path and keyword" "$(jq -c '[.[] | select(.bad)][:3]' "$EVC_RUN/tmp/gc.json")"

q "SELECT evc_flush('60 s')" >/dev/null
kafka_ids >"$EVC_RUN/tmp/gc.after"
# What this run added: the ids are new (gc-<i> names), so a set difference.
comm -13 "$EVC_RUN/tmp/gc.before" "$EVC_RUN/tmp/gc.after" >"$EVC_RUN/tmp/gc.kafka"
jq -r '.[] | select(.status == 200) | .message_id' "$EVC_RUN/tmp/gc.json" | sort >"$EVC_RUN/tmp/gc.answered"
tap $(cmp -s "$EVC_RUN/tmp/gc.kafka" "$EVC_RUN/tmp/gc.answered"; echo $?) \
	"the topic holds exactly the 990 answered events, one to one" \
	"kafka $(wc -l <"$EVC_RUN/tmp/gc.kafka"), answered $(wc -l <"$EVC_RUN/tmp/gc.answered"); $(diff "$EVC_RUN/tmp/gc.kafka" "$EVC_RUN/tmp/gc.answered" | head -5)"
commits=$(( $(groups) - groups0 ))
tap $([ "$commits" -gt 0 ] && [ "$commits" -lt 1000 ]; echo $?) \
	"the 1,000 requests were committed in $commits group transactions (evc.stats batches)" "$commits"

[ $fails -eq 0 ]
