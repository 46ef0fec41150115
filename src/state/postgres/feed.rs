//! The shared progress feed of the PostgreSQL backend: how `matih serve` on one machine follows an
//! apply running on another.
//!
//! * **Publishing** ([`FeedPublisher`], from [`crate::state::StateStore::feed_publisher`]): the applying process
//!   hands each progress event (its JSON, exactly the line the feed file gets) to a bounded queue
//!   and returns at once. A task on the store's runtime, with a session of its own, writes what is
//!   queued in batches: one transaction per batch that inserts the rows into `matih_feed` and sends
//!   `NOTIFY matih_feed, 'SEQ'` (the batch's last sequence number: a payload far below the 8000-byte
//!   limit, whatever the size of the events). Batches are written one at a time across all
//!   publishers (a transaction-scoped advisory lock), so sequence numbers become visible in order
//!   and a follower that reads `seq > last` never skips a row that committed late. A full queue or
//!   an unreachable database drops events, logged once; neither ever slows or fails the apply.
//!   [`FeedPublisher::flush`] waits (bounded) until what was queued is written.
//! * **Pruning:** the table is bounded: per tenant only the newest [`FEED_KEEP_PER_TENANT`] events
//!   are kept, pruned by the publisher every few hundred events and when a tenant's run ends.
//! * **Following** ([`PostgresStore::follow`]): a session `LISTEN`s on `matih_feed` and on
//!   [`CHANGE_CHANNEL`] and reports, in order, [`FeedNews::Connected`] (after every (re)connect:
//!   state notifications may have been missed), [`FeedNews::Events`] (rows read from the table
//!   after the last sequence number seen, so nothing is lost over a reconnect and nothing is
//!   delivered twice) and [`FeedNews::StateChanged`] (a tenant's state was written). It starts at
//!   the end of the table (history is for [`PostgresStore::feed_events`]) and reconnects with
//!   backoff until its receiver is dropped.
//!
//! Errors name the store by its label, never by its URL.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{AsyncMessage, Client};

use crate::pgconn::PgConnect;

use super::{block_on, describe, PostgresStore, CHANGE_CHANNEL};
use crate::state::StateError;

/// The channel of the progress feed: each published batch notifies its last sequence number.
pub const FEED_CHANNEL: &str = "matih_feed";

/// How many events of one tenant `matih_feed` keeps (the newest).
pub const FEED_KEEP_PER_TENANT: i64 = 4000;

/// Key of the transaction-scoped advisory lock that orders feed writes.
const FEED_LOCK_KEY: i64 = 0x6d61_7469_685f_6664; // "matih_fd"

/// Events waiting to be written, at most (then new ones are dropped).
const QUEUE: usize = 8192;
/// Events written in one transaction, at most.
const BATCH: usize = 500;
/// A tenant's rows are pruned after this many new ones.
const PRUNE_EVERY: usize = 250;
/// Rows a follower reads per query.
const PAGE: i64 = 1000;

enum Msg {
    Event { slug: String, event: String },
    Flush(oneshot::Sender<()>),
}

/// Publishes progress events into `matih_feed` (see the module documentation). Cheap to call from
/// anywhere, sync or async; never blocks.
pub struct FeedPublisher {
    tx: mpsc::Sender<Msg>,
    overflow_logged: AtomicBool,
}

impl std::fmt::Debug for FeedPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedPublisher").finish_non_exhaustive()
    }
}

impl FeedPublisher {
    /// Queues one event (its JSON) of tenant `slug`. Dropped, logged once, when the queue is full.
    pub fn publish(&self, slug: &str, event: String) {
        match self.tx.try_send(Msg::Event { slug: slug.to_string(), event }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.overflow_logged.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "live progress over PostgreSQL is falling behind: some progress events are not shared \
                         (the state itself is unaffected)"
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Waits until every event queued before this call is written (or given up), at most
    /// `timeout`. Returns whether it was.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let (ack, done) = oneshot::channel();
        tokio::time::timeout(timeout, async {
            self.tx.send(Msg::Flush(ack)).await.ok()?;
            done.await.ok()
        })
        .await
        .ok()
        .flatten()
        .is_some()
    }
}

/// One row of `matih_feed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedRow {
    pub seq: i64,
    pub slug: String,
    /// The event's JSON, as published.
    pub event: String,
}

/// What a follower ([`PostgresStore::follow`]) reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FeedNews {
    /// The follower is (again) listening: state notifications may have been missed before, so
    /// every tenant should be read again. Events are caught up from the table, not lost.
    Connected,
    /// New progress events, in sequence order, each delivered once.
    Events(Vec<FeedRow>),
    /// The state of this tenant was written (or removed).
    StateChanged(String),
}

impl PostgresStore {
    /// A publisher of progress events; its writer runs on this store's runtime, on a session of
    /// its own (connected on first use). Events still queued when the store is dropped are lost:
    /// [`FeedPublisher::flush`] first.
    pub fn publisher(&self) -> FeedPublisher {
        let (tx, rx) = mpsc::channel(QUEUE);
        let mut config = self.config.clone();
        config.config.application_name("matih-feed");
        let rt = self.rt.as_ref().expect("runtime present until drop");
        rt.spawn(publish_loop(config, self.label.clone(), rx));
        FeedPublisher { tx, overflow_logged: AtomicBool::new(false) }
    }

    /// Follows the progress feed and the state changes from now on (see the module
    /// documentation), until the receiver is dropped.
    pub fn follow(&self) -> mpsc::Receiver<FeedNews> {
        let (tx, rx) = mpsc::channel(256);
        let mut config = self.config.clone();
        config.config.application_name("matih-serve");
        let rt = self.rt.as_ref().expect("runtime present until drop");
        rt.spawn(follow_loop(config, self.label.clone(), tx));
        rx
    }

    /// The events of `slug` still in `matih_feed`, oldest first.
    pub fn feed_events(&self, slug: &str) -> Result<Vec<FeedRow>, StateError> {
        let guard = self.data()?;
        let rows =
            block_on(guard.query("SELECT seq, slug, event FROM matih_feed WHERE slug = $1 ORDER BY seq", &[&slug]))
                .map_err(|e| self.io(&format!("read the progress events of {slug:?}"), &e))?;
        Ok(rows.iter().map(feed_row).collect())
    }
}

fn feed_row(r: &tokio_postgres::Row) -> FeedRow {
    FeedRow { seq: r.get(0), slug: r.get(1), event: r.get(2) }
}

async fn connect(config: &PgConnect) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.config.connect(config.tls.clone()).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("progress feed connection closed: {}", describe(&e).0);
        }
    });
    Ok(client)
}

/// Inserts one batch and notifies its last sequence number, in one transaction.
async fn write_batch(client: &mut Client, slugs: &[String], events: &[String]) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    // One batch at a time, across every publisher: rows become visible in sequence order.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&FEED_LOCK_KEY]).await?;
    let last: i64 = tx
        .query_one(
            "WITH ins AS (
                 INSERT INTO matih_feed (slug, event)
                 SELECT slug, event FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(slug, event, n) ORDER BY n
                 RETURNING seq)
             SELECT max(seq) FROM ins",
            &[&slugs, &events],
        )
        .await?
        .get(0);
    tx.execute("SELECT pg_notify($1, $2)", &[&FEED_CHANNEL, &last.to_string()]).await?;
    tx.commit().await
}

/// Deletes all but the newest [`FEED_KEEP_PER_TENANT`] rows of `slug`.
async fn prune(client: &Client, slug: &str) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "DELETE FROM matih_feed WHERE slug = $1 AND seq <= (
                 SELECT seq FROM matih_feed WHERE slug = $1 ORDER BY seq DESC OFFSET $2 LIMIT 1)",
            &[&slug, &FEED_KEEP_PER_TENANT],
        )
        .await
}

async fn publish_loop(config: PgConnect, label: String, mut rx: mpsc::Receiver<Msg>) {
    let mut session: Option<Client> = None;
    let mut failing = false;
    // Per tenant: rows written since its last pruning.
    let mut unpruned: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(first) = rx.recv().await {
        let (mut slugs, mut events, mut acks) = (Vec::new(), Vec::new(), Vec::new());
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Event { slug, event } => {
                    slugs.push(slug);
                    events.push(event);
                }
                Msg::Flush(ack) => acks.push(ack),
            }
            if events.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !events.is_empty() {
            let mut result = Ok(());
            // A session the server closed is noticed by the first write: connect again, once.
            for _ in 0..2 {
                if session.as_ref().is_none_or(Client::is_closed) {
                    session = None;
                    match connect(&config).await {
                        Ok(c) => session = Some(c),
                        Err(e) => {
                            result = Err(describe(&e).0);
                            continue;
                        }
                    }
                }
                let client = session.as_mut().expect("connected");
                result = write_batch(client, &slugs, &events).await.map_err(|e| describe(&e).0);
                if result.is_ok() {
                    break;
                }
                session = None;
            }
            match result {
                Ok(()) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!("live progress over PostgreSQL ({label}) is shared again");
                    }
                    for slug in slugs {
                        *unpruned.entry(slug).or_default() += 1;
                    }
                }
                Err(e) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(
                            "live progress cannot be shared through the state store at {label}: {e}; \
                             `matih serve` elsewhere misses these events (the apply goes on)"
                        );
                    }
                }
            }
        }
        // Prune the tenants that grew enough, and every tenant written to at a flush (a run ended).
        let due: Vec<String> =
            unpruned.iter().filter(|(_, n)| !acks.is_empty() || **n >= PRUNE_EVERY).map(|(s, _)| s.clone()).collect();
        if let Some(client) = session.as_ref().filter(|c| !c.is_closed()) {
            for slug in due {
                match prune(client, &slug).await {
                    Ok(_) => {
                        unpruned.remove(&slug);
                    }
                    Err(e) => tracing::debug!("pruning the progress feed of {slug}: {}", describe(&e).0),
                }
            }
        }
        for ack in acks {
            let _ = ack.send(());
        }
    }
}

async fn follow_loop(config: PgConnect, label: String, tx: mpsc::Sender<FeedNews>) {
    let mut last: Option<i64> = None;
    let mut backoff = Duration::from_millis(200);
    let mut logged = false;
    loop {
        let began = std::time::Instant::now();
        match follow_session(&config, &mut last, &tx).await {
            Ok(()) => return,
            Err(e) => {
                if tx.is_closed() {
                    return;
                }
                if began.elapsed() > Duration::from_secs(30) {
                    // It had been following for a while: this is a new outage, start again quickly.
                    backoff = Duration::from_millis(200);
                }
                if !std::mem::replace(&mut logged, true) {
                    tracing::warn!("following the state store at {label}: {e}; reconnecting");
                } else {
                    tracing::debug!("following the state store at {label}: {e}; reconnecting");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// One session of a follower. `Ok(())`: the receiver is gone; `Err`: the session ended.
async fn follow_session(config: &PgConnect, last: &mut Option<i64>, tx: &mpsc::Sender<FeedNews>) -> Result<(), String> {
    let err = |e: tokio_postgres::Error| describe(&e).0;
    let (client, mut connection) = config.config.connect(config.tls.clone()).await.map_err(err)?;
    let (note_tx, mut notes) = mpsc::unbounded_channel::<(String, String)>();
    let driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if note_tx.send((n.channel().to_string(), n.payload().to_string())).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!("follower connection closed: {}", describe(&e).0);
                    break;
                }
            }
        }
    });
    let result = async {
        client.batch_execute(&format!("LISTEN {FEED_CHANNEL}; LISTEN {CHANGE_CHANNEL}")).await.map_err(err)?;
        if last.is_none() {
            let head: i64 =
                client.query_one("SELECT coalesce(max(seq), 0) FROM matih_feed", &[]).await.map_err(err)?.get(0);
            *last = Some(head);
        }
        if tx.send(FeedNews::Connected).await.is_err() {
            return Ok(());
        }
        let mut feed_moved = true;
        loop {
            if feed_moved && !catch_up(&client, last, tx).await.map_err(err)? {
                return Ok(());
            }
            let Some(first) = notes.recv().await else { return Err("the connection closed".to_string()) };
            // Everything already waiting is handled together: one catch-up for many batches.
            feed_moved = false;
            let mut next = Some(first);
            while let Some((channel, payload)) = next.take() {
                if channel == FEED_CHANNEL {
                    feed_moved = true;
                } else if channel == CHANGE_CHANNEL {
                    let slug = payload.rsplit_once(':').map_or(payload.as_str(), |(s, _)| s).to_string();
                    if tx.send(FeedNews::StateChanged(slug)).await.is_err() {
                        return Ok(());
                    }
                }
                next = notes.try_recv().ok();
            }
        }
    }
    .await;
    driver.abort();
    result
}

/// Sends the rows after `last`; false when the receiver is gone.
async fn catch_up(
    client: &Client,
    last: &mut Option<i64>,
    tx: &mpsc::Sender<FeedNews>,
) -> Result<bool, tokio_postgres::Error> {
    loop {
        let after = last.unwrap_or(0);
        let rows = client
            .query("SELECT seq, slug, event FROM matih_feed WHERE seq > $1 ORDER BY seq LIMIT $2", &[&after, &PAGE])
            .await?;
        let Some(end) = rows.last().map(|r| r.get::<_, i64>(0)) else { return Ok(true) };
        *last = Some(end);
        let full = rows.len() as i64 == PAGE;
        if tx.send(FeedNews::Events(rows.iter().map(feed_row).collect())).await.is_err() {
            return Ok(false);
        }
        if !full {
            return Ok(true);
        }
    }
}
