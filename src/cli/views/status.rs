//! What `matih status` prints: the status of a tenant (text and JSON), or of a destroyed one.

pub use matih::serve::status_name;
use matih::state::{HistoryEntry, TenantState, TenantStatus};

/// `matih status SLUG --json` of a tenant whose state was removed by a destroy (`last`: the
/// last state, from its history).
pub fn destroyed_json(slug: &str, last: &HistoryEntry) -> serde_json::Value {
    serde_json::json!({
        "slug": slug,
        "tenant_id": last.state.tenant_id,
        "status": TenantStatus::Destroyed,
        "destroyed_at": last.at,
        "lineage": last.state.lineage,
        "last_serial": last.serial,
        "duration_ms": last.state.provisioning_duration_ms,
    })
}

/// `matih status SLUG` of a destroyed tenant.
pub fn destroyed_text(slug: &str, last: &HistoryEntry) -> String {
    format!(
        "Tenant:     {slug} ({})\nStatus:     DESTROYED at {} (its state was removed; `matih status {slug} \
         --history` shows its audit log, `matih state history {slug}` its earlier states)\n",
        last.state.tenant_id, last.at
    )
}

/// `matih status SLUG --json`.
pub fn status_json(st: &TenantState) -> serde_json::Value {
    serde_json::json!({
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
    })
}

/// `matih status SLUG`.
pub fn status_text(st: &TenantState) -> String {
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
    out
}
