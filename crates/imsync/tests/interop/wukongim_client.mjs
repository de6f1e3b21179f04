// One user of the unmodified `wukongimjssdk` 1.0.4 against imsync, driven by the test in
// tests/wukongim.rs: commands as JSON lines on stdin, events as JSON lines on stdout. The SDK
// has no HTTP code; the provider below is the app's part, written from docs/wukongim.md: it logs
// in over TangSengDaoDao REST, asks `/v1/users/{uid}/im` for the socket, and syncs
// conversations and reminders. The SDK's managers are singletons: one user per process.
//
// Environment: IMSYNC_BASE (http://host:port), WK_USERNAME, WK_PASSWORD, and WK_TOKEN to
// connect with another token than the login's (a wrong one, to see the refusal).

import WKSDK from 'wukongimjssdk';
import {
  Channel,
  Conversation,
  ConversationExtra,
  Message,
  MessageText,
} from 'wukongimjssdk/lib/model';
import WebSocket from 'ws';
import readline from 'readline';

globalThis.WebSocket = WebSocket;
// The SDK logs with console.log: keep stdout for events.
console.log = (...args) => process.stderr.write(args.map(String).join(' ') + '\n');

const base = process.env.IMSYNC_BASE;
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

async function api(method, path, body, token) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.token = token;
  const r = await fetch(base + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return JSON.parse(text);
}

function messageFrom(m) {
  const msg = new Message();
  msg.messageID = m.message_idstr || String(m.message_id);
  msg.messageSeq = m.message_seq;
  msg.clientMsgNo = m.client_msg_no;
  msg.fromUID = m.from_uid;
  msg.channel = new Channel(m.channel_id, m.channel_type);
  msg.timestamp = m.timestamp;
  msg.content = new MessageText(m.payload && m.payload.content);
  return msg;
}

async function main() {
  const login = await api('POST', '/v1/user/login', {
    username: process.env.WK_USERNAME,
    password: process.env.WK_PASSWORD,
  });
  out({ event: 'login', uid: login.uid });
  const sdk = WKSDK.shared();
  sdk.config.uid = login.uid;
  sdk.config.token = process.env.WK_TOKEN || login.token;
  const provider = sdk.config.provider;
  provider.connectAddrCallback = async (callback) => {
    const im = await api('GET', `/v1/users/${login.uid}/im`, undefined, login.token);
    callback(im.ws_addr);
  };
  provider.syncConversationsCallback = async () => {
    const r = await api('POST', '/v1/conversation/sync', { msg_count: 1 }, login.token);
    return r.conversations.map((c) => {
      const conv = new Conversation();
      conv.channel = new Channel(c.channel_id, c.channel_type);
      conv.unread = c.unread || 0;
      conv.timestamp = c.timestamp;
      conv.remoteExtra = new ConversationExtra();
      if (c.recents && c.recents.length > 0) conv.lastMessage = messageFrom(c.recents[0]);
      return conv;
    });
  };
  provider.syncRemindersCallback = async (version) =>
    api('POST', '/v1/message/reminder/sync', { version }, login.token);
  provider.syncMessagesCallback = async (channel, opts) => {
    const r = await api(
      'POST',
      '/v1/message/channel/sync',
      {
        channel_id: channel.channelID,
        channel_type: channel.channelType,
        start_message_seq: opts.startMessageSeq || 0,
        end_message_seq: opts.endMessageSeq || 0,
        limit: opts.limit || 50,
        pull_mode: opts.pullMode || 0,
      },
      login.token,
    );
    return r.messages.map(messageFrom);
  };

  sdk.connectManager.addConnectStatusListener((status, reason) =>
    out({ event: 'status', status, reason }),
  );
  sdk.chatManager.addMessageListener((m) => {
    // The SDK also tells its listeners of the messages it sends; those have no id yet.
    if (m.fromUID === login.uid && !m.messageSeq) return;
    out({
      event: 'message',
      channel_id: m.channel.channelID,
      channel_type: m.channel.channelType,
      from_uid: m.fromUID,
      client_msg_no: m.clientMsgNo,
      message_id: String(m.messageID),
      message_seq: m.messageSeq,
      content: m.content && m.content.text,
    });
  });
  sdk.chatManager.addMessageStatusListener((ack) =>
    out({
      event: 'sendack',
      client_seq: ack.clientSeq,
      message_id: String(ack.messageID),
      message_seq: ack.messageSeq,
      reason: ack.reasonCode,
    }),
  );

  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', async (line) => {
    let c;
    try {
      c = JSON.parse(line);
      if (c.cmd === 'send') {
        const channel = new Channel(c.channel_id, c.channel_type);
        const content = new MessageText(c.text);
        if (c.client_msg_no) {
          // A resend with a chosen clientMsgNo, as after a lost SENDACK.
          const p = sdk.chatManager.getSendPacket(content, channel);
          p.clientMsgNo = c.client_msg_no;
          sdk.chatManager.sendingQueues.set(p.clientSeq, p);
          sdk.connectManager.sendPacket(p);
          out({ event: 'sent', client_seq: p.clientSeq });
        } else {
          const m = await sdk.chatManager.send(content, channel);
          out({ event: 'sent', client_msg_no: m.clientMsgNo });
        }
      } else if (c.cmd === 'sync') {
        const list = await sdk.conversationManager.sync({});
        out({
          event: 'conversations',
          list: list.map((cv) => ({
            channel_id: cv.channel.channelID,
            channel_type: cv.channel.channelType,
            unread: cv.unread,
            last_content: cv.lastMessage && cv.lastMessage.content.text,
            last_seq: cv.lastMessage && cv.lastMessage.messageSeq,
          })),
        });
      } else if (c.cmd === 'history') {
        const list = await sdk.chatManager.syncMessages(
          new Channel(c.channel_id, c.channel_type),
          { limit: 50, startMessageSeq: 0, endMessageSeq: 0, pullMode: 1 },
        );
        out({
          event: 'history',
          list: list.map((m) => ({ message_seq: m.messageSeq, content: m.content.text })),
        });
      } else if (c.cmd === 'exit') {
        sdk.disconnect();
        process.exit(0);
      }
    } catch (e) {
      out({ event: 'error', message: String((e && e.stack) || e) });
    }
  });
  sdk.connect();
}

main().catch((e) => {
  out({ event: 'error', message: String((e && e.stack) || e) });
  process.exit(1);
});
