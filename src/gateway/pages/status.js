// /status: evcollector's own view, from GET /v1/status (the views SQL users
// read: evc.workers, evc.stats, evc.outbox_status, evc.consumer_lag,
// evc.dead_letters, evc.archive_files, evc.images), every 2 seconds.
(function () {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const POINTS = 60;
  const history = { sent: [], delivered: [], landed: [], pushed: [] };
  let prev = null;
  window.evcStatus = { polls: 0, last: null };
  $('key').value = new URLSearchParams(location.search).get('key') || localStorage.getItem('evc.key') || '';

  function esc(v) {
    return String(v ?? '').replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));
  }
  function table(rows, cols, empty) {
    if (!rows || rows.length === 0) return '<p class="empty">' + esc(empty) + '</p>';
    return '<table><tr>' + cols.map((c) => '<th>' + esc(c.title || c.key) + '</th>').join('') + '</tr>' +
      rows.map((r) => '<tr>' + cols.map((c) => {
        const v = r[c.key];
        const html = c.link && r[c.link] ? '<a href="' + esc(r[c.link]) + '">' + esc(v) + '</a>' : esc(v);
        return '<td' + (c.err && v ? ' class="err"' : '') + '>' + html + '</td>';
      }).join('') + '</tr>').join('') + '</table>';
  }
  function chart(name, value) {
    const h = history[name];
    h.push(value);
    while (h.length > POINTS) h.shift();
    const el = $('chart-' + name);
    el.querySelector('.now').textContent = value.toFixed(value < 10 ? 1 : 0);
    const max = Math.max(1, ...h);
    el.querySelector('svg').innerHTML = '<polyline points="' +
      h.map((v, i) => ((i * 100) / (POINTS - 1)).toFixed(1) + ',' + (34 - (v * 32) / max).toFixed(1)).join(' ') + '"/>';
  }
  function totals(st) {
    const t = (st.stats || []).find((r) => r.kind === 'total') || {};
    return { at: Date.parse(st.at), sent: +t.sent || 0, delivered: +t.delivered || 0, landed: +t.landed || 0,
             pushed: +(st.live || {}).pushed || 0 };
  }
  function render(st) {
    const now = totals(st);
    if (prev && now.at > prev.at) {
      const secs = (now.at - prev.at) / 1000;
      for (const k of ['sent', 'delivered', 'landed', 'pushed']) chart(k, Math.max(0, (now[k] - prev[k]) / secs));
    }
    prev = now;
    $('workers').innerHTML = table(st.workers, [{ key: 'kind' }, { key: 'name' }, { key: 'pid' }, { key: 'starts' },
      { key: 'last_error', title: 'last error', err: true }, { key: 'last_error_at', title: 'at' }], 'no workers');
    const o = st.outbox || {};
    $('outbox').innerHTML = table([o], [{ key: 'pending' }, { key: 'failing' }, { key: 'oldest' },
      { key: 'bytes' }, { key: 'last_error', title: 'last error', err: true }], 'empty');
    $('lag').innerHTML = table(st.lag, Object.keys((st.lag || [])[0] || {}).map((k) => ({ key: k })), 'no consumers');
    $('live').innerHTML = table([st.live || {}], [{ key: 'sessions' }, { key: 'pushed' }, { key: 'dropped_slow', title: 'dropped (slow)' },
      { key: 'ring_records', title: 'ring records' }, { key: 'ring_lost', title: 'ring laps' }], '');
    $('dead_letters').innerHTML = table(st.dead_letters, [{ key: 'created_at', title: 'at' }, { key: 'source' },
      { key: 'topic' }, { key: 'error', title: 'reason', err: true }, { key: 'attempts' }], 'none');
    $('archive_files').innerHTML = table(st.archive_files, [{ key: 'object_key', title: 'object', link: 'url' },
      { key: 'events' }, { key: 'bytes' }, { key: 'created_at', title: 'at' }], 'none yet');
    $('images').innerHTML = table(st.images, [{ key: 'object_key', title: 'object', link: 'url' },
      { key: 'content_type', title: 'type' }, { key: 'bytes' }, { key: 'created_at', title: 'at' }], 'none yet');
  }
  async function poll() {
    const key = $('key').value.trim();
    try {
      const r = await fetch('/v1/status', { headers: key ? { Authorization: 'Bearer ' + key } : {} });
      const body = await r.json();
      if (!r.ok) throw new Error((body.error && body.error.message) || r.status);
      render(body);
      window.evcStatus.polls++;
      window.evcStatus.last = body;
      $('state').className = 'state on';
      $('state').textContent = 'updated ' + new Date().toLocaleTimeString();
    } catch (e) {
      $('state').className = 'state off';
      $('state').textContent = String(e.message || e);
    }
    setTimeout(poll, 2000);
  }
  $('controls').addEventListener('submit', (e) => { e.preventDefault(); localStorage.setItem('evc.key', $('key').value.trim()); });
  poll();
})();
