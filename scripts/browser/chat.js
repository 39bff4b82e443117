// Drives the chat page (examples/chat/index.html) in headless Chromium: alice and bob join
// one room in two tabs and see each other online in #users (from presence: every entry has
// its number of sessions); a second tab of alice counts 2 sessions in bob's #users, 1 again when
// it closes; bob's line (Enter) reaches alice, alice's
// typing shows in bob's #typing and her line (the #send button) reaches bob; carol joins and
// navigates away, then bob closes his tab, and alice sees each leave (a "left" notice in
// #messages, the name gone from #users). With the server keeping history (ASENA_HISTORY), the
// inspector drops alice's socket (code 4000); her page reconnects by itself and shows bob's
// line said while she was away, exactly once. Screenshots go to OUT_DIR: chat.png on success,
// chat-failure-<tab>.png for every tab on failure.
// Usage: node chat.js http://127.0.0.1:PORT/ OUT_DIR INSPECTOR_TOKEN
const { run, texts } = require('./harness');

const [base, outDir, token] = process.argv.slice(2);
if (!base || !outDir || !token) {
  console.error('usage: node chat.js http://127.0.0.1:PORT/ OUT_DIR INSPECTOR_TOKEN');
  process.exit(2);
}
const ROOM = 'lobby';

// The names in #users, sorted.
const users = (page) => page.$$eval('#users > *', (els) => els.map((e) => e.dataset.name).sort());
// The names online, each with a session count (so the list comes from presence).
const hasUsers = (page, names, timeout) => page.waitForFunction(
  (want) => {
    const users = [...document.querySelectorAll('#users > *')];
    return users.every((e) => Number(e.dataset.sessions) >= 1)
      && users.map((e) => e.dataset.name).sort().join(',') === want;
  },
  [...names].sort().join(','), { timeout });
const sessionsOf = (page, name, n) => page.waitForFunction(
  ([user, want]) => document.querySelector(`#users > [data-name="${user}"]`)?.dataset.sessions === want,
  [name, String(n)]);
const hasLine = (page, text, timeout) => page.waitForFunction(
  (want) => [...document.querySelectorAll('#messages > *')].some((e) => e.textContent === want),
  text, { timeout });

run('chat', outDir, async (t) => {
  async function join(page, name) {
    await page.goto(base);
    await page.fill('#username', name);
    await page.fill('#room', ROOM);
    await page.click('#join');
    await page.waitForFunction((room) => document.getElementById('status').textContent === `connected to ${room}`
      && !document.getElementById('message').disabled, ROOM);
  }

  const a = await t.page('alice');
  const b = await t.page('bob');
  await t.step(`alice to join ${ROOM} (#status "connected to ${ROOM}", #message enabled)`, () => join(a, 'alice'));
  await t.step(`bob to join ${ROOM}`, () => join(b, 'bob'));
  await t.step('#users on both tabs to list exactly alice and bob', async () => {
    await hasUsers(a, ['alice', 'bob']);
    await hasUsers(b, ['alice', 'bob']);
  });
  await t.step('alice to see the notice "bob joined" in #messages', () => hasLine(a, 'bob joined'));
  await t.step('a second tab of alice to show 2 sessions of alice in bob\'s #users, 1 once it closed', async () => {
    const a2 = await t.page('alice-2');
    await join(a2, 'alice');
    await sessionsOf(b, 'alice', 2);
    await hasUsers(b, ['alice', 'bob']);
    await a2.close();
    await sessionsOf(b, 'alice', 1);
  });

  await t.step('bob\'s line sent with Enter to reach alice as "bob: hello from bob"', async () => {
    await b.fill('#message', 'hello from bob');
    await b.press('#message', 'Enter');
    await hasLine(a, 'bob: hello from bob');
    await hasLine(b, 'bob: hello from bob');
  });

  await t.step('alice typing in #message to show "alice is typing…" in bob\'s #typing', async () => {
    await a.locator('#message').pressSequentially('hi bob');
    await b.waitForFunction(() => document.getElementById('typing').textContent === 'alice is typing…');
  });
  await t.step('alice\'s line sent with #send to reach bob as "alice: hi bob" and clear his #typing', async () => {
    await a.click('#send');
    await hasLine(b, 'alice: hi bob');
    await b.waitForFunction(() => document.getElementById('typing').textContent === '');
  });

  await t.step('alice dropped by the server to reconnect by herself and get bob\'s line said while she was away, once', async () => {
    const id = await a.$eval('#status', (el) => el.dataset.socketId);
    const res = await fetch(new URL('/_asena/api/disconnect', base), {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ socket: id, code: 4000, reason: 'dropped by the browser test' }),
    });
    if (!res.ok) throw new Error(`disconnect answered ${res.status}: ${await res.text()}`);
    await a.waitForFunction(() => document.getElementById('status').textContent.startsWith('reconnecting'));
    await b.fill('#message', 'said while you were away');
    await b.press('#message', 'Enter');
    await hasLine(b, 'bob: said while you were away');
    await a.waitForFunction((room) => document.getElementById('status').textContent === `connected to ${room}`, ROOM);
    await hasLine(a, 'bob: said while you were away');
    // A line after it: anything twice would have come before it.
    await b.fill('#message', 'and now');
    await b.press('#message', 'Enter');
    await hasLine(a, 'bob: and now');
    const seen = await a.$$eval('#messages > *', (els) => els.filter((e) => e.textContent === 'bob: said while you were away').length);
    if (seen !== 1) throw new Error(`alice shows bob's missed line ${seen} times`);
  });

  const c = await t.page('carol');
  await t.step(`carol to join ${ROOM} and appear in alice's #users`, async () => {
    await join(c, 'carol');
    await hasUsers(a, ['alice', 'bob', 'carol']);
  });
  await t.step('carol navigating away to show "carol left" to alice and drop her from #users', async () => {
    await c.goto('about:blank');
    await hasLine(a, 'carol left');
    await hasUsers(a, ['alice', 'bob']);
  });
  await t.step('bob closing his tab to show "bob left" to alice and leave only alice in #users', async () => {
    await b.close();
    await hasLine(a, 'bob left');
    await hasUsers(a, ['alice']);
  });

  await a.screenshot({ path: `${outDir}/chat.png` });
  console.log('chat: users on alice\'s tab:', JSON.stringify(await users(a)));
  console.log('chat: messages on alice\'s tab:', JSON.stringify(await texts(a, 'messages')));
});
