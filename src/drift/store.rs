//! Reading the recorded states for drift without writing a byte of the state store.
//!
//! sled writes when it opens a store (recovery, a new snapshot file), so even a read-only command
//! that opens `state/` changes its files. Drift therefore copies the store's files while holding a
//! *shared* lock on the store's process lock file (`matih.lock`, which every matih that opens the
//! store holds exclusively), and opens the copy. The lock is held only for the copy; if another
//! process has the store open (an apply is running) and does not let go within the wait, every
//! tenant is reported busy.
//!
//! **Invariant:** never opens, creates or modifies a file of the state directory for writing.

use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::Recorded;
use crate::state::{SledStore, StateError, StateStore, PROCESS_LOCK_FILE};

fn io(dir: &Path, message: String) -> StateError {
    StateError::Io { path: dir.display().to_string(), message }
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Copies a directory tree; every directory of the copy is `0700` (the copy of the state is as
/// private as the state).
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    crate::state::private::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let (src, name) = (entry.path(), entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&src, &to.join(&name))?;
        } else if name != PROCESS_LOCK_FILE {
            fs::copy(&src, to.join(&name))?;
        }
    }
    Ok(())
}

/// The recorded state (or the reason it is busy) of each of `slugs`, read from the sled store in
/// `dir` without changing it. An absent store records nothing. Waits up to `wait` for a process
/// that has the store open.
pub fn read_recorded(dir: &Path, slugs: &[&str], wait: Duration) -> Result<Vec<Recorded>, StateError> {
    if !SledStore::exists(dir) {
        return Ok(slugs.iter().map(|_| Recorded::State(None)).collect());
    }
    let lock_path = dir.join(PROCESS_LOCK_FILE);
    let lock = File::open(&lock_path).map_err(|e| io(dir, format!("cannot open {}: {e}", lock_path.display())))?;
    let deadline = Instant::now() + wait;
    loop {
        match lock.try_lock_shared() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => sleep(Duration::from_millis(50)),
            Err(TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&lock_path).ok().map(|s| s.trim().to_string()).unwrap_or_default();
                let reason = format!(
                    "the state store at {} is in use by another matih process{} (an apply or destroy is running); \
                     run matih drift again when it has finished",
                    dir.display(),
                    if holder.is_empty() { String::new() } else { format!(" (pid {holder})") }
                );
                return Ok(slugs.iter().map(|_| Recorded::Busy(reason.clone())).collect());
            }
            Err(TryLockError::Error(e)) => return Err(io(dir, format!("cannot lock {}: {e}", lock_path.display()))),
        }
    }
    let copy = TempDir(std::env::temp_dir().join(format!("matih-drift-{}", uuid::Uuid::new_v4().simple())));
    let copied = copy_dir(dir, &copy.0);
    drop(lock);
    copied.map_err(|e| io(dir, format!("cannot copy the store to {} to read it: {e}", copy.0.display())))?;

    let store = SledStore::open_with_wait(&copy.0, wait)?;
    recorded_in(&store, slugs)
}

/// The recorded state of each of `slugs` in `store`, or, for a tenant whose lock is held, who
/// holds it. Reads only (a PostgreSQL store is read in place: reads change nothing there).
pub fn recorded_in(store: &dyn StateStore, slugs: &[&str]) -> Result<Vec<Recorded>, StateError> {
    let locks = store.locks()?;
    let mut out = Vec::with_capacity(slugs.len());
    for slug in slugs {
        if let Some(l) = locks.iter().find(|l| l.slug == *slug) {
            out.push(Recorded::Busy(format!(
                "locked by {} ({} on {}, pid {}, since {}); if that run is gone, release the lock with \
                 `matih lock force-unlock {slug} {}`",
                l.who, l.operation, l.host, l.pid, l.created_at, l.id
            )));
        } else {
            out.push(Recorded::State(store.get(slug)?));
        }
    }
    Ok(out)
}
