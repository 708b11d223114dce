// Official PubNub SDK conformance: drives a running groupcastd with the npm
// `pubnub` package, in the event-engine mode and the legacy subscribe loop.
//   node conformance.mjs http://127.0.0.1:8080
// Prints each check and "N passed, M failed"; exits non-zero if any failed.
import PubNub from 'pubnub';

const base = process.argv[2] ?? 'http://127.0.0.1:8080';
// Metrics are on the node's admin listener.
const admin = process.argv[3] ?? 'http://127.0.0.1:8081';
const origin = base.replace(/^https?:\/\//, '');
let passed = 0;
let failed = 0;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function assert(cond, msg) { if (!cond) throw new Error(msg); }

async function until(what, cond, ms = 10000) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e?.message ?? e} ${e?.status ? JSON.stringify(e.status) : ''}`);
  }
}

async function metric(sample) {
  const body = await (await fetch(`${admin}/metrics`)).text();
  const line = body.split('\n').find((l) => l.startsWith(sample + ' '));
  return line ? Number(line.split(' ')[1]) : 0;
}

function client(eventEngine, tag) {
  return new PubNub({
    publishKey: 'pub-demo',
    subscribeKey: 'demo',
    userId: `sdk-${tag}-${Date.now()}`,
    origin,
    ssl: false,
    enableEventEngine: eventEngine,
    heartbeatInterval: 0,
    logVerbosity: false,
  });
}

// A subscriber that records messages and statuses.
function listen(pn) {
  const rec = { messages: [], statuses: [] };
  pn.addListener({
    message: (m) => rec.messages.push(m),
    status: (s) => rec.statuses.push(s),
  });
  return rec;
}

const connected = (rec) => rec.statuses.some((s) => s.category === 'PNConnectedCategory' || s.category === 'PNSubscriptionChangedCategory');

async function suite(eventEngine) {
  const mode = eventEngine ? 'event-engine' : 'legacy';
  const run = `${mode}-${Date.now()}`;
  const pn = client(eventEngine, mode);
  const group = `g-${run}`;
  const ch = (n) => `c-${run}-${n}`;

  await check(`${mode}: time`, async () => {
    const r = await pn.time();
    assert(String(r.timetoken).length === 17, `timetoken ${r.timetoken}`);
  });

  await check(`${mode}: add, list, remove channels; list and delete groups`, async () => {
    await pn.channelGroups.addChannels({ channelGroup: group, channels: [ch(1), ch(2), ch(3)] });
    let r = await pn.channelGroups.listChannels({ channelGroup: group });
    assert(JSON.stringify(r.channels.sort()) === JSON.stringify([ch(1), ch(2), ch(3)].sort()), `list ${JSON.stringify(r.channels)}`);
    const groups = await pn.channelGroups.listGroups();
    assert(groups.groups.includes(group), `groups ${JSON.stringify(groups.groups)}`);
    await pn.channelGroups.removeChannels({ channelGroup: group, channels: [ch(3)] });
    r = await pn.channelGroups.listChannels({ channelGroup: group });
    assert(r.channels.length === 2 && !r.channels.includes(ch(3)), `after remove ${JSON.stringify(r.channels)}`);
    const tmp = `${group}-tmp`;
    await pn.channelGroups.addChannels({ channelGroup: tmp, channels: [ch(9)] });
    await pn.channelGroups.deleteGroup({ channelGroup: tmp });
    const after = await pn.channelGroups.listGroups();
    assert(!after.groups.includes(tmp), 'deleted group still listed');
  });

  await check(`${mode}: invalid names are rejected with an error the SDK reports`, async () => {
    let err;
    try {
      await pn.channelGroups.addChannels({ channelGroup: 'bad:group', channels: ['x'] });
    } catch (e) { err = e; }
    assert(err, 'no error');
    assert(err.status?.statusCode === 400, `status ${JSON.stringify(err.status)}`);
  });

  // Subscriber on channel 0 directly and on the group (channels 1 and 2).
  const sub = client(eventEngine, `${mode}-sub`);
  const rec = listen(sub);
  sub.subscribe({ channels: [ch(0)], channelGroups: [group] });

  await check(`${mode}: subscribe to channels and groups connects`, async () => {
    await until('connected status', () => connected(rec));
  });

  await check(`${mode}: publish by GET and by POST is delivered`, async () => {
    const a = await pn.publish({ channel: ch(0), message: { n: 'get' } });
    const b = await pn.publish({ channel: ch(0), message: { n: 'post' }, sendByPost: true });
    assert(String(a.timetoken).length === 17 && String(b.timetoken).length === 17, 'publish timetokens');
    await until('both messages', () => rec.messages.filter((m) => m.channel === ch(0)).length >= 2);
    const got = rec.messages.filter((m) => m.channel === ch(0)).map((m) => m.message.n);
    assert(JSON.stringify(got) === '["get","post"]', `got ${JSON.stringify(got)}`);
  });

  await check(`${mode}: a message on a group's channel arrives through the group`, async () => {
    await pn.publish({ channel: ch(1), message: 'in group' });
    await until('group message', () => rec.messages.some((m) => m.channel === ch(1)));
    const m = rec.messages.find((m) => m.channel === ch(1));
    assert(m.subscription === group, `subscription ${m.subscription}`);
  });

  await check(`${mode}: a channel added while subscribed is delivered`, async () => {
    await pn.channelGroups.addChannels({ channelGroup: group, channels: [ch(5)] });
    await pn.publish({ channel: ch(5), message: 'added' });
    await until('message on the added channel', () => rec.messages.some((m) => m.channel === ch(5)));
  });

  await check(`${mode}: a removed channel is not delivered`, async () => {
    await pn.channelGroups.removeChannels({ channelGroup: group, channels: [ch(2)] });
    await pn.publish({ channel: ch(2), message: 'removed' });
    await pn.publish({ channel: ch(1), message: 'marker' });
    await until('the marker after it', () => rec.messages.some((m) => m.message === 'marker'));
    assert(!rec.messages.some((m) => m.message === 'removed'), 'message on a removed channel delivered');
  });

  await check(`${mode}: a 100-message burst arrives once each, in order`, async () => {
    for (let i = 0; i < 100; i++) await pn.publish({ channel: ch(0), message: { burst: i } });
    await until('100 burst messages', () => rec.messages.filter((m) => m.message?.burst !== undefined).length >= 100, 20000);
    await sleep(200);
    const seq = rec.messages.filter((m) => m.message?.burst !== undefined).map((m) => m.message.burst);
    assert(seq.length === 100, `${seq.length} messages`);
    seq.forEach((v, i) => assert(v === i, `position ${i} holds ${v}`));
  });

  await check(`${mode}: history returns published messages`, async () => {
    const r = await pn.fetchMessages({ channels: [ch(0)], count: 25 });
    const list = r.channels[ch(0)] ?? [];
    assert(list.length === 25, `${list.length} messages`);
    assert(list[list.length - 1].message.burst === 99, `last ${JSON.stringify(list[list.length - 1])}`);
  });

  await check(`${mode}: unsubscribe sends leave and gets OK`, async () => {
    const before = await metric('groupcast_http_requests_total{code="200",endpoint="leave"}');
    sub.unsubscribeAll();
    let after = before;
    const deadline = Date.now() + 10000;
    while (after <= before && Date.now() < deadline) {
      await sleep(20);
      after = await metric('groupcast_http_requests_total{code="200",endpoint="leave"}');
    }
    assert(after > before, 'no leave answered 200');
  });
  sub.stop?.();
  sub.destroy?.();
  pn.destroy?.();
}

await suite(true);
await suite(false);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
