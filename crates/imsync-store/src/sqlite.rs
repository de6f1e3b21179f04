//! The embedded backend: SQLite in WAL mode. One writer connection on its own thread (see
//! `writer`), and a small pool of read-only connections used from blocking tasks. `$N` parameters
//! are rewritten to SQLite's `?N`.

use crate::sql::{Dialect, Row, SqlConn, Value};
use crate::store::{Durability, ReaderPool, StoreOptions};
use crate::writer::WriterConn;
use imsync_core::{model::Event, Error, Result};
use parking_lot::Mutex;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql};
use std::path::PathBuf;
use std::sync::Arc;

/// Idle read connections kept open.
const MAX_IDLE_READERS: usize = 8;

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
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
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
                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                        Value::Text(String::from_utf8_lossy(t).into_owned())
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
    fn take_appended(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.appended)
    }
    fn truncate_appended(&mut self, len: usize) {
        self.appended.truncate(len);
    }
    fn appended_len(&self) -> usize {
        self.appended.len()
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
        conn.conn.execute_batch("BEGIN").map_err(map_err)?;
        f(&mut conn);
        let ended = conn.conn.execute_batch("COMMIT").map_err(map_err);
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
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::unavailable(format!("cannot create {}: {e}", dir.display())))?;
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
        Error::unavailable(format!(
            "cannot open {}: {e}",
            options.sqlite_path.display()
        ))
    })?;
    let synchronous = match options.durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    // A commit writes every page it dirtied to the WAL, and a send dirties about one page per
    // index it touches: 2 KiB pages made a commit about a quarter cheaper than 4 KiB ones (see
    // README "Performance"). It applies to a new database only; an existing one keeps its size.
    // The cache keeps SQLite's default size: at every commit SQLite walks the cache's hash table
    // to drop pages past the end of the file, and with a 64 MiB cache that walk cost more than
    // the reads it saved (measured with `imsync-bench send-par`).
    conn.execute_batch(&format!(
        "PRAGMA page_size = 2048; PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; \
         PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = OFF; PRAGMA temp_store = MEMORY; \
         PRAGMA wal_autocheckpoint = 0;"
    ))
    .map_err(map_err)?;
    conn.set_prepared_statement_cache_capacity(256);
    let mut writer = Conn {
        conn,
        appended: Vec::new(),
    };
    crate::repo::schema::migrate(&mut writer, |c, sql| {
        c.conn.execute_batch(sql).map_err(map_err)
    })?;
    spawn_checkpointer(&options.sqlite_path)?;
    let readers = Readers {
        path: options.sqlite_path.clone(),
        idle: Mutex::new(Vec::new()),
    };
    Ok((Box::new(writer), Arc::new(readers)))
}

/// WAL frames past which the checkpointer makes room by force (64 MiB of 2 KiB pages).
const WAL_LIMIT_FRAMES: i64 = 32 * 1024;

/// Copies the WAL back into the database from its own thread, so that the writer never stalls
/// on a checkpoint's disk sync (the writer's automatic checkpoints are off). Stops when the
/// database file goes away with its last store.
///
/// A passive checkpoint never blocks anyone, but SQLite starts the WAL over only when a write
/// begins after everything in it was copied back; under a steady stream of writes that moment
/// never comes, and the WAL grew to gigabytes. So once it holds more than [`WAL_LIMIT_FRAMES`],
/// a restarting checkpoint holds writers back for the moment it takes to copy the rest, and the
/// next write starts the WAL over. The file keeps its size: writing over it is cheaper for the
/// file system than growing a truncated one again.
fn spawn_checkpointer(path: &std::path::Path) -> Result<()> {
    let conn = Connection::open(path).map_err(map_err)?;
    conn.execute_batch("PRAGMA busy_timeout = 5000;")
        .map_err(map_err)?;
    let path = path.to_owned();
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
            let done = checkpoint("PASSIVE").and_then(|frames| {
                if frames > WAL_LIMIT_FRAMES {
                    checkpoint("RESTART")?;
                }
                Ok(())
            });
            if let Err(e) = done {
                tracing::warn!(error = %e, "WAL checkpoint failed");
            }
        })
        .map_err(Error::internal)?;
    Ok(())
}
