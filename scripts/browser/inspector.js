// Drives the live inspector (/_asena) of the chat example in headless Chromium: without the
// token the page is the login form (401), a token in the URL is refused (400) and a wrong one
// is refused by the form; signed in with the form (an HttpOnly cookie), the inspector's feed
// goes live and shows the one
// instance with alice's and bob's sockets, each in the room they joined, with their data (name
// and room, as the chat shows it) and no request pending; the charts of the last minutes draw
// lines of samples (connections reaching 2); the rooms table counts 2 present in the room, and a
// click on it lists alice and bob from presence; a click takes bob out of the room (his row,
// the rooms table and the presence list show it); a click disconnects alice: her row goes,
// her chat tab says "disconnected (1000)", and the fleet counts one socket. Screenshots go to
// OUT_DIR: inspector.png on success, inspector-failure-<tab>.png for every tab on failure.
// Usage: node inspector.js http://127.0.0.1:PORT/ TOKEN OUT_DIR
const { run } = require('./harness');

const [base, token, outDir] = process.argv.slice(2);
if (!base || !token || !outDir) {
  console.error('usage: node inspector.js http://127.0.0.1:PORT/ TOKEN OUT_DIR');
  process.exit(2);
}
const ROOM = 'lobby';
const inspectorUrl = `${base}_asena`;

// The socket ids in the inspector's #sockets table, sorted.
const rows = (page) => page.$$eval('#sockets > tr', (els) => els.map((e) => e.dataset.socket).sort());
const hasRows = (page, ids) => page.waitForFunction(
  (want) => [...document.querySelectorAll('#sockets > tr')].map((e) => e.dataset.socket).sort().join(',') === want,
  [...ids].sort().join(','));
const roomsOf = (page, id) => page.$$eval(`#sockets > tr[data-socket="${id}"] .rooms button.leave`,
  (els) => els.map((e) => e.dataset.room));
const hasLine = (page, text) => page.waitForFunction(
  (want) => [...document.querySelectorAll('#messages > *')].some((e) => e.textContent === want), text);

run('inspector', outDir, async (t) => {
  const i = await t.page('inspector');
  await t.step('the inspector without a token to answer 401 with the login form', async () => {
    const response = await i.goto(inspectorUrl);
    if (response.status() !== 401) throw new Error(`got ${response.status()}`);
    await i.waitForSelector('#login #token');
  });
  await t.step('the token in the URL to be refused with 400', async () => {
    const inUrl = await i.goto(`${inspectorUrl}?token=${encodeURIComponent(token)}`);
    if (inUrl.status() !== 400) throw new Error(`a token in the URL got ${inUrl.status()}`);
  });
  await t.step('a wrong token in the login form to be refused', async () => {
    await i.goto(inspectorUrl);
    await i.fill('#token', `wrong-${token}`);
    const [response] = await Promise.all([i.waitForNavigation(), i.click('#sign-in')]);
    if (response.status() !== 401) throw new Error(`a wrong token got ${response.status()}`);
    const message = await i.$eval('#message', (e) => e.textContent);
    if (!message.includes('refused')) throw new Error(`the form says ${JSON.stringify(message)}`);
  });

  async function join(page, name) {
    await page.goto(base);
    await page.fill('#username', name);
    await page.fill('#room', ROOM);
    await page.click('#join');
    await page.waitForFunction(() => document.getElementById('status').dataset.socketId);
    return page.$eval('#status', (e) => e.dataset.socketId);
  }
  const a = await t.page('alice');
  const b = await t.page('bob');
  let alice;
  let bob;
  await t.step(`alice and bob to join ${ROOM} in the chat`, async () => {
    alice = await join(a, 'alice');
    bob = await join(b, 'bob');
  });

  await t.step('the login form with the token to open the inspector and go live (#status "live")', async () => {
    await i.goto(inspectorUrl);
    await i.fill('#token', token);
    const [response] = await Promise.all([i.waitForNavigation(), i.click('#sign-in')]);
    if (response.status() !== 200) throw new Error(`got ${response.status()}`);
    if (i.url().includes('token')) throw new Error(`the token is in the URL: ${i.url()}`);
    const visible = await i.evaluate(() => document.cookie);
    if (visible.includes('asena_inspector')) throw new Error('the cookie is readable by scripts');
    await i.waitForFunction(() => document.getElementById('status').textContent === 'live');
  });
  await t.step('#fleet to show this instance with 2 sockets', () => i.waitForFunction(() => {
    const row = document.querySelector('#fleet > tr');
    return document.querySelectorAll('#fleet > tr').length === 1 && row
      && row.textContent.includes('this') && row.children[2].textContent === '2';
  }));
  await t.step('#sockets to list exactly alice\'s and bob\'s sockets, each in lobby', async () => {
    await hasRows(i, [alice, bob]);
    for (const id of [alice, bob]) {
      const rooms = await roomsOf(i, id);
      if (rooms.join() !== ROOM) throw new Error(`${id} is in ${JSON.stringify(rooms)}`);
    }
    await i.waitForFunction((room) => document.querySelector(`#rooms > tr[data-room="${room}"]`)
      ?.children[1].textContent === '2', ROOM);
  });

  await t.step('each socket\'s data cell to show its username and room, and 0 acks pending', async () => {
    for (const [id, name] of [[alice, 'alice'], [bob, 'bob']]) {
      await i.waitForFunction(([socket, want]) => {
        const row = document.querySelector(`#sockets > tr[data-socket="${socket}"]`);
        const values = row?.querySelector('td.data code.values')?.textContent;
        return values && JSON.parse(values).username === want && JSON.parse(values).room === 'lobby'
          && row.querySelector('td.acks').textContent === '0';
      }, [id, name]);
    }
  });
  await t.step('the charts to draw the samples, connections reaching 2', async () => {
    await i.waitForFunction(() => {
      const line = document.querySelector('svg[data-chart="connections"] polyline');
      if (!line || Number(line.dataset.points) < 2) return false;
      return ['in', 'out', 'deliveries', 'namespace'].every((id) => document.querySelector(`svg[data-chart="${id}"] polyline`))
        && document.querySelector('#charts figure.chart b').textContent === '2';
    });
  });
  await t.step(`the rooms table to count 2 present in ${ROOM}, and a click to list alice and bob`, async () => {
    await i.waitForFunction((room) => document.querySelector(`#rooms > tr[data-room="${room}"] td.present`)
      ?.textContent === '2', ROOM);
    await i.click(`#rooms > tr[data-room="${ROOM}"] td.room-name`);
    await i.waitForFunction(() => [...document.querySelectorAll('#presence > tr')]
      .map((e) => e.dataset.key).sort().join() === 'alice,bob');
  });

  await t.step('a click on × next to bob\'s room to take him out of it', async () => {
    await i.click(`#sockets > tr[data-socket="${bob}"] button.leave[data-room="${ROOM}"]`);
    await i.waitForFunction((id) => document.querySelector(`#sockets > tr[data-socket="${id}"] .rooms`)
      ?.children.length === 0, bob);
    await i.waitForFunction((room) => document.querySelector(`#rooms > tr[data-room="${room}"]`)
      ?.children[1].textContent === '1', ROOM);
    // Leaving the room untracked him.
    await i.waitForFunction(() => [...document.querySelectorAll('#presence > tr')]
      .map((e) => e.dataset.key).join() === 'alice');
    // He is still connected.
    await b.waitForFunction(() => document.getElementById('status').textContent.startsWith('connected'));
  });

  await t.step('a click on Disconnect in alice\'s row to close her socket', async () => {
    await i.click(`#sockets > tr[data-socket="${alice}"] button.disconnect`);
    await hasRows(i, [bob]);
    await i.waitForFunction((id) => document.getElementById('notice').textContent === `Disconnected ${id}`, alice);
  });
  await t.step('alice\'s chat tab to say "disconnected (1000)"', () => a.waitForFunction(
    () => document.getElementById('status').textContent === 'disconnected (1000)'));
  await t.step('#fleet to count 1 socket', () => i.waitForFunction(
    () => document.querySelector('#fleet > tr')?.children[2].textContent === '1'));

  await i.screenshot({ path: `${outDir}/inspector.png`, fullPage: true });
  console.log('inspector: sockets listed:', JSON.stringify(await rows(i)));

  await t.step('Sign out to bring back the login form', async () => {
    await Promise.all([i.waitForNavigation(), i.click('#sign-out')]);
    await i.waitForSelector('#login #token');
    const again = await i.goto(inspectorUrl);
    if (again.status() !== 401) throw new Error(`after signing out the page got ${again.status()}`);
  });
});
