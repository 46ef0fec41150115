//! State records as the stores hold them, decoded as the stores decode them (serde JSON of the
//! state types) and then used as matih uses them. The first byte picks the record:
//! - 0: a sled `tenants/SLUG` record (the whole state, resources included): planned against
//!   acme's graph and rendered, its status document and outputs built (`matih plan`, `status`,
//!   `output`, `serve`);
//! - 1: a PostgreSQL `matih_tenants.state` head plus `matih_resources` rows (`address\trecord`
//!   lines after the first line), assembled as `PostgresStore::read_state` does, then as 0;
//! - 2: a history entry (sled `history/`, `matih_history`) (`matih state history`);
//! - 3: audit entries, one JSON a line (sled `audit/`, `matih_audit`): the runs `serve` builds;
//! - 4: progress-feed lines (`feed/SLUG.jsonl`, `matih_feed`): folded into a status document as
//!   `serve` does, and the runs built from them;
//! - 5: a lock record (sled `locks/`, `matih_locks`).

use super::acme_graph;
use matih::addr::ResourceAddr;
use matih::events::status::StatusDoc;
use matih::events::Event;
use matih::plan::{Plan, TextOptions};
use matih::state::{AuditEntry, HistoryEntry, LockInfo, ResourceState, TenantState};

/// What the CLI and the status server do with a tenant's state.
fn use_state(st: &TenantState) {
    let graph = acme_graph();
    let tp = matih::plan::diff(graph, Some(st), None);
    let plan = Plan::new(vec![tp]);
    let _ = matih::plan::render_text(&plan, &TextOptions { color: false, digest: None });
    let doc = StatusDoc::from_state(st);
    let _ = doc.summary();
    let _ = matih::workflow::outputs::tenant_outputs(st);
    let _ = serde_json::to_string(st).expect("a decoded state encodes again");
}

/// One input.
pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    match mode % 6 {
        0 => {
            if let Ok(st) = serde_json::from_str::<TenantState>(text) {
                use_state(&st);
            }
        }
        1 => {
            let (head, rows) = text.split_once('\n').unwrap_or((text, ""));
            let Ok(mut st) = serde_json::from_str::<TenantState>(head) else { return };
            st.resources.clear();
            for row in rows.lines() {
                let Some((address, record)) = row.split_once('\t') else { return };
                let Ok(addr) = address.parse::<ResourceAddr>() else { return };
                let Ok(rs) = serde_json::from_str::<ResourceState>(record) else { return };
                st.resources.insert(addr, rs);
            }
            use_state(&st);
        }
        2 => {
            if let Ok(h) = serde_json::from_str::<HistoryEntry>(text) {
                use_state(&h.state);
            }
        }
        3 => {
            let entries: Vec<AuditEntry> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
            let runs = matih::serve::runs::from_audit(&entries);
            let _ = serde_json::to_string(&runs).unwrap();
        }
        4 => {
            let events: Vec<Event> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
            let mut doc = StatusDoc::empty("acme", "550e8400-e29b-41d4-a716-446655440000");
            for ev in &events {
                doc.fold(ev);
            }
            let _ = doc.summary();
            let runs = matih::serve::runs::from_events(&events);
            let _ = serde_json::to_string(&runs).unwrap();
        }
        _ => {
            if let Ok(lock) = serde_json::from_str::<LockInfo>(text) {
                let _ = serde_json::to_string(&lock).unwrap();
            }
        }
    }
}
