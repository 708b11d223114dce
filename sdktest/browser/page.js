// The page's part of the real-browser Access Manager test. Its query names
// the node (node=host:port), the keyset's publish and subscribe keys, a
// token, a group, a channel of the group, a channel to add to the group, a
// uuid and a nonce. With the token it subscribes to the group, publishes the
// nonce to the channel, waits for it to arrive, adds the channel to the
// group and fetches /time/0 itself. What it saw goes to window.__result;
// __result.done is set last. It asserts nothing: sdktest/browser.mjs does.
(async () => {
  const q = new URLSearchParams(location.search);
  const r = {
    origin: location.origin, statuses: [], messages: [], errors: {},
    connected: false, received: false, published: null, added: false, time: null, done: false,
  };
  window.__result = r;
  const sleep = (ms) => new Promise((f) => setTimeout(f, ms));
  const until = async (cond, ms) => {
    const deadline = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > deadline) return false;
      await sleep(10);
    }
    return true;
  };
  const note = (what, e) => {
    r.errors[what] = { message: String(e?.message ?? e), category: e?.status?.category ?? null, statusCode: e?.status?.statusCode ?? null };
  };
  try {
    if (typeof PubNub !== 'function') throw new Error('the PubNub web SDK bundle did not load');
    const pn = new PubNub({
      publishKey: q.get('pub'), subscribeKey: q.get('sub'), userId: q.get('uuid'),
      origin: q.get('node'), ssl: false, heartbeatInterval: 0,
    });
    r.version = pn.getVersion?.() ?? null;
    pn.setToken(q.get('token'));
    pn.addListener({
      status: (s) => r.statuses.push({ category: s.category, statusCode: s.statusCode ?? null, error: !!s.error }),
      message: (m) => r.messages.push({ channel: m.channel, subscription: m.subscription, message: m.message }),
    });
    pn.subscribe({ channelGroups: [q.get('group')] });
    await until(() => r.statuses.some((s) => s.category === 'PNConnectedCategory' || s.error), 5000);
    r.connected = r.statuses.some((s) => s.category === 'PNConnectedCategory');
    try {
      const p = await pn.publish({ channel: q.get('channel'), message: { n: q.get('nonce') } });
      r.published = String(p.timetoken);
    } catch (e) { note('publish', e); }
    if (r.connected) r.received = await until(() => r.messages.some((m) => m.message?.n === q.get('nonce')), 5000);
    try {
      await pn.channelGroups.addChannels({ channelGroup: q.get('group'), channels: [q.get('add')] });
      r.added = true;
    } catch (e) { note('add', e); }
    try {
      const resp = await fetch(`http://${q.get('node')}/time/0`);
      r.time = `${resp.status} ${await resp.text()}`;
    } catch (e) { note('fetch', e); }
    pn.unsubscribeAll();
    pn.stop?.();
  } catch (e) {
    r.fatal = String(e?.stack ?? e);
  }
  r.done = true;
  document.getElementById('state').textContent = 'done';
})();
