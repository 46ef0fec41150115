//! Apply's progress as [`Event`]s (the one event model, documented in `crate::events`):
//! [`EventHooks`] turns every hook call into one event and writes it, serialized once, to the
//! JSON stream (`--progress json`) and to the change feed (the tenant's feed file and, on
//! PostgreSQL, the store's shared feed, [`FeedPublisher`]), whichever it was given.
//!
//! The feed records a tenant's run from its first phase on: a snapshot (the whole status document,
//! read from the store) before the first phase, after every phase and at the end, and every event
//! of the run; `tenant_started` and `tenant_note` go to the stream only, and so does the
//! `tenant_finished` of a run that never reached a phase (refused, or nothing left to do). Snapshots
//! go to the feed only. Publishing to the shared feed is queued and batched in the background;
//! [`EventHooks::flush`] waits (a few seconds at most) until it is written.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{feed, Hooks, RunOutcome};
use crate::addr::ResourceAddr;
use crate::events::status::StatusDoc;
use crate::events::{Event, EventKind};
use crate::phase::Phase;
use crate::plan::Action;
use crate::provider::ProviderError;
use crate::state::{FeedPublisher, StateStore};

/// How long [`EventHooks::flush`] waits for the shared feed, at most.
pub const SHARED_FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// Writes `ev` as one line to `out` (the JSON stream), flushed.
pub fn write_event(out: &mut dyn Write, ev: &Event) {
    if let Ok(line) = serde_json::to_string(ev) {
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// Where the feed goes: files in the state directory, the store's shared feed, and the store the
/// snapshots are read from.
struct Feed {
    state_dir: PathBuf,
    store: Arc<dyn StateStore>,
    shared: Option<FeedPublisher>,
    /// Slug → tenant id, for the snapshot of a tenant no state describes yet.
    ids: HashMap<String, String>,
}

/// What one tenant's run has produced so far.
struct TenantRun {
    run: String,
    phase: Option<Phase>,
    /// A phase started: the run is in the feed.
    in_feed: bool,
    /// The feed file, once opened (`None` inside: it cannot be written).
    file: Option<Option<File>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum To {
    Stream,
    Feed,
    Both,
}

/// The [`Hooks`] that produce the event stream and the change feed.
pub struct EventHooks {
    stream: Option<Mutex<Box<dyn Write + Send>>>,
    feed: Option<Feed>,
    destroy: bool,
    seq: AtomicU64,
    tenants: Mutex<HashMap<String, TenantRun>>,
}

impl EventHooks {
    /// Events of a run that `destroy`s or not (a destroy's `phase_started` says so), going nowhere
    /// until [`EventHooks::stream`] or [`EventHooks::feed`] says where.
    pub fn new(destroy: bool) -> EventHooks {
        EventHooks { stream: None, feed: None, destroy, seq: AtomicU64::new(0), tenants: Mutex::new(HashMap::new()) }
    }

    /// Also writes every event but snapshots to `out`, one line each.
    pub fn stream(mut self, out: Box<dyn Write + Send>) -> EventHooks {
        self.stream = Some(Mutex::new(out));
        self
    }

    /// Also writes the feed of the store at `state_dir`; `ids` (slug → tenant id) names the
    /// tenants no state describes yet.
    pub fn feed(mut self, state_dir: &Path, store: Arc<dyn StateStore>, ids: HashMap<String, String>) -> EventHooks {
        let shared = store.feed_publisher();
        self.feed = Some(Feed { state_dir: state_dir.to_path_buf(), store, shared, ids });
        self
    }

    /// Waits until the events published to the shared feed are written (at most
    /// [`SHARED_FLUSH_TIMEOUT`]).
    pub async fn flush(&self) {
        if let Some(shared) = self.feed.as_ref().and_then(|f| f.shared.as_ref()) {
            if !shared.flush(SHARED_FLUSH_TIMEOUT).await {
                tracing::debug!("the shared progress feed was not written in time");
            }
        }
    }

    /// Gives `ev` its sequence number and run, and writes it where `to` says.
    fn emit(&self, mut ev: Event, to: To) {
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        let t = Self::run_of(&mut tenants, &ev.tenant);
        ev.seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        if ev.kind != EventKind::Snapshot {
            ev.run = Some(t.run.clone());
        }
        let stream = self.stream.as_ref().filter(|_| to != To::Feed);
        let feed = self.feed.as_ref().filter(|_| to != To::Stream);
        if stream.is_none() && feed.is_none() {
            return;
        }
        let Ok(line) = serde_json::to_string(&ev) else { return };
        if let Some(out) = stream {
            let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
        if let Some(f) = feed {
            if let Some(shared) = &f.shared {
                shared.publish(&ev.tenant, line.clone());
            }
            let file = t.file.get_or_insert_with(|| feed::open(&f.state_dir, &ev.tenant));
            feed::append(file, &ev.tenant, &line);
        }
    }

    fn run_of<'a>(tenants: &'a mut HashMap<String, TenantRun>, slug: &str) -> &'a mut TenantRun {
        tenants.entry(slug.to_string()).or_insert_with(|| TenantRun {
            run: uuid::Uuid::new_v4().to_string(),
            phase: None,
            in_feed: false,
            file: None,
        })
    }

    /// Runs `f` on the tenant's run record.
    fn with_run<T>(&self, slug: &str, f: impl FnOnce(&mut TenantRun) -> T) -> T {
        let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        f(Self::run_of(&mut tenants, slug))
    }

    /// The tenant's status as recorded now, to the feed.
    fn snapshot(&self, slug: &str) {
        let Some(feed) = &self.feed else { return };
        let doc = match feed.store.get(slug) {
            Ok(Some(st)) => StatusDoc::from_state(&st),
            Ok(None) => StatusDoc::empty(slug, feed.ids.get(slug).map_or("", String::as_str)),
            Err(e) => {
                tracing::warn!("progress feed: cannot read the state of {slug}: {e}");
                return;
            }
        };
        self.emit(Event::snapshot(doc), To::Feed);
    }

    /// An event of the tenant's current phase.
    fn in_current_phase(&self, tenant: &str, kind: EventKind) -> Event {
        Event::new(tenant, kind).in_phase(self.with_run(tenant, |t| t.phase))
    }
}

impl Hooks for EventHooks {
    fn tenant_note(&self, tenant: &str, note: &str) {
        self.emit(Event { note: Some(note.into()), ..Event::new(tenant, EventKind::TenantNote) }, To::Stream);
    }

    fn tenant_started(&self, tenant: &str, changes: usize) {
        self.emit(Event { changes: Some(changes), ..Event::new(tenant, EventKind::TenantStarted) }, To::Stream);
    }

    fn tenant_finished(&self, tenant: &str, outcome: &RunOutcome) {
        let in_feed = self.with_run(tenant, |t| t.in_feed);
        if in_feed {
            self.snapshot(tenant);
        }
        let ev = Event {
            tenant_status: Some(outcome.status),
            duration_ms: Some(outcome.duration.as_millis() as u64),
            operations: Some(outcome.operations),
            error: outcome.error.clone(),
            ..Event::new(tenant, EventKind::TenantFinished)
        };
        self.emit(ev, if in_feed { To::Both } else { To::Stream });
    }

    fn phase_started(&self, tenant: &str, phase: Phase) {
        let first = self.with_run(tenant, |t| {
            t.phase = Some(phase);
            !std::mem::replace(&mut t.in_feed, true)
        });
        if first {
            self.snapshot(tenant);
        }
        let mut ev = Event::new(tenant, EventKind::PhaseStarted).in_phase(Some(phase));
        ev.destroy = self.destroy.then_some(true);
        self.emit(ev, To::Both);
    }

    fn phase_finished(&self, tenant: &str, phase: Phase, ok: bool, elapsed: Duration) {
        let mut ev = Event::new(tenant, EventKind::PhaseFinished).in_phase(Some(phase));
        ev.outcome = Some(if ok { "completed" } else { "failed" }.into());
        ev.duration_ms = Some(elapsed.as_millis() as u64);
        if !ok {
            let store = self.feed.as_ref().map(|f| &f.store);
            ev.error = store.and_then(|s| s.get(tenant).ok().flatten()).and_then(|s| s.provisioning_error);
        }
        self.emit(ev, To::Both);
        self.snapshot(tenant);
    }

    fn resource_started(&self, tenant: &str, addr: &ResourceAddr, action: Action) {
        let mut ev = self.in_current_phase(tenant, EventKind::ResourceStarted);
        ev.resource = Some(addr.to_string());
        ev.action = Some(action.name().into());
        self.emit(ev, To::Both);
    }

    fn resource_retrying(&self, tenant: &str, err: &ProviderError, attempt: u32, delay: Duration) {
        let mut ev = self.in_current_phase(tenant, EventKind::ResourceRetrying);
        ev.resource = Some(err.address.to_string());
        ev.error = Some(err.to_string());
        ev.attempt = Some(attempt);
        ev.delay_ms = Some(delay.as_millis() as u64);
        self.emit(ev, To::Both);
    }

    fn resource_finished(
        &self,
        tenant: &str,
        addr: &ResourceAddr,
        action: Action,
        result: Result<Duration, &ProviderError>,
    ) {
        let mut ev = self.in_current_phase(tenant, EventKind::ResourceFinished);
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
        self.emit(ev, To::Both);
    }

    fn rollback_started(&self, tenant: &str, phase: Phase, resources: usize) {
        let mut ev = Event::new(tenant, EventKind::RollbackStarted).in_phase(Some(phase));
        ev.resources = Some(resources);
        self.emit(ev, To::Both);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::tests::Buf;
    use crate::state::{MemoryStore, TenantStatus};

    #[test]
    fn the_stream_and_the_feed_carry_the_same_events() {
        let dir = tempfile::tempdir().unwrap();
        let buf = Buf::default();
        let ids = HashMap::from([("acme".to_string(), "id-1".to_string())]);
        let hooks = EventHooks::new(false).stream(Box::new(buf.clone())).feed(
            dir.path(),
            Arc::new(MemoryStore::default()),
            ids,
        );
        let addr: ResourceAddr = "kubernetes_namespace.tenant".parse().unwrap();
        hooks.tenant_note("globex", "set aside");
        hooks.tenant_started("acme", 1);
        hooks.phase_started("acme", Phase::CreateNamespace);
        hooks.resource_started("acme", &addr, Action::Create);
        hooks.resource_finished("acme", &addr, Action::Create, Ok(Duration::from_millis(12)));
        hooks.phase_finished("acme", Phase::CreateNamespace, true, Duration::from_millis(20));
        let outcome = RunOutcome {
            status: TenantStatus::Active,
            duration: Duration::from_millis(40),
            operations: 1,
            error: None,
        };
        hooks.tenant_finished("acme", &outcome);
        // A tenant refused before its first phase is not in the feed.
        hooks.tenant_finished("globex", &RunOutcome { status: TenantStatus::Failed, ..outcome.clone() });

        let parse = |text: &str| -> Vec<Event> { text.lines().map(|l| serde_json::from_str(l).unwrap()).collect() };
        let stream = parse(&buf.text());
        let kinds: Vec<EventKind> = stream.iter().map(|e| e.kind).collect();
        use EventKind::*;
        assert_eq!(
            kinds,
            [
                TenantNote,
                TenantStarted,
                PhaseStarted,
                ResourceStarted,
                ResourceFinished,
                PhaseFinished,
                TenantFinished,
                TenantFinished
            ]
        );
        assert!(stream.iter().all(|e| e.version == crate::events::VERSION && e.run.is_some()));
        assert_eq!(stream[4].duration_ms, Some(12));
        assert_eq!(stream[4].phase_name.as_deref(), Some("CREATE_NAMESPACE"), "a resource's event names its phase");
        assert_eq!((stream[6].tenant_status, stream[6].operations), (Some(TenantStatus::Active), Some(1)));

        let fed = feed::read_all(dir.path(), "acme");
        let kinds: Vec<EventKind> = fed.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                Snapshot,
                PhaseStarted,
                ResourceStarted,
                ResourceFinished,
                PhaseFinished,
                Snapshot,
                Snapshot,
                TenantFinished
            ]
        );
        assert_eq!(fed[0].status.as_ref().unwrap().tenant_id, "id-1");
        // The events both carry are the same events, byte for byte.
        for e in fed.iter().filter(|e| e.kind != Snapshot) {
            assert!(stream.contains(e), "{e:?} is in the stream too");
        }
        assert!(!feed::feed_file(dir.path(), "globex").exists());
    }
}
