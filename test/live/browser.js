// test/live/browser.js: the /live and /status pages in a real browser:
// Debian's Chromium, driven by playwright-core.  Prints TAP.
//
//   node browser.js URL KEY OUTDIR
//
// The aggregates are made the real way (psql: evc_send, the table sink,
// evc_aggregate, Kafka, the aggregates sink); the page is checked to show a
// new one within 2 s of its landing (evc.aggregates.updated_at).
'use strict';
const { chromium } = require('playwright-core');
const { execFileSync } = require('child_process');
const path = require('path');

const [url, key, outdir] = process.argv.slice(2);
let n = 0, failed = 0;
function ok(cond, name, diag) {
  n++;
  if (!cond) failed++;
  console.log((cond ? 'ok ' : 'not ok ') + n + ' - ' + name);
  if (!cond && diag !== undefined) console.log('# ' + JSON.stringify(diag).slice(0, 2000));
}
function sql(q) {
  return execFileSync('psql', ['-X', '-qAt', '-d', 'evc_test', '-v', 'ON_ERROR_STOP=1', '-c', q], { encoding: 'utf8' }).trim();
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function waitFor(fn, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) { const v = await fn(); if (v) return v; await sleep(50); }
  return null;
}

function land(room, value, at) {
  const before = +sql("SELECT count(*) FROM evc.events WHERE client = 'livetest'");
  sql(`SELECT evc_send('livetest', 'reading', jsonb_build_object('room', '${room}', 'value', ${value}), jsonb_build_object('sent_at', ${at}))`);
  const end = Date.now() + 60000;
  while (Date.now() < end && +sql("SELECT count(*) FROM evc.events WHERE client = 'livetest'") <= before) execFileSync('sleep', ['0.1']);
  sql("SELECT evc_aggregate('1 minute')");
}

(async () => {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] });
  const page = await browser.newPage({ viewport: { width: 1100, height: 700 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  try {
    const rooms = ['page-a', 'page-b'];
    const at = "date_trunc('hour', now()) - interval '4 hours'";
    land(rooms[0], 3, at);
    land(rooms[1], 4, at + " + interval '1 minute'");
    await waitFor(() => sql(`SELECT count(*) >= 4 FROM evc.aggregates WHERE group_key IN ('page-a', 'page-b')`) === 't', 60000);

    await page.goto(`${url}/live?rooms=${rooms.join(',')}&window=1m&key=${encodeURIComponent(key)}`);
    ok(await page.title() === 'evcollector · live rooms', 'GET /live serves the page');
    const connected = await waitFor(() => page.evaluate(() => window.evcLive && window.evcLive.connected), 10000);
    ok(connected, 'the page connects to /v1/live');
    const tiles = await waitFor(async () => (await page.locator('.tile').count()) >= 4, 10000);
    ok(tiles, 'the tiles fill in (2 rooms, count and sum), from the catch-up', await page.locator('.tile').count());
    const shown = await page.locator('.tile[data-room="page-a"] .value').allTextContents();
    ok(shown.includes('3') && shown.includes('1'), "page-a's tiles show its sum (3) and count (1)", shown);

    // a new aggregate: within 2 s of landing
    await page.evaluate(() => {
      // when each tile changes: a new window start or revision on it
      window.evcLive.updates = [];
      new MutationObserver((ms) => ms.forEach((m) => {
        const t = m.target.closest && m.target.closest('.tile');
        if (t) window.evcLive.updates.push({ room: t.dataset.room, start: t.dataset.start, rev: t.dataset.revision, t: Date.now() });
      })).observe(document.getElementById('tiles'), { subtree: true, childList: true, attributes: true, attributeFilter: ['data-revision'] });
    });
    land(rooms[0], 5, at + " + interval '2 minutes'");
    const row = await waitFor(() => {
      const r = sql(`SELECT (extract(epoch FROM updated_at) * 1000)::bigint || ' ' || to_char(window_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS') FROM evc.aggregates WHERE group_key = 'page-a' AND function = 'sum' AND window_start = ${at} + interval '2 minutes'`);
      return r || null;
    }, 60000);
    const [landedMs, start] = (row || '0 x').split(' ');
    const upd = await waitFor(() => page.evaluate((s) => (window.evcLive.updates || []).find((u) => u.room === 'page-a' && (u.start || '').startsWith(s)), start), 5000);
    ok(upd && upd.t - Number(landedMs) <= 2000, `a new aggregate appears within 2 s of landing (${upd ? upd.t - Number(landedMs) : '-'} ms)`, { row, upd });

    // a correction is marked
    land(rooms[0], 100, at + " + interval '2 minutes'");
    const fixed = await waitFor(() => page.evaluate(() => [...document.querySelectorAll('.tile.correction')].some((t) => t.dataset.room === 'page-a' && t.dataset.revision === '2')), 30000);
    ok(fixed, 'a correction (revision 2) is marked on its tile');
    await page.screenshot({ path: path.join(outdir, 'live.png'), fullPage: true });
    ok(true, 'screenshot kept: ' + path.join(outdir, 'live.png'));

    // /status in the same browser
    await page.goto(`${url}/status?key=${encodeURIComponent(key)}`);
    ok(await page.title() === 'evcollector · status', 'GET /status serves the page');
    const polls = await waitFor(() => page.evaluate(() => window.evcStatus && window.evcStatus.polls >= 2 && window.evcStatus.last), 15000);
    ok(polls && Array.isArray(polls.workers) && polls.workers.some((w) => w.kind === 'gateway'),
      '/status reads /v1/status: the workers, the gateway among them', polls && polls.workers);
    const workersText = await page.locator('#workers').textContent();
    ok(/gateway/.test(workersText) && /consumer/.test(workersText), 'the workers table shows the gateway and the consumers', workersText);
    ok(await page.locator('#chart-landed svg polyline').count() === 1, 'the events/s charts draw');
    ok(/pending|empty/.test(await page.locator('#outbox').textContent()), 'the outbox backlog is shown');
    ok((await page.locator('#live').textContent()).includes('sessions') || (await page.locator('#live table').count()) === 1, 'the live rooms section is shown');
    await page.screenshot({ path: path.join(outdir, 'status.png'), fullPage: true });
    ok(errors.length === 0, 'no script errors in either page', errors);
  } catch (e) {
    ok(false, 'the browser run finished', String(e.stack || e));
  }
  await browser.close();
  console.log('1..' + n);
  process.exit(failed ? 1 : 0);
})();
