//! Applying a fleet: many tenants in one run, and several runs — on several machines sharing one
//! PostgreSQL state — dividing the same fleet between them through the tenants' locks.
//!
//! A run works through its tenants in order, at most `tenant_parallelism` at once. For each it
//! tries the tenant's lock once:
//! - taken: the tenant is applied under it. When the tenant's state moved since the plan was made
//!   (another run applied it in the meantime) and the run may plan again ([`Replan`]: an
//!   `--auto-approve` run over spec files), it is planned again against what the store holds now
//!   and only what is left is done — usually nothing. Without `Replan` (a reviewed plan) such a
//!   tenant is refused as stale, as before.
//! - held by another run: the tenant is set aside and the run goes on with the others; set-aside
//!   tenants are tried again every `poll` until their lock comes free, then handled as above. So
//!   when several runners start on the same fleet, each tenant is applied by exactly one of them
//!   (whoever locks it first), the others find nothing left to do, and none is skipped: the lock of
//!   a runner that died goes with it (its PostgreSQL session ends) and a survivor finishes the job.
//!
//! How long a set-aside tenant is waited for: up to `--lock-timeout` when one is given. With no
//! timeout, a run over a single tenant fails at once naming the holder (another run is applying
//! that very tenant: a conflict, as in Terraform), and so does a run that may not plan again (its
//! plan would be stale once the holder is done); a run over several tenants that may plan again
//! waits for as long as the holder lives ([`FleetOptions::wait_for_others`]).

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{apply_with_lock, preflight, ApplyError, ApplyOptions, ApplyReport, Hooks, Providers};
use crate::plan::TenantPlan;
use crate::state::{LockInfo, StateError, StateStore, TenantState};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Plans a tenant again against the state found under its lock (`None`: no state recorded).
/// Errors are messages for the user.
pub trait Replan: Send + Sync {
    fn replan<'a>(
        &'a self,
        planned: &'a TenantPlan,
        found: Option<&'a TenantState>,
        providers: &'a Providers,
    ) -> BoxFuture<'a, Result<TenantPlan, String>>;
}

#[derive(Clone)]
pub struct FleetOptions {
    /// Tenants applied at once by this run.
    pub tenant_parallelism: usize,
    /// Plans tenants again whose state moved since the plan was made; `None` refuses them.
    pub replan: Option<Arc<dyn Replan>>,
    /// How often a tenant held by another run is tried again.
    pub poll: Duration,
    /// How long a run over several tenants waits for one held by another run when no lock timeout
    /// is set (`None`: as long as the holder lives).
    pub wait_for_others: Option<Duration>,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions { tenant_parallelism: 20, replan: None, poll: Duration::from_millis(500), wait_for_others: None }
    }
}

/// A tenant that another run held when this run tried it.
struct SetAside {
    index: usize,
    since: Instant,
}

/// Applies every plan of `plans` (see the module documentation); the results are in the order of
/// `plans`.
pub async fn apply_fleet(
    plans: Vec<TenantPlan>,
    store: Arc<dyn StateStore>,
    providers: Providers,
    hooks: Arc<dyn Hooks>,
    opts: ApplyOptions,
    fleet: FleetOptions,
) -> Vec<Result<ApplyReport, ApplyError>> {
    let n = plans.len();
    let plans: Vec<Arc<TenantPlan>> = plans.into_iter().map(Arc::new).collect();
    // Waiting for a held tenant only makes sense when it can be planned again afterwards: a
    // reviewed plan would be refused as stale once the holder has changed the tenant.
    let limit = if !opts.lock_timeout.is_zero() {
        Some(opts.lock_timeout)
    } else if n == 1 || fleet.replan.is_none() {
        Some(Duration::ZERO)
    } else {
        fleet.wait_for_others
    };
    let permits = Arc::new(Semaphore::new(fleet.tenant_parallelism.max(1)));
    let mut results: Vec<Option<Result<ApplyReport, ApplyError>>> = (0..n).map(|_| None).collect();
    let mut queue: VecDeque<SetAside> = VecDeque::new();
    for index in 0..n {
        match preflight(&plans[index], &providers, &opts) {
            Ok(()) => queue.push_back(SetAside { index, since: Instant::now() }),
            Err(e) => results[index] = Some(Err(e)),
        }
    }
    let mut running = JoinSet::new();
    let mut first_pass = true;
    while !queue.is_empty() {
        if !first_pass {
            tokio::time::sleep(fleet.poll).await;
        }
        let mut aside = VecDeque::new();
        while let Some(t) = queue.pop_front() {
            let permit = permits.clone().acquire_owned().await.expect("the semaphore is never closed");
            let plan = plans[t.index].clone();
            let lock = LockInfo::new(&plan.slug, opts.operation.name());
            match store.lock(&lock) {
                Ok(()) => {
                    let (store, providers, hooks, opts, replan) =
                        (store.clone(), providers.clone(), hooks.clone(), opts.clone(), fleet.replan.clone());
                    running.spawn(async move {
                        let r = apply_with_lock(
                            &plan,
                            store.as_ref(),
                            &providers,
                            hooks.as_ref(),
                            &opts,
                            &lock,
                            replan.as_deref(),
                        )
                        .await;
                        drop(permit);
                        (t.index, r)
                    });
                }
                Err(e @ StateError::Locked { .. }) => {
                    let waited = t.since.elapsed();
                    match limit {
                        Some(limit) if waited >= limit => {
                            results[t.index] = Some(Err(ApplyError::LockTimeout { waited: limit, source: e }));
                        }
                        _ => {
                            if first_pass {
                                if let StateError::Locked { holder, .. } = &e {
                                    hooks.tenant_note(
                                        &plan.slug,
                                        &format!(
                                            "locked by {} ({} on {}, pid {}): set aside, tried again after the others",
                                            holder.who, holder.operation, holder.host, holder.pid
                                        ),
                                    );
                                }
                            }
                            aside.push_back(t);
                        }
                    }
                }
                Err(e) => results[t.index] = Some(Err(e.into())),
            }
        }
        queue = aside;
        first_pass = false;
    }
    while let Some(done) = running.join_next().await {
        let (index, r) = done.expect("an apply task panicked");
        results[index] = Some(r);
    }
    results.into_iter().map(|r| r.expect("every tenant has a result")).collect()
}
