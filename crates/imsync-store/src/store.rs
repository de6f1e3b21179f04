//! The store handle the service holds: async `read` and `write` over whichever backend was opened,
//! and a feed of appended events in commit order for live fan-out.

use crate::sql::{Dialect, SqlConn};
use crate::writer::{self, FirstRead, Inline, Job, Writer};
use imsync_core::{model::Event, Error, Result};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::{broadcast, oneshot};

/// How hard a commit is pushed to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// SQLite `synchronous=NORMAL` in WAL mode: a commit survives the process being killed; an OS
    /// crash or power loss may lose the last commits.
    Normal,
    /// SQLite `synchronous=FULL`: every commit is synced to disk before it is acknowledged.
    Full,
}

impl Durability {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "normal" => Some(Durability::Normal),
            "full" => Some(Durability::Full),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Normal => "normal",
            Durability::Full => "full",
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Path of the SQLite database file.
    pub sqlite_path: PathBuf,
    pub durability: Durability,
}

/// Hands out a read connection inside a snapshot transaction.
pub(crate) trait ReaderPool: Send + Sync {
    fn with_reader(&self, f: &mut dyn FnMut(&mut dyn SqlConn)) -> Result<()>;
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Writer,
    readers: Arc<dyn ReaderPool>,
    events: broadcast::Sender<Arc<Vec<Event>>>,
    dialect: Dialect,
    description: String,
}

impl Store {
    pub fn open(options: &StoreOptions) -> Result<Store> {
        let (events, _) = broadcast::channel(4096);
        let (writer_conn, readers) = crate::sqlite::open(options)?;
        let inline = match options.durability {
            Durability::Normal => Inline::WhenIdle,
            Durability::Full => Inline::Never,
        };
        let writer = writer::spawn(
            "imsync-sqlite-writer",
            writer_conn,
            Some(events.clone()),
            inline,
        );
        Ok(Store {
            inner: Arc::new(Inner {
                writer,
                readers,
                events,
                dialect: Dialect::Sqlite,
                description: format!(
                    "sqlite (synchronous={})",
                    match options.durability {
                        Durability::Normal => "NORMAL",
                        Durability::Full => "FULL",
                    }
                ),
            }),
        })
    }

    /// Opens PostgreSQL: migrations under an advisory lock (several nodes may start at once),
    /// one writer connection, a pool of readers, and a listener that feeds the live hub with
    /// every node's commits.
    pub async fn open_postgres(options: &crate::pg::PgOptions) -> Result<Store> {
        let (events, _) = broadcast::channel(4096);
        // The synchronous client runs its own small runtime: keep it off the async threads.
        let (o, feed) = (options.clone(), events.clone());
        let (writer_conn, readers) = tokio::task::spawn_blocking(move || {
            let opened = crate::pg::open(&o)?;
            crate::pg::spawn_listener(o, feed)?;
            Ok::<_, Error>(opened)
        })
        .await
        .map_err(Error::internal)??;
        let writer = writer::spawn("imsync-pg-writer", writer_conn, None, Inline::Never);
        Ok(Store {
            inner: Arc::new(Inner {
                writer,
                readers,
                events,
                dialect: Dialect::Postgres,
                description: "postgres".to_owned(),
            }),
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.inner.dialect
    }

    /// The backend and its durability setting, for logs and benchmark reports.
    pub fn description(&self) -> &str {
        &self.inner.description
    }

    /// Writes submitted and not yet answered (for `imsync_writer_queue_depth`).
    pub fn writer_queue_depth(&self) -> usize {
        self.inner.writer.queue_depth()
    }

    /// Runs `f` as one write transaction; `Err` from `f` rolls back everything it did.
    pub async fn write<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn SqlConn) -> Result<R> + Send + 'static,
    {
        self.submit(writer::job(f)).await
    }

    /// [`Store::write`] for a closure that may run more than once, each time from the same
    /// database state, of which only the last run counts. Batches of such writes skip the
    /// per-write savepoints. The hot writes (sends) use it.
    pub async fn write_repeatable<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnMut(&mut dyn SqlConn) -> Result<R> + Send + 'static,
    {
        self.submit(writer::repeatable_job(Vec::new(), f)).await
    }

    /// [`Store::write_repeatable`] for a closure that begins with `reads` (see [`FirstRead`]),
    /// which a batch may fetch ahead for all its writes at once.
    pub async fn write_repeatable_reading<R, F>(&self, reads: Vec<FirstRead>, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnMut(&mut dyn SqlConn) -> Result<R> + Send + 'static,
    {
        self.submit(writer::repeatable_job(reads, f)).await
    }

    async fn submit<R>(&self, (job, rx): (Job, oneshot::Receiver<Result<R>>)) -> Result<R> {
        self.inner.writer.submit(job).await?;
        rx.await
            .map_err(|_| Error::unavailable("the write could not be carried out"))?
    }

    /// Runs `f` on a read connection, inside one snapshot.
    pub async fn read<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn SqlConn) -> Result<R> + Send + 'static,
    {
        let readers = self.inner.readers.clone();
        tokio::task::spawn_blocking(move || {
            let mut f = Some(f);
            let mut out = None;
            readers.with_reader(&mut |conn| {
                if let Some(f) = f.take() {
                    out = Some(f(conn));
                }
            })?;
            out.unwrap_or_else(|| Err(Error::internal("read job did not run")))
        })
        .await
        .map_err(|e| Error::internal(format!("read task failed: {e}")))?
    }

    /// Appended events, one batch per commit, in commit order.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Vec<Event>>> {
        self.inner.events.subscribe()
    }
}
