use crate::{args, SqlConn};
use imsync_core::model::{Message, Reaction};
use imsync_core::{Result, Seq};

/// Adds or removes one (user, emoji) reaction. Answers whether anything changed.
pub fn set(
    c: &mut dyn SqlConn,
    message: &Message,
    user_id: &str,
    emoji: &str,
    present: bool,
    seq: Seq,
    at: i64,
) -> Result<bool> {
    let (message_id, conv_id) = (message.id.as_str(), message.conversation_id.as_str());
    let current = c
        .query_opt(
            "SELECT removed FROM reactions WHERE message_id = $1 AND user_id = $2 AND emoji = $3",
            args![message_id, user_id, emoji],
        )?
        .map(|r| !r.bool(0));
    match (current, present) {
        (Some(true), true) | (Some(false), false) | (None, false) => Ok(false),
        (None, true) => {
            c.execute(
                "INSERT INTO reactions (message_id, user_id, emoji, conv_id, seq, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                args![message_id, user_id, emoji, conv_id, seq, at],
            )?;
            Ok(true)
        }
        (Some(_), _) => {
            c.execute(
                "UPDATE reactions SET removed = $4, seq = $5, created_at = $6 \
                 WHERE message_id = $1 AND user_id = $2 AND emoji = $3",
                args![message_id, user_id, emoji, !present, seq, at],
            )?;
            Ok(true)
        }
    }
}

/// Whether the (user, emoji) reaction is present now.
pub fn is_present(
    c: &mut dyn SqlConn,
    message_id: &str,
    user_id: &str,
    emoji: &str,
) -> Result<bool> {
    Ok(c.query_opt(
        "SELECT 1 FROM reactions WHERE message_id = $1 AND user_id = $2 AND emoji = $3 \
         AND removed = 0",
        args![message_id, user_id, emoji],
    )?
    .is_some())
}

/// The message's present reactions, oldest first.
pub fn of_message(c: &mut dyn SqlConn, message_id: &str) -> Result<Vec<Reaction>> {
    Ok(c.query(
        "SELECT user_id, emoji, seq, created_at, removed FROM reactions \
         WHERE message_id = $1 AND removed = 0 ORDER BY seq",
        args![message_id],
    )?
    .iter()
    .map(|r| Reaction {
        user_id: r.string(0),
        emoji: r.string(1),
        seq: r.i64(2),
        created_at: r.i64(3),
        removed: r.bool(4),
    })
    .collect())
}
