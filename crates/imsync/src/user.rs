//! `imsync user …`: account administration on the server's database, whether the server is
//! stopped or running (SQLite in WAL mode takes a second writer; PostgreSQL any number). It is
//! how a server with closed registration gets its first account and admin.
//!
//! Passwords are read from `--password-file`, from a prompt at a terminal, or from the first line
//! of standard input, never from the command line, which every user of the machine can read in
//! the process list.
//!
//! Nothing here appends to the event log: a running SQLite server's live feed only carries what
//! its own writer commits. So an account made here joins the default channel at its first
//! Rocket.Chat login rather than at creation, as accounts made while the channel was off do.

use crate::config::{Backend, Config, ServeArgs};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use imsync_core::time::rfc3339;
use imsync_service::admin::AccountChange;
use imsync_service::{Account, NewAccount, Service, ServiceConfig};
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create an account with a password, also while registration is closed.
    Add {
        /// Its username.
        name: String,
        /// Give it the admin role.
        #[arg(long)]
        admin: bool,
        /// Its display name (the username if not given).
        #[arg(long)]
        display_name: Option<String>,
        #[command(flatten)]
        password: PasswordSource,
        #[command(flatten)]
        db: ServeArgs,
    },
    /// List the accounts, oldest first.
    List {
        /// As a JSON array instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: ServeArgs,
    },
    /// Disable an account: its sessions end and it cannot log in until enabled.
    Disable(Named),
    /// Enable a disabled account again (its old sessions stay ended).
    Enable(Named),
    /// Set a new password; the account's sessions end.
    ResetPassword {
        /// The account's username or id.
        name: String,
        #[command(flatten)]
        password: PasswordSource,
        #[command(flatten)]
        db: ServeArgs,
    },
    /// End every session of an account, on every face.
    Logout(Named),
    /// Give an account the admin role.
    Promote(Named),
    /// Take the admin role away (not from the last enabled admin).
    Demote(Named),
}

#[derive(Args)]
pub struct Named {
    /// The account's username or id.
    name: String,
    #[command(flatten)]
    db: ServeArgs,
}

#[derive(Args)]
pub struct PasswordSource {
    /// Read the password from the first line of this file (`-` for standard input); without
    /// it, a terminal is prompted and anything else is read from standard input.
    #[arg(long, value_name = "PATH")]
    password_file: Option<PathBuf>,
}

impl UserCommand {
    fn db(&self) -> &ServeArgs {
        match self {
            UserCommand::Add { db, .. }
            | UserCommand::List { db, .. }
            | UserCommand::ResetPassword { db, .. } => db,
            UserCommand::Disable(n)
            | UserCommand::Enable(n)
            | UserCommand::Logout(n)
            | UserCommand::Promote(n)
            | UserCommand::Demote(n) => &n.db,
        }
    }
}

pub fn run(command: UserCommand) -> anyhow::Result<()> {
    let config = Config::resolve(command.db().clone())?;
    // Read before the database is opened: a prompt should not hold a connection open.
    let password = match &command {
        UserCommand::Add { name, password, .. }
        | UserCommand::ResetPassword { name, password, .. } => Some(password.read(name)?),
        _ => None,
    };
    let creates = matches!(command, UserCommand::Add { .. });
    let backend = config.backend()?;
    if let Backend::Sqlite(o) = &backend {
        // A mistyped directory must not become a new empty database; `add` may make the first.
        if !creates && !o.sqlite_path.is_file() {
            bail!(
                "no database at {}; check --data-dir or --database-url",
                o.sqlite_path.display()
            );
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let store = crate::open_store(&config, backend).await?;
        let service = Service::new(
            store,
            ServiceConfig {
                // No registration hooks (see the module's comment), no file collector.
                default_channel: None,
                files_dir: None,
                ..Default::default()
            },
        );
        execute(&service, command, password).await
    })
}

async fn execute(
    service: &Service,
    command: UserCommand,
    password: Option<String>,
) -> anyhow::Result<()> {
    let failed = |e: imsync_core::Error| anyhow::anyhow!("{}", e.message);
    match command {
        UserCommand::Add {
            name,
            admin,
            display_name,
            ..
        } => {
            let account = NewAccount {
                username: name,
                display_name,
                password,
                ..Default::default()
            };
            let a = service
                .create_account(account, admin)
                .await
                .map_err(failed)?;
            let role = if a.admin { ", an admin" } else { "" };
            println!(
                "imsync: created {} (id {}){role}",
                a.user.username, a.user.id
            );
        }
        UserCommand::List { json, .. } => {
            let accounts = all_accounts(service).await.map_err(failed)?;
            if json {
                let list: Vec<serde_json::Value> = accounts.iter().map(to_json).collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                print!("{}", table(&accounts));
            }
        }
        UserCommand::Disable(n) => {
            let (a, ended) = change(service, &n.name, None, Some(true)).await?;
            println!(
                "imsync: disabled {}; {} ended",
                a.user.username,
                sessions(ended)
            );
        }
        UserCommand::Enable(n) => {
            let (a, _) = change(service, &n.name, None, Some(false)).await?;
            println!("imsync: enabled {}", a.user.username);
        }
        UserCommand::Promote(n) => {
            let (a, _) = change(service, &n.name, Some(true), None).await?;
            println!("imsync: {} is an admin", a.user.username);
        }
        UserCommand::Demote(n) => {
            let (a, _) = change(service, &n.name, Some(false), None).await?;
            println!("imsync: {} is not an admin", a.user.username);
        }
        UserCommand::ResetPassword { name, .. } => {
            let password = password.unwrap_or_default();
            let (a, ended) = service
                .reset_password(&name, password)
                .await
                .map_err(failed)?;
            println!(
                "imsync: new password set for {}; {} ended",
                a.user.username,
                sessions(ended)
            );
        }
        UserCommand::Logout(n) => {
            let (a, ended) = service.end_sessions(&n.name).await.map_err(failed)?;
            println!("imsync: ended {} of {}", sessions(ended), a.user.username);
        }
    }
    Ok(())
}

async fn change(
    service: &Service,
    name: &str,
    admin: Option<bool>,
    disabled: Option<bool>,
) -> anyhow::Result<(Account, u64)> {
    service
        .update_account(name, AccountChange { admin, disabled })
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))
}

fn sessions(n: u64) -> String {
    match n {
        1 => "1 session".to_owned(),
        n => format!("{n} sessions"),
    }
}

async fn all_accounts(service: &Service) -> imsync_core::Result<Vec<Account>> {
    let page = imsync_service::admin::MAX_PAGE;
    let mut out = Vec::new();
    loop {
        let (accounts, total) = service.accounts(out.len() as i64, page).await?;
        let done = accounts.is_empty();
        out.extend(accounts);
        if done || out.len() as i64 >= total {
            return Ok(out);
        }
    }
}

/// The same fields as the admin API's account.
fn to_json(a: &Account) -> serde_json::Value {
    serde_json::json!({
        "id": a.user.id,
        "username": a.user.username,
        "displayName": a.user.display_name,
        "role": a.user.role.as_str(),
        "admin": a.admin,
        "disabled": a.disabled_at.is_some(),
        "disabledAt": a.disabled_at.map(rfc3339),
        "hasPassword": a.user.has_password,
        "createdAt": rfc3339(a.user.created_at),
    })
}

/// Aligned columns, one account a line, under a header.
fn table(accounts: &[Account]) -> String {
    let mut rows = vec![[
        "USERNAME".to_owned(),
        "ID".to_owned(),
        "ADMIN".to_owned(),
        "STATUS".to_owned(),
        "PASSWORD".to_owned(),
        "CREATED".to_owned(),
        "DISPLAY NAME".to_owned(),
    ]];
    for a in accounts {
        let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
        rows.push([
            a.user.username.clone(),
            a.user.id.clone(),
            yes_no(a.admin),
            match a.disabled_at {
                Some(_) => "disabled".to_owned(),
                None => "active".to_owned(),
            },
            yes_no(a.user.has_password),
            rfc3339(a.user.created_at),
            a.user.display_name.clone(),
        ]);
    }
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = widths[i] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

impl PasswordSource {
    /// The password, from the file, the terminal or standard input.
    fn read(&self, name: &str) -> anyhow::Result<String> {
        let password = match self.password_file.as_deref() {
            Some(p) if p.as_os_str() == "-" => first_line(std::io::stdin().lock())?,
            Some(p) => {
                let file = std::fs::File::open(p)
                    .with_context(|| format!("reading the password file {}", p.display()))?;
                first_line(std::io::BufReader::new(file))?
            }
            None if std::io::stdin().is_terminal() => {
                let first = rpassword::prompt_password(format!("Password for {name}: "))
                    .context("reading the password")?;
                let again = rpassword::prompt_password("The same password again: ")
                    .context("reading the password")?;
                if first != again {
                    bail!("the passwords differ; nothing was changed");
                }
                first
            }
            None => first_line(std::io::stdin().lock())?,
        };
        if password.is_empty() {
            bail!("no password given: put it in a file for --password-file, or on standard input");
        }
        Ok(password)
    }
}

/// The first line, without its line ending.
fn first_line(mut input: impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    input.read_line(&mut line).context("reading the password")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_line_is_the_password() {
        let read = |s: &str| first_line(s.as_bytes()).unwrap();
        assert_eq!(read("s3cret pass\r\nignored\n"), "s3cret pass");
        assert_eq!(read("  spaces kept  \n"), "  spaces kept  ");
        assert_eq!(read(""), "");
    }
}
