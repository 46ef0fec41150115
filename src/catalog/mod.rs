//! The catalog: tiers, regions, services, alert rules, network policies, DNS records and
//! migrations, loaded from `schemas/` (embedded in the binary; `--schemas DIR` reads another copy).
//!
//! **Invariant:** pure data. Knows nothing of specs, graphs, state or providers.

use std::collections::BTreeMap;

/// A tier of service: quotas and database isolation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierDef {
    pub name: String,
}

/// One MATIH service of the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceDef {
    /// Catalog name, `snake_case` (`ai_service`); the Kubernetes name is derived from it.
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalog {
    pub tiers: BTreeMap<String, TierDef>,
    pub regions: Vec<String>,
    /// In the catalog's order (phase, then the seed's dependency order).
    pub services: Vec<ServiceDef>,
}

impl Catalog {
    pub fn tier(&self, name: &str) -> Option<&TierDef> {
        self.tiers.get(name)
    }

    pub fn service(&self, name: &str) -> Option<&ServiceDef> {
        self.services.iter().find(|s| s.name == name)
    }
}
