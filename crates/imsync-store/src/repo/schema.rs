//! Schema migrations, one ordered list per dialect, applied at start inside one transaction.
//! Integers are 64-bit, timestamps are epoch milliseconds, JSON is stored as text, booleans as
//! 0/1, so that the typed queries read the same on every backend.

use crate::sql::{Dialect, SqlConn};
use imsync_core::Result;

const SQLITE: &[&str] = &[
    r#"
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    username_key TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL,
    agent_type TEXT,
    avatar_url TEXT,
    bio TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    password_hash TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    deleted_at INTEGER
);
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX tokens_user ON tokens(user_id);
CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    public INTEGER NOT NULL DEFAULT 0,
    title TEXT,
    description TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    archived INTEGER NOT NULL DEFAULT 0,
    direct_key TEXT UNIQUE,
    last_msg_seq INTEGER NOT NULL DEFAULT 0,
    last_event_seq INTEGER NOT NULL DEFAULT 0,
    last_message_at INTEGER,
    live_msg_count INTEGER NOT NULL DEFAULT 0,
    last_touch_ms INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX conversations_last_event ON conversations(last_event_seq);
CREATE TABLE participants (
    conv_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    role TEXT NOT NULL,
    joined_seq INTEGER NOT NULL,
    joined_at INTEGER NOT NULL,
    left_seq INTEGER,
    read_msg_seq INTEGER NOT NULL DEFAULT 0,
    pinned INTEGER NOT NULL DEFAULT 0,
    pinned_at INTEGER,
    muted INTEGER NOT NULL DEFAULT 0,
    cleared_seq INTEGER NOT NULL DEFAULT 0,
    private_seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conv_id, user_id)
);
CREATE INDEX participants_user ON participants(user_id);
CREATE TABLE memberships (
    user_id TEXT NOT NULL,
    conv_id TEXT NOT NULL,
    joined_seq INTEGER NOT NULL,
    left_seq INTEGER,
    PRIMARY KEY (user_id, conv_id, joined_seq)
);
CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    conv_id TEXT NOT NULL,
    msg_seq INTEGER NOT NULL,
    event_seq INTEGER NOT NULL,
    sender_id TEXT NOT NULL,
    type TEXT NOT NULL,
    content TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    parent_id TEXT,
    quoted_id TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    edited_at INTEGER,
    edited_by TEXT,
    deleted_at INTEGER,
    revoked INTEGER NOT NULL DEFAULT 0,
    tcount INTEGER NOT NULL DEFAULT 0,
    tlm INTEGER,
    version INTEGER NOT NULL,
    UNIQUE (conv_id, msg_seq)
);
CREATE INDEX messages_updated ON messages(conv_id, updated_at);
CREATE INDEX messages_parent ON messages(parent_id, msg_seq) WHERE parent_id IS NOT NULL;
CREATE INDEX messages_event_seq ON messages(event_seq);
CREATE TABLE idempotency (
    sender_id TEXT NOT NULL,
    conv_id TEXT NOT NULL,
    key TEXT NOT NULL,
    message_id TEXT NOT NULL,
    payload_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (sender_id, conv_id, key)
);
CREATE TABLE reactions (
    message_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    emoji TEXT NOT NULL,
    conv_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    removed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (message_id, user_id, emoji)
);
CREATE INDEX reactions_conv_seq ON reactions(conv_id, seq);
CREATE TABLE deliveries (
    message_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (message_id, user_id)
);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY,
    stream TEXT NOT NULL,
    type TEXT NOT NULL,
    conv_id TEXT,
    data TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX events_stream ON events(stream, seq);
"#,
    // Live fan-out asks who was in a conversation at a given seq.
    "CREATE INDEX memberships_conv ON memberships(conv_id, joined_seq);",
    // TangSengDaoDao face: messages a user deleted for themselves, per-user conversation state
    // (extras, deleted-at seq), and the orders extra sync and client_msg_no lookups read in.
    r#"
CREATE TABLE hidden_messages (
    user_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    conv_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (user_id, message_id)
);
CREATE INDEX hidden_messages_conv ON hidden_messages(user_id, conv_id, seq);
CREATE TABLE conversation_extras (
    user_id TEXT NOT NULL,
    conv_id TEXT NOT NULL,
    browse_to INTEGER NOT NULL DEFAULT 0,
    keep_message_seq INTEGER NOT NULL DEFAULT 0,
    keep_offset_y INTEGER NOT NULL DEFAULT 0,
    draft TEXT NOT NULL DEFAULT '',
    version INTEGER NOT NULL DEFAULT 0,
    deleted_msg_seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, conv_id)
);
CREATE INDEX conversation_extras_version ON conversation_extras(user_id, version);
CREATE INDEX messages_conv_version ON messages(conv_id, version);
CREATE INDEX idempotency_conv_key ON idempotency(conv_id, key);
"#,
    // Rocket.Chat face: the trash (deleted messages by deletion time), thread changes by time,
    // and groups by name.
    r#"
CREATE INDEX messages_trash ON messages(conv_id, updated_at) WHERE deleted_at IS NOT NULL;
CREATE INDEX messages_parent_updated ON messages(parent_id, updated_at) WHERE parent_id IS NOT NULL;
CREATE INDEX conversations_title ON conversations(title) WHERE kind = 'group';
"#,
    // Sends touch one index fewer: the face's lookup by event seq goes through the event.
    "DROP INDEX messages_event_seq;",
    // The TangSengDaoDao face reads by version only messages that carry extras (edited, deleted,
    // revoked), and a new message carries none: sends no longer touch this index.
    r#"
DROP INDEX messages_conv_version;
CREATE INDEX messages_extras_version ON messages(conv_id, version)
    WHERE (edited_at IS NOT NULL OR deleted_at IS NOT NULL OR revoked = 1);
"#,
    // The Rocket.Chat change feed reads never-changed messages by seq, so a send no longer
    // touches an index by time; only changed messages are indexed by `updated_at`.
    r#"
DROP INDEX messages_updated;
CREATE INDEX messages_changed ON messages(conv_id, updated_at) WHERE updated_at > created_at;
"#,
    // A refreshed token stops authenticating at once, but may be swapped again until
    // `refresh_until`, so a client that lost the refresh's answer can retry.
    "ALTER TABLE tokens ADD COLUMN refresh_until INTEGER;",
    // Archive is each member's own state, like pin and mute: the flag moves from the conversation
    // to its participants. A conversation archived before keeps looking archived to everyone who
    // was in it, and nobody is refused a send any more. `conversations.archived` stays, unread.
    r#"
ALTER TABLE participants ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
UPDATE participants SET archived = 1
    WHERE conv_id IN (SELECT id FROM conversations WHERE archived = 1);
UPDATE conversations SET archived = 0 WHERE archived = 1;
"#,
    // Contacts: friend requests, friendships (one row per side, each with its own remark) and
    // blocks, which refuse direct conversations between the two users.
    r#"
CREATE TABLE contact_requests (
    id TEXT PRIMARY KEY,
    from_user TEXT NOT NULL,
    to_user TEXT NOT NULL,
    reason TEXT,
    source TEXT,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX contact_requests_to ON contact_requests(to_user, status);
CREATE INDEX contact_requests_from ON contact_requests(from_user, status);
CREATE TABLE friends (
    user_id TEXT NOT NULL,
    friend_id TEXT NOT NULL,
    remark TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, friend_id)
);
CREATE TABLE blocks (
    user_id TEXT NOT NULL,
    blocked_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, blocked_id)
);
CREATE INDEX blocks_blocked ON blocks(blocked_id);
"#,
    // Files: one row per upload (its bytes live in the file store, not here), and the messages
    // that carry it, whose conversations decide who may download it.
    r#"
CREATE TABLE files (
    id TEXT PRIMARY KEY,
    owner_id TEXT NOT NULL,
    name TEXT NOT NULL,
    mime TEXT NOT NULL,
    declared_size INTEGER NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    inline_ok INTEGER NOT NULL DEFAULT 0,
    multipart INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX files_owner ON files(owner_id, state);
CREATE INDEX files_state ON files(state, updated_at);
CREATE TABLE file_links (
    file_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    conv_id TEXT NOT NULL,
    event_seq INTEGER NOT NULL,
    PRIMARY KEY (file_id, message_id)
);
CREATE INDEX file_links_message ON file_links(message_id);
"#,
    // Administration: an admin may manage accounts; a disabled account cannot log in and its
    // tokens stop authenticating, until it is enabled again.
    r#"
ALTER TABLE users ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN disabled_at INTEGER;
"#,
    // PostgreSQL only: the writer's check of writes that must change a row.
    MUST_CHANGE_STEP,
    // The conversations that moved are found by a coarse trace of `last_event_seq`, which
    // changes seldom, so that a send's update of its conversation row leaves the indexes alone
    // (see `conversations::MOVED_BUCKET`, whose value the backfill repeats).
    r#"
ALTER TABLE conversations ADD COLUMN moved_bucket INTEGER NOT NULL DEFAULT 0;
UPDATE conversations SET moved_bucket = last_event_seq / 1024;
DROP INDEX conversations_last_event;
CREATE INDEX conversations_moved ON conversations(moved_bucket);
"#,
    // File links are only ever looked up by file; an index by message made every file send
    // write a third B-tree.
    "DROP INDEX file_links_message;\n",
];

/// The SQLite side of the step that adds [`MUST_CHANGE_FUNCTION`] on PostgreSQL.
const MUST_CHANGE_STEP: &str = "-- imsync_must_change: nothing for SQLite\n";

/// Fails with SQLSTATE IMS01 and `what` when `changed` is 0: the PostgreSQL writer wraps a write
/// that must change a row in it, so that the failure aborts the transaction even when the write
/// travels in one round trip with its COMMIT.
const MUST_CHANGE_FUNCTION: &str = r#"
CREATE OR REPLACE FUNCTION imsync_must_change(changed BIGINT, what TEXT) RETURNS BIGINT
LANGUAGE plpgsql AS $$
BEGIN
    IF changed = 0 THEN
        RAISE EXCEPTION USING ERRCODE = 'IMS01', MESSAGE = what;
    END IF;
    RETURN changed;
END
$$;
"#;

/// The SQLite migrations in order, for the tests that build a database as an earlier release
/// left it and start the current one on it.
#[doc(hidden)]
pub fn sqlite_steps() -> &'static [&'static str] {
    SQLITE
}

/// The same schema in PostgreSQL's words: 64-bit integers, and one counter row whose lock
/// orders appends across nodes (see `pg`).
fn postgres_steps() -> Vec<String> {
    let mut steps: Vec<String> = SQLITE
        .iter()
        .map(|s| s.replace(" INTEGER", " BIGINT"))
        .collect();
    steps[0].push_str(
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);\n\
         INSERT INTO counters (name, value) VALUES ('event_seq', 0);\n",
    );
    for step in steps.iter_mut().filter(|s| *s == MUST_CHANGE_STEP) {
        *step = MUST_CHANGE_FUNCTION.to_owned();
    }
    steps
}

/// Applies the migrations the database has not seen yet. `batch` runs a multi-statement script.
pub fn migrate<C: SqlConn>(conn: &mut C, batch: impl Fn(&mut C, &str) -> Result<()>) -> Result<()> {
    let steps: Vec<String> = match conn.dialect() {
        Dialect::Sqlite => SQLITE.iter().map(|s| s.to_string()).collect(),
        Dialect::Postgres => postgres_steps(),
    };
    batch(
        conn,
        "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)",
    )?;
    let current = conn
        .query_opt("SELECT max(version) FROM schema_version", &[])?
        .and_then(|r| r.opt_i64(0))
        .unwrap_or(0) as usize;
    for (i, step) in steps.iter().enumerate().skip(current) {
        batch(conn, "BEGIN IMMEDIATE")?;
        let applied = batch(conn, step).and_then(|_| {
            conn.execute(
                "INSERT INTO schema_version (version) VALUES ($1)",
                crate::args![(i + 1) as i64],
            )
            .map(|_| ())
        });
        match applied {
            Ok(()) => batch(conn, "COMMIT")?,
            Err(e) => {
                let _ = batch(conn, "ROLLBACK");
                return Err(e);
            }
        }
    }
    Ok(())
}
