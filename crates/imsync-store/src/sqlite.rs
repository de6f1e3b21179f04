//! The embedded backend: SQLite in WAL mode. One writer connection on its own thread (see
//! `writer`), and a small pool of read-only connections used from blocking tasks. `$N` parameters
//! are rewritten to SQLite's `?N`.

use crate::sql::{Dialect, Row, SqlConn, Value};
use crate::store::{Durability, ReaderPool, StoreOptions};
use crate::writer::WriterConn;
use imsync_core::{model::Event, Error, ErrorCode, Result};
use parking_lot::Mutex;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 8;

/// The writer's page cache, in KiB.
const WRITER_CACHE_KIB: i64 = 8 * 1024;

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
        })
    }
}

fn map_err(e: rusqlite::Error) -> Error {
    match &e {
        // A full disk passes like a busy database: the client may try again later.
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::DiskFull
            ) =>
        {
            Error::unavailable(e)
        }
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Error::conflict(format!("constraint violated: {e}"))
        }
        _ => Error::internal(e),
    }
}

fn rewrite(sql: &str) -> String {
    sql.replace('$', "?")
}

struct Conn {
    conn: Connection,
    appended: Vec<Event>,
    /// The writer's only: raised by the checkpointer when the WAL should start over (see
    /// [`spawn_checkpointer`]).
    restart_due: Option<Arc<AtomicBool>>,
}

impl SqlConn for Conn {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let mut stmt = self.conn.prepare_cached(&rewrite(sql)).map_err(map_err)?;
        let n = stmt
            .execute(rusqlite::params_from_iter(params.iter()))
            .map_err(map_err)?;
        Ok(n as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let mut stmt = self.conn.prepare_cached(&rewrite(sql)).map_err(map_err)?;
        let columns = stmt.column_count();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params.iter()))
            .map_err(map_err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(map_err)? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(match row.get_ref(i).map_err(map_err)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    ValueRef::Real(v) => Value::Int(v as i64),
                    // `from_utf8` checks ASCII a word at a time; the lossy path walks byte
                    // by byte, which showed as a tenth of a catch-up's CPU.
                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                        Value::Text(match std::str::from_utf8(t) {
                            Ok(text) => text.to_owned(),
                            Err(_) => String::from_utf8_lossy(t).into_owned(),
                        })
                    }
                });
            }
            out.push(Row(values));
        }
        Ok(out)
    }

    fn appended(&mut self, event: Event) {
        self.appended.push(event);
    }

    fn last_insert_id(&mut self) -> Option<i64> {
        Some(self.conn.last_insert_rowid())
    }
}

impl WriterConn for Conn {
    fn conn(&mut self) -> &mut dyn SqlConn {
        self
    }
    fn batch(&mut self, sql: &str) -> Result<()> {
        // Transaction control runs for every job: keep it prepared.
        let mut stmt = self.conn.prepare_cached(sql).map_err(map_err)?;
        stmt.execute([]).map(|_| ()).map_err(map_err)
    }
    fn in_transaction(&self) -> bool {
        !self.conn.is_autocommit()
    }
    fn rollback(&mut self) {
        // After a full disk or an I/O error SQLite may have rolled back already.
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
    fn take_appended(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.appended)
    }
    fn truncate_appended(&mut self, len: usize) {
        self.appended.truncate(len);
    }
    fn appended_len(&self) -> usize {
        self.appended.len()
    }
    fn after_batch(&mut self) {
        if !self
            .restart_due
            .as_ref()
            .is_some_and(|due| due.swap(false, Ordering::AcqRel))
        {
            return;
        }
        // With no write in between, this copies what the checkpointer left and the next write
        // starts the WAL over (unless a reader still uses it, and then a later round does).
        // PASSIVE never waits for anyone.
        if let Err(e) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        {
            tracing::warn!(error = %e, "WAL checkpoint on the writer failed");
        }
    }
}

struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Conn>>,
}

impl Readers {
    fn connect(&self) -> Result<Conn> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(map_err)?;
        conn.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA query_only = 1;")
            .map_err(map_err)?;
        conn.set_prepared_statement_cache_capacity(128);
        Ok(Conn {
            conn,
            appended: Vec::new(),
            restart_due: None,
        })
    }
}

impl ReaderPool for Readers {
    fn with_reader(&self, f: &mut dyn FnMut(&mut dyn SqlConn)) -> Result<()> {
        let pooled = self.idle.lock().pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => self.connect()?,
        };
        // Kept prepared: `execute_batch` parses the text again on every read.
        conn.batch("BEGIN")?;
        f(&mut conn);
        let ended = conn.batch("COMMIT");
        if ended.is_ok() {
            let mut idle = self.idle.lock();
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
        ended
    }
}

pub(crate) fn open(options: &StoreOptions) -> Result<(Box<dyn WriterConn>, Arc<dyn ReaderPool>)> {
    if let Some(dir) = options.sqlite_path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::new(
                    ErrorCode::Unavailable,
                    format!("cannot create {}: {e}", dir.display()),
                )
            })?;
        }
    }
    crate::wal_vfs::register().map_err(Error::unavailable)?;
    // Only the writer appends to the WAL, so only its connection needs the VFS that gathers
    // those appends.
    let conn = Connection::open_with_flags_and_vfs(
        &options.sqlite_path,
        OpenFlags::default(),
        crate::wal_vfs::NAME,
    )
    .map_err(|e| {
        // At start only: the operator reads this, so it says what failed.
        Error::new(
            ErrorCode::Unavailable,
            format!("cannot open {}: {e}", options.sqlite_path.display()),
        )
    })?;
    let synchronous = match options.durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    // A commit writes every page it dirtied to the WAL, and a send dirties about one page per
    // index it touches: 2 KiB pages made a commit about a quarter cheaper than 4 KiB ones (see
    // README "Performance"). It applies to a new database only; an existing one keeps its size.
    // The cache is 8 MiB, four times SQLite's default: with 2 MiB the writer read about one
    // page per two sends back from the OS under `imsync-bench send-par` (a system call each),
    // with 8 MiB about one per hundred, for the same instructions per send (callgrind). It is
    // kept moderate because at every commit SQLite walks the cache's hash table to drop pages
    // past the end of the file, a walk that grows with the pages cached: send-par's working set
    // fills 8 MiB, so there a 64 MiB cache walked no more, but a larger working set would.
    conn.execute_batch(&format!(
        "PRAGMA page_size = 2048; PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; \
         PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = OFF; PRAGMA temp_store = MEMORY; \
         PRAGMA wal_autocheckpoint = 0; PRAGMA cache_size = -{WRITER_CACHE_KIB};"
    ))
    .map_err(map_err)?;
    conn.set_prepared_statement_cache_capacity(256);
    let restart_due = Arc::new(AtomicBool::new(false));
    let mut writer = Conn {
        conn,
        appended: Vec::new(),
        restart_due: Some(restart_due.clone()),
    };
    crate::repo::schema::migrate(&mut writer, |c, sql| {
        c.conn.execute_batch(sql).map_err(map_err)
    })?;
    spawn_checkpointer(&options.sqlite_path, restart_due)?;
    let readers = Readers {
        path: options.sqlite_path.clone(),
        idle: Mutex::new(Vec::new()),
    };
    Ok((Box::new(writer), Arc::new(readers)))
}

/// WAL frames past which the WAL is to start over (64 MiB of 2 KiB pages).
const WAL_LIMIT_FRAMES: i64 = 32 * 1024;
/// Passive rounds the checkpointer runs back to back to shrink what the writer has left to copy.
const CATCH_UP_ROUNDS: usize = 4;
/// New frames a round may find and still leave the writer only a little to copy.
const LEFT_FOR_WRITER: i64 = 1024;

/// Copies the WAL back into the database from its own thread, so that the writer rarely waits
/// on a checkpoint's disk syncs (the writer's automatic checkpoints are off). Stops when the
/// database file goes away with its last store.
///
/// SQLite starts the WAL over when a write begins after everything in it was copied back, and
/// under a steady stream of writes that moment never comes by itself: the WAL grew to
/// gigabytes. Once the WAL passes [`WAL_LIMIT_FRAMES`], the checkpointer copies in rounds until
/// a round finds little new, then raises `restart_due`; the writer, between two batches, copies
/// the rest itself and its next write starts the WAL over. The writer so waits only for the
/// last frames and two disk syncs (35 to 75 ms per restart under `send-par` here). A restarting
/// checkpoint from this thread held it back for the whole copy, and SQLite's busy handler,
/// which sleeps in growing steps, kept it asleep well past the end (230 to 300 ms per restart).
/// That remains the fallback for a WAL that readers kept from starting over until it passed
/// twice its limit. The file keeps its size: writing over it is cheaper for the file system
/// than growing it again.
fn spawn_checkpointer(path: &std::path::Path, restart_due: Arc<AtomicBool>) -> Result<()> {
    let conn = Connection::open(path).map_err(map_err)?;
    conn.execute_batch("PRAGMA busy_timeout = 5000;")
        .map_err(map_err)?;
    let path = path.to_owned();
    // Answers the frames the WAL held when the round began.
    let checkpoint = move |mode: &str| -> rusqlite::Result<i64> {
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            r.get::<_, i64>(1)
        })
    };
    std::thread::Builder::new()
        .name("imsync-sqlite-checkpoint".into())
        .spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_millis(500));
            if !path.exists() {
                return;
            }
            let done = checkpoint("PASSIVE").and_then(|mut frames| {
                if frames <= WAL_LIMIT_FRAMES {
                    return Ok(());
                }
                if frames > 2 * WAL_LIMIT_FRAMES {
                    checkpoint("RESTART")?;
                    return Ok(());
                }
                // A round copies what the previous one found written since its start; once
                // that is little, so is what the writes during this round left for the writer.
                for _ in 0..CATCH_UP_ROUNDS {
                    let now = checkpoint("PASSIVE")?;
                    let caught_up = now - frames <= LEFT_FOR_WRITER;
                    frames = now;
                    if caught_up {
                        break;
                    }
                }
                restart_due.store(true, Ordering::Release);
                Ok(())
            });
            if let Err(e) = done {
                tracing::warn!(error = %e, "WAL checkpoint failed");
            }
        })
        .map_err(Error::internal)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The WAL header's checkpoint sequence number, bumped each time SQLite starts the WAL over.
    fn restarts(wal: &std::path::Path) -> u32 {
        let header = std::fs::read(wal).unwrap();
        u32::from_be_bytes(header[12..16].try_into().unwrap())
    }

    /// `.cargo/config.toml` sets how the bundled SQLite is built; a build that lost those
    /// settings would be slower without any other sign.
    #[test]
    fn sqlite_is_built_without_shared_page_cache_or_memory_statistics() {
        let conn = Connection::open_in_memory().unwrap();
        let mut stmt = conn.prepare("PRAGMA compile_options").unwrap();
        let options: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
        assert!(
            options
                .iter()
                .any(|o| o == "DISABLE_PAGECACHE_OVERFLOW_STATS"),
            "{options:?}"
        );
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
    }

    #[test]
    fn the_writer_finishes_a_due_restart_between_batches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (x TEXT);",
        )
        .unwrap();
        let due = Arc::new(AtomicBool::new(false));
        let mut writer = Conn {
            conn,
            appended: Vec::new(),
            restart_due: Some(due.clone()),
        };
        let write = |w: &mut Conn| {
            w.conn
                .execute("INSERT INTO t VALUES (?1)", ["x".repeat(3000)])
                .unwrap();
        };
        let wal = dir.path().join("t.db-wal");
        for _ in 0..50 {
            write(&mut writer);
        }
        let before = restarts(&wal);
        writer.after_batch();
        write(&mut writer);
        assert_eq!(restarts(&wal), before, "started over with nothing due");

        due.store(true, Ordering::Release);
        writer.after_batch();
        assert!(!due.load(Ordering::Acquire), "the request stayed raised");
        write(&mut writer);
        assert_eq!(
            restarts(&wal),
            before + 1,
            "the next write kept the old WAL"
        );
        let rows: i64 = writer
            .conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 52);
    }
}
