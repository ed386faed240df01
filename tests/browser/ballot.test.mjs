// Browser test of the ballot (/vote): Debian's Chromium, driven by
// playwright-core, against the real pipeline (web app → wasm host → nisshi →
// consumer → Redis/MongoDB) with a contest created by the operator command.
// A fan taps a band through an intake that answers 503 once (the ballot
// retries with the same Idempotency-Key), sees the receipt turn "counted"
// and the results page move; a band taken off the roster and a closed
// contest get their messages; axe-core finds no serious accessibility
// violation; screenshots of the ballot (360 px and desktop) and the receipt
// are saved as artifacts.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createServer as httpServer, request } from 'node:http';
import { mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import { artifacts, brokers, env, freePort, binDir, launchChromium, start, stopAll, waitReady, wasm } from './pipeline.mjs';

const here = dirname(fileURLToPath(import.meta.url));
// A Redis database of its own: the intakes read the one current contest.
const redisUrl = (env.BANDVOTE_REDIS_URL || 'redis://127.0.0.1:6379/').replace(/\/\d*$/, '') + '/9';

const servers = [];
after(() => { stopAll(); servers.forEach((s) => s.close()); });

/// The intake as a flaky venue network shows it: the first vote gets a 503
/// (Retry-After: 1) and never reaches the intake; the second reaches it
/// (the vote is in Kafka) but its answer is lost: a 500 naming the vote;
/// everything else is passed through. Records the keys seen.
function flakyIntake(port, intakePort) {
  const seen = [];
  let posts = 0;
  const server = httpServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'POST') { seen.push(req.headers['idempotency-key']); posts += 1; }
      if (req.method === 'POST' && posts === 1) {
        res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' });
        res.end(JSON.stringify({ error: { status: 503, code: 'overloaded', message: 'intake overloaded; retry after 1s' } }));
        return;
      }
      const lose = req.method === 'POST' && posts === 2;
      const up = request({ host: '127.0.0.1', port: intakePort, path: req.url, method: req.method, headers: req.headers }, (r) => {
        if (lose) {
          r.resume();
          const id = req.headers['idempotency-key'];
          res.writeHead(500, { 'content-type': 'application/json', 'idempotency-key': id });
          res.end(JSON.stringify({ error: { status: 500, code: 'internal', message: 'the answer was lost', vote_id: id } }));
          return;
        }
        res.writeHead(r.statusCode, r.headers);
        r.pipe(res);
      });
      up.on('error', () => { res.writeHead(502); res.end(); });
      up.end(Buffer.concat(chunks));
    });
  }).listen(port, '127.0.0.1');
  servers.push(server);
  return seen;
}

test('a fan votes on /vote and the receipt turns counted', { timeout: 240_000 }, async () => {
  const id = randomUUID().slice(0, 8);
  const topic = `ballot-${id}`;
  execFileSync('nisshi', ['topic', 'create', topic, '--partitions', '2', '--broker', `tcp://${brokers}`]);
  execFileSync('nisshi', ['topic', 'create', `${topic}-dlq`, '--partitions', '1', '--broker', `tcp://${brokers}`]);
  execFileSync('redis-cli', ['-u', redisUrl, 'FLUSHDB']);
  const [http, hostAdmin, consumerAdmin, web, flaky] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
  // A short idempotency window: `contest certify` waits it out after the close.
  const shared = { BANDVOTE_TOPIC: topic, BANDVOTE_REDIS_URL: redisUrl, BANDVOTE_MONGO_DB: 'bandvote_test', BANDVOTE_MONGO_COLLECTION: `ballot_${id}`,
    BANDVOTE_IDEMPOTENCY_WINDOW_SECS: '5' };
  const admin = (...args) => execFileSync(join(binDir, 'bandvote-consumer'), ['contest', ...args], { env: { ...env, ...shared, RUST_LOG: 'warn' } }).toString();
  admin('create', '--id', `ballot-${id}`, '--title', 'Festival de Bandas', '--roster', 'Alux Nahual,Bohemia Suburbana,Viernes Verde',
    '--votes-per-voter', '1', '--voters', 'id', '--open-for-secs', '3600');
  start('bandvote-host', { ...shared, BANDVOTE_INTAKE_WASM: wasm, BANDVOTE_HTTP_LISTEN: `127.0.0.1:${http}`, BANDVOTE_HOST_ADMIN_LISTEN: `127.0.0.1:${hostAdmin}`,
    BANDVOTE_IDEMPOTENCY_REDIS_URL: redisUrl, BANDVOTE_CONTEST_POLL_MS: '200' });
  start('bandvote-consumer', { ...shared, BANDVOTE_DLQ_TOPIC: `${topic}-dlq`, BANDVOTE_CONSUMER_GROUP: `ballot-${id}`, BANDVOTE_CONSUMER_ADMIN_LISTEN: `127.0.0.1:${consumerAdmin}` });
  start('bandvote-web', { ...shared, BANDVOTE_WEB_LISTEN: `127.0.0.1:${web}`, BANDVOTE_WEB_INTAKE_URL: `http://127.0.0.1:${flaky}/` });
  const keys = flakyIntake(flaky, http);
  await waitReady(`http://127.0.0.1:${hostAdmin}/readyz`);
  await waitReady(`http://127.0.0.1:${consumerAdmin}/readyz`);
  await waitReady(`http://127.0.0.1:${web}/readyz`);
  await new Promise((r) => setTimeout(r, 500)); // the host has read the contest

  const browser = await launchChromium();
  mkdirSync(artifacts, { recursive: true });
  const ballotUrl = `http://127.0.0.1:${web}/vote`;
  try {
    // A phone, in Spanish (Accept-Language).
    const phone = await browser.newContext({ viewport: { width: 360, height: 740 }, locale: 'es-GT', extraHTTPHeaders: { 'accept-language': 'es-GT,es;q=0.9' } });
    const page = await phone.newPage();
    await page.goto(ballotUrl);
    await page.locator('#roster button.band').first().waitFor();
    assert.equal(await page.locator('#roster button.band').count(), 3);
    assert.equal(await page.locator('html').getAttribute('lang'), 'es');
    await page.locator('#state', { hasText: 'La votación está abierta' }).waitFor();
    assert.match(await page.locator('#countdown').innerText(), /Cierra en/);
    const width = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 360, `no horizontal scroll at 360 px (${width})`);

    // Accessibility: axe-core finds no serious or critical violation.
    await page.addScriptTag({ path: join(here, 'node_modules/axe-core/axe.min.js') });
    const axe = await page.evaluate(async () => (await window.axe.run(document, { resultTypes: ['violations'] })).violations
      .map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length })));
    const serious = axe.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    assert.deepEqual(serious, [], `axe: ${JSON.stringify(axe)}`);
    console.log(`axe: ${axe.length} violations, none serious (${JSON.stringify(axe)})`);
    await page.screenshot({ path: join(artifacts, 'ballot-360.png'), fullPage: true });

    // Keyboard: the first band is reachable with Tab and labelled.
    await page.keyboard.press('Tab');
    await page.keyboard.press('Tab');
    assert.match(await page.evaluate(() => document.activeElement.getAttribute('aria-label') || document.activeElement.textContent), /\S/);

    // The vote: the intake answers 503 once, then takes the vote and answers
    // 500; the ballot retries with the same key until its 201.
    await page.getByRole('button', { name: 'Votar por Viernes Verde' }).click();
    await page.locator('#receipt-status[data-status="counted"]').waitFor({ timeout: 60_000 });
    assert.match(await page.locator('#receipt-status').innerText(), /Contado/);
    assert.ok(keys.length >= 3 && keys[0] && keys.every((k) => k === keys[0]), `one key on every retry: ${keys}`);
    await page.screenshot({ path: join(artifacts, 'ballot-receipt.png'), fullPage: true });
    const contest = await (await fetch(`http://127.0.0.1:${web}/api/contest`)).json();
    assert.equal(contest.tally.counted, 1, 'counted once despite the retry');
    const applied = Object.values(contest.tally.by_status || {}).reduce((a, b) => a + b, 0);
    assert.ok(applied <= 1, `one vote stored, not two (statuses ${JSON.stringify(contest.tally.by_status)})`);
    assert.equal(contest.tally.bands.find((b) => b.name === 'Viernes Verde').votes, 1);

    // The results page shows the contest's leaderboard with the vote.
    const results = await phone.newPage();
    await results.goto(`http://127.0.0.1:${web}/`);
    await results.locator('#contest-bands .row[data-name="Viernes Verde"] b', { hasText: /^1$/ }).waitFor({ timeout: 30_000 });
    await results.close();

    // Desktop, in English by the switch.
    const desk = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await desk.goto(ballotUrl);
    await desk.locator('#roster button.band').first().waitFor();
    if ((await desk.locator('html').getAttribute('lang')) === 'es') await desk.click('#lang');
    await desk.locator('#state', { hasText: 'Voting is open' }).waitFor();
    await desk.screenshot({ path: join(artifacts, 'ballot-desktop.png'), fullPage: true });

    // A voter token in the link leaves the address bar (history, Referer) at once.
    const linked = await browser.newPage();
    await linked.goto(`${ballotUrl}?token=ticket-0001.99.secret&lang=en`);
    await linked.locator('#roster button.band').first().waitFor();
    assert.equal(await linked.evaluate(() => location.search), '?lang=en');
    assert.equal(await linked.evaluate(() => sessionStorage.getItem('bandvote_token')), 'ticket-0001.99.secret');
    await linked.close();

    // A band taken off the roster after the page drew it: the intake's 422 in words.
    // (A contest is never redefined under its id: the smaller roster is a new contest; the
    // page, which has not heard of it yet, still shows the old roster.)
    await desk.route('**/api/contest', (route) => route.abort());
    admin('create', '--id', `ballot-${id}-b`, '--title', 'Festival de Bandas', '--roster', 'Bohemia Suburbana,Viernes Verde',
      '--votes-per-voter', '1', '--voters', 'id', '--open-for-secs', '3600');
    await new Promise((r) => setTimeout(r, 1000));
    await desk.getByRole('button', { name: 'Vote for Alux Nahual' }).click();
    await desk.locator('#result', { hasText: 'is not in this contest' }).waitFor({ timeout: 30_000 });
    await desk.unroute('**/api/contest');

    // A vote in this contest, whose receipt the ballot will prove itself once it is certified.
    const voter = await browser.newPage();
    await voter.goto(`${ballotUrl}?lang=en`);
    await voter.getByRole('button', { name: 'Vote for Viernes Verde' }).click();
    await voter.locator('#receipt-status[data-status="counted"]').waitFor({ timeout: 60_000 });

    // Closed: the intake's 403 in words (a ballot that has not yet heard of the close).
    await desk.route('**/api/contest', (route) => route.abort());
    admin('close', '--in-ms', '0');
    await new Promise((r) => setTimeout(r, 1000));
    await desk.getByRole('button', { name: 'Vote for Bohemia Suburbana' }).click();
    await desk.locator('#result', { hasText: 'Voting is closed' }).waitFor({ timeout: 30_000 });
    await desk.unroute('**/api/contest');
    // After a reload the ballot knows: closed, and the band buttons are disabled.
    await desk.reload();
    await desk.locator('#state', { hasText: /closed|cerró/ }).waitFor();
    assert.equal(await desk.locator('#roster button.band').first().isDisabled(), true);

    // Certified: the results page shows the final result and its digest.
    const certified = admin('certify', '--wait-secs', '60');
    const digest = certified.match(/digest ([0-9a-f]{64})/)[1];
    const final = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await final.goto(`http://127.0.0.1:${web}/`);
    await final.locator('#contest-digest', { hasText: digest }).waitFor({ timeout: 30_000 });
    // ... and the bulletin's root, with the link that downloads it.
    const root = JSON.parse(certified.slice(certified.indexOf('{'), certified.lastIndexOf('}') + 1)).bulletin_root;
    await final.locator('#contest-root', { hasText: root }).waitFor({ timeout: 30_000 });
    const href = await final.locator('#contest-bulletin-link').getAttribute('href');
    const download = await fetch(new URL(href, `http://127.0.0.1:${web}/`));
    assert.equal(download.headers.get('x-bulletin-root'), root);
    assert.ok((await download.text()).split('\n').filter(Boolean).length >= 1, 'the bulletin has the certified vote');
    await final.screenshot({ path: join(artifacts, 'results-contest.png'), fullPage: true });
    // The receipt proves its vote is in the certified bulletin, checked in the
    // browser (Web Crypto) against the root; the same proof fails against
    // another root or as another contest's vote.
    await voter.locator('#receipt-proof[data-proof="ok"]').waitFor({ timeout: 30_000 });
    assert.match(await voter.locator('#receipt-proof').innerText(), /In the certified result ✓/);
    const checks = await voter.evaluate(async () => {
      const voteId = document.getElementById('receipt-id').textContent;
      const r = await (await fetch('api/receipt/' + encodeURIComponent(voteId))).json();
      const otherRoot = { ...r.bulletin, root: '00'.repeat(32) };
      return [await proofHolds(voteId, r.contest, r.bulletin), await proofHolds(voteId, r.contest, otherRoot), await proofHolds(voteId, 'another-contest', r.bulletin)];
    });
    assert.deepEqual(checks, [true, false, false], 'the proof holds only against its own root and contest');
    await voter.screenshot({ path: join(artifacts, 'ballot-proof.png'), fullPage: true });
    console.log(`screenshots: ${['ballot-360.png', 'ballot-receipt.png', 'ballot-desktop.png', 'results-contest.png'].map((f) => join(artifacts, f)).join(' ')}`);
  } finally {
    await browser.close();
  }
});
