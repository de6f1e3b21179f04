use crate::{args, FirstRead, Row, SqlConn};
use imsync_core::model::{Conversation, ConversationKind};
use imsync_core::{Result, Seq};

pub(crate) const COLUMNS: &str = "id, kind, public, title, description, metadata, created_by, \
     created_at, updated_at, last_msg_seq, last_event_seq, last_message_at, \
     live_msg_count, last_touch_ms";

pub(crate) fn from_row(r: &Row) -> Conversation {
    Conversation {
        id: r.string(0),
        kind: ConversationKind::parse(r.str(1)).unwrap_or(ConversationKind::Group),
        public: r.bool(2),
        title: r.opt_string(3),
        description: r.opt_string(4),
        metadata: r.json(5),
        created_by: r.string(6),
        created_at: r.i64(7),
        updated_at: r.i64(8),
        last_msg_seq: r.i64(9),
        last_event_seq: r.i64(10),
        last_message_at: r.opt_i64(11),
        live_msg_count: r.i64(12),
        last_touch_ms: r.i64(13),
    }
}

/// The key that makes a direct conversation unique for its pair, whichever side starts it.
pub fn direct_key(a: &str, b: &str) -> String {
    if a <= b {
        format!("{a}|{b}")
    } else {
        format!("{b}|{a}")
    }
}

pub fn insert(c: &mut dyn SqlConn, conv: &Conversation, direct_key: Option<&str>) -> Result<()> {
    c.execute(
        "INSERT INTO conversations (id, kind, public, title, description, metadata, created_by, \
         created_at, updated_at, direct_key, last_touch_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        args![
            &conv.id,
            conv.kind.as_str(),
            conv.public,
            conv.title.as_deref(),
            conv.description.as_deref(),
            &conv.metadata,
            &conv.created_by,
            conv.created_at,
            conv.updated_at,
            direct_key,
            conv.last_touch_ms
        ],
    )?;
    Ok(())
}

pub fn get(c: &mut dyn SqlConn, id: &str) -> Result<Option<Conversation>> {
    let sql = format!("SELECT {COLUMNS} FROM conversations WHERE id = $1");
    Ok(c.query_opt(&sql, args![id])?.map(|r| from_row(&r)))
}

pub fn get_direct(c: &mut dyn SqlConn, a: &str, b: &str) -> Result<Option<Conversation>> {
    let sql = format!("SELECT {COLUMNS} FROM conversations WHERE direct_key = $1");
    Ok(c.query_opt(&sql, args![direct_key(a, b)])?
        .map(|r| from_row(&r)))
}

/// Saves title, description, metadata and updated_at.
pub fn update(c: &mut dyn SqlConn, conv: &Conversation) -> Result<()> {
    c.execute(
        "UPDATE conversations SET title = $2, description = $3, metadata = $4, \
         updated_at = $5 WHERE id = $1",
        args![
            &conv.id,
            conv.title.as_deref(),
            conv.description.as_deref(),
            &conv.metadata,
            conv.updated_at
        ],
    )?;
    Ok(())
}

/// How many seqs share one value of `conversations.moved_bucket`, the indexed trace of
/// `last_event_seq`. A conversation's row changes at each of its events; were `last_event_seq`
/// itself indexed, PostgreSQL could not update the row in place (a HOT update), and a busy
/// conversation's row would leave a dead version in the table and in both its indexes per
/// message (measured: a batch's update of 30 conversation rows took 1.4 times as long). The
/// bucket changes once per `MOVED_BUCKET` seqs at most, so most updates leave every index alone.
const MOVED_BUCKET: Seq = 1024;

/// Records that an event of the conversation's shared stream was appended.
pub fn touch_event(c: &mut dyn SqlConn, id: &str, seq: Seq) -> Result<()> {
    c.execute_later(
        "UPDATE conversations SET last_event_seq = $2, moved_bucket = $3 \
         WHERE id = $1 AND last_event_seq < $2",
        args![id, seq, seq / MOVED_BUCKET],
        None,
    )
}

/// What a send needs of its conversation and of the sender's place in it.
#[derive(Debug, Clone)]
pub struct SendHead {
    pub id: String,
    pub kind: ConversationKind,
    /// The sender filed the conversation away (their own archive); a send brings it back.
    pub sender_archived: bool,
    pub last_msg_seq: i64,
    pub last_touch_ms: i64,
    /// The sender is a participant who has not left.
    pub present: bool,
}

const SEND_HEAD: &str =
    "SELECT c.kind, p.archived, c.last_msg_seq, c.last_touch_ms, p.joined_seq, p.left_seq \
     FROM conversations c \
     LEFT JOIN participants p ON p.conv_id = c.id AND p.user_id = $2 \
     WHERE c.id = $1";

/// [`send_head`] named ahead, for a write that begins with it. Its scope is the conversation: it
/// reads that conversation's row and one of its participants.
pub fn send_head_read(id: &str, user_id: &str) -> FirstRead {
    FirstRead {
        scope: id.to_owned(),
        sql: SEND_HEAD,
        params: args![id, user_id].to_vec(),
    }
}

/// The [`SendHead`] of conversation `id` for sender `user_id`, `None` if there is no such
/// conversation. One statement over two primary keys: a send's hottest read, which the full
/// rows (metadata JSON and all) would make cost twice as much.
pub fn send_head(c: &mut dyn SqlConn, id: &str, user_id: &str) -> Result<Option<SendHead>> {
    Ok(c.query_opt(SEND_HEAD, args![id, user_id])?
        .map(|r| SendHead {
            id: id.to_owned(),
            kind: ConversationKind::parse(r.str(0)).unwrap_or(ConversationKind::Group),
            sender_archived: r.opt_i64(1) == Some(1),
            last_msg_seq: r.i64(2),
            last_touch_ms: r.i64(3),
            present: r.opt_i64(4).is_some() && r.opt_i64(5).is_none(),
        }))
}

/// The message seq and timestamp the next message takes: `head` must have been read in the
/// writing transaction, whose writes are serialized (one SQLite writer; on PostgreSQL the
/// counter row's lock, taken first), so nothing moved it since. [`message_appended`] records it.
pub fn message_slot(head: &SendHead, now: i64) -> (i64, i64) {
    (head.last_msg_seq + 1, now.max(head.last_touch_ms + 1))
}

/// Records a message appended at `slot` (from [`message_slot`]) by the event `seq`, in one
/// statement. Refuses with a conflict if the conversation moved since `head` was read (a message
/// or a touch), so that a head read too early cannot number or stamp a message twice.
pub fn message_appended(
    c: &mut dyn SqlConn,
    head: &SendHead,
    (msg_seq, stamp): (i64, i64),
    seq: Seq,
) -> Result<()> {
    c.execute_later(
        "UPDATE conversations SET last_msg_seq = $2, last_message_at = $3, \
         live_msg_count = live_msg_count + 1, last_touch_ms = $3, last_event_seq = $4, \
         moved_bucket = $7 WHERE id = $1 AND last_msg_seq = $5 AND last_touch_ms = $6",
        args![
            &head.id,
            msg_seq,
            stamp,
            seq,
            head.last_msg_seq,
            head.last_touch_ms,
            seq / MOVED_BUCKET
        ],
        Some("the conversation changed while a message was being added"),
    )
}

pub fn message_removed(c: &mut dyn SqlConn, id: &str) -> Result<()> {
    c.execute(
        "UPDATE conversations SET live_msg_count = live_msg_count - 1 WHERE id = $1",
        args![id],
    )?;
    Ok(())
}

/// A timestamp for a change in the conversation, strictly after the previous one, so that
/// `updated_at`/`deleted_at` order the conversation's changes without ties.
pub fn next_touch_ms(c: &mut dyn SqlConn, id: &str, now: i64) -> Result<i64> {
    let row = c.query_opt(
        "UPDATE conversations SET last_touch_ms = CASE WHEN last_touch_ms >= $2 \
         THEN last_touch_ms + 1 ELSE $2 END WHERE id = $1 RETURNING last_touch_ms",
        args![id, now],
    )?;
    row.map(|r| r.i64(0))
        .ok_or_else(|| imsync_core::Error::not_found("Conversation"))
}

/// Conversations whose shared stream moved past `since`, at most `limit`, in no given order.
/// Found by `moved_bucket`: besides those that moved, the index hands out only conversations
/// that last moved in `since`'s own bucket before it, at most one per seq of the bucket.
pub fn changed_since(c: &mut dyn SqlConn, since: Seq, limit: i64) -> Result<Vec<String>> {
    Ok(c.query(
        "SELECT id FROM conversations WHERE moved_bucket >= $3 AND last_event_seq > $1 LIMIT $2",
        args![since, limit, since / MOVED_BUCKET],
    )?
    .iter()
    .map(|r| r.string(0))
    .collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_backfill_of_moved_bucket_uses_its_width() {
        let width = format!("last_event_seq / {}", super::MOVED_BUCKET);
        let steps = crate::repo::schema::sqlite_steps();
        assert!(steps.iter().any(|s| s.contains(&width)), "{width}");
    }
}
