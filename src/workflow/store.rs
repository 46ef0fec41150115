//! Where the state is and how each command opens it: the one way to open the state store the
//! platform file selects, to wait for another run, to forget resources (`state rm`) and to read
//! recorded states for drift on either backend.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::addr::ResourceAddr;
use crate::drift::{self, Recorded};
use crate::spec::{PlatformConfig, StateBackend};
use crate::state::{self, LockInfo, MemoryStore, PostgresStore, SledStore, StateError, StateStore, DEFAULT_OPEN_WAIT};

/// What a command does with the state store it opens.
#[derive(Clone, Copy, Debug)]
pub enum StoreUse {
    /// Reads only: an absent sled store is an empty one (planning never creates files).
    Read,
    /// Writes (state rm, force-unlock): the sled store is created if absent.
    Write,
    /// Applies or destroys: waits up to the lock timeout for another process holding a sled store.
    Run(Duration),
}

/// Where the state is: the platform file's `state` block (`backend`, `path`, `url_env`), with
/// `--state`/`MATIH_STATE_DIR` taking precedence for the sled directory.
#[derive(Clone, Debug)]
pub struct StateLocation {
    pub backend: StateBackend,
    pub dir: PathBuf,
    pub url_env: String,
}

/// How long `matih drift` waits for the state store, which a running apply holds, before it
/// reports every tenant as busy.
const DRIFT_STORE_WAIT: Duration = Duration::from_secs(2);

impl StateLocation {
    /// The location `platform` selects; `dir` (the `--state` option) overrides its `path`.
    pub fn new(platform: &PlatformConfig, dir: Option<PathBuf>) -> StateLocation {
        let dir = dir.or_else(|| platform.state.path.clone().map(PathBuf::from)).unwrap_or_else(|| "state".into());
        StateLocation { backend: platform.state.backend, dir, url_env: platform.state.url_env.clone() }
    }

    /// How messages name the store.
    pub fn describe(&self) -> String {
        match self.backend {
            StateBackend::Sled => self.dir.display().to_string(),
            StateBackend::Postgres => format!("PostgreSQL (${})", self.url_env),
        }
    }

    /// Opens the store: the one way every command opens it.
    pub fn open(&self, usage: StoreUse) -> Result<Box<dyn StateStore>> {
        match self.backend {
            StateBackend::Postgres => Ok(Box::new(connect_postgres_state(&self.url_env)?)),
            StateBackend::Sled => match usage {
                // Nothing recorded yet reads as an empty store, but a path that is not a directory
                // at all (a file given as --state) is a mistake to report, not an empty state.
                StoreUse::Read if self.dir.exists() && !self.dir.is_dir() => {
                    bail!("the state directory {} is not a directory", self.dir.display())
                }
                StoreUse::Read if !SledStore::exists(&self.dir) => Ok(Box::new(MemoryStore::default())),
                StoreUse::Read | StoreUse::Write => Ok(Box::new(SledStore::open(&self.dir)?)),
                StoreUse::Run(lock_timeout) => Ok(Box::new(open_for_run(&self.dir, lock_timeout)?)),
            },
        }
    }

    /// The recorded state (or why it is busy) of each of `slugs`, strictly read-only: from a copy
    /// of a sled store (see [`drift::read_recorded`]), directly from a PostgreSQL one (reads change
    /// nothing there).
    pub fn read_recorded(&self, slugs: &[&str]) -> Result<Vec<Recorded>> {
        match self.backend {
            StateBackend::Sled => Ok(drift::read_recorded(&self.dir, slugs, DRIFT_STORE_WAIT)?),
            StateBackend::Postgres => Ok(drift::recorded_in(self.open(StoreUse::Read)?.as_ref(), slugs)?),
        }
    }
}

/// The PostgreSQL state store whose URL is in the variable `url_env` (never in a file).
pub fn connect_postgres_state(url_env: &str) -> Result<PostgresStore> {
    let url = std::env::var(url_env).ok().filter(|u| !u.is_empty()).with_context(|| {
        format!(
            "the platform file selects the postgres state backend, but {url_env} is not set: set it to the \
             connection URL postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        )
    })?;
    Ok(PostgresStore::connect(&url)?)
}

/// Opens the sled store for an apply or destroy. While another matih process has it open, tries
/// again until `lock_timeout` has passed; then, if that process holds tenant locks, fails naming
/// them (the tenant lock holder), otherwise keeps waiting up to [`DEFAULT_OPEN_WAIT`] (a short
/// command such as `matih status` holds the store only briefly).
fn open_for_run(path: &Path, lock_timeout: Duration) -> Result<SledStore> {
    let started = Instant::now();
    loop {
        match SledStore::open_with_wait(path, Duration::from_millis(250)) {
            Ok(store) => return Ok(store),
            Err(e @ StateError::Busy { .. }) => {
                let waited = started.elapsed();
                if waited < lock_timeout {
                    continue;
                }
                let holders = SledStore::holders(path);
                if let Some(h) = holders.first() {
                    let others = if holders.len() > 1 {
                        format!(" (and {} other tenant(s))", holders.len() - 1)
                    } else {
                        String::new()
                    };
                    let how_long = if lock_timeout.is_zero() {
                        "use --lock-timeout to wait for it".to_string()
                    } else {
                        format!("still locked after waiting {}", humantime::format_duration(lock_timeout))
                    };
                    bail!(
                        "tenant {:?} is locked by {} ({} on {}, pid {}, since {}; lock id {}){others}: that run has the \
                         state store {} open; nothing was changed ({how_long})",
                        h.slug,
                        h.who,
                        h.operation,
                        h.host,
                        h.pid,
                        h.created_at,
                        h.id,
                        path.display()
                    );
                }
                if waited >= lock_timeout.max(DEFAULT_OPEN_WAIT) {
                    return Err(e.into());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Before an apply or destroy plans on the postgres backend, waits up to `timeout` for the runs
/// holding these tenants' locks to finish, so that it plans against the state they leave, as on
/// sled (where `open_for_run` waits for the store itself). Fails naming the holder when the wait
/// runs out.
pub fn wait_for_tenant_locks(store: &dyn StateStore, slugs: &[&str], timeout: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        let Some(holder) = store.locks()?.into_iter().find(|l| slugs.contains(&l.slug.as_str())) else {
            return Ok(());
        };
        if started.elapsed() >= timeout {
            let e = StateError::Locked { slug: holder.slug.clone(), holder: Box::new(holder) };
            bail!("{e}; nothing was changed (still locked after waiting {})", humantime::format_duration(timeout));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `matih state rm`: forgets resources (nothing is deleted in the real world), under the tenant's
/// lock, as one compare-and-swap write whose replaced state goes to history. Returns the new serial.
pub fn forget_resources(store: &dyn StateStore, slug: &str, addresses: &[String]) -> Result<u64> {
    let lock = LockInfo::new(slug, "state rm");
    store.lock(&lock)?;
    let result = (|| -> Result<u64> {
        let mut st = store.get(slug)?.with_context(|| format!("no tenant {slug:?} in the state store"))?;
        let expected = st.serial;
        for a in addresses {
            let addr: ResourceAddr = a.parse().map_err(anyhow::Error::msg)?;
            if st.resources.remove(&addr).is_none() {
                bail!("tenant {slug:?} has no resource {addr}; nothing was removed");
            }
        }
        st.serial = expected + 1;
        st.updated_at = state::now_rfc3339();
        // Not part of any run: the state it replaces goes to history.
        st.run_id = None;
        store.put(&st, Some(expected), "state rm")?;
        Ok(st.serial)
    })();
    store.unlock(slug, &lock.id)?;
    result
}
