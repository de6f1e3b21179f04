#!/usr/bin/env python3
"""Interop check: drive a running imsync with Prismer's official Python SDK (PyPI `prismer`).

Usage: prismer_check.py BASE_URL        e.g. prismer_check.py http://127.0.0.1:8080

Covers the native API (docs/native.md) as the SDK calls it: anonymous register, me, group create,
send with an explicit idempotency key twice (one message), history, edit, delete, the error
envelope, a direct message, then the offline layer of AsyncPrismerClient: outbox send, and
OfflineManager.sync() to completion over several pages (the SDK asks for 100 events a page).

Then the realtime clients of the SDK (prismer.realtime), each made the SDK's way
(`client.im.realtime.connect_ws/connect_sse(RealtimeConfig(token=...))`), in both variants: the
sync RealtimeWSClient / RealtimeSSEClient of PrismerClient and the AsyncRealtimeWSClient /
AsyncRealtimeSSEClient of AsyncPrismerClient. For each: connect() succeeds (the first frame is
`authenticated`, for the user of the token), ping() succeeds on the WebSocket (the pong echoes
payload.requestId), and messages another user sends over REST (to the group and to the direct
conversation) arrive as `message.new` through the SDK's on() handler API, with the right id,
conversationId, senderId and content, and parse as the SDK's own MessageNewPayload model; no
`error` or unexpected `disconnected` event meanwhile. Every wait has a timeout, and a watchdog
ends the process with a clear message if an SDK call blocks.

Files through the SDK's FilesClient: send_file (presign, multipart POST, confirm, a `file`
message), a 12 MB upload in parts, types, quota and delete; another member downloads each file
from the message's fileUrl with their own token and gets the same bytes, a non-member gets 403.

Contacts through the SDK's ContactsClient: a friend request accepted (friends on both sides, a
remark), one rejected, a block that refuses the blocked user's direct messages (new and existing
conversation) with BLOCKED until unblocked, and unfriending.

Exits 0 when every check passes; otherwise prints what failed and exits 1.
"""

import asyncio
import os
import sys
import tempfile
import threading
import time
import traceback
import uuid
import warnings

# Before importing the SDK: a scratch HOME so no ~/.prismer/config.toml is read, and no
# environment that would send the SDK elsewhere than the server under test.
os.environ["HOME"] = tempfile.mkdtemp(prefix="prismer-home-")
for _var in ("PRISMER_BASE_URL", "PRISMER_API_KEY"):
    os.environ.pop(_var, None)
os.environ["NO_PROXY"] = ",".join(
    x for x in (os.environ.get("NO_PROXY"), "127.0.0.1", "localhost") if x
)
os.environ["no_proxy"] = os.environ["NO_PROXY"]

import prismer  # noqa: E402
from prismer import AsyncPrismerClient, PrismerClient  # noqa: E402
from prismer.offline import MemoryStorage  # noqa: E402
from prismer.realtime import MessageNewPayload, RealtimeConfig  # noqa: E402

# imsync's tokens are opaque strings, not JWTs, so the SDK warns at every client construction
# that the key "should start with sk-prismer- (or eyJ for IM JWT)". Harmless: said once below.
warnings.filterwarnings("ignore", message="API key should start with", category=UserWarning)

# Seconds to wait for one realtime event (authenticated, pong, message.new).
EVENT_TIMEOUT = 10.0
# Seconds one realtime client's whole check may take before the watchdog ends the process.
WATCHDOG_SECONDS = 60.0

# Enough messages that the SDK's sync loop (limit=100) has to follow hasMore over pages.
BULK_MESSAGES = 120


class CheckFailed(Exception):
    pass


def step(msg):
    print(f"[prismer_check] {msg}", flush=True)


def check(cond, what, result=None):
    if not cond:
        detail = f"\n    response: {result!r}" if result is not None else ""
        raise CheckFailed(f"{what}{detail}")


def ok_data(result, what):
    """Asserts an `{ok:true, data}` envelope and answers `data`."""
    check(isinstance(result, dict), f"{what}: the SDK answered a non-dict", result)
    check(result.get("ok") is True, f"{what}: ok is not true", result)
    check("data" in result, f"{what}: no data in the envelope", result)
    return result["data"]


def history_ids(client, conv_id):
    data = ok_data(client.im.messages.get_history(conv_id, limit=200), "history")
    check(isinstance(data, list), "history: data is not a list", data)
    return data


def register(base, username, display):
    anon = PrismerClient(base_url=base)  # no key: anonymous registration
    try:
        data = ok_data(
            anon.im.account.register(type="human", username=username, displayName=display),
            f"register {username}",
        )
    finally:
        anon.close()
    for key in ("imUserId", "username", "token"):
        check(data.get(key), f"register {username}: data.{key} missing", data)
    check(data.get("isNew") is True, f"register {username}: isNew is not true", data)
    if not data["token"].startswith(("sk-prismer-", "eyJ")) and username.startswith("alice"):
        step("  note: the token is not sk-prismer-/eyJ-prefixed; the SDK warns (harmless)")
    client = PrismerClient(api_key=data["token"], base_url=base)
    me = ok_data(client.im.account.me(), f"me of {username}")
    check(
        (me.get("user") or {}).get("id") == data["imUserId"],
        f"me of {username}: user.id is not the registered imUserId",
        me,
    )
    return client, data["imUserId"], data["token"]


def sync_checks(base, alice, alice_id, bob_id, bob_token, group_id, deleted_id, kept_id):
    """The offline layer of the async client, acting as bob."""

    async def run():
        storage = MemoryStorage()
        ac = AsyncPrismerClient(
            api_key=bob_token,
            base_url=base,
            offline={
                "storage": storage,
                "sync_on_connect": True,
                "outbox_retry_limit": 5,
                "outbox_flush_interval": 1.0,
                "conflict_strategy": "server",
            },
        )
        events = []
        try:
            mgr = await ac.init_offline()
            for name in (
                "sync.start",
                "sync.progress",
                "sync.complete",
                "sync.error",
                "outbox.failed",
                "message.failed",
                "message.confirmed",
            ):
                mgr.on(name, lambda payload=None, _n=name: events.append((_n, payload)))

            def errors():
                return [e for e in events if e[0] in ("sync.error", "outbox.failed", "message.failed")]

            check(await storage.get_cursor("global_sync") is None, "a fresh storage has a cursor")

            step("offline sync from 0")
            await mgr.sync()
            check(not errors(), f"sync emitted an error: {errors()}")
            complete = [p for n, p in events if n == "sync.complete"]
            check(len(complete) == 1, f"sync.complete was not emitted once: {events}")
            check(mgr.sync_state == "idle", f"sync state is {mgr.sync_state!r}, not idle")
            pages = sum(1 for n, _ in events if n == "sync.progress")
            check(pages >= 2, f"expected several sync pages (hasMore), saw {pages}")
            cursor1 = await storage.get_cursor("global_sync")
            check(cursor1 is not None and cursor1.isdigit(), f"stored cursor {cursor1!r}")
            check(int(cursor1) > 0, f"the stored cursor did not advance from 0: {cursor1!r}")
            new_messages = complete[0]["new_messages"]
            check(
                new_messages >= BULK_MESSAGES + 2,
                f"sync.complete counted {new_messages} new messages, expected at least "
                f"{BULK_MESSAGES + 2}",
            )
            step(f"  cursor 0 -> {cursor1} in {pages} pages, {new_messages} message.new")

            conv = await storage.get_conversation(group_id)
            check(conv is not None, "the group is not in local storage after sync")
            check(conv.type == "group", f"group stored with type {conv.type!r}")
            check(isinstance(conv.members, list), f"group members is {conv.members!r}")
            check(
                all(isinstance(m, dict) for m in conv.members),
                f"group members are not objects: {conv.members!r}",
            )
            member_ids = {m.get("userId") for m in conv.members}
            check(
                {alice_id, bob_id} <= member_ids,
                f"group members {member_ids} lack alice or bob",
            )
            check(
                await storage.get_message(deleted_id) is None,
                "the deleted message is still in local storage after sync",
            )
            kept = await storage.get_message(kept_id)
            check(kept is not None, "the kept message is not in local storage after sync")
            check(kept.content == "kept", f"kept message content {kept.content!r}")
            check(kept.sender_id == alice_id, f"kept message senderId {kept.sender_id!r}")

            step("offline cache: conversations list answers a list")
            convs = ok_data(await ac.im.conversations.list(), "offline conversations.list")
            check(isinstance(convs, list), "conversations.list data is not a list", convs)
            check(any(c.get("id") == group_id for c in convs), "group missing from the list", convs)

            step("offline outbox: send through the outbox and flush")
            pending = await mgr.dispatch(
                "POST", f"/api/im/messages/{group_id}", {"content": "via outbox", "type": "text"}
            )
            check(pending.get("_pending") is True, "outbox dispatch did not queue", pending)
            for _ in range(100):
                if await mgr.outbox_size() == 0 and any(
                    n == "message.confirmed" for n, _ in events
                ):
                    break
                await mgr.flush()
                await asyncio.sleep(0.1)
            check(not errors(), f"the outbox reported a failure: {errors()}")
            check(await mgr.outbox_size() == 0, "the outbox did not drain")
            confirmed = [p for n, p in events if n == "message.confirmed"]
            check(confirmed, f"no message.confirmed: {events}")
            server_msg = confirmed[-1]["server_message"]
            for key in ("id", "conversationId", "content", "type", "senderId", "createdAt"):
                check(key in server_msg, f"outbox send: data.message.{key} missing", server_msg)
            check(server_msg["senderId"] == bob_id, "outbox message senderId", server_msg)

            step("incremental sync: the cursor moves on and picks up new messages")
            alice_msg = ok_data(
                alice.im.messages.send(group_id, "after first sync"), "alice send after sync"
            )["message"]
            await mgr.sync()
            check(not errors(), f"second sync emitted an error: {errors()}")
            check(mgr.sync_state == "idle", f"sync state is {mgr.sync_state!r}, not idle")
            cursor2 = await storage.get_cursor("global_sync")
            check(
                cursor2 is not None and int(cursor2) > int(cursor1),
                f"cursor did not advance on the second sync: {cursor1} -> {cursor2}",
            )
            got = await storage.get_message(alice_msg["id"])
            check(got is not None, "the message sent after the first sync was not synced")
            step(f"  cursor {cursor1} -> {cursor2}")

            await mgr.sync()  # nothing new: must stay put and still succeed
            check(not errors(), f"an empty sync emitted an error: {errors()}")
            cursor3 = await storage.get_cursor("global_sync")
            check(cursor3 == cursor2, f"an empty sync moved the cursor {cursor2} -> {cursor3}")
        finally:
            await ac.close()

    asyncio.run(run())


class Watchdog:
    """Ends the process with a clear message if a block takes longer than `seconds`: the SDK's
    sync clients have blocking calls without a timeout (e.g. the first recv() of connect())."""

    def __init__(self, what, seconds=WATCHDOG_SECONDS):
        self.what = what
        self.seconds = seconds
        self.timer = None

    def _fire(self):
        print(
            f"[prismer_check] FAILED: {self.what}: no result within {self.seconds:.0f}s "
            "(an SDK call blocked)",
            file=sys.stderr,
            flush=True,
        )
        os._exit(1)

    def __enter__(self):
        self.timer = threading.Timer(self.seconds, self._fire)
        self.timer.daemon = True
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.cancel()
        return False


class Recorder:
    """Collects the events a realtime client emits, through the SDK's own on() handler API."""

    WATCHED = ("authenticated", "connected", "message.new", "pong", "error", "disconnected")

    def __init__(self):
        self.events = []
        self.cond = threading.Condition()
        self.closing = False

    def record(self, name, payload):
        with self.cond:
            self.events.append((name, payload))
            self.cond.notify_all()

    def attach_sync(self, client):
        for name in self.WATCHED:
            client.on(name, lambda payload=None, _n=name: self.record(_n, payload))

    def attach_async(self, client):
        # Coroutine handlers: the async clients await them (EventEmitter._emit_async).
        for name in self.WATCHED:

            async def handler(payload=None, _n=name):
                self.record(_n, payload)

            client.on(name, handler)

    def of(self, name):
        with self.cond:
            return [p for n, p in self.events if n == name]

    def find(self, name, pred):
        """The first matching event as a 1-tuple (payload,), or None (payloads may be None)."""
        return next(((p,) for p in self.of(name) if pred(p)), None)

    def wait_sync(self, name, pred, what, timeout=EVENT_TIMEOUT):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                self.check_healthy(what)
                hit = next(((p,) for n, p in self.events if n == name and pred(p)), None)
                if hit is not None:
                    return hit[0]
                left = deadline - time.monotonic()
                check(left > 0, f"{what}: no {name} event within {timeout:.0f}s; saw {self.summary()}")
                self.cond.wait(left)

    async def wait_async(self, name, pred, what, timeout=EVENT_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            self.check_healthy(what)
            hit = self.find(name, pred)
            if hit is not None:
                return hit[0]
            check(
                time.monotonic() < deadline,
                f"{what}: no {name} event within {timeout:.0f}s; saw {self.summary()}",
            )
            await asyncio.sleep(0.02)

    def check_healthy(self, what):
        errors = [p for n, p in self.events if n == "error"]
        check(not errors, f"{what}: the SDK emitted an error event: {errors}")
        if not self.closing:
            gone = [p for n, p in self.events if n == "disconnected"]
            check(not gone, f"{what}: the connection dropped: {gone}")

    def summary(self):
        return [n for n, _ in self.events]


def rt_config(token):
    # No auto-reconnect: a dropped connection must fail the check, not be papered over.
    return RealtimeConfig(token=token, auto_reconnect=False)


def check_authenticated(rec, what, bob_id):
    auth = rec.of("authenticated")
    check(len(auth) == 1, f"{what}: expected one authenticated event, saw {rec.summary()}")
    check(
        isinstance(auth[0], dict) and auth[0].get("userId") == bob_id and auth[0].get("username"),
        f"{what}: authenticated payload is not {{userId: bob, username}}",
        auth[0],
    )
    check(rec.of("connected"), f"{what}: no connected event after connect()", rec.summary())


def check_pong(rec, pong, what):
    check(isinstance(pong, dict), f"{what}: ping() answered a non-dict", pong)
    rid = pong.get("requestId")
    check(
        isinstance(rid, str) and rid.startswith("ping-"),
        f"{what}: pong payload.requestId is not the SDK's ping id",
        pong,
    )
    check(
        any(p.get("requestId") == rid for p in rec.of("pong")),
        f"{what}: no pong event with requestId {rid!r}",
        rec.of("pong"),
    )


def check_message_new(payload, sent, what):
    for key in ("id", "conversationId", "senderId", "content", "type", "createdAt"):
        check(payload.get(key) == sent.get(key), f"{what}: message.new {key} differs from the REST answer "
              f"({payload.get(key)!r} vs {sent.get(key)!r})", payload)
    try:
        MessageNewPayload.model_validate(payload)
    except Exception as e:  # pydantic.ValidationError
        raise CheckFailed(f"{what}: message.new does not parse as the SDK's MessageNewPayload: {e}")


def rest_sends(alice, alice_id, group_id, bob_id, label):
    """Alice sends one group message and one direct message to bob over REST; answers both."""
    tag = uuid.uuid4().hex[:6]
    g = ok_data(alice.im.messages.send(group_id, f"rt {label} group {tag}"), f"{label}: group send")
    d = ok_data(alice.im.direct.send(bob_id, f"rt {label} direct {tag}"), f"{label}: direct send")
    g, d = g["message"], d["message"]
    check(g.get("senderId") == alice_id and d.get("senderId") == alice_id, f"{label}: senderId", [g, d])
    return g, d


def realtime_sync_checks(base, alice, alice_id, bob_id, bob_token, group_id):
    """The sync PrismerClient's realtime clients (background threads), acting as bob."""
    bob = PrismerClient(api_key=bob_token, base_url=base)
    try:
        for kind in ("ws", "sse"):
            what = f"sync {kind.upper()} client"
            step(f"realtime: {what}")
            factory = bob.im.realtime.connect_ws if kind == "ws" else bob.im.realtime.connect_sse
            rt = factory(rt_config(bob_token))
            rec = Recorder()
            rec.attach_sync(rt)
            with Watchdog(what):
                try:
                    try:
                        rt.connect()
                    except Exception as e:
                        raise CheckFailed(f"{what}: connect() failed: {e!r}; saw {rec.summary()}")
                    check(rt.state == "connected", f"{what}: state after connect() is {rt.state!r}")
                    if kind == "sse":
                        rec.wait_sync("connected", lambda p: True, what)
                    check_authenticated(rec, what, bob_id)
                    if kind == "ws":
                        try:
                            pong = rt.ping(timeout=EVENT_TIMEOUT)
                        except TimeoutError:
                            raise CheckFailed(f"{what}: ping() timed out (pong must echo payload.requestId)")
                        check_pong(rec, pong, what)
                    g, d = rest_sends(alice, alice_id, group_id, bob_id, what)
                    for sent, where in ((g, "group"), (d, "direct")):
                        got = rec.wait_sync(
                            "message.new",
                            lambda p, _id=sent["id"]: isinstance(p, dict) and p.get("id") == _id,
                            f"{what}: {where} message",
                        )
                        check_message_new(got, sent, f"{what}: {where} message")
                    if kind == "ws":
                        pong = rt.ping(timeout=EVENT_TIMEOUT)  # still alive after the events
                        check_pong(rec, pong, f"{what} (second ping)")
                    rec.check_healthy(what)
                    step(f"  {what}: authenticated, {'ping/pong, ' if kind == 'ws' else ''}"
                         f"group and direct message.new received")
                finally:
                    rec.closing = True
                    rt.disconnect()
    finally:
        bob.close()


def realtime_async_checks(base, alice, alice_id, bob_id, bob_token, group_id):
    """The AsyncPrismerClient's realtime clients (asyncio tasks), acting as bob."""

    async def one(ac, kind):
        what = f"async {kind.upper()} client"
        step(f"realtime: {what}")
        factory = ac.im.realtime.connect_ws if kind == "ws" else ac.im.realtime.connect_sse
        rt = factory(rt_config(bob_token))
        rec = Recorder()
        rec.attach_async(rt)
        try:
            try:
                await asyncio.wait_for(rt.connect(), timeout=EVENT_TIMEOUT + 5)
            except asyncio.TimeoutError:
                raise CheckFailed(f"{what}: connect() did not finish; saw {rec.summary()}")
            except Exception as e:
                raise CheckFailed(f"{what}: connect() failed: {e!r}; saw {rec.summary()}")
            if kind == "sse":
                await rec.wait_async("connected", lambda p: True, what)
            check(rt.state == "connected", f"{what}: state after connect() is {rt.state!r}")
            check_authenticated(rec, what, bob_id)
            if kind == "ws":
                try:
                    pong = await asyncio.wait_for(rt.ping(), timeout=EVENT_TIMEOUT + 5)
                except (TimeoutError, asyncio.TimeoutError):
                    raise CheckFailed(f"{what}: ping() timed out (pong must echo payload.requestId)")
                check_pong(rec, pong, what)
            # The REST client is the sync one: run it off the loop so the receive task keeps going.
            g, d = await asyncio.to_thread(rest_sends, alice, alice_id, group_id, bob_id, what)
            for sent, where in ((g, "group"), (d, "direct")):
                got = await rec.wait_async(
                    "message.new",
                    lambda p, _id=sent["id"]: isinstance(p, dict) and p.get("id") == _id,
                    f"{what}: {where} message",
                )
                check_message_new(got, sent, f"{what}: {where} message")
            if kind == "ws":
                pong = await asyncio.wait_for(rt.ping(), timeout=EVENT_TIMEOUT + 5)
                check_pong(rec, pong, f"{what} (second ping)")
            rec.check_healthy(what)
            step(f"  {what}: authenticated, {'ping/pong, ' if kind == 'ws' else ''}"
                 f"group and direct message.new received")
        finally:
            rec.closing = True
            await asyncio.wait_for(rt.disconnect(), timeout=EVENT_TIMEOUT)

    async def run():
        ac = AsyncPrismerClient(api_key=bob_token, base_url=base)
        try:
            for kind in ("ws", "sse"):
                try:
                    await asyncio.wait_for(one(ac, kind), timeout=WATCHDOG_SECONDS)
                except asyncio.TimeoutError:
                    raise CheckFailed(
                        f"async {kind.upper()} client: no result within {WATCHDOG_SECONDS:.0f}s"
                    )
        finally:
            await ac.close()

    with Watchdog("async realtime clients", 2 * WATCHDOG_SECONDS + 10):
        asyncio.run(run())


def file_checks(base, alice, bob, bob_token, carol_token, group_id):
    """The SDK's file calls: send_file (presign, multipart POST to the relative URL, confirm,
    then a `file` message), a file over 10 MB (init, 5 MiB PUT parts with their ETags,
    complete), types, quota and delete. Another member downloads each file from the message's
    fileUrl with their own token and gets the same bytes; a non-member is refused."""
    import httpx

    def fetch(url, token):
        return httpx.get(f"{base}{url}", headers={"Authorization": f"Bearer {token}"}, timeout=60)

    step("files: types and quota")
    types = ok_data(alice.im.files.types(), "files.types")
    check(isinstance(types.get("allowedMimeTypes"), list), "types: allowedMimeTypes", types)
    quota = ok_data(alice.im.files.quota(), "files.quota")
    check(quota.get("used") == 0 and quota.get("fileCount") == 0, "quota before uploads", quota)

    step("files: send_file, and another member downloads it from the message's fileUrl")
    small = os.urandom(300_000)
    sent = alice.im.files.send_file(
        group_id, small, file_name="report.bin", mime_type="application/octet-stream"
    )
    upload, message = sent["upload"], sent["message"]["message"]
    check(message.get("type") == "file", "send_file: the message type is not file", message)
    meta = message.get("metadata") or {}
    check(meta.get("uploadId") == upload["uploadId"], "send_file: metadata.uploadId", message)
    check(meta.get("fileSize") == len(small), "send_file: metadata.fileSize", message)
    seen = [m for m in history_ids(bob, group_id) if m.get("id") == message["id"]]
    check(seen, "bob's history lacks the file message")
    url = (seen[0].get("metadata") or {}).get("fileUrl")
    check(url, "the file message in bob's history has no fileUrl", seen[0])
    got = fetch(url, bob_token)
    check(got.status_code == 200, f"bob's download answered {got.status_code}", got.text[:200])
    check(got.content == small, "bob downloaded other bytes than alice uploaded")
    check(
        got.headers.get("content-disposition", "").startswith("attachment"),
        "a binary file is not served as an attachment",
        dict(got.headers),
    )
    refused = fetch(url, carol_token)
    check(refused.status_code == 403, f"a non-member's download answered {refused.status_code}")
    check(refused.json().get("ok") is False, "a refused download is not the error envelope")

    step("files: a 12 MB file goes up in 5 MiB parts")
    big = os.urandom(12 * 1024 * 1024 + 17)
    up = alice.im.files.upload(big, file_name="big.bin", mime_type="application/octet-stream")
    check(up.get("fileSize") == len(big), "multipart upload: fileSize", up)
    sent = ok_data(
        alice.im.messages.send(
            group_id,
            "big.bin",
            type="file",
            metadata={
                "uploadId": up["uploadId"],
                "fileUrl": up["cdnUrl"],
                "fileName": up["fileName"],
                "fileSize": up["fileSize"],
                "mimeType": up["mimeType"],
            },
        ),
        "send the big file",
    )
    got = fetch(up["cdnUrl"], bob_token)
    check(got.status_code == 200 and got.content == big, "bob's download of the big file differs")
    quota = ok_data(alice.im.files.quota(), "files.quota after uploads")
    check(quota.get("used") == len(small) + len(big), "quota.used after two uploads", quota)

    step("files: delete")
    ok_data(alice.im.files.delete(up["uploadId"]), "files.delete")
    gone = fetch(up["cdnUrl"], bob_token)
    check(gone.status_code == 404, f"a deleted file answered {gone.status_code}")
    return sent


def contact_checks(base, alice, alice_id, bob, bob_id, suffix):
    """The SDK's ContactsClient: a friend request accepted (friends on both sides, a remark),
    unfriending, a request rejected, and a block that keeps the blocked user from opening a direct
    conversation and from writing to an existing one until it is lifted."""
    dave, dave_id, _ = register(base, f"dave_{suffix}", "Dave")
    try:
        step("contacts: a friend request, accepted")
        req = ok_data(alice.im.contacts.request(dave_id, reason="hello"), "contacts.request")
        check(req.get("status") == "pending" and req.get("id"), "contacts.request: a pending request", req)
        incoming = ok_data(dave.im.contacts.list_pending_in(), "contacts.list_pending_in")
        check(any(r.get("id") == req["id"] for r in incoming), "dave does not see the request", incoming)
        outgoing = ok_data(alice.im.contacts.list_pending_out(), "contacts.list_pending_out")
        check(any(r.get("id") == req["id"] for r in outgoing), "alice does not see her request", outgoing)
        accepted = ok_data(dave.im.contacts.accept(req["id"]), "contacts.accept")
        check(accepted.get("status") == "accepted", "contacts.accept: status", accepted)
        for who, client, other in (("alice", alice, dave_id), ("dave", dave, alice_id)):
            friends = ok_data(client.im.contacts.friends(), f"{who}'s contacts.friends")
            check(any(f.get("userId") == other for f in friends), f"{who}'s friends lack the other", friends)
        ok_data(alice.im.contacts.set_remark(dave_id, "Dave from work"), "contacts.set_remark")
        friends = ok_data(alice.im.contacts.friends(), "contacts.friends after the remark")
        check(
            any(f.get("userId") == dave_id and f.get("remark") == "Dave from work" for f in friends),
            "the remark is not on alice's friend",
            friends,
        )

        step("contacts: unfriend")
        ok_data(alice.im.contacts.remove(dave_id), "contacts.remove")
        friends = ok_data(dave.im.contacts.friends(), "dave's friends after the removal")
        check(all(f.get("userId") != alice_id for f in friends), "an unfriended user is still a friend", friends)

        step("contacts: a friend request, rejected")
        req = ok_data(bob.im.contacts.request(dave_id), "bob's contacts.request")
        rejected = ok_data(dave.im.contacts.reject(req["id"]), "contacts.reject")
        check(rejected.get("status") == "rejected", "contacts.reject: status", rejected)
        friends = ok_data(dave.im.contacts.friends(), "dave's friends after the rejection")
        check(all(f.get("userId") != bob_id for f in friends), "a rejected request made friends", friends)

        step("contacts: a block keeps the blocked user out of direct conversations")
        ok_data(bob.im.direct.send(dave_id, "hi dave"), "bob's first direct message")
        ok_data(dave.im.contacts.block(bob_id), "contacts.block")
        blocked = ok_data(dave.im.contacts.list_blocked(), "contacts.list_blocked")
        check(any(b.get("userId") == bob_id for b in blocked), "list_blocked lacks bob", blocked)
        refused = bob.im.direct.send(dave_id, "still there?")
        check(
            refused.get("ok") is False and (refused.get("error") or {}).get("code") == "BLOCKED",
            "a blocked user wrote to an existing direct conversation",
            refused,
        )
        ok_data(dave.im.contacts.block(alice_id), "contacts.block another")
        refused = alice.im.direct.send(dave_id, "a new conversation")
        check(
            refused.get("ok") is False and (refused.get("error") or {}).get("code") == "BLOCKED",
            "a blocked user opened a direct conversation",
            refused,
        )
        ok_data(dave.im.contacts.unblock(bob_id), "contacts.unblock")
        ok_data(dave.im.contacts.unblock(alice_id), "contacts.unblock another")
        ok_data(bob.im.direct.send(dave_id, "unblocked"), "a direct message after the unblock")

    finally:
        dave.close()


def main():
    if len(sys.argv) != 2:
        print("usage: prismer_check.py BASE_URL", file=sys.stderr)
        return 2
    base = sys.argv[1].rstrip("/")
    step(f"prismer {prismer.__version__} against {base}")
    suffix = uuid.uuid4().hex[:8]

    step("register two users anonymously")
    alice, alice_id, _ = register(base, f"alice_{suffix}", "Alice")
    bob, bob_id, bob_token = register(base, f"bob_{suffix}", "Bob")
    carol, _, carol_token = register(base, f"carol_{suffix}", "Carol")
    carol.close()
    try:
        step("create a group")
        group = ok_data(alice.im.groups.create(f"team-{suffix}", [bob_id]), "groups.create")
        group_id = group.get("groupId")
        check(group_id, "groups.create: no groupId", group)
        members = {m.get("userId") for m in group.get("members") or []}
        check({alice_id, bob_id} <= members, "groups.create: members lack alice or bob", group)
        groups = ok_data(bob.im.groups.list(), "bob groups.list")
        check(isinstance(groups, list), "groups.list data is not a list", groups)
        check(any(g.get("groupId") == group_id for g in groups), "bob does not see the group", groups)

        step("send twice with one explicit idempotency key")
        key = f"interop-{uuid.uuid4()}"
        first = ok_data(alice.im.groups.send(group_id, "hello", idempotency_key=key), "send #1")
        msg = first.get("message") or {}
        for k in ("id", "conversationId", "senderId", "type", "content", "createdAt"):
            check(k in msg, f"send: data.message.{k} missing", first)
        check(msg["content"] == "hello", "send: content", first)
        check(msg["senderId"] == alice_id, "send: senderId is not alice", first)
        check(msg["conversationId"] == group_id, "send: conversationId is not the group", first)
        second = ok_data(alice.im.groups.send(group_id, "hello", idempotency_key=key), "send #2")
        check(
            (second.get("message") or {}).get("id") == msg["id"],
            f"a retry with the same idempotency key made a second message "
            f"({msg['id']} vs {(second.get('message') or {}).get('id')})",
            second,
        )
        hist = history_ids(bob, group_id)
        hello = [m for m in hist if m.get("content") == "hello"]
        check(len(hello) == 1, f"history holds {len(hello)} copies of the message, not 1", hist)
        check(hello[0].get("id") == msg["id"], "history: the message id differs", hist)

        step("edit")
        ok_data(alice.im.messages.edit(group_id, msg["id"], "hello, edited"), "edit")
        hist = history_ids(bob, group_id)
        edited = [m for m in hist if m.get("id") == msg["id"]]
        check(edited and edited[0].get("content") == "hello, edited", "history after edit", hist)

        step("someone else's edit is refused with an {code,message} error")
        refused = bob.im.messages.edit(group_id, msg["id"], "not mine")
        check(refused.get("ok") is False, "bob edited alice's message", refused)
        err = refused.get("error")
        check(
            isinstance(err, dict) and err.get("code") and err.get("message"),
            "error is not an object {code, message}",
            refused,
        )

        step("mark as read (a POST with no body)")
        ok_data(bob.im.conversations.mark_as_read(group_id), "mark_as_read")

        step("delete")
        ok_data(alice.im.messages.delete(group_id, msg["id"]), "delete")
        hist = history_ids(bob, group_id)
        check(all(m.get("id") != msg["id"] for m in hist), "history still shows the deleted message", hist)

        step("direct message and more group traffic")
        direct = ok_data(bob.im.direct.send(alice_id, "hi alice"), "direct send")
        check((direct.get("message") or {}).get("content") == "hi alice", "direct send", direct)
        dm_hist = ok_data(alice.im.direct.get_messages(bob_id), "direct history")
        check(
            isinstance(dm_hist, list) and any(m.get("content") == "hi alice" for m in dm_hist),
            "direct history lacks the message",
            dm_hist,
        )
        kept = ok_data(alice.im.messages.send(group_id, "kept"), "send kept")["message"]
        for i in range(BULK_MESSAGES):
            ok_data(alice.im.messages.send(group_id, f"bulk {i}"), f"bulk send {i}")

        sync_checks(base, alice, alice_id, bob_id, bob_token, group_id, msg["id"], kept["id"])
        file_checks(base, alice, bob, bob_token, carol_token, group_id)
        contact_checks(base, alice, alice_id, bob, bob_id, suffix)

        realtime_sync_checks(base, alice, alice_id, bob_id, bob_token, group_id)
        realtime_async_checks(base, alice, alice_id, bob_id, bob_token, group_id)
    finally:
        alice.close()
        bob.close()

    step("all checks passed")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except CheckFailed as e:
        print(f"[prismer_check] FAILED: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    except Exception:
        print("[prismer_check] FAILED with an exception:", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
