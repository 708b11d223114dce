"""Access Manager v3 with the official PubNub Python SDK: drives two
groupcastd nodes in --access keysets mode through the PyPI `pubnub` package
(pinned in requirements.txt). The Go test cmd/groupcastd TestPAMWithSDKs runs
it with one JSON argument:

    sdktest/.venv/bin/python sdktest/pam.py '{"tag":"python","a":"http://127.0.0.1:P",
        "b":"http://127.0.0.1:Q","publishKey":"…","subscribeKey":"…","secretKey":"…",
        "expiredToken":"…"}'

A server client (with the secret key, so every request is signed) grants
tokens and revokes them; clients without the secret key use them. Prints each
check and "N passed, M failed"; exits non-zero if any failed. Deliveries and
answers are awaited on a condition with a deadline, never by sleeping.
"""

import json
import sys
import threading
import time
import traceback
from importlib.metadata import version

from pubnub.callbacks import SubscribeCallback
from pubnub.enums import PNStatusCategory
from pubnub.models.consumer.v3.channel import Channel
from pubnub.models.consumer.v3.group import Group
from pubnub.pnconfiguration import PNConfiguration
from pubnub.pubnub import PubNub

CFG = json.loads(sys.argv[1] if len(sys.argv) > 1 else "{}")
TAG = CFG.get("tag", "python")
WAIT = 10  # seconds an answer or a delivery may take

passed = 0
failed = 0
clients = []


def check(name, fn):
    global passed, failed
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - any failure is the check's
        failed += 1
        where = traceback.extract_tb(e.__traceback__)[-1]
        if not isinstance(e, AssertionError):
            traceback.print_exc(file=sys.stdout)
        print(f"FAIL {TAG}: {name}: {type(e).__name__}: {e or f'at {where.filename}:{where.lineno}'}", flush=True)
    else:
        passed += 1
        print(f"ok   {TAG}: {name}", flush=True)


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def client(base, user_id, secret=None):
    cfg = PNConfiguration()
    cfg.subscribe_key = CFG["subscribeKey"]
    cfg.publish_key = CFG["publishKey"]
    if secret:
        cfg.secret_key = secret
    cfg.user_id = user_id
    cfg.origin = base.split("://", 1)[-1].rstrip("/")
    cfg.ssl = False
    cfg.non_subscribe_request_timeout = WAIT
    cfg.daemon = True
    pn = PubNub(cfg)
    clients.append(pn)
    return pn


class Recorder(SubscribeCallback):
    """Records what a subscriber's listener sees; waits on a condition."""

    def __init__(self):
        self.cond = threading.Condition()
        self.msgs, self.stats = [], []

    def _add(self, lst, v):
        with self.cond:
            lst.append(v)
            self.cond.notify_all()

    def status(self, pubnub, status):
        self._add(self.stats, status)

    def message(self, pubnub, message):
        self._add(self.msgs, message)

    def wait(self, what, pred, timeout=WAIT):
        with self.cond:
            if not self.cond.wait_for(pred, timeout):
                raise AssertionError(f"timed out after {timeout}s waiting for {what} (statuses {self.described()})")

    def connected(self):
        return any(s.category == PNStatusCategory.PNConnectedCategory for s in self.stats)

    def errored(self):
        return next((s for s in self.stats if s.is_error() or s.category == PNStatusCategory.PNAccessDeniedCategory), None)

    def described(self):
        return [describe(s) for s in self.stats]


def describe(s):
    if s is None:
        return "no status"
    body = s.error_data.exception._errormsg if s.error_data and hasattr(s.error_data.exception, "_errormsg") else ""
    return f"{s.category} HTTP {s.status_code} {body}".strip()


def answer(endpoint):
    """Sends a request and returns (result, status), errors included."""
    done = threading.Event()
    out = {}

    def cb(result, status):
        out["r"], out["s"] = result, status
        done.set()

    endpoint.pn_async(cb)
    if not done.wait(WAIT):
        raise AssertionError(f"no answer within {WAIT}s")
    return out["r"], out["s"]


def denied(what, endpoint, names=()):
    """Asserts the request fails as the SDK reports Access Manager's 403:
    PNAccessDeniedCategory, the payload naming each of names."""
    _, s = answer(endpoint)
    expect(s.is_error(), f"{what}: succeeded; want 403 PNAccessDeniedCategory")
    expect(s.status_code == 403 and s.category == PNStatusCategory.PNAccessDeniedCategory,
           f"{what}: got {describe(s)}; want 403 PNAccessDeniedCategory")
    try:
        payload = json.loads(s.error_data.exception._errormsg).get("payload", {})
    except (ValueError, AttributeError) as e:
        raise AssertionError(f"{what}: the 403's body is not JSON: {describe(s)}") from e
    listed = payload.get("channels", []) + payload.get("channel-groups", [])
    for n in names:
        expect(n in listed, f"{what}: the 403 names {listed}; want {n} among them")


def subscribe_denied(what, pn, channels=(), groups=()):
    rec = Recorder()
    pn.add_listener(rec)
    pn.subscribe().channels(list(channels)).channel_groups(list(groups)).execute()
    rec.wait(f"{what}: an error status", lambda: rec.errored() is not None or rec.connected())
    # On PNAccessDeniedCategory the SDK unsubscribes by itself (and a second
    # unsubscribe_all raises KeyError for a group), so only a connected
    # subscriber is unsubscribed here.
    if rec.connected():
        pn.unsubscribe_all()
    expect(not rec.connected(), f"{what}: connected; want PNAccessDeniedCategory ({rec.described()})")
    s = rec.errored()
    expect(s.category == PNStatusCategory.PNAccessDeniedCategory, f"{what}: got {describe(s)}; want PNAccessDeniedCategory")


def subscribed(what, pn, rec, channels=(), groups=()):
    pn.add_listener(rec)
    pn.subscribe().channels(list(channels)).channel_groups(list(groups)).execute()
    rec.wait(f"{what}: connected", lambda: rec.connected() or rec.errored() is not None)
    expect(rec.errored() is None, f"{what}: {describe(rec.errored())}; want connected")


def perms(p):
    return "+".join(sorted(k for k, v in p.items() if v))


def main():
    room1, room7, room_w, grp1 = f"room-1-{TAG}", f"room-7-{TAG}", f"room-w-{TAG}", f"grp-1-{TAG}"
    alice = f"alice-{TAG}"
    a, b = CFG["a"], CFG["b"]
    server = client(a, f"server-{TAG}", CFG["secretKey"])
    meta = {"purpose": "pam-sdk-test", "sdk": TAG}
    tokens = {}
    print(f"{TAG}: pubnub {version('pubnub')}", flush=True)

    def t_grant():
        server.add_channel_to_channel_group().channels([room1]).channel_group(grp1).sync()
        r = server.list_channels_in_channel_group().channel_group(grp1).sync().result
        expect(r.channels == [room1], f"group lists {r.channels}")
        g = (server.grant_token()
             .channels([Channel.id(room1).read().write(), Channel.pattern("^room-.*").read()])
             .groups([Group.id(grp1).read()])
             .authorized_uuid(alice).ttl(5).meta(meta).sync().result)
        expect(isinstance(g.token, str) and len(g.token) > 20, f"grant_token returned {g.token!r}")
        tokens["main"] = g.token
        w = server.grant_token().channels([Channel.id(room_w).write()]).ttl(5).sync().result
        tokens["write"] = w.token
    check("the server client (secret key) adds a channel to a group and grants tokens", t_grant)
    if "main" not in tokens:
        return
    token, write_only = tokens["main"], tokens["write"]

    def t_parse():
        p = server.parse_token(token)
        got = {
            "ttl": p["ttl"],
            "authorized_uuid": p["authorized_uuid"],
            "channels": {k: perms(v) for k, v in p["resources"].get("channels", {}).items()},
            "groups": {k: perms(v) for k, v in p["resources"].get("groups", {}).items()},
            "uuids": sorted(p["resources"].get("uuids", {})),
            "pattern_channels": {k: perms(v) for k, v in p["patterns"].get("channels", {}).items()},
            "pattern_groups": sorted(p["patterns"].get("groups", {})),
            "meta": p["meta"],
        }
        want = {
            "ttl": 5,
            "authorized_uuid": alice,
            "channels": {room1: "read+write"},
            "groups": {grp1: "read"},
            "uuids": [],
            "pattern_channels": {"^room-.*": "read"},
            "pattern_groups": [],
            "meta": meta,
        }
        expect(got == want, f"parse_token: got {got}; want {want}")
        expect(p["version"] == 2 and abs(p["timestamp"] - time.time()) < 300, f"version {p['version']} timestamp {p['timestamp']}")
        w = server.parse_token(write_only)
        expect(perms(w["resources"]["channels"][room_w]) == "write", f"write-only token: {w['resources']}")
    check("parse_token shows the permissions granted", t_parse)

    def t_publish_no_token():
        pn = client(a, alice)
        denied("publish without a token", pn.publish().channel(room1).message({"n": "no-token"}), [room1])
    check("without a token: publish is denied (403, PNAccessDeniedCategory)", t_publish_no_token)

    def t_subscribe_no_token():
        subscribe_denied("subscribe without a token", client(a, alice), groups=[grp1])
    check("without a token: subscribe to the group is denied", t_subscribe_no_token)

    def t_group_add_no_token():
        pn = client(a, alice)
        denied("channel-group add without a token",
               pn.add_channel_to_channel_group().channels([f"{room1}-intruder"]).channel_group(grp1), [grp1])
        r = server.list_channels_in_channel_group().channel_group(grp1).sync().result
        expect(r.channels == [room1], f"group lists {r.channels} after a denied add")
    check("without a token: channel-group add is denied and changes nothing", t_group_add_no_token)

    def t_with_token():
        pn = client(a, alice)
        pn.set_token(token)
        rec = Recorder()
        try:
            subscribed("subscribe to the group with the token", pn, rec, groups=[grp1])
            r = pn.publish().channel(room1).message({"n": "with-token"}).sync().result
            expect(len(str(r.timetoken)) == 17, f"publish timetoken {r.timetoken}")
            rec.wait("the message through the group", lambda: any(m.message.get("n") == "with-token" for m in rec.msgs))
            m = next(m for m in rec.msgs if m.message.get("n") == "with-token")
            expect(m.channel == room1 and m.subscription == grp1, f"delivered on channel {m.channel} subscription {m.subscription}")
        finally:
            pn.unsubscribe_all()
    check("with set_token: subscribes to the granted group and receives its own publish to the granted channel", t_with_token)

    def t_other_uuid():
        pn = client(a, f"mallory-{TAG}")
        pn.set_token(token)
        denied("publish with another uuid", pn.publish().channel(room1).message({"n": "mallory"}))
    check("the token is bound to its authorized uuid: another uuid is denied", t_other_uuid)

    def t_write_only():
        pn = client(a, f"writer-{TAG}")
        pn.set_token(write_only)
        r = pn.publish().channel(room_w).message({"n": "write-only"}).sync().result
        expect(len(str(r.timetoken)) == 17, f"publish timetoken {r.timetoken}")
        sub = client(a, f"writer-{TAG}")
        sub.set_token(write_only)
        subscribe_denied("subscribe with a write-only token", sub, channels=[room_w])
    check("a write-only token publishes but cannot subscribe", t_write_only)

    def t_pattern():
        pn = client(a, alice)
        pn.set_token(token)
        rec = Recorder()
        try:
            subscribed("subscribe to room-7 by pattern", pn, rec, channels=[room7])
            server.publish().channel(room7).message({"n": "pattern"}).sync()
            rec.wait("the message on room-7", lambda: any(m.channel == room7 and m.message.get("n") == "pattern" for m in rec.msgs))
        finally:
            pn.unsubscribe_all()
        denied("publish to room-7 (read-only by pattern)", pn.publish().channel(room7).message({"n": "nope"}), [room7])
    check("a pattern grant (^room-.*) lets the token subscribe to room-7", t_pattern)

    def t_revoke():
        at_a = client(a, alice)
        at_a.set_token(token)
        at_b = client(b, alice)
        at_b.set_token(token)
        at_a.publish().channel(room1).message({"n": "before-revoke-a"}).sync()
        at_b.publish().channel(room1).message({"n": "before-revoke-b"}).sync()
        server.revoke_token(token).sync()
        revoked_at = time.monotonic()
        denied("publish at node A after revoke", at_a.publish().channel(room1).message({"n": "after-revoke-a"}))
        sub_a = client(a, alice)
        sub_a.set_token(token)
        subscribe_denied("subscribe at node A after revoke", sub_a, groups=[grp1])
        # Node B learns of the revocation from the store within its
        # registry's poll. A 403 to a publish at B may be the verdict of the
        # node B forwards the publish to, so B is polled until it refuses
        # both a publish and a subscribe.
        deadline = revoked_at + 2
        pause = threading.Event()
        while True:
            pending = still_accepted_at_b(at_b)
            if not pending:
                print(f"{TAG}: node B refused the revoked token {(time.monotonic() - revoked_at) * 1000:.0f} ms after the revoke", flush=True)
                break
            expect(time.monotonic() < deadline, f"node B still answers: {pending} 2 s after the revoke")
            pause.wait(0.05)

    def still_accepted_at_b(at_b):
        """What node B still accepts with the revoked token, or "" once it
        refuses both a publish and a subscribe."""
        _, s = answer(at_b.publish().channel(room1).message({"n": "after-revoke-b"}))
        if not s.is_error():
            return "publish accepted"
        if not (s.status_code == 403 and s.category == PNStatusCategory.PNAccessDeniedCategory):
            return f"publish {describe(s)}"
        sub = client(b, alice)
        sub.set_token(token)
        rec = Recorder()
        sub.add_listener(rec)
        sub.subscribe().channel_groups([grp1]).execute()
        rec.wait("subscribe at node B: a status", lambda: rec.errored() is not None or rec.connected())
        if rec.connected():
            sub.unsubscribe_all()
            return "subscribe connected"
        s = rec.errored()
        return "" if s.category == PNStatusCategory.PNAccessDeniedCategory else f"subscribe {describe(s)}"
    check("revoke_token: the next request at node A and node B (within 2 s) is denied", t_revoke)

    def t_expired():
        expired, current = CFG.get("expiredToken"), CFG.get("currentToken")
        expect(expired and current, "no expiredToken or currentToken in the configuration")
        p = server.parse_token(expired)
        expect(p["timestamp"] + p["ttl"] * 60 < time.time(), f"the expired token parses as {p}")
        ok = client(a, alice)
        ok.set_token(current)
        ok.publish().channel(room1).message({"n": "current"}).sync()
        pn = client(a, alice)
        pn.set_token(expired)
        denied("publish with an expired token", pn.publish().channel(room1).message({"n": "expired"}))
    check("an expired token is denied (the same token issued now is accepted)", t_expired)


if __name__ == "__main__":
    try:
        main()
    except Exception:  # noqa: BLE001
        failed += 1
        print(f"FAIL {TAG}: {traceback.format_exc()}", flush=True)
    for c in clients:
        c.stop()
    print(f"{passed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed else 0)
