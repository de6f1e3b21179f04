//! The PostgreSQL backend, for several stateless nodes on one database.
//!
//! Gap-free cursor with concurrent writers on several nodes: a write transaction begins by
//! locking the one counter row (`SELECT … FOR UPDATE`), hands the seqs of its events out from the
//! value it read, writes the last one back, and commits; the row lock is held until that commit.
//! So two transactions that append never overlap: the one that locked second reads the value the
//! first committed, takes seqs above every seq the first used, and commits after it. Seqs
//! therefore become visible in the order they were handed out, every snapshot holds a prefix of
//! the log (no committed event has an uncommitted one below it), and a reader that moved its
//! cursor past seq N can never later find an N−1 appearing behind it. That holds whatever the
//! reader does with the cursor (page through several nodes, resume after a restart), which is
//! why the sync read is the same on both backends and the proof a property of the write path.
//!
//! The price is one committing writer at a time across the cluster, so the lock is held as
//! briefly as the write path allows: each node batches its jobs into one transaction (see
//! `writer`), takes the lock once per batch, and sends the batch's statements pipelined (see
//! `pg_writer`): a batch of sends is two round trips whatever its size (the lock with every
//! send's first reads, the writes with the commit); a second send to a conversation the batch
//! writes to begins the next batch.
//! The lock is the transaction's first statement, so that all transactions acquire locks in the
//! same order and two nodes cannot deadlock. A scheme that let batches of different nodes
//! overlap (seqs from a sequence, readers held below a frontier of in-flight appends) would
//! have to bound every read of the log by that frontier, on both backends; with the round trips
//! gone, one committer at a time is not what limits a node (see docs/scaling.md).
//!
//! Cross-node fan-out: the writer sends `pg_notify('imsync_events', <last seq>)` inside the batch's
//! transaction (delivered at commit); every node's listener wakes, reads the events after the last
//! seq it delivered in seq order, and feeds them to its hub. It carries the seq, not the event, so
//! a missed or merged notification costs nothing: the next one (or the periodic poll, or the
//! catch-up after a reconnect) reads from where delivery stopped.

use crate::sql::{Dialect, Row, SqlConn, Value};
use crate::store::ReaderPool;
use crate::writer::WriterConn;
use bytes::BytesMut;
use imsync_core::{model::Event, Error, ErrorCode, Result, Seq};
use parking_lot::{Condvar, Mutex};
use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{IsNull, ToSql, Type};
use postgres::{Client, NoTls, Statement};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

pub(crate) const CHANNEL: &str = "imsync_events";
/// The function that fails a write which had to change a row and changed none (see the
/// migrations), with [`MUST_CHANGE_STATE`].
pub(crate) const MUST_CHANGE: &str = "imsync_must_change";
const MUST_CHANGE_STATE: &str = "IMS01";
/// The listener's `application_name`, so operators (and tests) can tell its connection apart.
const LISTENER: &str = "imsync-listener";
const MIGRATION_LOCK: i64 = 0x016d_7379_6e63;

#[derive(Clone)]
pub struct PgOptions {
    pub url: String,
    /// A schema to keep the tables in (created if missing); the connection's default otherwise.
    pub schema: Option<String>,
    /// Read connections per node.
    pub pool_size: usize,
    pub statement_timeout: Duration,
}

impl std::fmt::Debug for PgOptions {
    /// Without the URL, whose password would otherwise reach wherever the options are printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &"<redacted>")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                _ => v.to_string().as_str().to_sql(ty, out),
            },
            Value::Text(s) => match *ty {
                Type::INT8 => s.parse::<i64>()?.to_sql(ty, out),
                _ => s.as_str().to_sql(ty, out),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

pub(crate) fn map_err(e: postgres::Error) -> Error {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        if code.code() == MUST_CHANGE_STATE {
            return Error::conflict(db.message().to_owned());
        }
        if *code == SqlState::UNIQUE_VIOLATION {
            return Error::conflict(format!("constraint violated: {}", db.message()));
        }
        // PostgreSQL's text cannot hold a NUL character, which any client may send (in JSON as
        // `\u0000`, in a URL as `%00`): the request is at fault, not the server.
        if *code == SqlState::CHARACTER_NOT_IN_REPERTOIRE {
            return Error::invalid("Text must not contain NUL characters");
        }
        if *code == SqlState::QUERY_CANCELED
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
        {
            return Error::unavailable(e);
        }
        // The client's own text for a server error is only "db error": the log needs the cause.
        return Error::internal(format!("{} ({})", db.message(), code.code()));
    }
    // No server answer: the connection is gone or never came.
    Error::unavailable(e)
}

struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
    appended: Vec<Event>,
}

fn connect(o: &PgOptions) -> Result<Conn> {
    connect_as(o, "imsync")
}

/// The connection settings of `o`, the connection named after `application` (and the schema,
/// so that one deployment's connections can be told apart).
pub(crate) fn config(o: &PgOptions, application: &str) -> Result<tokio_postgres::Config> {
    let mut config: tokio_postgres::Config = o
        .url
        .parse()
        .map_err(|e| Error::new(ErrorCode::Unavailable, format!("bad database URL: {e}")))?;
    config.connect_timeout(Duration::from_secs(5));
    let name = match &o.schema {
        Some(schema) => format!("{application}:{schema}"),
        None => application.to_owned(),
    };
    config.application_name(&name);
    Ok(config)
}

pub(crate) fn connect_error(e: postgres::Error) -> Error {
    // The driver's message is generic; the reason (refused, unknown host, auth) is its source.
    let reason = std::error::Error::source(&e)
        .map(|s| format!(": {s}"))
        .unwrap_or_default();
    Error::new(
        ErrorCode::Unavailable,
        format!("cannot connect to PostgreSQL: {e}{reason}"),
    )
}

/// What every connection runs first: its timeouts, and the schema it works in.
pub(crate) fn setup_sql(o: &PgOptions) -> String {
    let mut setup = format!(
        "SET statement_timeout = {}; SET lock_timeout = {}; SET client_min_messages = warning;",
        o.statement_timeout.as_millis(),
        o.statement_timeout.as_millis()
    );
    if let Some(schema) = &o.schema {
        setup.push_str(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path TO {schema};"
        ));
    }
    setup
}

fn connect_as(o: &PgOptions, application: &str) -> Result<Conn> {
    let config = postgres::Config::from(config(o, application)?);
    let mut client = config.connect(NoTls).map_err(connect_error)?;
    client.batch_execute(&setup_sql(o)).map_err(map_err)?;
    Ok(Conn {
        client,
        statements: HashMap::new(),
        appended: Vec::new(),
    })
}

impl Conn {
    fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).map_err(map_err)?;
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }
}

pub(crate) fn to_row(r: &postgres::Row) -> Result<Row> {
    let mut values = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let v = match *col.type_() {
            Type::INT8 => r.get::<_, Option<i64>>(i).map(Value::Int),
            Type::INT4 => r.get::<_, Option<i32>>(i).map(|v| Value::Int(v as i64)),
            Type::INT2 => r.get::<_, Option<i16>>(i).map(|v| Value::Int(v as i64)),
            Type::BOOL => r.get::<_, Option<bool>>(i).map(|v| Value::Int(v as i64)),
            Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => {
                r.get::<_, Option<String>>(i).map(Value::Text)
            }
            ref other => {
                return Err(Error::internal(format!(
                    "column {} has unsupported type {other}",
                    col.name()
                )))
            }
        };
        values.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(values))
}

impl SqlConn for Conn {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        let stmt = self.statement(sql)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as _).collect();
        self.client.execute(&stmt, &refs).map_err(map_err)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let stmt = self.statement(sql)?;
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|v| v as _).collect();
        let rows = self.client.query(&stmt, &refs).map_err(map_err)?;
        rows.iter().map(to_row).collect()
    }

    fn appended(&mut self, event: Event) {
        self.appended.push(event);
    }
}

struct Readers {
    options: PgOptions,
    state: Mutex<(Vec<Conn>, usize)>,
    freed: Condvar,
}

impl Drop for Readers {
    fn drop(&mut self) {
        // Closing a synchronous client blocks on its own runtime, which must not happen on an
        // async worker thread (where the last store handle is usually dropped).
        let idle = std::mem::take(&mut self.state.get_mut().0);
        if !idle.is_empty() {
            let _ = std::thread::Builder::new()
                .name("imsync-pg-close".into())
                .spawn(move || drop(idle));
        }
    }
}

impl ReaderPool for Readers {
    fn with_reader(&self, f: &mut dyn FnMut(&mut dyn SqlConn)) -> Result<()> {
        let mut conn = {
            let mut st = self.state.lock();
            loop {
                if let Some(c) = st.0.pop() {
                    break c;
                }
                if st.1 < self.options.pool_size {
                    st.1 += 1;
                    drop(st);
                    match connect(&self.options) {
                        Ok(c) => break c,
                        Err(e) => {
                            self.state.lock().1 -= 1;
                            self.freed.notify_one();
                            return Err(e);
                        }
                    }
                }
                self.freed.wait(&mut st);
            }
        };
        let result = conn
            .client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .map_err(map_err)
            .map(|_| f(&mut conn))
            .and_then(|_| conn.client.batch_execute("COMMIT").map_err(map_err));
        let mut st = self.state.lock();
        if result.is_ok() && !conn.client.is_closed() {
            st.0.push(conn);
        } else {
            // A failed read may have left the connection aborted or dead: start afresh next time.
            st.1 -= 1;
        }
        drop(st);
        self.freed.notify_one();
        result
    }
}

pub(crate) fn open(options: &PgOptions) -> Result<(Box<dyn WriterConn>, Arc<dyn ReaderPool>)> {
    if let Some(s) = &options.schema {
        let ok = !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(Error::new(
                ErrorCode::Unavailable,
                "the schema name may only hold a-z, 0-9 and _",
            ));
        }
    }
    let mut conn = connect(options)?;
    conn.client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .map_err(map_err)?;
    let migrated = crate::repo::schema::migrate(&mut conn, |c, sql| {
        let sql = if sql == "BEGIN IMMEDIATE" {
            "BEGIN"
        } else {
            sql
        };
        c.client.batch_execute(sql).map_err(map_err)
    });
    let _ = conn
        .client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    migrated?;
    // Closed here, off the async threads; the writer opens its own connection when it first
    // writes.
    drop(conn);
    let writer = crate::pg_writer::Writer::new(options.clone());
    let readers = Readers {
        options: options.clone(),
        state: Mutex::new((Vec::new(), 0)),
        freed: Condvar::new(),
    };
    Ok((Box::new(writer), Arc::new(readers)))
}

/// Feeds `events` with every committed event, in seq order, from any node.
pub(crate) fn spawn_listener(
    options: PgOptions,
    events: broadcast::Sender<Arc<Vec<Event>>>,
) -> Result<()> {
    let mut conn = connect_as(&options, LISTENER)?;
    let mut delivered = crate::repo::events::head(&mut conn)?;
    std::thread::Builder::new()
        .name("imsync-pg-listener".into())
        .spawn(move || {
            let mut conn = Some(conn);
            loop {
                let c = match conn.as_mut() {
                    Some(c) if !c.client.is_closed() => c,
                    _ => match connect_as(&options, LISTENER) {
                        Ok(c) => conn.insert(c),
                        Err(e) => {
                            tracing::warn!(error = %e.message, "listener cannot reach the database");
                            std::thread::sleep(Duration::from_secs(1));
                            continue;
                        }
                    },
                };
                match listen_once(c, &mut delivered, &events) {
                    Ok(()) => {}
                    Err(e) => {
                        tracing::warn!(error = %e.message, "listener lost its connection; catching up after reconnect");
                        conn = None;
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
        })
        .map_err(Error::internal)?;
    Ok(())
}

/// LISTENs (again), catches up from `delivered`, then waits for notifications; returns on error.
fn listen_once(
    c: &mut Conn,
    delivered: &mut Seq,
    events: &broadcast::Sender<Arc<Vec<Event>>>,
) -> Result<()> {
    c.client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .map_err(map_err)?;
    loop {
        catch_up(c, delivered, events)?;
        // Poll now and then as well: a notification only speeds delivery up; it is never needed.
        let woke = c
            .client
            .notifications()
            .timeout_iter(Duration::from_secs(2))
            .next()
            .map_err(map_err)?;
        if woke.is_some() {
            let mut pending = c.client.notifications();
            let mut it = pending.iter();
            while it.next().map_err(map_err)?.is_some() {}
        }
        if c.client.is_closed() {
            return Err(Error::unavailable("listener connection closed"));
        }
    }
}

fn catch_up(
    c: &mut Conn,
    delivered: &mut Seq,
    events: &broadcast::Sender<Arc<Vec<Event>>>,
) -> Result<()> {
    loop {
        let batch = crate::repo::events::read_after(c, *delivered, 1000)?;
        let Some(last) = batch.last().map(|e| e.seq) else {
            return Ok(());
        };
        *delivered = last;
        let full = batch.len() == 1000;
        let _ = events.send(Arc::new(batch));
        if !full {
            return Ok(());
        }
    }
}
