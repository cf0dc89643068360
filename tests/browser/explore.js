// explore.js URL OUTDIR USER SEGMENT SEEDS: walks the audience-explorer page
// as a person would, in Debian's headless Chromium driven by playwright-core,
// and prints one JSON object with what it saw: console errors and page
// errors, the bars drawn for the user, the points of the segment's reach
// curve, the look-alike rows, and the screenshot's path. Every wait is
// bounded; the browser is closed whatever happens.
'use strict';
const { chromium } = require('playwright-core');

const [url, outdir, user, segment, seeds] = process.argv.slice(2);
const result = { console_errors: [], page_errors: [], failed_requests: [] };

(async () => {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    timeout: 60000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.setDefaultTimeout(20000);
    page.on('console', (m) => { if (m.type() === 'error') result.console_errors.push(m.text()); });
    page.on('pageerror', (e) => result.page_errors.push(String(e)));
    page.on('requestfailed', (r) => result.failed_requests.push(r.url()));
    const resp = await page.goto(url, { waitUntil: 'load' });
    result.status = resp.status();
    result.title = await page.title();
    await page.waitForSelector('#model-body dl');
    result.model_card = await page.locator('#model-body').innerText();
    result.ready = await page.locator('#status').innerText();

    await page.fill('#user-id', user);
    await page.click('#user-form button');
    await page.waitForSelector('#user-chart rect.bar');
    result.bars = await page.locator('#user-chart rect.bar').count();
    result.bar_labels = await page.$$eval('#user-chart rect.bar', (bars) => bars.map((b) => b.dataset.label));
    result.user_note = await page.locator('#user-note').innerText();

    await page.fill('#segment-id', segment);
    await page.click('#segment-form button');
    await page.waitForSelector('#reach-chart path.curve');
    result.curve_points = Number(await page.locator('#reach-chart').getAttribute('data-points'));
    result.curve_dots = await page.locator('#reach-chart circle.dot').count();
    result.segment_users = await page.locator('#segment-users tbody tr').count();
    result.segment_note = await page.locator('#segment-note').innerText();

    await page.fill('#seeds', seeds.split(',').join('\n'));
    await page.fill('#lookalike-n', '200');
    await page.click('#lookalike-form button');
    await page.waitForSelector('#lookalike-users tbody tr');
    result.lookalike_rows = await page.locator('#lookalike-users tbody tr').count();
    result.lookalike_note = await page.locator('#lookalike-note').innerText();

    // Clicking a bar explores that segment.
    const first = result.bar_labels[0];
    await page.locator('#user-chart rect.bar').first().click();
    await page.waitForFunction((s) => document.getElementById('segment-id').value === s &&
      document.querySelector('#segment-note b') && document.querySelector('#segment-note b').textContent === s, first);
    result.clicked_segment = await page.inputValue('#segment-id');

    // The live panel fills in after two polls, and a later poll lists the
    // look-alike query made above.
    await page.waitForFunction(() => document.getElementById('rate').textContent !== '–' &&
      document.getElementById('latency').textContent.includes('LOOKALIKE'), null, { timeout: 15000 });
    result.latency_rows = await page.locator('#latency tbody tr').count();
    result.hash = await page.evaluate(() => location.hash);

    result.screenshot = `${outdir}/http_page.png`;
    await page.screenshot({ path: result.screenshot, fullPage: true });
  } catch (e) {
    result.error = String(e);
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(result) + '\n');
})();
