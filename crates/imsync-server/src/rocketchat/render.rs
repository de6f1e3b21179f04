//! Rocket.Chat's documents: messages (`IMessage`), trash entries, rooms, subscriptions and the
//! user of `me`/`login`. Dates are ISO strings with milliseconds, as `JSON.stringify` writes them.

use imsync_core::model::{Conversation, ConversationKind, Message, User, UserRole};
use imsync_core::time::rfc3339;
use imsync_service::{ConversationWithMembers, MessageView, PublicRoom, RoomView};
use serde_json::{json, Map, Value};

/// Message metadata keys that are Rocket.Chat message fields of the same name.
pub const MESSAGE_FIELDS: &[&str] = &[
    "alias",
    "emoji",
    "avatar",
    "attachments",
    "blocks",
    "customFields",
    "tshow",
];

pub fn iso(ms: i64) -> String {
    rfc3339(ms)
}

/// `{_id, username, name}` of a user, or of an id whose account is gone.
pub fn user_ref(u: Option<&User>, id: &str) -> Value {
    match u {
        Some(u) => json!({ "_id": u.id, "username": u.username, "name": u.display_name }),
        None => json!({ "_id": id, "username": id, "name": id }),
    }
}

/// An emoji as Rocket.Chat keys reactions: a short name as `:name:`, anything else as stored.
pub fn emoji_key(stored: &str) -> String {
    let bare = stored.trim_matches(':');
    if !bare.is_empty()
        && bare
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'+')
    {
        format!(":{bare}:")
    } else {
        stored.to_owned()
    }
}

/// Whether a deleted message stays visible as a "removed" message (a thread parent with
/// replies), rather than going to the trash.
pub fn is_removed_parent(m: &Message) -> bool {
    m.deleted_at.is_some() && m.reply_count > 0
}

/// A message document.
pub fn message(v: &MessageView) -> Value {
    let m = &v.message;
    let mut o = Map::new();
    o.insert("_id".into(), json!(m.id));
    o.insert("rid".into(), json!(m.conversation_id));
    o.insert("msg".into(), json!(m.content));
    o.insert("ts".into(), json!(iso(m.created_at)));
    o.insert("u".into(), user_ref(v.sender.as_ref(), &m.sender_id));
    o.insert("_updatedAt".into(), json!(iso(m.updated_at)));
    o.insert("urls".into(), json!([]));
    o.insert("mentions".into(), json!([]));
    o.insert("channels".into(), json!([]));
    if let Some(md) = m.metadata.as_object() {
        for k in MESSAGE_FIELDS {
            if let Some(val) = md.get(*k).filter(|x| !x.is_null()) {
                o.insert((*k).into(), val.clone());
            }
        }
    }
    if let Some(f) = file_fields(m) {
        for (k, v) in f {
            o.entry(k).or_insert(v);
        }
    }
    if let Some(p) = &m.parent_id {
        o.insert("tmid".into(), json!(p));
    }
    if m.reply_count > 0 || m.last_reply_at.is_some() {
        o.insert("tcount".into(), json!(m.reply_count));
        if let Some(t) = m.last_reply_at {
            o.insert("tlm".into(), json!(iso(t)));
        }
        o.insert("replies".into(), json!(v.replies));
    }
    if let (Some(at), Some(by)) = (m.edited_at, &m.edited_by) {
        o.insert("editedAt".into(), json!(iso(at)));
        o.insert(
            "editedBy".into(),
            json!({ "_id": by, "username": v.edited_by.as_ref().map_or(by.as_str(), |u| u.username.as_str()) }),
        );
    }
    if !v.reactions.is_empty() {
        let mut r = Map::new();
        for (emoji, usernames) in &v.reactions {
            let key = emoji_key(emoji);
            let entry = r.entry(key).or_insert_with(|| json!({ "usernames": [] }));
            if let Some(list) = entry["usernames"].as_array_mut() {
                for u in usernames {
                    if !list.iter().any(|x| x == u) {
                        list.push(json!(u));
                    }
                }
            }
        }
        o.insert("reactions".into(), Value::Object(r));
    }
    if is_removed_parent(m) {
        // What Rocket.Chat leaves of a deleted thread parent.
        let at = m.deleted_at.unwrap_or(m.updated_at);
        o.insert("t".into(), json!("rm"));
        o.insert("msg".into(), json!(""));
        o.insert("attachments".into(), json!([]));
        o.remove("file");
        o.remove("files");
        o.remove("reactions");
        o.insert("editedAt".into(), json!(iso(at)));
        o.insert(
            "editedBy".into(),
            json!({ "_id": m.sender_id, "username": v.sender.as_ref().map_or(m.sender_id.as_str(), |u| u.username.as_str()) }),
        );
    }
    Value::Object(o)
}

/// Where Rocket.Chat clients fetch an uploaded file.
pub fn file_url(id: &str, name: &str) -> String {
    let mut encoded = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("/file-upload/{id}/{encoded}")
}

/// A file message's `file`, `files` and `attachments`, as Rocket.Chat writes them for an upload,
/// from the metadata every face's file messages carry (`uploadId`, `fileName`, …).
fn file_fields(m: &Message) -> Option<Vec<(String, Value)>> {
    let md = m.metadata.as_object()?;
    let id = md.get("uploadId")?.as_str()?;
    let name = md.get("fileName").and_then(Value::as_str).unwrap_or(id);
    let mime = md
        .get("mimeType")
        .and_then(Value::as_str)
        .unwrap_or("application/octet-stream");
    let size = md.get("fileSize").cloned().unwrap_or(json!(0));
    let file = json!({ "_id": id, "name": name, "type": mime, "size": size });
    let url = file_url(id, name);
    let mut attachment = json!({
        "ts": iso(m.created_at),
        "title": name,
        "title_link": url,
        "title_link_download": true,
        "type": "file",
        "format": name.rsplit_once('.').map(|(_, ext)| ext.to_ascii_uppercase()).unwrap_or_default(),
        "size": size,
    });
    if let Some(d) = md.get("description").and_then(Value::as_str) {
        attachment["description"] = json!(d);
    }
    if m.kind == "image" {
        attachment["image_url"] = json!(url);
        attachment["image_type"] = json!(mime);
        attachment["image_size"] = size.clone();
    }
    Some(vec![
        ("file".into(), file.clone()),
        ("files".into(), json!([file])),
        ("attachments".into(), json!([attachment])),
    ])
}

/// The trash time of a deleted message: its last change (see `repo::message_changes`).
pub fn deleted_at(m: &Message) -> i64 {
    m.updated_at
}

/// An entry of `chat.syncMessages`' `deleted`.
pub fn deleted_entry(m: &Message) -> Value {
    json!({ "_id": m.id, "_deletedAt": iso(deleted_at(m)) })
}

/// A full trash document (`chat.syncThreadMessages`' `remove`).
pub fn trash_doc(v: &MessageView) -> Value {
    let mut doc = message(v);
    doc["_deletedAt"] = json!(iso(deleted_at(&v.message)));
    doc["__collection__"] = json!("message");
    doc
}

pub fn room_type(c: &Conversation) -> &'static str {
    match (c.kind, c.public) {
        (ConversationKind::Direct, _) => "d",
        (ConversationKind::Group, true) => "c",
        (ConversationKind::Group, false) => "p",
    }
}

fn room_base(c: &Conversation, creator: Value, users_count: i64, default_channel: bool) -> Value {
    let mut v = json!({
        "_id": c.id,
        "t": room_type(c),
        "u": creator,
        "ts": iso(c.created_at),
        "msgs": c.live_msg_count,
        "usersCount": users_count,
        "default": default_channel,
        "ro": false,
        "sysMes": true,
        // Rocket.Chat's archive makes a room read-only for all; imsync's is each member's own
        // filing, shown on their subscription.
        "archived": false,
    });
    if c.kind == ConversationKind::Group {
        let name = c.title.clone().unwrap_or_default();
        v["name"] = json!(name);
        v["fname"] = json!(name);
        v["topic"] = json!("");
        v["description"] = json!(c.description.clone().unwrap_or_default());
    }
    if let Some(lm) = c.last_message_at {
        v["lm"] = json!(iso(lm));
    }
    v
}

fn direct_names(v: &mut Value, members: &[&User]) {
    v["usernames"] = json!(members.iter().map(|u| &u.username).collect::<Vec<_>>());
    v["uids"] = json!(members.iter().map(|u| &u.id).collect::<Vec<_>>());
}

/// A room as `rooms.get` shows it.
pub fn room(r: &RoomView, default_channel: Option<&str>) -> Value {
    let c = &r.conversation;
    let creator = json!({
        "_id": c.created_by,
        "username": r.creator.as_ref().map_or(c.created_by.as_str(), |u| u.username.as_str()),
    });
    let mut v = room_base(c, creator, r.member_count, default_channel == Some(&c.id));
    v["_updatedAt"] = json!(iso(r.updated_at));
    if c.kind == ConversationKind::Direct {
        let users: Vec<&User> = r.members.iter().map(|m| &m.user).collect();
        direct_names(&mut v, &users);
    }
    v
}

/// A public group as the directory (`channels.list`) shows it, to callers in it or not.
pub fn public_room(r: &PublicRoom, default_channel: Option<&str>) -> Value {
    let c = &r.conversation;
    let creator = json!({
        "_id": c.created_by,
        "username": r.creator.as_ref().map_or(c.created_by.as_str(), |u| u.username.as_str()),
    });
    let mut v = room_base(c, creator, r.member_count, default_channel == Some(&c.id));
    v["_updatedAt"] = json!(iso(c.updated_at.max(c.last_message_at.unwrap_or(0))));
    v
}

/// A room a write just made or changed.
pub fn room_detail(c: &ConversationWithMembers, default_channel: Option<&str>) -> Value {
    let conv = &c.conversation;
    let creator = c
        .members
        .iter()
        .find(|m| m.user.id == conv.created_by)
        .map(|m| json!({ "_id": m.user.id, "username": m.user.username }))
        .unwrap_or_else(|| json!({ "_id": conv.created_by, "username": conv.created_by }));
    let mut v = room_base(
        conv,
        creator,
        c.members.len() as i64,
        default_channel == Some(&conv.id),
    );
    let updated = conv.updated_at.max(conv.last_message_at.unwrap_or(0));
    v["_updatedAt"] = json!(iso(updated));
    if conv.kind == ConversationKind::Direct {
        let users: Vec<&User> = c.members.iter().map(|m| &m.user).collect();
        direct_names(&mut v, &users);
    }
    v
}

/// The subscription id of a user in a room.
pub fn subscription_id(rid: &str, uid: &str) -> String {
    format!("{rid}-{uid}")
}

/// The user's subscription to a room as `subscriptions.get` shows it.
pub fn subscription(r: &RoomView, me: &User) -> Value {
    let c = &r.conversation;
    let (name, fname) = match c.kind {
        ConversationKind::Direct => r
            .members
            .iter()
            .find(|m| m.user.id != me.id)
            .map(|m| (m.user.username.clone(), m.user.display_name.clone()))
            .unwrap_or_else(|| (me.username.clone(), me.display_name.clone())),
        ConversationKind::Group => {
            let t = c.title.clone().unwrap_or_default();
            (t.clone(), t)
        }
    };
    let mut v = json!({
        "_id": subscription_id(&c.id, &me.id),
        "rid": c.id,
        "t": room_type(c),
        "name": name,
        "fname": fname,
        "u": { "_id": me.id, "username": me.username, "name": me.display_name },
        "open": true,
        "alert": r.unread > 0,
        "unread": r.unread,
        "userMentions": 0,
        "groupMentions": 0,
        "ts": iso(r.me.joined_at),
        "_updatedAt": iso(r.subscription_updated_at),
        "archived": r.me.archived,
        "f": r.me.pinned,
        "disableNotifications": r.me.muted,
    });
    if r.me.role.can_manage() {
        v["roles"] = json!([r.me.role.as_str()]);
    }
    v
}

/// The user document of `me` and `login`.
pub fn me(u: &User) -> Value {
    let (roles, kind) = match u.role {
        UserRole::Human => (json!(["user"]), "user"),
        UserRole::Agent => (json!(["bot"]), "bot"),
    };
    json!({
        "_id": u.id,
        "username": u.username,
        "name": u.display_name,
        "emails": [],
        "status": "online",
        "statusConnection": "online",
        "statusText": "",
        "utcOffset": 0,
        "active": true,
        "type": kind,
        "roles": roles,
        "createdAt": iso(u.created_at),
        "_updatedAt": iso(u.updated_at),
        "avatarUrl": u.avatar_url.clone().unwrap_or_else(|| format!("/avatar/{}", u.username)),
        "requirePasswordChange": false,
        "settings": { "preferences": {} },
        "services": { "password": { "exists": u.has_password } },
    })
}
