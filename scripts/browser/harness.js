// What the browser tests share: launching Debian's Chromium through playwright-core, named
// steps that say what was expected when they fail, and a screenshot of every open page on
// failure. scripts/browser.sh installs playwright-core next to this file and runs the tests.
const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

// Every wait is bounded by this unless a step says otherwise.
const TIMEOUT_MS = 10000;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  // Containers often have a tiny /dev/shm.
  '--disable-dev-shm-usage'];

// run(name, outDir, async (t) => { ... }): launches Chromium, runs the test body, and exits the
// process: 0 on success, 1 on failure after saving `<outDir>/<name>-failure-<page>.png` for
// every page opened with t.page(label).
async function run(name, outDir, body) {
  fs.mkdirSync(outDir, { recursive: true });
  const pages = [];
  let browser;
  let current = 'launch Chromium';
  const t = {
    // A new page (tab) labelled for logs and failure screenshots; page errors are logged.
    async page(label) {
      const page = await browser.newPage();
      page.setDefaultTimeout(TIMEOUT_MS);
      page.setDefaultNavigationTimeout(TIMEOUT_MS);
      page.on('pageerror', (e) => console.error(`${name} [${label}] page error: ${e.message}`));
      pages.push({ label, page });
      return page;
    },
    // A named step: on failure the error says which expectation was not met.
    async step(expected, fn) {
      current = expected;
      const started = Date.now();
      await fn();
      console.log(`${name}: ok ${expected} (${Date.now() - started} ms)`);
    },
    timeout: TIMEOUT_MS,
  };
  try {
    try {
      browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 30000 });
    } catch (e) {
      throw new Error(`could not launch Chromium at ${CHROMIUM} (install Debian's \`chromium\` `
        + `or set CHROMIUM): ${e.message}`);
    }
    await body(t);
    await browser.close();
    process.exit(0);
  } catch (e) {
    console.error(`${name}: FAILED: expected ${current}`);
    console.error(`${name}: ${e.message.split('\n').slice(0, 6).join('\n')}`);
    for (const { label, page } of pages) {
      if (page.isClosed()) continue;
      const file = path.join(outDir, `${name}-failure-${label}.png`);
      try {
        await page.screenshot({ path: file, timeout: 5000 });
        console.error(`${name}: screenshot of ${label}: ${file}`);
      } catch (shotError) {
        console.error(`${name}: no screenshot of ${label}: ${shotError.message.split('\n')[0]}`);
      }
    }
    if (browser) await browser.close().catch(() => {});
    process.exit(1);
  }
}

// The text of each child of `#id`.
const texts = (page, id) => page.$$eval(`#${id} > *`, (els) => els.map((e) => e.textContent));

module.exports = { run, texts, TIMEOUT_MS };
