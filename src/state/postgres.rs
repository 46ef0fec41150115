//! A [`StateStore`] in PostgreSQL, for teams: several runners on several machines share one
//! database.
//!
//! Tables (all prefixed `matih_`, in the connection's default schema):
//!
//! | table | one row per | holds |
//! |---|---|---|
//! | `matih_schema` | (one row) | the schema version this database is at |
//! | `matih_tenants` | tenant | serial, lineage, status, time of the last write, the state without its resources (JSON) |
//! | `matih_resources` | recorded resource | tenant, address, phase, the [`ResourceState`] (JSON) |
//! | `matih_history` | replaced state | tenant, serial, time, operation, the whole replaced state (JSON) |
//! | `matih_audit` | audit entry | tenant, run id, operation, action, outcome, the [`AuditEntry`] (JSON) |
//! | `matih_locks` | held lock | holder, host, pid, operation, since, and the holding session |
//! | `matih_feed` | progress event | sequence number, tenant, time, the event (JSON): the shared progress feed ([`feed`]) |
//!
//! JSON documents are stored as `text` (exactly what serde wrote; `jsonb` would refuse a `\u0000`).
//!
//! * **Schema:** created on first use and migrated forward under a transaction-scoped advisory
//!   lock (so two runners starting at once do not race). A database whose schema is newer than
//!   this binary's [`SCHEMA_VERSION`] is refused with [`StateError::Version`].
//! * **Writes:** every `put`, `put_audited` and `remove` is one transaction: the tenant row is read
//!   `FOR UPDATE`, its serial compared (the compare-and-swap), the replaced state appended to the
//!   history, the tenant and resource rows written, the audit entries appended, and a
//!   `NOTIFY matih_state, 'slug:serial'` sent (delivered on commit: the change feed).
//! * **Progress:** an applying process publishes its progress events into `matih_feed` and
//!   `NOTIFY matih_feed, 'SEQ'` ([`FeedPublisher`]); `matih serve` on any machine follows them and
//!   the state changes ([`PostgresStore::follow`]). See [`feed`].
//! * **Locks:** a tenant's lock is a session-level advisory lock taken on this store's lock session
//!   (one connection held for the store's lifetime) plus a visible row in `matih_locks`. When the
//!   process dies its session ends and PostgreSQL releases the advisory lock: the row left behind
//!   is stale, is hidden from [`StateStore::locks`], and the next `lock` replaces it at once. As in
//!   the other backends, a row whose holder is a dead pid on this host may be taken over too (its
//!   session is then terminated). Force-unlock deletes the row and, when a live session still
//!   holds the advisory lock, terminates that session (the holder is declared dead).
//! * **Outages:** a call that finds the server gone (refused, reset, restarting) tries again, with
//!   new sessions, for up to [`RECONNECT_FOR`]. A write whose session was lost during its commit
//!   is sent again only as a compare-and-swap: when the row already holds exactly that state, the
//!   lost commit went through and the write is done. The advisory locks died with the old lock
//!   session: the new one takes them again before this store writes those tenants; a lock that
//!   another runner took meanwhile is lost, and writing that tenant is refused
//!   ([`StateError::Locked`]) so that two runs never apply it at once. A free advisory lock whose
//!   row names a live process of this host (one that lost its session that way, and is
//!   reconnecting) is not taken over.
//!
//! The trait is synchronous; this store drives its connections on a small runtime of its own and
//! waits for each call on the calling thread, so it can be used inside or outside a tokio runtime.
//!
//! **Invariant:** the connection URL (with its password) never appears in an error or in `Debug`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use crate::pgconn::PgConnect;

use super::{
    check_put, check_slug, goes_to_history, hostname, lock_is_stale, now_rfc3339, AuditEntry, HistoryEntry, LockInfo,
    ResourceState, StateError, StateStore, TenantState,
};
use crate::addr::ResourceAddr;
use crate::pgconn::describe;

pub mod feed;
pub use feed::{FeedNews, FeedPublisher, FeedRow, FEED_CHANNEL, FEED_KEEP_PER_TENANT};

/// The schema version this binary writes. Version 1: the state tables; version 2 adds
/// `matih_feed` (the shared progress feed).
pub const SCHEMA_VERSION: i32 = 2;

/// The channel of the change feed: each committed write notifies `slug:serial` (`slug:removed`).
pub const CHANGE_CHANNEL: &str = "matih_state";

/// Key of the transaction-scoped advisory lock that serializes schema migrations.
const MIGRATION_LOCK_KEY: i64 = 0x6d61_7469_685f_7363; // "matih_sc"

const SCHEMA_V1: &str = "
CREATE TABLE matih_tenants (
    slug text PRIMARY KEY,
    serial bigint NOT NULL,
    lineage text NOT NULL,
    status text NOT NULL,
    updated_at text NOT NULL,
    state text NOT NULL
);
CREATE TABLE matih_resources (
    slug text NOT NULL REFERENCES matih_tenants (slug) ON DELETE CASCADE,
    address text NOT NULL,
    phase text NOT NULL,
    record text NOT NULL,
    PRIMARY KEY (slug, address)
);
CREATE TABLE matih_history (
    seq bigserial PRIMARY KEY,
    slug text NOT NULL,
    serial bigint NOT NULL,
    at text NOT NULL,
    operation text NOT NULL,
    state text NOT NULL
);
CREATE INDEX matih_history_slug ON matih_history (slug, seq);
CREATE TABLE matih_audit (
    seq bigserial PRIMARY KEY,
    slug text NOT NULL,
    at text NOT NULL,
    run_id text NOT NULL,
    operation text NOT NULL,
    action text NOT NULL,
    outcome text NOT NULL,
    entry text NOT NULL
);
CREATE INDEX matih_audit_slug ON matih_audit (slug, seq);
CREATE TABLE matih_locks (
    slug text PRIMARY KEY,
    id text NOT NULL,
    operation text NOT NULL,
    who text NOT NULL,
    host text NOT NULL,
    pid bigint NOT NULL,
    created_at text NOT NULL,
    lock_key bigint NOT NULL,
    backend_pid integer NOT NULL
);
";

const SCHEMA_V2: &str = "
CREATE TABLE matih_feed (
    seq bigserial PRIMARY KEY,
    slug text NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    event text NOT NULL
);
CREATE INDEX matih_feed_slug ON matih_feed (slug, seq);
";

/// Whether the advisory lock of a `matih_locks` row (alias `k`) is still held by its session.
const HELD_BY_SESSION: &str = "EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted \
     AND l.pid = k.backend_pid AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
     AND l.classid::bigint = ((k.lock_key >> 32) & 4294967295) AND l.objid::bigint = (k.lock_key & 4294967295) \
     AND l.objsubid = 1)";

/// The PostgreSQL state store.
pub struct PostgresStore {
    /// Drives the connections; `None` only while dropping.
    rt: Option<tokio::runtime::Runtime>,
    /// The connection settings and the TLS connector (`sslmode`, see [`crate::pgconn`]).
    config: PgConnect,
    /// The connection, for the messages: `postgresql://user@host:port/db`, never the password.
    label: String,
    /// Data sessions (reads and writes), at most [`DATA_SESSIONS`] open: tenants applied at once
    /// write through different sessions instead of queueing behind one.
    data: Mutex<DataPool>,
    data_free: std::sync::Condvar,
    locks: Mutex<LockSession>,
    /// The resources this store last wrote per tenant, at which lineage and serial: a write over
    /// that same serial sends only the resources that changed (see [`PostgresStore::write_rows`]).
    /// Dropped when the tenant's lock is released, so it holds the tenants being written only.
    written: Mutex<HashMap<String, Written>>,
}

/// What the database holds of a tenant's resources at `(lineage, serial)`, because this store
/// wrote it. Serials only grow by compare-and-swap, so no other writer can have written that same
/// serial: while the row still has it, the rows are exactly these.
struct Written {
    lineage: String,
    serial: u64,
    resources: BTreeMap<ResourceAddr, ResourceState>,
}

/// A subscription to the change feed of a [`PostgresStore`] ([`PostgresStore::changes`]).
pub struct ChangeFeed<'a> {
    _store: &'a PostgresStore,
    _client: Client,
    rx: std::sync::mpsc::Receiver<String>,
}

impl ChangeFeed<'_> {
    /// The next change (`slug:serial` or `slug:removed`), waiting up to `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<String> {
        self.rx.recv_timeout(timeout).ok()
    }
}

/// How long a call keeps trying while the server cannot be reached (a restart, a failover).
pub const RECONNECT_FOR: Duration = Duration::from_secs(15);

/// The pauses between attempts while the server cannot be reached: from 100 ms, doubling up to
/// 2 s, for [`RECONNECT_FOR`] in all.
struct Reconnecting {
    deadline: Instant,
    pause: Duration,
}

impl Reconnecting {
    fn start() -> Reconnecting {
        Reconnecting { deadline: Instant::now() + RECONNECT_FOR, pause: Duration::from_millis(100) }
    }

    /// Waits before the next attempt after `failed`; false (without waiting) when that attempt
    /// would come after the deadline.
    fn wait(&mut self, failed: &StateError) -> bool {
        if Instant::now() + self.pause > self.deadline {
            return false;
        }
        tracing::warn!("{failed}; trying again in {} ms", self.pause.as_millis());
        std::thread::sleep(self.pause);
        self.pause = (self.pause * 2).min(Duration::from_secs(2));
        true
    }
}

/// Data sessions a store opens at most: enough for the tenants one runner applies at once to
/// write side by side, few enough for several runners on one server's `max_connections`.
const DATA_SESSIONS: usize = 4;

#[derive(Default)]
struct DataPool {
    idle: Vec<Client>,
    /// Sessions open: idle ones and those lent out.
    open: usize,
}

/// A data session lent out by [`PostgresStore::data`]; back to the pool when dropped.
struct Pooled<'a> {
    store: &'a PostgresStore,
    client: Option<Client>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("present until dropped")
    }
}

impl Pooled<'_> {
    /// Closes a session that no longer answers instead of giving it back to the pool.
    fn discard(&mut self) {
        if self.client.take().is_some() {
            lock(&self.store.data).open -= 1;
            self.store.data_free.notify_one();
        }
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let mut pool = lock(&self.store.data);
            if client.is_closed() {
                pool.open -= 1;
            } else {
                pool.idle.push(client);
            }
            self.store.data_free.notify_one();
        }
    }
}

/// The session holding this store's advisory locks, and the tenants it holds them for.
#[derive(Default)]
struct LockSession {
    client: Option<Client>,
    backend_pid: i32,
    /// Slug → the id of the lock this store took.
    held: BTreeMap<String, String>,
    /// Tenants whose lock this store held when its session was lost, and which another run took
    /// before it could take them again.
    lost: BTreeSet<String>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("at", &self.label).finish_non_exhaustive()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Closing the sessions releases every advisory lock; shutting down in the background
        // never blocks, so the store may be dropped inside an async context.
        self.data.get_mut().unwrap_or_else(PoisonError::into_inner).idle.clear();
        self.locks.get_mut().unwrap_or_else(PoisonError::into_inner).client.take();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Runs a future to completion on this thread. The futures of a connected [`Client`] only talk to
/// the connection task (which runs on the store's runtime) through channels, so they need no
/// reactor of their own.
fn block_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The advisory lock key of a tenant: the first 8 bytes of SHA-256("matih-state-lock:" + slug).
pub fn lock_key(slug: &str) -> i64 {
    let digest = Sha256::digest(format!("matih-state-lock:{slug}").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

fn to_i64(slug: &str, serial: u64) -> Result<i64, StateError> {
    i64::try_from(serial)
        .map_err(|_| StateError::Invalid { slug: slug.to_string(), message: format!("serial {serial} is too large") })
}

impl PostgresStore {
    /// The tenants whose written resources this store keeps (tests).
    #[cfg(test)]
    pub(crate) fn remembered(&self) -> usize {
        lock(&self.written).len()
    }

    /// Connects to the database at `url` (`postgresql://USER:PASSWORD@HOST:PORT/DB`), creating or
    /// migrating matih's tables on first use. Errors never contain the URL.
    pub fn connect(url: &str) -> Result<PostgresStore, StateError> {
        let mut config = crate::pgconn::parse(url).map_err(|message| StateError::Io {
            path: "postgresql".into(),
            message: format!("state URL: {message}"),
        })?;
        if config.config.get_connect_timeout().is_none() {
            config.config.connect_timeout(Duration::from_secs(10));
        }
        if config.config.get_application_name().is_none() {
            config.config.application_name("matih-state");
        }
        let label = label(&config.config);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("matih-state-pg")
            .enable_all()
            .build()
            .map_err(|e| StateError::Io { path: label.clone(), message: format!("cannot start a runtime: {e}") })?;
        let store = PostgresStore {
            rt: Some(rt),
            config,
            label,
            data: Mutex::new(DataPool::default()),
            data_free: std::sync::Condvar::new(),
            locks: Mutex::new(LockSession::default()),
            written: Mutex::new(HashMap::new()),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Where this store is, without the password (`postgresql://user@host:port/db`).
    pub fn label(&self) -> &str {
        &self.label
    }

    fn io(&self, what: &str, e: &tokio_postgres::Error) -> StateError {
        StateError::Io { path: self.label.clone(), message: format!("{what}: {}", describe(e).0) }
    }

    fn corrupt(&self, message: String) -> StateError {
        StateError::Corrupt { path: self.label.clone(), message }
    }

    /// A new session, its connection task running on the store's runtime; on failure, also
    /// whether it is worth trying again (the server could not be reached, or is starting or
    /// shutting down; not a refused password).
    fn open_session_checked(&self) -> Result<Client, (StateError, bool)> {
        let config = self.config.clone();
        let rt = self.rt.as_ref().expect("runtime present until drop");
        let joined = block_on(rt.spawn(async move {
            let (client, connection) = config.config.connect(config.tls.clone()).await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!("state store connection closed: {}", describe(&e).0);
                }
            });
            Ok::<Client, tokio_postgres::Error>(client)
        }));
        match joined {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err((self.io("cannot connect", &e), describe(&e).1)),
            Err(e) => {
                Err((StateError::Io { path: self.label.clone(), message: format!("connect task failed: {e}") }, false))
            }
        }
    }

    /// A data session: an idle one that is still open, a new one while fewer than
    /// [`DATA_SESSIONS`] are open, or the next one given back.
    fn data(&self) -> Result<Pooled<'_>, StateError> {
        self.data_checked().map_err(|(e, _)| e)
    }

    /// [`Self::data`], and whether a failure to open a session is worth trying again.
    fn data_checked(&self) -> Result<Pooled<'_>, (StateError, bool)> {
        let mut pool = lock(&self.data);
        loop {
            while let Some(client) = pool.idle.pop() {
                if !client.is_closed() {
                    return Ok(Pooled { store: self, client: Some(client) });
                }
                pool.open -= 1;
            }
            if pool.open < DATA_SESSIONS {
                pool.open += 1;
                drop(pool);
                return match self.open_session_checked() {
                    Ok(client) => Ok(Pooled { store: self, client: Some(client) }),
                    Err(e) => {
                        lock(&self.data).open -= 1;
                        self.data_free.notify_one();
                        Err(e)
                    }
                };
            }
            pool = self.data_free.wait(pool).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Runs `call` on a data session, again on a new one while the server cannot be reached, for
    /// up to [`RECONNECT_FOR`]. `call` is sent again after its session was lost only when `resend`
    /// (reads; writes that check whether the lost attempt committed); its second argument says
    /// that an earlier attempt was sent and its session lost.
    fn through_outage<T>(
        &self,
        resend: bool,
        mut call: impl FnMut(&mut Client, bool) -> Result<T, StateError>,
    ) -> Result<T, StateError> {
        let mut reconnecting = Reconnecting::start();
        let mut sent = false;
        loop {
            let failed = match self.data_checked() {
                // A session the server is ending (57P01 when it stops) may still look open: it is
                // lost when it cannot answer a trivial query either.
                Ok(mut guard) => match call(&mut guard, sent) {
                    Err(e) if resend && (guard.is_closed() || block_on(guard.simple_query("SELECT 1")).is_err()) => {
                        guard.discard();
                        sent = true;
                        e
                    }
                    other => return other,
                },
                Err((e, true)) => e,
                Err((e, false)) => return Err(e),
            };
            if !reconnecting.wait(&failed) {
                return Err(failed);
            }
        }
    }

    fn migrate(&self) -> Result<(), StateError> {
        let mut guard = self.data()?;
        let client = &mut *guard;
        let found = block_on(read_version(client)).map_err(|e| self.io("read the schema version", &e))?;
        if found == Some(SCHEMA_VERSION) {
            return Ok(());
        }
        block_on(async {
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY]).await?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS matih_schema (
                    one boolean PRIMARY KEY DEFAULT true CHECK (one),
                    version integer NOT NULL,
                    migrated_at timestamptz NOT NULL DEFAULT now())",
            )
            .await?;
            let row = tx.query_opt("SELECT version FROM matih_schema", &[]).await?;
            let found: i32 = row.map_or(0, |r| r.get(0));
            if found > SCHEMA_VERSION {
                return Ok(Err(found));
            }
            if found < 1 {
                tx.batch_execute(SCHEMA_V1).await?;
            }
            if found < 2 {
                tx.batch_execute(SCHEMA_V2).await?;
            }
            // Later versions: `if found < 3 { … }`, each step in this same transaction.
            tx.execute(
                "INSERT INTO matih_schema (version) VALUES ($1)
                 ON CONFLICT (one) DO UPDATE SET version = EXCLUDED.version, migrated_at = now()",
                &[&SCHEMA_VERSION],
            )
            .await?;
            tx.commit().await?;
            Ok::<Result<(), i32>, tokio_postgres::Error>(Ok(()))
        })
        .map_err(|e: tokio_postgres::Error| self.io("create or migrate the state schema", &e))?
        .map_err(|found| StateError::Version {
            path: self.label.clone(),
            found: found as u32,
            supported: SCHEMA_VERSION as u32,
        })
    }

    fn read_state(
        &self,
        client: &impl tokio_postgres::GenericClient,
        slug: &str,
    ) -> Result<Option<TenantState>, StateError> {
        let row = block_on(client.query_opt("SELECT state FROM matih_tenants WHERE slug = $1", &[&slug]))
            .map_err(|e| self.io(&format!("read the state of {slug:?}"), &e))?;
        let Some(row) = row else { return Ok(None) };
        let text: String = row.get(0);
        let mut state: TenantState = serde_json::from_str(&text)
            .map_err(|e| self.corrupt(format!("the state of tenant {slug:?} is not valid: {e}")))?;
        state.resources = self.read_resources(client, slug)?;
        Ok(Some(state))
    }

    /// The resource rows of a tenant.
    fn read_resources(
        &self,
        client: &impl tokio_postgres::GenericClient,
        slug: &str,
    ) -> Result<BTreeMap<ResourceAddr, ResourceState>, StateError> {
        let rows = block_on(client.query("SELECT address, record FROM matih_resources WHERE slug = $1", &[&slug]))
            .map_err(|e| self.io(&format!("read the state of {slug:?}"), &e))?;
        let mut resources = BTreeMap::new();
        for r in rows {
            let address: String = r.get(0);
            let record: String = r.get(1);
            let addr: ResourceAddr = address.parse().map_err(|e| {
                self.corrupt(format!("tenant {slug:?} has a resource with a bad address {address:?}: {e}"))
            })?;
            let rs: ResourceState = serde_json::from_str(&record)
                .map_err(|e| self.corrupt(format!("resource {address} of tenant {slug:?} is not valid: {e}")))?;
            resources.insert(addr, rs);
        }
        Ok(resources)
    }

    /// The write shared by `put`, `put_audited` and `remove` (`state` `None`): one transaction.
    /// `again`: an earlier attempt of this same write was sent and its session lost, so it may
    /// have committed.
    #[allow(clippy::too_many_arguments)]
    fn write(
        &self,
        client: &mut Client,
        slug: &str,
        state: Option<&TenantState>,
        expected_serial: Option<u64>,
        operation: &str,
        audit: &[AuditEntry],
        again: bool,
    ) -> Result<(), StateError> {
        let tx = block_on(client.transaction()).map_err(|e| self.io("begin a transaction", &e))?;
        let row =
            block_on(tx.query_opt("SELECT serial, state FROM matih_tenants WHERE slug = $1 FOR UPDATE", &[&slug]))
                .map_err(|e| self.io(&format!("read the serial of {slug:?}"), &e))?;
        let found = row.as_ref().map(|r| r.get::<_, i64>(0) as u64);
        if found != expected_serial && again && found == state.map(|s| s.serial) {
            // The lost attempt may have committed: it did when the row is exactly this state.
            let ours = match (state, &row) {
                (Some(state), Some(r)) => {
                    serde_json::to_string(&state.without_resources()).is_ok_and(|json| json == r.get::<_, &str>(1))
                }
                (None, None) => true,
                _ => false,
            };
            if ours {
                lock(&self.written).remove(slug);
                return Ok(());
            }
        }
        if found != expected_serial {
            return Err(StateError::SerialConflict { slug: slug.to_string(), expected: expected_serial, found });
        }
        // The replaced state without its resources (they have their own rows): enough to decide
        // whether it goes to history, and to know whether our record of its rows still holds.
        let replaced_head: Option<TenantState> = match &row {
            Some(r) => Some(
                serde_json::from_str(r.get::<_, &str>(1))
                    .map_err(|e| self.corrupt(format!("the state of tenant {slug:?} is not valid: {e}")))?,
            ),
            None => None,
        };
        let mut written = lock(&self.written).remove(slug);
        let current =
            |w: &Written| replaced_head.as_ref().is_some_and(|h| h.lineage == w.lineage) && found == Some(w.serial);
        if !written.as_ref().is_some_and(current) {
            written = None;
        }
        let now = now_rfc3339();
        // A run's intermediate states are not history (`goes_to_history`).
        if let Some(mut replaced) = replaced_head.filter(|r| goes_to_history(r, state)) {
            replaced.resources = match &written {
                Some(w) => w.resources.clone(),
                None => self.read_resources(&tx, slug)?,
            };
            let json = serde_json::to_string(&replaced).map_err(|e| self.corrupt(e.to_string()))?;
            let serial = to_i64(slug, replaced.serial)?;
            block_on(tx.execute(
                "INSERT INTO matih_history (slug, serial, at, operation, state) VALUES ($1, $2, $3, $4, $5)",
                &[&slug, &serial, &now, &operation, &json],
            ))
            .map_err(|e| self.io(&format!("append to the history of {slug:?}"), &e))?;
        }
        let mut rows = None;
        let notice = match state {
            None => {
                block_on(tx.execute("DELETE FROM matih_tenants WHERE slug = $1", &[&slug]))
                    .map_err(|e| self.io(&format!("remove the state of {slug:?}"), &e))?;
                format!("{slug}:removed")
            }
            Some(state) => {
                rows = Some(self.write_rows(&tx, state, found.is_some(), written)?);
                format!("{slug}:{}", state.serial)
            }
        };
        insert_audit(&tx, slug, audit).map_err(|e| self.io(&format!("append to the audit log of {slug:?}"), &e))?;
        block_on(async {
            tx.execute("SELECT pg_notify($1, $2)", &[&CHANGE_CHANNEL, &notice]).await?;
            tx.commit().await
        })
        .map_err(|e| self.io(&format!("commit the state of {slug:?}"), &e))?;
        if let (Some(state), Some(resources)) = (state, rows) {
            let w = Written { lineage: state.lineage.clone(), serial: state.serial, resources };
            lock(&self.written).insert(slug.to_string(), w);
        }
        Ok(())
    }

    /// Writes the tenant's row and its resource rows, and returns what the resource rows hold
    /// then. With `written` (what they hold now, as this store wrote them), only resources that
    /// changed are upserted and only removed ones deleted: an apply writes after every operation,
    /// and rewriting every resource each time would make a tenant's run quadratic in its size.
    fn write_rows(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        state: &TenantState,
        exists: bool,
        written: Option<Written>,
    ) -> Result<BTreeMap<ResourceAddr, ResourceState>, StateError> {
        let slug = state.slug.as_str();
        let resources = &state.resources;
        let head_json = serde_json::to_string(&state.without_resources()).map_err(|e| self.corrupt(e.to_string()))?;
        let status = enum_name(&state.status);
        let serial = to_i64(slug, state.serial)?;
        let incremental = exists && written.is_some();
        let mut before = written.filter(|_| exists).map(|w| w.resources).unwrap_or_default();
        let mut after = BTreeMap::new();
        let mut addresses = Vec::with_capacity(resources.len());
        let mut phases = Vec::with_capacity(resources.len());
        let mut records = Vec::with_capacity(resources.len());
        for (addr, rs) in resources {
            // Unchanged records move over from what was written; changed ones are sent.
            let record = match before.remove(addr) {
                Some(old) if &old == rs => old,
                _ => {
                    addresses.push(addr.to_string());
                    phases.push(enum_name(&rs.phase));
                    records.push(serde_json::to_string(rs).map_err(|e| self.corrupt(e.to_string()))?);
                    rs.clone()
                }
            };
            after.insert(addr.clone(), record);
        }
        // What is left of `before` is no longer recorded.
        let removed: Vec<String> = before.keys().map(ToString::to_string).collect();
        block_on(async {
            if exists {
                tx.execute(
                    "UPDATE matih_tenants SET serial = $2, lineage = $3, status = $4, updated_at = $5, state = $6
                     WHERE slug = $1",
                    &[&slug, &serial, &state.lineage, &status, &state.updated_at, &head_json],
                )
                .await?;
                if !incremental {
                    tx.execute("DELETE FROM matih_resources WHERE slug = $1", &[&slug]).await?;
                } else if !removed.is_empty() {
                    tx.execute("DELETE FROM matih_resources WHERE slug = $1 AND address = ANY($2)", &[&slug, &removed])
                        .await?;
                }
            } else {
                let inserted = tx
                    .execute(
                        "INSERT INTO matih_tenants (slug, serial, lineage, status, updated_at, state)
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (slug) DO NOTHING",
                        &[&slug, &serial, &state.lineage, &status, &state.updated_at, &head_json],
                    )
                    .await?;
                if inserted == 0 {
                    // Another writer created the tenant since our read (read committed: this
                    // statement sees its commit).
                    let found = tx.query_opt("SELECT serial FROM matih_tenants WHERE slug = $1", &[&slug]).await?;
                    return Ok(Some(found.map(|r| r.get::<_, i64>(0) as u64)));
                }
            }
            if !addresses.is_empty() {
                tx.execute(
                    "INSERT INTO matih_resources (slug, address, phase, record)
                     SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[])
                     ON CONFLICT (slug, address) DO UPDATE SET phase = EXCLUDED.phase, record = EXCLUDED.record",
                    &[&slug, &addresses, &phases, &records],
                )
                .await?;
            }
            Ok::<_, tokio_postgres::Error>(None)
        })
        .map_err(|e| self.io(&format!("write the state of {slug:?}"), &e))?
        .map_or(Ok(after), |found| Err(StateError::SerialConflict { slug: slug.to_string(), expected: None, found }))
    }

    /// The lock session. When the server closed it (its advisory locks went with it), a new one
    /// is opened (trying for up to [`RECONNECT_FOR`] while the server cannot be reached) and takes
    /// again the locks the old one held; those another run took meanwhile are lost.
    fn lock_session(&self) -> Result<MutexGuard<'_, LockSession>, StateError> {
        let mut guard = lock(&self.locks);
        if guard.client.as_ref().is_none_or(Client::is_closed) {
            let mut reconnecting = Reconnecting::start();
            let client = loop {
                match self.open_session_checked() {
                    Ok(client) => break client,
                    Err((e, true)) if reconnecting.wait(&e) => {}
                    Err((e, _)) => return Err(e),
                }
            };
            let pid: i32 = block_on(client.query_one("SELECT pg_backend_pid()", &[]))
                .map_err(|e| self.io("start the lock session", &e))?
                .get(0);
            let held = std::mem::take(&mut guard.held);
            guard.client = Some(client);
            guard.backend_pid = pid;
            for (slug, id) in held {
                if self.take_again(guard.client.clone_ref(), pid, &slug, &id)? {
                    guard.held.insert(slug, id);
                } else {
                    tracing::warn!("lost the lock of tenant {slug:?} while the state store was out of reach");
                    guard.lost.insert(slug);
                }
            }
        }
        Ok(guard)
    }

    /// Takes again, on a new lock session (`backend_pid`), the lock `id` of `slug` that this store
    /// held on a session that is gone. False when another run took it meanwhile.
    fn take_again(&self, client: &Client, backend_pid: i32, slug: &str, id: &str) -> Result<bool, StateError> {
        let key = lock_key(slug);
        let failed = |e: tokio_postgres::Error| self.io(&format!("take the lock of {slug:?} again"), &e);
        let got: bool = block_on(client.query_one("SELECT pg_try_advisory_lock($1)", &[&key])).map_err(failed)?.get(0);
        if !got {
            return Ok(false);
        }
        let ours = block_on(client.execute(
            "UPDATE matih_locks SET backend_pid = $3 WHERE slug = $1 AND id = $2",
            &[&slug, &id, &backend_pid],
        ))
        .map_err(failed)?;
        if ours == 0 {
            block_on(client.execute("SELECT pg_advisory_unlock($1)", &[&key])).map_err(failed)?;
        }
        Ok(ours == 1)
    }

    /// Before this store writes `slug`'s state: when it locked `slug`, that it still holds the
    /// lock (taken again on a new session if the old one was lost); `Locked` when another run
    /// took it meanwhile.
    fn still_locked(&self, slug: &str) -> Result<(), StateError> {
        let mine = {
            let session = lock(&self.locks);
            session.held.contains_key(slug) || session.lost.contains(slug)
        };
        if !mine {
            return Ok(());
        }
        let session = self.lock_session()?;
        if !session.lost.contains(slug) {
            return Ok(());
        }
        let holder = self.lock_row(session.client.clone_ref(), slug)?.map(|(h, _)| h).unwrap_or_else(|| LockInfo {
            id: String::new(),
            slug: slug.to_string(),
            operation: "(unknown)".into(),
            who: "another run, while the state store was out of reach".into(),
            host: "(unknown)".into(),
            pid: 0,
            created_at: now_rfc3339(),
        });
        Err(StateError::Locked { slug: slug.to_string(), holder: Box::new(holder) })
    }

    fn lock_row(&self, client: &Client, slug: &str) -> Result<Option<(LockInfo, i32)>, StateError> {
        let row = block_on(client.query_opt(
            "SELECT id, slug, operation, who, host, pid, created_at, backend_pid FROM matih_locks WHERE slug = $1",
            &[&slug],
        ))
        .map_err(|e| self.io(&format!("read the lock of {slug:?}"), &e))?;
        Ok(row.map(|r| (lock_info(&r), r.get(7))))
    }

    fn write_lock_row(&self, client: &Client, info: &LockInfo, backend_pid: i32) -> Result<(), StateError> {
        block_on(client.execute(
            "INSERT INTO matih_locks (slug, id, operation, who, host, pid, created_at, lock_key, backend_pid)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (slug) DO UPDATE SET id = EXCLUDED.id, operation = EXCLUDED.operation, who = EXCLUDED.who,
                 host = EXCLUDED.host, pid = EXCLUDED.pid, created_at = EXCLUDED.created_at,
                 lock_key = EXCLUDED.lock_key, backend_pid = EXCLUDED.backend_pid",
            &[
                &info.slug,
                &info.id,
                &info.operation,
                &info.who,
                &info.host,
                &i64::from(info.pid),
                &info.created_at,
                &lock_key(&info.slug),
                &backend_pid,
            ],
        ))
        .map_err(|e| self.io(&format!("write the lock of {:?}", info.slug), &e))?;
        Ok(())
    }

    /// The change feed: a session that `LISTEN`s on [`CHANGE_CHANNEL`]; each committed write
    /// arrives as `slug:serial` (`slug:removed` for a removal), in commit order.
    pub fn changes(&self) -> Result<ChangeFeed<'_>, StateError> {
        let config = self.config.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let rt = self.rt.as_ref().expect("runtime present until drop");
        let joined = block_on(rt.spawn(async move {
            let (client, mut connection) = config.config.connect(config.tls.clone()).await?;
            tokio::spawn(async move {
                while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    match message {
                        Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                            if tx.send(n.payload().to_string()).is_err() {
                                break;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::debug!("change feed connection closed: {}", describe(&e).0);
                            break;
                        }
                    }
                }
            });
            client.batch_execute(&format!("LISTEN {CHANGE_CHANNEL}")).await?;
            Ok::<Client, tokio_postgres::Error>(client)
        }));
        match joined {
            Ok(Ok(client)) => Ok(ChangeFeed { _store: self, _client: client, rx }),
            Ok(Err(e)) => Err(self.io("listen for changes", &e)),
            Err(e) => Err(StateError::Io { path: self.label.clone(), message: format!("listen task failed: {e}") }),
        }
    }

    /// Every tenant's state, history and audit log as one SHA-256 per tenant (hex), for comparing
    /// two stores (`matih state migrate`). Also used on the other backends through [`digests`].
    pub fn digests(&self) -> Result<BTreeMap<String, String>, StateError> {
        digests(self)
    }
}

/// Per-tenant SHA-256 (hex) over the canonical JSON of the tenant's state, history and audit log,
/// for every tenant the store knows ([`StateStore::all_slugs`]).
pub fn digests(store: &dyn StateStore) -> Result<BTreeMap<String, String>, StateError> {
    let mut out = BTreeMap::new();
    for slug in store.all_slugs()? {
        out.insert(slug.clone(), tenant_digest(store, &slug)?);
    }
    Ok(out)
}

/// SHA-256 (hex) of one tenant's state, history (serial, operation, state) and audit log.
pub fn tenant_digest(store: &dyn StateStore, slug: &str) -> Result<String, StateError> {
    let state = store.get(slug)?;
    let history: Vec<(u64, String, TenantState)> =
        store.history(slug)?.into_iter().map(|h| (h.serial, h.operation, h.state)).collect();
    let audit = store.audit(slug)?;
    let doc = serde_json::json!({ "state": state, "history": history, "audit": audit });
    let bytes =
        serde_json::to_vec(&doc).map_err(|e| StateError::Corrupt { path: slug.into(), message: e.to_string() })?;
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}

async fn read_version(client: &Client) -> Result<Option<i32>, tokio_postgres::Error> {
    let exists: bool = client.query_one("SELECT to_regclass('matih_schema') IS NOT NULL", &[]).await?.get(0);
    if !exists {
        return Ok(None);
    }
    Ok(client.query_opt("SELECT version FROM matih_schema", &[]).await?.map(|r| r.get(0)))
}

fn insert_audit(
    client: &impl tokio_postgres::GenericClient,
    slug: &str,
    entries: &[AuditEntry],
) -> Result<(), tokio_postgres::Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut at = Vec::new();
    let mut run = Vec::new();
    let mut op = Vec::new();
    let mut action = Vec::new();
    let mut outcome = Vec::new();
    let mut json = Vec::new();
    for e in entries {
        at.push(e.at.clone());
        run.push(e.run_id.clone());
        op.push(e.operation.clone());
        action.push(e.action.clone());
        outcome.push(e.outcome.clone());
        json.push(serde_json::to_string(e).expect("an audit entry serializes"));
    }
    block_on(client.execute(
        "INSERT INTO matih_audit (slug, at, run_id, operation, action, outcome, entry)
         SELECT $1, at, run_id, operation, action, outcome, entry
         FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
             WITH ORDINALITY AS t(at, run_id, operation, action, outcome, entry, n) ORDER BY n",
        &[&slug, &at, &run, &op, &action, &outcome, &json],
    ))?;
    Ok(())
}

fn lock_info(r: &tokio_postgres::Row) -> LockInfo {
    LockInfo {
        id: r.get(0),
        slug: r.get(1),
        operation: r.get(2),
        who: r.get(3),
        host: r.get(4),
        pid: u32::try_from(r.get::<_, i64>(5)).unwrap_or(0),
        created_at: r.get(6),
    }
}

/// The serde name of a unit enum variant (`ACTIVE`, `SETUP_DATABASE`).
fn enum_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

fn label(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("");
    let db = config.get_dbname().unwrap_or(user);
    format!("postgresql://{user}@{host}:{port}/{db}")
}

impl StateStore for PostgresStore {
    fn tenants(&self) -> Result<Vec<String>, StateError> {
        let rows = self.through_outage(true, |client, _| {
            block_on(client.query("SELECT slug FROM matih_tenants ORDER BY slug COLLATE \"C\"", &[]))
                .map_err(|e| self.io("list the tenants", &e))
        })?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn get(&self, slug: &str) -> Result<Option<TenantState>, StateError> {
        self.through_outage(true, |client, _| {
            // One snapshot for the tenant row and its resources.
            let tx = block_on(
                client
                    .build_transaction()
                    .read_only(true)
                    .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                    .start(),
            )
            .map_err(|e| self.io("begin a transaction", &e))?;
            let state = self.read_state(&tx, slug)?;
            block_on(tx.commit()).map_err(|e| self.io("end a transaction", &e))?;
            Ok(state)
        })
    }

    fn put_audited(
        &self,
        state: &TenantState,
        expected_serial: Option<u64>,
        operation: &str,
        audit: &[AuditEntry],
    ) -> Result<(), StateError> {
        check_put(state, expected_serial)?;
        self.still_locked(&state.slug)?;
        self.through_outage(true, |client, again| {
            self.write(client, &state.slug, Some(state), expected_serial, operation, audit, again)
        })
    }

    fn remove(&self, slug: &str, expected_serial: u64, operation: &str) -> Result<(), StateError> {
        check_slug(slug)?;
        self.still_locked(slug)?;
        self.through_outage(true, |client, again| {
            self.write(client, slug, None, Some(expected_serial), operation, &[], again)
        })
    }

    fn history(&self, slug: &str) -> Result<Vec<HistoryEntry>, StateError> {
        let rows =
            self.through_outage(true, |client, _| {
                block_on(client.query(
                    "SELECT serial, at, operation, state FROM matih_history WHERE slug = $1 ORDER BY seq",
                    &[&slug],
                ))
                .map_err(|e| self.io(&format!("read the history of {slug:?}"), &e))
            })?;
        rows.iter()
            .map(|r| {
                let text: String = r.get(3);
                Ok(HistoryEntry {
                    serial: r.get::<_, i64>(0) as u64,
                    at: r.get(1),
                    operation: r.get(2),
                    state: serde_json::from_str(&text)
                        .map_err(|e| self.corrupt(format!("a history entry of {slug:?} is not valid: {e}")))?,
                })
            })
            .collect()
    }

    fn lock(&self, info: &LockInfo) -> Result<(), StateError> {
        check_slug(&info.slug)?;
        let slug = info.slug.as_str();
        let key = lock_key(slug);
        let this_host = hostname();
        let mut session = self.lock_session()?;
        let LockSession { client, backend_pid, held, lost } = &mut *session;
        let (client, backend_pid) = (client.clone_ref(), *backend_pid);
        if held.contains_key(slug) {
            // Our session holds the advisory lock already (for a holder this process recorded):
            // the row decides, as in the other backends.
            if let Some((holder, _)) = self.lock_row(client, slug)? {
                if !lock_is_stale(&holder, &this_host) {
                    return Err(StateError::Locked { slug: slug.to_string(), holder: Box::new(holder) });
                }
            }
            return self.write_lock_row(client, info, backend_pid);
        }
        let got: bool = block_on(client.query_one("SELECT pg_try_advisory_lock($1)", &[&key]))
            .map_err(|e| self.io(&format!("take the lock of {slug:?}"), &e))?
            .get(0);
        if got {
            // Free, but the row may name a live process of this host whose session was lost (the
            // server restarted): it is taking its lock again, so the lock is not stale.
            if let Some((holder, _)) = self.lock_row(client, slug)? {
                if holder.host == this_host && holder.pid != std::process::id() && !lock_is_stale(&holder, &this_host) {
                    let _ = block_on(client.execute("SELECT pg_advisory_unlock($1)", &[&key]));
                    return Err(StateError::Locked { slug: slug.to_string(), holder: Box::new(holder) });
                }
            }
        } else {
            // Another session holds it. Its row may lag the advisory lock by a moment.
            let mut row = self.lock_row(client, slug)?;
            for _ in 0..20 {
                if row.is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
                row = self.lock_row(client, slug)?;
            }
            let Some((holder, holder_backend)) = row else {
                let holder = LockInfo {
                    id: String::new(),
                    slug: slug.to_string(),
                    operation: "(unknown)".into(),
                    who: "another session".into(),
                    host: "(unknown)".into(),
                    pid: 0,
                    created_at: now_rfc3339(),
                };
                return Err(StateError::Locked { slug: slug.to_string(), holder: Box::new(holder) });
            };
            if !lock_is_stale(&holder, &this_host) {
                return Err(StateError::Locked { slug: slug.to_string(), holder: Box::new(holder) });
            }
            // The holder process is dead but its session lingers: end the session, then take over.
            block_on(async {
                client.execute("SELECT pg_terminate_backend($1)", &[&holder_backend]).await?;
                client.batch_execute("SET lock_timeout = '10s'").await?;
                let r = client.execute("SELECT pg_advisory_lock($1)", &[&key]).await;
                client.batch_execute("RESET lock_timeout").await?;
                r
            })
            .map_err(|e| self.io(&format!("take over the stale lock of {slug:?}"), &e))?;
        }
        held.insert(slug.to_string(), info.id.clone());
        lost.remove(slug);
        if let Err(e) = self.write_lock_row(client, info, backend_pid) {
            let _ = block_on(client.execute("SELECT pg_advisory_unlock($1)", &[&key]));
            held.remove(slug);
            return Err(e);
        }
        Ok(())
    }

    fn unlock(&self, slug: &str, id: &str) -> Result<(), StateError> {
        // What this store wrote of the tenant serves the writes of the run that held it: without
        // the lock, the next write is another run's. Kept, it would hold every tenant a fleet's
        // apply ever wrote until the process ends.
        lock(&self.written).remove(slug);
        let mut session = self.lock_session()?;
        if session.lost.remove(slug) {
            // Another run took it while the state store was out of reach: nothing of ours to release.
            return Ok(());
        }
        let LockSession { client, backend_pid: own_pid, held: ours, .. } = &mut *session;
        let (client, own_pid) = (client.clone_ref(), *own_pid);
        let row = block_on(client.query_opt(
            &format!(
                "DELETE FROM matih_locks k WHERE slug = $1 AND id = $2 RETURNING backend_pid, lock_key, {HELD_BY_SESSION}"
            ),
            &[&slug, &id],
        ))
        .map_err(|e| self.io(&format!("release the lock of {slug:?}"), &e))?;
        let Some(row) = row else {
            return Err(StateError::NoSuchLock { slug: slug.to_string(), id: id.to_string() });
        };
        let (backend_pid, key, still_held): (i32, i64, bool) = (row.get(0), row.get(1), row.get(2));
        if ours.remove(slug).is_some() {
            block_on(client.execute("SELECT pg_advisory_unlock($1)", &[&key]))
                .map_err(|e| self.io(&format!("release the lock of {slug:?}"), &e))?;
        } else if still_held && backend_pid != own_pid {
            // Force-unlock of a lock another session still holds: that holder is declared dead.
            // Termination is asynchronous: wait (up to 5 s) until the session, and its advisory
            // lock, are gone, so that the tenant can be locked as soon as this returns.
            let failed =
                |e: tokio_postgres::Error| self.io(&format!("end the session holding the lock of {slug:?}"), &e);
            block_on(client.execute("SELECT pg_terminate_backend($1)", &[&backend_pid])).map_err(failed)?;
            for _ in 0..100 {
                let row =
                    block_on(client.query_one("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", &[&backend_pid]))
                        .map_err(failed)?;
                if row.get::<_, i64>(0) == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    fn locks(&self) -> Result<Vec<LockInfo>, StateError> {
        let rows = self.through_outage(true, |client, _| {
            block_on(client.query(
                &format!(
                    "SELECT id, slug, operation, who, host, pid, created_at FROM matih_locks k
                     WHERE {HELD_BY_SESSION} ORDER BY slug COLLATE \"C\""
                ),
                &[],
            ))
            .map_err(|e| self.io("list the locks", &e))
        })?;
        Ok(rows.iter().map(lock_info).collect())
    }

    fn append_audit(&self, slug: &str, entries: &[AuditEntry]) -> Result<(), StateError> {
        check_slug(slug)?;
        // Not sent again after a lost session: it may have committed, and would be appended twice.
        self.through_outage(false, |client, _| {
            insert_audit(&*client, slug, entries)
                .map_err(|e| self.io(&format!("append to the audit log of {slug:?}"), &e))
        })
    }

    fn all_slugs(&self) -> Result<Vec<String>, StateError> {
        let rows = self.through_outage(true, |client, _| {
            block_on(client.query(
                "SELECT slug FROM (SELECT slug FROM matih_tenants UNION SELECT slug FROM matih_history
                     UNION SELECT slug FROM matih_audit) s ORDER BY slug COLLATE \"C\"",
                &[],
            ))
            .map_err(|e| self.io("list the tenants", &e))
        })?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn feed_publisher(&self) -> Option<FeedPublisher> {
        Some(self.publisher())
    }

    fn audit(&self, slug: &str) -> Result<Vec<AuditEntry>, StateError> {
        let rows = self.through_outage(true, |client, _| {
            block_on(client.query("SELECT entry FROM matih_audit WHERE slug = $1 ORDER BY seq", &[&slug]))
                .map_err(|e| self.io(&format!("read the audit log of {slug:?}"), &e))
        })?;
        rows.iter()
            .map(|r| {
                let text: String = r.get(0);
                serde_json::from_str(&text)
                    .map_err(|e| self.corrupt(format!("an audit entry of {slug:?} is not valid: {e}")))
            })
            .collect()
    }
}

trait ClientRef {
    fn clone_ref(&self) -> &Client;
}

impl ClientRef for Option<Client> {
    fn clone_ref(&self) -> &Client {
        self.as_ref().expect("lock session connected")
    }
}
