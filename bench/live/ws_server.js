// bench/live/ws_server.js: the baseline, a Node.js `ws` broadcast server
// with the same rooms: clients connect to /v1/live?rooms=a,b; POST /feed
// with one JSON aggregate a line sends each to the sockets of its room.
//
//   node ws_server.js PORT
'use strict';
const http = require('http');
const { WebSocketServer } = require('ws');
const rooms = new Map();
const server = http.createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/feed') { res.writeHead(404); res.end(); return; }
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', () => {
    let n = 0;
    for (const line of body.split('\n')) {
      if (!line) continue;
      const room = JSON.parse(line).room;
      for (const ws of rooms.get(room) || []) { ws.send(line); n++; }
    }
    res.writeHead(200); res.end(String(n));
  });
});
const wss = new WebSocketServer({ server });
wss.on('connection', (ws, req) => {
  const q = new URL(req.url, 'http://x').searchParams;
  const mine = (q.get('rooms') || '').split(',').filter(Boolean);
  for (const r of mine) { if (!rooms.has(r)) rooms.set(r, new Set()); rooms.get(r).add(ws); }
  ws.on('close', () => mine.forEach((r) => rooms.get(r).delete(ws)));
});
// a backlog for 10,000 clients arriving together (Node's default is 511)
server.listen(+process.argv[2], '127.0.0.1', 4096, () => console.log('listening'));
