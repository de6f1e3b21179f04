//! A progress line on stderr, refreshed once a second while a phase runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counts work done by any task; `Drop` ends the line.
pub struct Progress {
    pub done: Arc<AtomicU64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts printing `[label] done/total unit, elapsed` every second (`total` 0 = unknown).
    pub fn start(label: &str, total: u64, unit: &str) -> Progress {
        let done = Arc::new(AtomicU64::new(0));
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let (label, unit, counter) = (label.to_owned(), unit.to_owned(), done.clone());
        let started = Instant::now();
        let handle = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = &mut rx => break,
                    _ = tick.tick() => {
                        let n = counter.load(Ordering::Relaxed);
                        let t = started.elapsed().as_secs_f64();
                        let of = if total > 0 { format!("/{total}") } else { String::new() };
                        eprint!("\r  [{label}] {n}{of} {unit}, {t:.0} s, {:.0}/s      ", n as f64 / t.max(1e-9));
                    }
                }
            }
            eprintln!(
                "\r  [{label}] {} {unit} in {:.1} s                    ",
                counter.load(Ordering::Relaxed),
                started.elapsed().as_secs_f64()
            );
        });
        Progress {
            done,
            stop: Some(tx),
            handle: Some(handle),
        }
    }

    pub fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    /// Ends the line and waits for it to be printed.
    pub async fn finish(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
