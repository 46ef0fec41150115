//! The provider interface: how the engine reads, creates, updates and deletes real objects.
//!
//! **Invariant:** providers know nothing of graphs or plans. They are handed one resource at a
//! time (its address, kind, desired attributes with references already resolved) and report
//! attribute paths in their errors; the engine attaches source locations.
//!
//! Implementations (Kubernetes, PostgreSQL, DNS) live beside this file as their issues land.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use crate::addr::ResourceAddr;
use crate::value::Value;

/// The tenant a request is made for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantRef {
    pub slug: String,
    pub id: String,
}

/// A resource as the provider sees it: address and attributes, no graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceObject {
    pub addr: ResourceAddr,
    pub attrs: BTreeMap<String, Value>,
}

/// What a provider read or wrote: the attributes it manages and the outputs others may reference.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub attrs: BTreeMap<String, Value>,
    pub outputs: BTreeMap<String, Value>,
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

pub type ProviderFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ProviderError>> + Send + 'a>>;

/// One family of resource kinds (`kubernetes_*`, `postgresql_*`, `dns_*`).
pub trait Provider: Send + Sync {
    /// Whether this provider owns resources of `kind`.
    fn handles(&self, kind: &str) -> bool;

    /// Reads the real object; `Ok(None)` when it does not exist. Read-only.
    fn read<'a>(&'a self, tenant: &'a TenantRef, resource: &'a ResourceObject) -> ProviderFuture<'a, Option<Observed>>;

    /// Creates or updates the object to match `resource.attrs` (no unknown values remain) and
    /// returns what it now is, including outputs.
    fn apply<'a>(&'a self, tenant: &'a TenantRef, resource: &'a ResourceObject) -> ProviderFuture<'a, Observed>;

    /// Deletes the object and waits until it is gone. Deleting an absent object succeeds.
    fn delete<'a>(&'a self, tenant: &'a TenantRef, resource: &'a ResourceObject) -> ProviderFuture<'a, ()>;
}
