use crate::{args, FirstRead, SqlConn};
use imsync_core::Result;

const FIND: &str = "SELECT message_id, payload_hash FROM idempotency \
     WHERE sender_id = $1 AND conv_id = $2 AND key = $3";

/// The message a key already produced, with the hash of the payload it was sent with.
pub fn find(
    c: &mut dyn SqlConn,
    sender: &str,
    conv_id: &str,
    key: &str,
) -> Result<Option<(String, String)>> {
    Ok(c.query_opt(FIND, args![sender, conv_id, key])?
        .map(|r| (r.string(0), r.string(1))))
}

/// [`find`] named ahead, for a send that begins with it; its scope is the conversation, in which
/// only that sender's sends record keys.
pub fn find_read(sender: &str, conv_id: &str, key: &str) -> FirstRead {
    FirstRead {
        scope: conv_id.to_owned(),
        sql: FIND,
        params: args![sender, conv_id, key].to_vec(),
    }
}

/// Records the key; fails with a conflict when another transaction recorded it first (the
/// caller retries and finds that message).
pub fn record(
    c: &mut dyn SqlConn,
    sender: &str,
    conv_id: &str,
    key: &str,
    message_id: &str,
    payload_hash: &str,
    at: i64,
) -> Result<()> {
    c.execute_later(
        "INSERT INTO idempotency (sender_id, conv_id, key, message_id, payload_hash, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (sender_id, conv_id, key) DO NOTHING",
        args![sender, conv_id, key, message_id, payload_hash, at],
        Some("idempotency key raced"),
    )
}
