//! The resource kinds, in one table: for each kind with something to say, the provider family
//! that handles it, the outputs other resources may reference once it is applied, and what a
//! change to it risks (for the reviewer's markdown plan and for `protect_database`). The graph
//! compiler, the renderers and apply read this table instead of keeping lists of their own.
//!
//! A kind not in the table (`kubernetes_config_map`, `kubernetes_deployment`, …) belongs to the
//! family its prefix names, has no outputs and no risk of its own.
//!
//! **Invariant:** pure data; knows nothing of graphs, plans, state or providers.

/// Which provider handles a kind (by its prefix: `kubernetes_`, `postgresql_`, `dns_`, `helm_`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Kubernetes,
    Postgresql,
    Dns,
    Helm,
}

impl Family {
    /// The family of `kind`, from its prefix; `None` for a kind no provider family claims.
    pub fn of(kind: &str) -> Option<Family> {
        [Family::Kubernetes, Family::Postgresql, Family::Dns, Family::Helm]
            .into_iter()
            .find(|f| kind.starts_with(f.prefix()))
    }

    /// The prefix of the family's kinds (`postgresql_`).
    pub fn prefix(self) -> &'static str {
        match self {
            Family::Kubernetes => "kubernetes_",
            Family::Postgresql => "postgresql_",
            Family::Dns => "dns_",
            Family::Helm => "helm_",
        }
    }
}

/// What a change to a resource of a kind risks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RiskClass {
    /// Deleting or replacing it drops the tenant's data (`what`: "database", "schema").
    Data { what: &'static str },
    /// Changing it runs SQL over the tenant's data.
    Migrations,
    /// Network isolation, access control and quotas.
    Isolation,
    /// Its labels select it for network policies: a label change is an isolation change.
    IsolationLabels,
    /// DNS and TLS: how traffic reaches the tenant.
    DnsTls,
    /// Nothing beyond what its action says.
    Ordinary,
}

/// One row of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindInfo {
    pub name: &'static str,
    /// The outputs the kind produces once applied, which other resources may reference.
    pub outputs: &'static [&'static str],
    pub risk: RiskClass,
}

const fn row(name: &'static str, outputs: &'static [&'static str], risk: RiskClass) -> KindInfo {
    KindInfo { name, outputs, risk }
}

/// Every kind with outputs or a risk of its own.
pub const KINDS: &[KindInfo] = &[
    row("postgresql_database", &[], RiskClass::Data { what: "database" }),
    row("postgresql_schema", &[], RiskClass::Data { what: "schema" }),
    row("postgresql_migrations", &[], RiskClass::Migrations),
    row("postgresql_role", &[], RiskClass::Isolation),
    row("kubernetes_namespace", &[], RiskClass::IsolationLabels),
    row("kubernetes_network_policy", &[], RiskClass::Isolation),
    row("kubernetes_role", &[], RiskClass::Isolation),
    row("kubernetes_role_binding", &[], RiskClass::Isolation),
    row("kubernetes_cluster_role", &[], RiskClass::Isolation),
    row("kubernetes_cluster_role_binding", &[], RiskClass::Isolation),
    row("kubernetes_resource_quota", &[], RiskClass::Isolation),
    row("kubernetes_limit_range", &[], RiskClass::Isolation),
    row("kubernetes_certificate", &[], RiskClass::DnsTls),
    row("kubernetes_ingress", &[], RiskClass::DnsTls),
    row("kubernetes_service", &["cluster_ip", "load_balancer_ip"], RiskClass::Ordinary),
    row("dns_zone", &["nameservers"], RiskClass::DnsTls),
    // The ingress controller's release reads the external IP of the chart's LoadBalancer Service.
    row("helm_release", &["revision", "load_balancer_ip"], RiskClass::Ordinary),
];

/// What the table says of `kind`: its row, or for a kind not in it, no outputs and the risk of
/// its family (every DNS kind is a DNS change).
pub fn info(kind: &str) -> KindInfo {
    KINDS.iter().find(|k| k.name == kind).copied().unwrap_or(KindInfo {
        name: "",
        outputs: &[],
        risk: if Family::of(kind) == Some(Family::Dns) { RiskClass::DnsTls } else { RiskClass::Ordinary },
    })
}

/// The outputs `kind` produces once applied.
pub fn outputs_of(kind: &str) -> &'static [&'static str] {
    info(kind).outputs
}

/// Whether deleting or replacing a resource of `kind` loses the tenant's data.
pub fn holds_data(kind: &str) -> bool {
    matches!(info(kind).risk, RiskClass::Data { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_the_table_belongs_to_a_family_once() {
        for (i, k) in KINDS.iter().enumerate() {
            assert!(Family::of(k.name).is_some(), "{}", k.name);
            assert!(KINDS[..i].iter().all(|o| o.name != k.name), "{} twice", k.name);
        }
        assert_eq!(info("dns_a_record").risk, RiskClass::DnsTls);
        assert_eq!(info("kubernetes_deployment").risk, RiskClass::Ordinary);
        assert!(holds_data("postgresql_schema") && !holds_data("postgresql_role"));
    }
}
