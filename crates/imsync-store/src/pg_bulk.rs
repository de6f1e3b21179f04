//! Many rows of one INSERT as one statement, and one SELECT run for many jobs at once: a batch of
//! sends writes an event and a message per send and reads each send's conversation first, and
//! PostgreSQL spends far less on one statement over arrays of parameters (`UNNEST`) than on `n`
//! statements of one row each. The PostgreSQL writer sends what a batch queued that way (see
//! `pg_writer`): the rows of each such INSERT go together, where its first row was queued.
//!
//! Moving a row earlier than statements queued before it is what makes this safe only where
//! those statements cannot see it: the writer merges only within the waves of a batch of sends,
//! whose queued writes touch each its own conversation's rows and read nothing (a read is never
//! queued: it sends the queue first).

use crate::sql::Value;
use tokio_postgres::types::Type;

/// The multi-row form of `INSERT INTO t (c1, …, cn) VALUES ($1, …, $n)`, given the types its
/// parameters were prepared with; `None` for any other statement (one with `ON CONFLICT`, a
/// `RETURNING`, expressions among the values…), which keeps going row by row.
pub(crate) fn multi_row_form(sql: &str, types: &[Type]) -> Option<String> {
    let sql = sql.trim();
    if !sql.starts_with("INSERT INTO ") || types.is_empty() {
        return None;
    }
    let at = sql.find(" VALUES (")?;
    let values = sql[at + " VALUES (".len()..].strip_suffix(')')?;
    let plain = values
        .split(',')
        .map(str::trim)
        .eq((1..=types.len()).map(|i| format!("${i}")));
    if !plain {
        return None;
    }
    let arrays: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{}[]", i + 1, t.name()))
        .collect();
    Some(format!(
        "{} SELECT * FROM UNNEST({})",
        &sql[..at],
        arrays.join(", ")
    ))
}

/// `sql` (a SELECT with parameters `$1…$n` of `types`) run once per row of the arrays given as
/// its parameters, in one statement whose rows each begin with the 1-based number of the row of
/// parameters that produced it, in that order.
pub(crate) fn for_each_row_form(sql: &str, types: &[Type]) -> Option<String> {
    if !sql.trim_start().starts_with("SELECT ") || types.is_empty() {
        return None;
    }
    let mut body = String::with_capacity(sql.len() + 16 * types.len());
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        body.push_str(&rest[..at]);
        let digits = rest[at + 1..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len() - at - 1);
        let n: usize = rest[at + 1..at + 1 + digits].parse().ok()?;
        if n == 0 || n > types.len() {
            return None;
        }
        body.push_str(&format!("imsync_args.p{n}"));
        rest = &rest[at + 1 + digits..];
    }
    body.push_str(rest);
    let arrays: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{}[]", i + 1, t.name()))
        .collect();
    let names: Vec<String> = (1..=types.len()).map(|i| format!("p{i}")).collect();
    Some(format!(
        "SELECT imsync_args.n, q.* FROM UNNEST({}) WITH ORDINALITY AS imsync_args({}, n) \
         CROSS JOIN LATERAL ({body}) AS q ORDER BY imsync_args.n",
        arrays.join(", "),
        names.join(", ")
    ))
}

/// The rows of one multi-row INSERT, a column at a time, as its array parameters.
pub(crate) struct Columns(pub Vec<Vec<Value>>);

impl Columns {
    pub(crate) fn new(first: Vec<Value>) -> Columns {
        Columns(first.into_iter().map(|v| vec![v]).collect())
    }

    /// Adds a row: `false` (and nothing added) if it has another number of values.
    pub(crate) fn push(&mut self, row: Vec<Value>) -> bool {
        if row.len() != self.0.len() {
            return false;
        }
        for (column, v) in self.0.iter_mut().zip(row) {
            column.push(v);
        }
        true
    }

    pub(crate) fn rows(&self) -> usize {
        self.0.first().map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_insert_becomes_one_from_arrays() {
        let types = [Type::INT8, Type::TEXT, Type::TEXT];
        assert_eq!(
            multi_row_form(
                "INSERT INTO events (seq, type, data) VALUES ($1, $2,$3)",
                &types
            )
            .as_deref(),
            Some(
                "INSERT INTO events (seq, type, data) \
                 SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[])"
            )
        );
    }

    #[test]
    fn a_select_runs_once_per_row_of_parameters() {
        let types = [Type::TEXT, Type::TEXT];
        assert_eq!(
            for_each_row_form(
                "SELECT a, b FROM t WHERE t.id = $1 AND t.user_id = $2 AND t.x = $1",
                &types
            )
            .as_deref(),
            Some(
                "SELECT imsync_args.n, q.* FROM UNNEST($1::text[], $2::text[]) WITH ORDINALITY \
                 AS imsync_args(p1, p2, n) CROSS JOIN LATERAL (SELECT a, b FROM t WHERE t.id = \
                 imsync_args.p1 AND t.user_id = imsync_args.p2 AND t.x = imsync_args.p1) AS q \
                 ORDER BY imsync_args.n"
            )
        );
        assert_eq!(
            for_each_row_form("SELECT a FROM t WHERE b = $3", &types),
            None
        );
        assert_eq!(
            for_each_row_form("DELETE FROM t WHERE b = $1", &types),
            None
        );
    }

    #[test]
    fn any_other_statement_stays_as_it_is() {
        let types = [Type::INT8, Type::TEXT];
        for sql in [
            "INSERT INTO t (a, b) VALUES ($1, $2) ON CONFLICT (a) DO NOTHING",
            "INSERT INTO t (a, b) VALUES ($1, lower($2))",
            "INSERT INTO t (a, b) VALUES ($2, $1)",
            "INSERT INTO t (a, b) VALUES ($1, $2) RETURNING a",
            "INSERT INTO t (a) VALUES ($1)",
            "UPDATE t SET a = $1 WHERE b = $2",
        ] {
            assert_eq!(multi_row_form(sql, &types), None, "{sql}");
        }
    }
}
