//! The provider interface: how the engine reads, creates, updates and deletes real objects.
//!
//! **Invariant:** providers know nothing of graphs or plans. They are handed one resource at a
//! time (its address, kind, desired attributes with references already resolved) and report
//! attribute paths in their errors; the engine attaches source locations. The one exception is
//! [`Provider::read_many`], which reads the resources of one tenant together (fewer requests)
//! and must answer exactly as one [`Provider::read`] each would.
//!
//! Implementations (Kubernetes, PostgreSQL, DNS) live beside this file as their issues land.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use crate::addr::ResourceAddr;
use crate::value::Value;

pub mod dns;
pub mod helm;
pub mod kubernetes;
pub mod postgres;

/// The tenant a request is made for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantRef {
    pub slug: String,
    pub id: String,
}

/// A resource as the provider sees it: address and attributes, no graph.
#[derive(Clone, PartialEq, Eq)]
pub struct ResourceObject {
    pub addr: ResourceAddr,
    /// The attributes to apply: references resolved; `Computed` values the provider fills in;
    /// `Secret` values carry only their source and fingerprint.
    pub attrs: BTreeMap<String, Value>,
    /// Clear text of the secrets that `attrs` name, keyed by [`crate::value::Secret::source`]
    /// (`env:NAME`, `output:KIND.NAME.OUTPUT`), when the engine has them in this run. Never written
    /// anywhere. A secret absent here must be kept as it is in the real object (when its
    /// fingerprint matches) or generated (`generated`).
    pub secrets: BTreeMap<String, String>,
    /// For an apply: the attributes matih recorded for this resource after its last successful
    /// operation (its own record, from the state store; `None` for a create or outside an apply).
    /// A provider whose live object can be written by someone else (a tenant's migration history)
    /// takes this, not what it reads, as the authority on what matih did.
    pub recorded: Option<BTreeMap<String, Value>>,
}

impl ResourceObject {
    pub fn new(addr: ResourceAddr, attrs: BTreeMap<String, Value>) -> Self {
        ResourceObject { addr, attrs, secrets: BTreeMap::new(), recorded: None }
    }
}

impl std::fmt::Debug for ResourceObject {
    /// Shows which secrets are present, never their values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceObject")
            .field("addr", &self.addr)
            .field("attrs", &self.attrs)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("recorded", &self.recorded.is_some())
            .finish()
    }
}

/// What a provider read or wrote: the attributes it manages and the outputs others may reference.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub attrs: BTreeMap<String, Value>,
    pub outputs: BTreeMap<String, Value>,
    /// Sensitive outputs in clear (a generated password), handed by the engine to later resources
    /// of the same run that name them as `output:KIND.NAME.OUTPUT`; kept in memory only.
    pub sensitive: BTreeMap<String, String>,
    /// Fields whose live value differs from what matih set because another controller took them
    /// over (an autoscaler's `spec.replicas`). `attrs` keeps matih's value for them: they are not
    /// drift, and drift lists them as ignored.
    pub yielded: Vec<YieldedField>,
    /// Who wrote the live object, where the provider can tell (a Kubernetes object's field
    /// managers, `metadata.managedFields`): shown when matih has no record of the object.
    pub made_by: Vec<String>,
}

/// A field another controller owns now, by attribute path (`spec.replicas`) and field manager.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct YieldedField {
    pub path: String,
    pub manager: String,
}

impl std::fmt::Debug for Observed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed")
            .field("attrs", &self.attrs)
            .field("outputs", &self.outputs)
            .field("sensitive", &self.sensitive.keys().collect::<Vec<_>>())
            .field("yielded", &self.yielded)
            .field("made_by", &self.made_by)
            .finish()
    }
}

/// A provider error, located by attribute path when it concerns one attribute.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{address}{}: {message}", .path.as_ref().map(|p| format!(" ({p})")).unwrap_or_default())]
pub struct ProviderError {
    pub address: ResourceAddr,
    pub path: Option<String>,
    pub message: String,
    /// Worth retrying (429, 5xx, connection reset); permanent errors (403, 422) are not.
    pub transient: bool,
}

/// One object a resource renders, compared with the live one (helm's rendered manifests against
/// the release's manifest), for a reviewer: `Deployment ai-service`, `changed`, a unified diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedChange {
    /// `Kind name`.
    pub object: String,
    /// `added`, `removed` or `changed`.
    pub change: &'static str,
    /// For `changed`: the unified diff of the object's YAML, live (`-`) to desired (`+`), secret
    /// values masked.
    pub diff: Option<String>,
}

pub type ProviderFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ProviderError>> + Send + 'a>>;

/// What [`Provider::read_many`] answers: one result per resource asked, in the order asked.
pub type ReadMany<'a> = Pin<Box<dyn Future<Output = Vec<Result<Option<Observed>, ProviderError>>> + Send + 'a>>;

/// One [`Provider::read`] per resource, at most `parallelism` at once, the results in the order
/// of `resources`: the default [`Provider::read_many`], and what refresh and drift do when
/// `MATIH_READ_ONE_BY_ONE=1` (see [`read_one_by_one_forced`]).
pub async fn read_one_by_one<P: Provider + ?Sized>(
    provider: &P,
    tenant: &TenantRef,
    resources: &[ResourceObject],
    parallelism: usize,
) -> Vec<Result<Option<Observed>, ProviderError>> {
    use futures_util::StreamExt as _;
    let mut running = futures_util::stream::FuturesOrdered::new();
    let mut out = Vec::with_capacity(resources.len());
    let mut next = 0;
    loop {
        while running.len() < parallelism.max(1) && next < resources.len() {
            running.push_back(provider.read(tenant, &resources[next]));
            next += 1;
        }
        match running.next().await {
            Some(r) => out.push(r),
            None => return out,
        }
    }
}

/// Whether `MATIH_READ_ONE_BY_ONE=1` asks refresh and drift to read one object per request, as
/// matih did before [`Provider::read_many`] (the benchmark's "before"; the answers are the same).
pub fn read_one_by_one_forced() -> bool {
    std::env::var_os("MATIH_READ_ONE_BY_ONE").is_some_and(|v| v == "1")
}

/// One family of resource kinds (`kubernetes_*`, `postgresql_*`, `dns_*`).
pub trait Provider: Send + Sync {
    /// Whether this provider owns resources of `kind`.
    fn handles(&self, kind: &str) -> bool;

    /// Reads the real object; `Ok(None)` when it does not exist. Read-only.
    fn read<'a>(&'a self, tenant: &'a TenantRef, resource: &'a ResourceObject) -> ProviderFuture<'a, Option<Observed>>;

    /// Reads many objects of one tenant, with at most `parallelism` requests at once: one result
    /// per resource, in the order of `resources`, each exactly what [`Provider::read`] of that
    /// resource answers (so a refreshed plan is the same bytes either way), in fewer requests
    /// where the provider can (Kubernetes: one LIST per kind and namespace; PostgreSQL: one
    /// migrator session per tenant schema; PowerDNS: one GET per zone). The default reads one by
    /// one. Read-only.
    fn read_many<'a>(
        &'a self,
        tenant: &'a TenantRef,
        resources: &'a [ResourceObject],
        parallelism: usize,
    ) -> ReadMany<'a> {
        Box::pin(read_one_by_one(self, tenant, resources, parallelism))
    }

    /// Creates or updates the object to match `resource.attrs` (no unknown values remain) and
    /// returns what it now is, including outputs.
    fn apply<'a>(&'a self, tenant: &'a TenantRef, resource: &'a ResourceObject) -> ProviderFuture<'a, Observed>;

    /// Deletes the object and waits until it is gone. Deleting an absent object succeeds.
    fn delete<'a>(&'a self, tenant: &'a TenantRef, resource: &'a ResourceObject) -> ProviderFuture<'a, ()>;

    /// Whether [`Provider::preview`] has anything to say (the engine asks nothing of the others).
    fn previews(&self) -> bool {
        false
    }

    /// What applying `resource` would change in the objects it renders, object by object, when
    /// the provider can tell before applying (a Helm release's rendered manifests); read-only.
    /// Providers whose resources are the objects themselves have nothing to add.
    fn preview<'a>(
        &'a self,
        _tenant: &'a TenantRef,
        _resource: &'a ResourceObject,
    ) -> ProviderFuture<'a, Vec<RenderedChange>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}
