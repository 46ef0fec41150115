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

impl Catalog {
    /// A catalog with just these tier, region and service names and every other field at its
    /// default: for tests of code that only needs names (spec validation).
    pub fn minimal(tiers: &[&str], regions: &[&str], services: &[&str]) -> Catalog {
        let mut c = Catalog::default();
        for t in tiers {
            c.tiers.insert(t.to_string(), TierDef { name: t.to_string() });
        }
        c.regions = regions.iter().map(|r| r.to_string()).collect();
        c.services = services.iter().map(|s| ServiceDef { name: s.to_string() }).collect();
        c
    }
}
