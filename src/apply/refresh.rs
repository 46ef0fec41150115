//! Refresh: reads every recorded resource of a tenant back through its provider, so that a plan
//! compares the specs with the real world and not only with what matih last wrote.
//!
//! Write-ahead records (`in_flight`) left by a run that was killed are read too: an object that an
//! in-flight create made is adopted into the refreshed state (so the plan does not create it again),
//! one that does not exist is forgotten. [`recover_in_flight`] does the same to the state an apply
//! is about to write.
//!
//! **Invariant:** read-only. Neither the real world nor the state store is changed; the refreshed
//! state is returned for the plan to use.

use std::collections::BTreeMap;

use tokio::task::JoinSet;

use super::Providers;
use crate::addr::ResourceAddr;
use crate::plan::{Action, TenantPlan, Unrecorded};
use crate::provider::{Observed, ProviderError, ResourceObject, TenantRef};
use crate::state::{ResourceState, TenantState};

/// What refresh found for one tenant.
#[derive(Debug, Default)]
pub struct Refreshed {
    /// The recorded state with every readable resource replaced by what is live; resources that are
    /// gone are removed (so the plan creates them again).
    pub state: Option<TenantState>,
    /// Resources that no longer exist in the real world.
    pub gone: Vec<ResourceAddr>,
    /// Resources whose live attributes differ from the recorded ones.
    pub changed: Vec<ResourceAddr>,
    /// Resources that could not be read (their recorded attributes are kept).
    pub errors: Vec<ProviderError>,
    /// Objects named by write-ahead records of an interrupted run, found live and adopted.
    pub adopted: Vec<ResourceAddr>,
}

/// Reads the object of every write-ahead record of `st` and settles it: a live object is recorded
/// (adopted, or its record refreshed), an absent one is removed from the resources, and the
/// record is dropped. Records whose object cannot be read are kept. Returns `(address, outcome)`
/// with outcome `adopted`, `gone`, `refreshed` or `unreadable`.
pub async fn recover_in_flight(st: &mut TenantState, providers: &Providers) -> Vec<(ResourceAddr, &'static str)> {
    let tenant = TenantRef { slug: st.slug.clone(), id: st.tenant_id.clone() };
    let mut out = Vec::new();
    let records: Vec<_> = st.in_flight.iter().map(|(a, r)| (a.clone(), r.clone())).collect();
    for (addr, record) in records {
        let Some(provider) = providers.for_kind(&addr.kind) else {
            out.push((addr, "unreadable"));
            continue;
        };
        let attrs = st.resources.get(&addr).map_or_else(|| record.attrs.clone(), |r| r.attrs.clone());
        match provider.read(&tenant, &ResourceObject::new(addr.clone(), attrs)).await {
            Ok(Some(observed)) => {
                let adopted = !st.resources.contains_key(&addr);
                let rec = st.resources.entry(addr.clone()).or_insert_with(|| ResourceState {
                    phase: record.phase,
                    attrs: BTreeMap::new(),
                    outputs: BTreeMap::new(),
                    depends_on: record.depends_on.clone(),
                });
                rec.attrs = observed.attrs;
                rec.outputs.extend(observed.outputs);
                st.in_flight.remove(&addr);
                out.push((addr, if adopted { "adopted" } else { "refreshed" }));
            }
            Ok(None) => {
                st.resources.remove(&addr);
                st.in_flight.remove(&addr);
                out.push((addr, "gone"));
            }
            Err(e) => {
                tracing::warn!("cannot read {addr} of an interrupted run: {e}");
                out.push((addr, "unreadable"));
            }
        }
    }
    out
}

/// Attempts per read while the provider reports transient errors (a busy API server, PostgreSQL
/// out of connections), with the delay doubling from [`READ_BACKOFF`].
const READ_ATTEMPTS: u32 = 4;
const READ_BACKOFF: std::time::Duration = std::time::Duration::from_millis(250);

async fn read_with_retry(
    provider: &dyn crate::provider::Provider,
    tenant: &TenantRef,
    obj: &ResourceObject,
) -> Result<Option<Observed>, ProviderError> {
    let mut delay = READ_BACKOFF;
    for attempt in 1.. {
        match provider.read(tenant, obj).await {
            Err(e) if e.transient && attempt < READ_ATTEMPTS => {
                tracing::debug!("reading {} failed ({e}); attempt {attempt}, retrying", obj.addr);
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
    unreachable!("the loop returns")
}

/// Runs `read` on every object (each kind must have a provider), at most `parallelism` at once,
/// in order of the queue; the results by address. How refresh and drift read with
/// `MATIH_READ_ONE_BY_ONE=1`.
pub(crate) async fn read_each<T, F, Fut>(
    queue: Vec<ResourceObject>,
    providers: &Providers,
    parallelism: usize,
    read: F,
) -> BTreeMap<ResourceAddr, T>
where
    F: Fn(std::sync::Arc<dyn crate::provider::Provider>, ResourceObject) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let mut queue = queue.into_iter();
    let mut running = JoinSet::new();
    let mut results = BTreeMap::new();
    loop {
        while running.len() < parallelism.max(1) {
            let Some(obj) = queue.next() else { break };
            let provider = providers.for_kind(&obj.addr.kind).expect("a provider for every queued kind").clone();
            let addr = obj.addr.clone();
            let read = read(provider, obj);
            running.spawn(async move { (addr, read.await) });
        }
        let Some(joined) = running.join_next().await else { break };
        match joined {
            Ok((addr, r)) => {
                results.insert(addr, r);
            }
            Err(panic) => std::panic::resume_unwind(panic.into_panic()),
        }
    }
    results
}

/// Reads every object of `queue` (each kind must have a provider) of one tenant once: each
/// provider's objects with one [`crate::provider::Provider::read_many`], the providers at once;
/// one result per object, in the order of `queue`. Refresh and drift read this way.
///
/// With a `timeout`, a provider whose `read_many` has not answered in time is asked again one
/// object at a time, each read with that timeout, so that one object that hangs fails alone (as
/// `no answer within …s`) and the others are still read.
pub(crate) async fn read_batch(
    tenant: &TenantRef,
    queue: &[ResourceObject],
    providers: &Providers,
    parallelism: usize,
    timeout: Option<std::time::Duration>,
) -> Vec<Result<Option<Observed>, ProviderError>> {
    // The objects of each provider (by its position in `providers`), in queue order.
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for (i, obj) in queue.iter().enumerate() {
        let p =
            providers.list.iter().position(|p| p.handles(&obj.addr.kind)).expect("a provider for every queued kind");
        match groups.iter_mut().find(|(q, _)| *q == p) {
            Some((_, objs)) => objs.push(i),
            None => groups.push((p, vec![i])),
        }
    }
    let reads = groups.iter().map(|(p, objs)| async move {
        let asked: Vec<ResourceObject> = objs.iter().map(|&i| queue[i].clone()).collect();
        let provider = providers.list[*p].as_ref();
        let Some(timeout) = timeout else { return provider.read_many(tenant, &asked, parallelism).await };
        if let Ok(read) = tokio::time::timeout(timeout, provider.read_many(tenant, &asked, parallelism)).await {
            return read;
        }
        crate::provider::read_one_by_one(&Timed(provider, timeout), tenant, &asked, parallelism).await
    });
    let done = futures_util::future::join_all(reads).await;
    let mut out: Vec<Option<Result<Option<Observed>, ProviderError>>> = queue.iter().map(|_| None).collect();
    for ((_, objs), results) in groups.iter().zip(done) {
        assert_eq!(objs.len(), results.len(), "read_many answers once per resource");
        for (&i, r) in objs.iter().zip(results) {
            out[i] = Some(r);
        }
    }
    out.into_iter().map(|r| r.expect("one result per object")).collect()
}

/// A provider whose reads give up after a timeout, as `no answer within …s` (transient).
struct Timed<'p>(&'p dyn crate::provider::Provider, std::time::Duration);

impl crate::provider::Provider for Timed<'_> {
    fn handles(&self, kind: &str) -> bool {
        self.0.handles(kind)
    }

    fn read<'a>(
        &'a self,
        tenant: &'a TenantRef,
        obj: &'a ResourceObject,
    ) -> crate::provider::ProviderFuture<'a, Option<Observed>> {
        Box::pin(async move {
            tokio::time::timeout(self.1, self.0.read(tenant, obj)).await.unwrap_or_else(|_| {
                let message = format!("no answer within {}s", self.1.as_secs());
                Err(ProviderError { address: obj.addr.clone(), path: None, message, transient: true })
            })
        })
    }

    fn apply<'a>(
        &'a self,
        tenant: &'a TenantRef,
        obj: &'a ResourceObject,
    ) -> crate::provider::ProviderFuture<'a, Observed> {
        self.0.apply(tenant, obj)
    }

    fn delete<'a>(&'a self, tenant: &'a TenantRef, obj: &'a ResourceObject) -> crate::provider::ProviderFuture<'a, ()> {
        self.0.delete(tenant, obj)
    }
}

/// [`read_batch`] of `queue`, reading again (with the delay doubling from [`READ_BACKOFF`], at
/// most [`READ_ATTEMPTS`] times) what failed with a transient error; the results by address.
/// With `MATIH_READ_ONE_BY_ONE=1`, one read per object as before `read_many` existed.
async fn read_all(
    tenant: &TenantRef,
    queue: Vec<ResourceObject>,
    providers: &Providers,
    parallelism: usize,
) -> BTreeMap<ResourceAddr, Result<Option<Observed>, ProviderError>> {
    if crate::provider::read_one_by_one_forced() {
        let tenant = tenant.clone();
        return read_each(queue, providers, parallelism, move |provider, obj| {
            let tenant = tenant.clone();
            async move { read_with_retry(provider.as_ref(), &tenant, &obj).await }
        })
        .await;
    }
    let mut results = BTreeMap::new();
    let mut pending = queue;
    let mut delay = READ_BACKOFF;
    for attempt in 1..=READ_ATTEMPTS {
        let found = read_batch(tenant, &pending, providers, parallelism, None).await;
        let mut again = Vec::new();
        for (obj, r) in pending.into_iter().zip(found) {
            match r {
                Err(e) if e.transient && attempt < READ_ATTEMPTS => {
                    tracing::debug!("reading {} failed ({e}); attempt {attempt}, retrying", obj.addr);
                    again.push(obj);
                }
                r => {
                    results.insert(obj.addr, r);
                }
            }
        }
        if again.is_empty() {
            break;
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
        pending = again;
    }
    results
}

/// Reads back every resource of `state` whose kind has a provider, at most `parallelism` at once.
pub async fn refresh(state: &TenantState, providers: &Providers, parallelism: usize) -> Refreshed {
    let tenant = TenantRef { slug: state.slug.clone(), id: state.tenant_id.clone() };
    let mut out = Refreshed { state: Some(state.clone()), ..Refreshed::default() };
    let queue: Vec<ResourceObject> = state
        .resources
        .iter()
        .filter(|(addr, _)| providers.for_kind(&addr.kind).is_some())
        .map(|(addr, r)| ResourceObject::new(addr.clone(), r.attrs.clone()))
        .collect();
    let results = read_all(&tenant, queue, providers, parallelism).await;
    let st = out.state.as_mut().expect("set above");
    // Creates of an interrupted run: not recorded yet, maybe live.
    let mut creates = st.clone();
    creates.in_flight.retain(|a, _| !st.resources.contains_key(a) && providers.for_kind(&a.kind).is_some());
    for (addr, outcome) in recover_in_flight(&mut creates, providers).await {
        match outcome {
            "adopted" => {
                st.resources.insert(addr.clone(), creates.resources[&addr].clone());
                out.adopted.push(addr);
            }
            "unreadable" => out.errors.push(ProviderError {
                address: addr,
                path: None,
                message: "an interrupted run may have created it, and it cannot be read".into(),
                transient: false,
            }),
            _ => {}
        }
    }
    st.in_flight.clear();
    for (addr, r) in results {
        match r {
            Ok(None) => {
                st.resources.remove(&addr);
                out.gone.push(addr);
            }
            Ok(Some(observed)) => {
                let rec = st.resources.get_mut(&addr).expect("read from state");
                if rec.attrs != observed.attrs {
                    out.changed.push(addr.clone());
                }
                rec.attrs = observed.attrs;
                for (k, v) in observed.outputs {
                    rec.outputs.insert(k, v);
                }
            }
            Err(e) => out.errors.push(e),
        }
    }
    out
}

/// Adoption's one read: the object of every planned create of `plan` (its `after`, references
/// resolved where the plan knows them), at most `parallelism` at once. Those that exist although
/// matih has no record of them are returned, for `plan::diff_adopting` to adopt instead of create.
/// A create whose attributes still wait for another resource's outputs (a DNS record of a zone not
/// made yet) is not looked up: what it names is not known before apply. Read as refresh reads
/// (`read_many`).
pub async fn read_unrecorded(
    plan: &TenantPlan,
    providers: &Providers,
    parallelism: usize,
) -> (BTreeMap<ResourceAddr, Unrecorded>, Vec<ProviderError>) {
    let tenant = TenantRef { slug: plan.slug.clone(), id: plan.tenant_id.clone() };
    let queue: Vec<ResourceObject> = plan
        .resource_changes
        .iter()
        .filter(|c| c.action == Action::Create && providers.for_kind(&c.address.kind).is_some())
        .filter_map(|c| Some(ResourceObject::new(c.address.clone(), c.after.clone()?)))
        .filter(|o| o.attrs.values().all(|v| v.refs().is_empty()))
        .collect();
    if queue.is_empty() {
        return (BTreeMap::new(), Vec::new());
    }
    let results = read_all(&tenant, queue, providers, parallelism).await;
    let mut found = BTreeMap::new();
    let mut errors = Vec::new();
    for (addr, r) in results {
        match r {
            Ok(Some(o)) => {
                found.insert(addr, Unrecorded { attrs: o.attrs, outputs: o.outputs, made_by: o.made_by });
            }
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    (found, errors)
}

/// Re-reads the resources a saved plan will change and names those that changed in the real world
/// since the plan was made (their live attributes differ from the plan's `before`). Terraform does
/// not do this; matih refuses to apply such a plan.
pub async fn changed_since_planned(
    plan: &TenantPlan,
    providers: &Providers,
) -> Result<Vec<ResourceAddr>, ProviderError> {
    let tenant = TenantRef { slug: plan.slug.clone(), id: plan.tenant_id.clone() };
    let mut changed = Vec::new();
    for c in &plan.resource_changes {
        if matches!(c.action, Action::NoOp | Action::Create) {
            continue;
        }
        let (Some(before), Some(provider)) = (&c.before, providers.for_kind(&c.address.kind)) else { continue };
        let obj = ResourceObject::new(c.address.clone(), before.clone());
        let live = provider.read(&tenant, &obj).await?;
        if live.as_ref().is_none_or(|o| &o.attrs != before) {
            changed.push(c.address.clone());
        }
    }
    Ok(changed)
}
