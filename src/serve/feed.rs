//! The change feed: one append-only JSON-lines file per tenant, `<state>/feed/<slug>.jsonl`, written
//! by the process that applies ([`FeedHooks`], a [`Hooks`] implementation) and read by `matih serve`
//! (another process: the sled store is process-exclusive, so while an apply runs the feed is the only
//! thing serve can read).
//!
//! One line per event:
//!
//! ```json
//! {"seq":7,"time":"2026-02-12T10:00:01.204Z","tenant":"acme","type":"phase_started","run":"…","phase":3,"phaseName":"DEPLOY_CORE_SERVICES"}
//! {"seq":8,"time":"…","tenant":"acme","type":"resource_started","phase":3,"resource":"kubernetes_deployment.query_engine","action":"create"}
//! {"seq":9,"time":"…","tenant":"acme","type":"resource_finished","phase":3,"resource":"…","action":"create","outcome":"ok","durationMs":311}
//! {"seq":10,"time":"…","tenant":"acme","type":"resource_retrying","phase":3,"error":"…","attempt":1,"delayMs":500}
//! {"seq":11,"time":"…","tenant":"acme","type":"phase_finished","phase":3,"outcome":"completed","durationMs":1290}
//! {"seq":12,"time":"…","tenant":"acme","type":"snapshot","status":{…the status document…}}
//! {"seq":13,"time":"…","tenant":"acme","type":"rollback_started","phase":4,"resources":2}
//! {"seq":14,"time":"…","tenant":"acme","type":"tenant_finished","tenantStatus":"ACTIVE","durationMs":9120}
//! ```
//!
//! A snapshot (the whole [`StatusDoc`], read from the store in the applying process) is written
//! before the first phase of a run, after every phase, and at the end; between snapshots readers
//! fold the events into the last one. Writing never fails or slows the apply beyond one buffered
//! `write` per event: an I/O error is logged once and the feed is given up for that tenant.
//! A file over [`ROTATE_BYTES`] is renamed to `<slug>.jsonl.1` when a run starts.
//!
//! On the PostgreSQL state backend the same events (the same JSON) are also published through the
//! store ([`crate::state::FeedPublisher`]: the `matih_feed` table and `NOTIFY`), so that `matih serve`
//! on another machine, which cannot see these files, follows the run live. Publishing is queued and
//! batched in the background; the end of a tenant's run waits (a few seconds at most) until its
//! events are written.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::addr::ResourceAddr;
use crate::apply::Hooks;
use crate::phase::Phase;
use crate::plan::{Action, TenantPlan};
use crate::provider::ProviderError;
use crate::state::{FeedPublisher, StateStore, TenantStatus};

use super::status::StatusDoc;
pub use super::status::{now_millis, Event, EventKind};
use crate::notify::{self, Completion, TenantInfo};

/// A feed file larger than this is rotated when a run starts.
pub const ROTATE_BYTES: u64 = 8 * 1024 * 1024;

/// How long the end of a tenant's run waits for its events to reach the shared feed, at most.
pub const SHARED_FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// The directory of the feed files inside a state directory.
pub fn feed_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("feed")
}

/// The feed file of a tenant. `slug` must already be checked (a DNS-1123 label).
pub fn feed_file(state_dir: &Path, slug: &str) -> PathBuf {
    feed_dir(state_dir).join(format!("{slug}.jsonl"))
}

struct TenantFeed {
    file: Option<File>,
    run: String,
    phase: Option<Phase>,
    started: Option<Instant>,
    snapshot_written: bool,
}

/// A [`Hooks`] implementation that appends every event to the tenant's feed file (and publishes it
/// through the state store when the backend shares a feed), forwards it to `inner` (the console),
/// and, when the tenant's run ends ([`FeedHooks::tenant_finished`]), writes
/// the final snapshot and hands the outcome to [`notify`] (notifications and the
/// `tenant.provisioned` event, through the outbox).
pub struct FeedHooks {
    state_dir: PathBuf,
    store: Arc<dyn StateStore>,
    inner: Arc<dyn Hooks>,
    destroy: bool,
    seq: AtomicU64,
    tenants: Mutex<HashMap<String, TenantFeed>>,
    infos: HashMap<String, TenantInfo>,
    completion: Option<Completion>,
    /// The backend's shared feed (PostgreSQL), if it has one.
    shared: Option<FeedPublisher>,
}

impl FeedHooks {
    /// `plans`: the tenants of this run (their tier, region and admin e-mail go into notifications
    /// and events); `completion`: what to do when a tenant's provisioning ends (None: nothing).
    pub fn new(
        state_dir: &Path,
        store: Arc<dyn StateStore>,
        inner: Arc<dyn Hooks>,
        plans: &[TenantPlan],
        destroy: bool,
        completion: Option<Completion>,
    ) -> FeedHooks {
        let infos = plans.iter().map(|p| (p.slug.clone(), TenantInfo::from_plan(p))).collect();
        FeedHooks {
            state_dir: state_dir.to_path_buf(),
            shared: store.feed_publisher(),
            store,
            inner,
            destroy,
            seq: AtomicU64::new(0),
            tenants: Mutex::new(HashMap::new()),
            infos,
            completion,
        }
    }

    fn open(&self, slug: &str) -> Option<File> {
        let dir = feed_dir(&self.state_dir);
        let path = feed_file(&self.state_dir, slug);
        let result = (|| {
            crate::state::private::create_dir_all(&dir)?;
            if std::fs::metadata(&path).map(|m| m.len() > ROTATE_BYTES).unwrap_or(false) {
                std::fs::rename(&path, path.with_extension("jsonl.1"))?;
            }
            let mut options = OpenOptions::new();
            options.create(true).append(true);
            crate::state::private::options(options).open(&path)
        })();
        match result {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(
                    "progress feed {} cannot be written: {e}; live progress is off for {slug}",
                    path.display()
                );
                None
            }
        }
    }

    /// Appends `ev` to the tenant's feed (giving it a sequence number and the run id).
    fn emit(&self, mut ev: Event) {
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        let feed = self.feed_of(&mut tenants, &ev.tenant.clone());
        Self::write(&self.seq, feed, &mut ev, self.shared.as_ref());
    }

    fn feed_of<'a>(&self, tenants: &'a mut HashMap<String, TenantFeed>, slug: &str) -> &'a mut TenantFeed {
        tenants.entry(slug.to_string()).or_insert_with(|| TenantFeed {
            file: self.open(slug),
            run: uuid::Uuid::new_v4().to_string(),
            phase: None,
            started: None,
            snapshot_written: false,
        })
    }

    fn write(seq: &AtomicU64, feed: &mut TenantFeed, ev: &mut Event, shared: Option<&FeedPublisher>) {
        ev.seq = seq.fetch_add(1, Ordering::Relaxed) + 1;
        if ev.kind != EventKind::Snapshot {
            ev.run = Some(feed.run.clone());
        }
        if feed.file.is_none() && shared.is_none() {
            return;
        }
        let Ok(mut line) = serde_json::to_string(ev) else { return };
        if let Some(shared) = shared {
            shared.publish(&ev.tenant, line.clone());
        }
        let Some(file) = feed.file.as_mut() else { return };
        line.push('\n');
        if let Err(e) = file.write_all(line.as_bytes()) {
            tracing::warn!("progress feed of {} cannot be written: {e}; live progress is off for it", ev.tenant);
            feed.file = None;
        }
    }

    /// The tenant's status as recorded now, as a snapshot event.
    fn snapshot(&self, slug: &str) -> Option<Event> {
        match self.store.get(slug) {
            Ok(Some(st)) => Some(Event::snapshot(StatusDoc::from_state(&st))),
            Ok(None) => {
                let id = self.infos.get(slug).map(|i| i.tenant_id.clone()).unwrap_or_default();
                Some(Event::snapshot(StatusDoc::empty(slug, &id)))
            }
            Err(e) => {
                tracing::warn!("progress feed: cannot read the state of {slug}: {e}");
                None
            }
        }
    }

    /// Called once a tenant's apply (or destroy) has returned: writes the final snapshot and a
    /// `tenant_finished` event, then (for an apply, not a destroy) sends the notifications and
    /// publishes the event. Never fails: whatever cannot be delivered now stays in the outbox, and
    /// the warnings for the user are returned.
    pub async fn tenant_finished(&self, slug: &str, result: Result<TenantStatus, String>) -> Vec<String> {
        let elapsed = {
            let tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
            tenants.get(slug).and_then(|t| t.started).map(|s| s.elapsed())
        };
        let Some(elapsed) = elapsed else {
            // No phase ran (nothing to change, or refused before starting): nothing to report.
            return Vec::new();
        };
        if let Some(snap) = self.snapshot(slug) {
            self.emit(snap);
        }
        let mut ev = Event::new(slug, EventKind::TenantFinished);
        ev.duration_ms = Some(elapsed.as_millis() as u64);
        let status = match &result {
            Ok(s) => *s,
            Err(_) => TenantStatus::Failed,
        };
        ev.tenant_status = Some(status);
        ev.error = result.as_ref().err().cloned();
        self.emit(ev);
        if let Some(shared) = &self.shared {
            if !shared.flush(SHARED_FLUSH_TIMEOUT).await {
                tracing::debug!("the shared progress feed of {slug} was not written in time");
            }
        }
        if self.destroy {
            return Vec::new();
        }
        let (Some(completion), Some(info)) = (&self.completion, self.infos.get(slug)) else { return Vec::new() };
        let outcome = notify::Outcome {
            info: info.clone(),
            ok: status == TenantStatus::Active,
            status: crate::serve::status_name(status),
            error: result.err(),
            duration: elapsed,
            finished_at: crate::state::now_rfc3339(),
        };
        completion.tenant_finished(&outcome).await
    }
}

impl Hooks for FeedHooks {
    fn tenant_note(&self, tenant: &str, note: &str) {
        self.inner.tenant_note(tenant, note);
    }

    fn tenant_started(&self, tenant: &str, changes: usize) {
        self.inner.tenant_started(tenant, changes);
    }

    fn tenant_finished(&self, tenant: &str, outcome: &crate::apply::RunOutcome) {
        // The feed's own end-of-run record is written by the inherent `tenant_finished`, which the
        // CLI awaits after the run (it also queues notifications); the console only needs this.
        Hooks::tenant_finished(&*self.inner, tenant, outcome);
    }

    fn phase_started(&self, tenant: &str, phase: Phase) {
        self.inner.phase_started(tenant, phase);
        let first_snapshot = {
            let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
            let feed = self.feed_of(&mut tenants, tenant);
            feed.phase = Some(phase);
            feed.started.get_or_insert_with(Instant::now);
            !std::mem::replace(&mut feed.snapshot_written, true)
        };
        if first_snapshot {
            if let Some(snap) = self.snapshot(tenant) {
                self.emit(snap);
            }
        }
        let mut ev = Event::new(tenant, EventKind::PhaseStarted).in_phase(Some(phase));
        ev.destroy = self.destroy.then_some(true);
        self.emit(ev);
    }

    fn phase_finished(&self, tenant: &str, phase: Phase, ok: bool, elapsed: Duration) {
        self.inner.phase_finished(tenant, phase, ok, elapsed);
        let mut ev = Event::new(tenant, EventKind::PhaseFinished).in_phase(Some(phase));
        ev.outcome = Some(if ok { "completed" } else { "failed" }.into());
        ev.duration_ms = Some(elapsed.as_millis() as u64);
        if !ok {
            ev.error = self.store.get(tenant).ok().flatten().and_then(|s| s.provisioning_error);
        }
        self.emit(ev);
        if let Some(snap) = self.snapshot(tenant) {
            self.emit(snap);
        }
    }

    fn resource_started(&self, tenant: &str, addr: &ResourceAddr, action: Action) {
        self.inner.resource_started(tenant, addr, action);
        let mut ev = Event::new(tenant, EventKind::ResourceStarted).in_phase(self.current_phase(tenant));
        ev.resource = Some(addr.to_string());
        ev.action = Some(action.name().into());
        self.emit(ev);
    }

    fn resource_retrying(&self, tenant: &str, err: &ProviderError, attempt: u32, delay: Duration) {
        self.inner.resource_retrying(tenant, err, attempt, delay);
        let mut ev = Event::new(tenant, EventKind::ResourceRetrying).in_phase(self.current_phase(tenant));
        ev.resource = Some(err.address.to_string());
        ev.error = Some(err.to_string());
        ev.attempt = Some(attempt);
        ev.delay_ms = Some(delay.as_millis() as u64);
        self.emit(ev);
    }

    fn resource_finished(
        &self,
        tenant: &str,
        addr: &ResourceAddr,
        action: Action,
        result: Result<Duration, &ProviderError>,
    ) {
        self.inner.resource_finished(tenant, addr, action, result);
        let mut ev = Event::new(tenant, EventKind::ResourceFinished).in_phase(self.current_phase(tenant));
        ev.resource = Some(addr.to_string());
        ev.action = Some(action.name().into());
        match result {
            Ok(d) => {
                ev.outcome = Some("ok".into());
                ev.duration_ms = Some(d.as_millis() as u64);
            }
            Err(e) => {
                ev.outcome = Some("failed".into());
                ev.error = Some(e.to_string());
            }
        }
        self.emit(ev);
    }

    fn rollback_started(&self, tenant: &str, phase: Phase, resources: usize) {
        self.inner.rollback_started(tenant, phase, resources);
        let mut ev = Event::new(tenant, EventKind::RollbackStarted).in_phase(Some(phase));
        ev.resources = Some(resources);
        self.emit(ev);
    }
}

impl FeedHooks {
    fn current_phase(&self, tenant: &str) -> Option<Phase> {
        self.tenants.lock().unwrap_or_else(|e| e.into_inner()).get(tenant).and_then(|t| t.phase)
    }
}

/// Reads a feed incrementally: remembers how far it read and returns only complete new lines.
/// A file that shrank or was replaced (rotation) is read again from its start.
#[derive(Debug, Default)]
pub struct FeedCursor {
    offset: u64,
    partial: Vec<u8>,
}

impl FeedCursor {
    /// New events since the last call; malformed lines are skipped.
    pub fn read_new(&mut self, path: &Path) -> std::io::Result<Vec<Event>> {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        if len < self.offset {
            self.offset = 0;
            self.partial.clear();
        }
        if len == self.offset {
            return Ok(Vec::new());
        }
        f.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        f.take(len - self.offset).read_to_end(&mut buf)?;
        self.offset += buf.len() as u64;
        self.partial.extend_from_slice(&buf);
        let Some(last_nl) = self.partial.iter().rposition(|b| *b == b'\n') else { return Ok(Vec::new()) };
        let rest = self.partial.split_off(last_nl + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        Ok(complete
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|l| serde_json::from_slice::<Event>(l).ok())
            .collect())
    }
}

/// Every event of a tenant's feed, the rotated file first, oldest first (for the audit endpoint).
pub fn read_all(state_dir: &Path, slug: &str) -> Vec<Event> {
    let path = feed_file(state_dir, slug);
    let mut out = Vec::new();
    for p in [path.with_extension("jsonl.1"), path] {
        if let Ok(f) = File::open(&p) {
            for line in BufReader::new(f).lines() {
                let Ok(line) = line else { break };
                if let Ok(ev) = serde_json::from_str::<Event>(&line) {
                    out.push(ev);
                }
            }
        }
    }
    out
}
