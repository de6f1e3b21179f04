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
//! A message nobody changed has `updated_at = created_at`, and `created_at` grows with `msg_seq`,
//! so such messages are read through the `(conv_id, msg_seq)` key from a seq found by bisection;
//! changed ones (`updated_at > created_at`, every deleted one among them) through a partial index
//! that sends never touch. A read takes up to `limit` rows from each and merges them, so a page
//! costs what it returns plus about log2(room size) key probes, not the room's size.

use crate::repo::messages::{from_row, COLUMNS};
use crate::{args, SqlConn, Value};
use imsync_core::model::Message;
use imsync_core::Result;

const LIVE: &str = "(deleted_at IS NULL OR tcount > 0)";
const TRASH: &str = "deleted_at IS NOT NULL AND tcount = 0";
/// The condition of the `messages_changed` index, written as the index has it so that both
/// backends' planners see the query implies it.
pub const CHANGED: &str = "updated_at > created_at";

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
        let live = m.deleted_at.is_none() || m.reply_count > 0;
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

/// The query of the changed messages of a set after (or before) a time, in `updated_at` order:
/// `$1` conversation, `$2` time, `$3` limit.
pub fn changed_sql(set: Set, descending: bool) -> String {
    let (op, dir) = if descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    // The trash has its own, smaller index (`deleted_at IS NOT NULL`).
    let changed = match set {
        Set::Live => format!(" AND {CHANGED}"),
        Set::Trash => String::new(),
    };
    format!(
        "SELECT {COLUMNS} FROM messages WHERE conv_id = $1{changed} AND updated_at {op} $2 AND {} \
         ORDER BY updated_at {dir} LIMIT $3",
        set.predicate()
    )
}

/// The query of never-changed messages from a seq on (or before it): `$1` conversation, `$2`
/// seq, `$3` limit. Such a message is live: a deletion is a change.
pub fn unchanged_sql(descending: bool) -> String {
    let (op, dir) = if descending {
        ("<", "DESC")
    } else {
        (">=", "ASC")
    };
    format!(
        "SELECT {COLUMNS} FROM messages WHERE conv_id = $1 AND msg_seq {op} $2 \
         AND updated_at = created_at ORDER BY msg_seq {dir} LIMIT $3"
    )
}

/// The smallest seq from which every message of the conversation was created at `ms` or later,
/// by bisection over `(conv_id, msg_seq)`: creation stamps grow strictly with the seq.
pub fn first_seq_created_from(c: &mut dyn SqlConn, conv_id: &str, ms: i64) -> Result<i64> {
    let Some(top) = c
        .query_opt(
            "SELECT max(msg_seq) FROM messages WHERE conv_id = $1",
            args![conv_id],
        )?
        .and_then(|r| r.opt_i64(0))
    else {
        return Ok(0);
    };
    // The first message at or after `hi` was created at `ms` or later (or there is none); the
    // one at or after `lo` was not, or `lo` is below every seq.
    let (mut lo, mut hi) = (-1, top + 1);
    while lo + 1 < hi {
        let mid = lo + (hi - lo) / 2;
        let created = c
            .query_opt(
                "SELECT created_at FROM messages WHERE conv_id = $1 AND msg_seq >= $2 \
                 ORDER BY msg_seq LIMIT 1",
                args![conv_id, mid],
            )?
            .map(|r| r.i64(0));
        if created.is_none_or(|at| at >= ms) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

fn rows(c: &mut dyn SqlConn, sql: &str, params: &[Value]) -> Result<Vec<Message>> {
    Ok(c.query(sql, params)?.iter().map(from_row).collect())
}

/// Up to `limit` messages of the set changed after (or before) the bound, in `updated_at` order.
pub fn page(
    c: &mut dyn SqlConn,
    conv_id: &str,
    set: Set,
    from: Bound,
    limit: i64,
) -> Result<Vec<Message>> {
    let limit = limit.max(0);
    let (descending, bound) = match from {
        Bound::After(ms) => (false, ms),
        Bound::Before(ms) => (true, ms),
    };
    let mut out = rows(
        c,
        &changed_sql(set, descending),
        args![conv_id, bound, limit],
    )?;
    if set == Set::Live && limit > 0 {
        // After `ms`: created at `ms + 1` or later. Before `ms`: created before `ms`.
        let from_ms = if descending {
            bound
        } else {
            bound.saturating_add(1)
        };
        let seq = first_seq_created_from(c, conv_id, from_ms)?;
        out.extend(rows(
            c,
            &unchanged_sql(descending),
            args![conv_id, seq, limit],
        )?);
        // Every change takes its own millisecond in the conversation: no ties to break.
        out.sort_by_key(|m| m.updated_at);
        if descending {
            out.reverse();
        }
        out.truncate(limit as usize);
    }
    Ok(out)
}

/// Every message of the set changed after `since`, newest creation first (Rocket.Chat's
/// `lastUpdate` mode, which has no limit).
pub fn since_by_created(
    c: &mut dyn SqlConn,
    conv_id: &str,
    set: Set,
    since: i64,
) -> Result<Vec<Message>> {
    let mut out = rows(c, &changed_sql(set, false), args![conv_id, since, i64::MAX])?;
    if set == Set::Live {
        let seq = first_seq_created_from(c, conv_id, since.saturating_add(1))?;
        out.extend(rows(
            c,
            &unchanged_sql(false),
            args![conv_id, seq, i64::MAX],
        )?);
    }
    out.sort_by_key(|m| std::cmp::Reverse((m.created_at, m.msg_seq)));
    Ok(out)
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
