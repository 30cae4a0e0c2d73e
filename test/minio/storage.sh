#!/usr/bin/env bash
# test/minio/storage.sh: evcollector's s3:// storage against a real,
# signature-checking MinIO.  Sourced by test/run's minio layer in a subshell,
# after the harness started the cluster, the test Kafka and MinIO (so
# test/lib.sh's and test/minio/minio.sh's functions and EVC_* variables are
# here).  Prints TAP.
#
#  - an archive consumer and an images consumer land into a prefix with a
#    space, a '+' and non-ASCII characters;
#  - MinIO's Python client and boto3, which share no code with libcurl, list
#    the objects by their exact names and read each back to its sha256;
#  - a wrong secret is refused (403): the consumer shows it clearly, the
#    secret itself never appears, nothing is committed, and once the secret
#    is right the held batch lands;
#  - MinIO SIGKILLed and restarted while batches land loses nothing.

set -u
PREFIX='ev c+ü'
. "$EVC_ROOT/test/tap.sh"
produce() { "$EVC_ROOT/.build/bin/evc-produce" -b "$EVC_KAFKA_BOOTSTRAP" "$@" >/dev/null; }
ctl() { "$EVC_ROOT/test/kafkactl" -c "$EVC_KAFKA_CONTROL" "$@" >/dev/null; }
set_secret() {
	q "ALTER SYSTEM SET evcollector.s3_secret_key = '$1'" && q "SELECT pg_reload_conf()" >/dev/null
}
# expected_json: {object_key: sha256} of every object the index tables hold.
expected_json() {
	q "SELECT coalesce(json_object_agg(object_key, sha256), '{}') FROM (SELECT object_key, sha256 FROM evc.archive_files UNION SELECT object_key, sha256 FROM evc.images) s WHERE object_key LIKE '$PREFIX/%'" \
		>"$EVC_RUN/tmp/minio-expected.json"
}
pycheck() { "$EVC_PY" "$EVC_ROOT/test/minio/pycheck.py" check "$1" "$PREFIX/" "$EVC_RUN/tmp/minio-expected.json" 2>&1; }

trap 'evc_minio_stop 2>/dev/null' EXIT
echo "1..12"

q "ALTER SYSTEM SET evcollector.storage_url = 's3://$EVC_MINIO_BUCKET/$PREFIX'"
q "ALTER SYSTEM SET evcollector.s3_endpoint = '$EVC_MINIO_ENDPOINT'"
q "ALTER SYSTEM SET evcollector.s3_region = '$EVC_MINIO_REGION'"
q "ALTER SYSTEM SET evcollector.s3_access_key = '$EVC_MINIO_KEY'"
set_secret "$EVC_MINIO_SECRET"
ctl create_topic mi_events 2
ctl create_topic mi_images 2

# Archive files and images land under the awkward prefix.
produce -t mi_events -n 2000 -g mi
produce -t mi_images -n 6 -g mimg -i 100000
q "SELECT evc_consumer_create('mi_arch', ARRAY['mi_events'], 'archive', '{\"batch_size\": 500, \"flush_interval\": \"200ms\"}')" >/dev/null
q "SELECT evc_consumer_create('mi_img', ARRAY['mi_images'], 'images', '{\"flush_interval\": \"200ms\"}')" >/dev/null
wait_sql 60 "SELECT coalesce(sum(events), 0) = 2000 FROM evc.archive_files WHERE consumer = 'mi_arch'"
tap $? "the archive sink landed 2000 events in MinIO under the prefix '$PREFIX'" \
	"$(q "SELECT name, landed, last_error FROM evc.consumers")"
wait_sql 60 "SELECT landed = 6 FROM evc.consumers WHERE name = 'mi_img'"
tap $? "the images sink landed 6 images in MinIO" "$(q "SELECT name, landed, last_error FROM evc.consumers")"

expected_json
out=$(pycheck minio)
tap $? "MinIO's Python client lists every object by its exact name and reads it back to its sha256" "$out"
out=$(pycheck boto3)
tap $? "boto3 lists every object by its exact name and reads it back to its sha256" "$out"

# A wrong secret: 403, shown clearly, the secret never shown, nothing lost.
set_secret 'not-the-secret-0123'
produce -t mi_events -n 300 -s 2000 -g mi
wait_sql 30 "SELECT last_error ~ '403|SignatureDoesNotMatch' FROM evc.consumers WHERE name = 'mi_arch'"
tap $? "a wrong secret shows in evc.consumers as MinIO's refusal (403, SignatureDoesNotMatch)" \
	"$(q "SELECT last_error FROM evc.consumers WHERE name = 'mi_arch'")"
seen=$(q "SELECT count(*) FROM evc.consumers WHERE last_error LIKE '%not-the-secret-0123%'")
# PostgreSQL itself logs 'parameter "..." changed to "<value>"' when a reload
# changes any setting (docs/operations.md, Security); nothing of ours may.
logged=$(grep 'not-the-secret-0123' "$EVC_RUN/postgresql.log" | grep -vc 'parameter "evcollector.s3_secret_key" changed to')
tap "$([ "$seen" = 0 ] && [ "$logged" = 0 ] && echo 0 || echo 1)" \
	"the secret appears neither in evc.consumers nor in evcollector's log lines" "view: $seen, log lines: $logged"
tap "$([ "$(q "SELECT sum(events) FROM evc.archive_files WHERE consumer = 'mi_arch'")" = 2000 ] && echo 0 || echo 1)" \
	"nothing landed or was committed while the secret was wrong"
set_secret "$EVC_MINIO_SECRET"
wait_sql 60 "SELECT sum(events) = 2300 FROM evc.archive_files WHERE consumer = 'mi_arch'"
tap $? "once the secret is right, the held events land" \
	"$(q "SELECT name, landed, last_error FROM evc.consumers WHERE name = 'mi_arch'")"

# MinIO SIGKILLed and restarted while batches land.
produce -t mi_events -n 20000 -s 2300 -g mi &
ppid=$!
sleep 0.5
evc_minio_restart -9 >/dev/null 2>&1
wait $ppid
tap $? "20000 more events produced while MinIO was SIGKILLed and restarted"
wait_sql 120 "SELECT sum(events) = 22300 FROM evc.archive_files WHERE consumer = 'mi_arch'"
tap $? "every event landed once MinIO was back: 22300 in the index" \
	"$(q "SELECT name, landed, last_error FROM evc.consumers WHERE name = 'mi_arch'")"
tap "$([ "$(q "SELECT count(*) FROM (SELECT partition, generate_series(first_offset, last_offset) FROM evc.archive_files WHERE consumer = 'mi_arch' GROUP BY 1, 2 HAVING count(*) > 1) d")" = 0 ] && echo 0 || echo 1)" \
	"no offset is in two archive files"
expected_json
out=$(pycheck boto3)
tap $? "after the restart, boto3 reads every indexed archive file back to its sha256" "$out"

q "SELECT evc_consumer_drop('mi_arch'), evc_consumer_drop('mi_img')" >/dev/null
for s in storage_url s3_endpoint s3_region s3_access_key s3_secret_key; do
	q "ALTER SYSTEM RESET evcollector.$s"
done
q "SELECT pg_reload_conf()" >/dev/null
[ $fails -eq 0 ]
