//! The allocator, and how memory goes back to the system.
//!
//! jemalloc with its background threads: they return the pages that freed memory left dirty to
//! the system within seconds, whether or not the server is busy. mimalloc, used before, kept
//! freed pages until the thread that owned them allocated again, so after 10k WebSockets closed
//! an idle server stayed at 89 MiB (17 MiB after start); with jemalloc it is back to 26 MiB 30 s
//! later (README "Performance", idle-ws). Both spare the workers the time glibc's malloc spent
//! on small allocations freed on another thread (events are made on the writer, freed by the
//! hub), about a third of it.
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_allocator_purges_in_the_background() {
        super::init();
        assert!(tikv_jemalloc_ctl::background_thread::read().unwrap());
    }
}
