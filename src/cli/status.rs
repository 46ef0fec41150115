//! `matih status SLUG`: where provisioning of a tenant stands; `--history`: its audit log.

use std::process::ExitCode;

use anyhow::{bail, Result};

use matih::state::{StateStore, TenantStatus};

use super::views::{audit, status};
use super::{open_state_for_read, print, print_json, state_location, Global};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The tenant's slug.
    pub slug: String,
    /// Print JSON (the document of the status API).
    #[arg(long)]
    pub json: bool,
    /// Print the tenant's audit log (every run, phase and resource operation) instead.
    #[arg(long)]
    pub history: bool,
}

pub fn exec(global: &Global, args: &Args) -> Result<ExitCode> {
    let (slug, json) = (args.slug.as_str(), args.json);
    let store = open_state_for_read(global)?;
    if args.history {
        return audit_log(global, store.as_ref(), slug, json);
    }
    let Some(st) = store.get(slug)? else {
        // A destroyed tenant: its state is gone, its history and audit log are not.
        let last = store.history(slug)?.pop();
        let Some(last) = last.filter(|h| h.state.status == TenantStatus::Destroyed) else {
            bail!("no tenant {slug:?} in the state store at {}", state_location(global)?.describe());
        };
        if json {
            print_json(&status::destroyed_json(slug, &last))?;
        } else {
            print(&status::destroyed_text(slug, &last))?;
        }
        return Ok(ExitCode::SUCCESS);
    };
    if json {
        print_json(&status::status_json(&st))?;
    } else {
        print(&status::status_text(&st))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `matih status SLUG --history`: the tenant's audit log, oldest first.
fn audit_log(global: &Global, store: &dyn StateStore, slug: &str, json: bool) -> Result<ExitCode> {
    let log = store.audit(slug)?;
    if log.is_empty() && store.get(slug)?.is_none() && store.history(slug)?.is_empty() {
        bail!("no tenant {slug:?} in the state store at {}", state_location(global)?.describe());
    }
    if json {
        print_json(&log)?;
    } else {
        print(&audit::audit_text(&log))?;
    }
    Ok(ExitCode::SUCCESS)
}
