//! The provisioning status document: what `GET /api/v1/tenants/{id}/provisioning/status` returns,
//! what a WebSocket client receives first (`{"type":"snapshot","status":…}`), and what the change
//! feed carries as snapshots. Built from a [`TenantState`], then kept current by folding progress
//! events ([`super::Event`]) into it ([`StatusDoc::fold`]).
//!
//! ```json
//! {
//!   "tenantId": "550e8400-e29b-41d4-a716-446655440000",
//!   "slug": "acme",
//!   "status": "PROVISIONING",                 // PENDING PROVISIONING ACTIVE FAILED DESTROYING DESTROYED
//!   "currentPhase": 3,                        // 1..10, null when no phase runs
//!   "currentPhaseName": "DEPLOY_CORE_SERVICES",
//!   "totalPhases": 10,
//!   "phases": [                               // always ten, in run order
//!     {"number": 1, "name": "CREATE_NAMESPACE", "state": "COMPLETED",   // PENDING, or a state::PhaseState: RUNNING COMPLETED FAILED ROLLED_BACK HALTED
//!      "startedAt": "2026-02-12T10:00:00Z", "finishedAt": "2026-02-12T10:00:01Z", "durationMs": 812, "operations": 5}
//!   ],
//!   "provisioningError": null,
//!   "provisioningCompletedAt": null,
//!   "resources": {"total": 21, "byPhase": {"1": 5, "2": 6, "3": 10}},
//!   "updatedAt": "2026-02-12T10:00:04Z",
//!   "serial": 42,                             // the state serial the document was built from (null: from the feed)
//!   "tier": "professional", "region": "eastus",   // from the namespace's matih.ai/* labels (absent before phase 1)
//!   "outputs": [                              // what the tenant's resources returned; never a secret
//!     {"resource": "kubernetes_service.ingress_controller", "name": "load_balancer_ip", "value": "10.0.0.7"},
//!     {"resource": "kubernetes_ingress.tenant", "name": "url", "value": "https://acme.matih.ai"}
//!   ]
//! }
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Event, EventKind};
use crate::phase::Phase;
use crate::state::{PhaseState, TenantState, TenantStatus};
use crate::value::Value;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDoc {
    pub tenant_id: String,
    pub slug: String,
    pub status: TenantStatus,
    pub current_phase: Option<u8>,
    pub current_phase_name: Option<String>,
    pub total_phases: u8,
    pub phases: Vec<PhaseDoc>,
    pub provisioning_error: Option<String>,
    pub provisioning_completed_at: Option<String>,
    pub resources: ResourceCounts,
    pub updated_at: String,
    pub serial: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<OutputDoc>,
}

/// One value a tenant's resources returned or expose (a LoadBalancer IP, the zone's name servers,
/// an Ingress URL). Secrets are never among them: a sensitive value is left out, not masked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputDoc {
    pub resource: String,
    pub name: String,
    pub value: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseDoc {
    pub number: u8,
    pub name: String,
    pub state: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: Option<u64>,
    pub operations: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceCounts {
    pub total: usize,
    /// Phase number (as a string, JSON keys are strings) → resources recorded in that phase.
    pub by_phase: BTreeMap<String, usize>,
}

/// The one-line summary of a tenant in `GET /api/v1/tenants`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantSummary {
    pub tenant_id: String,
    pub slug: String,
    pub status: TenantStatus,
    pub current_phase: Option<u8>,
    pub provisioning_error: Option<String>,
    pub provisioning_completed_at: Option<String>,
    pub resources: usize,
    pub updated_at: String,
    pub current_phase_name: Option<String>,
    pub tier: Option<String>,
    pub region: Option<String>,
    /// When the last run's first phase started.
    pub started_at: Option<String>,
    /// The phases of the last run, added up.
    pub duration_ms: u64,
    /// Per phase of the last run (1..10): its state, as in [`PhaseDoc::state`].
    pub phases: Vec<String>,
}

/// A label every tenant object carries (`matih.ai/tier`, `matih.ai/region`), read from the
/// namespace's recorded attributes.
fn label(st: &TenantState, key: &str) -> Option<String> {
    let ns = st.resources.iter().find(|(a, _)| a.kind == "kubernetes_namespace")?.1;
    let labels = ns.attrs.get("metadata")?.as_map()?.get("labels")?.as_map()?;
    labels.get(key)?.as_str().map(str::to_string)
}

/// A recorded value as JSON; `None` for a secret (or anything holding one) and for values not
/// known yet.
fn plain_json(v: &Value) -> Option<serde_json::Value> {
    use serde_json::Value as J;
    Some(match v {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(n) => J::from(*n),
        Value::String(s) => J::String(s.clone()),
        Value::List(items) => J::Array(items.iter().map(plain_json).collect::<Option<_>>()?),
        Value::Map(m) => J::Object(m.iter().map(|(k, v)| Some((k.clone(), plain_json(v)?))).collect::<Option<_>>()?),
        Value::Ref { .. } | Value::Computed { .. } | Value::Secret(_) => return None,
    })
}

/// What an operator looks for once a tenant is up: every output its resources returned (the
/// LoadBalancer IP, the zone's name servers), the DNS zone, and the Ingress hosts as URLs.
fn outputs(st: &TenantState) -> Vec<OutputDoc> {
    let mut out = Vec::new();
    for (addr, r) in &st.resources {
        let resource = addr.to_string();
        for (name, v) in &r.outputs {
            if let Some(value) = plain_json(v) {
                out.push(OutputDoc { resource: resource.clone(), name: name.clone(), value });
            }
        }
        if addr.kind == "dns_zone" {
            if let Some(name) = r.attrs.get("name").and_then(Value::as_str) {
                out.push(OutputDoc { resource: resource.clone(), name: "zone".into(), value: name.into() });
            }
        }
        if addr.kind == "kubernetes_ingress" {
            let rules = r.attrs.get("spec").and_then(Value::as_map).and_then(|s| s.get("rules"));
            if let Some(Value::List(rules)) = rules {
                for host in rules.iter().filter_map(|r| r.as_map()?.get("host")?.as_str()) {
                    let value = format!("https://{host}").into();
                    out.push(OutputDoc { resource: resource.clone(), name: "url".into(), value });
                }
            }
        }
    }
    out
}

fn pending_phase(p: Phase) -> PhaseDoc {
    PhaseDoc {
        number: p.number(),
        name: p.name().to_string(),
        state: "PENDING".into(),
        started_at: None,
        finished_at: None,
        duration_ms: None,
        operations: 0,
    }
}

impl StatusDoc {
    pub fn from_state(st: &TenantState) -> StatusDoc {
        let phases = Phase::ALL
            .iter()
            .map(|p| match st.phases.get(p) {
                Some(run) => PhaseDoc {
                    number: p.number(),
                    name: p.name().to_string(),
                    state: run.state.name().to_string(),
                    started_at: Some(run.started_at.clone()),
                    finished_at: run.finished_at.clone(),
                    duration_ms: run.duration_ms,
                    operations: run.operations,
                },
                None => pending_phase(*p),
            })
            .collect();
        let mut by_phase = BTreeMap::new();
        for r in st.resources.values() {
            *by_phase.entry(r.phase.number().to_string()).or_insert(0) += 1;
        }
        StatusDoc {
            tenant_id: st.tenant_id.clone(),
            slug: st.slug.clone(),
            status: st.status,
            current_phase: st.current_phase.map(Phase::number),
            current_phase_name: st.current_phase.map(|p| p.name().to_string()),
            total_phases: 10,
            phases,
            provisioning_error: st.provisioning_error.clone(),
            provisioning_completed_at: st.provisioning_completed_at.clone(),
            resources: ResourceCounts { total: st.resources.len(), by_phase },
            updated_at: st.updated_at.clone(),
            serial: Some(st.serial),
            tier: label(st, "matih.ai/tier"),
            region: label(st, "matih.ai/region"),
            outputs: outputs(st),
        }
    }

    /// A tenant the feed names but no state describes yet (its first apply has just started).
    pub fn empty(slug: &str, tenant_id: &str) -> StatusDoc {
        StatusDoc {
            tenant_id: tenant_id.to_string(),
            slug: slug.to_string(),
            status: TenantStatus::Pending,
            current_phase: None,
            current_phase_name: None,
            total_phases: 10,
            phases: Phase::ALL.iter().map(|p| pending_phase(*p)).collect(),
            provisioning_error: None,
            provisioning_completed_at: None,
            resources: ResourceCounts::default(),
            updated_at: String::new(),
            serial: None,
            tier: None,
            region: None,
            outputs: Vec::new(),
        }
    }

    pub fn summary(&self) -> TenantSummary {
        TenantSummary {
            tenant_id: self.tenant_id.clone(),
            slug: self.slug.clone(),
            status: self.status,
            current_phase: self.current_phase,
            provisioning_error: self.provisioning_error.clone(),
            provisioning_completed_at: self.provisioning_completed_at.clone(),
            resources: self.resources.total,
            updated_at: self.updated_at.clone(),
            current_phase_name: self.current_phase_name.clone(),
            tier: self.tier.clone(),
            region: self.region.clone(),
            started_at: self.phases.iter().filter_map(|p| p.started_at.clone()).min(),
            duration_ms: self.phases.iter().filter_map(|p| p.duration_ms).sum(),
            phases: self.phases.iter().map(|p| p.state.clone()).collect(),
        }
    }

    fn phase_mut(&mut self, n: Option<u8>) -> Option<&mut PhaseDoc> {
        let n = n?;
        self.phases.iter_mut().find(|p| p.number == n)
    }

    /// Brings the document up to date with one event of the feed. A snapshot replaces it whole;
    /// the other events change what they are about, so that between two snapshots the document
    /// follows the apply resource by resource.
    pub fn fold(&mut self, ev: &Event) {
        if !ev.time.is_empty() {
            self.updated_at = ev.time.clone();
        }
        match &ev.kind {
            EventKind::Snapshot => {
                if let Some(s) = &ev.status {
                    *self = (**s).clone();
                }
            }
            EventKind::PhaseStarted => {
                if !matches!(self.status, TenantStatus::Destroying) {
                    self.status =
                        if ev.destroy.unwrap_or(false) { TenantStatus::Destroying } else { TenantStatus::Provisioning };
                }
                self.provisioning_error = None;
                self.current_phase = ev.phase;
                self.current_phase_name = ev.phase.and_then(Phase::from_number).map(|p| p.name().to_string());
                let time = ev.time.clone();
                if let Some(p) = self.phase_mut(ev.phase) {
                    p.state = PhaseState::Running.name().into();
                    p.started_at = Some(time);
                    p.finished_at = None;
                    p.duration_ms = None;
                    p.operations = 0;
                }
            }
            EventKind::ResourceFinished if ev.outcome.as_deref() == Some("ok") => {
                match ev.action.as_deref() {
                    Some("create") => self.count(ev.phase, 1),
                    Some("delete") => self.count(ev.phase, -1),
                    _ => {}
                }
                if let Some(p) = self.phase_mut(ev.phase) {
                    p.operations += 1;
                }
            }
            EventKind::PhaseFinished => {
                let (time, ok) = (ev.time.clone(), ev.outcome.as_deref() == Some("completed"));
                if let Some(p) = self.phase_mut(ev.phase) {
                    p.state = if ok { PhaseState::Completed } else { PhaseState::Failed }.name().into();
                    p.finished_at = Some(time);
                    p.duration_ms = ev.duration_ms;
                }
                if !ok {
                    self.status = TenantStatus::Failed;
                    self.provisioning_error = ev.error.clone();
                }
            }
            EventKind::TenantFinished => {
                if let Some(s) = ev.tenant_status {
                    self.status = s;
                }
                if self.status == TenantStatus::Active {
                    self.current_phase = None;
                    self.current_phase_name = None;
                    self.provisioning_error = None;
                    self.provisioning_completed_at = Some(ev.time.clone());
                } else if ev.error.is_some() {
                    self.provisioning_error = ev.error.clone();
                }
            }
            _ => {}
        }
    }

    fn count(&mut self, phase: Option<u8>, delta: isize) {
        let Some(n) = phase else { return };
        let e = self.resources.by_phase.entry(n.to_string()).or_insert(0);
        *e = e.saturating_add_signed(delta);
        self.resources.total = self.resources.total.saturating_add_signed(delta);
    }
}
