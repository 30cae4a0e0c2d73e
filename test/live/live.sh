# test/live/live.sh: the live rooms end to end (issue 17).  Sourced by
# test/run with test/lib.sh and test/gateway/lib.sh; prints TAP.
#
#   - the packet codec's unit tests (.build/bin/live-packet-test);
#   - python-socketio, once with default options (polling, then the upgrade)
#     and once WebSocket only: every seed event, auth, a reconnect with
#     catch-up (sio_test.py seed);
#   - malformed input, oversized frames, a client that never answers pings
#     (sio_test.py bad); a client that overflows its queue (sio_test.py slow);
#   - LIVE_CROWD concurrent clients (default 1000) on 100 rooms
#     (sio_test.py crowd);
#   - the /live and /status pages in Chromium (browser.js); screenshots in
#     .build/live.
. "$EVC_ROOT/test/live/lib.sh"

live_tap() {
	local name=$1
	shift
	local out rc
	out=$("$@" 2>&1)
	rc=$?
	# renumber each part's TAP into one stream
	echo "$out" | awk -v name="$name" -v base="$LIVE_N" '
		/^ok [0-9]+/ { n++; sub(/^ok [0-9]+/, "ok " base + n " [" name "]"); print; next }
		/^not ok [0-9]+/ { n++; sub(/^not ok [0-9]+/, "not ok " base + n " [" name "]"); print; next }
		/^1\.\./ { next }
		{ print "# " $0 }'
	LIVE_N=$((LIVE_N + $(echo "$out" | grep -cE '^(not )?ok [0-9]+')))
	if [ $rc -ne 0 ] && ! echo "$out" | grep -q '^not ok'; then
		LIVE_N=$((LIVE_N + 1))
		echo "not ok $LIVE_N [$name] exited with status $rc"
	fi
}

LIVE_N=0
live_tap codec "$EVC_ROOT/.build/bin/live-packet-test"
if ! live_venv_install || ! gw_start || ! live_setup; then
	echo "not ok $((LIVE_N + 1)) - setup: the gateway, the socket.io clients or the pipeline"
	curl -sv --max-time 3 "$GW_URL/healthz" 2>&1 | tail -8 | sed 's/^/# /'
	grep -E 'gateway|live|terminated' "$EVC_RUN/postgresql.log" | tail -10 | sed 's/^/# /'
	echo "1..$((LIVE_N + 1))"
	return 1 2>/dev/null || exit 1
fi
live_tap seed-default timeout 300 "$LIVE_PY" "$LIVE_DIR/sio_test.py" seed "$GW_URL" "$LIVE_KEY" default
live_tap seed-websocket timeout 300 "$LIVE_PY" "$LIVE_DIR/sio_test.py" seed "$GW_URL" "$LIVE_KEY" websocket
live_tap plain timeout 120 "$LIVE_PY" "$LIVE_DIR/sio_test.py" plain "$GW_URL" "$LIVE_KEY"
live_tap bad timeout 300 "$LIVE_PY" "$LIVE_DIR/sio_test.py" bad "$GW_URL" "$LIVE_KEY" 65536
live_tap browser timeout 300 node "$LIVE_DIR/browser.js" "$GW_URL" "$LIVE_KEY" "$EVC_ROOT/.build/live"
psql -X -q -d evc_test -c "ALTER SYSTEM SET evcollector.live_queue_max = 10" -c "SELECT pg_reload_conf()" >/dev/null
live_tap slow timeout 120 "$LIVE_PY" "$LIVE_DIR/sio_test.py" slow "$GW_URL" "$LIVE_KEY" 10
psql -X -q -d evc_test -c "ALTER SYSTEM RESET evcollector.live_queue_max" -c "SELECT pg_reload_conf()" >/dev/null
# a thousand Python clients on a shared machine answer pings late: the
# heartbeat of the crowd is the default's, not the 1 s of the checks above
psql -X -q -d evc_test -c "ALTER SYSTEM SET evcollector.live_ping_interval = '25s'" \
	-c "ALTER SYSTEM SET evcollector.live_ping_timeout = '20s'" -c "SELECT pg_reload_conf()" >/dev/null
live_tap crowd timeout 600 "$LIVE_PY" "$LIVE_DIR/sio_test.py" crowd "$GW_URL" "$LIVE_KEY" "${LIVE_CROWD:-1000}" 100
# the gateway's own lines, for a failure's post-mortem
grep -E 'gateway|live' "$EVC_RUN/postgresql.log" >"$EVC_ROOT/.build/live/gateway.log" 2>/dev/null
echo "1..$LIVE_N"
