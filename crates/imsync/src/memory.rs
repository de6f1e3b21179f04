//! The allocator, and how memory goes back to the system.
//!
//! jemalloc with its background threads: they return the pages that freed memory left dirty to
//! the system within seconds, whether or not the server is busy. mimalloc, used before, kept
//! freed pages until the thread that owned them allocated again, so after 10k WebSockets closed
//! an idle server stayed at 89 MiB (17 MiB after start); with jemalloc it is back to 23 to 24 MiB
//! 30 s later (README "Performance", idle-ws). Both spare the workers the time glibc's malloc spent
//! on small allocations freed on another thread (events are made on the writer, freed by the
//! hub), about a third of it.
//!
//! jemalloc is also the C `malloc` of the process, so SQLite's page caches, statements and
//! schemas come from it too. Left to glibc, SQLite's allocations on the runtime's blocking
//! threads went to glibc's per-thread arenas, which keep what is freed in the middle of an arena:
//! after the burst above they held 1.5 to 2 MiB that nothing used (`/proc/<pid>/smaps`).
//! Its statistics are built in, so `MALLOC_CONF=stats_print:true` prints the allocator's
//! resident, retained and metadata bytes when the server exits.
//!
//! Transparent huge pages are off for the process: with them an allocator's first touch of a
//! region faulted in 2 MiB, so a fresh server held 14 MiB of huge pages for a few hundred KiB of
//! objects, and memory freed after a burst stayed resident in partly used huge pages.

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Sets the process up before the runtime starts; what it cannot do is logged, not fatal.
pub fn init() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::debug!(error = %e, "cannot turn transparent huge pages off");
    }
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::warn!(error = %e, "cannot start the allocator's background threads");
    }
}

/// Blocking threads per core at most: reads, password hashes and file writes are short and
/// bound by the CPU or the disk, so more threads than this only queue for the cores.
const BLOCKING_THREADS_PER_CORE: usize = 8;
/// How long an idle blocking thread stays.
const BLOCKING_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(2);

/// Bounds the runtime's blocking threads. A burst of 10k WebSocket logins (a store read each)
/// started 110 of them by default, each with its own allocator cache, and they held about
/// 10 MiB of freed memory until their 10 s keep-alive ended; only then could it go back.
pub fn blocking_threads(builder: &mut tokio::runtime::Builder) -> &mut tokio::runtime::Builder {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    builder
        .max_blocking_threads((cores * BLOCKING_THREADS_PER_CORE).max(16))
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_allocator_purges_in_the_background() {
        super::init();
        assert!(tikv_jemalloc_ctl::background_thread::read().unwrap());
    }

    #[test]
    fn sqlite_allocates_from_jemalloc() {
        let allocated = tikv_jemalloc_ctl::thread::allocatedp::read().unwrap();
        let db = rusqlite::Connection::open_in_memory().unwrap();
        let before = allocated.get();
        // A 4 MiB row lives in SQLite's own buffers: only C `malloc` can have made them.
        db.execute_batch(
            "CREATE TABLE t (b BLOB); INSERT INTO t VALUES (zeroblob(4 * 1024 * 1024));
             SELECT length(b || x'00') FROM t;",
        )
        .unwrap();
        let grown = allocated.get() - before;
        assert!(grown >= 4 << 20, "jemalloc saw {grown} bytes");
    }
}
