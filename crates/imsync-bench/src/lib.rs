//! The imsync benchmark harness as a library: a small HTTP client for the native API and the
//! Matrix client-server API, latency statistics, the child-process server, the bulk-load (seed)
//! path and the benchmark scenarios (README, "Performance"), the Rocket.Chat and
//! TangSengDaoDao faces' sync calls included.
//!
//! Every scenario that only needs a running server takes a base URL, so the same code runs
//! against the release binary (from `main.rs`) and against an in-process server (the smoke test).
//! Every load loop is bounded twice, by a count and by a deadline, and stops by itself.
#![forbid(unsafe_code)]

pub mod client;
pub mod compare;
pub mod cpu;
pub mod ddp;
pub mod face_fanout;
pub mod faces;
pub mod files;
pub mod lean;
pub mod matrix;
pub mod pg;
pub mod progress;
pub mod realtime;
pub mod report;
pub mod scenarios;
pub mod seed;
pub mod server;
pub mod stats;
pub mod transfer;
pub mod wk;
pub mod ws;
