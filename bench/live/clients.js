// bench/live/clients.js: N WebSocket clients over R rooms (client i joins
// room i % R), each counting what it receives.
//
//   node clients.js WS_URL_PREFIX N R EXPECTED OUT [TIMEOUT_S]
//
// WS_URL_PREFIX is the URL up to "rooms=", e.g.
// ws://127.0.0.1:8080/v1/live?window=1m&rooms=  Prints "ready" once every
// client is open, then waits for EXPECTED messages in all (or the timeout)
// and writes to OUT: {deliveries, first, last, cpu_ms, keys: {key: last
// receipt ms}} where key is room|function|start|revision and cpu_ms the CPU
// time the clients used from the first receipt on.
'use strict';
const WebSocket = require('ws');
const fs = require('fs');
const [prefix, n, r, expected, out, timeoutS] = process.argv.slice(2);
const N = +n, R = +r, EXPECTED = +expected;
const keys = new Map();
let deliveries = 0, first = 0, last = 0, open = 0, done = false, cpu0 = null;

function finish() {
  if (done) return;
  done = true;
  const c = cpu0 ? process.cpuUsage(cpu0) : { user: 0, system: 0 };
  const cpu_ms = Math.round((c.user + c.system) / 1000);
  fs.writeFileSync(out, JSON.stringify({ deliveries, first, last, cpu_ms, keys: Object.fromEntries(keys) }));
  process.exit(0);
}
function onMessage(data) {
  const t = Date.now();
  const a = JSON.parse(data);
  if (a.error) { console.error('error: ' + a.error.code + ' ' + a.error.message); return; }
  const k = a.room + '|' + a.function + '|' + a.start.slice(0, 19) + '|' + a.revision;
  keys.set(k, t);
  if (!first) { first = t; cpu0 = process.cpuUsage(); }
  last = t;
  if (++deliveries >= EXPECTED) finish();
}
let i = 0;
function openBatch() {
  for (let b = 0; b < 200 && i < N; b++, i++) {
    const ws = new WebSocket(prefix + 'bench-' + (i % R));
    ws.on('open', () => { if (++open === N) { console.log('ready'); setTimeout(finish, (+timeoutS || 120) * 1000); } });
    ws.on('message', onMessage);
    ws.on('error', (e) => { console.error('socket error: ' + e.message); });
    ws.on('close', () => { if (!done && open < N) console.error('closed before all were open'); });
  }
  if (i < N) setTimeout(openBatch, 20);
}
setInterval(() => { if (open < N) console.error('open ' + open + ' of ' + N); }, 5000).unref();
openBatch();
