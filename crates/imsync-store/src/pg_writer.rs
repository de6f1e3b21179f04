//! The PostgreSQL writer's connection: statements pipelined on one connection, so that a batch of
//! sends costs about one round trip per send instead of one per statement.
//!
//! A write whose outcome a job does not read ([`SqlConn::execute_later`]: the event, the message,
//! the conversation's counters) is queued and sent together with the job's next statement, or
//! the next job's first one, or the commit; the server runs them in order, so every statement
//! still sees what the ones before it wrote. A queued write that fails fails whatever statement
//! it travelled with, and PostgreSQL refuses everything after it in the transaction, so the
//! failure cannot go unnoticed: `writer` flushes the queue before it keeps a job (a savepoint's
//! release, or the end of a batch that runs without savepoints) and treats a failed flush as the
//! failure of that job, or of the batch, which it then runs again the careful way.
//!
//! The transaction takes the counter row's lock as it begins (sent with its first statement),
//! reads the counter once and hands the batch's seqs out itself ([`SqlConn::next_seq`]); the
//! commit writes the last one back in the same round trip as the batch's last writes,
//! `pg_notify` and `COMMIT`. A lone send is thus two round trips. Why the lock keeps the cursor
//! gap-free is said in `pg`.
//!
//! A batch of sends also fetches their first reads (the conversation and the sender's place in
//! it, an idempotency key, the sender's file; see [`FirstRead`]) in the round trip that takes the
//! lock, after it: a send then reads nothing from the server in its turn. So does a lone send
//! that reads more than its conversation first, which in turn would cost a round trip a read.
//! A batch holds one wave, one send per conversation (see `writer`): a later wave's reads would
//! have to follow the writes before it, a round trip more, so its sends begin the next batch.
//! The writes go with the COMMIT, and a batch of sends costs two round trips whatever its size.
//! The reads run after the lock is granted, so they see every transaction of every node that
//! committed before this one can write.
//!
//! A write that must change a row is checked by the server ([`crate::pg::MUST_CHANGE`]): sent
//! with the COMMIT, a check on this side would come too late to stop it.

use crate::pg::{map_err, to_row, PgOptions, CHANNEL, MUST_CHANGE};
use crate::pg_bulk::{checked_form, for_each_row_form, multi_row_form, Columns};
use crate::sql::{Dialect, Row, SqlConn, Value};
use crate::writer::{FirstRead, WriterConn};
use imsync_core::{model::Event, Error, ErrorCode, Result, Seq};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};

const LOCK_COUNTER: &str = "SELECT value FROM counters WHERE name = 'event_seq' FOR UPDATE";
const SAVE_COUNTER: &str = "UPDATE counters SET value = $1 WHERE name = 'event_seq'";
const NOTIFY: &str = "SELECT pg_notify($1, $2)";

/// One statement of a pipeline.
enum Request {
    /// A prepared write; one a job queued ([`SqlConn::execute_later`]) says which.
    Execute(Statement, Vec<Value>, Option<Later>),
    /// The rows of several writes of one multi-row form; with the reason a checked form fails
    /// with (see `pg_bulk::checked_form`).
    Rows(Statement, Columns, Option<Value>),
    Query(Statement, Vec<Value>),
    /// Transaction control, in the simple protocol.
    Simple(&'static str),
    /// Locks the counter row and reads it: the base of the transaction's seqs.
    Lock(Statement),
    /// A job's first read fetched ahead: the batch's job and the read's place among its reads.
    Ahead(Statement, Vec<Value>, usize, usize),
    /// One first read of several jobs fetched ahead in one statement (see `pg_bulk`): for each
    /// row of parameters, the job and the read's place among its reads.
    AheadMany(Statement, Columns, Vec<(usize, usize)>),
}

enum Response {
    Changed(u64),
    Rows(Vec<tokio_postgres::Row>),
    Done,
}

/// A write a job queued: the job (its place in the batch) and the write statement's index in
/// `Conn::forms`.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Later {
    job: usize,
    form: usize,
}

/// A write statement and its multi-row form (see `pg_bulk`), if it has one, with that form's
/// statement once prepared, and whether it is checked (the last parameter of a row is then the
/// reason it fails with, given once).
struct Form {
    multi: Option<String>,
    statement: Option<Statement>,
    checked: bool,
}

struct Conn {
    /// Drives the connection while the writer thread waits on it; it runs nowhere else.
    rt: tokio::runtime::Runtime,
    client: Client,
    statements: HashMap<String, Statement>,
    queued: Vec<Request>,
    /// The counter's value when the open transaction locked it; `None` outside a transaction.
    seq_base: Option<Seq>,
    appended: Vec<Event>,
    /// The first reads of the open transaction's jobs, by job, with their rows once fetched.
    ahead: Vec<Vec<(FirstRead, Option<Vec<Row>>)>>,
    /// The reads fetched ahead for the running job; they answer its reads until it writes.
    offered: Vec<(FirstRead, Vec<Row>)>,
    /// Whether the queued writes of the same multi-row form go as one statement (see `pg_bulk`):
    /// only in a batch of sends run in waves.
    merging: bool,
    /// The index in `forms` of each write statement a job queued, by its SQL.
    form_of: HashMap<String, usize>,
    forms: Vec<Form>,
    /// The batch's running job, while merging.
    job: Option<usize>,
}

fn connect(o: &PgOptions) -> Result<Conn> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::internal)?;
    let config = crate::pg::config(o, "imsync")?;
    let (client, connection) = rt
        .block_on(config.connect(NoTls))
        .map_err(crate::pg::connect_error)?;
    rt.spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "the writer's connection ended");
        }
    });
    // A transaction left open by a node that stopped (a frozen process, a paused machine) would
    // hold the counter lock, and with it every other node's writes, for as long as its TCP
    // connection lives: the server ends it once it has idled as long as a statement may run.
    let setup = format!(
        "{} SET idle_in_transaction_session_timeout = {};",
        crate::pg::setup_sql(o),
        o.statement_timeout.as_millis()
    );
    rt.block_on(client.batch_execute(&setup)).map_err(map_err)?;
    Ok(Conn {
        rt,
        client,
        statements: HashMap::new(),
        queued: Vec::new(),
        seq_base: None,
        appended: Vec::new(),
        ahead: Vec::new(),
        offered: Vec::new(),
        merging: false,
        form_of: HashMap::new(),
        forms: Vec::new(),
        job: None,
    })
}

/// Polls every future once in the order given before any is polled again: each sends its
/// request on its first poll, so the requests leave in that order, back to back.
async fn in_order<'a>(
    mut futures: Vec<Pin<Box<dyn Future<Output = Result<Response>> + 'a>>>,
) -> Vec<Result<Response>> {
    let mut out: Vec<Option<Result<Response>>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(r) => *slot = Some(r),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter()
        .map(|r| r.expect("every future ran"))
        .collect()
}

impl Conn {
    fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self
            .rt
            .block_on(self.client.prepare(sql))
            .map_err(map_err)?;
        self.statements.insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    /// The index in `forms` of the write `sql`, prepared as `s`; or, if `checked` names the
    /// write it is wrapped in (whose statement `s` is), of that one.
    fn form(&mut self, sql: &str, s: &Statement, checked: Option<&str>) -> usize {
        let key = checked.unwrap_or(sql);
        if let Some(form) = self.form_of.get(key) {
            return *form;
        }
        let multi = match checked {
            None => multi_row_form(sql, s.params()),
            Some(_) => {
                let types = s.params();
                checked_form(sql, &types[..types.len().saturating_sub(1)], MUST_CHANGE)
            }
        };
        self.forms.push(Form {
            multi,
            statement: None,
            checked: checked.is_some(),
        });
        self.form_of.insert(key.to_owned(), self.forms.len() - 1);
        self.forms.len() - 1
    }

    /// `requests` with the writes of consecutive jobs that queued the same statements in the
    /// same order taken a statement at a time: the rows of a statement with a multi-row form go
    /// as one, the others one per job in the jobs' order. So each job's writes keep their order;
    /// only writes of different jobs of one wave pass each other, and those touch different
    /// rows (see `writer::into_waves`).
    fn merged(&mut self, requests: Vec<Request>) -> Result<Vec<Request>> {
        // Each job's writes, and the requests of no job, in the order queued.
        let mut runs: Vec<(Option<Later>, Vec<Request>)> = Vec::new();
        for r in requests {
            let later = match &r {
                Request::Execute(_, _, later) => *later,
                _ => None,
            };
            match (later, runs.last_mut()) {
                (Some(l), Some((Some(last), run))) if last.job == l.job => run.push(r),
                _ => runs.push((later, vec![r])),
            }
        }
        let shape = |run: &(Option<Later>, Vec<Request>)| -> Option<Vec<usize>> {
            run.0?;
            run.1
                .iter()
                .map(|r| match r {
                    Request::Execute(_, _, Some(l)) => Some(l.form),
                    _ => None,
                })
                .collect()
        };
        let mut out: Vec<Request> = Vec::new();
        let mut rows = 0;
        let mut runs = runs.into_iter().peekable();
        while let Some(first) = runs.next() {
            let Some(forms) = shape(&first) else {
                out.extend(first.1);
                continue;
            };
            let mut jobs = vec![first.1.into_iter()];
            while let Some(next) = runs.next_if(|r| shape(r).as_ref() == Some(&forms)) {
                jobs.push(next.1.into_iter());
            }
            for form in forms {
                let column: Vec<Request> = jobs.iter_mut().filter_map(Iterator::next).collect();
                if jobs.len() < 2 || self.forms[form].multi.is_none() {
                    out.extend(column);
                    continue;
                }
                rows += column.len();
                out.push(self.rows_of(form, column)?);
            }
        }
        metrics::counter!("imsync_pg_writer_merged_rows_total").increment(rows as u64);
        Ok(out)
    }

    /// One statement of the multi-row form `form` for the writes `column`.
    fn rows_of(&mut self, form: usize, column: Vec<Request>) -> Result<Request> {
        let mut columns: Option<Columns> = None;
        let mut check = None;
        for r in column {
            let Request::Execute(_, mut params, _) = r else {
                return Err(Error::internal("only writes go as rows"));
            };
            if self.forms[form].checked {
                check = params.pop();
            }
            match columns.as_mut() {
                None => columns = Some(Columns::new(params)),
                Some(c) => {
                    if !c.push(params) {
                        return Err(Error::internal("rows of one statement differ in length"));
                    }
                }
            }
        }
        let columns = columns.ok_or_else(|| Error::internal("a statement of no rows"))?;
        let statement = match &self.forms[form].statement {
            Some(s) => s.clone(),
            None => {
                let sql = self.forms[form].multi.clone().unwrap_or_default();
                let s = self
                    .rt
                    .block_on(self.client.prepare(&sql))
                    .map_err(map_err)?;
                self.forms[form].statement = Some(s.clone());
                s
            }
        };
        Ok(Request::Rows(statement, columns, check))
    }

    /// Sends the queued statements and then `tail`, in one round trip; answers the first
    /// failure, else `tail`'s response.
    fn pipeline(&mut self, tail: Vec<Request>) -> Result<Response> {
        let queued = std::mem::take(&mut self.queued);
        let mut requests = if self.merging {
            self.merged(queued)?
        } else {
            queued
        };
        requests.extend(tail);
        let client = &self.client;
        let futures = requests
            .iter()
            .map(
                |r| -> Pin<Box<dyn Future<Output = Result<Response>> + '_>> {
                    Box::pin(async move {
                        match r {
                            Request::Execute(s, params, _) => {
                                let refs: Vec<&(dyn ToSql + Sync)> =
                                    params.iter().map(|v| v as _).collect();
                                let changed = client.execute(s, &refs).await.map_err(map_err)?;
                                Ok(Response::Changed(changed))
                            }
                            Request::Rows(s, columns, check) => {
                                let count = Value::Int(columns.rows() as i64);
                                let mut refs: Vec<&(dyn ToSql + Sync)> =
                                    columns.0.iter().map(|c| c as _).collect();
                                if let Some(reason) = check {
                                    refs.push(&count);
                                    refs.push(reason);
                                }
                                let changed = client.execute(s, &refs).await.map_err(map_err)?;
                                Ok(Response::Changed(changed))
                            }
                            Request::Query(s, params) => {
                                let refs: Vec<&(dyn ToSql + Sync)> =
                                    params.iter().map(|v| v as _).collect();
                                let rows = client.query(s, &refs).await.map_err(map_err)?;
                                Ok(Response::Rows(rows))
                            }
                            Request::Simple(sql) => {
                                client.batch_execute(sql).await.map_err(map_err)?;
                                Ok(Response::Done)
                            }
                            Request::Lock(s) => {
                                let rows = client.query(s, &[]).await.map_err(map_err)?;
                                Ok(Response::Rows(rows))
                            }
                            Request::AheadMany(s, columns, _) => {
                                let refs: Vec<&(dyn ToSql + Sync)> =
                                    columns.0.iter().map(|c| c as _).collect();
                                let rows = client.query(s, &refs).await.map_err(map_err)?;
                                Ok(Response::Rows(rows))
                            }
                            Request::Ahead(s, params, _, _) => {
                                let refs: Vec<&(dyn ToSql + Sync)> =
                                    params.iter().map(|v| v as _).collect();
                                let rows = client.query(s, &refs).await.map_err(map_err)?;
                                Ok(Response::Rows(rows))
                            }
                        }
                    })
                },
            )
            .collect();
        let responses = self.rt.block_on(in_order(futures));
        metrics::counter!("imsync_pg_writer_round_trips_total").increment(1);
        let mut last = Ok(Response::Done);
        for (request, r) in requests.iter().zip(responses) {
            if let (Request::Lock(_), Ok(Response::Rows(rows))) = (request, &r) {
                match rows.first().map(to_row).transpose()? {
                    Some(row) => self.seq_base = Some(row.i64(0)),
                    None => return Err(Error::internal("the event counter is missing")),
                }
            }
            if let (Request::Ahead(_, _, job, read), Ok(Response::Rows(rows))) = (request, &r) {
                let rows = rows.iter().map(to_row).collect::<Result<Vec<_>>>()?;
                if let Some(slot) = self.ahead.get_mut(*job).and_then(|j| j.get_mut(*read)) {
                    slot.1 = Some(rows);
                }
            }
            if let (Request::AheadMany(_, _, places), Ok(Response::Rows(rows))) = (request, &r) {
                self.spread(places, rows)?;
            }
            match (r, &last) {
                // The first failure is the cause; the later ones only say the transaction had
                // already failed.
                (_, Err(_)) => {}
                (r, Ok(_)) => last = r,
            }
        }
        last
    }

    /// Queues `reads`, the first reads of the jobs that follow those already given theirs; while
    /// merging, a read that several jobs make goes as one statement.
    fn queue_ahead(&mut self, reads: Vec<Vec<FirstRead>>) -> Result<()> {
        let mut by_sql: Vec<(&'static str, Vec<(usize, usize)>)> = Vec::new();
        for reads in reads {
            let job = self.ahead.len();
            let mut slots = Vec::with_capacity(reads.len());
            for (index, read) in reads.into_iter().enumerate() {
                match by_sql.iter_mut().find(|(sql, _)| *sql == read.sql) {
                    Some((_, places)) => places.push((job, index)),
                    None => by_sql.push((read.sql, vec![(job, index)])),
                }
                slots.push((read, None));
            }
            self.ahead.push(slots);
        }
        for (sql, places) in by_sql {
            let s = self.statement(sql)?;
            let many = match places.len() > 1 && self.merging {
                true => self.for_each_row_statement(sql, &s)?,
                false => None,
            };
            let params = |ahead: &[Vec<(FirstRead, _)>], (job, read): (usize, usize)| {
                ahead[job][read].0.params.clone()
            };
            match many {
                Some(many) => {
                    let mut columns = Columns::new(params(&self.ahead, places[0]));
                    for &place in &places[1..] {
                        if !columns.push(params(&self.ahead, place)) {
                            return Err(Error::internal("reads of one statement differ"));
                        }
                    }
                    self.queued.push(Request::AheadMany(many, columns, places));
                }
                None => {
                    for (job, read) in places {
                        let p = params(&self.ahead, (job, read));
                        self.queued.push(Request::Ahead(s.clone(), p, job, read));
                    }
                }
            }
        }
        Ok(())
    }

    /// The statement that runs the read `sql` (prepared as `s`) for many rows of parameters.
    fn for_each_row_statement(&mut self, sql: &str, s: &Statement) -> Result<Option<Statement>> {
        let key = format!("for each row: {sql}");
        if let Some(many) = self.statements.get(&key) {
            return Ok(Some(many.clone()));
        }
        let Some(many_sql) = for_each_row_form(sql, s.params()) else {
            return Ok(None);
        };
        let many = self
            .rt
            .block_on(self.client.prepare(&many_sql))
            .map_err(map_err)?;
        self.statements.insert(key, many.clone());
        Ok(Some(many))
    }

    /// Hands the rows of a read made for several jobs to each: every row begins with the number
    /// of the row of parameters it answers.
    fn spread(&mut self, places: &[(usize, usize)], rows: &[tokio_postgres::Row]) -> Result<()> {
        let mut answers: Vec<Vec<Row>> = places.iter().map(|_| Vec::new()).collect();
        let lost = || Error::internal("a read for several jobs lost its row numbers");
        for r in rows {
            let mut row = to_row(r)?;
            let n = match (!row.0.is_empty()).then(|| row.0.remove(0)) {
                Some(Value::Int(n)) if n >= 1 && (n as usize) <= places.len() => n as usize,
                _ => return Err(lost()),
            };
            // Rows of one job's read could come back in another order than alone: only reads
            // of one row per job are merged (a job's head, its key); any other is run alone.
            if !answers[n - 1].is_empty() {
                return Err(Error::internal("a merged read gave one job several rows"));
            }
            answers[n - 1].push(row);
        }
        for (&(job, read), rows) in places.iter().zip(answers) {
            if let Some(slot) = self.ahead.get_mut(job).and_then(|j| j.get_mut(read)) {
                slot.1 = Some(rows);
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.queued.is_empty() {
            return Ok(());
        }
        self.pipeline(Vec::new()).map(|_| ())
    }

    /// The rows fetched ahead for this read of the running job, if it has written nothing yet;
    /// each answers once, so a read made again (after the job's own writes) goes to the server.
    fn take_offered(&mut self, sql: &str, params: &[Value]) -> Option<Vec<Row>> {
        let at = self
            .offered
            .iter()
            .position(|(r, _)| r.sql == sql && r.params == params)?;
        Some(self.offered.swap_remove(at).1)
    }
}

impl SqlConn for Conn {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64> {
        self.offered.clear();
        let s = self.statement(sql)?;
        match self.pipeline(vec![Request::Execute(s, params.to_vec(), None)])? {
            Response::Changed(n) => Ok(n),
            _ => Err(Error::internal("a write answered no row count")),
        }
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        if let Some(rows) = self.take_offered(sql, params) {
            return Ok(rows);
        }
        // A read the job makes in its turn may follow its writes; nothing fetched ahead is
        // trusted after it.
        self.offered.clear();
        let s = self.statement(sql)?;
        match self.pipeline(vec![Request::Query(s, params.to_vec())])? {
            Response::Rows(rows) => rows.iter().map(to_row).collect(),
            _ => Err(Error::internal("a query answered no rows")),
        }
    }

    fn execute_later(
        &mut self,
        sql: &str,
        params: &[Value],
        must_change: Option<&'static str>,
    ) -> Result<()> {
        self.offered.clear();
        let Some(what) = must_change else {
            let s = self.statement(sql)?;
            let later = self.job.map(|job| Later {
                job,
                form: self.form(sql, &s, None),
            });
            self.queued
                .push(Request::Execute(s, params.to_vec(), later));
            return Ok(());
        };
        // Checked by the server, so that a write that changed nothing aborts the transaction:
        // it may travel with the COMMIT, which must then not commit the rest.
        let checked = format!(
            "WITH changed AS ({sql} RETURNING 1) SELECT {MUST_CHANGE}(count(*), ${}) FROM changed",
            params.len() + 1
        );
        let s = self.statement(&checked)?;
        let later = self.job.map(|job| Later {
            job,
            form: self.form(sql, &s, Some(&checked)),
        });
        let mut params = params.to_vec();
        params.push(Value::from(what));
        self.queued.push(Request::Execute(s, params, later));
        Ok(())
    }

    fn next_seq(&mut self) -> Option<Seq> {
        if self.seq_base.is_none() && self.queued.iter().any(|r| matches!(r, Request::Lock(_))) {
            // Whatever fails here fails the statements that follow in the transaction too.
            let _ = self.flush();
        }
        self.seq_base
            .map(|base| base + self.appended.len() as Seq + 1)
    }

    fn appended(&mut self, event: Event) {
        self.appended.push(event);
    }
}

/// The writer's side of the backend: reconnects when the database comes back, and notifies the
/// other nodes of every commit.
pub(crate) struct Writer {
    options: PgOptions,
    conn: Option<Conn>,
    committed: Vec<Event>,
    broken: Broken,
}

impl Writer {
    pub(crate) fn new(options: PgOptions) -> Writer {
        Writer {
            options,
            conn: None,
            committed: Vec::new(),
            broken: Broken,
        }
    }

    fn connected(&mut self) -> Result<&mut Conn> {
        if self.conn.as_ref().is_none_or(|c| c.client.is_closed()) {
            self.conn = None;
            self.conn = Some(connect(&self.options)?);
        }
        Ok(self.conn.as_mut().expect("connected above"))
    }

    /// Opens the transaction and takes the counter's lock, both sent with the first statement
    /// of the batch's first job.
    fn begin(&mut self) -> Result<()> {
        let c = self.connected()?;
        c.queued.clear();
        c.appended.clear();
        c.seq_base = None;
        c.ahead.clear();
        c.offered.clear();
        c.merging = false;
        c.job = None;
        let lock = c.statement(LOCK_COUNTER)?;
        // Before any row lock: every write transaction in the cluster takes its locks in the
        // same order, so nodes cannot deadlock.
        c.queued.push(Request::Simple("BEGIN"));
        c.queued.push(Request::Lock(lock));
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        let c = self.connected()?;
        let mut tail = Vec::new();
        if let Some(last) = c.appended.last().map(|e| e.seq) {
            let save = c.statement(SAVE_COUNTER)?;
            let notify = c.statement(NOTIFY)?;
            tail.push(Request::Execute(save, vec![Value::Int(last)], None));
            tail.push(Request::Execute(
                notify,
                vec![Value::from(CHANNEL), Value::Text(last.to_string())],
                None,
            ));
        }
        tail.push(Request::Simple("COMMIT"));
        c.pipeline(tail)?;
        c.seq_base = None;
        let appended = std::mem::take(&mut c.appended);
        self.committed.extend(appended);
        Ok(())
    }
}

/// Where a job's statements go while the writer holds no usable connection.
struct Broken;

impl SqlConn for Broken {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }
    fn execute(&mut self, _: &str, _: &[Value]) -> Result<u64> {
        Err(Error::unavailable("no database connection"))
    }
    fn query(&mut self, _: &str, _: &[Value]) -> Result<Vec<Row>> {
        Err(Error::unavailable("no database connection"))
    }
    fn appended(&mut self, _: Event) {}
}

impl WriterConn for Writer {
    /// One: a send that would read after the batch's writes costs a round trip; put off to the
    /// next batch, it costs none, and waits for one batch more.
    fn waves_per_batch(&self) -> usize {
        1
    }

    /// None: a batch here lasts two round trips and a WAL flush, long enough for the sends its
    /// predecessor answered to come back on their own. Waiting for them grew batches by 6% and
    /// cost 10% of send-par (16,271 against 14,704 msgs/s with the usual wait, one run each).
    fn gather_wait(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    fn reads_cost_round_trips(&self) -> bool {
        true
    }

    fn conn(&mut self) -> &mut dyn SqlConn {
        match self.conn.as_mut() {
            Some(c) => c,
            None => &mut self.broken,
        }
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        match sql {
            "BEGIN IMMEDIATE" => self.begin(),
            "COMMIT" => self.commit(),
            // Savepoints travel with the next statement: their own failure fails that one.
            "SAVEPOINT job" | "RELEASE job" => {
                let c = self.connected()?;
                c.queued.push(Request::Simple(match sql {
                    "SAVEPOINT job" => "SAVEPOINT job",
                    _ => "RELEASE job",
                }));
                Ok(())
            }
            // Sent at once, a round trip only after a failed job: until it runs, the server
            // refuses everything, and the next job's first statement, if new to the connection,
            // is prepared before anything queued is sent.
            "ROLLBACK TO job" => {
                let c = self.connected()?;
                c.queued.push(Request::Simple("ROLLBACK TO job"));
                c.flush()
            }
            other => Err(Error::new(
                ErrorCode::Internal,
                format!("the PostgreSQL writer has no statement {other:?}"),
            )),
        }
    }

    /// Takes the lock and fetches every job's first reads in one round trip: sent after the
    /// lock, they run once it is granted, so they see all that committed before.
    fn begin_reading(&mut self, reads: Vec<Vec<FirstRead>>) -> Result<()> {
        self.begin()?;
        let c = self.connected()?;
        c.merging = !reads.iter().all(Vec::is_empty);
        c.queue_ahead(reads)?;
        c.flush()
    }

    /// Fetches a later wave's first reads, with the writes queued before them.
    fn read_ahead(&mut self, from: usize, reads: Vec<Vec<FirstRead>>) -> Result<()> {
        let c = self.connected()?;
        if reads.iter().all(Vec::is_empty) {
            // The jobs that named no reads, which run last: they may write anything.
            c.merging = false;
            return Ok(());
        }
        c.ahead.resize_with(from, Vec::new);
        c.queue_ahead(reads)?;
        c.flush()
    }

    fn job_starts(&mut self, index: usize) {
        if let Some(c) = self.conn.as_mut() {
            c.job = c.merging.then_some(index);
            c.offered = c
                .ahead
                .get_mut(index)
                .map(std::mem::take)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(read, rows)| Some((read, rows?)))
                .collect();
        }
    }

    fn flush(&mut self) -> Result<()> {
        match self.conn.as_mut() {
            Some(c) => c.flush(),
            None => Ok(()),
        }
    }

    fn rollback(&mut self) {
        // Without a connection there is no transaction to end: a new one would have none.
        if let Some(c) = self.conn.as_mut() {
            c.queued.clear();
            c.seq_base = None;
            c.ahead.clear();
            c.offered.clear();
            if !c.client.is_closed() {
                let _ = c.rt.block_on(c.client.batch_execute("ROLLBACK"));
            }
        }
    }

    fn take_appended(&mut self) -> Vec<Event> {
        if let Some(c) = self.conn.as_mut() {
            c.appended.clear();
        }
        std::mem::take(&mut self.committed)
    }

    fn truncate_appended(&mut self, len: usize) {
        if let Some(c) = self.conn.as_mut() {
            c.appended.truncate(len);
        }
    }

    fn appended_len(&self) -> usize {
        self.conn.as_ref().map_or(0, |c| c.appended.len())
    }
}
