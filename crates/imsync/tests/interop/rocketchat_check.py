"""Drives imsync's Rocket.Chat face with the PyPI `rocketchat_API` client (3.x).

Usage: python rocketchat_check.py http://127.0.0.1:PORT

Accounts are registered through the native face (POST /api/im/users/register), then the client
logs in with its own `login()`. Every step asserts on what the client hands back; any failure
exits non-zero with the reason.
"""

import datetime
import sys
import time

import requests
from rocketchat_API.APIExceptions.RocketExceptions import (
    RocketApiException,
    RocketAuthenticationException,
)
from rocketchat_API.rocketchat import RocketChat

BASE = sys.argv[1].rstrip("/")
SUFFIX = str(int(time.time() * 1000))[-8:]
PASSWORD = "interop-pass-1"


def step(name):
    print(f"-- {name}", flush=True)


def iso_z(dt):
    """An ISO timestamp with a Z zone: the client does not URL-encode query values."""
    return dt.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def ms_of(iso):
    return int(
        datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ")
        .replace(tzinfo=datetime.timezone.utc)
        .timestamp()
        * 1000
    )


def register(username):
    r = requests.post(
        f"{BASE}/api/im/users/register",
        json={"username": username, "password": PASSWORD, "displayName": username},
        timeout=30,
    )
    assert r.status_code == 201, (r.status_code, r.text)


def main():
    alice_name, bob_name = f"rca{SUFFIX}", f"rcb{SUFFIX}"
    register(alice_name)
    register(bob_name)

    step("login")
    try:
        RocketChat(alice_name, "wrong-password", server_url=BASE)
        raise AssertionError("a wrong password logged in")
    except RocketAuthenticationException:
        pass
    alice = RocketChat(alice_name, PASSWORD, server_url=BASE)
    bob = RocketChat(bob_name, PASSWORD, server_url=BASE)
    me = alice.me()
    assert me["success"] is True and me["username"] == alice_name, me

    step("the package's own checks against GENERAL")
    res = alice.chat_sync_messages(room_id="GENERAL", last_update="2000-01-01T00:00:00.000Z")
    assert "result" in res, res

    step("channel and post")
    chan = alice.channels_create(f"interop-{SUFFIX}", members=[bob_name])
    rid = chan["channel"]["_id"]
    since = iso_z(datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1))
    posted = alice.chat_post_message("hello from python", room_id=rid)
    assert posted["success"] is True, posted
    mid = posted["message"]["_id"]
    assert posted["message"]["msg"] == "hello from python"
    sent = bob.chat_send_message({"rid": rid, "msg": "reply in thread", "tmid": mid})
    reply_id = sent["message"]["_id"]
    assert sent["message"]["tmid"] == mid, sent

    step("update")
    upd = alice.chat_update(rid, mid, "hello, edited")
    assert upd["message"]["msg"] == "hello, edited" and "editedAt" in upd["message"], upd
    updated_at = upd["message"]["_updatedAt"]

    step("react")
    assert alice.chat_react(mid)["success"] is True
    assert bob.chat_react(mid, emoji=":tada:")["success"] is True

    step("chat_sync_messages")
    res = alice.chat_sync_messages(room_id=rid, last_update=since)
    updated = {m["_id"]: m for m in res["result"]["updated"]}
    assert set(updated) == {mid, reply_id}, res
    parent = updated[mid]
    assert parent["msg"] == "hello, edited"
    assert parent["tcount"] == 1 and parent["replies"] == [bob.headers["X-User-Id"]], parent
    assert parent["reactions"] == {
        ":smile:": {"usernames": [alice_name]},
        ":tada:": {"usernames": [bob_name]},
    }, parent["reactions"]
    assert ms_of(parent["_updatedAt"]) > ms_of(updated_at)
    assert res["result"]["deleted"] == [], res

    step("chat_sync_thread_messages")
    res = alice.chat_sync_thread_messages(tmid=mid, updated_since="2019-04-01T00:00:00.000Z")
    assert "messages" in res, res
    assert [m["_id"] for m in res["messages"]["update"]] == [reply_id], res
    assert res["messages"]["remove"] == []
    thread = list(alice.chat_get_thread_messages(mid))
    assert [m["_id"] for m in thread] == [reply_id], thread

    step("delete")
    deleted = bob.chat_delete(rid, reply_id)
    assert deleted["_id"] == reply_id, deleted
    res = alice.chat_sync_messages(room_id=rid, last_update=since)
    assert [d["_id"] for d in res["result"]["deleted"]] == [reply_id], res
    assert [m["_id"] for m in res["result"]["updated"]] == [mid], res
    res = alice.chat_sync_thread_messages(tmid=mid, updated_since=since)
    assert [m["_id"] for m in res["messages"]["remove"]] == [reply_id], res

    step("cursor mode through kwargs")
    page = alice.chat_sync_messages(room_id=rid, last_update="", type="DELETED", next="0", count=1)
    assert [d["_id"] for d in page["result"]["deleted"]] == [reply_id], page
    assert page["result"]["cursor"]["next"] is None, page

    step("errors raise RocketApiException")
    try:
        alice.chat_sync_messages(room_id="no-such-room", last_update=since)
        raise AssertionError("a missing room synced")
    except RocketApiException as e:
        assert "error-not-allowed" in str(e), e
    try:
        alice.chat_update(rid, "no-such-message", "x")
        raise AssertionError("a missing message was updated")
    except RocketApiException as e:
        assert "No message found" in str(e), e

    step("logout")
    alice.logout()
    try:
        alice.me()
        raise AssertionError("the token still works after logout")
    except RocketApiException:
        pass
    print("rocketchat_API interop: all checks passed", flush=True)


if __name__ == "__main__":
    main()
