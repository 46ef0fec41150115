//! What `matih status SLUG --history` prints: the audit log as a table, oldest first.

use matih::state::AuditEntry;

pub fn audit_text(log: &[AuditEntry]) -> String {
    let mut out = format!(
        "{:<20}  {:<8} {:<29} {:<44} {:<9} {:<11} {:>8}\n",
        "TIME", "RUN", "PHASE", "RESOURCE", "ACTION", "OUTCOME", "TOOK"
    );
    for e in log {
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
    out
}
