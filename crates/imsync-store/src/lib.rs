//! Storage of imsync. Everything above this crate sees one seam: [`SqlConn`], a connection that runs
//! portable SQL, and [`Store`], which hands out connections for reads and runs writes as jobs on a
//! single writer that commits them in batches. The typed queries in [`repo`] are written once
//! against that seam, so every backend runs the same statements.
#![deny(unsafe_code)]

mod pg;
mod pg_bulk;
mod pg_writer;
pub mod repo;
mod sql;
mod sqlite;
mod store;
#[allow(unsafe_code)]
mod wal_vfs;
mod writer;

pub use pg::PgOptions;
pub use sql::{Dialect, Row, SqlConn, Value};
pub use store::{Durability, Store, StoreOptions};
pub use writer::FirstRead;
