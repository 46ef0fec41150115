//! The providers the platform file configures, connected: the one place that knows which block
//! of `matih.hcl` builds which provider.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::apply::Providers;
use crate::catalog::Catalog;
use crate::plan::Plan;
use crate::provider::dns::DnsProvider;
use crate::provider::helm::{ChartSource, HelmProvider, HelmSettings, HelmTarget};
use crate::provider::kubernetes::{KubeSettings, KubeTarget, KubernetesProvider};
use crate::provider::postgres::{PostgresProvider, PostgresSettings};
use crate::spec::{Delivery, PlatformConfig};

/// Connects the providers the platform file configures: Kubernetes (`kubernetes` block), DNS
/// (`dns` block with a `provider`), PostgreSQL (when the admin URL variable is set). Returns them
/// with, per resource-kind prefix (`kubernetes_`), why that family could not be connected.
pub fn try_connect(
    platform: &PlatformConfig,
    catalog: &Catalog,
    rt: &tokio::runtime::Runtime,
) -> (Providers, BTreeMap<String, String>) {
    let mut providers = Providers::new();
    let mut unavailable = BTreeMap::new();
    if let Some(k) = &platform.kubernetes {
        let target = match &k.api_url {
            Some(url) => KubeTarget::Url(url.clone()),
            None => KubeTarget::Kubeconfig { context: k.context.clone() },
        };
        let settings = KubeSettings {
            lb_ip_attempts: k.load_balancer_ip_attempts,
            lb_ip_interval: Duration::from_millis(k.load_balancer_ip_interval_ms),
            deployment_timeout: Duration::from_millis(k.deployment_timeout_ms),
            certificate_timeout: Duration::from_millis(k.certificate_timeout_ms),
            delete_timeout: Duration::from_millis(k.deployment_timeout_ms),
            poll_interval: Duration::from_millis(k.poll_interval_ms),
        };
        match rt.block_on(KubernetesProvider::connect(&target, settings)) {
            Ok(p) => providers = providers.with(Arc::new(p)),
            Err(e) => {
                unavailable.insert("kubernetes_".to_string(), e);
            }
        }
        // Helm releases go to the same cluster; helm is needed only when services are delivered with it.
        if platform.delivery == Delivery::Helm {
            let settings = HelmSettings {
                binary: platform.helm.binary.clone(),
                charts: ChartSource::parse(&platform.helm.chart_repository),
                target: match &k.api_url {
                    Some(url) => HelmTarget::Url(url.clone()),
                    None => HelmTarget::Kubeconfig { context: k.context.clone() },
                },
                timeout: Duration::from_millis(platform.helm.timeout_ms),
                plain_http: platform.helm.plain_http,
                lb_ip_attempts: k.load_balancer_ip_attempts,
                lb_ip_interval: Duration::from_millis(k.load_balancer_ip_interval_ms),
            };
            match rt.block_on(HelmProvider::connect(settings)) {
                Ok(p) => providers = providers.with(Arc::new(p)),
                Err(e) => {
                    unavailable.insert("helm_".to_string(), e);
                }
            }
        }
    }
    if let Some(dns) = &platform.dns {
        match DnsProvider::from_platform(dns) {
            Ok(p) => providers = providers.with(Arc::new(p)),
            Err(e) => {
                unavailable.insert("dns_".to_string(), e.to_string());
            }
        }
    }
    if std::env::var_os(&platform.postgres_admin_url_env).is_some() {
        let connected = PostgresSettings::from_platform(platform, catalog)
            .and_then(|settings| rt.block_on(PostgresProvider::connect(&settings)));
        match connected {
            Ok(p) => providers = providers.with(Arc::new(p)),
            Err(e) => {
                unavailable.insert("postgresql_".to_string(), e);
            }
        }
    }
    (providers, unavailable)
}

/// [`try_connect`], failing on the first family that could not be connected: plan and
/// apply need every configured provider.
pub fn connect(platform: &PlatformConfig, catalog: &Catalog, rt: &tokio::runtime::Runtime) -> Result<Providers> {
    let (providers, unavailable) = try_connect(platform, catalog, rt);
    match unavailable.into_values().next() {
        Some(e) => bail!(e),
        None => Ok(providers),
    }
}

/// Fails, before anything is changed, when a plan needs resource kinds no provider handles.
pub fn require_providers(plan: &Plan, providers: &Providers, platform: &PlatformConfig) -> Result<()> {
    let mut missing = BTreeSet::new();
    for t in &plan.tenants {
        missing.extend(providers.missing(t));
    }
    if missing.is_empty() {
        return Ok(());
    }
    let families: BTreeSet<&str> = missing.iter().map(|k| k.split('_').next().unwrap_or(k.as_str())).collect();
    let mut hints = Vec::new();
    for f in families {
        hints.push(match f {
            "kubernetes" => "kubernetes_*: add a `kubernetes` block to the platform file (matih.hcl)".to_string(),
            "postgresql" => format!(
                "postgresql_*: set the environment variable {} to matih's PostgreSQL admin URL \
                 (postgres.admin_url_env in matih.hcl names another variable)",
                platform.postgres_admin_url_env
            ),
            "helm" => "helm_*: add a `kubernetes` block to the platform file (matih.hcl); helm installs the releases \
                       into that cluster"
                .to_string(),
            "dns" => {
                "dns_*: set `provider` (\"powerdns\" or \"azure\") in the `dns` block of the platform file".to_string()
            }
            other => format!("{other}_*: no {other} provider is configured in the platform file"),
        });
    }
    bail!(
        "the plan changes resources that no provider can reach, so nothing was changed:\n  {}\n(kinds: {})",
        hints.join("\n  "),
        missing.into_iter().collect::<Vec<_>>().join(", ")
    )
}
