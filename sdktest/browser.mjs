// The real-browser Access Manager test: Debian's chromium, headless, driven
// by puppeteer-core, opens sdktest/browser/index.html (the PubNub web SDK
// bundle of the npm package, and page.js) from two origins: one the node
// allows (--cors-origins) and one it does not. The Go test cmd/groupcastd
// TestPAMInBrowser serves the page and runs this with one JSON argument:
//
//   node browser.mjs '{"chromium":"/usr/bin/chromium","node":"http://127.0.0.1:P",
//     "publishKey":"…","subscribeKey":"…","secretKey":"…",
//     "allowed":"http://127.0.0.3:Q","denied":"http://127.0.0.4:R"}'
//
// A server client (Node SDK with the secret key) puts a channel in a group
// and grants the page a token: read+write on the channel, read+manage on the
// group. From the allowed origin the page subscribes to the group, receives
// what it publishes and adds a channel to the group; from the other origin
// CORS stops it, and the group is not changed. Prints each check and
// "N passed, M failed"; exits non-zero if any failed.
import { createRequire } from 'node:module';
import puppeteer from 'puppeteer-core';

const cfg = JSON.parse(process.argv[2] ?? '{}');
const require = createRequire(import.meta.url);
const PubNub = require('pubnub');

let passed = 0;
let failed = 0;
function assert(cond, msg) { if (!cond) throw new Error(msg); }
async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok   browser: ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL browser: ${name}: ${e?.message ?? e}`);
  }
}

const run = Date.now();
const group = `grp-b-${run}`;
const channel = `room-b-${run}`;
const addAllowed = `room-b-${run}-allowed`;
const addDenied = `room-b-${run}-denied`;
const uuid = `browser-${run}`;
const nodeHost = cfg.node.replace(/^https?:\/\//, '');

const server = new PubNub({
  publishKey: cfg.publishKey, subscribeKey: cfg.subscribeKey, secretKey: cfg.secretKey,
  userId: `server-${run}`, origin: nodeHost, ssl: false, heartbeatInterval: 0,
});
const listed = async () => (await server.channelGroups.listChannels({ channelGroup: group })).channels.slice().sort();

// visit opens the page from origin with the token and returns what the page
// observed, the browser's console lines and its failed requests.
async function visit(browser, origin, token, add) {
  const page = await browser.newPage();
  const consoleLines = [];
  const failedRequests = [];
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
  page.on('requestfailed', (r) => failedRequests.push(`${r.method()} ${r.url().split('?')[0]}: ${r.failure()?.errorText}`));
  const q = new URLSearchParams({
    node: nodeHost, pub: cfg.publishKey, sub: cfg.subscribeKey, token, uuid, group, channel, add, nonce: `${origin}-${run}`,
  });
  try {
    await page.goto(`${origin}/?${q}`, { waitUntil: 'load', timeout: 15000 });
    await page.waitForFunction(() => window.__result?.done === true, { timeout: 25000, polling: 50 });
    const result = await page.evaluate(() => window.__result);
    return { result, consoleLines, failedRequests };
  } finally {
    await page.close();
  }
}

const show = (v) => JSON.stringify(v);

async function main() {
  let token;
  await check('the server client puts a channel in a group and grants the page a token', async () => {
    await server.channelGroups.addChannels({ channelGroup: group, channels: [channel] });
    token = await server.grantToken({
      ttl: 5,
      authorized_uuid: uuid,
      resources: {
        channels: { [channel]: { read: true, write: true } },
        groups: { [group]: { read: true, manage: true } },
      },
    });
    assert(typeof token === 'string' && token.length > 20, `grantToken returned ${show(token)}`);
    assert(show(await listed()) === show([channel]), `the group lists ${show(await listed())}`);
  });
  if (!token) return;

  const launch = () => puppeteer.launch({
    executablePath: cfg.chromium ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--headless=new', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  let browser = await launch();
  // visitRelaunching is visit, with Chromium started again and the visit made
  // again once if the browser went away under it ("Connection closed."
  // after a second, on a busy machine): that is puppeteer losing its
  // browser, not an answer from the node. A visit is safe to repeat (the
  // add is idempotent, the page looks for its own message). A second loss,
  // or any other error, fails the check.
  const visitRelaunching = async (origin, token, add) => {
    try {
      return await visit(browser, origin, token, add);
    } catch (e) {
      if (browser.connected && !/Connection closed|Target closed|Session closed/i.test(e?.message ?? '')) throw e;
      console.log(`browser: chromium went away during the visit of ${origin} (${e?.message ?? e}); starting it again`);
      await browser.close().catch(() => {});
      browser = await launch();
      return await visit(browser, origin, token, add);
    }
  };
  try {
    console.log(`browser: ${await browser.version()}`);
    let seen;
    await check(`from the configured origin ${cfg.allowed}: subscribes to the group, receives its publish, edits the group`, async () => {
      seen = await visitRelaunching(cfg.allowed, token, addAllowed);
      const r = seen.result;
      assert(!r.fatal, `the page failed: ${r.fatal} (console ${show(seen.consoleLines)})`);
      assert(r.connected, `not connected: statuses ${show(r.statuses)} errors ${show(r.errors)} console ${show(seen.consoleLines)}`);
      assert(r.published && r.published.length === 17, `publish: ${show(r.published)} errors ${show(r.errors)}`);
      assert(r.received, `its message did not arrive: messages ${show(r.messages)}`);
      const m = r.messages.find((x) => x.message?.n === `${cfg.allowed}-${run}`);
      assert(m.channel === channel && m.subscription === group, `delivered as ${show(m)}`);
      assert(r.added, `channel-group add: ${show(r.errors.add)}`);
      assert(r.time?.startsWith('200 '), `its own fetch of /time/0: ${show(r.time)} ${show(r.errors.fetch)}`);
      const now = await listed();
      assert(show(now) === show([channel, addAllowed].sort()), `the group lists ${show(now)} after the page's add`);
    });
    if (seen) console.log(`browser: allowed origin: web SDK ${seen.result.version}, statuses ${show(seen.result.statuses.map((s) => s.category))}`);

    seen = undefined;
    await check(`from an origin not configured ${cfg.denied}: CORS stops subscribe, publish, the edit and fetch`, async () => {
      seen = await visitRelaunching(cfg.denied, token, addDenied);
      const r = seen.result;
      assert(!r.fatal, `the page failed: ${r.fatal}`);
      assert(!r.connected && !r.received && r.messages.length === 0, `the page connected or received: ${show(r)}`);
      // The SDK retries a failed subscribe quietly; the browser shows each
      // attempt failing.
      const subFailed = seen.failedRequests.filter((l) => l.includes('/v2/subscribe/'));
      assert(subFailed.length > 0, `no subscribe request failed: ${show(seen.failedRequests)}`);
      assert(!r.published && r.errors.publish?.category === 'PNNetworkIssuesCategory', `publish: ${show(r.published)} ${show(r.errors.publish)}; want PNNetworkIssuesCategory`);
      assert(!r.added && r.errors.add?.category === 'PNNetworkIssuesCategory', `channel-group add: ${show(r.errors.add)}; want PNNetworkIssuesCategory`);
      assert(r.time === null && r.errors.fetch, `its own fetch of /time/0 was answered: ${show(r.time)}`);
      // The browser names CORS as the cause.
      const cors = seen.consoleLines.filter((l) => /CORS policy/.test(l));
      for (const path of ['/v2/subscribe/', '/publish/', '/channel-registration/', '/time/0']) {
        assert(cors.some((l) => l.includes(path)), `no CORS error for ${path} in the console: ${show(seen.consoleLines)}`);
      }
      const now = await listed();
      assert(show(now) === show([channel, addAllowed].sort()), `the group lists ${show(now)}: the refused page's add changed it`);
      console.log(`browser: denied origin: ${subFailed.length} subscribe attempts failed (${subFailed[0].split(': ').pop()}), statuses ${show(r.statuses.map((x) => x.category))}, publish ${show(r.errors.publish)}, add ${show(r.errors.add)}, fetch ${show(r.errors.fetch?.message)}`);
      console.log(`browser: denied origin console: ${cors[0].replace(/\?.*' from/, "?…' from")}`);
    });
  } finally {
    await browser.close();
  }
}

try {
  await main();
} catch (e) {
  failed++;
  console.log(`FAIL browser: ${e?.stack ?? e}`);
}
server.stop?.();
server.destroy?.();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
