// Drives the chat page in headless Chromium: two users join one room, see each other in
// #users, and exchange messages (Enter in #message, and the #send button).
// Usage: node chat.js http://127.0.0.1:PORT/ SCREENSHOT.png
const { chromium } = require('playwright-core');
const base = process.argv[2];
const shot = process.argv[3];
(async () => {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium',
    args: ['--headless','--no-sandbox','--disable-gpu','--disable-quic','--no-first-run','--disable-background-networking','--disable-component-update','--disable-sync'] });
  const a = await browser.newPage(); const b = await browser.newPage();
  for (const [p, name] of [[a, 'alice'], [b, 'bob']]) {
    await p.goto(base);
    await p.fill('#username', name); await p.fill('#room', 'lobby'); await p.click('#join');
    await p.waitForFunction(() => !document.getElementById('message').disabled, null, {timeout: 5000});
  }
  await a.waitForFunction(() => document.querySelectorAll('#users > *').length === 2, null, {timeout: 5000});
  await b.fill('#message', 'hello from bob'); await b.press('#message', 'Enter');
  await a.waitForFunction(() => [...document.querySelectorAll('#messages > *')].some(e => e.textContent.includes('bob') && e.textContent.includes('hello from bob')), null, {timeout: 5000});
  await a.fill('#message', 'hi bob'); await a.click('#send');
  await b.waitForFunction(() => document.getElementById('messages').textContent.includes('alice: hi bob'), null, {timeout: 5000});
  await a.screenshot({ path: shot });
  console.log('users on a:', await a.$$eval('#users > *', els => els.map(e => e.textContent)));
  console.log('messages on b:', await b.$$eval('#messages > *', els => els.map(e => e.textContent)));
  await browser.close();
})().catch(e => { console.error(e); process.exit(1); });
