//! The default [`StateStore`]: a sled database in a directory (`state/` by default).
//!
//! Layout, one sled tree each:
//! - `meta`: `format_version` → big-endian `u32` ([`FORMAT_VERSION`]), and per tenant
//!   `history_seq` + 0 byte + slug → big-endian `u64`, the next history sequence number.
//! - `tenants`: slug → JSON [`TenantState`].
//! - `history`: slug + 0 byte + big-endian `u64` sequence number → JSON [`HistoryEntry`]. The key uses
//!   a per-tenant sequence number rather than the replaced serial, because a tenant that is removed
//!   and created again starts over at serial 1 and must not overwrite its earlier history; the
//!   entry itself carries the serial.
//! - `locks`: slug → JSON [`LockInfo`].
//! - `audit`: slug + 0 byte + big-endian `u64` sequence number → JSON [`AuditEntry`], the sequence
//!   kept in `meta` under `audit_seq` + 0 byte + slug. Appended in the same transaction as the
//!   state write it belongs to; kept when the tenant's state is removed.
//!
//! Beside the database, [`HOLDERS_FILE`] (`tenant-locks.json`) lists the tenant locks the process
//! that has the store open holds, rewritten at every lock and unlock. sled lets only one process
//! open the store, so a second `matih` cannot read the `locks` tree; it reads this file instead to
//! say which tenant is locked, by whom ([`SledStore::holders`]).
//!
//! Every write is one sled transaction across the trees it touches, followed by a flush, so it is
//! durable when the call returns. Only one process opens a store at a time: besides sled's own
//! file lock, the store holds an exclusive lock on `matih.lock` in its directory, which records the
//! holder's pid so that a second `matih` can say who is in its way.
//!
//! **Invariant:** knows nothing of what the states mean (phases, resources, plans); it checks
//! serials and lock holders and stores JSON. It never resets or rewrites data it cannot read.

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::{
    abort, ConflictableTransactionError, ConflictableTransactionResult, TransactionError, TransactionalTree,
};
use sled::{Transactional, Tree};

use super::{
    check_put, check_slug, goes_to_history, hostname, lock_is_stale, now_rfc3339, AuditEntry, HistoryEntry, LockInfo,
    StateError, StateStore, TenantState,
};

/// The on-disk format this build reads and writes. A store with another version is refused.
pub const FORMAT_VERSION: u32 = 1;

/// How long [`SledStore::open`] waits for another process to release the store.
pub const DEFAULT_OPEN_WAIT: Duration = Duration::from_secs(5);

const VERSION_KEY: &[u8] = b"format_version";
const HISTORY_SEQ_PREFIX: &[u8] = b"history_seq\0";
const AUDIT_SEQ_PREFIX: &[u8] = b"audit_seq\0";
/// The process lock file in the store's directory: held exclusively by the process that has the store
/// open (drift copies the store under a shared lock on it).
pub const PROCESS_LOCK_FILE: &str = "matih.lock";
/// The file beside the store that names the tenant locks of the process that has it open.
pub const HOLDERS_FILE: &str = "tenant-locks.json";
const RETRY_INTERVAL: Duration = Duration::from_millis(50);

type TxResult<T> = ConflictableTransactionResult<T, StateError>;

/// A sled-backed state store, open for the lifetime of the value.
pub struct SledStore {
    path: PathBuf,
    db: sled::Db,
    meta: Tree,
    tenants: Tree,
    history: Tree,
    locks: Tree,
    audit: Tree,
    /// Held (locked) for as long as the store is open. Declared last so that it is released only
    /// after sled has been closed.
    _process_lock: File,
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SledStore {
    /// Opens the store in directory `path`, creating it if absent. Waits up to
    /// [`DEFAULT_OPEN_WAIT`] for another process that has the store open.
    pub fn open(path: &Path) -> Result<SledStore, StateError> {
        SledStore::open_with_wait(path, DEFAULT_OPEN_WAIT)
    }

    /// Opens the store in directory `path`, creating it if absent. While another process has it
    /// open, retries until `wait` has passed, then fails with [`StateError::Io`] naming the path.
    pub fn open_with_wait(path: &Path, wait: Duration) -> Result<SledStore, StateError> {
        let deadline = Instant::now() + wait;
        super::private::create_dir_all(path)
            .map_err(|e| io_error(path, format!("cannot create the directory: {e}")))?;
        let process_lock = acquire_process_lock(path, deadline, wait)?;
        let db = loop {
            match sled::Config::new().path(path).open() {
                Ok(db) => break db,
                // sled reports its own lock with a generic I/O error; the message is all there is.
                // It can still be held briefly by a store of this process that is being dropped.
                Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                    if Instant::now() >= deadline {
                        return Err(in_use(path, None, wait));
                    }
                    sleep(RETRY_INTERVAL.min(deadline.saturating_duration_since(Instant::now())));
                }
                Err(e) => return Err(sled_error(path, e)),
            }
        };
        let tree = |name: &str| db.open_tree(name).map_err(|e| sled_error(path, e));
        let store = SledStore {
            path: path.to_path_buf(),
            meta: tree("meta")?,
            tenants: tree("tenants")?,
            history: tree("history")?,
            locks: tree("locks")?,
            audit: tree("audit")?,
            db,
            _process_lock: process_lock,
        };
        store.check_version()?;
        Ok(store)
    }

    /// Whether a store exists in directory `path`, without creating anything (so that `matih plan`
    /// can run against an absent store).
    pub fn exists(path: &Path) -> bool {
        path.join("db").is_file()
    }

    /// The directory of the store.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tenant locks held by the process that has the store in `path` open, as it last recorded
    /// them in [`HOLDERS_FILE`]; locks of processes that no longer run here are left out. Empty when
    /// the file is absent or unreadable (this is for messages only).
    pub fn holders(path: &Path) -> Vec<LockInfo> {
        let this_host = hostname();
        fs::read(path.join(HOLDERS_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<Vec<LockInfo>>(&b).ok())
            .unwrap_or_default()
            .into_iter()
            .filter(|l| !lock_is_stale(l, &this_host))
            .collect()
    }

    /// Rewrites [`HOLDERS_FILE`] with the locks this process holds (atomically: a temporary file,
    /// then a rename). Failing to write it only makes a later message less precise, so it is logged.
    fn write_holders(&self) {
        let pid = std::process::id();
        let mine: Vec<LockInfo> = match self.locks() {
            Ok(all) => all.into_iter().filter(|l| l.pid == pid).collect(),
            Err(_) => return,
        };
        let tmp = self.path.join(format!("{HOLDERS_FILE}.tmp"));
        let written = serde_json::to_vec_pretty(&mine)
            .map_err(std::io::Error::other)
            .and_then(|json| super::private::write(&tmp, &json))
            .and_then(|()| fs::rename(&tmp, self.path.join(HOLDERS_FILE)));
        if let Err(e) = written {
            tracing::warn!("cannot write {}: {e}", self.path.join(HOLDERS_FILE).display());
        }
    }

    /// Writes the format version into a new store, and refuses a store of another version. A store
    /// that holds data but no version is corrupt: it is reported, never reinitialised.
    fn check_version(&self) -> Result<(), StateError> {
        match self.meta.get(VERSION_KEY).map_err(|e| self.sled_error(e))? {
            Some(bytes) => {
                let found = <[u8; 4]>::try_from(bytes.as_ref()).map(u32::from_be_bytes).map_err(|_| {
                    self.corrupt(format!("meta/format_version: expected 4 bytes, found {}", bytes.len()))
                })?;
                if found != FORMAT_VERSION {
                    return Err(StateError::Version { path: self.path_string(), found, supported: FORMAT_VERSION });
                }
                Ok(())
            }
            None => {
                if !self.tenants.is_empty()
                    || !self.history.is_empty()
                    || !self.locks.is_empty()
                    || !self.audit.is_empty()
                {
                    return Err(self.corrupt("meta/format_version is missing but the store holds data".into()));
                }
                self.meta.insert(VERSION_KEY, &FORMAT_VERSION.to_be_bytes()).map_err(|e| self.sled_error(e))?;
                self.flush()
            }
        }
    }

    fn path_string(&self) -> String {
        self.path.display().to_string()
    }

    fn corrupt(&self, message: String) -> StateError {
        StateError::Corrupt { path: self.path_string(), message }
    }

    fn sled_error(&self, e: sled::Error) -> StateError {
        sled_error(&self.path, e)
    }

    fn flush(&self) -> Result<(), StateError> {
        self.db.flush().map(drop).map_err(|e| self.sled_error(e))
    }

    /// Turns the outcome of a transaction into the caller's result, flushing after a commit so
    /// the write is durable when the call returns.
    fn finish<T>(&self, outcome: Result<T, TransactionError<StateError>>) -> Result<T, StateError> {
        match outcome {
            Ok(v) => {
                self.flush()?;
                Ok(v)
            }
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(self.sled_error(e)),
        }
    }

    fn decode<T: DeserializeOwned>(&self, key: &str, bytes: &[u8]) -> Result<T, StateError> {
        serde_json::from_slice(bytes).map_err(|e| self.corrupt(format!("{key}: {e}")))
    }

    /// Decodes a stored tenant state and checks that it is filed under its own slug.
    fn decode_tenant(&self, slug: &str, bytes: &[u8]) -> Result<TenantState, StateError> {
        let state: TenantState = self.decode(&format!("tenants/{slug}"), bytes)?;
        if state.slug != slug {
            return Err(self.corrupt(format!("tenants/{slug}: holds the state of tenant {:?}", state.slug)));
        }
        Ok(state)
    }

    fn decode_lock(&self, slug: &str, bytes: &[u8]) -> Result<LockInfo, StateError> {
        self.decode(&format!("locks/{slug}"), bytes)
    }

    /// Reads the current state of `slug` inside a transaction.
    fn current(&self, tenants: &TransactionalTree, slug: &str) -> TxResult<Option<TenantState>> {
        match tenants.get(slug.as_bytes())? {
            None => Ok(None),
            Some(bytes) => self.decode_tenant(slug, &bytes).map(Some).map_err(ConflictableTransactionError::Abort),
        }
    }

    /// Appends `entry` to the history of `slug` inside a transaction, under the tenant's next
    /// sequence number.
    fn append_history(
        &self,
        history: &TransactionalTree,
        meta: &TransactionalTree,
        slug: &str,
        entry: &[u8],
    ) -> TxResult<()> {
        self.append_seq(history, meta, HISTORY_SEQ_PREFIX, slug, &[entry.to_vec()])
    }

    /// Appends `entries` to `tree` under `slug` + 0 byte + the next sequence numbers, kept in
    /// `meta` under `seq_prefix` + slug.
    fn append_seq(
        &self,
        tree: &TransactionalTree,
        meta: &TransactionalTree,
        seq_prefix: &[u8],
        slug: &str,
        entries: &[Vec<u8>],
    ) -> TxResult<()> {
        let seq_key = [seq_prefix, slug.as_bytes()].concat();
        let mut next = match meta.get(&seq_key)? {
            None => 1,
            Some(bytes) => match <[u8; 8]>::try_from(bytes.as_ref()) {
                Ok(b) => u64::from_be_bytes(b),
                Err(_) => {
                    let name = String::from_utf8_lossy(&seq_prefix[..seq_prefix.len() - 1]).into_owned();
                    return abort(self.corrupt(format!("meta/{name}/{slug}: expected 8 bytes, found {}", bytes.len())));
                }
            },
        };
        for entry in entries {
            tree.insert(history_key(slug, next), entry.as_slice())?;
            next += 1;
        }
        meta.insert(seq_key, &next.to_be_bytes())?;
        Ok(())
    }

    /// Reads every `slug` + 0 byte + sequence entry of `tree`, oldest first.
    fn scan_seq<T: DeserializeOwned>(&self, tree: &Tree, name: &str, slug: &str) -> Result<Vec<T>, StateError> {
        check_slug(slug)?;
        let mut prefix = slug.as_bytes().to_vec();
        prefix.push(0);
        tree.scan_prefix(&prefix)
            .map(|item| {
                let (key, bytes) = item.map_err(|e| self.sled_error(e))?;
                let seq = <[u8; 8]>::try_from(&key[prefix.len()..]).map(u64::from_be_bytes).map_err(|_| {
                    self.corrupt(format!("{name}/{slug}: a key has {} bytes after the slug", key.len() - prefix.len()))
                })?;
                self.decode(&format!("{name}/{slug}/{seq}"), &bytes)
            })
            .collect()
    }

    /// Writes `state` and, if it replaces one, files the replaced state in history; or removes the
    /// state (`state` `None`). Both are compare-and-swap on the stored serial.
    fn replace(
        &self,
        slug: &str,
        state: Option<&TenantState>,
        expected_serial: Option<u64>,
        operation: &str,
        audit: &[AuditEntry],
    ) -> Result<(), StateError> {
        let new_json = state.map(|s| encode(slug, s)).transpose()?;
        let audit_json = audit.iter().map(|e| encode(slug, e)).collect::<Result<Vec<_>, _>>()?;
        let at = now_rfc3339();
        let trees = (&self.tenants, &self.history, &self.meta, &self.audit);
        let outcome = trees.transaction(|(tenants, history, meta, audit)| {
            let current = self.current(tenants, slug)?;
            let found = current.as_ref().map(|s| s.serial);
            if found != expected_serial {
                return abort(StateError::SerialConflict { slug: slug.to_string(), expected: expected_serial, found });
            }
            if let Some(replaced) = current.filter(|r| goes_to_history(r, state)) {
                let entry = HistoryEntry {
                    serial: replaced.serial,
                    at: at.clone(),
                    operation: operation.to_string(),
                    state: replaced,
                };
                let entry = encode(slug, &entry).map_err(ConflictableTransactionError::Abort)?;
                self.append_history(history, meta, slug, &entry)?;
            }
            match &new_json {
                Some(json) => tenants.insert(slug.as_bytes(), json.as_slice())?,
                None => tenants.remove(slug.as_bytes())?,
            };
            if !audit_json.is_empty() {
                self.append_seq(audit, meta, AUDIT_SEQ_PREFIX, slug, &audit_json)?;
            }
            Ok(())
        });
        self.finish(outcome)
    }
}

impl SledStore {
    /// Per tenant (sorted by slug), a CRC-32 of its recorded state as stored, computed without
    /// decoding it: a reader that keeps what it decoded (`matih serve`) decodes again only the
    /// tenants whose checksum changed.
    pub fn tenant_checksums(&self) -> Result<Vec<(String, u32)>, StateError> {
        self.tenants
            .iter()
            .map(|kv| {
                let (key, bytes) = kv.map_err(|e| self.sled_error(e))?;
                let slug = String::from_utf8(key.to_vec()).map_err(|_| {
                    self.corrupt(format!("tenants: key {:?} is not UTF-8", String::from_utf8_lossy(&key)))
                })?;
                Ok((slug, crc32fast::hash(&bytes)))
            })
            .collect()
    }
}

impl StateStore for SledStore {
    fn tenants(&self) -> Result<Vec<String>, StateError> {
        self.tenants
            .iter()
            .keys()
            .map(|key| {
                let key = key.map_err(|e| self.sled_error(e))?;
                String::from_utf8(key.to_vec())
                    .map_err(|_| self.corrupt(format!("tenants: key {:?} is not UTF-8", String::from_utf8_lossy(&key))))
            })
            .collect()
    }

    fn get(&self, slug: &str) -> Result<Option<TenantState>, StateError> {
        match self.tenants.get(slug.as_bytes()).map_err(|e| self.sled_error(e))? {
            None => Ok(None),
            Some(bytes) => self.decode_tenant(slug, &bytes).map(Some),
        }
    }

    fn put_audited(
        &self,
        state: &TenantState,
        expected_serial: Option<u64>,
        operation: &str,
        audit: &[AuditEntry],
    ) -> Result<(), StateError> {
        check_put(state, expected_serial)?;
        self.replace(&state.slug, Some(state), expected_serial, operation, audit)
    }

    fn remove(&self, slug: &str, expected_serial: u64, operation: &str) -> Result<(), StateError> {
        check_slug(slug)?;
        self.replace(slug, None, Some(expected_serial), operation, &[])
    }

    fn history(&self, slug: &str) -> Result<Vec<HistoryEntry>, StateError> {
        self.scan_seq(&self.history, "history", slug)
    }

    fn append_audit(&self, slug: &str, entries: &[AuditEntry]) -> Result<(), StateError> {
        check_slug(slug)?;
        let json = entries.iter().map(|e| encode(slug, e)).collect::<Result<Vec<_>, _>>()?;
        let outcome = (&self.audit, &self.meta)
            .transaction(|(audit, meta)| self.append_seq(audit, meta, AUDIT_SEQ_PREFIX, slug, &json));
        self.finish(outcome)
    }

    fn audit(&self, slug: &str) -> Result<Vec<AuditEntry>, StateError> {
        self.scan_seq(&self.audit, "audit", slug)
    }

    fn all_slugs(&self) -> Result<Vec<String>, StateError> {
        let mut all: std::collections::BTreeSet<String> = self.tenants()?.into_iter().collect();
        // History and audit keys are `slug`, a 0 byte, then a sequence number.
        for tree in [&self.history, &self.audit] {
            for key in tree.iter().keys() {
                let key = key.map_err(|e| self.sled_error(e))?;
                if let Some(end) = key.iter().position(|b| *b == 0) {
                    all.insert(String::from_utf8_lossy(&key[..end]).into_owned());
                }
            }
        }
        Ok(all.into_iter().collect())
    }

    fn lock(&self, info: &LockInfo) -> Result<(), StateError> {
        check_slug(&info.slug)?;
        let slug = info.slug.as_str();
        let json = encode(slug, info)?;
        let this_host = hostname();
        let outcome = self.locks.transaction(|locks| {
            let taken_over = match locks.get(slug.as_bytes())? {
                None => None,
                Some(bytes) => {
                    let holder = self.decode_lock(slug, &bytes).map_err(ConflictableTransactionError::Abort)?;
                    if !lock_is_stale(&holder, &this_host) {
                        return abort(StateError::Locked { slug: slug.to_string(), holder: Box::new(holder) });
                    }
                    Some(holder)
                }
            };
            locks.insert(slug.as_bytes(), json.as_slice())?;
            Ok(taken_over)
        });
        let taken_over = self.finish(outcome)?;
        self.write_holders();
        if let Some(stale) = taken_over {
            tracing::warn!(
                tenant = slug,
                lock_id = %stale.id,
                pid = stale.pid,
                host = %stale.host,
                "took over the lock of tenant {slug:?}: its holder ({} by {}, pid {}) no longer runs on this host",
                stale.operation,
                stale.who,
                stale.pid
            );
        }
        Ok(())
    }

    fn unlock(&self, slug: &str, id: &str) -> Result<(), StateError> {
        let outcome = self.locks.transaction(|locks| {
            let held_with_id = match locks.get(slug.as_bytes())? {
                None => false,
                Some(bytes) => self.decode_lock(slug, &bytes).map_err(ConflictableTransactionError::Abort)?.id == id,
            };
            if !held_with_id {
                return abort(StateError::NoSuchLock { slug: slug.to_string(), id: id.to_string() });
            }
            locks.remove(slug.as_bytes())?;
            Ok(())
        });
        self.finish(outcome)?;
        self.write_holders();
        Ok(())
    }

    fn locks(&self) -> Result<Vec<LockInfo>, StateError> {
        self.locks
            .iter()
            .map(|item| {
                let (key, bytes) = item.map_err(|e| self.sled_error(e))?;
                self.decode_lock(&String::from_utf8_lossy(&key), &bytes)
            })
            .collect()
    }
}

/// `slug`, a 0 byte, then `seq` big-endian: history keys sort by tenant, then oldest first.
fn history_key(slug: &str, seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(slug.len() + 9);
    key.extend_from_slice(slug.as_bytes());
    key.push(0);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn encode<T: Serialize>(slug: &str, value: &T) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(value)
        .map_err(|e| StateError::Invalid { slug: slug.to_string(), message: format!("cannot be encoded as JSON: {e}") })
}

fn io_error(path: &Path, message: String) -> StateError {
    StateError::Io { path: path.display().to_string(), message }
}

fn sled_error(path: &Path, e: sled::Error) -> StateError {
    match e {
        sled::Error::Corruption { .. } => {
            StateError::Corrupt { path: path.display().to_string(), message: e.to_string() }
        }
        e => io_error(path, e.to_string()),
    }
}

fn in_use(path: &Path, holder_pid: Option<u32>, wait: Duration) -> StateError {
    let holder = holder_pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default();
    let tenants = SledStore::holders(path)
        .iter()
        .map(|l| {
            format!(
                "tenant {:?} is locked by {} ({} on {}, pid {}, since {}; lock id {})",
                l.slug, l.who, l.operation, l.host, l.pid, l.created_at, l.id
            )
        })
        .collect::<Vec<_>>();
    let tenants = if tenants.is_empty() { String::new() } else { format!(": {}", tenants.join("; ")) };
    StateError::Busy {
        path: path.display().to_string(),
        message: format!(
            "in use by another matih process{holder}{tenants}; still in use after waiting {}; \
             let it finish, or stop it if it is stuck",
            humantime::format_duration(wait)
        ),
    }
}

/// Takes the exclusive lock on `matih.lock` in the store's directory, retrying until `deadline`,
/// and records this process's pid in it.
fn acquire_process_lock(dir: &Path, deadline: Instant, wait: Duration) -> Result<File, StateError> {
    let lock_path = dir.join(PROCESS_LOCK_FILE);
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    let file = super::private::options(options)
        .open(&lock_path)
        .map_err(|e| io_error(dir, format!("cannot open {}: {e}", lock_path.display())))?;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) => {
                let now = Instant::now();
                if now >= deadline {
                    let holder = fs::read_to_string(&lock_path).ok().and_then(|s| s.trim().parse().ok());
                    return Err(in_use(dir, holder, wait));
                }
                sleep(RETRY_INTERVAL.min(deadline - now));
            }
            Err(TryLockError::Error(e)) => {
                return Err(io_error(dir, format!("cannot lock {}: {e}", lock_path.display())));
            }
        }
    }
    let record = file.set_len(0).and_then(|()| (&file).write_all(format!("{}\n", std::process::id()).as_bytes()));
    record.map_err(|e| io_error(dir, format!("cannot write {}: {e}", lock_path.display())))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::sample_state;

    fn store_dir() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        (dir, path)
    }

    #[test]
    fn exists_does_not_create_and_open_does() {
        let (_dir, path) = store_dir();
        assert!(!SledStore::exists(&path));
        assert!(!path.exists());
        let store = SledStore::open(&path).unwrap();
        assert!(SledStore::exists(&path));
        assert_eq!(store.path(), path.as_path());
    }

    #[test]
    fn reopen_after_drop_keeps_everything() {
        let (_dir, path) = store_dir();
        let lock = LockInfo::new("acme", "apply");
        let second = sample_state("acme", 2);
        {
            let store = SledStore::open(&path).unwrap();
            store.put(&sample_state("acme", 1), None, "apply").unwrap();
            store.put(&second, Some(1), "apply").unwrap();
            store.lock(&lock).unwrap();
        }
        let store = SledStore::open(&path).unwrap();
        assert_eq!(store.get("acme").unwrap(), Some(second.clone()));
        assert_eq!(store.history("acme").unwrap().len(), 1);
        assert_eq!(store.locks().unwrap(), vec![lock]);
        // History numbering carries on after the reopen instead of overwriting entry 1.
        store.put(&sample_state("acme", 3), Some(2), "apply").unwrap();
        let history = store.history("acme").unwrap();
        assert_eq!(history.iter().map(|h| h.serial).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(history[1].state, second);
    }

    const CHILD_DIR_VAR: &str = "MATIH_TEST_CHILD_STATE_DIR";

    /// Run only as a child process by `a_write_survives_the_writer_being_killed`: writes, locks,
    /// then dies without any cleanup (no drop, no flush beyond what the calls themselves do).
    #[test]
    #[ignore = "helper process for a_write_survives_the_writer_being_killed"]
    fn child_writes_then_dies() {
        let path =
            std::env::var_os(CHILD_DIR_VAR).expect("only run as a child of a_write_survives_the_writer_being_killed");
        let store = SledStore::open(Path::new(&path)).unwrap();
        store.put(&sample_state("acme", 1), None, "apply").unwrap();
        store.lock(&LockInfo::new("acme", "apply")).unwrap();
        std::process::abort();
    }

    #[test]
    fn a_write_survives_the_writer_being_killed() {
        let (_dir, path) = store_dir();
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "state::sled_store::tests::child_writes_then_dies", "--ignored", "--test-threads=1"])
            .env(CHILD_DIR_VAR, &path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "the child should have aborted");

        let store = SledStore::open(&path).unwrap();
        let state = store.get("acme").unwrap().expect("the write returned before the abort, so it must be there");
        assert_eq!(state.serial, 1);
        // The dead writer's lock is still recorded, and is stale: the next run takes it over.
        let locks = store.locks().unwrap();
        assert_eq!(locks.len(), 1);
        assert_ne!(locks[0].pid, std::process::id());
        store.lock(&LockInfo::new("acme", "apply")).unwrap();
    }

    #[test]
    fn corrupt_json_is_reported_and_kept() {
        let (_dir, path) = store_dir();
        let store = SledStore::open(&path).unwrap();
        store.put(&sample_state("acme", 1), None, "apply").unwrap();
        store.tenants.insert("acme", &b"{not json"[..]).unwrap();
        store.locks.insert("acme", &b"[]"[..]).unwrap();
        store.history.insert(history_key("acme", 1), &b"\"x\""[..]).unwrap();

        let expect_corrupt = |result: Result<(), StateError>, key: &str| match result {
            Err(StateError::Corrupt { path: p, message }) => {
                assert_eq!(p, path.display().to_string());
                assert!(message.starts_with(key), "{message:?} should name {key}");
            }
            other => panic!("expected Corrupt naming {key}, got {other:?}"),
        };
        expect_corrupt(store.get("acme").map(drop), "tenants/acme");
        // A write over an unreadable state must fail, not replace it.
        expect_corrupt(store.put(&sample_state("acme", 2), Some(1), "apply"), "tenants/acme");
        expect_corrupt(store.remove("acme", 1, "state rm"), "tenants/acme");
        expect_corrupt(store.lock(&LockInfo::new("acme", "apply")), "locks/acme");
        expect_corrupt(store.locks().map(drop), "locks/acme");
        expect_corrupt(store.history("acme").map(drop), "history/acme/1");
        assert_eq!(store.tenants.get("acme").unwrap().unwrap().as_ref(), b"{not json");

        // A state filed under another tenant's slug is corrupt too.
        let json = serde_json::to_vec(&sample_state("other", 1)).unwrap();
        store.tenants.insert("beta", json).unwrap();
        expect_corrupt(store.get("beta").map(drop), "tenants/beta");
    }

    #[test]
    fn newer_format_version_is_refused_without_reset() {
        let (_dir, path) = store_dir();
        {
            let store = SledStore::open(&path).unwrap();
            store.put(&sample_state("acme", 1), None, "apply").unwrap();
            store.meta.insert(VERSION_KEY, &(FORMAT_VERSION + 1).to_be_bytes()).unwrap();
            store.flush().unwrap();
        }
        match SledStore::open(&path) {
            Err(StateError::Version { path: p, found, supported }) => {
                assert_eq!((p, found, supported), (path.display().to_string(), FORMAT_VERSION + 1, FORMAT_VERSION));
            }
            other => panic!("expected Version, got {other:?}"),
        }
        // The refused store is untouched: same version, same data.
        let db = sled::open(&path).unwrap();
        let meta = db.open_tree("meta").unwrap();
        assert_eq!(meta.get(VERSION_KEY).unwrap().unwrap().as_ref(), &(FORMAT_VERSION + 1).to_be_bytes());
        assert!(db.open_tree("tenants").unwrap().get("acme").unwrap().is_some());
    }

    #[test]
    fn data_without_a_version_is_corrupt() {
        let (_dir, path) = store_dir();
        {
            let db = sled::open(&path).unwrap();
            db.open_tree("tenants").unwrap().insert("acme", &b"{}"[..]).unwrap();
            db.flush().unwrap();
        }
        assert!(matches!(SledStore::open(&path), Err(StateError::Corrupt { .. })));
    }

    #[test]
    fn second_open_fails_clearly_within_the_wait() {
        let (_dir, path) = store_dir();
        let first = SledStore::open(&path).unwrap();
        let wait = Duration::from_millis(300);
        let started = Instant::now();
        let second = SledStore::open_with_wait(&path, wait);
        let took = started.elapsed();
        match second {
            Err(StateError::Busy { path: p, message }) => {
                assert_eq!(p, path.display().to_string());
                assert!(message.contains("in use by another matih process"), "{message}");
                assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        assert!(took >= wait, "gave up after {took:?}");
        assert!(took < wait + Duration::from_secs(2), "took {took:?}");

        // Once the first store is closed, the store opens again.
        first.put(&sample_state("acme", 1), None, "apply").unwrap();
        drop(first);
        let again = SledStore::open(&path).unwrap();
        assert_eq!(again.tenants().unwrap(), vec!["acme".to_string()]);
    }

    #[test]
    fn the_holders_file_names_the_tenant_locks_of_the_process_that_has_the_store_open() {
        let (_dir, path) = store_dir();
        let first = SledStore::open(&path).unwrap();
        let lock = LockInfo::new("acme", "apply");
        first.lock(&lock).unwrap();
        assert_eq!(SledStore::holders(&path), vec![lock.clone()]);
        match SledStore::open_with_wait(&path, Duration::from_millis(100)) {
            Err(StateError::Busy { message, .. }) => {
                assert!(message.contains(&format!("tenant \"acme\" is locked by {}", lock.who)), "{message}");
                assert!(message.contains(&format!("lock id {}", lock.id)), "{message}");
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        first.unlock("acme", &lock.id).unwrap();
        assert!(SledStore::holders(&path).is_empty());
        // A holder that died is not named.
        let mut dead = LockInfo::new("beta", "apply");
        dead.pid = u32::MAX - 1;
        std::fs::write(path.join(HOLDERS_FILE), serde_json::to_vec(&[dead]).unwrap()).unwrap();
        assert!(SledStore::holders(&path).is_empty());
    }

    #[test]
    fn secrets_are_stored_as_source_and_fingerprint_only() {
        let (_dir, path) = store_dir();
        let store = SledStore::open(&path).unwrap();
        store.put(&sample_state("acme", 1), None, "apply").unwrap();
        store.put(&sample_state("acme", 2), Some(1), "apply").unwrap();

        let raw_state = store.tenants.get("acme").unwrap().unwrap();
        let raw_history = store.history.get(history_key("acme", 1)).unwrap().unwrap();
        for raw in [raw_state.as_ref(), raw_history.as_ref()] {
            let text = std::str::from_utf8(raw).unwrap();
            assert!(!text.contains("hunter2"), "clear text in {text}");
            let json: serde_json::Value = serde_json::from_slice(raw).unwrap();
            let secrets = find_secrets(&json);
            assert_eq!(secrets.len(), 1, "{text}");
            let keys: Vec<&str> = secrets[0].as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(keys, vec!["source", "fingerprint"]);
            assert_eq!(secrets[0]["fingerprint"], crate::value::fingerprint("hunter2"));
        }
    }

    /// Every `$secret` object inside a JSON document.
    fn find_secrets(json: &serde_json::Value) -> Vec<&serde_json::Value> {
        match json {
            serde_json::Value::Object(m) => {
                m.iter().flat_map(|(k, v)| if k == "$secret" { vec![v] } else { find_secrets(v) }).collect()
            }
            serde_json::Value::Array(items) => items.iter().flat_map(find_secrets).collect(),
            _ => Vec::new(),
        }
    }
}
