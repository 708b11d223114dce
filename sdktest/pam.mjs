// Access Manager v3 with the official PubNub JavaScript SDK: drives two
// groupcastd nodes in --access keysets mode through the npm `pubnub`
// package (v11) or `pubnub12` (v12, an npm alias). The Go test
// cmd/groupcastd TestPAMWithSDKs runs it with one JSON argument:
//
//   node pam.mjs '{"sdk":"pubnub","tag":"js11","a":"http://127.0.0.1:P","b":"http://127.0.0.1:Q",
//                  "publishKey":"…","subscribeKey":"…","secretKey":"…","expiredToken":"…"}'
//
// A server client (with the secret key, so every request is signed) grants
// tokens and revokes them; clients without the secret key use them.
// Prints each check and "N passed, M failed"; exits non-zero if any failed.
import { createRequire } from 'node:module';

const cfg = JSON.parse(process.argv[2] ?? '{}');
const require = createRequire(import.meta.url);
const PubNub = require(cfg.sdk ?? 'pubnub');
const sdkVersion = require(`${cfg.sdk ?? 'pubnub'}/package.json`).version;
const tag = cfg.tag ?? 'js';

let passed = 0;
let failed = 0;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function assert(cond, msg) { if (!cond) throw new Error(msg); }

async function until(what, cond, ms = 10000) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok   ${tag}: ${name}`);
  } catch (e) {
    failed++;
    const st = e?.status ? ` status=${JSON.stringify(e.status)}` : '';
    console.log(`FAIL ${tag}: ${name}: ${e?.message ?? e}${st}`);
  }
}

const clients = [];
function client(base, userId, extra = {}) {
  const pn = new PubNub({
    publishKey: cfg.publishKey,
    subscribeKey: cfg.subscribeKey,
    userId,
    origin: base.replace(/^https?:\/\//, ''),
    ssl: false,
    heartbeatInterval: 0,
    ...extra,
  });
  clients.push(pn);
  return pn;
}

// A subscriber's listener: what it saw.
function listen(pn) {
  const rec = { messages: [], statuses: [] };
  pn.addListener({
    message: (m) => rec.messages.push(m),
    status: (s) => rec.statuses.push(s),
  });
  return rec;
}
const connected = (rec) => rec.statuses.some((s) => s.category === 'PNConnectedCategory' || s.category === 'PNSubscriptionChangedCategory');
const errored = (rec) => rec.statuses.find((s) => s.error || s.category === 'PNAccessDeniedCategory');
const describe = (s) => JSON.stringify({ category: s?.category, error: s?.error, statusCode: s?.statusCode, operation: s?.operation, errorData: s?.errorData?.message ?? s?.errorData });
// accessDenied: the status a subscribe refused by Access Manager gives. The
// legacy subscribe loop reports PNAccessDeniedCategory; the event engine
// (the default in v11 and v12) reports the failed handshake as
// PNConnectionErrorCategory with error: PNAccessDeniedCategory.
const accessDenied = (s) => s?.category === 'PNAccessDeniedCategory' || (s?.category === 'PNConnectionErrorCategory' && s?.error === 'PNAccessDeniedCategory');

// denied awaits p and asserts that it failed as the SDK reports Access
// Manager's 403: PNAccessDeniedCategory. names, if given, must be among the
// denied resources the answer's payload lists.
async function denied(what, p, names = []) {
  let err;
  try {
    await p;
  } catch (e) { err = e; }
  assert(err, `${what}: succeeded; want 403 PNAccessDeniedCategory`);
  const st = err.status ?? {};
  assert(st.statusCode === 403 && st.category === 'PNAccessDeniedCategory', `${what}: got ${describe(st)} (${err.message}); want 403 PNAccessDeniedCategory`);
  const payload = st.errorData?.payload ?? {};
  const listed = [...(payload.channels ?? []), ...(payload['channel-groups'] ?? [])];
  for (const n of names) assert(listed.includes(n), `${what}: the 403 names ${JSON.stringify(listed)}; want ${n} among them (errorData ${JSON.stringify(st.errorData)})`);
}

// subscribeDenied subscribes a fresh client and asserts that the SDK reports
// PNAccessDeniedCategory and no connection.
async function subscribeDenied(what, pn, params) {
  const rec = listen(pn);
  pn.subscribe(params);
  try {
    await until(`${what}: an error status`, () => errored(rec) || connected(rec));
  } finally {
    pn.unsubscribeAll();
  }
  assert(!connected(rec), `${what}: connected; want PNAccessDeniedCategory (statuses ${rec.statuses.map(describe).join(' ')})`);
  const s = errored(rec);
  assert(accessDenied(s), `${what}: got ${describe(s)}; want PNAccessDeniedCategory`);
}

// subscribed subscribes pn and waits until it is connected.
async function subscribed(what, pn, rec, params) {
  pn.subscribe(params);
  await until(`${what}: connected`, () => connected(rec) || errored(rec));
  const s = errored(rec);
  assert(!s, `${what}: ${describe(s)}; want connected`);
}

// canon is JSON with object keys sorted, to compare values whatever the
// order a decoder gave their keys.
const canon = (v) => JSON.stringify(v, (k, x) => (x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).sort(([p], [q]) => (p < q ? -1 : p > q ? 1 : 0))) : x));
const perms = (o) => Object.entries(o ?? {}).filter(([, v]) => v).map(([k]) => k).sort().join('+');

async function main() {
  const room1 = `room-1-${tag}`;
  const room7 = `room-7-${tag}`;
  const roomW = `room-w-${tag}`;
  const grp1 = `grp-1-${tag}`;
  const alice = `alice-${tag}`;
  const server = client(cfg.a, `server-${tag}`, { secretKey: cfg.secretKey });
  const meta = { purpose: 'pam-sdk-test', sdk: tag };
  const grant = {
    ttl: 5,
    authorized_uuid: alice,
    resources: { channels: { [room1]: { read: true, write: true } }, groups: { [grp1]: { read: true } } },
    patterns: { channels: { '^room-.*': { read: true } } },
    meta,
  };
  let token;
  let writeOnly;

  console.log(`${tag}: pubnub ${sdkVersion}`);

  await check('the server client (secret key) adds a channel to a group and grants tokens', async () => {
    await server.channelGroups.addChannels({ channelGroup: grp1, channels: [room1] });
    const r = await server.channelGroups.listChannels({ channelGroup: grp1 });
    assert(JSON.stringify(r.channels) === JSON.stringify([room1]), `group lists ${JSON.stringify(r.channels)}`);
    token = await server.grantToken(grant);
    assert(typeof token === 'string' && token.length > 20, `grantToken returned ${JSON.stringify(token)}`);
    writeOnly = await server.grantToken({ ttl: 5, resources: { channels: { [roomW]: { write: true } } } });
    assert(typeof writeOnly === 'string' && writeOnly !== token, `write-only grantToken returned ${JSON.stringify(writeOnly)}`);
  });
  if (!token) return;

  await check('parseToken shows the permissions granted', async () => {
    const p = server.parseToken(token);
    assert(p, 'parseToken returned nothing');
    const got = {
      ttl: p.ttl,
      authorized_uuid: p.authorized_uuid,
      channels: Object.fromEntries(Object.entries(p.resources?.channels ?? {}).map(([k, v]) => [k, perms(v)])),
      groups: Object.fromEntries(Object.entries(p.resources?.groups ?? {}).map(([k, v]) => [k, perms(v)])),
      uuids: Object.keys(p.resources?.uuids ?? {}),
      patternChannels: Object.fromEntries(Object.entries(p.patterns?.channels ?? {}).map(([k, v]) => [k, perms(v)])),
      patternGroups: Object.keys(p.patterns?.groups ?? {}),
      meta: p.meta,
    };
    const want = {
      ttl: 5,
      authorized_uuid: alice,
      channels: { [room1]: 'read+write' },
      groups: { [grp1]: 'read' },
      uuids: [],
      patternChannels: { '^room-.*': 'read' },
      patternGroups: [],
      meta,
    };
    assert(canon(got) === canon(want), `parseToken: got ${canon(got)}; want ${canon(want)}`);
    assert(p.version === 2 && Math.abs(p.timestamp - Date.now() / 1000) < 300, `version ${p.version}, timestamp ${p.timestamp}`);
    const w = server.parseToken(writeOnly);
    assert(perms(w?.resources?.channels?.[roomW]) === 'write', `write-only token: ${JSON.stringify(w?.resources)}`);
  });

  await check('without a token: publish is denied (403, PNAccessDeniedCategory)', async () => {
    const pn = client(cfg.a, alice);
    await denied('publish without a token', pn.publish({ channel: room1, message: { n: 'no-token' } }), [room1]);
  });

  await check('without a token: subscribe to the group is denied (event engine and legacy loop)', async () => {
    await subscribeDenied('subscribe without a token (event engine)', client(cfg.a, alice), { channelGroups: [grp1] });
    await subscribeDenied('subscribe without a token (legacy loop)', client(cfg.a, alice, { enableEventEngine: false }), { channelGroups: [grp1] });
  });

  await check('without a token: channel-group add is denied and changes nothing', async () => {
    const pn = client(cfg.a, alice);
    await denied('channel-group add without a token', pn.channelGroups.addChannels({ channelGroup: grp1, channels: [`${room1}-intruder`] }), [grp1]);
    const r = await server.channelGroups.listChannels({ channelGroup: grp1 });
    assert(JSON.stringify(r.channels) === JSON.stringify([room1]), `group lists ${JSON.stringify(r.channels)} after a denied add`);
  });

  await check('with setToken: subscribes to the granted group and receives its own publish to the granted channel', async () => {
    const pn = client(cfg.a, alice);
    pn.setToken(token);
    assert(pn.getToken() === token, 'getToken differs from setToken');
    const rec = listen(pn);
    try {
      await subscribed('subscribe to the group with the token', pn, rec, { channelGroups: [grp1] });
      const r = await pn.publish({ channel: room1, message: { n: 'with-token' } });
      assert(String(r.timetoken).length === 17, `publish timetoken ${r.timetoken}`);
      await until('the message through the group', () => rec.messages.some((m) => m.message?.n === 'with-token'));
      const m = rec.messages.find((x) => x.message?.n === 'with-token');
      assert(m.channel === room1 && m.subscription === grp1, `delivered on channel ${m.channel} subscription ${m.subscription}`);
    } finally {
      pn.unsubscribeAll();
    }
  });

  await check('the token is bound to its authorized uuid: another uuid is denied', async () => {
    const pn = client(cfg.a, `mallory-${tag}`);
    pn.setToken(token);
    await denied('publish with another uuid', pn.publish({ channel: room1, message: { n: 'mallory' } }));
  });

  await check('a write-only token publishes but cannot subscribe', async () => {
    const pn = client(cfg.a, `writer-${tag}`);
    pn.setToken(writeOnly);
    const r = await pn.publish({ channel: roomW, message: { n: 'write-only' } });
    assert(String(r.timetoken).length === 17, `publish timetoken ${r.timetoken}`);
    const sub = client(cfg.a, `writer-${tag}`);
    sub.setToken(writeOnly);
    await subscribeDenied('subscribe with a write-only token', sub, { channels: [roomW] });
  });

  await check('a pattern grant (^room-.*) lets the token subscribe to room-7', async () => {
    const pn = client(cfg.a, alice);
    pn.setToken(token);
    const rec = listen(pn);
    try {
      await subscribed('subscribe to room-7 by pattern', pn, rec, { channels: [room7] });
      await server.publish({ channel: room7, message: { n: 'pattern' } });
      await until('the message on room-7', () => rec.messages.some((m) => m.channel === room7 && m.message?.n === 'pattern'));
    } finally {
      pn.unsubscribeAll();
    }
    // Read by pattern is not write: publishing to room-7 is denied.
    await denied('publish to room-7 (read-only by pattern)', pn.publish({ channel: room7, message: { n: 'nope' } }), [room7]);
  });

  await check('revokeToken: the next request at node A and node B (within 2 s) is denied', async () => {
    const a = client(cfg.a, alice);
    a.setToken(token);
    const b = client(cfg.b, alice);
    b.setToken(token);
    await a.publish({ channel: room1, message: { n: 'before-revoke-a' } });
    await b.publish({ channel: room1, message: { n: 'before-revoke-b' } });
    await server.revokeToken(token);
    const revokedAt = Date.now();
    await denied('publish at node A after revoke', a.publish({ channel: room1, message: { n: 'after-revoke-a' } }));
    await subscribeDenied('subscribe at node A after revoke', (() => { const c = client(cfg.a, alice); c.setToken(token); return c; })(), { channelGroups: [grp1] });
    // Node B learns of the revocation from the store within its registry's
    // poll. A 403 to a publish at B may be the verdict of the node B
    // forwards the publish to, so B is polled until it refuses both a
    // publish and a subscribe.
    const deadline = revokedAt + 2000;
    for (;;) {
      const pending = await stillAcceptedAtB(b);
      if (!pending) {
        console.log(`${tag}: node B refused the revoked token ${Date.now() - revokedAt} ms after the revoke`);
        break;
      }
      assert(Date.now() < deadline, `node B still answers: ${pending} 2 s after the revoke`);
      await sleep(50);
    }
  });

  // stillAcceptedAtB describes what node B still accepts with the revoked
  // token (a publish, a subscribe), or is empty once it refuses both.
  async function stillAcceptedAtB(b) {
    try {
      await b.publish({ channel: room1, message: { n: 'after-revoke-b' } });
      return 'publish accepted';
    } catch (e) {
      if (!(e.status?.statusCode === 403 && e.status?.category === 'PNAccessDeniedCategory')) return `publish ${describe(e.status)}`;
    }
    const sub = client(cfg.b, alice);
    sub.setToken(token);
    const rec = listen(sub);
    sub.subscribe({ channelGroups: [grp1] });
    try {
      await until('subscribe at node B: a status', () => errored(rec) || connected(rec));
    } finally {
      sub.unsubscribeAll();
    }
    if (connected(rec)) return 'subscribe connected';
    const s = errored(rec);
    return accessDenied(s) ? '' : `subscribe ${describe(s)}`;
  }

  await check('an expired token is denied (the same token issued now is accepted)', async () => {
    assert(cfg.expiredToken && cfg.currentToken, 'no expiredToken or currentToken in the configuration');
    const p = server.parseToken(cfg.expiredToken);
    assert(p && p.timestamp + p.ttl * 60 < Date.now() / 1000, `the expired token parses as ${JSON.stringify(p)}`);
    const ok = client(cfg.a, alice);
    ok.setToken(cfg.currentToken);
    await ok.publish({ channel: room1, message: { n: 'current' } });
    const pn = client(cfg.a, alice);
    pn.setToken(cfg.expiredToken);
    await denied('publish with an expired token', pn.publish({ channel: room1, message: { n: 'expired' } }));
  });
}

try {
  await main();
} catch (e) {
  failed++;
  console.log(`FAIL ${tag}: ${e?.stack ?? e}`);
}
for (const pn of clients) {
  pn.unsubscribeAll?.();
  pn.stop?.();
  pn.destroy?.();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
