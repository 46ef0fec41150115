//! The platform's ten provisioning phases, in the order they run.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One of the ten provisioning phases of the platform guide. The derived order is the order
/// in which phases run: every resource of phase N is applied before any resource of phase N+1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Phase {
    CreateNamespace,
    SetupDatabase,
    DeployCoreServices,
    ConfigureNetworking,
    DeployDataServices,
    DeployIngressController,
    CreateDnsZone,
    CreateTenantIngress,
    DeployMonitoring,
    SetupObservability,
}

impl Phase {
    /// All phases, in run order.
    pub const ALL: [Phase; 10] = [
        Phase::CreateNamespace,
        Phase::SetupDatabase,
        Phase::DeployCoreServices,
        Phase::ConfigureNetworking,
        Phase::DeployDataServices,
        Phase::DeployIngressController,
        Phase::CreateDnsZone,
        Phase::CreateTenantIngress,
        Phase::DeployMonitoring,
        Phase::SetupObservability,
    ];

    /// The phase number, 1 to 10.
    pub fn number(self) -> u8 {
        self as u8 + 1
    }

    /// The phase with number `n` (1 to 10).
    pub fn from_number(n: u8) -> Option<Phase> {
        Phase::ALL.get(usize::from(n).checked_sub(1)?).copied()
    }

    /// The guide's name of the phase, e.g. `CREATE_NAMESPACE`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::CreateNamespace => "CREATE_NAMESPACE",
            Phase::SetupDatabase => "SETUP_DATABASE",
            Phase::DeployCoreServices => "DEPLOY_CORE_SERVICES",
            Phase::ConfigureNetworking => "CONFIGURE_NETWORKING",
            Phase::DeployDataServices => "DEPLOY_DATA_SERVICES",
            Phase::DeployIngressController => "DEPLOY_INGRESS_CONTROLLER",
            Phase::CreateDnsZone => "CREATE_DNS_ZONE",
            Phase::CreateTenantIngress => "CREATE_TENANT_INGRESS",
            Phase::DeployMonitoring => "DEPLOY_MONITORING",
            Phase::SetupObservability => "SETUP_OBSERVABILITY",
        }
    }

    /// Parses either the guide's name (`CREATE_NAMESPACE`, case-insensitive) or the number (`1`).
    pub fn parse(s: &str) -> Option<Phase> {
        if let Ok(n) = s.parse::<u8>() {
            return Phase::from_number(n);
        }
        Phase::ALL.iter().copied().find(|p| p.name().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names_round_trip() {
        for (i, p) in Phase::ALL.iter().enumerate() {
            assert_eq!(usize::from(p.number()), i + 1);
            assert_eq!(Phase::from_number(p.number()), Some(*p));
            assert_eq!(Phase::parse(p.name()), Some(*p));
        }
        assert_eq!(Phase::from_number(0), None);
        assert_eq!(Phase::from_number(11), None);
        assert!(Phase::CreateNamespace < Phase::SetupObservability);
    }
}
