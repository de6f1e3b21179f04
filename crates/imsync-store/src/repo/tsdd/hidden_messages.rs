//! Messages a user deleted for themselves only (TangSengDaoDao's "delete for me"). Each row
//! carries the seq of the private event that hid the message, so extra sync can order it.

use crate::{args, SqlConn};
use imsync_core::{Result, Seq};
use std::collections::HashSet;

/// Hides a message for a user; answers false when it already was hidden.
pub fn hide(
    c: &mut dyn SqlConn,
    user_id: &str,
    message_id: &str,
    conv_id: &str,
    seq: Seq,
) -> Result<bool> {
    Ok(c.execute(
        "INSERT INTO hidden_messages (user_id, message_id, conv_id, seq) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (user_id, message_id) DO NOTHING",
        args![user_id, message_id, conv_id, seq],
    )? > 0)
}

pub fn is_hidden(c: &mut dyn SqlConn, user_id: &str, message_id: &str) -> Result<bool> {
    Ok(c.query_opt(
        "SELECT 1 FROM hidden_messages WHERE user_id = $1 AND message_id = $2",
        args![user_id, message_id],
    )?
    .is_some())
}

/// The ids of the messages the user hid in one conversation.
pub fn ids_in(c: &mut dyn SqlConn, user_id: &str, conv_id: &str) -> Result<HashSet<String>> {
    Ok(c.query(
        "SELECT message_id FROM hidden_messages WHERE user_id = $1 AND conv_id = $2",
        args![user_id, conv_id],
    )?
    .iter()
    .map(|r| r.string(0))
    .collect())
}

/// `(message_id, seq)` of the user's hides in a conversation with seq in `(after, upto]`,
/// ascending (or descending), at most `limit`.
pub fn range(
    c: &mut dyn SqlConn,
    user_id: &str,
    conv_id: &str,
    after: Seq,
    upto: Seq,
    descending: bool,
    limit: i64,
) -> Result<Vec<(String, Seq)>> {
    let order = if descending { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT message_id, seq FROM hidden_messages WHERE user_id = $1 AND conv_id = $2 \
         AND seq > $3 AND seq <= $4 ORDER BY seq {order} LIMIT $5"
    );
    Ok(c.query(&sql, args![user_id, conv_id, after, upto, limit])?
        .iter()
        .map(|r| (r.string(0), r.i64(1)))
        .collect())
}
