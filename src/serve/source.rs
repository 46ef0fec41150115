//! Where `matih serve` reads the tenants and follows progress: the state backend the platform
//! file selects. Everything above this module (routes, WebSocket, the status page) is the same for
//! both.
//!
//! * **sled** ([`Source::sled`]): the store is process-exclusive and a running `matih apply` holds
//!   it for the whole run. For a request serve opens it briefly (a short wait, closed right after,
//!   at most once every 750 ms) when it is free; when it is busy the answer comes from the last
//!   successful read and from the feed files, which a tailer task reads every poll interval.
//! * **PostgreSQL** ([`Source::postgres`]): the store is shared, so the tenants are read from it at
//!   start and kept in memory; a follower session ([`PostgresStore::follow`]) reports every state
//!   write (`NOTIFY matih_state`), after which the tenants that changed are read again (coalesced),
//!   and the progress events an apply on any machine publishes (`matih_feed`), which go to the
//!   WebSocket clients as the feed files' events do. After a reconnect every tenant is read again
//!   and the events missed meanwhile are caught up from the table, in order, each once.
//!
//! Either way a [`Listing`] says, per tenant, when its document was read from the store, so that
//! the caller can prefer the live feed when it is newer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::live::{self, Live};
use crate::apply::feed;
use crate::events::status::StatusDoc;
use crate::events::Event;
use crate::state::{AuditEntry, FeedNews, PostgresStore, SledStore, StateStore};

/// How long state notifications are gathered before the tenants they name are read again.
const COALESCE: Duration = Duration::from_millis(50);

/// The tenants as the store showed them.
pub struct Listing {
    /// Each tenant's document, with when it was read from the store (None: an earlier answer, the
    /// store could not be read now).
    pub docs: Vec<(StatusDoc, Option<Instant>)>,
    /// When the list of tenants was read (None: the store could not be read).
    pub listed_at: Option<Instant>,
}

pub enum Source {
    Sled(SledSource),
    Postgres(Arc<PgSource>),
}

impl Source {
    pub fn sled(state_dir: &Path) -> Source {
        Source::Sled(SledSource { state_dir: state_dir.to_path_buf(), cache: Default::default() })
    }

    pub fn postgres(store: Arc<PostgresStore>) -> Source {
        Source::Postgres(Arc::new(PgSource {
            store,
            cache: Default::default(),
            dirty: Default::default(),
            wake: Default::default(),
        }))
    }

    /// Reads what there is to read before the first request, then follows progress into `live`
    /// in the background.
    pub async fn start(&self, live: Arc<Mutex<Live>>, poll: Duration) {
        match self {
            Source::Sled(s) => {
                // Decoded once now, so that the first page does not wait for a large store; later
                // reads decode only what changed.
                let _ = s.listing().await;
                live::spawn_tailer(live, s.state_dir.clone(), poll)
            }
            Source::Postgres(pg) => {
                if !pg.refresh(Dirty { all: true, slugs: BTreeSet::new() }).await {
                    pg.mark(None);
                }
                tokio::spawn(pg.clone().refresher());
                tokio::spawn(pg.clone().follow(live));
            }
        }
    }

    pub async fn listing(&self) -> Listing {
        match self {
            Source::Sled(s) => s.listing().await,
            Source::Postgres(pg) => {
                let cache = pg.cache.lock().unwrap_or_else(|e| e.into_inner());
                Listing {
                    docs: cache.docs.values().map(|(d, at)| (d.clone(), Some(*at))).collect(),
                    listed_at: cache.listed_at,
                }
            }
        }
    }

    /// The audit log of `slug`, oldest first; an error when the store cannot be read now (a sled
    /// store held by a running apply).
    pub async fn audit(&self, slug: &str) -> Result<Vec<AuditEntry>, String> {
        let slug = slug.to_string();
        match self {
            Source::Sled(s) => {
                // Under the cache's lock: one open of the store at a time in this process.
                let _cache = s.cache.lock().await;
                let dir = s.state_dir.clone();
                tokio::task::spawn_blocking(move || {
                    if !SledStore::exists(&dir) {
                        return Ok(Vec::new());
                    }
                    let store =
                        SledStore::open_with_wait(&dir, Duration::from_millis(150)).map_err(|e| e.to_string())?;
                    store.audit(&slug).map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| e.to_string())?
            }
            Source::Postgres(pg) => {
                let store = pg.store.clone();
                tokio::task::spawn_blocking(move || store.audit(&slug))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// The progress events of `slug` the feed still holds, oldest first.
    pub async fn events(&self, slug: &str) -> Result<Vec<Event>, String> {
        match self {
            Source::Sled(s) => Ok(feed::read_all(&s.state_dir, slug)),
            Source::Postgres(pg) => {
                let (store, slug) = (pg.store.clone(), slug.to_string());
                let rows = tokio::task::spawn_blocking(move || store.feed_events(&slug))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
                Ok(rows.iter().filter_map(|r| parse_row(&r.slug, &r.event)).collect())
            }
        }
    }
}

/// An event of the shared feed, if it is one and names the tenant it was filed under.
fn parse_row(slug: &str, json: &str) -> Option<Event> {
    let ev: Event = serde_json::from_str(json).ok()?;
    (ev.tenant == slug && super::valid_slug(slug)).then_some(ev)
}

/// The sled store and its feed files.
pub struct SledSource {
    state_dir: PathBuf,
    cache: tokio::sync::Mutex<SledCache>,
}

/// The tenants as last read from the sled store.
#[derive(Default)]
struct SledCache {
    /// Slug → the checksum of its stored state ([`SledStore::tenant_checksums`]) and its document.
    docs: BTreeMap<String, (u32, StatusDoc)>,
    read_at: Option<Instant>,
    /// The store's files as they were after the last read ([`store_files`]).
    files: Option<Vec<(PathBuf, std::time::SystemTime, u64)>>,
}

/// The longest a listing is trusted without opening the store, even when its files look unchanged.
const MAX_TRUST: Duration = Duration::from_secs(5);

/// The sled store's files (path, modification time, length): the database and its blobs, not the
/// feed or the outbox beside them. Every write by another process changes one of them.
fn store_files(dir: &Path) -> Option<Vec<(PathBuf, std::time::SystemTime, u64)>> {
    let mut out = Vec::new();
    for sub in [dir.to_path_buf(), dir.join("blobs")] {
        let Ok(rd) = std::fs::read_dir(&sub) else { continue };
        for e in rd.flatten() {
            let meta = e.metadata().ok()?;
            if meta.is_file() {
                out.push((e.path(), meta.modified().ok()?, meta.len()));
            }
        }
    }
    out.sort();
    Some(out)
}

impl SledSource {
    /// Reads the store when it is free (at most once every 750 ms), else answers from the cache.
    /// Only the tenants whose stored state changed since the last read are decoded again.
    async fn listing(&self) -> Listing {
        let mut cache = self.cache.lock().await;
        // Fresh: read less than 750 ms ago, or its files have not changed since (and it is not
        // older than MAX_TRUST): a large store is not opened and checked for every request.
        let unchanged = || {
            cache.read_at.is_some_and(|t| t.elapsed() < MAX_TRUST)
                && cache.files.is_some()
                && store_files(&self.state_dir) == cache.files
        };
        let fresh = cache.read_at.is_some_and(|t| t.elapsed() < Duration::from_millis(750)) || unchanged();
        let mut read_at = None;
        if fresh {
            read_at = cache.read_at;
        } else {
            let dir = self.state_dir.clone();
            let started = Instant::now();
            let known: BTreeMap<String, u32> = cache.docs.iter().map(|(s, (c, _))| (s.clone(), *c)).collect();
            type Read = (Vec<(String, u32)>, Vec<(String, u32, StatusDoc)>);
            let read = tokio::task::spawn_blocking(move || -> Result<Read, String> {
                if !SledStore::exists(&dir) {
                    return Ok((Vec::new(), Vec::new()));
                }
                let store = SledStore::open_with_wait(&dir, Duration::from_millis(150)).map_err(|e| e.to_string())?;
                let sums = store.tenant_checksums().map_err(|e| e.to_string())?;
                let mut changed = Vec::new();
                for (slug, sum) in &sums {
                    if known.get(slug) == Some(sum) {
                        continue;
                    }
                    if let Some(st) = store.get(slug).map_err(|e| e.to_string())? {
                        changed.push((slug.clone(), *sum, StatusDoc::from_state(&st)));
                    }
                }
                Ok((sums, changed))
            })
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
            match read {
                Ok((sums, changed)) => {
                    let present: BTreeSet<&String> = sums.iter().map(|(s, _)| s).collect();
                    cache.docs.retain(|slug, _| present.contains(slug));
                    for (slug, sum, doc) in changed {
                        cache.docs.insert(slug, (sum, doc));
                    }
                    cache.read_at = Some(started);
                    // After the store was closed: another process can write only from now on.
                    cache.files = store_files(&self.state_dir);
                    read_at = Some(started);
                }
                Err(e) => tracing::debug!("state store busy or unreadable, answering from the feed: {e}"),
            }
        }
        Listing { docs: cache.docs.values().map(|(_, d)| (d.clone(), read_at)).collect(), listed_at: read_at }
    }
}

/// The PostgreSQL store: tenants cached, refreshed on notifications.
pub struct PgSource {
    store: Arc<PostgresStore>,
    cache: Mutex<PgCache>,
    dirty: Mutex<Dirty>,
    wake: tokio::sync::Notify,
}

#[derive(Default)]
struct PgCache {
    /// Slug → the tenant's document and when it was read.
    docs: BTreeMap<String, (StatusDoc, Instant)>,
    listed_at: Option<Instant>,
}

/// What is to be read again: every tenant, or these.
#[derive(Clone, Default)]
struct Dirty {
    all: bool,
    slugs: BTreeSet<String>,
}

impl PgSource {
    /// Asks the refresher to read `slug` (None: every tenant) again.
    fn mark(&self, slug: Option<String>) {
        {
            let mut d = self.dirty.lock().unwrap_or_else(|e| e.into_inner());
            match slug {
                Some(s) => {
                    d.slugs.insert(s);
                }
                None => d.all = true,
            }
        }
        self.wake.notify_one();
    }

    /// Reads what `dirty` names and updates the cache; false (logged) when the store could not be read.
    async fn refresh(&self, dirty: Dirty) -> bool {
        let store = self.store.clone();
        let started = Instant::now();
        let wanted = dirty.clone();
        let read = tokio::task::spawn_blocking(move || -> Result<Vec<(String, Option<StatusDoc>)>, String> {
            let slugs = if wanted.all {
                store.tenants().map_err(|e| e.to_string())?
            } else {
                wanted.slugs.into_iter().collect()
            };
            let mut out = Vec::with_capacity(slugs.len());
            for slug in slugs {
                let doc = store.get(&slug).map_err(|e| e.to_string())?.map(|st| StatusDoc::from_state(&st));
                out.push((slug, doc));
            }
            Ok(out)
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        match read {
            Ok(docs) => {
                let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
                if dirty.all {
                    cache.docs.clear();
                    cache.listed_at = Some(started);
                }
                for (slug, doc) in docs {
                    match doc {
                        Some(d) => cache.docs.insert(slug, (d, started)),
                        None => cache.docs.remove(&slug),
                    };
                }
                true
            }
            Err(e) => {
                tracing::warn!("cannot read the tenants from the state store (trying again): {e}");
                false
            }
        }
    }

    /// Reads again what notifications named, a batch at a time; retries after a failure.
    async fn refresher(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            tokio::time::sleep(COALESCE).await;
            let dirty = std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|e| e.into_inner()));
            if !dirty.all && dirty.slugs.is_empty() {
                continue;
            }
            if !self.refresh(dirty.clone()).await {
                {
                    let mut d = self.dirty.lock().unwrap_or_else(|e| e.into_inner());
                    d.all |= dirty.all;
                    d.slugs.extend(dirty.slugs);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.wake.notify_one();
            }
        }
    }

    /// Turns the follower's news into refreshes and live events.
    async fn follow(self: Arc<Self>, live: Arc<Mutex<Live>>) {
        let mut news = self.store.follow();
        while let Some(n) = news.recv().await {
            match n {
                FeedNews::Connected => self.mark(None),
                FeedNews::StateChanged(slug) => self.mark(Some(slug)),
                FeedNews::Events(rows) => {
                    let mut live = live.lock().unwrap_or_else(|e| e.into_inner());
                    for row in rows {
                        let Some(ev) = parse_row(&row.slug, &row.event) else { continue };
                        if let Some((doc, _)) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).docs.get(&row.slug)
                        {
                            live.seed(doc);
                        }
                        live.push(ev, false);
                    }
                }
            }
        }
    }
}
