//! A tenant's runs, as `GET /api/v1/tenants/{id}/runs` answers them: each `matih apply` or
//! `destroy` with, per phase, when it ran, how it ended and its operations (resource address,
//! action, outcome, duration, error), the run's error and what was rolled back. Built from the
//! tenant's audit log in the state store (every run, durable), or, while the store is held by a
//! running apply (sled), from the progress feed (the runs it still holds, the running one
//! included). Both give the same shape.
//!
//! ```json
//! {"runId": "…", "operation": "apply", "outcome": "failed",        // running ok failed destroyed
//!  "startedAt": "…", "finishedAt": "…", "durationMs": 5120, "error": "tenant \"acme\" failed in phase 6/10 …",
//!  "phases": [{"number": 6, "name": "DEPLOY_INGRESS_CONTROLLER", "state": "ROLLED_BACK",
//!              "startedAt": "…", "finishedAt": "…", "durationMs": 3200,
//!              "operations": [{"address": "kubernetes_deployment.ingress_controller", "action": "create",
//!                              "outcome": "ok", "durationMs": 140, "error": null, "note": null}]}],
//!  "rolledBack": [{"address": "kubernetes_deployment.ingress_controller", "outcome": "deleted", "durationMs": 12}]}
//! ```

use serde::Serialize;

use crate::events::{Event, EventKind};
use crate::phase::Phase;
use crate::state::AuditEntry;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunDoc {
    pub run_id: String,
    pub operation: String,
    /// `running` until the run's end is recorded, then `ok`, `failed` or `destroyed`.
    pub outcome: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: Option<u64>,
    pub error: Option<String>,
    pub phases: Vec<RunPhase>,
    pub rolled_back: Vec<Rollback>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunPhase {
    pub number: u8,
    pub name: String,
    /// `RUNNING`, `COMPLETED`, `FAILED`, `ROLLED_BACK` or `HALTED`.
    pub state: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: Option<u64>,
    pub operations: Vec<Operation>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    pub address: String,
    pub action: String,
    /// `ok` or `failed`.
    pub outcome: String,
    pub at: String,
    pub duration_ms: Option<u64>,
    pub error: Option<String>,
    /// E.g. `after 2 retries`.
    pub note: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollback {
    pub address: String,
    pub phase: Option<u8>,
    /// `deleted` or `failed`.
    pub outcome: String,
    pub duration_ms: Option<u64>,
}

impl RunDoc {
    fn phase(&mut self, n: u8) -> &mut RunPhase {
        if let Some(i) = self.phases.iter().position(|p| p.number == n) {
            return &mut self.phases[i];
        }
        let name = Phase::from_number(n).map(|p| p.name().to_string()).unwrap_or_default();
        self.phases.push(RunPhase { number: n, name, state: "RUNNING".into(), ..Default::default() });
        self.phases.sort_by_key(|p| p.number);
        self.phases.iter_mut().find(|p| p.number == n).expect("just inserted")
    }
}

/// The run with id `id` among `runs`, created (as running) when it is new.
fn run_of<'a>(runs: &'a mut Vec<RunDoc>, id: &str, operation: &str) -> &'a mut RunDoc {
    if let Some(i) = runs.iter().position(|r| r.run_id == id) {
        return &mut runs[i];
    }
    runs.push(RunDoc {
        run_id: id.to_string(),
        operation: operation.to_string(),
        outcome: "running".into(),
        ..Default::default()
    });
    runs.last_mut().expect("just pushed")
}

/// The runs of an audit log (oldest first), newest first. Entries outside any run (a `state rm`)
/// are runs of their own.
pub fn from_audit(entries: &[AuditEntry]) -> Vec<RunDoc> {
    let mut runs: Vec<RunDoc> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let id = if e.run_id.is_empty() { format!("{}-{i}", e.operation) } else { e.run_id.clone() };
        let run = run_of(&mut runs, &id, &e.operation);
        if run.started_at.is_none() {
            run.started_at = Some(e.at.clone());
        }
        let phase = e.phase.map(Phase::number);
        match (e.action.as_str(), phase) {
            ("run", _) => match e.outcome.as_str() {
                "started" => run.started_at = Some(e.at.clone()),
                outcome => {
                    run.outcome = outcome.to_string();
                    run.finished_at = Some(e.at.clone());
                    if e.duration_ms.is_some() {
                        run.duration_ms = e.duration_ms;
                    }
                    if outcome == "failed" {
                        run.error = e.message.clone();
                    }
                }
            },
            ("phase", Some(n)) => {
                let p = run.phase(n);
                if e.outcome == "started" {
                    p.started_at = Some(e.at.clone());
                } else {
                    p.state = e.outcome.to_ascii_uppercase();
                    p.finished_at = Some(e.at.clone());
                    p.duration_ms = e.duration_ms;
                }
            }
            ("rollback", _) => run.rolled_back.push(Rollback {
                address: e.resource.as_ref().map(ToString::to_string).unwrap_or_default(),
                phase,
                outcome: e.outcome.clone(),
                duration_ms: e.duration_ms,
            }),
            (action, Some(n)) if e.resource.is_some() => {
                let failed = e.outcome == "failed";
                let op = Operation {
                    address: e.resource.as_ref().map(ToString::to_string).unwrap_or_default(),
                    action: action.to_string(),
                    outcome: e.outcome.clone(),
                    at: e.at.clone(),
                    duration_ms: e.duration_ms,
                    error: if failed { e.message.clone() } else { None },
                    note: if failed { None } else { e.message.clone() },
                };
                run.phase(n).operations.push(op);
            }
            _ => {
                if run.outcome == "running" && e.run_id.is_empty() {
                    run.outcome = e.outcome.clone();
                    run.finished_at = Some(e.at.clone());
                }
            }
        }
    }
    finish(runs)
}

/// The runs the progress feed holds (events oldest first), newest first.
pub fn from_events(events: &[Event]) -> Vec<RunDoc> {
    let mut runs: Vec<RunDoc> = Vec::new();
    for ev in events {
        let Some(id) = ev.run.as_deref() else { continue };
        let operation = if ev.destroy == Some(true) { "destroy" } else { "apply" };
        let run = run_of(&mut runs, id, operation);
        if run.started_at.is_none() {
            run.started_at = Some(ev.time.clone());
        }
        if ev.destroy == Some(true) {
            run.operation = "destroy".into();
        }
        match (ev.kind, ev.phase) {
            (EventKind::PhaseStarted, Some(n)) => {
                let p = run.phase(n);
                p.state = "RUNNING".into();
                p.started_at = Some(ev.time.clone());
            }
            (EventKind::PhaseFinished, Some(n)) => {
                let p = run.phase(n);
                p.state = if ev.outcome.as_deref() == Some("completed") { "COMPLETED" } else { "FAILED" }.into();
                p.finished_at = Some(ev.time.clone());
                p.duration_ms = ev.duration_ms;
            }
            (EventKind::ResourceFinished, Some(n)) => {
                let failed = ev.outcome.as_deref() != Some("ok");
                run.phase(n).operations.push(Operation {
                    address: ev.resource.clone().unwrap_or_default(),
                    action: ev.action.clone().unwrap_or_default(),
                    outcome: if failed { "failed" } else { "ok" }.into(),
                    at: ev.time.clone(),
                    duration_ms: ev.duration_ms,
                    error: if failed { ev.error.clone() } else { None },
                    note: None,
                });
            }
            (EventKind::RollbackStarted, Some(n)) => {
                run.phase(n).state = "ROLLED_BACK".into();
            }
            (EventKind::TenantFinished, _) => {
                run.outcome = match ev.tenant_status {
                    Some(crate::state::TenantStatus::Active) => "ok",
                    Some(crate::state::TenantStatus::Destroyed) => "destroyed",
                    _ => "failed",
                }
                .into();
                run.finished_at = Some(ev.time.clone());
                run.duration_ms = ev.duration_ms;
                run.error = ev.error.clone();
            }
            _ => {}
        }
    }
    finish(runs)
}

/// Newest first; a run without a recorded end is still running (or was cut short).
fn finish(mut runs: Vec<RunDoc>) -> Vec<RunDoc> {
    runs.reverse();
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::ResourceAddr;

    fn entry(
        run: &str,
        phase: Option<u8>,
        res: Option<&str>,
        action: &str,
        outcome: &str,
        ms: Option<u64>,
    ) -> AuditEntry {
        let mut e = AuditEntry::new("acme", "apply", action, outcome);
        e.at = "2026-02-12T10:00:00Z".into();
        e.run_id = run.into();
        e.phase = phase.and_then(Phase::from_number);
        e.resource = res.map(|r| {
            let (k, n) = r.split_once('.').unwrap();
            ResourceAddr::new(k, n)
        });
        e.duration_ms = ms;
        e
    }

    #[test]
    fn an_audit_log_becomes_runs_newest_first_with_operations_errors_and_rollbacks() {
        let mut failed =
            entry("r2", Some(6), Some("kubernetes_service.ingress_controller"), "create", "failed", Some(900));
        failed.message = Some("no external IP".into());
        let mut run_failed = entry("r2", Some(6), None, "run", "failed", None);
        run_failed.message = Some("tenant \"acme\" failed in phase 6/10".into());
        let log = vec![
            entry("r1", None, None, "run", "started", None),
            entry("r1", Some(1), None, "phase", "started", None),
            entry("r1", Some(1), Some("kubernetes_namespace.tenant"), "create", "ok", Some(40)),
            entry("r1", Some(1), None, "phase", "completed", Some(55)),
            entry("r1", None, None, "run", "ok", Some(60)),
            entry("r2", None, None, "run", "started", None),
            entry("r2", Some(6), None, "phase", "started", None),
            entry("r2", Some(6), Some("kubernetes_deployment.ingress_controller"), "create", "ok", Some(100)),
            failed,
            entry("r2", Some(6), Some("kubernetes_deployment.ingress_controller"), "rollback", "deleted", Some(7)),
            entry("r2", Some(6), None, "phase", "rolled_back", Some(1200)),
            run_failed,
        ];
        let runs = from_audit(&log);
        assert_eq!(runs.len(), 2);
        let (last, first) = (&runs[0], &runs[1]);
        assert_eq!((first.run_id.as_str(), first.outcome.as_str(), first.duration_ms), ("r1", "ok", Some(60)));
        assert_eq!(first.phases[0].operations[0].address, "kubernetes_namespace.tenant");
        assert_eq!(first.phases[0].state, "COMPLETED");
        assert_eq!(last.outcome, "failed");
        assert_eq!(last.error.as_deref(), Some("tenant \"acme\" failed in phase 6/10"));
        let p6 = &last.phases[0];
        assert_eq!((p6.number, p6.state.as_str(), p6.duration_ms), (6, "ROLLED_BACK", Some(1200)));
        assert_eq!(p6.operations.len(), 2);
        assert_eq!(p6.operations[1].error.as_deref(), Some("no external IP"));
        assert_eq!(last.rolled_back.len(), 1);
        assert_eq!(last.rolled_back[0].address, "kubernetes_deployment.ingress_controller");
    }

    #[test]
    fn feed_events_become_the_same_runs_the_running_one_included() {
        let mut evs = Vec::new();
        let mut ev = |kind, phase: Option<u8>, f: &dyn Fn(&mut Event)| {
            let mut e = Event::new("acme", kind);
            e.run = Some("x".into());
            e.phase = phase;
            f(&mut e);
            evs.push(e);
        };
        ev(EventKind::PhaseStarted, Some(1), &|_| {});
        ev(EventKind::ResourceFinished, Some(1), &|e| {
            e.resource = Some("kubernetes_namespace.tenant".into());
            e.action = Some("create".into());
            e.outcome = Some("ok".into());
            e.duration_ms = Some(30);
        });
        ev(EventKind::PhaseFinished, Some(1), &|e| {
            e.outcome = Some("completed".into());
            e.duration_ms = Some(50);
        });
        ev(EventKind::PhaseStarted, Some(2), &|_| {});
        let runs = from_events(&evs);
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].outcome, "running");
        assert_eq!(runs[0].phases.iter().map(|p| p.state.as_str()).collect::<Vec<_>>(), ["COMPLETED", "RUNNING"]);
        assert_eq!(runs[0].phases[0].operations[0].duration_ms, Some(30));
    }
}
