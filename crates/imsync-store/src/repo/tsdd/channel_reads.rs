//! Reads of the TangSengDaoDao face: message ranges by `msg_seq` (tombstones included, as that
//! face renders deletions as flags), message extras by version, reaction rows by seq, and the
//! conversations of a user that changed after a seq.
//!
//! Changed conversations come from two indexed places: the shared streams whose
//! `conversations.last_event_seq` moved (the global index while few moved, else the user's own
//! memberships, as the event sync does) and the user's private stream. Either way the cost
//! follows what changed, not how many conversations the user has.

use crate::repo::{conversations, messages, participants};
use crate::{args, Row, SqlConn};
use imsync_core::model::{Audience, Conversation, Message, Participant, Reaction};
use imsync_core::{Result, Seq};

/// Above this many globally changed conversations, candidates come from the user's memberships.
const GLOBAL_CANDIDATES: i64 = 256;

/// Messages of a conversation with `msg_seq` in `(after, upto]`, deleted ones included, in
/// ascending or descending order, at most `limit`.
pub fn messages_range(
    c: &mut dyn SqlConn,
    conv_id: &str,
    after: i64,
    upto: i64,
    descending: bool,
    limit: i64,
) -> Result<Vec<Message>> {
    let order = if descending { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT {} FROM messages WHERE conv_id = $1 AND msg_seq > $2 AND msg_seq <= $3 \
         ORDER BY msg_seq {order} LIMIT $4",
        messages::COLUMNS
    );
    Ok(c.query(&sql, args![conv_id, after, upto, limit])?
        .iter()
        .map(messages::from_row)
        .collect())
}

/// The message whose creating event has this seq (the face's integer message id). It is found
/// through that event, which names the message, so that sends do not keep an index on
/// `messages.event_seq` for this rare lookup.
pub fn message_by_event_seq(c: &mut dyn SqlConn, seq: Seq) -> Result<Option<Message>> {
    let Some(row) = c.query_opt(
        "SELECT data FROM events WHERE seq = $1 AND type = 'message.new'",
        args![seq],
    )?
    else {
        return Ok(None);
    };
    let Some(id) = row
        .json(0)
        .get("id")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
    else {
        return Ok(None);
    };
    Ok(messages::get(c, &id)?.filter(|m| m.event_seq == seq))
}

/// A message of a conversation by its client message number: the sender's idempotency key, or
/// the message id for messages sent without one.
pub fn message_by_client_msg_no(
    c: &mut dyn SqlConn,
    conv_id: &str,
    client_msg_no: &str,
) -> Result<Option<Message>> {
    let by_key = c.query_opt(
        "SELECT message_id FROM idempotency WHERE conv_id = $1 AND key = $2 LIMIT 1",
        args![conv_id, client_msg_no],
    )?;
    let id = by_key.map_or_else(|| client_msg_no.to_owned(), |r| r.string(0));
    Ok(messages::get(c, &id)?.filter(|m| m.conversation_id == conv_id))
}

/// Which messages carry extras: the condition of the partial index `messages_extras_version`,
/// which the query must imply to use it.
pub const CARRIES_EXTRAS: &str = "(edited_at IS NOT NULL OR deleted_at IS NOT NULL OR revoked = 1)";

/// The query of [`changed_extras`].
pub fn changed_extras_sql(descending: bool) -> String {
    let order = if descending { "DESC" } else { "ASC" };
    format!(
        "SELECT {} FROM messages WHERE conv_id = $1 AND version > $2 AND version <= $3 \
         AND {CARRIES_EXTRAS} ORDER BY version {order} LIMIT $4",
        messages::COLUMNS
    )
}

/// Messages that carry extras (edited, deleted, revoked) whose version is in `(after, upto]`,
/// ascending or descending by version, at most `limit`.
pub fn changed_extras(
    c: &mut dyn SqlConn,
    conv_id: &str,
    after: Seq,
    upto: Seq,
    descending: bool,
    limit: i64,
) -> Result<Vec<Message>> {
    Ok(c.query(
        &changed_extras_sql(descending),
        args![conv_id, after, upto, limit],
    )?
    .iter()
    .map(messages::from_row)
    .collect())
}

/// One reaction row with the message it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct ReactionRow {
    pub message_id: String,
    /// The seq of the event that created the message (its integer id on this face).
    pub message_event_seq: Seq,
    pub reaction: Reaction,
}

/// Reaction rows (removed ones included) of a conversation with seq in `(after, upto]`.
pub fn reactions_range(
    c: &mut dyn SqlConn,
    conv_id: &str,
    after: Seq,
    upto: Seq,
    descending: bool,
    limit: i64,
) -> Result<Vec<ReactionRow>> {
    let order = if descending { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT r.message_id, m.event_seq, r.user_id, r.emoji, r.seq, r.created_at, r.removed \
         FROM reactions r JOIN messages m ON m.id = r.message_id \
         WHERE r.conv_id = $1 AND r.seq > $2 AND r.seq <= $3 ORDER BY r.seq {order} LIMIT $4"
    );
    Ok(c.query(&sql, args![conv_id, after, upto, limit])?
        .iter()
        .map(|r| ReactionRow {
            message_id: r.string(0),
            message_event_seq: r.i64(1),
            reaction: Reaction {
                user_id: r.string(2),
                emoji: r.string(3),
                seq: r.i64(4),
                created_at: r.i64(5),
                removed: r.bool(6),
            },
        })
        .collect())
}

/// Conversations in which something the user may see changed after `since`: shared streams
/// that moved (while the user was or is a participant there is decided by the caller) and the
/// conversations named by the user's private events. Ids may repeat.
pub fn changed_for_user(c: &mut dyn SqlConn, user_id: &str, since: Seq) -> Result<Vec<String>> {
    let mut ids = conversations::changed_since(c, since, GLOBAL_CANDIDATES)?;
    if ids.len() as i64 >= GLOBAL_CANDIDATES {
        ids = c
            .query(
                "SELECT p.conv_id FROM participants p JOIN conversations c ON c.id = p.conv_id \
                 WHERE p.user_id = $1 AND c.last_event_seq > $2 \
                 AND (p.left_seq IS NULL OR p.left_seq > $2)",
                args![user_id, since],
            )?
            .iter()
            .map(|r| r.string(0))
            .collect();
    }
    let private = c.query(
        "SELECT DISTINCT conv_id FROM events WHERE stream = $1 AND seq > $2 \
         AND conv_id IS NOT NULL",
        args![Audience::User(user_id.to_owned()).stream(), since],
    )?;
    ids.extend(private.iter().map(|r| r.string(0)));
    Ok(ids)
}

/// Every conversation the user is or was a participant of, with their participation.
pub fn all_of(c: &mut dyn SqlConn, user_id: &str) -> Result<Vec<(Conversation, Participant)>> {
    let prefixed = |cols: &str, p: &str| {
        cols.split(", ")
            .map(|col| format!("{p}.{}", col.trim()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sql = format!(
        "SELECT {}, {} FROM participants p JOIN conversations c ON c.id = p.conv_id \
         WHERE p.user_id = $1",
        prefixed(conversations::COLUMNS, "c"),
        prefixed(participants::COLUMNS, "p"),
    );
    let width = conversations::COLUMNS.split(", ").count();
    Ok(c.query(&sql, args![user_id])?
        .into_iter()
        .map(|r| {
            let conv = conversations::from_row(&r);
            let part = participants::from_row(&Row(r.0[width..].to_vec()));
            (conv, part)
        })
        .collect())
}
