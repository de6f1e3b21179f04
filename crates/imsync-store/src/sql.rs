//! The seam between the typed queries and a database: positional parameters (`$1`, `$2`, … as
//! PostgreSQL writes them; the SQLite backend rewrites them) and rows of plain values.

use imsync_core::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(v as i64)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}
impl From<&serde_json::Value> for Value {
    fn from(v: &serde_json::Value) -> Self {
        Value::Text(v.to_string())
    }
}

/// Builds a parameter slice: `args![a, b]` is `&[Value::from(a), Value::from(b)]`.
#[macro_export]
macro_rules! args {
    ($($v:expr),* $(,)?) => { &[$($crate::Value::from($v)),*] };
}

/// One result row. Getters panic only on a column index or type that the query itself fixes, so
/// a mismatch is a programming error caught by the first test that runs the query.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Value>);

impl Row {
    pub fn i64(&self, i: usize) -> i64 {
        match &self.0[i] {
            Value::Int(v) => *v,
            other => panic!("column {i}: expected integer, got {other:?}"),
        }
    }
    pub fn opt_i64(&self, i: usize) -> Option<i64> {
        match &self.0[i] {
            Value::Null => None,
            Value::Int(v) => Some(*v),
            other => panic!("column {i}: expected integer, got {other:?}"),
        }
    }
    pub fn bool(&self, i: usize) -> bool {
        self.i64(i) != 0
    }
    pub fn str(&self, i: usize) -> &str {
        match &self.0[i] {
            Value::Text(v) => v,
            other => panic!("column {i}: expected text, got {other:?}"),
        }
    }
    pub fn string(&self, i: usize) -> String {
        self.str(i).to_owned()
    }
    pub fn opt_string(&self, i: usize) -> Option<String> {
        match &self.0[i] {
            Value::Null => None,
            Value::Text(v) => Some(v.clone()),
            other => panic!("column {i}: expected text, got {other:?}"),
        }
    }
    /// A JSON column; a value that does not parse reads as JSON null rather than failing a read.
    pub fn json(&self, i: usize) -> serde_json::Value {
        match &self.0[i] {
            Value::Text(v) => serde_json::from_str(v).unwrap_or(serde_json::Value::Null),
            _ => serde_json::Value::Null,
        }
    }
}

/// A connection inside a transaction. Reads see one snapshot; a write job's statements commit
/// together or not at all.
pub trait SqlConn {
    fn dialect(&self) -> Dialect;
    fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64>;
    fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>>;

    fn query_opt(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Runs a write whose outcome the caller does not read, only requires: with `must_change`,
    /// a statement that changes no row fails with a conflict saying so. A backend may send it
    /// later, together with its next statement (the PostgreSQL writer pipelines them, saving a
    /// round trip each); a failure then surfaces from that statement or at the end of the job,
    /// and fails the job all the same.
    fn execute_later(
        &mut self,
        sql: &str,
        params: &[Value],
        must_change: Option<&'static str>,
    ) -> Result<()> {
        let changed = self.execute(sql, params)?;
        match must_change {
            Some(what) if changed == 0 => Err(imsync_core::Error::conflict(what)),
            _ => Ok(()),
        }
    }

    /// The seq the next appended event takes, where the connection hands seqs out itself (the
    /// PostgreSQL writer, which holds the counter's lock for its whole transaction). The caller
    /// records that event with [`SqlConn::appended`] before asking again.
    fn next_seq(&mut self) -> Option<imsync_core::Seq> {
        None
    }

    /// Records an event appended by the current write job, to be published once it commits.
    fn appended(&mut self, event: imsync_core::model::Event);

    /// The rowid of the row the last INSERT made, where the backend keeps one (SQLite).
    fn last_insert_id(&mut self) -> Option<i64> {
        None
    }
}
