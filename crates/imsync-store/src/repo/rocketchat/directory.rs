//! The Rocket.Chat face's directory reads: public rooms, thread parents of a room, and the
//! caller's read pointer moved back (`subscriptions.unread`).

use crate::repo::{conversations, messages};
use crate::{args, SqlConn};
use imsync_core::model::{Conversation, Message};
use imsync_core::Result;

/// A page of the public groups, oldest first, and how many there are.
pub fn public_rooms(
    c: &mut dyn SqlConn,
    offset: i64,
    limit: i64,
) -> Result<(Vec<Conversation>, i64)> {
    let sql = format!(
        "SELECT {} FROM conversations WHERE kind = 'group' AND public = 1 \
         ORDER BY created_at ASC, id ASC LIMIT $1 OFFSET $2",
        conversations::COLUMNS
    );
    let rows = c.query(&sql, args![limit.max(0), offset.max(0)])?;
    let total = c
        .query_opt(
            "SELECT count(*) FROM conversations WHERE kind = 'group' AND public = 1",
            &[],
        )?
        .map_or(0, |r| r.i64(0));
    Ok((rows.iter().map(conversations::from_row).collect(), total))
}

/// The room's thread parents (messages with live replies, deleted parents that keep replies
/// included), latest reply first.
pub fn thread_parents(c: &mut dyn SqlConn, conv_id: &str) -> Result<Vec<Message>> {
    let sql = format!(
        "SELECT {} FROM messages WHERE conv_id = $1 AND tcount > 0 \
         ORDER BY tlm DESC, msg_seq DESC",
        messages::COLUMNS
    );
    Ok(c.query(&sql, args![conv_id])?
        .iter()
        .map(messages::from_row)
        .collect())
}

/// Sets the read pointer back to `msg_seq` if it is past it; whether it moved.
pub fn rewind_read(
    c: &mut dyn SqlConn,
    conv_id: &str,
    user_id: &str,
    msg_seq: i64,
) -> Result<bool> {
    Ok(c.execute(
        "UPDATE participants SET read_msg_seq = $3 WHERE conv_id = $1 AND user_id = $2 \
         AND read_msg_seq > $3",
        args![conv_id, user_id, msg_seq],
    )? > 0)
}

/// The thread parents of a room with a live reply from someone else than `user_id` after the
/// read pointer `after_msg_seq`.
pub fn unread_threads(
    c: &mut dyn SqlConn,
    conv_id: &str,
    user_id: &str,
    after_msg_seq: i64,
) -> Result<Vec<String>> {
    Ok(c.query(
        "SELECT DISTINCT parent_id FROM messages WHERE conv_id = $1 AND parent_id IS NOT NULL \
         AND deleted_at IS NULL AND msg_seq > $2 AND sender_id <> $3",
        args![conv_id, after_msg_seq, user_id],
    )?
    .iter()
    .map(|r| r.string(0))
    .collect())
}
