#!/usr/bin/env python3
"""Check imsync's /openapi.json with third-party validators, and hold it to the server's answers.

Usage: openapi_check.py BASE_URL ADMIN_USERNAME ADMIN_PASSWORD
       e.g. openapi_check.py http://127.0.0.1:8080 root 'the password'
The admin account (made with `imsync user add NAME --admin`) drives the admin API.

1. The served document passes openapi-spec-validator (PyPI `openapi-spec-validator`), which
   among other things refuses repeated operationIds, and every 2xx response of every operation
   documents a JSON body (a file download, its bytes).
2. Every native operation is called on a live server with real data (messages that are edited,
   replied to, quoted, reacted to and deleted; a direct conversation before and after its first
   message; a file uploaded, sent and downloaded; ...). Each answer's status must be one the operation documents, and a 2xx body must
   validate (jsonschema, draft 2020-12, which OpenAPI 3.1 schemas are) against the documented
   schema, and carry no field the schema does not name: a field added to or renamed in a response
   without its type, or a type that promises what the server does not send, both fail here.

Exits 0 when every check passes; otherwise prints what failed and exits 1.
"""

import json
import sys
import urllib.error
import urllib.request
import uuid

import jsonschema
import openapi_spec_validator
import referencing
import referencing.jsonschema

DOC_URI = "urn:imsync:openapi"
FAILURES = []


def fail(what):
    FAILURES.append(what)
    print(f"FAIL {what}", flush=True)


class Server:
    def __init__(self, base):
        self.base = base.rstrip("/")

    def call(self, method, path, body=None, token=None, headers=None, data=None,
             content_type="application/json"):
        """Sends `body` as JSON, or `data` as raw bytes of `content_type`; answers the status and
        the parsed JSON answer, or the raw bytes of an answer that is not JSON."""
        if data is None and body is not None:
            data = json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("content-type", content_type)
        if token:
            req.add_header("authorization", f"Bearer {token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                raw = resp.read()
                if resp.headers.get_content_type() != "application/json":
                    return resp.status, raw
                return resp.status, json.loads(raw or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")


def pointer_escape(s):
    return s.replace("~", "~0").replace("/", "~1")


class Document:
    def __init__(self, doc):
        self.doc = doc
        resource = referencing.Resource.from_contents(
            doc, default_specification=referencing.jsonschema.DRAFT202012
        )
        self.registry = referencing.Registry().with_resource(DOC_URI, resource)
        self.resolver = self.registry.resolver(base_uri=DOC_URI)

    def deref(self, schema):
        while isinstance(schema, dict) and "$ref" in schema:
            ref = schema["$ref"]
            if ref.startswith("#"):
                ref = DOC_URI + ref
            schema = self.resolver.lookup(ref).contents
        return schema

    def validator(self, pointer):
        return jsonschema.Draft202012Validator(
            {"$ref": f"{DOC_URI}#{pointer}"}, registry=self.registry
        )

    def validator_for(self, schema):
        """A validator of a subschema found in the document, whose refs point into it."""
        return jsonschema.Draft202012Validator(
            {"allOf": [self._absolute(schema)]}, registry=self.registry
        )

    def _absolute(self, schema):
        if isinstance(schema, dict):
            return {
                k: (DOC_URI + v if k == "$ref" and isinstance(v, str) and v.startswith("#") else self._absolute(v))
                for k, v in schema.items()
            }
        if isinstance(schema, list):
            return [self._absolute(v) for v in schema]
        return schema

    def properties(self, schema, instance):
        """The properties an object schema names, or None when it leaves the object open."""
        schema = self.deref(schema)
        if not isinstance(schema, dict):
            return None
        for key in ("oneOf", "anyOf"):
            if key in schema:
                for branch in schema[key]:
                    if self.validator_for(branch).is_valid(instance):
                        return self.properties(branch, instance)
                return None
        if "allOf" in schema:
            names = {}
            for part in schema["allOf"]:
                p = self.properties(part, instance)
                if p is None:
                    return None
                names.update(p)
            return names
        if "properties" in schema:
            return schema["properties"]
        return None

    def items(self, schema, instance):
        schema = self.deref(schema)
        if not isinstance(schema, dict):
            return None
        for key in ("oneOf", "anyOf"):
            if key in schema:
                for branch in schema[key]:
                    if self.validator_for(branch).is_valid(instance):
                        return self.items(branch, instance)
                return None
        return schema.get("items")

    def undocumented(self, schema, instance, at="$"):
        """Fields of `instance` that `schema` does not name, as JSON paths."""
        out = []
        if isinstance(instance, dict):
            props = self.properties(schema, instance)
            if props is None:
                return out
            for k, v in instance.items():
                if k not in props:
                    out.append(f"{at}.{k}")
                else:
                    out.extend(self.undocumented(props[k], v, f"{at}.{k}"))
        elif isinstance(instance, list):
            item = self.items(schema, instance)
            if item is not None:
                for i, v in enumerate(instance):
                    out.extend(self.undocumented(item, v, f"{at}[{i}]"))
        return out


def check_document(doc):
    try:
        openapi_spec_validator.validate(doc)
    except Exception as e:  # the validator's own error types differ across versions
        fail(f"openapi-spec-validator refuses the document: {e}")
    seen = {}
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            op_id = op.get("operationId")
            if op_id in seen:
                fail(f"operationId {op_id!r} of {method.upper()} {path} repeats {seen[op_id]}")
            seen[op_id] = f"{method.upper()} {path}"
            for status, resp in op["responses"].items():
                if status.startswith("2"):
                    content = resp.get("content", {})
                    schema = content.get("application/json", {}).get("schema")
                    # A download documents its bytes instead.
                    if schema is None and "application/octet-stream" not in content:
                        fail(f"{method.upper()} {path} {status} documents no body")


class Checker:
    def __init__(self, server, doc):
        self.server = server
        self.doc = doc
        self.checked = set()

    def call(self, method, template, path=None, body=None, token=None, headers=None, expect=None,
             data=None, content_type="application/json"):
        """Calls the endpoint and checks its answer against the document; answers the body."""
        path = path or template
        status, answer = self.server.call(method, path, body, token, headers, data, content_type)
        what = f"{method} {path} -> {status}"
        if expect is not None and status != expect:
            fail(f"{what}: expected {expect}: {json.dumps(answer)[:400]}")
            return answer
        op = self.doc.doc["paths"].get(template, {}).get(method.lower())
        if op is None:
            fail(f"{what}: {method} {template} is not in the document")
            return answer
        resp = op["responses"].get(str(status))
        if resp is None:
            fail(f"{what}: status {status} is not documented (has {sorted(op['responses'])})")
            return answer
        if not (200 <= status < 300):
            return answer
        if isinstance(answer, bytes):
            if "application/octet-stream" not in resp.get("content", {}):
                fail(f"{what}: answered bytes where the document promises JSON")
            self.checked.add((method, template))
            return answer
        pointer = "/".join(
            [
                "/paths",
                pointer_escape(template),
                method.lower(),
                "responses",
                str(status),
                "content",
                "application~1json",
                "schema",
            ]
        )
        schema = resp["content"]["application/json"]["schema"]
        errors = sorted(self.doc.validator(pointer).iter_errors(answer), key=lambda e: list(e.path))
        for e in errors[:5]:
            loc = "$" + "".join(f"[{p!r}]" for p in e.path)
            fail(f"{what}: {loc}: {e.message[:300]}")
        for field in self.doc.undocumented(schema, answer):
            fail(f"{what}: {field} is not in the documented schema")
        self.checked.add((method, template))
        return answer


def run(base, admin_name, admin_password):
    server = Server(base)
    status, doc = server.call("GET", "/openapi.json")
    if status != 200:
        fail(f"GET /openapi.json -> {status}")
        return
    check_document(doc)
    c = Checker(server, Document(doc))
    run_id = uuid.uuid4().hex[:8]

    def register(name):
        body = {"type": "agent", "username": f"{name}-{run_id}", "displayName": name,
                "agentType": "assistant", "capabilities": ["chat"]}
        data = c.call("POST", "/api/im/register", body=body, expect=201)["data"]
        return data["token"], data["imUserId"]

    alice, alice_id = register("alice")
    bob, bob_id = register("bob")
    carol, carol_id = register("carol")
    # Registering again as the owner of the name answers the account (200).
    c.call("POST", "/api/im/register", token=alice, expect=200,
           body={"type": "agent", "username": f"alice-{run_id}"})

    pw = {"username": f"dave-{run_id}", "password": "correct horse battery", "displayName": "Dave"}
    c.call("POST", "/api/im/users/register", body=pw, expect=201)
    dave = c.call("POST", "/api/im/users/login", body={"username": pw["username"], "password": pw["password"]},
                  expect=200)["data"]["token"]

    c.call("GET", "/api/im/health", expect=200)
    c.call("PATCH", "/api/im/me", token=alice, body={"bio": "hi", "metadata": {"k": 1}}, expect=200)

    # A direct conversation before its first message: an empty page without a conversation.
    c.call("GET", "/api/im/direct/{userId}/messages", f"/api/im/direct/{bob_id}/messages", token=alice, expect=200)
    sent = c.call("POST", "/api/im/direct/{userId}/messages", f"/api/im/direct/{bob_id}/messages", token=alice,
                  body={"content": "hello bob"}, headers={"X-Idempotency-Key": f"d-{run_id}"}, expect=201)
    direct_id = sent["data"]["conversationId"]
    c.call("POST", "/api/im/conversations/direct", token=alice, body={"otherUserId": bob_id}, expect=200)
    c.call("POST", "/api/im/conversations/direct", token=alice, body={"otherUserId": carol_id}, expect=201)

    group = c.call("POST", "/api/im/groups", token=alice,
                   body={"title": "g", "members": [bob_id], "description": "d"}, expect=201)["data"]
    gid = group["groupId"]
    c.call("GET", "/api/im/groups", token=alice, expect=200)
    c.call("GET", "/api/im/groups/{id}", f"/api/im/groups/{gid}", token=alice, expect=200)
    c.call("POST", "/api/im/groups/{id}/members", f"/api/im/groups/{gid}/members", token=alice,
           body={"userId": carol_id}, expect=201)
    c.call("DELETE", "/api/im/groups/{id}/members/{userId}", f"/api/im/groups/{gid}/members/{carol_id}",
           token=alice, expect=200)

    first = c.call("POST", "/api/im/groups/{id}/messages", f"/api/im/groups/{gid}/messages", token=alice,
                   body={"content": "first", "metadata": {"_idempotencyKey": f"g-{run_id}"}}, expect=201)
    first_id = first["data"]["message"]["id"]
    # Its retry: the same message, marked duplicate.
    c.call("POST", "/api/im/groups/{id}/messages", f"/api/im/groups/{gid}/messages", token=alice,
           body={"content": "first", "metadata": {"_idempotencyKey": f"g-{run_id}"}}, expect=201)
    reply = c.call("POST", "/api/im/messages/{conversationId}", f"/api/im/messages/{gid}", token=bob,
                   body={"content": "a reply", "parentId": first_id, "quotedMessageId": first_id,
                         "contentBlocks": [{"type": "text", "text": "a reply"}]}, expect=201)
    reply_id = reply["data"]["message"]["id"]
    gone = c.call("POST", "/api/im/messages/{conversationId}", f"/api/im/messages/{gid}", token=alice,
                  body={"content": "to delete", "type": "markdown"}, expect=201)["data"]["message"]["id"]
    c.call("PATCH", "/api/im/messages/{conversationId}/{messageId}", f"/api/im/messages/{gid}/{first_id}",
           token=alice, body={"content": "first, edited"}, expect=200)
    c.call("POST", "/api/im/messages/{conversationId}/{messageId}/reactions",
           f"/api/im/messages/{gid}/{first_id}/reactions", token=bob, body={"emoji": "👍"}, expect=200)
    c.call("POST", "/api/im/messages/delivered", token=bob,
           body={"conversationId": gid, "messageIds": [first_id, reply_id]}, expect=200)
    c.call("DELETE", "/api/im/messages/{conversationId}/{messageId}", f"/api/im/messages/{gid}/{gone}",
           token=alice, expect=200)

    for template, path in [
        ("/api/im/messages/{conversationId}", f"/api/im/messages/{gid}"),
        ("/api/im/groups/{id}/messages", f"/api/im/groups/{gid}/messages"),
        ("/api/im/direct/{userId}/messages", f"/api/im/direct/{bob_id}/messages"),
    ]:
        c.call("GET", template, path, token=alice, expect=200)
    c.call("GET", "/api/im/messages/{conversationId}", f"/api/im/messages/{gid}?limit=1", token=bob, expect=200)

    c.call("GET", "/api/im/conversations", token=alice, expect=200)
    c.call("GET", "/api/im/conversations", "/api/im/conversations?unreadOnly=true", token=bob, expect=200)
    c.call("GET", "/api/im/conversations/{id}", f"/api/im/conversations/{gid}", token=bob, expect=200)
    c.call("PATCH", "/api/im/conversations/{id}", f"/api/im/conversations/{gid}", token=alice,
           body={"title": "g2", "metadata": {"topic": "t"}}, expect=200)
    c.call("POST", "/api/im/conversations/{id}/read", f"/api/im/conversations/{gid}/read", token=bob, expect=200)
    c.call("PATCH", "/api/im/conversations/{id}/pin", f"/api/im/conversations/{gid}/pin", token=bob,
           body={"pinned": True}, expect=200)
    c.call("PATCH", "/api/im/conversations/{id}/mute", f"/api/im/conversations/{gid}/mute", token=bob,
           body={"muted": True}, expect=200)
    c.call("GET", "/api/im/conversations", token=bob, expect=200)
    c.call("POST", "/api/im/conversations/{id}/archive", f"/api/im/conversations/{direct_id}/archive",
           token=alice, expect=200)
    c.call("POST", "/api/im/conversations/{id}/unarchive", f"/api/im/conversations/{direct_id}/unarchive",
           token=alice, expect=200)
    other = c.call("POST", "/api/im/conversations/group", token=alice,
                   body={"title": "h", "memberIds": [bob_id], "public": False}, expect=201)["data"]["id"]
    c.call("POST", "/api/im/conversations/{id}/participants", f"/api/im/conversations/{other}/participants",
           token=alice, body={"userId": carol_id}, expect=201)
    c.call("DELETE", "/api/im/conversations/{id}/participants/{userId}",
           f"/api/im/conversations/{other}/participants/{carol_id}", token=alice, expect=200)
    c.call("DELETE", "/api/im/conversations/{id}", f"/api/im/conversations/{other}", token=bob, expect=200)

    c.call("GET", "/api/im/contacts", token=alice, expect=200)
    req = c.call("POST", "/api/im/contacts/request", token=alice, body={"userId": bob_id, "reason": "hi"},
                 expect=201)["data"]
    c.call("GET", "/api/im/contacts/requests/sent", token=alice, expect=200)
    c.call("GET", "/api/im/contacts/requests/received", token=bob, expect=200)
    c.call("POST", "/api/im/contacts/requests/{id}/accept", f"/api/im/contacts/requests/{req['id']}/accept",
           token=bob, expect=200)
    other = c.call("POST", "/api/im/contacts/request", token=carol, body={"userId": alice_id},
                   expect=201)["data"]
    c.call("POST", "/api/im/contacts/requests/{id}/reject", f"/api/im/contacts/requests/{other['id']}/reject",
           token=alice, expect=200)
    c.call("PATCH", "/api/im/contacts/{userId}/remark", f"/api/im/contacts/{bob_id}/remark", token=alice,
           body={"remark": "Bobby"}, expect=200)
    c.call("GET", "/api/im/contacts/friends", token=alice, expect=200)
    c.call("DELETE", "/api/im/contacts/{userId}/remove", f"/api/im/contacts/{bob_id}/remove", token=alice,
           expect=200)
    c.call("POST", "/api/im/contacts/{userId}/block", f"/api/im/contacts/{carol_id}/block", token=alice,
           expect=200)
    c.call("GET", "/api/im/contacts/blocked", token=alice, expect=200)
    c.call("DELETE", "/api/im/contacts/{userId}/block", f"/api/im/contacts/{carol_id}/block", token=alice,
           expect=200)
    c.call("GET", "/api/im/users/{id}", f"/api/im/users/{bob_id}", token=alice, expect=200)
    c.call("GET", "/api/im/users/by-username/{username}", f"/api/im/users/by-username/bob-{run_id}",
           token=alice, expect=200)
    c.call("POST", "/api/im/presence/batch", token=alice, body={"userIds": [bob_id, "nobody"]}, expect=200)
    c.call("GET", "/api/im/me", token=bob, expect=200)
    c.call("GET", "/api/im/sync", "/api/im/sync?since=0&limit=500", token=bob, expect=200)
    c.call("GET", "/api/im/sync", "/api/im/sync?since=0&limit=2", token=alice, expect=200)

    # Files: a presigned upload (a multipart form), sent in a message and downloaded whole and by
    # range; an upload in parts; quota, types, delete.
    content = b"hello, file\n" * 100
    up = c.call("POST", "/api/im/files/presign", token=alice, expect=200,
                body={"fileName": "a.txt", "fileSize": len(content), "mimeType": "text/plain"})["data"]
    boundary = f"b{run_id}"
    form = (f"--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n"
            f"content-type: text/plain\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    c.call("POST", "/api/im/files/upload/{id}", up["url"], token=alice, expect=200, data=form,
           content_type=f"multipart/form-data; boundary={boundary}")
    done = c.call("POST", "/api/im/files/confirm", token=alice, body={"uploadId": up["uploadId"]},
                  expect=200)["data"]
    c.call("POST", "/api/im/messages/{conversationId}", f"/api/im/messages/{gid}", token=alice, expect=201,
           body={"content": "a.txt", "type": "file",
                 "metadata": {"uploadId": done["uploadId"], "fileUrl": done["cdnUrl"]}})
    got = c.call("GET", "/api/im/files/{id}/content", done["cdnUrl"], token=bob, expect=200)
    if got != content:
        fail("GET /api/im/files/{id}/content did not answer the bytes uploaded")
    c.call("GET", "/api/im/files/{id}/content", done["cdnUrl"], token=bob, expect=206,
           headers={"range": "bytes=0-4"})
    multi = c.call("POST", "/api/im/files/upload/init", token=alice, expect=200,
                   body={"fileName": "b.bin", "fileSize": 10, "mimeType": "application/octet-stream"})["data"]
    part = c.call("PUT", "/api/im/files/upload/{id}/parts/{n}", multi["parts"][0]["url"], token=alice,
                  expect=200, data=b"0123456789", content_type="application/octet-stream")["data"]
    c.call("POST", "/api/im/files/upload/complete", token=alice, expect=200,
           body={"uploadId": multi["uploadId"], "parts": [{"partNumber": 1, "etag": part["etag"]}]})
    c.call("GET", "/api/im/files/quota", token=alice, expect=200)
    c.call("GET", "/api/im/files/types", token=alice, expect=200)
    c.call("DELETE", "/api/im/files/{id}", f"/api/im/files/{multi['uploadId']}", token=alice, expect=200)

    refreshed = c.call("POST", "/api/im/token/refresh", token=dave, expect=200)["data"]["token"]
    c.call("POST", "/api/im/logout", token=refreshed, expect=200)
    c.call("DELETE", "/api/im/me", token=carol, expect=200)

    # The admin API, as the admin the server was bootstrapped with.
    admin = c.call("POST", "/api/im/users/login", body={"username": admin_name, "password": admin_password},
                   expect=200)["data"]["token"]
    c.call("GET", "/api/im/admin/users", "/api/im/admin/users?limit=2&offset=1", token=admin, expect=200)
    erin = c.call("POST", "/api/im/admin/users", token=admin,
                  body={"username": f"erin-{run_id}", "password": "erin password", "displayName": "Erin",
                        "role": "human", "admin": False}, expect=201)["data"]["id"]
    c.call("GET", "/api/im/admin/users/{id}", f"/api/im/admin/users/{erin}", token=admin, expect=200)
    c.call("PATCH", "/api/im/admin/users/{id}", f"/api/im/admin/users/{erin}", token=admin,
           body={"disabled": True}, expect=200)
    c.call("PATCH", "/api/im/admin/users/{id}", f"/api/im/admin/users/{erin}", token=admin,
           body={"disabled": False, "admin": True}, expect=200)
    c.call("POST", "/api/im/admin/users/{id}/reset-password", f"/api/im/admin/users/{erin}/reset-password",
           token=admin, body={"password": "erin password 2"}, expect=200)
    c.call("POST", "/api/im/admin/users/{id}/logout", f"/api/im/admin/users/{erin}/logout", token=admin,
           expect=200)
    c.call("GET", "/api/im/admin/users", token=bob, expect=403)
    c.call("GET", "/api/im/admin/users/{id}", "/api/im/admin/users/no-such-user", token=admin, expect=404)

    # Failures answer a status their operation documents too.
    c.call("GET", "/api/im/conversations/{id}", "/api/im/conversations/no-such-id", token=alice, expect=404)
    c.call("POST", "/api/im/users/login", body={"username": pw["username"], "password": "wrong"}, expect=401)

    documented = {
        (m.upper(), p)
        for p, item in doc["paths"].items()
        for m, op in item.items()
        if isinstance(op, dict) and "responses" in op
    }
    # A new endpoint needs a call here, or its documented answer goes unchecked.
    for method, path in sorted(documented - c.checked):
        fail(f"{method} {path} is documented but not called with a 2xx answer by this check")
    print(f"checked the answers of {len(c.checked)} of {len(documented)} operations")


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        sys.exit(2)
    try:
        run(sys.argv[1], sys.argv[2], sys.argv[3])
    except Exception as e:
        import traceback

        traceback.print_exc()
        fail(f"the check itself failed: {e!r}")
    if FAILURES:
        print(f"{len(FAILURES)} failure(s)")
        sys.exit(1)
    print("openapi_check: all checks passed")


if __name__ == "__main__":
    main()
