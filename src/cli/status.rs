//! `matih status SLUG`: where provisioning of a tenant stands; `--history`: its audit log.

use std::process::ExitCode;

use anyhow::{bail, Result};

use matih::state::{StateStore, TenantStatus};

use super::{open_state_for_read, print, state_location, status_name, Global};

#[derive(clap::Args, Debug)]
pub struct Args {
    pub slug: String,
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
            let v = serde_json::json!({
                "slug": slug,
                "tenant_id": last.state.tenant_id,
                "status": TenantStatus::Destroyed,
                "destroyed_at": last.at,
                "lineage": last.state.lineage,
                "last_serial": last.serial,
                "duration_ms": last.state.provisioning_duration_ms,
            });
            print(&format!("{}\n", serde_json::to_string_pretty(&v)?))?;
        } else {
            print(&format!(
                "Tenant:     {slug} ({})\nStatus:     DESTROYED at {} (its state was removed; `matih status {slug} \
                 --history` shows its audit log, `matih state history {slug}` its earlier states)\n",
                last.state.tenant_id, last.at
            ))?;
        }
        return Ok(ExitCode::SUCCESS);
    };
    if json {
        let v = serde_json::json!({
            "slug": st.slug,
            "tenant_id": st.tenant_id,
            "status": st.status,
            "current_phase": st.current_phase.map(|p| p.name()),
            "current_phase_number": st.current_phase.map(|p| p.number()),
            "provisioning_error": st.provisioning_error,
            "provisioning_completed_at": st.provisioning_completed_at,
            "serial": st.serial,
            "lineage": st.lineage,
            "updated_at": st.updated_at,
            "resources": st.resources.len(),
            "duration_ms": st.provisioning_duration_ms,
            "in_flight": st.in_flight.iter().map(|(a, r)| serde_json::json!({
                "resource": a.to_string(),
                "action": r.action,
                "phase": r.phase.number(),
                "started_at": r.started_at,
            })).collect::<Vec<_>>(),
            "phases": st.phases.iter().map(|(p, r)| serde_json::json!({
                "number": p.number(),
                "name": p.name(),
                "state": r.state,
                "started_at": r.started_at,
                "finished_at": r.finished_at,
                "duration_ms": r.duration_ms,
                "operations": r.operations,
            })).collect::<Vec<_>>(),
        });
        print(&format!("{}\n", serde_json::to_string_pretty(&v)?))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    out.push_str(&format!("Tenant:     {} ({})\n", st.slug, st.tenant_id));
    out.push_str(&format!("Status:     {}\n", status_name(st.status)));
    if let Some(p) = st.current_phase {
        out.push_str(&format!("Phase:      {}/10 {}\n", p.number(), p.name()));
    }
    if let Some(e) = &st.provisioning_error {
        out.push_str(&format!("Error:      {e}\n"));
    }
    if let Some(t) = &st.provisioning_completed_at {
        out.push_str(&format!("Completed:  {t}\n"));
    }
    if let Some(ms) = st.provisioning_duration_ms {
        out.push_str(&format!("Took:       {:.1}s (last complete run)\n", ms as f64 / 1000.0));
    }
    out.push_str(&format!("Resources:  {}\n", st.resources.len()));
    if !st.in_flight.is_empty() {
        out.push_str(&format!(
            "In flight:  {} operation(s) of an interrupted run; the next plan or apply reads and adopts them\n",
            st.in_flight.len()
        ));
        for (addr, r) in &st.in_flight {
            out.push_str(&format!("  {:<8} {addr} (phase {}, started {})\n", r.action, r.phase.number(), r.started_at));
        }
    }
    if !st.phases.is_empty() {
        out.push_str("Phases (last run):\n");
        for (phase, run) in &st.phases {
            let took = run.duration_ms.map(|ms| format!("{:.1}s", ms as f64 / 1000.0)).unwrap_or_else(|| "-".into());
            out.push_str(&format!(
                "  {:>2} {:<26} {:<12} started {}  took {:>7}  {} operation(s)\n",
                phase.number(),
                phase.name(),
                run.state,
                run.started_at,
                took,
                run.operations
            ));
        }
    }
    out.push_str(&format!("Serial:     {} (lineage {})\n", st.serial, st.lineage));
    out.push_str(&format!("Updated:    {}\n", st.updated_at));
    print(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// `matih status SLUG --history`: the tenant's audit log, oldest first.
pub fn audit_log(global: &Global, store: &dyn StateStore, slug: &str, json: bool) -> Result<ExitCode> {
    let log = store.audit(slug)?;
    if log.is_empty() && store.get(slug)?.is_none() && store.history(slug)?.is_empty() {
        bail!("no tenant {slug:?} in the state store at {}", state_location(global)?.describe());
    }
    if json {
        print(&format!("{}\n", serde_json::to_string_pretty(&log)?))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = format!(
        "{:<20}  {:<8} {:<29} {:<44} {:<9} {:<11} {:>8}\n",
        "TIME", "RUN", "PHASE", "RESOURCE", "ACTION", "OUTCOME", "TOOK"
    );
    for e in &log {
        let phase = e.phase.map(|p| format!("{:>2}/10 {}", p.number(), p.name())).unwrap_or_default();
        let took = e.duration_ms.map(|ms| format!("{:.1}s", ms as f64 / 1000.0)).unwrap_or_default();
        let resource = e.resource.as_ref().map(ToString::to_string).unwrap_or_default();
        out.push_str(&format!(
            "{:<20}  {:<8} {:<29} {:<44} {:<9} {:<11} {:>8}{}\n",
            e.at,
            e.operation,
            phase,
            resource,
            e.action,
            e.outcome,
            took,
            e.message.as_ref().map(|m| format!("  {m}")).unwrap_or_default()
        ));
    }
    print(&out)?;
    Ok(ExitCode::SUCCESS)
}
