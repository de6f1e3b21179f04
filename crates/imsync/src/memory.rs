//! The allocator, and how memory goes back to the system.
//!
//! Transparent huge pages are off for the process: with them an allocator's first touch of a
//! region faulted in 2 MiB, so a fresh server held 14 MiB of huge pages for a few hundred KiB of
//! objects, and memory freed after a burst stayed resident in huge pages that were partly used.

#[cfg(not(feature = "jemalloc"))]
// A request makes many small allocations that often die on another thread (events are made on
// the writer, freed by the hub): glibc's malloc spent about a third of the workers' time there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Sets the process up before the runtime starts; says what it could not do.
pub fn init() {
    // Also for a host whose THP setting is `always`, where the kernel would use huge pages
    // without being asked (the allocator is built not to ask).
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::debug!(error = %e, "cannot turn transparent huge pages off");
    }
    #[cfg(feature = "jemalloc")]
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::debug!(error = %e, "cannot start the allocator's background threads");
    }
}
