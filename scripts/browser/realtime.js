// Drives the realtime page (examples/realtime/index.html) in headless Chromium across two
// instances sharing Redis: alice signs in on tab A (instance 1) and tab B (instance 2), bob on
// tab C (instance 2); every tab sees both online (from presence, alice with 2 sessions); a
// second bob tab on instance 1 counts 2 sessions of bob on A and C, 1 again when it closes;
// A's join shows the denied room; a line alice
// says in public-1 reaches bob on the other instance; `emit --user alice --event notification`
// shows in both alice tabs and not in bob's. Screenshots go to OUT_DIR: realtime.png on
// success, realtime-failure-<tab>.png for every tab on failure.
// Usage: EMIT=path/to/emit node realtime.js URL1 URL2 OUT_DIR
// (REALTIME_LOCAL=1 instead of EMIT: one instance, URL1 = URL2, no notification step; the
// script says so.)
const { execFileSync } = require('child_process');
const { run, texts } = require('./harness');

const [url1, url2, outDir] = process.argv.slice(2);
const emit = process.env.EMIT;
const local = process.env.REALTIME_LOCAL === '1';
if (!url1 || !url2 || !outDir || (!emit && !local)) {
  console.error('usage: EMIT=path/to/emit node realtime.js URL1 URL2 OUT_DIR (or REALTIME_LOCAL=1)');
  process.exit(2);
}

const online = (page) => page.$$eval('#online > *', (els) => els.map((e) => e.dataset.user));
const hasText = (page, id, text) => page.waitForFunction(
  ([i, want]) => document.getElementById(i).textContent.includes(want), [id, text]);

run('realtime', outDir, async (t) => {
  async function signIn(page, url, token, user) {
    await page.goto(url);
    await page.fill('#token', token);
    await page.click('#signin');
    await page.waitForFunction((u) => document.getElementById('status').textContent === `signed in as ${u}`, user);
  }

  const a = await t.page('A-alice@1');
  const b = await t.page('B-alice@2');
  const c = await t.page('C-bob@2');
  await t.step('alice to sign in on instance 1 (#status "signed in as alice")', () => signIn(a, url1, 'alice-token', 'alice'));
  await t.step('alice to sign in on instance 2', () => signIn(b, url2, 'alice-token', 'alice'));
  await t.step('bob to sign in on instance 2', () => signIn(c, url2, 'bob-token', 'bob'));

  // #online as `user:sessions,...`.
  const hasOnline = (page, want) => page.waitForFunction((w) => [...document.querySelectorAll('#online > *')]
    .map((e) => `${e.dataset.user}:${e.dataset.sessions}`).join(',') === w, want);
  await t.step('#online on every tab to list alice (2 sessions) and bob (A hears of bob from the other instance)', async () => {
    for (const p of [a, b, c]) await hasOnline(p, 'alice:2,bob:1');
  });
  await t.step('a second bob tab on instance 1 to appear on A (bob:2) and go when it closes', async () => {
    const d = await t.page('D-bob@1');
    await signIn(d, url1, 'bob-token', 'bob');
    await hasOnline(a, 'alice:2,bob:2');
    await hasOnline(c, 'alice:2,bob:2');
    await d.close();
    await hasOnline(a, 'alice:2,bob:1');
    await hasOnline(c, 'alice:2,bob:1');
  });

  await t.step('joining "public-1 secret" on A to show "denied: secret" and #rooms "lobby, public-1"', async () => {
    await a.fill('#room', 'public-1 secret');
    await a.click('#join');
    await hasText(a, 'messages', 'denied: secret');
    await a.waitForFunction(() => document.getElementById('rooms').textContent === 'lobby, public-1');
  });
  await t.step('bob joining public-1 to show #rooms "lobby, public-1"', async () => {
    await c.fill('#room', 'public-1');
    await c.click('#join');
    await c.waitForFunction(() => document.getElementById('rooms').textContent === 'lobby, public-1');
  });

  await t.step('alice\'s line in public-1 (Enter, instance 1) to reach bob on instance 2', async () => {
    await a.fill('#room', 'public-1');
    await a.fill('#message', 'hello bob');
    await a.press('#message', 'Enter');
    await hasText(c, 'messages', '[public-1] alice: hello bob');
  });
  await t.step('bob\'s line in the lobby (#send) to reach both alice tabs', async () => {
    await c.fill('#room', 'lobby');
    await c.fill('#message', 'hi alice');
    await c.click('#send');
    for (const p of [a, b]) await hasText(p, 'messages', '[lobby] bob: hi alice');
  });

  if (emit) {
    await t.step('`emit --user alice --event notification` to show "hello" in both alice tabs', async () => {
      execFileSync(emit, ['--user', 'alice', '--event', 'notification', '--data', '{"message":"hello"}'],
        { stdio: ['ignore', 'inherit', 'inherit'], timeout: 20000 });
      for (const p of [a, b]) await hasText(p, 'notifications', 'hello');
    });
    await t.step('bob\'s tab to get no notification', async () => {
      // The alice tabs already have it, so bob's would have by now.
      await c.waitForTimeout(500);
      const bobs = await texts(c, 'notifications');
      if (bobs.length !== 0) throw new Error(`bob got notifications: ${JSON.stringify(bobs)}`);
    });
  } else {
    console.log('realtime: REALTIME_LOCAL=1: one instance, notification step not run');
  }

  await a.screenshot({ path: `${outDir}/realtime.png` });
  for (const [name, p] of [['A alice@1', a], ['B alice@2', b], ['C bob@2', c]]) {
    console.log(`realtime: ${name}: online ${JSON.stringify(await online(p))}, notifications ${JSON.stringify(await texts(p, 'notifications'))}, messages ${JSON.stringify(await texts(p, 'messages'))}`);
  }
});
