// Drives the realtime page in headless Chromium across two instances sharing Redis: alice
// signs in on tab A (instance 1) and tab B (instance 2), bob on tab C (instance 2); every tab
// sees both online; A's join shows the denied room; a line alice says in public-1 reaches bob
// on the other instance; `emit --user alice --event notification` shows in both alice tabs
// and not in bob's.
// Usage: EMIT=path/to/emit node realtime.js URL1 URL2 SCREENSHOT.png
// (EMIT unset: one instance, URL1 = URL2, and the notification step is skipped.)
const { chromium } = require('playwright-core');
const { execFileSync } = require('child_process');
const [url1, url2, shot] = process.argv.slice(2);
const emit = process.env.EMIT;
const T = { timeout: 10000 };

async function signIn(page, url, token, user) {
  await page.goto(url);
  await page.fill('#token', token);
  await page.click('#signin');
  await page.waitForFunction((u) => document.getElementById('status').textContent === `signed in as ${u}`, user, T);
}

const online = (page) => page.$$eval('#online > *', (els) => els.map((e) => e.dataset.user));
const texts = (page, list) => page.$$eval(`#${list} > *`, (els) => els.map((e) => e.textContent));

(async () => {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium',
    args: ['--headless','--no-sandbox','--disable-gpu','--disable-quic','--no-first-run','--disable-background-networking','--disable-component-update','--disable-sync'] });
  const a = await browser.newPage(); const b = await browser.newPage(); const c = await browser.newPage();
  for (const p of [a, b, c]) p.on('pageerror', (e) => console.error('page error:', e.message));
  await signIn(a, url1, 'alice-token', 'alice');
  await signIn(b, url2, 'alice-token', 'alice');
  await signIn(c, url2, 'bob-token', 'bob');

  // Presence: everyone sees alice and bob (A hears of bob from the other instance).
  for (const p of [a, b, c]) {
    await p.waitForFunction(() => {
      const users = [...document.querySelectorAll('#online > *')].map((e) => e.dataset.user);
      return users.join(',') === 'alice,bob';
    }, null, T);
  }

  // Rooms: public-1 joins, secret is denied and shown.
  await a.fill('#room', 'public-1 secret'); await a.click('#join');
  await a.waitForFunction(() => document.getElementById('messages').textContent.includes('denied: secret'), null, T);
  await a.waitForFunction(() => document.getElementById('rooms').textContent === 'lobby, public-1', null, T);
  await c.fill('#room', 'public-1'); await c.click('#join');
  await c.waitForFunction(() => document.getElementById('rooms').textContent === 'lobby, public-1', null, T);

  // Chat: alice (instance 1) to public-1 reaches bob (instance 2); Enter sends.
  await a.fill('#room', 'public-1');
  await a.fill('#message', 'hello bob'); await a.press('#message', 'Enter');
  await c.waitForFunction(() => document.getElementById('messages').textContent.includes('[public-1] alice: hello bob'), null, T);
  // bob answers in the lobby with the button: both alice tabs get it.
  await c.fill('#room', 'lobby');
  await c.fill('#message', 'hi alice'); await c.click('#send');
  for (const p of [a, b]) {
    await p.waitForFunction(() => document.getElementById('messages').textContent.includes('[lobby] bob: hi alice'), null, T);
  }

  if (emit) {
    // A notification for alice from a process that serves nothing.
    execFileSync(emit, ['--user', 'alice', '--event', 'notification', '--data', '{"message":"hello"}'],
      { stdio: ['ignore', 'inherit', 'inherit'], timeout: 20000 });
    for (const p of [a, b]) {
      await p.waitForFunction(() => document.getElementById('notifications').textContent.includes('hello'), null, T);
    }
    // bob's tab got nothing (the alice tabs already did, so it would have by now).
    await c.waitForTimeout(500);
    const bobs = await texts(c, 'notifications');
    if (bobs.length !== 0) throw new Error(`bob got notifications: ${JSON.stringify(bobs)}`);
  } else {
    console.log('EMIT unset: notification step skipped');
  }

  await a.screenshot({ path: shot });
  for (const [name, p] of [['A alice@1', a], ['B alice@2', b], ['C bob@2', c]]) {
    console.log(`${name}: online ${JSON.stringify(await online(p))}, notifications ${JSON.stringify(await texts(p, 'notifications'))}, messages ${JSON.stringify(await texts(p, 'messages'))}`);
  }
  await browser.close();
})().catch((e) => { console.error(e); process.exit(1); });
