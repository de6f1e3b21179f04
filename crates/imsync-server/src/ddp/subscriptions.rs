//! DDP subscriptions: Rocket.Chat's streams of room messages (one room, or `__my_messages__` for
//! every room of the caller), of the caller's room and subscription changes, and the few a client
//! opens at start that carry nothing here. Events come from the connection's hub subscription,
//! which only carries what the native feed shows the user: a non-member cannot subscribe to a
//! room's stream, and a member removed from a room gets nothing of it after the removal.

use super::methods::message_doc;
use super::protocol::{self, MethodError};
use super::Conn;
use crate::rocketchat::render;
use axum::extract::ws::Utf8Bytes;
use imsync_core::event::EventData;
use imsync_core::model::ConversationKind;
use imsync_core::ErrorCode;
use imsync_service::hub::Delivered;
use serde_json::{json, Value};
use std::collections::HashMap;

const ROOM_MESSAGES: &str = "stream-room-messages";
const NOTIFY_USER: &str = "stream-notify-user";
const NOTIFY_ROOM: &str = "stream-notify-room";
const MY_MESSAGES: &str = "__my_messages__";

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Stream {
    /// New and changed messages of one room.
    Room(String),
    /// New and changed messages of every room of the caller, with the room's type and name.
    MyMessages,
    /// `<uid>/rooms-changed`.
    RoomsChanged(String),
    /// `<uid>/subscriptions-changed`.
    SubscriptionsChanged(String),
    /// `<rid>/deleteMessage`.
    Deletes(String),
    /// Accepted, and never carries anything here.
    Quiet,
}

/// What the streams of `__my_messages__` say about a room.
#[derive(Debug, Clone)]
struct RoomMeta {
    t: &'static str,
    name: String,
}

/// A connection's subscriptions.
#[derive(Default)]
pub(crate) struct Streams {
    list: Vec<(String, Stream)>,
    my_messages_added: bool,
    meta: HashMap<String, RoomMeta>,
}

impl Streams {
    /// Ends every subscription; answers their ids.
    pub(crate) fn clear(&mut self) -> Vec<String> {
        self.my_messages_added = false;
        self.meta.clear();
        self.list.drain(..).map(|(id, _)| id).collect()
    }

    fn any(&self, f: impl Fn(&Stream) -> bool) -> bool {
        self.list.iter().any(|(_, s)| f(s))
    }
}

fn not_allowed() -> MethodError {
    MethodError::new("not-allowed", "Not allowed")
}

/// Handles a `sub` frame.
pub(crate) async fn sub(conn: &mut Conn, frame: &Value) {
    let Some(id) = frame.get("id").and_then(Value::as_str).map(str::to_owned) else {
        conn.out.push(protocol::error("Bad request", Some(frame)));
        return;
    };
    let name = frame
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let params = frame
        .get("params")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if conn.streams.list.iter().any(|(s, _)| *s == id) {
        // Meteor ignores a second sub with an id already in use.
        return;
    }
    match open(conn, name, &params).await {
        Ok(stream) => {
            if stream == Stream::MyMessages && !conn.streams.my_messages_added {
                // The legacy driver drops every `changed` of a document it never saw `added`.
                conn.streams.my_messages_added = true;
                conn.out
                    .push(protocol::stream_added(ROOM_MESSAGES, MY_MESSAGES));
            }
            conn.streams.list.push((id.clone(), stream));
            conn.out.push(protocol::ready(&id));
        }
        Err(e) => conn.out.push(protocol::nosub(&id, Some(&e))),
    }
}

/// Handles an `unsub` frame.
pub(crate) fn unsub(conn: &mut Conn, frame: &Value) {
    let Some(id) = frame.get("id").and_then(Value::as_str) else {
        conn.out.push(protocol::error("Bad request", Some(frame)));
        return;
    };
    conn.streams.list.retain(|(s, _)| s != id);
    conn.out.push(protocol::nosub(id, None));
}

async fn open(conn: &mut Conn, name: &str, params: &[Value]) -> Result<Stream, MethodError> {
    if name == "meteor.loginServiceConfiguration" {
        return Ok(Stream::Quiet);
    }
    let known = matches!(
        name,
        ROOM_MESSAGES
            | NOTIFY_USER
            | NOTIFY_ROOM
            | "stream-notify-logged"
            | "stream-notify-all"
            | "stream-user-presence"
    );
    if !known {
        return Err(MethodError::new(
            404,
            format!("Subscription '{name}' not found"),
        ));
    }
    let Some(me) = conn.login.as_ref().map(|l| l.user.clone()) else {
        return Err(not_allowed());
    };
    let event = params.first().and_then(Value::as_str).unwrap_or_default();
    match name {
        ROOM_MESSAGES if event == MY_MESSAGES => Ok(Stream::MyMessages),
        ROOM_MESSAGES => {
            readable(conn, event)
                .await
                .then_some(())
                .ok_or_else(not_allowed)?;
            Ok(Stream::Room(event.to_owned()))
        }
        NOTIFY_USER => {
            let (uid, what) = event.split_once('/').ok_or_else(not_allowed)?;
            if uid != me.id {
                return Err(not_allowed());
            }
            Ok(match what {
                "rooms-changed" => Stream::RoomsChanged(event.to_owned()),
                "subscriptions-changed" => Stream::SubscriptionsChanged(event.to_owned()),
                _ => Stream::Quiet,
            })
        }
        NOTIFY_ROOM => {
            let (rid, what) = event.split_once('/').ok_or_else(not_allowed)?;
            readable(conn, rid)
                .await
                .then_some(())
                .ok_or_else(not_allowed)?;
            Ok(match what {
                "deleteMessage" => Stream::Deletes(rid.to_owned()),
                _ => Stream::Quiet,
            })
        }
        _ => Ok(Stream::Quiet),
    }
}

/// Whether `rid` is one of the caller's rooms. Not cached: only `__my_messages__` needs what
/// [`room_meta`] keeps, and an idle subscriber of one room should not carry it.
async fn readable(conn: &Conn, rid: &str) -> bool {
    if conn.streams.meta.contains_key(rid) {
        return true;
    }
    let Some(me) = conn.login.as_ref().map(|l| &l.user) else {
        return false;
    };
    match Box::pin(conn.state.service.readable_room(me, rid)).await {
        Ok(_) => true,
        Err(e) => {
            if !matches!(e.code, ErrorCode::NotFound | ErrorCode::NotParticipant) {
                tracing::warn!(error = %e.message, "DDP room lookup failed");
            }
            false
        }
    }
}

/// The type and name of one of the caller's rooms, cached; `None` if it is not theirs. A group
/// is named by its title, read alone: a room's full view (every member, the unread count) is
/// read only for a direct room, named by the other member.
async fn room_meta(conn: &mut Conn, rid: &str) -> Option<RoomMeta> {
    if let Some(m) = conn.streams.meta.get(rid) {
        return Some(m.clone());
    }
    let me = conn.login.as_ref()?.user.clone();
    let lookup = |e: imsync_core::Error| {
        if !matches!(e.code, ErrorCode::NotFound | ErrorCode::NotParticipant) {
            tracing::warn!(error = %e.message, "DDP room lookup failed");
        }
    };
    let conv = match Box::pin(conn.state.service.readable_room(&me, rid)).await {
        Ok(c) => c,
        Err(e) => {
            lookup(e);
            return None;
        }
    };
    let name = match conv.kind {
        ConversationKind::Group => conv.title.clone().unwrap_or_default(),
        ConversationKind::Direct => match Box::pin(conn.state.service.room(&me, rid)).await {
            Ok(view) => render::subscription(&view, &me)["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            Err(e) => {
                lookup(e);
                return None;
            }
        },
    };
    let meta = RoomMeta {
        t: render::room_type(&conv),
        name,
    };
    conn.streams.meta.insert(rid.to_owned(), meta.clone());
    Some(meta)
}

/// What a room change tells the caller's lists of rooms and subscriptions.
#[derive(Clone, Copy)]
enum RoomChange {
    Inserted,
    Updated,
    Removed,
}

impl RoomChange {
    fn word(self) -> &'static str {
        match self {
            RoomChange::Inserted => "inserted",
            RoomChange::Updated => "updated",
            RoomChange::Removed => "removed",
        }
    }
}

/// Renders one event the hub delivered for the connection's subscriptions. The store reads below
/// are boxed: a connection's task is as large as its largest await, and these are rare.
pub(crate) async fn on_event(conn: &mut Conn, d: &Delivered) {
    if conn.streams.list.is_empty() {
        return;
    }
    let Some(me) = conn.login.as_ref().map(|l| l.user.id.clone()) else {
        return;
    };
    let Some(data) = d.typed() else {
        let error = d.event.typed().err().map(|e| e.to_string());
        tracing::warn!(?error, seq = d.event.seq, "DDP skipped an unreadable event");
        return;
    };
    match data {
        EventData::MessageNew(m) => {
            message_new(conn, d, &m.conversation_id, &m.id).await;
            room_changed(conn, &m.conversation_id, RoomChange::Updated, false).await;
        }
        EventData::MessageEdit(m) => message_changed(conn, &m.conversation_id, &m.id).await,
        EventData::MessageDelete(m) => {
            message_changed(conn, &m.conversation_id, &m.id).await;
            let rid = &m.conversation_id;
            if conn
                .streams
                .any(|s| matches!(s, Stream::Deletes(r) if r == rid))
            {
                conn.out.push(protocol::stream_changed(
                    NOTIFY_ROOM,
                    &format!("{rid}/deleteMessage"),
                    vec![json!({ "_id": m.id })],
                ));
            }
        }
        EventData::MessageReaction(r) => {
            message_changed(conn, &r.conversation_id, &r.message_id).await
        }
        // Rocket.Chat's community clients have no read receipts; the reader's own subscription
        // follows its private `conversation.read`.
        EventData::MessageHide(_) | EventData::MessageRead(_) => {}
        EventData::ConversationCreate(c) => {
            conn.streams.meta.remove(&c.id);
            room_changed(conn, &c.id, RoomChange::Inserted, true).await;
        }
        EventData::ConversationUpdate(c) => {
            conn.streams.meta.remove(&c.id);
            room_changed(conn, &c.id, RoomChange::Updated, true).await;
        }
        // The caller's own archive, shown on their subscription.
        EventData::ConversationArchive(a) | EventData::ConversationUnarchive(a) => {
            subscription_changed(conn, &a.conversation_id, RoomChange::Updated).await;
        }
        EventData::ConversationRead(p) => {
            if p.user_id == me {
                subscription_changed(conn, &p.conversation_id, RoomChange::Updated).await;
            }
        }
        EventData::ConversationSettings(p) => {
            subscription_changed(conn, &p.conversation_id, RoomChange::Updated).await;
        }
        EventData::ConversationExtra(_) | EventData::ConversationHide(_) => {}
        EventData::ParticipantAdd(p) => {
            let change = if p.user_id == me {
                RoomChange::Inserted
            } else {
                RoomChange::Updated
            };
            room_changed(conn, &p.conversation_id, change, p.user_id == me).await;
        }
        EventData::ParticipantRemove(p) => {
            if p.user_id == me {
                conn.streams.meta.remove(&p.conversation_id);
                room_changed(conn, &p.conversation_id, RoomChange::Removed, true).await;
            } else {
                room_changed(conn, &p.conversation_id, RoomChange::Updated, false).await;
            }
        }
    }
}

/// A delivery that needs no await, handled in place; false when [`on_event`] must run. Most
/// deliveries to a busy room's subscribers are a new message whose frame another subscriber
/// already rendered: boxing and running the general path for each would cost more than the
/// frame's own write.
pub(crate) fn on_event_now(conn: &mut Conn, d: &Delivered) -> bool {
    if conn.streams.list.is_empty() || conn.login.is_none() {
        return true;
    }
    let Some(EventData::MessageNew(m)) = d.typed() else {
        return false;
    };
    // `__my_messages__` and the room list need the room's name and view, which may be read.
    if conn
        .streams
        .any(|s| matches!(s, Stream::MyMessages | Stream::RoomsChanged(_)))
    {
        return false;
    }
    let rid = &m.conversation_id;
    if !conn
        .streams
        .any(|s| matches!(s, Stream::Room(r) if r == rid))
    {
        return true;
    }
    match d.shared::<SharedNewMessage>().0.get() {
        Some(rendered) => {
            conn.out.push(rendered.room_frame.clone());
            true
        }
        None => false,
    }
}

/// A new message as every subscriber of its room gets it, rendered by the first connection that
/// needs it and shared by the rest (a thousand subscribers cost one store read and one frame).
#[derive(Default)]
struct SharedNewMessage(tokio::sync::OnceCell<NewMessageDoc>);

struct NewMessageDoc {
    doc: Value,
    /// The `stream-room-messages` frame of the room, the same for every subscriber.
    room_frame: Utf8Bytes,
}

/// A new message, to the room's stream and to `__my_messages__`. The hub offers a `message.new`
/// only to the members who may see it, so the rendering one of them read is everyone's.
async fn message_new(conn: &mut Conn, d: &Delivered, rid: &str, msg_id: &str) {
    let room = conn
        .streams
        .any(|s| matches!(s, Stream::Room(r) if r == rid));
    let mine = conn.streams.any(|s| *s == Stream::MyMessages);
    if !room && !mine {
        return;
    }
    let Some(login) = conn.login.as_ref() else {
        return;
    };
    let shared = d.shared::<SharedNewMessage>();
    let service = &conn.state.service;
    let rendered = shared
        .0
        .get_or_try_init(|| async {
            let view = Box::pin(service.message_view(&login.user, msg_id)).await?;
            let doc = message_doc(&view);
            let room_frame = protocol::stream_changed(ROOM_MESSAGES, rid, vec![doc.clone()]).into();
            Ok::<_, imsync_core::Error>(NewMessageDoc { doc, room_frame })
        })
        .await;
    let rendered = match rendered {
        Ok(r) => r,
        Err(e) => {
            if !matches!(e.code, ErrorCode::NotFound | ErrorCode::NotParticipant) {
                tracing::warn!(error = %e.message, "DDP message lookup failed");
            }
            return;
        }
    };
    if room {
        conn.out.push(rendered.room_frame.clone());
    }
    if mine {
        my_message(conn, rid, rendered.doc.clone()).await;
    }
}

/// A message to `__my_messages__`, with what the caller's room list says of its room.
async fn my_message(conn: &mut Conn, rid: &str, doc: Value) {
    if let Some(meta) = room_meta(conn, rid).await {
        let info = json!({
            "roomParticipant": true,
            "roomType": meta.t,
            "roomName": meta.name,
        });
        conn.out.push(protocol::stream_changed(
            ROOM_MESSAGES,
            MY_MESSAGES,
            vec![doc, info],
        ));
    }
}

/// A changed message, to the room's stream and to `__my_messages__`, in its current state.
async fn message_changed(conn: &mut Conn, rid: &str, msg_id: &str) {
    let room = conn
        .streams
        .any(|s| matches!(s, Stream::Room(r) if r == rid));
    let mine = conn.streams.any(|s| *s == Stream::MyMessages);
    if !room && !mine {
        return;
    }
    let Some(me) = conn.login.as_ref().map(|l| l.user.clone()) else {
        return;
    };
    let view = match Box::pin(conn.state.service.message_view(&me, msg_id)).await {
        Ok(v) => v,
        Err(e) => {
            if !matches!(e.code, ErrorCode::NotFound | ErrorCode::NotParticipant) {
                tracing::warn!(error = %e.message, "DDP message lookup failed");
            }
            return;
        }
    };
    let doc = message_doc(&view);
    if room {
        conn.out.push(protocol::stream_changed(
            ROOM_MESSAGES,
            rid,
            vec![doc.clone()],
        ));
    }
    if mine {
        my_message(conn, rid, doc).await;
    }
}

/// A room's change, to `<uid>/rooms-changed`, and to `<uid>/subscriptions-changed` when the
/// caller's subscription changed with it.
async fn room_changed(conn: &mut Conn, rid: &str, change: RoomChange, subscription: bool) {
    if conn.streams.any(|s| matches!(s, Stream::RoomsChanged(_))) {
        if let Some(doc) = room_doc(conn, rid, change, false).await {
            for e in event_names(conn, |s| match s {
                Stream::RoomsChanged(e) => Some(e.clone()),
                _ => None,
            }) {
                conn.out.push(protocol::stream_changed(
                    NOTIFY_USER,
                    &e,
                    vec![json!(change.word()), doc.clone()],
                ));
            }
        }
    }
    if subscription {
        subscription_changed(conn, rid, change).await;
    }
}

async fn subscription_changed(conn: &mut Conn, rid: &str, change: RoomChange) {
    let names = event_names(conn, |s| match s {
        Stream::SubscriptionsChanged(e) => Some(e.clone()),
        _ => None,
    });
    if names.is_empty() {
        return;
    }
    let Some(doc) = room_doc(conn, rid, change, true).await else {
        return;
    };
    for e in names {
        conn.out.push(protocol::stream_changed(
            NOTIFY_USER,
            &e,
            vec![json!(change.word()), doc.clone()],
        ));
    }
}

fn event_names(conn: &Conn, f: impl Fn(&Stream) -> Option<String>) -> Vec<String> {
    let mut names: Vec<String> = conn.streams.list.iter().filter_map(|(_, s)| f(s)).collect();
    names.dedup();
    names
}

/// The room (or the caller's subscription to it) as the change lists show it.
async fn room_doc(conn: &Conn, rid: &str, change: RoomChange, subscription: bool) -> Option<Value> {
    let me = conn.login.as_ref()?.user.clone();
    if let RoomChange::Removed = change {
        return Some(if subscription {
            json!({ "_id": render::subscription_id(rid, &me.id), "rid": rid })
        } else {
            json!({ "_id": rid })
        });
    }
    let view = Box::pin(conn.state.service.room(&me, rid)).await.ok()?;
    Some(protocol::ejson(if subscription {
        render::subscription(&view, &me)
    } else {
        render::room(
            &view,
            conn.state.service.config().default_channel.as_deref(),
        )
    }))
}
