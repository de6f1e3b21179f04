// Drives imsync's DDP endpoint (/websocket) with Rocket.Chat's official DDP client,
// @rocket.chat/ddp-client (npm). Usage: node --experimental-websocket check.js BASE USER PASSWORD
// ROOM POSTER_TOKEN. Logs in with the password's SHA-256 digest, checks the
// login's id and expiry, subscribes to the room's message stream, has the poster send a message
// through the native API, and waits for it on the stream. Exits non-zero with the reason on failure.
'use strict';

const crypto = require('node:crypto');
const { DDPSDK } = require('@rocket.chat/ddp-client');

const [base, username, password, room, posterToken] = process.argv.slice(2);

function step(name) {
  console.log(`-- ${name}`);
}

function within(ms, what, promise) {
  return Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms)),
  ]);
}

async function main() {
  step('connect'); // the client adds /websocket itself
  const sdk = await within(10000, 'connect', DDPSDK.createAndConnect(base));

  step('log in with the password digest');
  // The client sends what it is given as the digest: callers hash the password first.
  const digest = crypto.createHash('sha256').update(password).digest('hex');
  await within(10000, 'login', sdk.account.loginWithPassword(username, digest));
  const user = sdk.account.user;
  if (!user || !user.id || !user.token) throw new Error(`no user after login: ${JSON.stringify(user)}`);
  if (!(new Date(user.tokenExpires).getTime() > Date.now())) {
    throw new Error(`tokenExpires is not a future date: ${user.tokenExpires}`);
  }

  step('subscribe to the room stream');
  let resolveMessage;
  const received = new Promise((resolve) => { resolveMessage = resolve; });
  const sub = sdk.stream('room-messages', room, (message) => {
    if (message && message.msg === 'hello over ddp-client') resolveMessage(message);
  });
  await within(10000, 'subscription ready', sub.ready());

  step('a message from the native API arrives');
  const res = await fetch(`${base}/api/im/messages/${room}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${posterToken}` },
    body: JSON.stringify({ content: 'hello over ddp-client' }),
  });
  if (res.status !== 201) throw new Error(`native send answered ${res.status}: ${await res.text()}`);
  const message = await within(10000, 'room message', received);
  if (message.rid !== room || !message._id || !message.u || !message.u.username) {
    throw new Error(`unexpected message: ${JSON.stringify(message)}`);
  }
  sub.stop();
  await sdk.account.logout();
  sdk.connection.close();
  console.log('OK');
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`FAILED: ${e && e.stack ? e.stack : JSON.stringify(e)}`);
    process.exit(1);
  },
);
