#!/usr/bin/env bash
# pg_dump keeps every piece of user state, and a restored server carries on.
# The harness's server is made to hold every kind of state (state.sql),
# then, with Kafka down, events are left pending.  It is dumped twice (plain
# for psql, custom for pg_restore) and restored into two new clusters; each
# holds the same rows in every table of evc.  Then Kafka comes back and each
# restored server in turn delivers: each pending event arrives once from
# each.  The first one's consumers land them, once, from where their
# offsets stood, and its aggregation goes on from its watermarks.  (The
# second one's consumers share the first one's consumer groups, which have
# moved on: two servers restored from one dump are not two copies of a
# consumer, see docs/operations.md.)
set -u
. "$(dirname "$0")/clusters.inc"
plan 22

SRC=$PGPORT
psql -X -q -v ON_ERROR_STOP=1 -d evc_test -v bin="$EVC_RUN/bin" -v boot="$EVC_KAFKA_BOOTSTRAP" \
	-v ctl="$EVC_KAFKA_CONTROL" -v c=bk -f "$(dirname "$0")/state.sql" >"$EVC_RUN/tmp/state.out" 2>&1
ok $? "the source holds registry, consumers, landed rows, aggregates and dead letters"
[ -s "$EVC_RUN/tmp/state.out" ] && sed 's/^/#   /' "$EVC_RUN/tmp/state.out" | head -20

# What the topics hold before, read while Kafka is up: with every broker
# down kafka-dump reads nothing (it gives up after 5 s a topic).  The
# images topic is shared; bk.alarm is registered below, with Kafka down.
topic_messages $(q "SELECT DISTINCT topic FROM evc.event_types WHERE client = 'bk'") images >"$EVC_RUN/tmp/before.tsv"
diag "$(grep -c . "$EVC_RUN/tmp/before.tsv") messages on the topics before"
# Kafka down: what is sent now stays pending (some rows go to the retry table).
kafka_down
q "SELECT count(evc_send('bk', 'reading', jsonb_build_object('room', 'r' || (i % 3), 'v', i, 'note', 'late'),
	jsonb_build_object('sent_at', now()))) FROM generate_series(1, 500) i" >/dev/null
q "SELECT evc_send_image('cam-2', decode('89504e470d0a1a0a', 'hex'), 'image/png')" >/dev/null
q "SELECT evc_register_schema('bk', 'alarm', '{\"type\": \"object\"}')" >/dev/null
q "SELECT evc_send('bk', 'alarm', '{\"level\": 3}')" >/dev/null
pending_ids "$SRC" "$EVC_RUN/tmp/pending.txt"
npending=$(grep -c . "$EVC_RUN/tmp/pending.txt")
[ "$npending" -ge 503 ]
ok $? "$npending events pending on the source with Kafka down"

as_pg "$BINDIR/pg_dump" -h 127.0.0.1 -p "$SRC" -U postgres -d evc_test -f "$EVC_RUN/tmp/plain.sql" &&
	as_pg "$BINDIR/pg_dump" -h 127.0.0.1 -p "$SRC" -U postgres -d evc_test -Fc -f "$EVC_RUN/tmp/dump.custom"
ok $? "pg_dump, plain and custom format"
snapshot_state "$SRC" "$EVC_RUN/tmp/src.state"
# The source stops before Kafka comes back: only the restored servers deliver.
cluster_stop "$EVC_PGDATA"
ok $? "the source server stopped"

PLAIN=$EVC_RUN/restore-plain
CUSTOM=$EVC_RUN/restore-custom
PA=$(evc_free_port) && CLUSTERS+=("$PLAIN") && cluster_new "$PLAIN" "$PA"
ok $? "a second cluster for the plain dump"
psql -X -q -1 -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PA" -U postgres -d evc_test -f "$EVC_RUN/tmp/plain.sql" >"$EVC_RUN/tmp/plain.out" 2>&1
ok $? "the plain dump restores with psql, in one transaction"
grep -E 'ERROR|WARNING' "$EVC_RUN/tmp/plain.out" | head -5 | sed 's/^/#   /'
PB=$(evc_free_port) && CLUSTERS+=("$CUSTOM") && cluster_new "$CUSTOM" "$PB"
ok $? "a third cluster for the custom dump"
as_pg "$BINDIR/pg_restore" -h 127.0.0.1 -p "$PB" -U postgres -d evc_test --single-transaction "$EVC_RUN/tmp/dump.custom" >"$EVC_RUN/tmp/custom.out" 2>&1
ok $? "the custom dump restores with pg_restore, in one transaction"
head -5 "$EVC_RUN/tmp/custom.out" | sed 's/^/#   /'

snapshot_state "$PA" "$EVC_RUN/tmp/plain.state"
snapshot_state "$PB" "$EVC_RUN/tmp/custom.state"
diff "$EVC_RUN/tmp/src.state" "$EVC_RUN/tmp/plain.state" >"$EVC_RUN/tmp/plain.diff"
ok $? "after psql: every evc table, sequence and pending event as on the source ($(grep -c '^== table' "$EVC_RUN/tmp/src.state") tables)"
head -20 "$EVC_RUN/tmp/plain.diff" | sed 's/^/#   /'
diff "$EVC_RUN/tmp/src.state" "$EVC_RUN/tmp/custom.state" >"$EVC_RUN/tmp/custom.diff"
ok $? "after pg_restore: every evc table, sequence and pending event as on the source"
head -20 "$EVC_RUN/tmp/custom.diff" | sed 's/^/#   /'
is "$(qp "$PA" "SELECT count(*) FROM evc.schema_documents WHERE uri = 'http://json-schema.org/draft-07/schema'")" 1 \
	"the built-in meta-schema is there once"
is "$(qp "$PA" "SELECT evc_check_event('bk', 'reading', '{\"room\": \"x\", \"v\": 1, \"note\": \"n\"}')")" 2 \
	"the restored registry validates against its latest version"

# The custom-format restore waits while the plain one delivers.
cluster_stop "$CUSTOM"
landed0=$(qp "$PA" "SELECT landed FROM evc.consumers WHERE name = 'bk_rows'")
# The restored consumers start at the launcher's next wake; now, here.
qp "$PA" "SELECT evc.wake_launcher()" >/dev/null
kafka_up
# Its relay starts about when Kafka is back, after evc_flush is called: the
# call must end when the relay has delivered, not at its deadline (it did).
is "$(qp "$PA" "SELECT evc_flush('90 s') || '|' || (clock_timestamp() - statement_timestamp() < interval '60 s')")" "0|true" \
	"the restored server (psql) delivers its outbox, and evc_flush returns then, before its deadline"
topic_messages $(pending_topics "$EVC_RUN/tmp/pending.txt") >"$EVC_RUN/tmp/after-plain.tsv"
read -r missing dups < <(delivered_once "$EVC_RUN/tmp/pending.txt" "$EVC_RUN/tmp/before.tsv" "$EVC_RUN/tmp/after-plain.tsv")
is "$missing" 0 "every pending event arrived from the psql-restored server"
is "$dups" 0 "none arrived twice"
wait_for 60 bash -c "[ \"\$(psql -X -A -t -h 127.0.0.1 -p $PA -d evc_test -c \"SELECT count(*) FROM evc.events WHERE client = 'bk'\")\" = 800 ]"
ok $? "the restored table sink landed the 500 new readings (800 rows)"
is "$(qp "$PA" "SELECT landed - $landed0 FROM evc.consumers WHERE name = 'bk_rows'")" 500 \
	"it resumed from its stored offsets: nothing landed twice"
is "$(qp "$PA" "SELECT evc_aggregate('1 minute', '0', (SELECT max(aggregated_upto) FROM evc.aggregate_watermarks))")" 0 \
	"aggregation resumes from its watermarks: nothing published again"
[ "$(qp "$PA" "SELECT evc_aggregate('1 minute', '0', date_trunc('minute', now()) + interval '1 minute')")" -gt 0 ]
ok $? "and publishes the windows after them"

cluster_stop "$PLAIN"
cluster_start "$CUSTOM"
is "$(qp "$PB" "SELECT evc_flush('90 s')")" 0 "the restored server (pg_restore) delivers its outbox"
topic_messages $(pending_topics "$EVC_RUN/tmp/pending.txt") >"$EVC_RUN/tmp/after-custom.tsv"
read -r missing dups < <(delivered_once "$EVC_RUN/tmp/pending.txt" "$EVC_RUN/tmp/after-plain.tsv" "$EVC_RUN/tmp/after-custom.tsv")
is "$missing" 0 "every pending event arrived from the pg_restore-restored server"
is "$dups" 0 "none arrived twice"
cluster_stop "$CUSTOM"
# The harness's server goes on for the next layers, without this test's
# workers, logging where the harness and the later layers read its log.
as_pg env ${EVC_SANITIZE_ENV:-} "$BINDIR/pg_ctl" -D "$EVC_PGDATA" -l "$EVC_RUN/postgresql.log" -w -t 60 start >/dev/null &&
	q "SELECT evc_consumer_drop(name) FROM evc.consumer_defs WHERE name LIKE 'bk\\_%';
	   SELECT evc_drop_aggregation('bk', 'reading')" >/dev/null
exit $((TAP_FAILED > 0))
