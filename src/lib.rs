//! matih: a declarative plan-and-apply engine for the per-tenant data plane of the MATIH platform.
//!
//! The pipeline is `spec` (HCL → [`spec::TenantSpec`] with source locations) → `graph` (spec + `catalog`
//! → [`graph::ResourceGraph`], one node per resource, tagged with its [`phase::Phase`]) → `plan`
//! (graph × [`state::TenantState`] → [`plan::Plan`]). The core (spec, catalog, graph, plan) does no I/O
//! beyond reading its inputs; only `state`, `provider` and the CLI touch the outside world.

pub mod addr;
pub mod apply;
pub mod catalog;
pub mod diag;
pub mod drift;
pub mod encoding;
pub mod events;
pub mod graph;
pub mod kind;
#[cfg(test)]
mod layers;
pub mod notify;
pub mod pgconn;
pub mod phase;
pub mod plan;
pub mod policy;
pub mod provider;
pub mod quantity;
pub mod serve;
pub mod spec;
pub mod state;
#[cfg(test)]
mod tidy;
pub mod transport;
pub mod value;
pub mod workflow;
