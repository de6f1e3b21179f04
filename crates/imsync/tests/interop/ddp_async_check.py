"""Drives imsync's DDP endpoint (/websocket) with the PyPI `rocketchat-async` bot library.

Usage: python ddp_async_check.py http://127.0.0.1:PORT

Accounts and a private group are made through the native face; another user posts through the
native API and through Rocket.Chat REST; the bot (logged in with the SHA-256 digest, as the
library does) receives both on its room subscription and replies with `sendMessage`; the reply
is checked through REST `chat.syncMessages` and the native sync. Then a resume login, and a
non-member whose subscription receives nothing. Any failure exits non-zero with the reason.
"""

import asyncio
import json
import sys
import time
import urllib.request

from rocketchat_async import RocketChat

BASE = sys.argv[1].rstrip("/")
WS = BASE.replace("http://", "ws://") + "/websocket"
SUFFIX = str(int(time.time() * 1000))[-8:]
PASSWORD = "interop-pass-1"


def step(name):
    print(f"-- {name}", flush=True)


def http(method, path, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def register(name):
    b = http("POST", "/api/im/users/register",
             {"username": name, "password": PASSWORD, "displayName": name})
    token = b["data"]["token"]
    me = http("GET", "/api/im/me", headers={"Authorization": f"Bearer {token}"})
    return {"name": name, "token": token, "id": me["data"]["user"]["id"]}


def native(user, method, path, body=None):
    return http(method, path, body, {"Authorization": f"Bearer {user['token']}"})


def rest(user, method, path, body=None):
    return http(method, "/api/v1/" + path, body,
                {"X-User-Id": user["id"], "X-Auth-Token": user["token"]})


async def wait_for(received, pred, what, secs=10):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        for m in received:
            if pred(m):
                return m
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what}: not received; got {received}")


async def main():
    bot_name, bob_name, carol_name = f"bot{SUFFIX}", f"bob{SUFFIX}", f"carol{SUFFIX}"
    bot, bob, carol = register(bot_name), register(bob_name), register(carol_name)
    room = native(bob, "POST", "/api/im/groups",
                  {"title": f"team{SUFFIX}", "members": [bot_name]})["data"]["groupId"]

    step("bot logs in with the digest and lists its rooms")
    rc = RocketChat()
    await rc.start(WS, bot_name, PASSWORD)
    assert rc.user_id == bot["id"], (rc.user_id, bot["id"])
    channels = await rc.get_channels()
    assert (room, "p") in channels, channels

    step("bot subscribes to the room")
    received = []

    def on_message(channel_id, sender_id, msg_id, thread_id, msg, qualifier, unread, repeated):
        received.append({"rid": channel_id, "sender": sender_id, "id": msg_id, "msg": msg})

    await rc.subscribe_to_channel_messages(room, on_message)
    await asyncio.sleep(0.3)

    step("a message from the native API arrives")
    native(bob, "POST", f"/api/im/messages/{room}", {"content": "hello from native"})
    m = await wait_for(received, lambda m: m["msg"] == "hello from native", "native message")
    assert m["sender"] == bob["id"] and m["rid"] == room, m

    step("a message from Rocket.Chat REST arrives")
    rest(bob, "POST", "chat.postMessage", {"roomId": room, "text": "hello from rest"})
    await wait_for(received, lambda m: m["msg"] == "hello from rest", "REST message")

    step("the bot replies with sendMessage; REST and the native feed see it")
    await rc.send_message("reply from the bot", room)
    await wait_for(received, lambda m: m["msg"] == "reply from the bot", "own reply")
    synced = rest(bob, "GET", f"chat.syncMessages?roomId={room}&lastUpdate=1970-01-01T00:00:00.000Z")
    assert any(x["msg"] == "reply from the bot" and x["u"]["_id"] == bot["id"]
               for x in synced["result"]["updated"]), synced
    events = native(bob, "GET", "/api/im/sync?since=0&limit=500")["data"]["events"]
    assert any(e["type"] == "message.new" and e["data"].get("content") == "reply from the bot"
               for e in events), events

    step("resume with a token from REST login")
    login = http("POST", "/api/v1/login", {"user": bot_name, "password": PASSWORD})
    rc2 = RocketChat()
    await rc2.resume(WS, bot_name, login["data"]["authToken"])
    assert rc2.user_id == bot["id"], rc2.user_id

    step("a non-member's subscription receives nothing")
    rc3 = RocketChat()
    await rc3.start(WS, carol_name, PASSWORD)
    stranger = []
    await rc3.subscribe_to_channel_messages(
        room, lambda *args: stranger.append(args))
    await asyncio.sleep(0.3)
    native(bob, "POST", f"/api/im/messages/{room}", {"content": "members only"})
    await wait_for(received, lambda m: m["msg"] == "members only", "members-only message")
    await asyncio.sleep(0.5)
    assert stranger == [], stranger

    print("OK", flush=True)


asyncio.run(main())
