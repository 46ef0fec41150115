//! The one progress event: what `matih apply --progress json` prints, what the change feed holds
//! (the feed files `<state>/feed/<slug>.jsonl` and, on PostgreSQL, the `matih_feed` table), and
//! what `matih serve` sends over its WebSocket. One typed [`Event`], one serde shape, versioned by
//! its `version` field ([`VERSION`]). Apply produces the events (`apply::EventHooks`); `matih serve`
//! folds them into the status document ([`status::StatusDoc`]).
//!
//! # The events (version 1)
//!
//! One JSON object per event (one line in a stream or a feed file). Every object has `version`
//! (absent in lines written before it existed: they are version 1 too), `seq` (increasing within
//! one run of matih; the gaps in `--progress json` are snapshots, which only the feed carries),
//! `time` (RFC 3339, UTC, milliseconds) and `type`; every event about a tenant has `tenant` (its
//! slug) and `run` (one `matih apply`/`destroy` run of that tenant). Fields that do not apply are
//! absent. Secrets never appear: events carry names, counts, times and provider error messages.
//!
//! | `type` | other fields | where |
//! |---|---|---|
//! | `plan` | `toAdopt`, `toAdd`, `toChange`, `toDestroy` (counts over the fleet) | stream, before the run |
//! | `tenant_started` | `changes` (operations planned) | stream |
//! | `phase_started` | `phase` (1–10), `phaseName`, `destroy` (`true` in a destroy) | stream, feed |
//! | `resource_started` | `phase`, `phaseName`, `resource` (`kind.name`), `action` (`create`, `update`, `replace`, `delete`) | stream, feed |
//! | `resource_retrying` | `phase`, `phaseName`, `resource`, `error`, `attempt`, `delayMs` | stream, feed |
//! | `resource_finished` | `phase`, `phaseName`, `resource`, `action`, `outcome` (`ok`, `failed`), `durationMs` (when ok) or `error` | stream, feed |
//! | `rollback_started` | `phase`, `phaseName`, `resources` (to delete again) | stream, feed |
//! | `phase_finished` | `phase`, `phaseName`, `outcome` (`completed`, `failed`), `durationMs`, `error` (when failed) | stream, feed |
//! | `snapshot` | `status`: the whole status document ([`status::StatusDoc`]), before the first phase, after every phase, at the end | feed |
//! | `tenant_finished` | `tenantStatus` (`ACTIVE`, `PROVISIONING` for part of a new tenant, `DESTROYED`, `FAILED`), `durationMs`, `operations` (finished), `error` | stream, feed (when a phase ran) |
//! | `tenant_note` | `note`: set aside (another run holds it), planned again, nothing left to do | stream |
//! | `summary` | `outcome` (`ok`, `failed`), `tenants`, `failed`, `appliedByAnotherRun`, `adopted`, `added`, `changed`, `destroyed`, `durationMs` | stream, after the run |
//!
//! "stream" is `--progress json` on standard output; "feed" is the change feed (files, the
//! PostgreSQL table) and so the WebSocket. A reader skips a `type` it does not know.
//!
//! Before version 1, `--progress json` had its own names: `event` (now `type`), `phase_name`
//! (`phaseName`), `elapsed_ms` and `duration_ms` (`durationMs`), `delay_ms` (`delayMs`), `ok`
//! (`outcome`), `status` of `tenant_finished` (`tenantStatus`), the plan's `add`/`change`/`destroy`
//! (`toAdd`/`toChange`/`toDestroy`), the summary's `ok` (`outcome`), `applied_by_another_run`
//! (`appliedByAnotherRun`) and `elapsed_ms` (`durationMs`). The feed's shape is unchanged.

pub mod status;

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::phase::Phase;
use crate::state::TenantStatus;
use status::StatusDoc;

/// The version of the event shape this matih writes.
pub const VERSION: u32 = 1;

fn unversioned() -> u32 {
    1
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Plan,
    TenantStarted,
    Snapshot,
    PhaseStarted,
    PhaseFinished,
    ResourceStarted,
    ResourceFinished,
    ResourceRetrying,
    RollbackStarted,
    TenantFinished,
    TenantNote,
    Summary,
    /// A kind written by a newer matih.
    #[serde(other)]
    Unknown,
}

/// What a plan will do, over the fleet (the `plan` event).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanCounts {
    /// Existing objects the plan takes over (adoption).
    #[serde(default)]
    pub to_adopt: usize,
    pub to_add: usize,
    pub to_change: usize,
    pub to_destroy: usize,
}

/// What a run over the fleet did (the `summary` event; its outcome and duration are the event's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    pub tenants: usize,
    pub failed: usize,
    pub applied_by_another_run: usize,
    /// Existing objects taken over (adoption); absent in events written before adoption existed.
    #[serde(default)]
    pub adopted: usize,
    pub added: usize,
    pub changed: usize,
    pub destroyed: usize,
}

/// One progress event (see the module documentation for each type's fields).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[serde(default = "unversioned")]
    pub version: u32,
    #[serde(default)]
    pub seq: u64,
    #[serde(default)]
    pub time: String,
    /// The tenant's slug; empty (and absent) for `plan` and `summary`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tenant: String,
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// Identifies one `matih apply`/`destroy` run of the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// `ok` / `failed` for resources and the summary, `completed` / `failed` for phases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// For `rollback_started`: how many resources are deleted again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<usize>,
    /// Set on `phase_started` of a destroy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destroy: Option<bool>,
    /// For `tenant_started`: the operations planned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<usize>,
    /// For `tenant_finished`: the operations that finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operations: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_status: Option<TenantStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Box<StatusDoc>>,
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanCounts>,
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub summary: Option<RunSummary>,
}

impl Event {
    pub fn new(tenant: &str, kind: EventKind) -> Event {
        Event {
            version: VERSION,
            seq: 0,
            time: now_millis(),
            tenant: tenant.to_string(),
            kind,
            run: None,
            phase: None,
            phase_name: None,
            resource: None,
            action: None,
            outcome: None,
            duration_ms: None,
            error: None,
            attempt: None,
            delay_ms: None,
            resources: None,
            destroy: None,
            changes: None,
            operations: None,
            tenant_status: None,
            note: None,
            status: None,
            plan: None,
            summary: None,
        }
    }

    pub fn snapshot(doc: StatusDoc) -> Event {
        let mut e = Event::new(&doc.slug, EventKind::Snapshot);
        e.status = Some(Box::new(doc));
        e
    }

    /// The `plan` event, before a run.
    pub fn plan(counts: PlanCounts) -> Event {
        Event { plan: Some(counts), ..Event::new("", EventKind::Plan) }
    }

    /// The `summary` event, after a run.
    pub fn summary(summary: RunSummary, ok: bool, duration_ms: u64) -> Event {
        Event {
            summary: Some(summary),
            outcome: Some(if ok { "ok" } else { "failed" }.into()),
            duration_ms: Some(duration_ms),
            ..Event::new("", EventKind::Summary)
        }
    }

    /// The event with its phase's number and name set.
    pub fn in_phase(mut self, phase: Option<Phase>) -> Event {
        self.phase = phase.map(Phase::number);
        self.phase_name = phase.map(|p| p.name().to_string());
        self
    }
}

/// RFC 3339 UTC with milliseconds.
pub fn now_millis() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests;
