//! The outbox: messages waiting to be delivered, one JSON file each under `<state>/outbox/`.
//!
//! - **Never lost.** An entry is written to a temporary file, synced, then renamed into place
//!   before any delivery is tried; it is removed only after the receiver acknowledged it (SMTP
//!   `250` for the message, a 2xx from the webhook, a Kafka produce response with an offset).
//! - **Never sent twice by two processes.** Delivery holds an exclusive lock on
//!   `<state>/outbox/.lock` (`flock`); a process that cannot take it leaves delivery to the holder.
//!   An acknowledged entry is removed before the next one is tried.
//! - **Kafka events stay in order.** When one event cannot be published, later events wait.
//!
//! The remaining window: a process killed after the receiver acknowledged and before the file is
//! removed (one `unlink`), or a produce that timed out on our side after the broker wrote it,
//! delivers that entry again on the next pass. Kafka events carry a unique `eventId` for consumers
//! to deduplicate on; the outbox cannot make the broker and a file system commit atomically.
//!
//! Retries: after a failed attempt an entry waits 1 s, 2 s, 4 s … up to [`MAX_BACKOFF`].
//!
//! **Trust.** The directory is created `0700` and entries `0600`. An entry matih did not write
//! could make it send mail or post to a webhook with its credentials, so on Unix an entry is
//! delivered only if it is a regular file owned by the owner of the outbox directory and writable
//! by nobody else; others are reported and left alone.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::deliver::Deliverer;
use super::Delivery;

/// The longest wait between two attempts at one entry.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

impl Delivery {
    pub fn kind(&self) -> &'static str {
        match self {
            Delivery::Email { .. } => "email",
            Delivery::Webhook { .. } => "webhook",
            Delivery::Kafka { .. } => "kafka",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxEntry {
    pub id: String,
    pub tenant: String,
    pub created_at: String,
    pub attempts: u32,
    /// Milliseconds since the Unix epoch before which no new attempt is made.
    pub next_attempt_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub delivery: Delivery,
}

/// What one delivery pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliverReport {
    /// Another process holds the outbox lock and delivers; this pass did nothing.
    pub busy: bool,
    pub delivered: Vec<String>,
    /// Entry id and the error of this attempt.
    pub failed: Vec<(String, String)>,
    /// Entries left for later (not due yet, or behind a Kafka event that failed).
    pub waiting: usize,
}

#[derive(Clone, Debug)]
pub struct Outbox {
    dir: PathBuf,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The wait after `attempts` failed attempts.
pub fn backoff(attempts: u32) -> Duration {
    let secs = 1u64.checked_shl(attempts.saturating_sub(1)).unwrap_or(u64::MAX);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

impl Outbox {
    /// The outbox of the state directory `state_dir`.
    pub fn new(state_dir: &Path) -> Outbox {
        Outbox { dir: state_dir.join("outbox") }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Queues a message durably; returns its id.
    pub fn enqueue(&self, tenant: &str, delivery: Delivery) -> std::io::Result<String> {
        crate::state::private::create_dir_all(&self.dir)?;
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:013}-{:06}-{}", now_ms(), n % 1_000_000, &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let entry = OutboxEntry {
            id: id.clone(),
            tenant: tenant.to_string(),
            created_at: crate::state::now_rfc3339(),
            attempts: 0,
            next_attempt_at_ms: 0,
            last_error: None,
            delivery,
        };
        self.write(&entry)?;
        Ok(id)
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn write(&self, entry: &OutboxEntry) -> std::io::Result<()> {
        let tmp = self.dir.join(format!(".tmp-{}", entry.id));
        let mut f = crate::state::private::create(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(entry).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        fs::rename(&tmp, self.path(&entry.id))
    }

    /// Every queued entry, oldest first. Unreadable files are reported and skipped.
    pub fn entries(&self) -> Vec<OutboxEntry> {
        let Ok(rd) = fs::read_dir(&self.dir) else { return Vec::new() };
        let mut names: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .filter(|p| match self.trusted(p) {
                Ok(()) => true,
                Err(why) => {
                    tracing::warn!("outbox entry {} is not delivered: {why}", p.display());
                    false
                }
            })
            .collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|p| match fs::read(&p).map(|b| serde_json::from_slice::<OutboxEntry>(&b)) {
                Ok(Ok(e)) => Some(e),
                Ok(Err(err)) => {
                    tracing::warn!("outbox entry {} is unreadable: {err}", p.display());
                    None
                }
                Err(_) => None,
            })
            .collect()
    }

    /// Whether the entry at `path` is one matih may have written (see the module documentation).
    #[cfg(unix)]
    fn trusted(&self, path: &Path) -> Result<(), String> {
        use std::os::unix::fs::MetadataExt;
        let dir = fs::metadata(&self.dir).map_err(|e| e.to_string())?;
        let entry = fs::symlink_metadata(path).map_err(|e| e.to_string())?;
        if !entry.file_type().is_file() {
            return Err("it is not a regular file".into());
        }
        if entry.uid() != dir.uid() {
            return Err(format!("it is owned by uid {}, not by the outbox's owner (uid {})", entry.uid(), dir.uid()));
        }
        if entry.mode() & 0o022 != 0 {
            return Err(format!("others may write it (mode {:o})", entry.mode() & 0o777));
        }
        Ok(())
    }

    #[cfg(not(unix))]
    fn trusted(&self, _path: &Path) -> Result<(), String> {
        Ok(())
    }

    /// Takes the delivery lock without waiting: `None` when another process holds it.
    fn try_lock(&self) -> std::io::Result<Option<File>> {
        crate::state::private::create_dir_all(&self.dir)?;
        let mut options = OpenOptions::new();
        options.create(true).truncate(false).write(true);
        let f = crate::state::private::options(options).open(self.dir.join(".lock"))?;
        match f.try_lock() {
            Ok(()) => Ok(Some(f)),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }

    /// Tries every entry that is due, oldest first, under the delivery lock.
    pub async fn deliver_due(&self, d: &Deliverer) -> DeliverReport {
        self.deliver(d, false).await
    }

    /// Tries every entry, due or not (for tests and `matih serve` at start).
    pub async fn deliver(&self, d: &Deliverer, ignore_schedule: bool) -> DeliverReport {
        let mut report = DeliverReport::default();
        let _lock = match self.try_lock() {
            Ok(Some(f)) => f,
            Ok(None) => {
                report.busy = true;
                return report;
            }
            Err(e) => {
                report.failed.push(("(outbox)".into(), format!("cannot lock {}: {e}", self.dir.display())));
                return report;
            }
        };
        let mut kafka_blocked = false;
        for mut e in self.entries() {
            let is_kafka = matches!(e.delivery, Delivery::Kafka { .. });
            // Re-read under the lock: another process may have delivered it since the listing.
            if !self.path(&e.id).exists() {
                continue;
            }
            if (is_kafka && kafka_blocked) || (!ignore_schedule && e.next_attempt_at_ms > now_ms()) {
                kafka_blocked |= is_kafka;
                report.waiting += 1;
                continue;
            }
            match d.deliver(&e.delivery).await {
                Ok(()) => {
                    if let Err(err) = fs::remove_file(self.path(&e.id)) {
                        tracing::warn!("outbox entry {} was delivered but cannot be removed: {err}", e.id);
                    }
                    tracing::info!("{} {} of tenant {} delivered", e.delivery.kind(), e.id, e.tenant);
                    report.delivered.push(e.id);
                }
                Err(err) => {
                    e.attempts += 1;
                    e.last_error = Some(err.clone());
                    e.next_attempt_at_ms = now_ms() + backoff(e.attempts).as_millis() as u64;
                    tracing::warn!(
                        "{} {} of tenant {} not delivered (attempt {}): {err}; next try in {:?}",
                        e.delivery.kind(),
                        e.id,
                        e.tenant,
                        e.attempts,
                        backoff(e.attempts)
                    );
                    if let Err(werr) = self.write(&e) {
                        tracing::warn!("outbox entry {} cannot be updated: {werr}", e.id);
                    }
                    kafka_blocked |= is_kafka;
                    report.failed.push((e.id, err));
                }
            }
        }
        report
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn entries_are_private_and_others_writable_ones_are_not_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::new(dir.path());
        let mail = Delivery::Email { to: vec!["a@b.example".into()], subject: "s".into(), body: "b".into() };
        let id = outbox.enqueue("acme", mail).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(outbox.dir()), mode(&outbox.path(&id))), (0o700, 0o600));
        assert_eq!(outbox.entries().len(), 1);
        fs::set_permissions(outbox.path(&id), fs::Permissions::from_mode(0o666)).unwrap();
        assert!(outbox.entries().is_empty(), "an entry anyone could have written is not trusted");
        // A symbolic link in the outbox is not an entry either.
        fs::set_permissions(outbox.path(&id), fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(outbox.path(&id), outbox.dir().join("0-link.json")).unwrap();
        assert_eq!(outbox.entries().len(), 1);
    }
}
