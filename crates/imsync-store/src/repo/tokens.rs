use crate::{args, SqlConn};
use imsync_core::Result;

pub fn insert(
    c: &mut dyn SqlConn,
    hash: &str,
    user_id: &str,
    now: i64,
    expires_at: i64,
) -> Result<()> {
    c.execute(
        "INSERT INTO tokens (hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        args![hash, user_id, now, expires_at],
    )?;
    Ok(())
}

/// The owner and expiry of a token, if it exists and its user is live.
pub fn lookup(c: &mut dyn SqlConn, hash: &str) -> Result<Option<(String, i64)>> {
    Ok(c.query_opt(
        "SELECT t.user_id, t.expires_at FROM tokens t JOIN users u ON u.id = t.user_id \
         WHERE t.hash = $1 AND u.deleted_at IS NULL",
        args![hash],
    )?
    .map(|r| (r.string(0), r.i64(1))))
}

pub fn delete(c: &mut dyn SqlConn, hash: &str) -> Result<()> {
    c.execute("DELETE FROM tokens WHERE hash = $1", args![hash])?;
    Ok(())
}

pub fn delete_for_user(c: &mut dyn SqlConn, user_id: &str) -> Result<()> {
    c.execute("DELETE FROM tokens WHERE user_id = $1", args![user_id])?;
    Ok(())
}
