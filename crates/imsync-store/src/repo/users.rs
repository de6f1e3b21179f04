use crate::{args, Row, SqlConn};
use imsync_core::model::{User, UserRole};
use imsync_core::Result;

const COLUMNS: &str = "id, username, display_name, role, agent_type, avatar_url, bio, metadata, \
                       password_hash IS NOT NULL, created_at, updated_at";

fn from_row(r: &Row) -> User {
    User {
        id: r.string(0),
        username: r.string(1),
        display_name: r.string(2),
        role: UserRole::parse(r.str(3)).unwrap_or(UserRole::Human),
        agent_type: r.opt_string(4),
        avatar_url: r.opt_string(5),
        bio: r.opt_string(6),
        metadata: r.json(7),
        has_password: r.bool(8),
        created_at: r.i64(9),
        updated_at: r.i64(10),
    }
}

/// Usernames are unique regardless of case.
pub fn username_key(username: &str) -> String {
    username.to_ascii_lowercase()
}

pub fn insert(c: &mut dyn SqlConn, u: &User, password_hash: Option<&str>) -> Result<()> {
    c.execute(
        "INSERT INTO users (id, username, username_key, display_name, role, agent_type, \
         avatar_url, bio, metadata, password_hash, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        args![
            &u.id,
            &u.username,
            username_key(&u.username),
            &u.display_name,
            u.role.as_str(),
            u.agent_type.as_deref(),
            u.avatar_url.as_deref(),
            u.bio.as_deref(),
            &u.metadata,
            password_hash,
            u.created_at,
            u.updated_at
        ],
    )?;
    Ok(())
}

pub fn get(c: &mut dyn SqlConn, id: &str) -> Result<Option<User>> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE id = $1 AND deleted_at IS NULL");
    Ok(c.query_opt(&sql, args![id])?.map(|r| from_row(&r)))
}

pub fn get_by_username(c: &mut dyn SqlConn, username: &str) -> Result<Option<User>> {
    let sql = format!("SELECT {COLUMNS} FROM users WHERE username_key = $1 AND deleted_at IS NULL");
    Ok(c.query_opt(&sql, args![username_key(username)])?
        .map(|r| from_row(&r)))
}

/// Whether the name is taken, by a live or a deleted account (names are never reused).
pub fn username_taken(c: &mut dyn SqlConn, username: &str) -> Result<bool> {
    Ok(c.query_opt(
        "SELECT 1 FROM users WHERE username_key = $1",
        args![username_key(username)],
    )?
    .is_some())
}

/// What a login checks, by username.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user_id: String,
    pub password_hash: Option<String>,
    pub disabled: bool,
}

/// The credentials of a live account, by username.
pub fn credentials(c: &mut dyn SqlConn, username: &str) -> Result<Option<Credentials>> {
    Ok(c.query_opt(
        "SELECT id, password_hash, disabled_at IS NOT NULL FROM users \
         WHERE username_key = $1 AND deleted_at IS NULL",
        args![username_key(username)],
    )?
    .map(|r| Credentials {
        user_id: r.string(0),
        password_hash: r.opt_string(1),
        disabled: r.bool(2),
    }))
}

/// Replaces a live account's password hash.
pub fn set_password_hash(c: &mut dyn SqlConn, id: &str, hash: &str) -> Result<()> {
    c.execute(
        "UPDATE users SET password_hash = $2 WHERE id = $1 AND deleted_at IS NULL",
        args![id, hash],
    )?;
    Ok(())
}

pub fn update_profile(c: &mut dyn SqlConn, u: &User) -> Result<()> {
    c.execute(
        "UPDATE users SET display_name = $2, avatar_url = $3, bio = $4, metadata = $5, \
         updated_at = $6 WHERE id = $1",
        args![
            &u.id,
            &u.display_name,
            u.avatar_url.as_deref(),
            u.bio.as_deref(),
            &u.metadata,
            u.updated_at
        ],
    )?;
    Ok(())
}

pub fn mark_deleted(c: &mut dyn SqlConn, id: &str, at: i64) -> Result<()> {
    c.execute(
        "UPDATE users SET deleted_at = $2, password_hash = NULL WHERE id = $1",
        args![id, at],
    )?;
    Ok(())
}

/// Users by id, in any order; unknown ids are left out.
pub fn get_many(c: &mut dyn SqlConn, ids: &[String]) -> Result<Vec<User>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(u) = get(c, id)? {
            out.push(u);
        }
    }
    Ok(out)
}

/// A page of the live accounts, oldest first, and how many there are.
pub fn page(c: &mut dyn SqlConn, offset: i64, limit: i64) -> Result<(Vec<User>, i64)> {
    let sql = format!(
        "SELECT {COLUMNS} FROM users WHERE deleted_at IS NULL \
         ORDER BY created_at ASC, id ASC LIMIT $1 OFFSET $2"
    );
    let rows = c.query(&sql, args![limit.max(0), offset.max(0)])?;
    let total = c
        .query_opt("SELECT count(*) FROM users WHERE deleted_at IS NULL", &[])?
        .map_or(0, |r| r.i64(0));
    Ok((rows.iter().map(from_row).collect(), total))
}

pub fn count(c: &mut dyn SqlConn) -> Result<i64> {
    Ok(c.query_opt("SELECT count(*) FROM users", &[])?
        .map_or(0, |r| r.i64(0)))
}

/// A live account as an administrator sees it.
#[derive(Debug, Clone)]
pub struct Account {
    pub user: User,
    pub admin: bool,
    /// When it was disabled; `None` while it may log in.
    pub disabled_at: Option<i64>,
}

fn account_from_row(r: &Row) -> Account {
    Account {
        user: from_row(r),
        admin: r.bool(11),
        disabled_at: r.opt_i64(12),
    }
}

/// A live account by id.
pub fn account(c: &mut dyn SqlConn, id: &str) -> Result<Option<Account>> {
    let sql = format!(
        "SELECT {COLUMNS}, admin, disabled_at FROM users WHERE id = $1 AND deleted_at IS NULL"
    );
    Ok(c.query_opt(&sql, args![id])?.map(|r| account_from_row(&r)))
}

/// A page of the live accounts, oldest first, and how many there are.
pub fn account_page(c: &mut dyn SqlConn, offset: i64, limit: i64) -> Result<(Vec<Account>, i64)> {
    let sql = format!(
        "SELECT {COLUMNS}, admin, disabled_at FROM users WHERE deleted_at IS NULL \
         ORDER BY created_at ASC, id ASC LIMIT $1 OFFSET $2"
    );
    let rows = c.query(&sql, args![limit.max(0), offset.max(0)])?;
    let total = c
        .query_opt("SELECT count(*) FROM users WHERE deleted_at IS NULL", &[])?
        .map_or(0, |r| r.i64(0));
    Ok((rows.iter().map(account_from_row).collect(), total))
}

/// Live, enabled admins: who can still manage the server.
pub fn active_admin_count(c: &mut dyn SqlConn) -> Result<i64> {
    Ok(c.query_opt(
        "SELECT count(*) FROM users \
             WHERE admin = 1 AND deleted_at IS NULL AND disabled_at IS NULL",
        &[],
    )?
    .map_or(0, |r| r.i64(0)))
}

/// Whether a live, enabled account has the admin role.
pub fn is_active_admin(c: &mut dyn SqlConn, id: &str) -> Result<bool> {
    Ok(c.query_opt(
        "SELECT 1 FROM users \
         WHERE id = $1 AND admin = 1 AND deleted_at IS NULL AND disabled_at IS NULL",
        args![id],
    )?
    .is_some())
}

pub fn set_admin(c: &mut dyn SqlConn, id: &str, admin: bool, at: i64) -> Result<()> {
    c.execute(
        "UPDATE users SET admin = $2, updated_at = $3 WHERE id = $1 AND deleted_at IS NULL",
        args![id, admin, at],
    )?;
    Ok(())
}

/// Disables the account as of `disabled_at`, or enables it with `None`.
pub fn set_disabled(
    c: &mut dyn SqlConn,
    id: &str,
    disabled_at: Option<i64>,
    at: i64,
) -> Result<()> {
    c.execute(
        "UPDATE users SET disabled_at = $2, updated_at = $3 WHERE id = $1 AND deleted_at IS NULL",
        args![id, disabled_at, at],
    )?;
    Ok(())
}
