//! What `matih serve` knows from the change feeds: per tenant, the status document folded from the
//! feed, and a broadcast channel of new events for WebSocket clients. Events come in through
//! [`Live::push`]: from the feed files, read by a tailer task every poll interval (sled), or from
//! the store's shared feed (PostgreSQL, [`super::source`]). Nothing here waits for a client (a
//! broadcast channel drops what a slow client did not take, and that client is sent a fresh
//! snapshot instead).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::apply::feed::{self, FeedCursor};
use crate::events::status::StatusDoc;
use crate::events::{Event, EventKind};

/// Events a client may fall behind by before it is resynchronised with a snapshot.
pub const CHANNEL_CAPACITY: usize = 256;

pub struct LiveTenant {
    pub doc: StatusDoc,
    /// When the last event was read (None: only events that were there when serve started).
    pub last_event_at: Option<Instant>,
    pub tx: broadcast::Sender<Arc<Event>>,
}

#[derive(Default)]
pub struct Live {
    tenants: HashMap<String, LiveTenant>,
    /// How far each feed file was read.
    cursors: HashMap<String, FeedCursor>,
}

/// What a WebSocket client starts from.
pub struct Subscription {
    pub doc: Option<(StatusDoc, Option<Instant>)>,
    pub rx: broadcast::Receiver<Arc<Event>>,
}

impl Live {
    fn tenant(&mut self, slug: &str) -> &mut LiveTenant {
        self.tenants.entry(slug.to_string()).or_insert_with(|| LiveTenant {
            doc: StatusDoc::empty(slug, ""),
            last_event_at: None,
            tx: broadcast::channel(CHANNEL_CAPACITY).0,
        })
    }

    /// Folds one event into its tenant's document and, unless `initial` (history read at start,
    /// neither broadcast nor counted as recent), sends it to the tenant's clients.
    pub fn push(&mut self, ev: Event, initial: bool) {
        let t = self.tenant(&ev.tenant);
        t.doc.fold(&ev);
        if !initial {
            t.last_event_at = Some(Instant::now());
            let _ = t.tx.send(Arc::new(ev));
        }
    }

    /// Starts a tenant's document from `doc` (read from the store) unless the feed already
    /// described the tenant: events are then folded into what the store says instead of into an
    /// empty document.
    pub fn seed(&mut self, doc: &StatusDoc) {
        let t = self.tenant(&doc.slug);
        if t.doc.tenant_id.is_empty() {
            t.doc = doc.clone();
        }
    }

    /// Reads what the feed files gained since the last scan. `initial`: the first scan, whose
    /// events are history (not broadcast, not counted as recent).
    pub fn scan(&mut self, state_dir: &Path, initial: bool) {
        let dir = feed::feed_dir(state_dir);
        let Ok(rd) = std::fs::read_dir(&dir) else { return };
        let files: Vec<(String, PathBuf)> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|p| {
                let name = p.file_name()?.to_str()?.strip_suffix(".jsonl")?.to_string();
                super::valid_slug(&name).then_some((name, p))
            })
            .collect();
        for (slug, path) in files {
            let events = match self.cursors.entry(slug.clone()).or_default().read_new(&path) {
                Ok(evs) => evs,
                Err(e) => {
                    tracing::debug!("feed {}: {e}", path.display());
                    continue;
                }
            };
            for ev in events.into_iter().filter(|ev| ev.tenant == slug) {
                self.push(ev, initial);
            }
        }
    }

    pub fn docs(&self) -> Vec<(StatusDoc, Option<Instant>)> {
        self.tenants
            .values()
            .filter(|t| !t.doc.tenant_id.is_empty())
            .map(|t| (t.doc.clone(), t.last_event_at))
            .collect()
    }

    /// The tenant's folded document and a receiver of the events after it, taken together.
    pub fn subscribe(&mut self, slug: &str) -> Subscription {
        let t = self.tenant(slug);
        let doc = (!t.doc.tenant_id.is_empty()).then(|| (t.doc.clone(), t.last_event_at));
        Subscription { doc, rx: t.tx.subscribe() }
    }

    pub fn doc(&self, slug: &str) -> Option<StatusDoc> {
        self.tenants.get(slug).filter(|t| !t.doc.tenant_id.is_empty()).map(|t| t.doc.clone())
    }
}

/// Runs the tailer until the process ends.
pub fn spawn_tailer(live: Arc<Mutex<Live>>, state_dir: PathBuf, every: Duration) {
    live.lock().unwrap_or_else(|e| e.into_inner()).scan(&state_dir, true);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            live.lock().unwrap_or_else(|e| e.into_inner()).scan(&state_dir, false);
        }
    });
}

/// Whether an event is part of the audit trail (snapshots are not: they repeat the state).
pub fn is_audit(ev: &Event) -> bool {
    !matches!(ev.kind, EventKind::Snapshot | EventKind::Unknown)
}
