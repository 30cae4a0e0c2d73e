// /live: rooms' aggregates over the plain WebSocket /v1/live.
// One tile per series (room, client, event, function); a sparkline of its
// recent windows; a mark when a correction (a higher revision of a window
// already shown) arrives.  On a reconnect the page passes the latest window
// start it saw as since=..., and the gateway sends what it missed first.
(function () {
  'use strict';
  const SPARK = 30;
  const $ = (id) => document.getElementById(id);
  const series = new Map();           // key -> {el, windows: Map(start -> agg)}
  let ws = null, wanted = null, lastStart = null, retry = 0;
  window.evcLive = { received: 0, corrections: 0, last: null, connected: false };

  const params = new URLSearchParams(location.search);
  $('rooms').value = params.get('rooms') || localStorage.getItem('evc.rooms') || '';
  $('window').value = params.get('window') || localStorage.getItem('evc.window') || '1m';
  $('key').value = params.get('key') || localStorage.getItem('evc.key') || '';

  function setState(on, text) {
    $('state').className = 'state ' + (on ? 'on' : 'off');
    $('state').textContent = text;
    window.evcLive.connected = on;
  }

  function tileFor(a) {
    const key = [a.room, a.client, a.event, a.function].join('\u0000');
    let s = series.get(key);
    if (s) return s;
    const el = document.createElement('div');
    el.className = 'tile';
    el.dataset.room = a.room;
    el.innerHTML = '<span class="corrected">corrected</span><div class="room"></div><div class="what"></div>' +
      '<div class="value"></div><svg class="spark" viewBox="0 0 100 36" preserveAspectRatio="none"></svg><div class="meta"></div>';
    el.querySelector('.room').textContent = a.room;
    el.querySelector('.what').textContent = a.client + ' · ' + a.event + ' · ' + a.function;
    $('empty')?.remove();
    $('tiles').appendChild(el);
    s = { el, windows: new Map() };
    series.set(key, s);
    return s;
  }

  function spark(svg, points) {
    const vals = points.map((p) => Number(p.value));
    const min = Math.min(...vals), max = Math.max(...vals), span = max - min || 1;
    const x = (i) => (points.length === 1 ? 50 : (i * 100) / (points.length - 1));
    const y = (v) => 33 - ((v - min) * 30) / span;
    let html = '<polyline points="' + vals.map((v, i) => x(i).toFixed(1) + ',' + y(v).toFixed(1)).join(' ') + '"/>';
    points.forEach((p, i) => { if (p.revision > 1) html += '<circle class="fix" r="2" cx="' + x(i).toFixed(1) + '" cy="' + y(vals[i]).toFixed(1) + '"/>'; });
    svg.innerHTML = html;
  }

  function onAggregate(a) {
    const s = tileFor(a);
    const had = s.windows.get(a.start);
    if (had && had.revision >= a.revision) return;     // an older or repeated revision
    s.windows.set(a.start, a);
    const starts = [...s.windows.keys()].sort();
    while (starts.length > SPARK) s.windows.delete(starts.shift());
    const latest = s.windows.get(starts[starts.length - 1]);
    const correction = !!had || a.revision > 1;
    s.el.querySelector('.value').textContent = latest.value;
    s.el.querySelector('.meta').textContent = 'window ' + latest.start.replace('T', ' ').replace(/\.\d+Z$/, 'Z') +
      ' · count ' + latest.count + ' · rev ' + latest.revision;
    s.el.dataset.start = latest.start;
    s.el.dataset.revision = String(latest.revision);
    s.el.dataset.value = String(latest.value);
    s.el.classList.toggle('correction', correction);
    s.el.classList.remove('flash'); void s.el.offsetWidth; s.el.classList.add('flash');
    spark(s.el.querySelector('svg'), starts.map((k) => s.windows.get(k)));
    if (!lastStart || a.start > lastStart) lastStart = a.start;
    window.evcLive.received++;
    if (correction) window.evcLive.corrections++;
    window.evcLive.last = a;
  }

  function connect() {
    if (!wanted) return;
    const q = new URLSearchParams({ rooms: wanted.rooms, window: wanted.window });
    if (wanted.key) q.set('token', wanted.key);
    // first connect: the recent windows, so the sparklines start full
    const secs = parseInt(wanted.window, 10) * ({ s: 1, m: 60, h: 3600 }[wanted.window.slice(-1)] || 60);
    q.set('since', lastStart || new Date(Date.now() - SPARK * secs * 1000).toISOString());
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    ws = new WebSocket(proto + '//' + location.host + '/v1/live?' + q);
    setState(false, 'connecting…');
    ws.onopen = () => { retry = 0; setState(true, 'live: ' + wanted.rooms + ' · ' + wanted.window); };
    ws.onmessage = (m) => {
      const msg = JSON.parse(m.data);
      if (msg.error) { setState(false, msg.error.code + ': ' + msg.error.message); return; }
      onAggregate(msg);
    };
    ws.onclose = () => {
      setState(false, 'disconnected, retrying…');
      ws = null;
      setTimeout(connect, Math.min(10000, 500 * 2 ** retry++));
    };
  }

  $('controls').addEventListener('submit', (e) => {
    e.preventDefault();
    wanted = { rooms: $('rooms').value.replace(/\s+/g, ''), window: $('window').value, key: $('key').value.trim() };
    localStorage.setItem('evc.rooms', wanted.rooms);
    localStorage.setItem('evc.window', wanted.window);
    localStorage.setItem('evc.key', wanted.key);
    series.clear();
    $('tiles').innerHTML = '';
    lastStart = null;
    if (ws) { ws.onclose = null; ws.close(); }
    connect();
  });
  if (params.get('rooms')) $('controls').requestSubmit();
})();
