// Browser test: Debian's Chromium, driven by playwright-core, against the real
// pipeline (wasm host → nisshi → consumer → Redis/MongoDB → web app). Casts votes,
// watches the leaderboard change live (no reload), pages and filters the vote
// log, and saves a screenshot as a test artifact.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { artifacts, brokers, freePort, launchChromium, start, stopAll, waitReady, wasm } from './pipeline.mjs';

after(stopAll);

async function vote(intake, band, n) {
  for (let i = 0; i < n; i++) {
    const res = await fetch(intake, { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: band, album: `${band} Live`, year: '1990', rank: String(i % 10 + 1) }) });
    assert.equal(res.status, 201, await res.text());
  }
}

test('leaderboard updates live, log pages and filters', { timeout: 180_000 }, async () => {
  const id = randomUUID().slice(0, 8);
  const topic = `browser-${id}`;
  execFileSync('nisshi', ['topic', 'create', topic, '--partitions', '2', '--broker', `tcp://${brokers}`]);
  execFileSync('nisshi', ['topic', 'create', `${topic}-dlq`, '--partitions', '1', '--broker', `tcp://${brokers}`]);
  const [http, hostAdmin, consumerAdmin, web] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  const shared = { BANDVOTE_TOPIC: topic, BANDVOTE_REDIS_PREFIX: `browser-${id}:`, BANDVOTE_MONGO_DB: 'bandvote_test', BANDVOTE_MONGO_COLLECTION: `browser_${id}` };
  start('bandvote-host', { ...shared, BANDVOTE_INTAKE_WASM: wasm, BANDVOTE_HTTP_LISTEN: `127.0.0.1:${http}`, BANDVOTE_HOST_ADMIN_LISTEN: `127.0.0.1:${hostAdmin}` });
  start('bandvote-consumer', { ...shared, BANDVOTE_DLQ_TOPIC: `${topic}-dlq`, BANDVOTE_CONSUMER_GROUP: `browser-${id}`, BANDVOTE_CONSUMER_ADMIN_LISTEN: `127.0.0.1:${consumerAdmin}` });
  start('bandvote-web', { ...shared, BANDVOTE_WEB_LISTEN: `127.0.0.1:${web}` });
  await waitReady(`http://127.0.0.1:${hostAdmin}/readyz`);
  await waitReady(`http://127.0.0.1:${consumerAdmin}/readyz`);
  await waitReady(`http://127.0.0.1:${web}/readyz`);
  const intake = `http://127.0.0.1:${http}/`;

  const browser = await launchChromium();
  try {
    const page = await browser.newPage({ viewport: { width: 412, height: 915 } }); // a phone
    await page.goto(`http://127.0.0.1:${web}/`);
    await page.locator('#bands.empty').waitFor(); // clear empty state before any vote

    await vote(intake, 'Alux Nahual', 6);
    await vote(intake, 'Caifanes', 3);
    const count = (band) => page.locator(`#bands .row[data-name="${band}"] b`);
    await assert.doesNotReject(count('Alux Nahual').filter({ hasText: /^6$/ }).waitFor({ timeout: 30_000 }));

    // More votes arrive: the page changes without a reload, quickly.
    const started = Date.now();
    await vote(intake, 'Caifanes', 5);
    await count('Caifanes').filter({ hasText: /^8$/ }).waitFor({ timeout: 30_000 });
    const rows = await page.locator('#bands .row').evaluateAll((els) => els.map((e) => e.dataset.name));
    assert.deepEqual(rows.slice(0, 2), ['Caifanes', 'Alux Nahual'], 'leader changed live');
    console.log(`leaderboard caught up ${Date.now() - started} ms after the votes were acked`);

    // The log: 14 votes so far; 30 make two pages of 20.
    await vote(intake, 'Viernes Verde', 16);
    await page.locator('#pageinfo', { hasText: '30 votes' }).waitFor({ timeout: 30_000 });
    assert.match(await page.locator('#pageinfo').innerText(), /page 1 ·/);
    await page.click('#next');
    await page.locator('#pageinfo', { hasText: 'page 2' }).waitFor();
    assert.equal(await page.locator('#log tr').count(), 10);
    assert.equal(await page.locator('#next').isDisabled(), true, 'the last page has no next');
    await page.fill('#band', 'Caifanes');
    await page.click('#apply');
    await page.locator('#pageinfo', { hasText: '8 votes' }).waitFor();
    assert.equal(await page.locator('#banner').isVisible(), false, 'no error banner');

    mkdirSync(artifacts, { recursive: true });
    await page.click('#apply'); // back to page 1 of the filter
    await page.screenshot({ path: join(artifacts, 'browser-live.png'), fullPage: true });
    console.log(`screenshot: ${join(artifacts, 'browser-live.png')}`);
  } finally {
    await browser.close();
  }
});
