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

/// The owner and expiry of a token, if it exists and its user is live and not disabled.
pub fn lookup(c: &mut dyn SqlConn, hash: &str) -> Result<Option<(String, i64)>> {
    Ok(c.query_opt(
        "SELECT t.user_id, t.expires_at FROM tokens t JOIN users u ON u.id = t.user_id \
         WHERE t.hash = $1 AND u.deleted_at IS NULL AND u.disabled_at IS NULL",
        args![hash],
    )?
    .map(|r| (r.string(0), r.i64(1))))
}

/// A token as a refresh sees it: owner, expiry, and the end of its retry grace once refreshed.
pub fn lookup_for_refresh(
    c: &mut dyn SqlConn,
    hash: &str,
) -> Result<Option<(String, i64, Option<i64>)>> {
    Ok(c.query_opt(
        "SELECT t.user_id, t.expires_at, t.refresh_until FROM tokens t \
         JOIN users u ON u.id = t.user_id WHERE t.hash = $1 AND u.deleted_at IS NULL AND u.disabled_at IS NULL",
        args![hash],
    )?
    .map(|r| (r.string(0), r.i64(1), r.opt_i64(2))))
}

/// Ends a refreshed token's use at `now`, leaving it good for another refresh until `until`
/// (kept from the first refresh when it is retried).
pub fn retire(c: &mut dyn SqlConn, hash: &str, now: i64, until: i64) -> Result<()> {
    c.execute(
        "UPDATE tokens SET expires_at = CASE WHEN expires_at < $2 THEN expires_at ELSE $2 END, \
         refresh_until = COALESCE(refresh_until, $3) WHERE hash = $1",
        args![hash, now, until],
    )?;
    Ok(())
}

pub fn delete(c: &mut dyn SqlConn, hash: &str) -> Result<()> {
    c.execute("DELETE FROM tokens WHERE hash = $1", args![hash])?;
    Ok(())
}

/// Ends every session of a user; answers how many there were.
pub fn delete_for_user(c: &mut dyn SqlConn, user_id: &str) -> Result<u64> {
    c.execute("DELETE FROM tokens WHERE user_id = $1", args![user_id])
}

/// Which of these token hashes still name a live session at `now`: not expired, not revoked,
/// their user neither deleted nor disabled. Asked in chunks, so any number of hashes takes few statements.
pub fn live_among(
    c: &mut dyn SqlConn,
    hashes: &[String],
    now: i64,
) -> Result<std::collections::HashSet<String>> {
    let mut live = std::collections::HashSet::new();
    for chunk in hashes.chunks(256) {
        let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT t.hash FROM tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.expires_at > $1 AND u.deleted_at IS NULL AND u.disabled_at IS NULL AND t.hash IN ({})",
            marks.join(", ")
        );
        let mut params: Vec<crate::Value> = vec![now.into()];
        params.extend(chunk.iter().map(|h| crate::Value::from(h.as_str())));
        for r in c.query(&sql, &params)? {
            live.insert(r.string(0));
        }
    }
    Ok(live)
}
