//! The JSON payloads of events, in the shapes of the native face (specs/native.md §6, §9). They
//! are written into the event log at append time, so sync replays exactly what happened.

use imsync_core::model::{Conversation, Message, User};
use imsync_core::time::rfc3339;
use serde_json::{json, Map, Value};

pub fn message(m: &Message) -> Value {
    let mut v = json!({
        "id": m.id,
        "conversationId": m.conversation_id,
        "senderId": m.sender_id,
        "type": m.kind,
        "content": m.content,
        "metadata": m.metadata,
        "parentId": m.parent_id,
        "status": "sent",
        "seq": m.msg_seq,
        "createdAt": rfc3339(m.created_at),
        "updatedAt": rfc3339(m.updated_at),
    });
    let o = v.as_object_mut().expect("object literal");
    if let Some(q) = &m.quoted_id {
        o.insert("quotedMessageId".into(), json!(q));
    }
    if let Some(at) = m.edited_at {
        o.insert("editedAt".into(), json!(rfc3339(at)));
        o.insert("editedBy".into(), json!(m.edited_by));
    }
    if let Some(at) = m.deleted_at {
        o.insert("deletedAt".into(), json!(rfc3339(at)));
    }
    if m.tcount > 0 {
        o.insert("replyCount".into(), json!(m.tcount));
    }
    v
}

pub fn message_edit(m: &Message) -> Value {
    json!({
        "id": m.id,
        "conversationId": m.conversation_id,
        "content": m.content,
        "type": m.kind,
        "metadata": m.metadata,
        "editedAt": m.edited_at.map(rfc3339),
        "editedBy": m.edited_by,
        "updatedAt": rfc3339(m.updated_at),
        "createdSeq": m.event_seq,
    })
}

pub fn message_delete(m: &Message) -> Value {
    json!({ "id": m.id, "conversationId": m.conversation_id, "createdSeq": m.event_seq })
}

/// A member as events and responses show it.
pub fn member(u: &User, role: &str) -> Value {
    json!({
        "userId": u.id,
        "username": u.username,
        "displayName": u.display_name,
        "role": role,
        "userRole": u.role.as_str(),
    })
}

pub fn conversation(c: &Conversation, members: Option<Vec<Value>>) -> Value {
    let mut v = json!({
        "id": c.id,
        "type": c.kind.as_str(),
        "title": c.title,
        "description": c.description,
        "metadata": c.metadata,
        "createdBy": c.created_by,
        "createdAt": rfc3339(c.created_at),
        "updatedAt": rfc3339(c.updated_at),
        "archived": c.archived,
        "lastMessageAt": c.last_message_at.map(rfc3339),
    });
    if let Some(members) = members {
        v["members"] = Value::Array(members);
    }
    v
}

pub fn participant(conv_id: &str, u: &User, role: &str) -> Value {
    json!({
        "conversationId": conv_id,
        "userId": u.id,
        "username": u.username,
        "displayName": u.display_name,
        "role": role,
    })
}

/// `{"<emoji>": [userIds]}` in the order reactions were made.
pub fn reactions(rs: &[imsync_core::model::Reaction]) -> Value {
    let mut map = Map::new();
    for r in rs {
        map.entry(r.emoji.clone())
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .expect("array")
            .push(json!(r.user_id));
    }
    Value::Object(map)
}
