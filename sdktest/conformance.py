"""Official PubNub Python SDK conformance: drives a running groupcastd with
the PyPI `pubnub` package (pinned in requirements.txt), synchronously where
the SDK allows (.sync()) and through its threaded subscribe loop.

    sdktest/.venv/bin/python sdktest/conformance.py http://127.0.0.1:8080

Prints each check and "N passed, M failed"; exits non-zero if any failed.
The Python SDK is stricter about JSON types than the JavaScript one: /time/0
must answer a number, history v2 numbers for its timetokens, a publish
timetoken must parse as an int, subscribe envelopes must carry f, k, p.t and
p.r, presence occupancy and timestamp must be ints. Deliveries are awaited on
a condition with a deadline, never by sleeping.
"""

import sys
import threading
import time
import traceback

from pubnub.callbacks import SubscribeCallback
from pubnub.enums import PNOperationType, PNStatusCategory
from pubnub.exceptions import PubNubException
from pubnub.pnconfiguration import PNConfiguration
from pubnub.pubnub import PubNub

BASE = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
ORIGIN = BASE.split("://", 1)[-1].rstrip("/")
WAIT = 10  # seconds a request or delivery may take (the SDK wants an int)
RUN = f"py-{time.time_ns()}"

passed = 0
failed = 0


def check(name, fn):
    global passed, failed
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - any failure is the check's
        failed += 1
        status = getattr(e, "status", None)
        code = getattr(status, "status_code", None) if status is not None else None
        where = traceback.extract_tb(e.__traceback__)[-1]
        print(f"FAIL {name}: {type(e).__name__}: {e or f'at {where.filename}:{where.lineno}'}"
              + (f" (HTTP {code})" if code else ""), flush=True)
    else:
        passed += 1
        print(f"ok   {name}", flush=True)


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def is_timetoken(v):
    return isinstance(v, int) and len(str(v)) == 17


def client(tag):
    cfg = PNConfiguration()
    cfg.subscribe_key = "demo"
    cfg.publish_key = "demo"
    cfg.user_id = f"{RUN}-{tag}"
    cfg.origin = ORIGIN
    cfg.ssl = False
    cfg.non_subscribe_request_timeout = WAIT
    cfg.daemon = True
    return PubNub(cfg)


class Recorder(SubscribeCallback):
    """Records what a subscriber's listener sees; waits on a condition."""

    def __init__(self):
        self.cond = threading.Condition()
        self.msgs, self.sigs, self.pres, self.stats = [], [], [], []

    def _add(self, lst, v):
        with self.cond:
            lst.append(v)
            self.cond.notify_all()

    def status(self, pubnub, status):
        self._add(self.stats, status)

    def message(self, pubnub, message):
        self._add(self.msgs, message)

    def signal(self, pubnub, signal):
        self._add(self.sigs, signal)

    def presence(self, pubnub, presence):
        self._add(self.pres, presence)

    def wait(self, what, pred, timeout=WAIT):
        with self.cond:
            if not self.cond.wait_for(pred, timeout):
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def find(self, lst, pred):
        with self.cond:
            return [v for v in lst if pred(v)]

    def errors(self):
        return [f"{s.category} {s.error_data.information if s.error_data else ''}"
                for s in self.find(self.stats, lambda s: s.is_error())]


def poll(what, fn, timeout=WAIT):
    """Calls fn until it returns a true value, at most timeout seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        pause.wait(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last {last!r})")


def main():
    pn = client("pub")
    sub = client("sub")
    joiner = client("joiner")
    watcher = client("watcher")
    group = f"g-{RUN}"

    def ch(n):
        return f"c-{RUN}-{n}"

    def t_time():
        r = pn.time().sync().result
        expect(isinstance(r.value_as_int, int), f"/time/0 answered {r.server_response!r}: the SDK wants a JSON number")
        tt = int(r)
        expect(is_timetoken(tt), f"timetoken {tt}")
        expect(abs(tt - time.time_ns() // 100) < 5 * 60 * 10**7, f"timetoken {tt} is not 100 ns units of now")
    check("time returns an int timetoken", t_time)

    def listed(g):
        return sorted(pn.list_channels_in_channel_group().channel_group(g).sync().result.channels)

    def t_groups():
        pn.add_channel_to_channel_group().channels([ch(1), ch(2), ch(3)]).channel_group(group).sync()
        got = listed(group)
        expect(got == sorted([ch(1), ch(2), ch(3)]), f"list after add {got}")
        pn.remove_channel_from_channel_group().channels([ch(3)]).channel_group(group).sync()
        got = listed(group)
        expect(got == sorted([ch(1), ch(2)]), f"list after remove {got}")
        tmp = f"{group}-tmp"
        pn.add_channel_to_channel_group().channels(ch(9)).channel_group(tmp).sync()
        pn.remove_channel_group().channel_group(tmp).sync()
        got = listed(tmp)
        expect(got == [], f"list of a removed group {got}")
    check("channel groups: add, list, remove channels, remove group", t_groups)

    def t_bad_group():
        try:
            pn.add_channel_to_channel_group().channels("x").channel_group("bad:group").sync()
        except PubNubException as e:
            expect(e.get_status_code() == 400, f"status {e.get_status_code()}: {e}")
            expect("invalid group name" in str(e), f"message {e}")
            return
        raise AssertionError("no error")
    check("an invalid group name is refused with a 400 the SDK reports", t_bad_group)

    # One subscribe call each: a second call races the SDK's own subscribe
    # thread over its subscription dicts ("dictionary changed size during
    # iteration"). Presence is watched by a client of its own because
    # with_presence() on a group subscribes to "<group>-pnpres", which
    # groupcast does not serve (an empty group: 400).
    rec, prec = Recorder(), Recorder()
    sub.add_listener(rec)
    watcher.add_listener(prec)
    sub.subscribe().channels(ch(0)).channel_groups(group).execute()
    watcher.subscribe().channels(ch(0)).with_presence().execute()

    def t_connect():
        for r in (rec, prec):
            r.wait("PNConnectedCategory", lambda: any(s.category == PNStatusCategory.PNConnectedCategory for s in r.stats))
            expect(not r.errors(), f"subscribe errors {r.errors()}")
    check("subscribe to a channel and a channel group, and to a channel with presence, connects", t_connect)

    def delivered(channel, pred):
        rec.wait(f"a message on {channel}", lambda: any(m.channel == channel and pred(m.message) for m in rec.msgs))
        return rec.find(rec.msgs, lambda m: m.channel == channel and pred(m.message))

    def t_publish_get():
        tt = pn.publish().channel(ch(0)).message({"n": "get"}).sync().result.timetoken
        expect(is_timetoken(tt), f"publish timetoken {tt!r}")
        (m,) = delivered(ch(0), lambda v: v == {"n": "get"})
        expect(m.timetoken == tt, f"delivered timetoken {m.timetoken}, published {tt}")
        expect(m.publisher == pn.uuid, f"publisher {m.publisher!r}")
        expect(m.subscription is None, f"subscription {m.subscription!r} for a channel subscribed by name")
    check("publish by GET returns a timetoken and is delivered", t_publish_get)

    def t_publish_post():
        tt = pn.publish().channel(ch(0)).message({"n": "post"}).use_post(True).sync().result.timetoken
        expect(is_timetoken(tt), f"publish timetoken {tt!r}")
        delivered(ch(0), lambda v: v == {"n": "post"})
        # Compressed: zlib bytes labelled Content-Encoding: gzip.
        tt = pn.publish().channel(ch(0)).message({"n": "zip"}).use_post(True).use_compression(True).sync().result.timetoken
        expect(is_timetoken(tt), f"compressed publish timetoken {tt!r}")
        delivered(ch(0), lambda v: v == {"n": "zip"})
    check("publish by POST, plain and compressed, is delivered", t_publish_post)

    def t_meta():
        pn.publish().channel(ch(0)).message("with meta").meta({"k": "v"}).custom_message_type("note").sync()
        (m,) = delivered(ch(0), lambda v: v == "with meta")
        expect(m.user_metadata == {"k": "v"}, f"meta {m.user_metadata!r}")
        expect(m.custom_message_type == "note", f"custom message type {m.custom_message_type!r}")
    check("meta and custom message type arrive with the message", t_meta)

    def t_group():
        pn.publish().channel(ch(1)).message("in group").sync()
        (m,) = delivered(ch(1), lambda v: v == "in group")
        expect(m.subscription == group, f"subscription {m.subscription!r}, want {group!r}")
    check("a message on a group's channel arrives through the group", t_group)

    def t_added():
        pn.add_channel_to_channel_group().channels(ch(5)).channel_group(group).sync()
        pn.publish().channel(ch(5)).message("added").sync()
        delivered(ch(5), lambda v: v == "added")
    check("a channel added while subscribed is delivered", t_added)

    def t_removed():
        pn.remove_channel_from_channel_group().channels(ch(2)).channel_group(group).sync()
        pn.publish().channel(ch(2)).message("removed").sync()
        pn.publish().channel(ch(1)).message("marker").sync()
        delivered(ch(1), lambda v: v == "marker")
        expect(not rec.find(rec.msgs, lambda m: m.message == "removed"), "message on a removed channel delivered")
    check("a removed channel is not delivered", t_removed)

    def t_signal():
        r = pn.signal().channel(ch(0)).message("sig").sync().result
        expect(is_timetoken(int(r.timetoken)), f"signal timetoken {r.timetoken!r}")
        rec.wait("the signal", lambda: any(s.channel == ch(0) and s.message == "sig" for s in rec.sigs))
        expect(not rec.find(rec.msgs, lambda m: m.message == "sig"), "signal delivered as a message")
    check("a signal arrives as a signal", t_signal)

    def t_burst():
        for i in range(100):
            pn.publish().channel(ch(0)).message({"burst": i}).sync()
        rec.wait("100 burst messages", lambda: len([m for m in rec.msgs if isinstance(m.message, dict) and "burst" in m.message]) >= 100, 20)
        seq = [m.message["burst"] for m in rec.find(rec.msgs, lambda m: isinstance(m.message, dict) and "burst" in m.message)]
        expect(seq == list(range(100)), f"burst arrived as {seq}")
    check("a 100-message burst arrives once each, in order", t_burst)

    def t_fetch():
        r = pn.fetch_messages().channels(ch(0)).maximum_per_channel(25).include_meta(True).sync().result
        items = r.channels.get(ch(0), [])
        expect(len(items) == 25, f"{len(items)} messages")
        expect(items[-1].message == {"burst": 99}, f"last {items[-1].message!r}")
        expect(is_timetoken(int(items[-1].timetoken)), f"timetoken {items[-1].timetoken!r}")
        r = pn.fetch_messages().channels([ch(0), ch(1)]).sync().result
        expect([i.message for i in r.channels.get(ch(1), [])] == ["in group", "marker"], f"{ch(1)}: {[i.message for i in r.channels.get(ch(1), [])]}")
    check("fetch_messages (v3) returns published messages", t_fetch)

    def t_history():
        r = pn.history().channel(ch(1)).count(10).include_timetoken(True).sync().result
        got = [(i.entry, is_timetoken(i.timetoken)) for i in r.messages]
        expect(got == [("in group", True), ("marker", True)], f"history {[(i.entry, i.timetoken) for i in r.messages]!r}")
        expect(is_timetoken(r.start_timetoken) and is_timetoken(r.end_timetoken), f"start {r.start_timetoken!r} end {r.end_timetoken!r}")
        str(r)  # the SDK formats start and end with %d
    check("history (v2) returns published messages with timetokens", t_history)

    def t_here_now():
        def present():
            r = pn.here_now().channels(ch(0)).sync().result
            uuids = [o.uuid for c in r.channels for o in (c.occupants or [])]
            return sub.uuid in uuids and r.total_occupancy >= 1 and (r, uuids)
        poll(f"{sub.uuid} in here_now", present)
    check("here_now lists the subscriber", t_here_now)

    def t_heartbeat():
        expect(pn.heartbeat().channels(ch(8)).sync().result is True, "heartbeat not OK")

        def present():
            r = pn.here_now().channels(ch(8)).sync().result
            return pn.uuid in [o.uuid for c in r.channels for o in (c.occupants or [])]
        poll(f"{pn.uuid} in here_now after its heartbeat", present)
    check("a heartbeat is answered and makes its sender present", t_heartbeat)

    def t_presence():
        jr = Recorder()
        joiner.add_listener(jr)
        joiner.subscribe().channels(ch(0)).execute()
        jr.wait("the joiner's connected status", lambda: any(s.category == PNStatusCategory.PNConnectedCategory for s in jr.stats))
        prec.wait("a join event", lambda: any(p.event == "join" and p.uuid == joiner.uuid for p in prec.pres))
        (p,) = prec.find(prec.pres, lambda p: p.event == "join" and p.uuid == joiner.uuid)
        expect(p.channel == ch(0) and isinstance(p.occupancy, int) and p.occupancy >= 2, f"join on {p.channel} occupancy {p.occupancy!r}")
        expect(isinstance(p.timestamp, int) and is_timetoken(p.timetoken), f"timestamp {p.timestamp!r} timetoken {p.timetoken!r}")
        joiner.unsubscribe_all()
        prec.wait("a leave event", lambda: any(p.event == "leave" and p.uuid == joiner.uuid for p in prec.pres))
    check("presence join and leave events arrive", t_presence)

    def t_leave():
        sub.unsubscribe_all()
        rec.wait("the leave's status", lambda: any(s.operation == PNOperationType.PNUnsubscribeOperation for s in rec.stats))
        (s,) = rec.find(rec.stats, lambda s: s.operation == PNOperationType.PNUnsubscribeOperation)
        expect(not s.is_error() and s.status_code == 200, f"leave: error={s.is_error()} status {s.status_code}")
    check("unsubscribe sends leave and gets OK", t_leave)

    for c in (sub, watcher, joiner, pn):
        c.stop()


if __name__ == "__main__":
    main()
    print(f"{passed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed else 0)
