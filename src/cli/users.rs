//! `ivcsd admin user …`: edits authority.xml locally and atomically. The tracker notices the
//! change and reloads the file; tokens of a user whose password, authority or admin flag
//! changed end at once.
//!
//! The file is rewritten whole from the parsed table (comments are not kept), under an
//! exclusive lock so that two edits at once cannot lose one another.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};

use super::admin::UserCommand;
use super::peer::Credentials;
use ivcsd::tracker::authority::{IpRule, PasswordHash, User, UserTable, load_file};
use ivcsd::types::Authority;

pub fn run(command: UserCommand, credentials: &Credentials) -> anyhow::Result<()> {
    let password_file = credentials.password_file.as_deref();
    match command {
        UserCommand::Add {
            name,
            authority,
            admin,
            ip,
            file,
        } => {
            let ip = ip
                .map(|text| {
                    IpRule::parse(&text).map_err(|reason| anyhow::anyhow!("--ip {text}: {reason}"))
                })
                .transpose()?;
            let password =
                super::read_password(password_file, &format!("New password for {name}: "), true)?;
            let hash = PasswordHash::new_argon2id(password.as_bytes())
                .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
            edit(&file.authority_file, true, |table| {
                let user = User {
                    username: name.clone(),
                    password: hash,
                    authority: Authority(authority),
                    admin,
                    ip,
                    public_key: None,
                    updated_ms: now_ms(),
                };
                if !table.insert(user) {
                    bail!("user '{name}' exists already");
                }
                Ok(format!(
                    "added user '{name}' with authority {authority}{}",
                    if admin { " (admin)" } else { "" }
                ))
            })
        }
        UserCommand::Passwd { name, file } => {
            // Fail before prompting when the user does not exist.
            let table = load_file(&file.authority_file)?;
            if table.get(&name).is_none() {
                bail!("no user '{name}' in {}", file.authority_file.display());
            }
            let password =
                super::read_password(password_file, &format!("New password for {name}: "), true)?;
            let hash = PasswordHash::new_argon2id(password.as_bytes())
                .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
            edit(&file.authority_file, false, |table| {
                let user = existing(table, &name)?;
                user.password = hash;
                user.updated_ms = now_ms();
                Ok(format!(
                    "set a new password for '{name}'; its tokens have ended"
                ))
            })
        }
        UserCommand::SetAuthority {
            name,
            authority,
            file,
        } => edit(&file.authority_file, false, |table| {
            let user = existing(table, &name)?;
            let old = user.authority;
            user.authority = Authority(authority);
            user.updated_ms = now_ms();
            Ok(format!(
                "set the authority of '{name}' from {old} to {authority}"
            ))
        }),
        UserCommand::Remove { name, file } => edit(&file.authority_file, false, |table| {
            table
                .remove(&name)
                .with_context(|| format!("no user '{name}'"))?;
            Ok(format!("removed user '{name}'"))
        }),
    }
}

fn existing<'t>(table: &'t mut UserTable, name: &str) -> anyhow::Result<&'t mut User> {
    table
        .get_mut(name)
        .with_context(|| format!("no user '{name}'"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Loads the file under an exclusive lock, applies `change`, and replaces the file atomically
/// (mode 0600: it holds password hashes). `create` allows a missing file to start empty.
fn edit(
    path: &Path,
    create: bool,
    change: impl FnOnce(&mut UserTable) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    let _lock = lock(path)?;
    let mut table = if create && !path.exists() {
        UserTable::default()
    } else {
        load_file(path)?
    };
    let message = change(&mut table).with_context(|| format!("cannot edit {}", path.display()))?;
    ivcsd::fsutil::write_atomic(path, table.to_xml().as_bytes(), 0o600)
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("{message} in {}", path.display());
    Ok(())
}

/// An exclusive lock on a sibling lock file (the file itself is replaced by rename, so a lock
/// on it would not exclude the next editor).
fn lock(path: &Path) -> anyhow::Result<File> {
    let lock_path: PathBuf = {
        let mut name = std::ffi::OsString::from(".");
        name.push(path.file_name().unwrap_or_default());
        name.push(".lock");
        path.with_file_name(name)
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open lock file {}", lock_path.display()))?;
    file.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    Ok(file)
}
