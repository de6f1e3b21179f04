//! CPU time spent during a load phase: the server's, the harness's own, and the machine's idle
//! share, read from `/proc` (Linux only; elsewhere nothing is reported). A closed-loop rate alone
//! does not say whether the server ran out of CPU, waited on its serial writer, or shared the
//! machine with the harness; the split and the idle share do. On a virtual machine the steal
//! share (time the hypervisor gave the vCPUs to someone else) says how much of the machine the
//! phase really had.

use serde::Serialize;
use std::time::Instant;

/// `/proc` counts CPU time in these ticks per second (USER_HZ, fixed by the kernel's ABI).
const TICKS_PER_SEC: f64 = 100.0;

/// Started before a phase, read after it.
pub struct CpuMeter {
    server: Option<u32>,
    at: Instant,
    server_ticks: Option<u64>,
    own_ticks: Option<u64>,
    machine: Option<MachineTicks>,
}

/// CPU use over a phase, in cores (1.0 = one core busy for the whole phase).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuUse {
    pub server_cores: Option<f64>,
    pub bench_cores: Option<f64>,
    /// The share of the machine's CPU time nobody used (0..1).
    pub machine_idle: Option<f64>,
    /// The share of the machine's CPU time the hypervisor took away (0..1).
    pub machine_steal: Option<f64>,
    pub secs: f64,
}

impl CpuUse {
    /// Server CPU microseconds per operation, for `ops` operations in the phase.
    pub fn server_us_per(&self, ops: usize) -> Option<f64> {
        self.server_cores
            .filter(|_| ops > 0)
            .map(|c| c * self.secs * 1e6 / ops as f64)
    }
}

impl CpuMeter {
    pub fn start(server_pid: Option<u32>) -> CpuMeter {
        CpuMeter {
            server: server_pid,
            at: Instant::now(),
            server_ticks: server_pid.and_then(|p| process_ticks(&p.to_string())),
            own_ticks: process_ticks("self"),
            machine: machine_ticks(),
        }
    }

    pub fn stop(self) -> CpuUse {
        let secs = self.at.elapsed().as_secs_f64();
        let cores = |before: Option<u64>, after: Option<u64>| {
            Some(after?.saturating_sub(before?) as f64 / TICKS_PER_SEC / secs)
        };
        let server_after = self.server.and_then(|p| process_ticks(&p.to_string()));
        let (idle, steal) = match (self.machine, machine_ticks()) {
            (Some(a), Some(b)) if b.total > a.total => {
                let share =
                    |x0: u64, x1: u64| x1.saturating_sub(x0) as f64 / (b.total - a.total) as f64;
                (Some(share(a.idle, b.idle)), Some(share(a.steal, b.steal)))
            }
            _ => (None, None),
        };
        CpuUse {
            server_cores: cores(self.server_ticks, server_after),
            bench_cores: cores(self.own_ticks, process_ticks("self")),
            machine_idle: idle,
            machine_steal: steal,
            secs,
        }
    }
}

/// User plus system ticks of a process, all its threads (fields 14 and 15 of `stat`).
fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; the fields after it are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}

#[derive(Debug, Clone, Copy)]
struct MachineTicks {
    /// idle + iowait
    idle: u64,
    steal: u64,
    total: u64,
}

/// The whole machine's ticks, from the `cpu` line of `/proc/stat`.
fn machine_ticks() -> Option<MachineTicks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    let steal = ticks.get(7).copied().unwrap_or(0);
    // guest and guest_nice are already counted in user and nice.
    let total = ticks.iter().take(8).sum();
    Some(MachineTicks { idle, steal, total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_loop_shows_as_this_process_cpu() {
        let meter = CpuMeter::start(Some(std::process::id()));
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed().as_millis() < 300 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let used = meter.stop();
        if cfg!(target_os = "linux") {
            // Other tests share this process and the machine: bounds, not a figure.
            let cores = std::thread::available_parallelism().map_or(64, |n| n.get()) as f64;
            let own = used.bench_cores.expect("own CPU time");
            assert!(own > 0.0 && own <= cores + 0.5, "{own} cores");
            let server = used.server_cores.expect("CPU time of a process by pid");
            assert!(server > 0.0 && server <= cores + 0.5, "{server} cores");
            let idle = used.machine_idle.expect("machine idle share");
            assert!((0.0..=1.0).contains(&idle), "idle {idle}");
            let steal = used.machine_steal.expect("machine steal share");
            assert!((0.0..=1.0 - idle).contains(&steal), "steal {steal}");
            let per = used.server_us_per(1000).expect("per operation");
            assert!((per - server * used.secs * 1000.0).abs() < 1e-6);
        }
    }
}
