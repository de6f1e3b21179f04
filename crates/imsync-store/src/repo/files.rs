//! Uploaded files' records and the messages that carry them. The bytes are kept by the file
//! store; a record says whose they are, what was declared, and how far the upload got.

use crate::{args, FirstRead, Row, SqlConn};
use imsync_core::Result;

/// How far an upload got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    /// Announced (presign or multipart init): no bytes yet, or only some parts.
    Pending,
    /// The bytes are in the store; the owner has not confirmed them yet.
    Uploaded,
    /// Confirmed: may be sent in messages and downloaded.
    Ready,
}

impl FileState {
    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Pending => "pending",
            FileState::Uploaded => "uploaded",
            FileState::Ready => "ready",
        }
    }
    fn parse(s: &str) -> FileState {
        match s {
            "uploaded" => FileState::Uploaded,
            "ready" => FileState::Ready,
            _ => FileState::Pending,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileRecord {
    pub id: String,
    pub owner_id: String,
    pub name: String,
    /// As the uploader declared it.
    pub mime: String,
    pub declared_size: i64,
    /// Bytes stored, once uploaded.
    pub size: i64,
    /// The content is an image of a kind served inline (declared and sniffed alike).
    pub inline_ok: bool,
    pub multipart: bool,
    pub state: FileState,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A message that carries a file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileLink {
    pub file_id: String,
    pub message_id: String,
    pub conv_id: String,
    pub event_seq: i64,
}

const COLUMNS: &str =
    "id, owner_id, name, mime, declared_size, size, inline_ok, multipart, state, created_at, \
     updated_at";

fn from_row(r: &Row) -> FileRecord {
    FileRecord {
        id: r.string(0),
        owner_id: r.string(1),
        name: r.string(2),
        mime: r.string(3),
        declared_size: r.i64(4),
        size: r.i64(5),
        inline_ok: r.bool(6),
        multipart: r.bool(7),
        state: FileState::parse(r.str(8)),
        created_at: r.i64(9),
        updated_at: r.i64(10),
    }
}

pub fn insert(c: &mut dyn SqlConn, f: &FileRecord) -> Result<()> {
    c.execute(
        &format!(
            "INSERT INTO files ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
             $11)"
        ),
        args![
            &f.id,
            &f.owner_id,
            &f.name,
            &f.mime,
            f.declared_size,
            f.size,
            f.inline_ok,
            f.multipart,
            f.state.as_str(),
            f.created_at,
            f.updated_at
        ],
    )?;
    Ok(())
}

pub fn get(c: &mut dyn SqlConn, id: &str) -> Result<Option<FileRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM files WHERE id = $1");
    Ok(c.query_opt(&sql, args![id])?.map(|r| from_row(&r)))
}

/// Records the stored bytes of an upload.
pub fn set_uploaded(
    c: &mut dyn SqlConn,
    id: &str,
    size: i64,
    inline_ok: bool,
    now: i64,
) -> Result<()> {
    c.execute(
        "UPDATE files SET size = $2, inline_ok = $3, state = $4, updated_at = $5 WHERE id = $1",
        args![id, size, inline_ok, FileState::Uploaded.as_str(), now],
    )?;
    Ok(())
}

pub fn set_state(c: &mut dyn SqlConn, id: &str, state: FileState, now: i64) -> Result<()> {
    c.execute(
        "UPDATE files SET state = $2, updated_at = $3 WHERE id = $1",
        args![id, state.as_str(), now],
    )?;
    Ok(())
}

pub fn delete(c: &mut dyn SqlConn, id: &str) -> Result<bool> {
    c.execute("DELETE FROM file_links WHERE file_id = $1", args![id])?;
    Ok(c.execute("DELETE FROM files WHERE id = $1", args![id])? > 0)
}

/// Bytes and count of a user's stored files (uploaded or confirmed).
pub fn usage(c: &mut dyn SqlConn, owner_id: &str) -> Result<(i64, i64)> {
    let row = c.query_opt(
        "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT), COUNT(*) FROM files \
         WHERE owner_id = $1 AND state <> $2",
        args![owner_id, FileState::Pending.as_str()],
    )?;
    Ok(row.map_or((0, 0), |r| (r.i64(0), r.i64(1))))
}

/// Links a message to the file it carries. Queued with the send's other writes: the send
/// checked the file first ([`own_ready`], or the full check), and the message id is new, so the
/// row cannot collide.
pub fn link_later(c: &mut dyn SqlConn, l: &FileLink) -> Result<()> {
    c.execute_later(
        "INSERT INTO file_links (file_id, message_id, conv_id, event_seq) VALUES ($1, $2, $3, $4)",
        args![&l.file_id, &l.message_id, &l.conv_id, l.event_seq],
        None,
    )
}

const OWN_READY: &str = "SELECT 1 FROM files WHERE id = $1 AND owner_id = $2 AND state = $3";

/// Whether `id` is a confirmed file of `owner_id`: what nearly every file message carries.
pub fn own_ready(c: &mut dyn SqlConn, id: &str, owner_id: &str) -> Result<bool> {
    Ok(
        c.query_opt(OWN_READY, args![id, owner_id, FileState::Ready.as_str()])?
            .is_some(),
    )
}

/// [`own_ready`] named ahead, for a send into `conv_id` that reads it before it writes. Its
/// scope is that conversation: no send writes a file's row, so what the read sees is the same
/// whichever sends of its batch run before it.
pub fn own_ready_read(conv_id: &str, id: &str, owner_id: &str) -> FirstRead {
    FirstRead {
        scope: conv_id.to_owned(),
        sql: OWN_READY,
        params: args![id, owner_id, FileState::Ready.as_str()].to_vec(),
    }
}

pub fn links(c: &mut dyn SqlConn, file_id: &str) -> Result<Vec<FileLink>> {
    Ok(c.query(
        "SELECT file_id, message_id, conv_id, event_seq FROM file_links WHERE file_id = $1 \
             ORDER BY event_seq",
        args![file_id],
    )?
    .iter()
    .map(|r| FileLink {
        file_id: r.string(0),
        message_id: r.string(1),
        conv_id: r.string(2),
        event_seq: r.i64(3),
    })
    .collect())
}

/// Uploads never finished (pending, or uploaded and never confirmed) last touched before
/// `before`.
pub fn stale_uploads(c: &mut dyn SqlConn, before: i64, limit: i64) -> Result<Vec<String>> {
    Ok(c.query(
        "SELECT id FROM files WHERE state <> $1 AND updated_at < $2 ORDER BY updated_at \
             LIMIT $3",
        args![FileState::Ready.as_str(), before, limit],
    )?
    .iter()
    .map(|r| r.string(0))
    .collect())
}

/// Files sent in messages that are all deleted (or gone), the last of them before `before`.
pub fn unreferenced(c: &mut dyn SqlConn, before: i64, limit: i64) -> Result<Vec<String>> {
    Ok(c.query(
        "SELECT f.id FROM files f WHERE f.state = $1 \
             AND EXISTS (SELECT 1 FROM file_links l WHERE l.file_id = f.id) \
             AND NOT EXISTS (SELECT 1 FROM file_links l JOIN messages m ON m.id = l.message_id \
                 WHERE l.file_id = f.id AND (m.deleted_at IS NULL OR m.deleted_at >= $2)) \
             LIMIT $3",
        args![FileState::Ready.as_str(), before, limit],
    )?
    .iter()
    .map(|r| r.string(0))
    .collect())
}
