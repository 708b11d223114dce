"""Drives the official PubNub Python SDK for access/sdk_test.go.

    python sdk.py parse TOKEN
        prints PubNub(...).parse_token(TOKEN) as JSON.
    python sdk.py drive ORIGIN PUBKEY SUBKEY SECRET
        makes signed requests (publish by GET and POST, signal, channel-group
        add, subscribe to a group, grant, revoke) to the capturing server at
        ORIGIN and prints {"token": granted token, "parsed": parse_token(it)}.
"""

import json
import sys

from pubnub.endpoints.pubsub.subscribe import Subscribe
from pubnub.models.consumer.v3.channel import Channel
from pubnub.models.consumer.v3.group import Group
from pubnub.models.consumer.v3.uuid import UUID
from pubnub.pnconfiguration import PNConfiguration
from pubnub.pubnub import PubNub

STRANGE = "+ ! * ' ( ) ~ % & = ? / ü 😀"


def client(origin="127.0.0.1:1", pub="pub", sub="sub", secret=None):
    cfg = PNConfiguration()
    cfg.publish_key = pub
    cfg.subscribe_key = sub
    cfg.secret_key = secret
    cfg.user_id = "sdk-user~1"
    cfg.origin = origin
    cfg.ssl = False
    cfg.non_subscribe_request_timeout = 10
    return PubNub(cfg)


def parsed(pn, token):
    p = pn.parse_token(token)
    p.pop("signature", None)
    return p


def drive(origin, pub, sub, secret):
    pn = client(origin, pub, sub, secret)
    pn.publish().channel("room 1,ü").message({"a": 1, "s": STRANGE}).meta({"q": STRANGE}).sync()
    pn.publish().channel("ch").message({"a": 2}).use_post(True).sync()
    pn.signal().channel("sig ch").message(STRANGE).sync()
    pn.add_channel_to_channel_group().channel_group("g 1").channels(["a b", "c~d", "x'y", "e+f"]).sync()
    token = (
        pn.grant_token()
        .ttl(15)
        .authorized_uuid("alice")
        .channels([Channel.id("ch-1").read().write(), Channel.id("ch 2,ü").read(),
                   Channel.pattern("^room-.*").read().write()])
        .groups([Group.id("cg-1").read().manage()])
        .uuids([UUID.id("u-1").get().update()])
        .meta({"k": "v", "n": 3})
        .sync()
        .result.token
    )
    pn.revoke_token(token).sync()
    Subscribe(pn).channel_groups(["g-1"]).channels(["c 1"]).sync()
    print(json.dumps({"token": token, "parsed": parsed(pn, token)}))
    pn.stop()


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "parse":
        print(json.dumps(parsed(client(), args[0])))
    elif mode == "drive":
        drive(*args)
    else:
        sys.exit(f"unknown mode {mode}")
