// Opens an HTML report in headless Chromium (Debian's, through playwright-core) as a user would:
// collects console errors, page errors and failed requests, measures every plot as laid out, counts
// the marks drawn in it, and keeps a full-page screenshot.
// Usage: node open_report.js REPORT.html SCREENSHOT.png   (prints one JSON object)
const { chromium } = require('playwright-core');
const path = require('path');

async function main() {
  const [report, shot] = process.argv.slice(2);
  if (!report || !shot) {
    console.error('usage: node open_report.js REPORT.html SCREENSHOT.png');
    process.exit(2);
  }
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync'],
  });
  const result = { console_errors: [], page_errors: [], failed_requests: [], external_requests: [] };
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') result.console_errors.push(m.text()); });
    page.on('pageerror', (e) => result.page_errors.push(String(e)));
    page.on('requestfailed', (r) => result.failed_requests.push(r.url()));
    page.on('request', (r) => { if (!r.url().startsWith('file:') && !r.url().startsWith('data:')) result.external_requests.push(r.url()); });
    await page.goto('file://' + path.resolve(report), { waitUntil: 'load' });
    Object.assign(result, await page.evaluate(() => {
      const plots = [...document.querySelectorAll('svg.plot')].map((svg) => {
        const box = svg.getBoundingClientRect();
        const marks = svg.querySelectorAll('circle.dot, rect.mark, line.median').length;
        const drawn = [...svg.querySelectorAll('circle.dot, rect.mark')].filter((el) => {
          const b = el.getBoundingClientRect();
          return b.width > 0 && b.height > 0;
        }).length;
        return { title: svg.getAttribute('aria-label'), width: box.width, height: box.height, marks, drawn };
      });
      return {
        title: document.title,
        verdict: (document.getElementById('verdict') || {}).textContent || null,
        plots,
        replay_commands: [...document.querySelectorAll('code')].map((c) => c.textContent).filter((t) => t.startsWith('xmc run ')),
        failure_links: [...document.querySelectorAll('a[href^="#fail-"]')].map((a) => ({
          href: a.getAttribute('href'), target: !!document.getElementById(a.getAttribute('href').slice(1)) })),
      };
    }));
    await page.screenshot({ path: shot, fullPage: true });
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(result));
}

main().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
