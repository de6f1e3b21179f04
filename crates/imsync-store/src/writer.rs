//! The single writer. Every write is a job: a closure that runs its statements on the writer's
//! connection. The writer drains whatever jobs are queued, runs each inside its own savepoint in
//! one transaction, commits once, then publishes the appended events in commit order and answers
//! every job. So a reply is sent only after its data is committed (durability), a failing job
//! rolls back alone (atomicity per write), and one commit serves a whole batch (throughput).
//!
//! A batch made only of repeatable jobs (sends) first runs without savepoints, which cost a
//! copy of every page a job touches; if one of them fails, the batch is rolled back and run
//! again the careful way, each job in its savepoint.

use crate::sql::{SqlConn, Value};
use imsync_core::{model::Event, Error, ErrorCode, Result};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};

/// Most jobs that share one commit.
const MAX_BATCH: usize = 512;

/// Lone batches in a row after which a write may run on its caller's thread again.
const LONE_BATCHES_BEFORE_INLINE: usize = 8;

/// How long a batch smaller than the one before it may wait for more writes to join it, where
/// a commit waits on a disk or a network ([`Inline::Never`]). The
/// writers answered by the last commit are sending their next writes while this one begins; a
/// batch that left without them would make them wait a whole commit, and the load would settle
/// into alternating small and large batches, each paying a commit's fixed cost. A backend whose
/// batches last long enough for those writes to arrive anyway waits less
/// ([`WriterConn::gather_wait`]).
const GATHER_WAIT: Duration = Duration::from_micros(300);
const GATHER_STEP: Duration = Duration::from_micros(50);
/// The longest the writer may have been idle before a write for it to count as part of a load.
const BUSY_GAP: Duration = Duration::from_millis(1);

pub(crate) type Reply = Box<dyn FnOnce(Option<Error>) + Send>;

/// What a job leaves behind: whether its statements stand, and how to answer its caller once the
/// batch's fate is known.
pub(crate) struct JobDone {
    pub ok: bool,
    pub reply: Reply,
}

type OnceFn = Box<dyn FnOnce(&mut dyn SqlConn) -> JobDone + Send>;
type RepeatableFn = Box<dyn FnMut(&mut dyn SqlConn) -> JobDone + Send>;

pub(crate) enum Job {
    /// Runs once; in a batch, inside its own savepoint.
    Once(OnceFn),
    /// May run again when its batch is replayed; only its last run's reply is sent. With the
    /// reads it makes first, named ahead.
    Repeatable(RepeatableFn, Vec<FirstRead>),
}

impl Job {
    fn run(self, conn: &mut dyn SqlConn) -> JobDone {
        match self {
            Job::Once(f) => f(conn),
            Job::Repeatable(mut f, _) => f(conn),
        }
    }
}

/// A read a job makes before it writes anything, named when the job is submitted so that a
/// backend whose every read costs a network round trip (PostgreSQL) can fetch the first reads of
/// a whole batch in the round trip that opens its transaction.
///
/// A read fetched ahead sees the database as the transaction began, not as the jobs before it in
/// the batch left it. The scope makes that safe: a job's first reads see only rows of its scope,
/// and its writes touch no row another scope's first read sees. So a job whose scopes no earlier
/// job of the batch shared reads exactly what it would have read in its turn. The writer fetches
/// ahead only for such jobs, and only until a job that named no reads (its writes are unknown).
#[derive(Debug, Clone)]
pub struct FirstRead {
    /// What the read and its job's writes are confined to (a conversation's id).
    pub scope: String,
    pub sql: &'static str,
    pub params: Vec<Value>,
}

/// A run of a batch's jobs whose first reads are fetched together, before any of them runs.
#[derive(Debug)]
struct Wave {
    /// The positions of its jobs in the reordered batch.
    jobs: std::ops::Range<usize>,
    /// What to fetch ahead for each of its jobs, in order; empty for a job that reads in its
    /// turn.
    reads: Vec<Vec<FirstRead>>,
}

/// Reorders a batch of repeatable jobs into waves and says what each wave fetches ahead.
///
/// A job goes in the wave after the last one holding a job of any of its scopes, so the jobs of
/// one scope keep their order and a wave holds at most one job per scope: fetched once the waves
/// before it have written, a job's first reads then see exactly what they would see in its turn
/// (see [`FirstRead`]). Jobs of different scopes were submitted concurrently, so any order of
/// them is one a caller could have seen. A job that named no reads may write anything: it and
/// every job after it keep their order and run last, reading in their turn.
///
/// Only the first `keep` waves stay; the jobs of the others, and those that run last, move to
/// `deferred` in their order, to begin the next batch.
fn into_waves(batch: &mut Vec<Job>, keep: usize, deferred: &mut Vec<Job>) -> Vec<Wave> {
    let reads_of = |job: &Job| -> Vec<FirstRead> {
        match job {
            Job::Repeatable(_, reads) => reads.clone(),
            Job::Once(_) => Vec::new(),
        }
    };
    let blind_from = batch
        .iter()
        .position(|job| reads_of(job).is_empty())
        .unwrap_or(batch.len());
    let mut last_wave: HashMap<String, usize> = HashMap::new();
    let mut wave_of = Vec::with_capacity(blind_from);
    for job in &batch[..blind_from] {
        let reads = reads_of(job);
        let wave = reads
            .iter()
            .filter_map(|r| last_wave.get(&r.scope).map(|w| w + 1))
            .max()
            .unwrap_or(0);
        for r in reads {
            last_wave.insert(r.scope, wave);
        }
        wave_of.push(wave);
    }
    let mut order: Vec<usize> = (0..blind_from).collect();
    order.sort_by_key(|&i| wave_of[i]);
    let mut jobs: Vec<Option<Job>> = batch.drain(..).map(Some).collect();
    let mut waves: Vec<Wave> = Vec::new();
    let mut current = None;
    for i in order {
        let job = jobs[i].take().expect("each job is placed once");
        if current != Some(wave_of[i]) {
            current = Some(wave_of[i]);
            waves.push(Wave {
                jobs: batch.len()..batch.len(),
                reads: Vec::new(),
            });
        }
        if let Some(w) = waves.last_mut() {
            w.reads.push(reads_of(&job));
            w.jobs.end += 1;
        }
        batch.push(job);
    }
    if blind_from < jobs.len() {
        let start = batch.len();
        batch.extend(jobs.into_iter().flatten());
        waves.push(Wave {
            jobs: start..batch.len(),
            reads: Vec::new(),
        });
    }
    if waves.len() > keep.max(1) {
        let later = waves.split_off(keep.max(1));
        deferred.extend(batch.drain(later[0].jobs.start..));
    }
    waves
}

/// A backend's writing connection.
pub(crate) trait WriterConn: Send {
    fn conn(&mut self) -> &mut dyn SqlConn;
    fn batch(&mut self, sql: &str) -> Result<()>;
    /// Begins a transaction, like `batch("BEGIN IMMEDIATE")`, for a batch whose jobs will make
    /// `reads` first (by job, see [`FirstRead`]); a backend may fetch them now, all together.
    fn begin_reading(&mut self, reads: Vec<Vec<FirstRead>>) -> Result<()> {
        let _ = reads;
        self.batch("BEGIN IMMEDIATE")
    }
    /// Fetches `reads` (by job, for the jobs from position `from` of the batch on) after the
    /// writes made so far in the open transaction, which they see.
    fn read_ahead(&mut self, from: usize, reads: Vec<Vec<FirstRead>>) -> Result<()> {
        let _ = (from, reads);
        Ok(())
    }
    /// The batch's job `index` (counted from the [`WriterConn::begin_reading`] that began the
    /// transaction) starts: what was fetched ahead for it answers its first reads.
    fn job_starts(&mut self, index: usize) {
        let _ = index;
    }
    /// How many waves of a batch of sends run in it (see [`into_waves`]); the jobs of later
    /// waves begin the next batch. A backend whose reads cost a round trip each wave keeps few.
    fn waves_per_batch(&self) -> usize {
        usize::MAX
    }
    /// Whether each read a job makes in its turn costs a round trip: then a lone job that names
    /// several first reads runs as a batch does, its reads fetched together as it begins.
    fn reads_cost_round_trips(&self) -> bool {
        false
    }
    /// How long a batch smaller than the one before it may wait for company under load (see
    /// [`GATHER_WAIT`]).
    fn gather_wait(&self) -> Duration {
        GATHER_WAIT
    }
    /// Whether a transaction is open. A backend that cannot tell says yes.
    fn in_transaction(&self) -> bool {
        true
    }
    /// Ends the open transaction, if any, discarding its writes. Quiet: it runs after a failure
    /// that was logged where it happened, and its own failure would say nothing new.
    fn rollback(&mut self);
    /// Sends the statements the connection was holding back ([`SqlConn::execute_later`]) and
    /// answers the first failure among them, which fails the open transaction's last job.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    fn take_appended(&mut self) -> Vec<Event>;
    fn truncate_appended(&mut self, len: usize);
    fn appended_len(&self) -> usize;
    /// Runs after a batch has been answered, with no transaction open: upkeep that needs the
    /// writing connection itself.
    fn after_batch(&mut self) {}
}

/// Whether a write may run on the caller's thread when the writer is idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inline {
    /// The commit is quick (SQLite without a disk sync): a lone write runs on the caller's
    /// thread, saving two thread hand-offs, which are most of a sequential write's latency.
    WhenIdle,
    /// The commit waits on a disk or a network: every write goes through the writer thread.
    Never,
}

struct Shared {
    /// Taken by the writer thread when it stops, so that the connection closes on that thread
    /// (the PostgreSQL client cannot close from inside the async runtime).
    conn: Mutex<Option<Box<dyn WriterConn>>>,
    /// Jobs submitted and not yet answered: a write runs on its caller's thread only when it is
    /// the only one, so that under load every write joins a batch.
    pending: AtomicUsize,
    /// Batches of a single write the writer thread ran in a row. After a batch of several,
    /// writes are arriving concurrently, and one that finds the queue empty for a moment would
    /// commit alone on a runtime thread: writes stay on the writer thread until
    /// [`LONE_BATCHES_BEFORE_INLINE`] of them in a row say the load has become sequential.
    lone_batches: AtomicUsize,
    events: Option<broadcast::Sender<Arc<Vec<Event>>>>,
    /// Batches run and the jobs in them, for the average batch size.
    batches: AtomicU64,
    batched_jobs: AtomicU64,
}

impl Shared {
    /// Updates the batch-size gauges: once per batch, so cheap next to its commit.
    fn batch_ran(&self, size: usize) {
        let batches = self.batches.fetch_add(1, Ordering::Relaxed) + 1;
        let jobs = self.batched_jobs.fetch_add(size as u64, Ordering::Relaxed) + size as u64;
        metrics::counter!("imsync_writer_batches_total").increment(1);
        metrics::counter!("imsync_writer_batched_writes_total").increment(size as u64);
        metrics::gauge!("imsync_writer_batch_size_last").set(size as f64);
        metrics::gauge!("imsync_writer_batch_size_average").set(jobs as f64 / batches as f64);
    }
}

/// The writer: a queue drained in batches by its own thread, and the connection both share.
pub(crate) struct Writer {
    queue: mpsc::Sender<Job>,
    shared: Arc<Shared>,
    inline: Inline,
}

impl Writer {
    /// Jobs submitted and not yet answered: queued, or in the batch being run.
    pub fn queue_depth(&self) -> usize {
        self.shared.pending.load(Ordering::Relaxed)
    }

    /// Runs `job` now if nobody is writing or waiting, else queues it for the writer thread.
    /// Either way the job's reply carries its outcome.
    pub async fn submit(&self, job: Job) -> Result<()> {
        let alone = self.shared.pending.fetch_add(1, Ordering::AcqRel) == 0;
        let sequential =
            self.shared.lone_batches.load(Ordering::Relaxed) >= LONE_BATCHES_BEFORE_INLINE;
        if self.inline == Inline::WhenIdle && alone && sequential {
            if let Some(mut guard) = self.shared.conn.try_lock() {
                if let Some(conn) = guard.as_mut() {
                    let answers = run_batch(
                        conn.as_mut(),
                        &mut vec![job],
                        &self.shared.events,
                        &mut Vec::new(),
                    );
                    self.shared.batch_ran(1);
                    // Released before the answer, like the count, so that a caller who writes
                    // again at once finds the connection free.
                    drop(guard);
                    self.shared.pending.fetch_sub(1, Ordering::AcqRel);
                    answer(answers);
                    if let Some(Some(conn)) = self.shared.conn.try_lock().as_deref_mut() {
                        conn.after_batch();
                    }
                    return Ok(());
                }
            }
        }
        self.queue.send(job).await.map_err(|_| {
            self.shared.pending.fetch_sub(1, Ordering::AcqRel);
            Error::unavailable("the writer has stopped")
        })
    }
}

pub(crate) fn spawn(
    name: &str,
    wc: Box<dyn WriterConn>,
    events: Option<broadcast::Sender<Arc<Vec<Event>>>>,
    inline: Inline,
) -> Writer {
    let (tx, mut rx) = mpsc::channel::<Job>(8192);
    let gather_wait = wc.gather_wait();
    let shared = Arc::new(Shared {
        conn: Mutex::new(Some(wc)),
        pending: AtomicUsize::new(0),
        lone_batches: AtomicUsize::new(LONE_BATCHES_BEFORE_INLINE),
        events,
        batches: AtomicU64::new(0),
        batched_jobs: AtomicU64::new(0),
    });
    let own = shared.clone();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
            // Jobs a batch put off to the next (see `WriterConn::waves_per_batch`).
            let mut carried: Vec<Job> = Vec::new();
            let mut last_size = 0;
            let mut last_end = Instant::now();
            loop {
                if carried.is_empty() {
                    match rx.blocking_recv() {
                        Some(first) => batch.push(first),
                        None => break,
                    }
                } else {
                    batch.append(&mut carried);
                }
                // A write that finds the writer idle for longer than a commit's gap is not load;
                // and where a commit costs next to nothing, waiting would cost more than it saves.
                let busy = inline == Inline::Never && last_end.elapsed() < BUSY_GAP;
                gather(
                    &mut rx,
                    &mut batch,
                    if busy { last_size } else { 0 },
                    gather_wait,
                );
                let taken = batch.len();
                last_size = taken;
                if taken > 1 {
                    own.lone_batches.store(0, Ordering::Relaxed);
                } else {
                    own.lone_batches.fetch_add(1, Ordering::Relaxed);
                }
                let answers = match own.conn.lock().as_mut() {
                    Some(conn) => run_batch(conn.as_mut(), &mut batch, &own.events, &mut carried),
                    None => {
                        batch.clear();
                        Vec::new()
                    }
                };
                let ran = taken - carried.len();
                own.batch_ran(ran);
                // Before the answers, so that a caller who writes again at once may find the
                // writer idle.
                own.pending.fetch_sub(ran, Ordering::AcqRel);
                answer(answers);
                if let Some(conn) = own.conn.lock().as_mut() {
                    conn.after_batch();
                }
                last_end = Instant::now();
            }
            drop(own.conn.lock().take());
            tracing::debug!("writer stopped");
        })
        .expect("spawning the writer thread");
    Writer {
        queue: tx,
        shared,
        inline,
    }
}

/// Adds the queued jobs to `batch`. Under load (the last batch held several jobs) and while the
/// batch is smaller than that one, waits up to `wait` for more to arrive; a lone write (the
/// last batch held one) never waits.
fn gather(rx: &mut mpsc::Receiver<Job>, batch: &mut Vec<Job>, last_size: usize, wait: Duration) {
    let target = last_size.min(MAX_BATCH);
    let deadline = Instant::now() + wait;
    loop {
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if target < 2 || batch.len() >= target || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(GATHER_STEP);
    }
}

/// A job's reply and what it is to be told: `None` to report its own outcome.
type Answer = (Reply, Option<Error>);

fn answer(answers: Vec<Answer>) {
    for (reply, error) in answers {
        reply(error);
    }
}

/// Runs a batch and returns how to answer its jobs (a job dropped unanswered closes its
/// caller's channel, which reads as the store being unavailable).
fn run_batch(
    wc: &mut dyn WriterConn,
    batch: &mut Vec<Job>,
    events: &Option<broadcast::Sender<Arc<Vec<Event>>>>,
    deferred: &mut Vec<Job>,
) -> Vec<Answer> {
    let fetch_ahead = match batch.as_slice() {
        // A lone send's head and its key or file: two round trips in turn, one fetched together.
        [Job::Repeatable(_, reads)] => reads.len() > 1 && wc.reads_cost_round_trips(),
        jobs => jobs.len() > 1 && jobs.iter().all(|j| matches!(j, Job::Repeatable(..))),
    };
    if fetch_ahead {
        if let Some(replies) = run_without_savepoints(wc, batch, deferred) {
            // The batch's last writes travel with the commit (PostgreSQL): a failure among them
            // that is not the database's own belongs to one of the jobs, which the careful run
            // finds. PostgreSQL refused the commit after it, so nothing of the batch stands.
            match wc.batch("COMMIT") {
                Err(e) if !database_failed(&e) => {
                    drop(replies);
                    wc.rollback();
                    wc.take_appended();
                }
                committed => {
                    batch.clear();
                    return finish(wc, replies, committed, events);
                }
            }
        }
    }
    let size = batch.len();
    if let Err(e) = wc.batch("BEGIN IMMEDIATE") {
        // Dropping a job that never ran closes its reply channel: its caller answers 503.
        batch.clear();
        tracing::error!(error = %e, "could not begin a write transaction");
        return Vec::new();
    }
    let mut replies: Vec<(Reply, bool)> = Vec::with_capacity(size);
    let mut broken = false;
    let mut lost_early: Vec<Answer> = Vec::new();
    // A lone job needs no savepoint: if it fails, the whole transaction rolls back.
    let single = size == 1;
    for job in batch.drain(..) {
        if broken {
            drop(job);
            continue;
        }
        if !single && wc.batch("SAVEPOINT job").is_err() {
            broken = true;
            drop(job);
            continue;
        }
        let mark = wc.appended_len();
        let mut outcome = catch_unwind(AssertUnwindSafe(|| job.run(wc.conn())));
        // What the job held back is sent before it is kept; a failure there is the job's own.
        // The statements of a job that failed already go too, their failure being no news. A
        // lone job's go with the commit, whose failure is then its own.
        let flushed = if single { Ok(()) } else { wc.flush() };
        if let (Ok(done), Err(e)) = (&mut outcome, flushed) {
            if done.ok {
                let reply = std::mem::replace(&mut done.reply, Box::new(|_| {}));
                *done = JobDone {
                    ok: false,
                    reply: Box::new(move |_| reply(Some(e))),
                };
            }
        }
        let ok = matches!(&outcome, Ok(done) if done.ok);
        if !ok {
            wc.truncate_appended(mark);
        }
        // SQLite ends the whole transaction on some failures (a full disk), savepoints and all.
        let ended = !single && !wc.in_transaction();
        let restored = match (single || ended, ok) {
            (true, _) => Ok(()),
            (false, true) => wc.batch("RELEASE job"),
            (false, false) => wc
                .batch("ROLLBACK TO job")
                .and_then(|_| wc.batch("RELEASE job")),
        };
        if restored.is_err() {
            broken = true;
        }
        match outcome {
            Ok(done) => replies.push((done.reply, done.ok)),
            Err(_) => tracing::error!("a write job panicked; it was rolled back"),
        }
        if ended {
            // What the jobs before it wrote is gone, and they are told so (the failed job's
            // own error says why); the jobs after it get a transaction of their own.
            wc.take_appended();
            lost_early.extend(replies.drain(..).map(|(reply, ok)| (reply, ok.then(lost))));
            broken = wc.batch("BEGIN IMMEDIATE").is_err();
        }
    }
    if single && !replies.first().is_some_and(|(_, ok)| *ok) {
        // Nothing to keep: undo the lone job and answer it with its own error.
        wc.rollback();
        wc.take_appended();
        return replies
            .into_iter()
            .map(|(reply, _)| (reply, None))
            .collect();
    }
    // The failure that broke the batch was logged where it was made.
    let committed = if broken {
        Err(lost())
    } else {
        wc.batch("COMMIT")
    };
    lost_early.extend(finish(wc, replies, committed, events));
    lost_early
}

/// Runs a batch of repeatable jobs in one transaction without savepoints, wave after wave (see
/// [`into_waves`]), each wave's first reads fetched in one go. Answers their replies with the
/// transaction still open, or `None` (everything rolled back, the jobs intact, maybe in another
/// order) when a job failed or panicked, so that the caller runs the batch again with savepoints.
fn run_without_savepoints(
    wc: &mut dyn WriterConn,
    batch: &mut Vec<Job>,
    deferred: &mut Vec<Job>,
) -> Option<Vec<(Reply, bool)>> {
    let waves = into_waves(batch, wc.waves_per_batch(), deferred);
    let mut replies = Vec::with_capacity(batch.len());
    for (n, wave) in waves.into_iter().enumerate() {
        let (start, end) = (wave.jobs.start, wave.jobs.end);
        let fetched = if n == 0 {
            wc.begin_reading(wave.reads)
        } else {
            wc.read_ahead(start, wave.reads)
        };
        if fetched.is_err() {
            // Dropping a reply unanswered leaves its job able to answer on the next run.
            drop(replies);
            wc.rollback();
            wc.take_appended();
            return None;
        }
        for (index, job) in batch.iter_mut().enumerate().take(end).skip(start) {
            let Job::Repeatable(f, _) = job else {
                unreachable!("only batches of repeatable jobs run without savepoints")
            };
            wc.job_starts(index);
            match catch_unwind(AssertUnwindSafe(|| f(wc.conn()))) {
                Ok(done) if done.ok => replies.push((done.reply, true)),
                _ => {
                    drop(replies);
                    wc.rollback();
                    wc.take_appended();
                    return None;
                }
            }
        }
    }
    Some(replies)
}

/// Whether a failure is the database's own (it is down, or broke), rather than one job's.
fn database_failed(e: &Error) -> bool {
    matches!(e.code, ErrorCode::Internal | ErrorCode::Unavailable)
}

/// Publishes the appended events of a batch that `committed` and says how to answer every
/// job; or, if it did not, undoes it.
fn finish(
    wc: &mut dyn WriterConn,
    replies: Vec<(Reply, bool)>,
    committed: Result<()>,
    events: &Option<broadcast::Sender<Arc<Vec<Event>>>>,
) -> Vec<Answer> {
    match committed {
        Ok(()) => {
            let appended = wc.take_appended();
            if !appended.is_empty() {
                metrics::counter!("imsync_events_appended_total").increment(appended.len() as u64);
                // Without a local feed (PostgreSQL), every node's listener publishes instead.
                if let Some(events) = events {
                    let _ = events.send(Arc::new(appended));
                }
            }
            replies
                .into_iter()
                .map(|(reply, _)| (reply, None))
                .collect()
        }
        Err(e) => {
            wc.rollback();
            wc.take_appended();
            let database_failed = database_failed(&e);
            // A lone job's writes may travel with the commit (PostgreSQL): a failure that is not
            // the database's own (text it refuses, a conflict) is the job's.
            if !database_failed && replies.len() == 1 && replies[0].1 {
                return replies
                    .into_iter()
                    .map(|(reply, _)| (reply, Some(e.clone())))
                    .collect();
            }
            // An internal or unavailable error was logged, with its cause, when it was made.
            if !database_failed {
                tracing::error!(error = %e, "commit failed; the batch was rolled back");
            }
            // A failed job already carries its own error; the others lost their commit.
            replies
                .into_iter()
                .map(|(reply, ok)| (reply, ok.then(lost)))
                .collect()
        }
    }
}

/// What the jobs of a batch that could not commit are told, once its cause is in the log: one
/// line per failure, not one per job.
fn lost() -> Error {
    Error::new(
        ErrorCode::Unavailable,
        "The database is unavailable, try again later",
    )
}

/// A run's outcome and how to answer it: the outcome itself, or the batch's error if the batch
/// failed after the run succeeded.
fn done<R: Send + 'static>(
    outcome: Result<R>,
    answer: impl FnOnce(Result<R>) + Send + 'static,
) -> JobDone {
    JobDone {
        ok: outcome.is_ok(),
        reply: Box::new(move |err| {
            answer(match err {
                Some(e) => Err(e),
                None => outcome,
            })
        }),
    }
}

/// Wraps a typed closure as a job whose result travels back on a oneshot channel.
pub(crate) fn job<R, F>(f: F) -> (Job, tokio::sync::oneshot::Receiver<Result<R>>)
where
    R: Send + 'static,
    F: FnOnce(&mut dyn SqlConn) -> Result<R> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job = Job::Once(Box::new(move |conn| {
        done(f(conn), move |r| {
            let _ = tx.send(r);
        })
    }));
    (job, rx)
}

/// Wraps a closure that may run more than once (each run starts from the same database state)
/// as a repeatable job; the reply of its last run is the one sent.
pub(crate) fn repeatable_job<R, F>(
    reads: Vec<FirstRead>,
    mut f: F,
) -> (Job, tokio::sync::oneshot::Receiver<Result<R>>)
where
    R: Send + 'static,
    F: FnMut(&mut dyn SqlConn) -> Result<R> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let slot = Arc::new(Mutex::new(Some(tx)));
    let job = Job::Repeatable(
        Box::new(move |conn| {
            let slot = slot.clone();
            done(f(conn), move |r| {
                if let Some(tx) = slot.lock().take() {
                    let _ = tx.send(r);
                }
            })
        }),
        reads,
    );
    (job, rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(scopes: &[&str]) -> Job {
        let reads = scopes
            .iter()
            .map(|s| FirstRead {
                scope: (*s).to_owned(),
                sql: "SELECT 1",
                params: vec![Value::from(*s)],
            })
            .collect();
        repeatable_job(reads, |_| Ok(())).0
    }

    /// The waves of `batch`, each as the scopes of its jobs' reads, and the scopes of the jobs
    /// left to run last.
    fn waves(batch: Vec<Job>) -> Vec<Vec<String>> {
        let mut batch = batch;
        let waves = into_waves(&mut batch, usize::MAX, &mut Vec::new());
        let scopes = |job: &Job| match job {
            Job::Repeatable(_, reads) if !reads.is_empty() => {
                reads.iter().map(|r| r.scope.as_str()).collect::<String>()
            }
            _ => "-".to_owned(),
        };
        waves
            .iter()
            .map(|w| {
                assert!(w.reads.is_empty() || w.reads.len() == w.jobs.len());
                batch[w.jobs.clone()].iter().map(scopes).collect()
            })
            .collect()
    }

    #[test]
    fn each_wave_holds_one_job_per_scope_in_the_order_of_each_scope() {
        let batch = vec![send(&["a", "a"]), send(&["b"]), send(&["a"]), send(&["c"])];
        assert_eq!(waves(batch), [vec!["aa", "b", "c"], vec!["a"]]);
        // A job of two scopes follows the last job of either.
        let batch = vec![send(&["a"]), send(&["b", "a"]), send(&["b"]), send(&["c"])];
        assert_eq!(waves(batch), [vec!["a", "c"], vec!["ba"], vec!["b"]]);
    }

    #[test]
    fn the_waves_beyond_those_kept_begin_the_next_batch_in_order() {
        let mut batch = vec![
            send(&["a"]),
            send(&["b"]),
            send(&["a"]),
            send(&["a"]),
            send(&[]),
            send(&["c"]),
        ];
        let mut deferred = Vec::new();
        let waves = into_waves(&mut batch, 1, &mut deferred);
        assert_eq!(waves.len(), 1);
        assert_eq!(waves[0].jobs, 0..2);
        assert_eq!(batch.len(), 2);
        let scopes: Vec<String> = deferred
            .iter()
            .map(|job| match job {
                Job::Repeatable(_, reads) if !reads.is_empty() => reads[0].scope.clone(),
                _ => "-".to_owned(),
            })
            .collect();
        assert_eq!(scopes, ["a", "a", "-", "c"]);
    }

    #[test]
    fn a_job_that_named_no_reads_runs_last_with_the_jobs_after_it() {
        let batch = vec![send(&["a"]), send(&[]), send(&["b"]), send(&["a"])];
        assert_eq!(waves(batch), [vec!["a"], vec!["-", "b", "a"]]);
        let batch = vec![send(&[]), send(&["b"])];
        assert_eq!(waves(batch), [vec!["-", "b"]]);
    }
}
