#!/usr/bin/env node
// Drives the wasmtap web UI in Debian's chromium (playwright-core, no bundled
// browser) through the whole user story, against a running daemon (run.sh
// starts one) or the mock (run.sh --mock). Stops at the first failure with a
// message, a screenshot and a non-zero exit.
//
// Environment:
//   BASE_URL       e.g. http://127.0.0.1:8470/            (required)
//   ADMIN_TOKEN    the daemon's admin token               (required)
//   RAM_WASM       path of the ram guest component        (required)
//   ARTIFACTS_DIR  screenshots and logs go here           (default target/artifacts/browser)
//   CHROMIUM       browser binary                         (default /usr/bin/chromium)
//   EXPECT_FRONTEND  sim (default) or tcmu

import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const BASE_URL = need('BASE_URL');
const ADMIN_TOKEN = need('ADMIN_TOKEN');
const RAM_WASM = need('RAM_WASM');
const ARTIFACTS = path.resolve(process.env.ARTIFACTS_DIR || 'target/artifacts/browser');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const EXPECT_FRONTEND = process.env.EXPECT_FRONTEND || 'sim';
// Compiling a component in a debug daemon can take a while.
const UPLOAD_TIMEOUT = Number(process.env.UPLOAD_TIMEOUT_MS || 300_000);
const T = 20_000;

function need(k) {
  const v = process.env[k];
  if (!v) { console.error(`ui.test: ${k} is not set (run tests/browser/run.sh)`); process.exit(2); }
  return v;
}

fs.mkdirSync(ARTIFACTS, { recursive: true });
if (!fs.existsSync(RAM_WASM)) { console.error(`ui.test: RAM_WASM ${RAM_WASM} does not exist`); process.exit(2); }

const suffix = Date.now().toString(36).slice(-5);
const TENANT = `bt-${suffix}`;
const MODULE = `ram-up-${suffix}`;
const DEVICE = `disk-${suffix}`;

let browser;
let page;
let shotNo = 0;
let step = '(start)';
const pageErrors = [];
const consoleLines = [];
// The daemon serves a strict Content-Security-Policy: anything the UI does
// that the policy blocks fails the step.
const cspViolations = [];

async function shot(name) {
  shotNo += 1;
  const f = path.join(ARTIFACTS, `${String(shotNo).padStart(2, '0')}-${name}.png`);
  // Scrolled to the top, so the sticky header sits where it belongs in a full-page shot.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: f, fullPage: true });
  console.log(`  screenshot: ${f}`);
  return f;
}

async function run(name, f) {
  step = name;
  const t0 = Date.now();
  console.log(`- ${name}`);
  await f();
  if (pageErrors.length) throw new Error(`uncaught exception in the page: ${pageErrors.join(' | ')}`);
  if (cspViolations.length) throw new Error(`blocked by the Content-Security-Policy: ${cspViolations.join(' | ')}`);
  console.log(`  ok (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}

function check(cond, msg) { if (!cond) throw new Error(msg); }

const tid = (id) => page.getByTestId(id);

/** Poll `f` (async, returns truthy when done) until it succeeds or `ms` pass. */
async function until(what, f, ms = T, every = 250) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try { last = await f(); if (last) return last; } catch (e) { last = e; }
    if (Date.now() > end) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}${last instanceof Error ? ` (last error: ${last.message})` : ''}`);
    await page.waitForTimeout(every);
  }
}

async function login(token, expectRole) {
  await page.goto(BASE_URL);
  await tid('login-token').waitFor({ timeout: T });
  await tid('login-token').fill(token);
  await tid('login-submit').click();
  await tid('whoami').waitFor({ timeout: T });
  const role = await tid('whoami').getAttribute('data-role');
  check(role === expectRole, `signed in as ${role}, expected ${expectRole}`);
}

async function logout() {
  await tid('logout').click();
  await tid('login-token').waitFor({ timeout: T });
}

/** Drop a file on the drop zone the way a browser does (DataTransfer with a File). */
async function dropFile(name, content, type = 'application/wasm') {
  const dt = await page.evaluateHandle(([n, c, t]) => {
    const d = new DataTransfer();
    d.items.add(new File([c], n, { type: t }));
    return d;
  }, [name, content, type]);
  const zone = tid('upload-drop');
  await zone.dispatchEvent('dragenter', { dataTransfer: dt });
  await zone.dispatchEvent('dragover', { dataTransfer: dt });
  await zone.dispatchEvent('drop', { dataTransfer: dt });
}

/**
 * Pixels of the canvas drawn in one of the chart's series colours, and how
 * high the highest one is (0 = top, 1 = bottom). A line of zeros lies on the
 * bottom of the plot; traffic lifts it (the y axis scales to the maximum).
 */
async function seriesPixels(testid) {
  return tid(testid).evaluate((c) => {
    const css = getComputedStyle(c);
    const cols = ['--series-read', '--series-write'].map((v) => {
      const probe = document.createElement('span');
      probe.style.color = css.getPropertyValue(v).trim();
      document.body.append(probe);
      const m = getComputedStyle(probe).color.match(/\d+/g).map(Number);
      probe.remove();
      return m;
    });
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    let top = c.height;
    for (let i = 0; i < d.length; i += 4) {
      if (d[i + 3] < 200) continue;
      for (const [r, g, b] of cols) {
        if (Math.abs(d[i] - r) + Math.abs(d[i + 1] - g) + Math.abs(d[i + 2] - b) < 40) {
          n++;
          top = Math.min(top, Math.floor(i / 4 / c.width));
          break;
        }
      }
    }
    return { n, top: top / c.height };
  });
}

async function main() {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: 'light' });
  page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => {
    consoleLines.push(`[${m.type()}] ${m.text()}`);
    if (m.text().startsWith('csp-violation ') || /Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
  });
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`csp-violation ${e.effectiveDirective} blocked ${e.blockedURI || '(inline)'} at ${e.sourceFile}:${e.lineNumber}`);
    });
  });

  await run('admin signs in', async () => {
    await page.goto(BASE_URL);
    await tid('login-token').waitFor({ timeout: T });
    await shot('login');
    // A wrong token is refused with the API's message.
    await tid('login-token').fill('wt_0000000000000000000000000000000000000000');
    await tid('login-submit').click();
    const err = await tid('login-error').textContent({ timeout: T });
    check(/unauthorized/.test(err), `a wrong token showed "${err}", expected an unauthorized error`);
    await login(ADMIN_TOKEN, 'admin');
    check(await tid('nav-admin').isVisible(), 'no Admin link for the admin');
  });

  await run(`banner shows the ${EXPECT_FRONTEND} frontend`, async () => {
    const b = tid('frontend-banner');
    await b.waitFor({ timeout: T });
    const kind = await b.getAttribute('data-kind');
    check(kind === EXPECT_FRONTEND, `banner says frontend ${kind}, expected ${EXPECT_FRONTEND}`);
    const text = await b.textContent();
    if (kind === 'sim') check(/simulat/i.test(text) && /LIO/.test(text), `sim banner does not say there is no LIO / simulator: "${text}"`);
  });

  await run(`admin creates tenant ${TENANT}`, async () => {
    if (!(await tid('tenant-create-name').isVisible())) await tid('nav-admin').click();
    await tid('tenant-create-name').fill(TENANT);
    await tid('tenant-create-max-devices').fill('4');
    await tid('tenant-create-submit').click();
    await page.locator(`[data-testid="tenant-row"][data-name="${TENANT}"]`).waitFor({ timeout: T });
    await shot('tenant-created');
  });

  let tenantToken;
  await run('admin creates a token for it (shown once)', async () => {
    await tid('token-tenant-select').selectOption(TENANT);
    await tid('token-create-label').fill('browser-test');
    await tid('token-create-submit').click();
    tenantToken = (await tid('token-new-value').textContent({ timeout: T })).trim();
    check(/^wt_[0-9a-f]{40}$/.test(tenantToken), `new token "${tenantToken}" does not look like wt_ + 40 hex digits`);
    await page.locator('[data-testid="token-row"][data-label="browser-test"]').waitFor({ timeout: T });
    check(await tid('token-copy').isVisible(), 'no copy button next to the new token');
    await shot('token-created');
  });

  await run('admin signs out, tenant signs in', async () => {
    await logout();
    await login(tenantToken, 'tenant');
    const who = await tid('whoami').textContent();
    check(who.includes(TENANT), `whoami chip says "${who}", expected the tenant ${TENANT}`);
    check((await tid('nav-admin').count()) === 0, 'a tenant sees the Admin link');
  });

  await run('tenant uploads the ram guest with the file picker', async () => {
    await tid('nav-modules').click();
    await tid('upload-drop').waitFor({ timeout: T });
    await tid('upload-file-input').setInputFiles(RAM_WASM);
    const defaulted = await tid('upload-name').inputValue();
    const base = path.basename(RAM_WASM).replace(/\.wasm$/, '').toLowerCase();
    check(defaulted === base.replace(/[^a-z0-9_-]+/g, '-'), `upload name defaulted to "${defaulted}", expected it from the file name ${base}`);
    await tid('upload-name').fill(MODULE);
    await tid('upload-version').fill('1.0.0');
    await shot('upload-chosen');
    await tid('upload-submit').click();
    const row = page.locator(`[data-testid="module-row"][data-name="${MODULE}"]`);
    await until(`module ${MODULE} in the list (or an upload error)`, async () => {
      if (await tid('upload-error').count()) throw new Error(`upload failed: ${await tid('upload-error').first().textContent()}`);
      return (await row.count()) > 0;
    }, UPLOAD_TIMEOUT, 500);
    const sha = await row.getByTestId('module-sha').textContent();
    check(/^[0-9a-f]{12}$/.test(sha.trim()), `module row shows sha "${sha}"`);
    check(await page.locator('[data-testid="module-row"][data-builtin="true"][data-name="ram"]').count() === 1, 'built-in ram module not listed');
    check(await page.locator('[data-testid="module-row"][data-builtin="true"] [data-testid="module-delete"]').first().isDisabled(), 'built-in module can be deleted');
    await shot('module-uploaded');
  });

  await run(`tenant creates device ${DEVICE} on the built-in ram module`, async () => {
    await tid('nav-devices').click();
    await tid('device-create-name').waitFor({ timeout: T });
    await tid('device-create-name').fill(DEVICE);
    await tid('device-create-size').fill('64');
    await tid('device-create-unit').selectOption('MiB');
    await tid('device-create-block-size').selectOption('512');
    const ram = await tid('device-create-module').locator('option[data-name="ram"][data-builtin="true"]').getAttribute('value', { timeout: T })
      .catch(() => null);
    check(ram, 'no built-in ram module in the module select');
    await tid('device-create-module').selectOption(ram);
    await tid('device-create-submit').click();
    const row = page.locator(`[data-testid="device-row"][data-name="${DEVICE}"]`);
    await until(`device ${DEVICE} in the list`, async () => {
      if (await tid('device-create-error').count()) throw new Error(`create failed: ${await tid('device-create-error').textContent()}`);
      return (await row.count()) > 0;
    }, 60_000);
    await until(`device ${DEVICE} running`, async () => {
      const st = await row.getAttribute('data-state');
      if (st !== 'running') await tid('devices-refresh').click();
      return st === 'running';
    }, 60_000, 1000);
    check((await row.getByTestId('device-module').textContent()).trim().startsWith('ram') && !(await row.getByTestId('device-module').textContent()).includes(MODULE),
      `new device runs "${await row.getByTestId('device-module').textContent()}", expected the built-in ram`);
    await shot('device-created');
  });

  await run(`tenant hot-swaps ${DEVICE} to ${MODULE}`, async () => {
    const row = page.locator(`[data-testid="device-row"][data-name="${DEVICE}"]`);
    const sel = row.getByTestId('device-bind-select');
    const v = await sel.locator(`option[data-name="${MODULE}"]`).getAttribute('value', { timeout: T }).catch(() => null);
    check(v, `module ${MODULE} is not offered in the bind select`);
    await sel.selectOption(v);
    await row.getByTestId('device-bind-submit').click();
    await until(`${DEVICE} bound to ${MODULE}`, async () => {
      if (await tid('device-bind-error').count()) throw new Error(`bind failed: ${await tid('device-bind-error').textContent()}`);
      const r = page.locator(`[data-testid="device-row"][data-name="${DEVICE}"]`);
      return (await r.getByTestId('device-module').textContent()).includes(MODULE);
    }, 120_000, 500);
    await shot('device-hot-swapped');
  });

  await run('device page: Exercise sends I/O, counters and IOPS chart move', async () => {
    await page.locator(`[data-testid="device-row"][data-name="${DEVICE}"]`).getByTestId('device-link').click();
    await tid('chart-iops').waitFor({ timeout: T });
    check((await tid('device-name').textContent()) === DEVICE, 'device page shows another device');
    check((await tid('stat-module').textContent()).includes(MODULE), `device page module is "${await tid('stat-module').textContent()}", expected ${MODULE}`);
    await until('live stats', async () => (await tid('live-status').textContent()).startsWith('live'), T);
    const before = Number(await tid('stat-commands').getAttribute('data-value') || 0);
    await tid('exercise-seconds').fill('20');
    await tid('exercise-queue-depth').fill('8');
    await tid('exercise-start').click();
    await until('the Exercise request to be accepted', async () => {
      if (await tid('exercise-error').count()) throw new Error(`exercise refused: ${await tid('exercise-error').textContent()}`);
      return /Running|Finished/.test(await tid('exercise-status').textContent());
    }, T);
    const after = await until('stat-commands to grow by at least 100', async () => {
      const n = Number(await tid('stat-commands').getAttribute('data-value') || 0);
      return n >= before + 100 ? n : 0;
    }, 30_000, 500);
    const px = await until('a raised line on the IOPS chart canvas', async () => {
      const p = await seriesPixels('chart-iops');
      return p.n > 20 && p.top < 0.5 ? p : null;
    }, 15_000, 500);
    const readIops = await tid('chart-iops-read').textContent();
    console.log(`  commands ${before} -> ${after}, IOPS chart: ${px.n} series pixels, highest at ${(px.top * 100).toFixed(0)}% from the top, read IOPS now ${readIops}`);
    check((await tid('device-state-badge').getAttribute('data-state')) === 'running', 'device not running during Exercise');
    await page.waitForTimeout(3000); // a few more points on the charts for the screenshot
    await shot('device-exercise');
    if (await tid('log-error').count()) throw new Error(`log route failed: ${await tid('log-error').first().textContent()}`);
  });

  await run('uploading a text file renamed .wasm shows not_wasm next to the drop zone', async () => {
    await tid('nav-modules').click();
    await tid('upload-drop').waitFor({ timeout: T });
    await dropFile('notes.wasm', 'these are not the bytes you are looking for\n');
    check((await tid('upload-file-name').textContent()) === 'notes.wasm', 'dropped file not picked up by the drop zone');
    check((await tid('upload-name').inputValue()) === 'notes', 'name not defaulted from the dropped file');
    await tid('upload-submit').click();
    const err = await until('the upload error', async () => (await tid('upload-error').count()) && tid('upload-error').textContent(), 60_000);
    check(/not_wasm/.test(err), `upload error says "${err}", expected not_wasm`);
    check(/WebAssembly/.test(err), `upload error "${err}" does not carry the server's message`);
    // The error sits in the upload card, next to the drop zone.
    const inCard = await tid('upload-form').locator('[data-testid="upload-error"]').count();
    check(inCard === 1, 'upload error is not shown next to the drop zone');
    // The bound module cannot be deleted (explained on the button).
    const del = page.locator(`[data-testid="module-row"][data-name="${MODULE}"]`).getByTestId('module-delete');
    check(await del.isDisabled(), `module ${MODULE} is bound but its Delete button is enabled`);
    await shot('upload-not-wasm');
  });

  await run('admin: exporting a LUN on the simulator shows the daemon\'s refusal', async () => {
    await logout();
    await login(ADMIN_TOKEN, 'admin');
    if (!(await tid('luns-list').isVisible())) await tid('nav-admin').click();
    const row = page.locator(`[data-testid="lun-row"][data-name="${DEVICE}"]`);
    await row.waitFor({ timeout: T });
    if (EXPECT_FRONTEND === 'sim') {
      await row.getByTestId('lun-export').click();
      const err = await until('the export error', async () => (await tid('lun-error').count()) && tid('lun-error').textContent(), T);
      check(/unsupported/.test(err), `export on sim said "${err}", expected unsupported`);
    }
    await shot('admin-lun-export');
  });
}

const started = Date.now();
try {
  await main();
  console.log(`ui.test: all steps passed in ${((Date.now() - started) / 1000).toFixed(0)} s; screenshots in ${ARTIFACTS}`);
  await browser.close();
  fs.writeFileSync(path.join(ARTIFACTS, 'console.log'), `${consoleLines.join('\n')}\n`);
  process.exit(0);
} catch (e) {
  console.error(`\nui.test: FAILED at step "${step}": ${e.message}`);
  if (page) {
    try {
      const f = path.join(ARTIFACTS, 'FAILED.png');
      await page.screenshot({ path: f, fullPage: true });
      console.error(`  screenshot of the failure: ${f}`);
    } catch { /* page gone */ }
  }
  fs.writeFileSync(path.join(ARTIFACTS, 'console.log'), `${consoleLines.join('\n')}\n`);
  console.error(`  browser console: ${path.join(ARTIFACTS, 'console.log')}`);
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}
