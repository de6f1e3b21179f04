//! A fresh PostgreSQL database per run, created and dropped with `psql` through an admin URL
//! (`postgres://USER@HOST:PORT/DB`, DB being any database the user may connect to).

use anyhow::{bail, Context, Result};

/// Runs one statement with `psql`; answers its unaligned, tuples-only output.
pub fn psql(url: &str, sql: &str) -> Result<String> {
    let out = std::process::Command::new("psql")
        .args([url, "-X", "-qAtc", sql])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .context("running psql (is the PostgreSQL client installed?)")?;
    if !out.status.success() {
        bail!(
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `url` with its database replaced by `db` (the query string is kept).
pub fn with_database(url: &str, db: &str) -> Result<String> {
    let (scheme, rest) = url
        .split_once("://")
        .with_context(|| format!("{url:?} is not a postgres:// URL"))?;
    if scheme != "postgres" && scheme != "postgresql" {
        bail!("{url:?} is not a postgres:// URL");
    }
    let (authority, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => match rest.find('?') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        },
    };
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    Ok(format!("{scheme}://{authority}/{db}{query}"))
}

/// A database created for one run; dropped by `drop_now` or, failing that, on `Drop`.
pub struct FreshDb {
    admin: String,
    pub name: String,
    /// The URL of the fresh database, for `imsync serve --database-url`.
    pub url: String,
    dropped: bool,
}

impl FreshDb {
    /// Creates `<prefix>_<random>` on the server of `admin_url`.
    pub fn create(admin_url: &str, prefix: &str) -> Result<FreshDb> {
        let name = format!("{prefix}_{}", crate::scenarios::run_tag());
        let url = with_database(admin_url, &name)?;
        psql(admin_url, &format!("CREATE DATABASE {name}"))
            .with_context(|| format!("creating the database {name}"))?;
        eprintln!("  created PostgreSQL database {name}");
        Ok(FreshDb {
            admin: admin_url.to_owned(),
            name,
            url,
            dropped: false,
        })
    }

    /// `SHOW <setting>` on the fresh database.
    pub fn show(&self, setting: &str) -> Result<String> {
        psql(&self.url, &format!("SHOW {setting}"))
    }

    /// The durability settings that matter for write figures, e.g.
    /// `synchronous_commit=on, fsync=on`.
    pub fn durability(&self) -> String {
        let get = |s: &str| self.show(s).unwrap_or_else(|e| format!("unknown ({e})"));
        format!(
            "synchronous_commit={}, fsync={}",
            get("synchronous_commit"),
            get("fsync")
        )
    }

    /// Drops the database (disconnecting anything still connected).
    pub fn drop_now(mut self) -> Result<()> {
        self.dropped = true;
        self.drop_db()
    }

    fn drop_db(&self) -> Result<()> {
        psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )?;
        eprintln!("  dropped PostgreSQL database {}", self.name);
        Ok(())
    }
}

impl Drop for FreshDb {
    fn drop(&mut self) {
        if !self.dropped {
            if let Err(e) = self.drop_db() {
                eprintln!("  could not drop the database {}: {e:#}", self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_and_keeps_the_query() {
        let w = |u: &str| with_database(u, "fresh").unwrap();
        assert_eq!(
            w("postgres://postgres@127.0.0.1:5432/test"),
            "postgres://postgres@127.0.0.1:5432/fresh"
        );
        assert_eq!(
            w("postgresql://u:p@h/db?sslmode=disable"),
            "postgresql://u:p@h/fresh?sslmode=disable"
        );
        assert_eq!(w("postgres://h:1"), "postgres://h:1/fresh");
        assert_eq!(w("postgres://h:1?x=1"), "postgres://h:1/fresh?x=1");
        assert!(with_database("sqlite://x", "fresh").is_err());
    }
}
