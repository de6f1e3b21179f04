use crate::{args, Row, SqlConn};
use imsync_core::model::Message;
use imsync_core::{Result, Seq};

pub(crate) const COLUMNS: &str =
    "id, conv_id, msg_seq, event_seq, sender_id, type, content, metadata, \
     parent_id, quoted_id, created_at, updated_at, edited_at, edited_by, deleted_at, revoked, \
     tcount, tlm, version";

pub(crate) fn from_row(r: &Row) -> Message {
    Message {
        id: r.string(0),
        conversation_id: r.string(1),
        msg_seq: r.i64(2),
        event_seq: r.i64(3),
        sender_id: r.string(4),
        kind: r.string(5),
        content: r.string(6),
        metadata: r.json(7),
        parent_id: r.opt_string(8),
        quoted_id: r.opt_string(9),
        created_at: r.i64(10),
        updated_at: r.i64(11),
        edited_at: r.opt_i64(12),
        edited_by: r.opt_string(13),
        deleted_at: r.opt_i64(14),
        revoked: r.bool(15),
        reply_count: r.i64(16),
        last_reply_at: r.opt_i64(17),
        version: r.i64(18),
    }
}

pub fn insert(c: &mut dyn SqlConn, m: &Message) -> Result<()> {
    c.execute_later(
        "INSERT INTO messages (id, conv_id, msg_seq, event_seq, sender_id, type, content, \
         metadata, parent_id, quoted_id, created_at, updated_at, version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        args![
            &m.id,
            &m.conversation_id,
            m.msg_seq,
            m.event_seq,
            &m.sender_id,
            &m.kind,
            &m.content,
            &m.metadata,
            m.parent_id.as_deref(),
            m.quoted_id.as_deref(),
            m.created_at,
            m.updated_at,
            m.version
        ],
        None,
    )
}

pub fn get(c: &mut dyn SqlConn, id: &str) -> Result<Option<Message>> {
    let sql = format!("SELECT {COLUMNS} FROM messages WHERE id = $1");
    Ok(c.query_opt(&sql, args![id])?.map(|r| from_row(&r)))
}

pub fn exists(c: &mut dyn SqlConn, id: &str) -> Result<bool> {
    Ok(
        c.query_opt("SELECT 1 FROM messages WHERE id = $1", args![id])?
            .is_some(),
    )
}

/// Saves every mutable field of a message.
pub fn save(c: &mut dyn SqlConn, m: &Message) -> Result<()> {
    c.execute(
        "UPDATE messages SET content = $2, metadata = $3, updated_at = $4, edited_at = $5, \
         edited_by = $6, deleted_at = $7, revoked = $8, tcount = $9, tlm = $10, version = $11 \
         WHERE id = $1",
        args![
            &m.id,
            &m.content,
            &m.metadata,
            m.updated_at,
            m.edited_at,
            m.edited_by.as_deref(),
            m.deleted_at,
            m.revoked,
            m.reply_count,
            m.last_reply_at,
            m.version
        ],
    )?;
    Ok(())
}

/// Which page of a conversation's live messages to read, in `msg_seq` terms.
#[derive(Debug, Clone, Copy)]
pub enum Page {
    Latest,
    Before(i64),
    After(i64),
}

/// Live (not deleted) messages of a conversation whose creating event the reader could see
/// (`visible_from..=visible_to` in event seqs), ascending by `msg_seq`.
pub fn history(
    c: &mut dyn SqlConn,
    conv_id: &str,
    page: Page,
    visible: &[(Seq, Option<Seq>)],
    limit: i64,
) -> Result<Vec<Message>> {
    // Read a little more than asked and filter by visibility here: the common case is one open
    // interval, where nothing is filtered out.
    let mut out = Vec::new();
    let mut bound = page;
    loop {
        let (sql, params): (String, Vec<crate::Value>) = match bound {
            Page::Latest => (
                format!(
                    "SELECT {COLUMNS} FROM messages WHERE conv_id = $1 AND deleted_at IS NULL \
                     ORDER BY msg_seq DESC LIMIT $2"
                ),
                vec![conv_id.into(), (limit * 2).into()],
            ),
            Page::Before(seq) => (
                format!(
                    "SELECT {COLUMNS} FROM messages WHERE conv_id = $1 AND deleted_at IS NULL \
                     AND msg_seq < $2 ORDER BY msg_seq DESC LIMIT $3"
                ),
                vec![conv_id.into(), seq.into(), (limit * 2).into()],
            ),
            Page::After(seq) => (
                format!(
                    "SELECT {COLUMNS} FROM messages WHERE conv_id = $1 AND deleted_at IS NULL \
                     AND msg_seq > $2 ORDER BY msg_seq ASC LIMIT $3"
                ),
                vec![conv_id.into(), seq.into(), (limit * 2).into()],
            ),
        };
        let rows = c.query(&sql, &params)?;
        let fetched = rows.len() as i64;
        let mut last_seq = None;
        for r in &rows {
            let m = from_row(r);
            last_seq = Some(m.msg_seq);
            let seen = visible
                .iter()
                .any(|(from, to)| m.event_seq >= *from && to.is_none_or(|t| m.event_seq <= t));
            if seen && (out.len() as i64) < limit {
                out.push(m);
            }
        }
        if out.len() as i64 >= limit || fetched < limit * 2 {
            break;
        }
        bound = match (bound, last_seq) {
            (Page::After(_), Some(s)) => Page::After(s),
            (_, Some(s)) => Page::Before(s),
            (_, None) => break,
        };
    }
    if !matches!(page, Page::After(_)) {
        out.reverse();
    }
    Ok(out)
}

/// Messages after the reader's pointer that count as unread: live, not revoked, not their own.
pub fn unread_count(
    c: &mut dyn SqlConn,
    conv_id: &str,
    user_id: &str,
    after_msg_seq: i64,
) -> Result<i64> {
    Ok(c.query_opt(
        "SELECT count(*) FROM messages WHERE conv_id = $1 AND msg_seq > $2 \
         AND sender_id <> $3 AND deleted_at IS NULL AND revoked = 0",
        args![conv_id, after_msg_seq, user_id],
    )?
    .map_or(0, |r| r.i64(0)))
}

pub fn by_msg_seq(c: &mut dyn SqlConn, conv_id: &str, msg_seq: i64) -> Result<Option<Message>> {
    let sql = format!("SELECT {COLUMNS} FROM messages WHERE conv_id = $1 AND msg_seq = $2");
    Ok(c.query_opt(&sql, args![conv_id, msg_seq])?
        .map(|r| from_row(&r)))
}

/// The newest live message of a conversation.
pub fn last_live(c: &mut dyn SqlConn, conv_id: &str) -> Result<Option<Message>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM messages WHERE conv_id = $1 AND deleted_at IS NULL \
         ORDER BY msg_seq DESC LIMIT 1"
    );
    Ok(c.query_opt(&sql, args![conv_id])?.map(|r| from_row(&r)))
}

pub fn count_sent_by(c: &mut dyn SqlConn, user_id: &str) -> Result<i64> {
    Ok(c.query_opt(
        "SELECT count(*) FROM messages WHERE sender_id = $1 AND deleted_at IS NULL",
        args![user_id],
    )?
    .map_or(0, |r| r.i64(0)))
}

/// Records delivery receipts; answers how many were new.
pub fn mark_delivered(
    c: &mut dyn SqlConn,
    message_id: &str,
    user_id: &str,
    at: i64,
) -> Result<bool> {
    Ok(c.execute(
        "INSERT INTO deliveries (message_id, user_id, at) VALUES ($1, $2, $3) \
         ON CONFLICT (message_id, user_id) DO NOTHING",
        args![message_id, user_id, at],
    )? > 0)
}

/// The largest `msg_seq` (at most `top`) whose message was created at or before the event seq
/// `upto`, or 0. A conversation hands out msg_seq and event seq in the same order, so this is a
/// bisection over the `(conv_id, msg_seq)` key rather than a scan.
pub fn last_msg_seq_upto(c: &mut dyn SqlConn, conv_id: &str, top: i64, upto: Seq) -> Result<i64> {
    let created_by = |c: &mut dyn SqlConn, msg_seq: i64| -> Result<bool> {
        Ok(c.query_opt(
            "SELECT event_seq FROM messages WHERE conv_id = $1 AND msg_seq = $2",
            args![conv_id, msg_seq],
        )?
        .is_none_or(|r| r.i64(0) <= upto))
    };
    // Invariant: the message at `lo` (or none, at 0) is at or before `upto`; `hi` is after it.
    let (mut lo, mut hi) = (0, top + 1);
    while lo + 1 < hi {
        let mid = lo + (hi - lo) / 2;
        if created_by(c, mid)? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}
