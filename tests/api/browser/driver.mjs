// A tiny line protocol over stdin/stdout that lets a pytest test drive the system's
// Chromium through playwright-core (which never downloads a browser).
//
// Each stdin line is {"id": n, "op": "...", ...}; each reply is one stdout line
// {"id": n, "ok": true, "value": ...} or {"id": n, "ok": false, "error": "..."}.
// Ops: launch, goto, evaluate, waitFor, viewport, screenshot, errors, close.
import { createRequire } from "node:module";
import { createInterface } from "node:readline";

const require = createRequire(import.meta.url);
const { chromium } = require("playwright-core");

const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

let context = null;
let page = null;
const errors = [];

function watch(p) {
  p.on("console", (message) => {
    if (message.type() === "error") errors.push(`console: ${message.text()}`);
  });
  p.on("pageerror", (error) => errors.push(`page: ${error.message}`));
  p.on("requestfailed", (request) => {
    errors.push(`request failed: ${request.url()} ${request.failure()?.errorText ?? ""}`);
  });
}

const ops = {
  async launch({ executablePath, userDataDir, width, height }) {
    // A persistent context is how Playwright takes a --user-data-dir: a fresh one per run.
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath,
      headless: true,
      args: FLAGS,
      viewport: { width, height },
      deviceScaleFactor: 1,
      timeout: 30000,
    });
    page = context.pages()[0] ?? (await context.newPage());
    watch(page);
    return context.browser()?.version() ?? "chromium";
  },
  async goto({ url }) {
    const response = await page.goto(url, { waitUntil: "load", timeout: 20000 });
    return response ? response.status() : null;
  },
  async evaluate({ expression }) {
    return page.evaluate(expression);
  },
  async waitFor({ expression, ms }) {
    // Not page.waitForFunction: it evals the string inside the page, which the
    // dashboard's Content-Security-Policy (rightly) forbids. page.evaluate goes
    // through the DevTools protocol, outside the page's CSP.
    const deadline = Date.now() + ms;
    let last;
    for (;;) {
      last = await page.evaluate(expression);
      if (last) return last;
      if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms: ${expression} = ${last}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  },
  async viewport({ width, height }) {
    await page.setViewportSize({ width, height });
    return null;
  },
  async screenshot({ path, fullPage }) {
    await page.screenshot({ path, fullPage: Boolean(fullPage) });
    return path;
  },
  async errors() {
    return errors.splice(0);
  },
  async close() {
    if (context) await context.close();
    context = null;
    return null;
  },
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let request;
  try {
    request = JSON.parse(line);
  } catch (error) {
    process.stdout.write(JSON.stringify({ id: null, ok: false, error: `bad JSON: ${error}` }) + "\n");
    continue;
  }
  const { id, op, ...args } = request;
  try {
    if (!ops[op]) throw new Error(`unknown op ${op}`);
    const value = await ops[op](args);
    process.stdout.write(JSON.stringify({ id, ok: true, value: value ?? null }) + "\n");
  } catch (error) {
    process.stdout.write(JSON.stringify({ id, ok: false, error: String(error?.stack ?? error) }) + "\n");
  }
  if (op === "close") break;
}
if (context) await context.close();
