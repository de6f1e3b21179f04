//! Many rows of one write as one statement, and one SELECT run for many jobs at once: a batch of
//! sends writes an event, a message, its conversation's head and maybe an idempotency record
//! per send, and reads each send's conversation first; PostgreSQL spends far less on one
//! statement over arrays of parameters (`UNNEST`) than on `n` statements of one row each. The
//! PostgreSQL writer sends what the jobs of one wave of a batch queued that way (see
//! `pg_writer`): where consecutive jobs queued the same writes in the same order, it sends them a
//! statement at a time, the rows of each statement that has a form here as one. Each job's
//! writes keep their order; writes of different jobs of a wave, which touch different rows, pass
//! each other.

use crate::sql::Value;
use tokio_postgres::types::Type;

/// The name of the row of parameters in a statement run for many rows.
const ARGS: &str = "imsync_args";

/// `$1::t1[], …, $n::tn[]`: the parameters of `types`, each as an array.
fn arrays(types: &[Type]) -> String {
    let arrays: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{}[]", i + 1, t.name()))
        .collect();
    arrays.join(", ")
}

/// `p1, …, pn`: the columns of the row of parameters.
fn names(n: usize) -> String {
    let names: Vec<String> = (1..=n).map(|i| format!("p{i}")).collect();
    names.join(", ")
}

/// `sql` with every parameter `$i` (of `n`) read from the row of parameters instead.
fn from_args(sql: &str, n: usize) -> Option<String> {
    let mut out = String::with_capacity(sql.len() + 16 * n);
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let digits = rest[at + 1..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len() - at - 1);
        let i: usize = rest[at + 1..at + 1 + digits].parse().ok()?;
        if i == 0 || i > n {
            return None;
        }
        out.push_str(&format!("{ARGS}.p{i}"));
        rest = &rest[at + 1 + digits..];
    }
    out.push_str(rest);
    Some(out)
}

/// The multi-row form of `INSERT INTO t (c1, …, cn) VALUES ($1, …, $n)` followed by `tail` if
/// `tail_allowed` says it may be (an `ON CONFLICT` clause).
fn insert_form(sql: &str, types: &[Type], tail_allowed: impl Fn(&str) -> bool) -> Option<String> {
    if !sql.starts_with("INSERT INTO ") || types.is_empty() {
        return None;
    }
    let at = sql.find(" VALUES (")?;
    let after = &sql[at + " VALUES (".len()..];
    let close = after.find(')')?;
    let (values, tail) = (&after[..close], after[close + 1..].trim());
    let plain = values
        .split(',')
        .map(str::trim)
        .eq((1..=types.len()).map(|i| format!("${i}")));
    if !plain || !(tail.is_empty() || tail_allowed(tail)) {
        return None;
    }
    let tail = if tail.is_empty() {
        String::new()
    } else {
        format!(" {tail}")
    };
    Some(format!(
        "{} SELECT * FROM UNNEST({}){tail}",
        &sql[..at],
        arrays(types)
    ))
}

/// The multi-row form of `UPDATE t SET … WHERE …` whose clauses use no `FROM` or `RETURNING`:
/// the statement joined to the rows of parameters. Each row of parameters must pick other rows
/// than the rest (a row picked twice would be updated once), which the writes of one wave do:
/// they touch only rows of their own conversation.
fn update_form(sql: &str, types: &[Type]) -> Option<String> {
    let n = types.len();
    let rest = sql.strip_prefix("UPDATE ")?;
    let (table, rest) = rest.split_once(" SET ")?;
    let (set, filter) = rest.split_once(" WHERE ")?;
    let plain = |s: &str| !s.contains(" FROM ") && !s.contains("RETURNING");
    if n == 0 || table.contains(' ') || !plain(set) || !plain(filter) {
        return None;
    }
    Some(format!(
        "UPDATE {table} SET {} FROM UNNEST({}) AS {ARGS}({}) WHERE {}",
        from_args(set, n)?,
        arrays(types),
        names(n),
        from_args(filter, n)?
    ))
}

/// The multi-row form of `INSERT INTO t (c1, …, cn) VALUES ($1, …, $n)` or of a plain UPDATE
/// (see `update_form`), given the types its parameters were prepared with; `None` for any other
/// statement (one with `ON CONFLICT`, a `RETURNING`, expressions among the values…), which
/// keeps going row by row.
pub(crate) fn multi_row_form(sql: &str, types: &[Type]) -> Option<String> {
    let sql = sql.trim();
    if sql.starts_with("UPDATE ") {
        return update_form(sql, types);
    }
    insert_form(sql, types, |_| false)
}

/// The multi-row form of a write that must change one row per row of parameters (see
/// `pg::MUST_CHANGE`): an INSERT as [`multi_row_form`] takes it, with `ON CONFLICT … DO NOTHING`
/// allowed, or an `UPDATE t SET … WHERE …` (one row per row of parameters, as the check
/// requires). It takes two more parameters: how many rows must change, and the reason it
/// fails with when fewer did (so rows that collide fail it, and the batch runs one by one).
pub(crate) fn checked_form(sql: &str, types: &[Type], check: &str) -> Option<String> {
    let sql = sql.trim();
    let n = types.len();
    let inner = if sql.starts_with("INSERT INTO ") {
        insert_form(sql, types, |tail| {
            tail.starts_with("ON CONFLICT ") && tail.ends_with(" DO NOTHING")
        })?
    } else if sql.starts_with("UPDATE ") {
        update_form(sql, types)?
    } else {
        return None;
    };
    Some(format!(
        "WITH changed AS ({inner} RETURNING 1) \
         SELECT {check}((count(*) = ${})::int, ${}) FROM changed",
        n + 1,
        n + 2
    ))
}

/// `sql` (a SELECT with parameters `$1…$n` of `types`) run once per row of the arrays given as
/// its parameters, in one statement whose rows each begin with the 1-based number of the row of
/// parameters that produced it, in that order.
pub(crate) fn for_each_row_form(sql: &str, types: &[Type]) -> Option<String> {
    if !sql.trim_start().starts_with("SELECT ") || types.is_empty() {
        return None;
    }
    let body = from_args(sql, types.len())?;
    Some(format!(
        "SELECT {ARGS}.n, q.* FROM UNNEST({}) WITH ORDINALITY AS {ARGS}({}, n) \
         CROSS JOIN LATERAL ({body}) AS q ORDER BY {ARGS}.n",
        arrays(types),
        names(types.len())
    ))
}

/// The rows of one multi-row statement, a column at a time, as its array parameters.
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
    fn a_checked_write_changes_as_many_rows_as_it_was_given() {
        let types = [Type::TEXT, Type::INT8];
        assert_eq!(
            checked_form(
                "UPDATE t SET a = $2, n = n + 1 WHERE id = $1 AND a = $2 - 1",
                &types,
                "check"
            )
            .as_deref(),
            Some(
                "WITH changed AS (UPDATE t SET a = imsync_args.p2, n = n + 1 \
                 FROM UNNEST($1::text[], $2::int8[]) AS imsync_args(p1, p2) \
                 WHERE id = imsync_args.p1 AND a = imsync_args.p2 - 1 RETURNING 1) \
                 SELECT check((count(*) = $3)::int, $4) FROM changed"
            )
        );
        assert_eq!(
            checked_form(
                "INSERT INTO k (a, b) VALUES ($1, $2) ON CONFLICT (a) DO NOTHING",
                &types,
                "check"
            )
            .as_deref(),
            Some(
                "WITH changed AS (INSERT INTO k (a, b) SELECT * FROM \
                 UNNEST($1::text[], $2::int8[]) ON CONFLICT (a) DO NOTHING RETURNING 1) \
                 SELECT check((count(*) = $3)::int, $4) FROM changed"
            )
        );
        for sql in [
            "UPDATE t SET a = $2 FROM u WHERE id = $1",
            "UPDATE t SET a = $3 WHERE id = $1",
            "UPDATE t SET a = $2",
            "DELETE FROM t WHERE id = $1 AND a = $2",
            "INSERT INTO k (a, b) VALUES ($1, $2) ON CONFLICT (a) DO UPDATE SET b = 1",
        ] {
            assert_eq!(checked_form(sql, &types, "check"), None, "{sql}");
        }
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
            "UPDATE t SET a = $1",
            "UPDATE t SET a = $1 FROM u WHERE b = $2",
            "UPDATE t SET a = $1 WHERE b = $2 RETURNING a",
            "UPDATE t SET a = $3 WHERE b = $2",
        ] {
            assert_eq!(multi_row_form(sql, &types), None, "{sql}");
        }
    }

    #[test]
    fn a_plain_update_becomes_one_joined_to_arrays() {
        let types = [Type::TEXT, Type::INT8];
        assert_eq!(
            multi_row_form("UPDATE t SET a = $2 WHERE id = $1 AND a < $2", &types).as_deref(),
            Some(
                "UPDATE t SET a = imsync_args.p2 FROM UNNEST($1::text[], $2::int8[]) \
                 AS imsync_args(p1, p2) WHERE id = imsync_args.p1 AND a < imsync_args.p2"
            )
        );
    }
}
