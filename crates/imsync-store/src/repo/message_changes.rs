//! Change feeds of one conversation's messages, ordered by `updated_at`, which is strictly
//! increasing per conversation (every change takes a new millisecond). They back the Rocket.Chat
//! face's `chat.syncMessages` / `chat.syncThreadMessages`.
//!
//! Messages split into two disjoint sets:
//! - *live*: not deleted, or deleted while it was a thread parent with replies (Rocket.Chat keeps
//!   those as a "removed" message, `t:"rm"`, among the updates);
//! - *trash*: every other deleted message. Its last change is its deletion, so its `updated_at`
//!   is its deletion time; a removed parent whose last reply goes away moves to the trash with
//!   that later stamp.
//!
//! Every read walks the `(conv_id, updated_at)` index (the trash one for trash reads) from the
//! cursor and stops after `limit` rows, so a page costs what it returns, not the room's size.

use crate::repo::messages::{from_row, COLUMNS};
use crate::{args, SqlConn, Value};
use imsync_core::model::Message;
use imsync_core::Result;

const LIVE: &str = "(deleted_at IS NULL OR tcount > 0)";
const TRASH: &str = "deleted_at IS NOT NULL AND tcount = 0";

/// Which set of a conversation's messages to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Set {
    Live,
    Trash,
}

impl Set {
    fn predicate(self) -> &'static str {
        match self {
            Set::Live => LIVE,
            Set::Trash => TRASH,
        }
    }
    /// Whether a message belongs to this set.
    pub fn contains(self, m: &Message) -> bool {
        let live = m.deleted_at.is_none() || m.tcount > 0;
        match self {
            Set::Live => live,
            Set::Trash => !live,
        }
    }
}

/// Where a page starts, in `updated_at` milliseconds (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// `updated_at > ms`, ascending.
    After(i64),
    /// `updated_at < ms`, descending.
    Before(i64),
}

/// Up to `limit` messages of the set changed after (or before) the bound, in `updated_at` order.
pub fn page(
    c: &mut dyn SqlConn,
    conv_id: &str,
    set: Set,
    from: Bound,
    limit: i64,
) -> Result<Vec<Message>> {
    let (op, dir, bound) = match from {
        Bound::After(ms) => (">", "ASC", ms),
        Bound::Before(ms) => ("<", "DESC", ms),
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM messages WHERE conv_id = $1 AND updated_at {op} $2 AND {} \
         ORDER BY updated_at {dir} LIMIT $3",
        set.predicate()
    );
    Ok(c.query(&sql, args![conv_id, bound, limit.max(0)])?
        .iter()
        .map(from_row)
        .collect())
}

/// Every message of the set changed after `since`, newest creation first (Rocket.Chat's
/// `lastUpdate` mode, which has no limit).
pub fn since_by_created(
    c: &mut dyn SqlConn,
    conv_id: &str,
    set: Set,
    since: i64,
) -> Result<Vec<Message>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM messages WHERE conv_id = $1 AND updated_at > $2 AND {} \
         ORDER BY created_at DESC, msg_seq DESC",
        set.predicate()
    );
    Ok(c.query(&sql, args![conv_id, since])?
        .iter()
        .map(from_row)
        .collect())
}

/// Every reply of a thread (deleted ones too) changed after `since`, ascending by `updated_at`.
pub fn thread_since(c: &mut dyn SqlConn, parent_id: &str, since: i64) -> Result<Vec<Message>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM messages WHERE parent_id = $1 AND updated_at > $2 \
         ORDER BY updated_at ASC"
    );
    Ok(c.query(&sql, args![parent_id, since])?
        .iter()
        .map(from_row)
        .collect())
}

/// A page of a thread's live replies by creation order, and how many live replies it has.
pub fn thread_page(
    c: &mut dyn SqlConn,
    parent_id: &str,
    offset: i64,
    limit: i64,
    descending: bool,
) -> Result<(Vec<Message>, i64)> {
    let dir = if descending { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT {COLUMNS} FROM messages WHERE parent_id = $1 AND deleted_at IS NULL \
         ORDER BY msg_seq {dir} LIMIT $2 OFFSET $3"
    );
    let rows = c.query(&sql, args![parent_id, limit.max(0), offset.max(0)])?;
    let total = c
        .query_opt(
            "SELECT count(*) FROM messages WHERE parent_id = $1 AND deleted_at IS NULL",
            args![parent_id],
        )?
        .map_or(0, |r| r.i64(0));
    Ok((rows.iter().map(from_row).collect(), total))
}

/// The distinct senders of a thread's live replies, in order of their first reply.
pub fn reply_senders(c: &mut dyn SqlConn, parent_id: &str) -> Result<Vec<String>> {
    Ok(c.query(
        "SELECT sender_id, min(msg_seq) AS first FROM messages \
         WHERE parent_id = $1 AND deleted_at IS NULL GROUP BY sender_id ORDER BY first",
        args![parent_id],
    )?
    .iter()
    .map(|r| r.string(0))
    .collect())
}

/// The present reactions of the given messages with the reacting user's username, oldest first:
/// `(message_id, emoji, user_id, username)`.
pub fn reactions_of(
    c: &mut dyn SqlConn,
    message_ids: &[String],
) -> Result<Vec<(String, String, String, String)>> {
    let mut out = Vec::new();
    // Bounded IN lists keep the statement size sane on both backends.
    for chunk in message_ids.chunks(200) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT r.message_id, r.emoji, r.user_id, u.username FROM reactions r \
             JOIN users u ON u.id = r.user_id \
             WHERE r.message_id IN ({}) AND r.removed = 0 ORDER BY r.seq",
            placeholders.join(", ")
        );
        let params: Vec<Value> = chunk.iter().map(Value::from).collect();
        out.extend(
            c.query(&sql, &params)?
                .iter()
                .map(|r| (r.string(0), r.string(1), r.string(2), r.string(3))),
        );
    }
    Ok(out)
}
