//! Room lookups of the Rocket.Chat face: groups by name, and a user's departures since a time
//! (the `remove` lists of `rooms.get` / `subscriptions.get`).

use crate::repo::conversations::{from_row, COLUMNS};
use crate::{args, SqlConn};
use imsync_core::model::Conversation;
use imsync_core::{Result, Seq};

/// A group named `title`, public ones first, oldest first.
pub fn group_by_title(c: &mut dyn SqlConn, title: &str) -> Result<Option<Conversation>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM conversations WHERE title = $1 AND kind = 'group' \
         ORDER BY public DESC, created_at ASC LIMIT 1"
    );
    Ok(c.query_opt(&sql, args![title])?.map(|r| from_row(&r)))
}

/// Conversations the user left (and is still out of) after `since` ms, with when they left.
pub fn left_since(c: &mut dyn SqlConn, user_id: &str, since: i64) -> Result<Vec<(String, i64)>> {
    Ok(c.query(
        "SELECT p.conv_id, e.at FROM participants p JOIN events e ON e.seq = p.left_seq \
         WHERE p.user_id = $1 AND p.left_seq IS NOT NULL AND e.at > $2 ORDER BY e.at",
        args![user_id, since],
    )?
    .iter()
    .map(|r| (r.string(0), r.i64(1)))
    .collect())
}

/// When the event `seq` was appended.
pub fn event_at(c: &mut dyn SqlConn, seq: Seq) -> Result<Option<i64>> {
    Ok(
        c.query_opt("SELECT at FROM events WHERE seq = $1", args![seq])?
            .map(|r| r.i64(0)),
    )
}
