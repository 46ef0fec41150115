//! `matih lock list|force-unlock`: inspect and release tenant locks.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use matih::workflow::store::StoreUse;

use super::{open_state_for_read, open_store, print, Global};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Every lock held, with holder, host, pid, operation and time.
    #[command(after_help = "Examples:\n  matih lock list")]
    List,
    /// Release a tenant's lock held by someone else (a crashed run on another machine).
    #[command(after_help = "Examples:\n  matih lock list\n  matih lock force-unlock acme 6f1c…")]
    ForceUnlock {
        /// The tenant's slug.
        slug: String,
        /// The lock's id, as `matih lock list` prints it (so that only that lock is released).
        id: String,
    },
}

pub fn exec(global: &Global, cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::List => {
            let store = open_state_for_read(global)?;
            let mut out = String::new();
            for l in store.locks()? {
                out.push_str(&format!(
                    "{:<24} {:<10} by {} on {} (pid {}) since {}  id {}\n",
                    l.slug, l.operation, l.who, l.host, l.pid, l.created_at, l.id
                ));
            }
            print(&out)?;
        }
        Command::ForceUnlock { slug, id } => {
            let store = open_store(global, StoreUse::Write)?;
            store.unlock(&slug, &id)?;
            println!("Released the lock {id} of tenant {slug:?}.");
        }
    }
    Ok(ExitCode::SUCCESS)
}
