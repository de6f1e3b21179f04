// Drives a server through a TLS reverse proxy the way clients do: REST, an upload larger than
// the proxies' default body limit, the native WebSocket and SSE streams (each must deliver a new
// message promptly, so neither may be buffered), the DDP and WuKongIM upgrades, and /metrics
// kept from the public. Node's own fetch and WebSocket, no packages. Prints one line per check;
// exits non-zero at the first failure.
//
// usage: node --experimental-websocket through_proxy.mjs https://localhost:PORT
// (the proxy's certificate authority in NODE_EXTRA_CA_CERTS)

const base = process.argv[2];
const wsBase = base.replace(/^https:/, 'wss:');
const deadline = (ms, what) =>
  new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out: ${what}`)), ms));
const within = (promise, what, ms = 10000) => Promise.race([promise, deadline(ms, what)]);

function check(cond, what) {
  if (!cond) throw new Error(`failed: ${what}`);
  console.log(`ok ${what}`);
}

async function call(method, path, { token, json, headers = {}, body } = {}) {
  const h = { ...headers };
  if (token) h.authorization = `Bearer ${token}`;
  if (json !== undefined) {
    h['content-type'] = 'application/json';
    body = JSON.stringify(json);
  }
  const r = await within(fetch(base + path, { method, headers: h, body }), `${method} ${path}`);
  const text = await within(r.text(), `the body of ${method} ${path}`);
  let parsed = null;
  try { parsed = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, headers: r.headers, text, body: parsed };
}

async function register(name) {
  const r = await call('POST', '/api/im/register', {
    json: { type: 'human', username: name, displayName: name },
  });
  if (r.status !== 201) throw new Error(`register ${name}: ${r.status} ${r.text}`);
  return { token: r.body.data.token, id: r.body.data.imUserId };
}

// The frames of one stream, as a queue that can be waited on for the first frame matching `pred`.
function frameQueue() {
  const frames = [];
  const waiters = [];
  return {
    push(frame) {
      frames.push(frame);
      for (const w of waiters.splice(0)) w();
    },
    async first(pred, what) {
      return within((async () => {
        for (;;) {
          const hit = frames.find(pred);
          if (hit) return hit;
          await new Promise((resolve) => waiters.push(resolve));
        }
      })(), what);
    },
  };
}

function openWebSocket(url, what) {
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  const opened = new Promise((resolve, reject) => {
    ws.addEventListener('open', () => resolve(ws));
    ws.addEventListener('error', () => reject(new Error(`${what}: the upgrade failed`)));
  });
  return within(opened, `${what} upgrade`);
}

async function sseFrames(url, queue) {
  const r = await within(fetch(url, { headers: { accept: 'text/event-stream' } }), 'SSE headers');
  check(r.status === 200, `SSE answers 200 (got ${r.status})`);
  const reader = r.body.getReader();
  const decoder = new TextDecoder();
  let buffered = '';
  (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffered += decoder.decode(value, { stream: true });
      let at;
      while ((at = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, at).trimEnd();
        buffered = buffered.slice(at + 1);
        if (line.startsWith('data:')) {
          try { queue.push(JSON.parse(line.slice(5).trim())); } catch { /* not a frame */ }
        }
      }
    }
  })().catch(() => {});
  return reader;
}

async function main() {
  const health = await call('GET', '/healthz');
  check(health.status === 200 && health.body?.status === 'ok', 'GET /healthz through the proxy');

  const metrics = await call('GET', '/metrics');
  check(metrics.status === 403, `/metrics is refused at the proxy (got ${metrics.status})`);

  const suffix = Date.now().toString(36);
  const alice = await register(`alice${suffix}`);
  const bob = await register(`bob${suffix}`);
  const group = await call('POST', '/api/im/groups', {
    token: alice.token,
    json: { title: 'proxied', members: [bob.id] },
  });
  check(group.status === 201, `a group is created (got ${group.status})`);
  const gid = group.body.data.groupId;

  // Bob listens on both native streams before Alice sends.
  const wsQueue = frameQueue();
  const ws = await openWebSocket(`${wsBase}/ws?token=${encodeURIComponent(bob.token)}`, '/ws');
  ws.addEventListener('message', (e) => wsQueue.push(JSON.parse(e.data)));
  await wsQueue.first((f) => f.type === 'authenticated', '/ws authenticated');
  check(true, '/ws upgrades and authenticates');
  const sseQueue = frameQueue();
  const sse = await sseFrames(`${base}/sse?token=${encodeURIComponent(bob.token)}`, sseQueue);
  await sseQueue.first((f) => f.type === 'authenticated', 'SSE authenticated');
  check(true, 'SSE streams its first frame at once');

  const sent = await call('POST', `/api/im/messages/${gid}`, {
    token: alice.token,
    json: { content: 'through the proxy' },
  });
  check(sent.status === 201, `a message is sent (got ${sent.status})`);
  const isIt = (f) => f.type === 'message.new' && f.payload?.content === 'through the proxy';
  await wsQueue.first(isIt, 'the message on /ws');
  check(true, 'the message arrives on /ws');
  await sseQueue.first(isIt, 'the message on SSE');
  check(true, 'the message arrives on SSE (not held in a buffer)');
  ws.close();
  await sse.cancel();

  // Rocket.Chat's realtime socket: DDP connect.
  const ddp = await openWebSocket(`${wsBase}/websocket`, 'DDP /websocket');
  const ddpQueue = frameQueue();
  ddp.addEventListener('message', (e) => ddpQueue.push(JSON.parse(e.data)));
  ddp.send(JSON.stringify({ msg: 'connect', version: '1', support: ['1'] }));
  await ddpQueue.first((f) => f.msg === 'connected', 'DDP connected');
  check(true, 'DDP connects on /websocket');
  ddp.close();

  // The WuKongIM socket: the upgrade itself (its packets are binary and need a key exchange).
  const wk = await openWebSocket(`${wsBase}/v1/wukongim/ws`, '/v1/wukongim/ws');
  check(true, 'the WuKongIM socket upgrades on /v1/wukongim/ws');
  wk.close();

  // An upload of 2 MiB: above nginx's default 1 MiB body limit, so the example must raise it.
  const size = 2 * 1024 * 1024;
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + 7) & 0xff;
  const form = new FormData();
  form.append('file', new Blob([bytes], { type: 'application/octet-stream' }), 'big.bin');
  form.append('msg', 'a big file');
  const upload = await within(fetch(`${base}/api/v1/rooms.upload/${gid}`, {
    method: 'POST',
    headers: { 'x-auth-token': alice.token, 'x-user-id': alice.id },
    body: form,
  }), 'the upload');
  const uploaded = await within(upload.json().catch(() => null), 'the upload answer');
  check(upload.status === 200 && uploaded?.success === true,
    `a 2 MiB upload passes the proxy (got ${upload.status})`);
  const fileId = uploaded.message.file._id;
  const download = await within(fetch(`${base}/api/im/files/${fileId}/content`, {
    headers: { authorization: `Bearer ${bob.token}` },
  }), 'the download');
  const got = new Uint8Array(await within(download.arrayBuffer(), 'the downloaded bytes'));
  check(download.status === 200 && got.length === size && got.every((b, i) => b === bytes[i]),
    `the other member downloads the same bytes (got ${download.status}, ${got.length} bytes)`);
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e.message);
    process.exit(1);
  },
);
