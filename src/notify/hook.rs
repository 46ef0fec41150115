//! Notifications as one more hook of a run ([`NotifyHooks`]): when a tenant's run that reached a
//! phase ends, its outcome is queued in the outbox and delivery is tried at once, in the
//! background; [`NotifyHooks::finish`] waits for those attempts and returns the warnings.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::{Completion, Outcome, TenantInfo};
use crate::apply::{Hooks, RunOutcome};
use crate::phase::Phase;
use crate::plan::TenantPlan;
use crate::state::TenantStatus;

/// The [`Hooks`] that send the platform's notifications and its `tenant.provisioned` event.
pub struct NotifyHooks {
    completion: Completion,
    infos: HashMap<String, TenantInfo>,
    /// When each tenant's first phase started (its provisioning's duration counts from there).
    started: Mutex<HashMap<String, Instant>>,
    sending: Mutex<Vec<tokio::task::JoinHandle<Vec<String>>>>,
}

impl NotifyHooks {
    /// `plans`: the tenants of this run (their tier, region and admin e-mail go into the messages).
    pub fn new(completion: Completion, plans: &[TenantPlan]) -> NotifyHooks {
        NotifyHooks {
            completion,
            infos: plans.iter().map(|p| (p.slug.clone(), TenantInfo::from_plan(p))).collect(),
            started: Mutex::new(HashMap::new()),
            sending: Mutex::new(Vec::new()),
        }
    }

    /// Waits for every delivery attempt started so far; returns the warnings for the user (a
    /// message that could not be queued, or not delivered yet). They never fail the run.
    pub async fn finish(&self) -> Vec<String> {
        let sending = std::mem::take(&mut *self.sending.lock().unwrap_or_else(|e| e.into_inner()));
        let mut warnings = Vec::new();
        for task in sending {
            match task.await {
                Ok(w) => warnings.extend(w),
                Err(e) => warnings.push(format!("a notification task failed: {e}")),
            }
        }
        warnings
    }
}

impl Hooks for NotifyHooks {
    fn phase_started(&self, tenant: &str, _phase: Phase) {
        self.started.lock().unwrap_or_else(|e| e.into_inner()).entry(tenant.to_string()).or_insert_with(Instant::now);
    }

    /// Must be called inside a tokio runtime (the engine's): delivery runs as a task of it.
    fn tenant_finished(&self, tenant: &str, outcome: &RunOutcome) {
        // No phase ran (refused before starting): nothing to report.
        let Some(started) = self.started.lock().unwrap_or_else(|e| e.into_inner()).remove(tenant) else { return };
        let Some(info) = self.infos.get(tenant) else { return };
        let status = serde_json::to_value(outcome.status).ok().and_then(|v| v.as_str().map(str::to_string));
        let o = Outcome {
            info: info.clone(),
            ok: outcome.status == TenantStatus::Active,
            status: status.unwrap_or_default(),
            error: outcome.error.clone(),
            duration: started.elapsed(),
            finished_at: crate::state::now_rfc3339(),
        };
        let completion = self.completion.clone();
        let task = tokio::spawn(async move { completion.send(&o).await });
        self.sending.lock().unwrap_or_else(|e| e.into_inner()).push(task);
    }
}
