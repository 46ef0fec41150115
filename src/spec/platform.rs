//! The platform file (`matih.hcl`): where things live, shared by every tenant.
//!
//! ```hcl
//! platform {
//!   provisioned_by          = "admin@matih.ai"        # the matih.ai/provisioned-by annotation
//!   control_plane_namespace = "matih-system"
//! }
//! dns {
//!   parent_zone = "matih.ai"                           # tenant zones are {slug}.{parent_zone}
//!   provider    = "powerdns"                           # or "azure"; without it, no DNS provider
//!   # powerdns:
//!   api_url     = "http://127.0.0.1:8081"
//!   api_key_env = "PDNS_API_KEY"                       # the NAME of the variable holding the key
//!   server_id   = "localhost"
//!   nameservers = ["ns1.matih.ai.", "ns2.matih.ai."]   # the NS set of new tenant zones
//!   # azure (credentials from the environment, workload identity or the Azure CLI):
//!   # subscription_id = "00000000-0000-0000-0000-000000000000"
//!   # resource_group  = "matih-dns"
//!   # endpoint        = "https://management.azure.com"
//!   ttl         = 300                                  # TTL of records that do not say one
//! }
//! postgres {
//!   host               = "pg.internal"                 # what the tenants' services connect to
//!   port               = 5432
//!   admin_url_env      = "MATIH_POSTGRES_ADMIN_URL"    # the NAME of the variable holding matih's admin URL
//!   connect_timeout_ms = 10000
//! }
//! images {
//!   registry = "matih.azurecr.io"
//!   tag      = "1.4.2"
//!   digests  = ["matih.azurecr.io/ai-service@sha256:<64 hex>"]  # images of these repositories by digest
//! }
//! certificates {
//!   cluster_issuer = "letsencrypt-prod-dns01"
//! }
//! state {
//!   backend = "sled"                                   # or "postgres" (shared by a team's runners)
//!   path    = "state/"                                 # sled: the directory (else --state)
//!   url_env = "MATIH_STATE_URL"                        # postgres: the NAME of the variable holding the URL
//! }
//! kubernetes {
//!   context                         = "aks-prod"     # or api_url = "http://127.0.0.1:6443"
//!   load_balancer_ip_attempts       = 60             # the guide's wait: 60 attempts, 10 s apart
//!   load_balancer_ip_interval_ms    = 10000
//!   deployment_timeout_ms           = 600000
//!   certificate_timeout_ms          = 600000
//!   poll_interval_ms                = 2000
//! }
//! network {                                        # the NetworkPolicies' addresses (egress of tenant pods)
//!   database_cidrs   = ["10.20.0.5/32"]              # PostgreSQL; default: postgres.host when an IP or a Service
//!   api_server_cidrs = ["10.0.0.1/32"]               # the API server's endpoints; default: api_url's host when an IP
//! }
//! services {
//!   delivery = "manifests"                           # or "helm": each service a Helm release of its chart
//! }
//! helm {
//!   binary           = "/usr/local/bin/helm"         # default: `helm` on the PATH
//!   chart_repository = "charts"                      # a directory of charts, an http(s) chart repository, or oci://…
//!   registry_transport = "https"                     # "http": an oci:// registry without TLS (helm --plain-http)
//!   timeout_ms       = 600000                        # helm upgrade --install --wait --atomic, per release
//! }
//! notifications {                                    # sent when a tenant's provisioning completes or fails
//!   smtp_host         = "smtp.matih.ai"              # e-mail to the tenant admin (and monitoring.notify_email)
//!   smtp_port         = 587
//!   smtp_tls          = "starttls"                   # none | starttls | tls
//!   smtp_from         = "matih@matih.ai"
//!   smtp_username_env = "MATIH_SMTP_USERNAME"        # NAMES of variables, never the credentials
//!   smtp_password_env = "MATIH_SMTP_PASSWORD"
//!   webhook_url_env   = "MATIH_NOTIFY_WEBHOOK_URL"   # a Slack-compatible incoming webhook
//! }
//! observability {                                   # the tenant collectors' export to Tempo (TLS by default)
//!   otlp_ca_file  = "tempo-ca.pem"                   # PEM CA of Tempo's gateway (relative to this file); else system roots
//!   # otlp_insecure = true                           # no TLS on that hop (warned about); not with otlp_ca_file
//! }
//! events {
//!   kafka_brokers = ["kafka-0.matih-system:9092"]    # tenant.provisioned / tenant.provisioning_failed
//!   topic         = "tenant-events"
//! }
//! ```
//!
//! Every block and attribute is optional; what is not written keeps [`PlatformConfig::default`].
//! The file is described by one table, [`SECTIONS`]: adding a block or an attribute is adding a
//! row, and the generic schema walker does the unknown-key, duplicate, type and literal checks.
//!
//! **Invariant:** this module turns the platform file into a [`PlatformConfig`]; it knows nothing
//! of tenants, graphs, state, providers or the environment (it never reads secrets).

use std::fs;
use std::path::Path;

use super::parse::syntax_error;
use super::schema::{self, AttrDef, BlockDef, Ctx, Fields, Forbidden, Kind, Schema};
use super::validate;
use super::{DnsPlatform, DnsProviderKind, PlatformConfig, Spanned};
use crate::diag::{self, Diagnostic, Location, SourceFile};

/// How one attribute's checked value lands in the [`PlatformConfig`]. The variant fixes the
/// attribute's type; the function validates the value's meaning and stores it, or returns the
/// message to report at the value.
#[derive(Clone, Copy)]
enum Setter {
    String(fn(&mut PlatformConfig, &str) -> Result<(), String>),
    Port(fn(&mut PlatformConfig, u16)),
    Bool(fn(&mut PlatformConfig, bool)),
    /// A whole number in `min..=max`.
    Int {
        min: i64,
        max: i64,
        set: fn(&mut PlatformConfig, i64),
    },
    /// A list of strings; an error names the element it is about.
    StringList(SetList),
}

impl Setter {
    fn kind(self) -> Kind {
        match self {
            Setter::String(_) => Kind::String,
            Setter::Port(_) => Kind::Int { min: 1, max: u16::MAX as i64 },
            Setter::Bool(_) => Kind::Bool,
            Setter::Int { min, max, .. } => Kind::Int { min, max },
            Setter::StringList(_) => Kind::StringList,
        }
    }

    /// Stores the attribute `name` of `values`, when it was written and well-typed (the walker has
    /// reported it otherwise). Returns the message to report at the value when its meaning is wrong.
    fn apply(
        self,
        name: &str,
        values: &Fields<'_>,
        config: &mut PlatformConfig,
    ) -> Option<(Result<(), String>, Location)> {
        match self {
            Setter::String(set) => values.string(name).map(|v| (set(config, &v.value), v.location)),
            Setter::Port(set) => values.int(name).map(|v| {
                // The walker checked the range 1..=65535, so the conversion cannot fail; the
                // message is for the table's sake should the two ever disagree.
                let port = u16::try_from(v.value).map_err(|_| format!("{name} must be between 1 and 65535"));
                (port.map(|p| set(config, p)), v.location)
            }),
            Setter::Bool(set) => values.bool(name).map(|v| {
                set(config, v.value);
                (Ok(()), v.location)
            }),
            Setter::Int { set, .. } => values.int(name).map(|v| {
                set(config, v.value);
                (Ok(()), v.location)
            }),
            Setter::StringList(set) => {
                let items = values.string_list(name)?;
                set(config, &items).err().map(|e| (Err(e.value), e.location))
            }
        }
    }
}

/// A list of CIDR blocks, each checked (the element in error is the one reported).
fn cidrs(attr: &str, items: &[Spanned<String>]) -> Result<Vec<String>, Spanned<String>> {
    items
        .iter()
        .map(|i| {
            validate::cidr(attr, &i.value)
                .map(|()| i.value.clone())
                .map_err(|e| Spanned { value: e, location: i.location.clone() })
        })
        .collect()
}

/// Stores a list attribute, or returns the message to report at the element it is about.
type SetList = fn(&mut PlatformConfig, &[Spanned<String>]) -> Result<(), Spanned<String>>;

struct Field {
    name: &'static str,
    set: Setter,
}

/// One block of the platform file.
struct Section {
    name: &'static str,
    fields: &'static [Field],
    /// Attributes that would hold a secret, with the message saying where it comes from instead.
    forbidden: &'static [Forbidden],
}

/// The platform file's schema. Later blocks (kubernetes, state backend, DNS provider) are rows here.
const SECTIONS: &[Section] = &[
    Section {
        name: "platform",
        fields: &[
            Field {
                name: "provisioned_by",
                set: Setter::String(|c, s| {
                    validate::email("provisioned_by", s)?;
                    c.provisioned_by = s.to_string();
                    Ok(())
                }),
            },
            Field {
                name: "control_plane_namespace",
                set: Setter::String(|c, s| {
                    validate::namespace("control_plane_namespace", s)?;
                    c.control_plane_namespace = s.to_string();
                    Ok(())
                }),
            },
        ],
        forbidden: &[],
    },
    Section {
        name: "dns",
        fields: &[
            Field {
                name: "parent_zone",
                set: Setter::String(|c, s| {
                    c.parent_zone = validate::dns_name("parent_zone", s)?;
                    Ok(())
                }),
            },
            Field {
                name: "provider",
                set: Setter::String(|c, s| {
                    dns(c).provider = match s {
                        "powerdns" => DnsProviderKind::PowerDns,
                        "azure" => DnsProviderKind::Azure,
                        _ => {
                            return Err(format!(
                                "unknown DNS provider {s:?} (expected {})",
                                DnsProviderKind::NAMES.join(", ")
                            ))
                        }
                    };
                    Ok(())
                }),
            },
            Field {
                name: "api_url",
                set: Setter::String(|c, s| {
                    // PowerDNS's API key goes in every request.
                    crate::transport::check_credential_url("api_url", s)?;
                    dns(c).api_url = Some(http_url("api_url", s)?);
                    Ok(())
                }),
            },
            Field {
                name: "api_key_env",
                set: Setter::String(|c, s| {
                    validate::env_var_name("api_key_env", s)?;
                    dns(c).api_key_env = Some(s.to_string());
                    Ok(())
                }),
            },
            Field {
                name: "server_id",
                set: Setter::String(|c, s| {
                    if s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                        return Err(format!("server_id {s:?} is not a PowerDNS server id (like localhost)"));
                    }
                    dns(c).server_id = s.to_string();
                    Ok(())
                }),
            },
            Field {
                name: "nameservers",
                set: Setter::StringList(|c, items| {
                    let mut out = Vec::new();
                    for item in items {
                        let name = item.value.strip_suffix('.').unwrap_or(&item.value);
                        let name = validate::dns_name("nameserver", name).map_err(|_| {
                            let m = format!("nameserver {:?} is not a DNS name (like ns1.matih.ai.)", item.value);
                            Spanned::new(m, item.location.clone())
                        })?;
                        out.push(format!("{name}."));
                    }
                    dns(c).nameservers = out;
                    Ok(())
                }),
            },
            Field {
                name: "subscription_id",
                set: Setter::String(|c, s| {
                    dns(c).subscription_id =
                        Some(validate::uuid(s).map_err(|m| m.replacen("id ", "subscription_id ", 1))?);
                    Ok(())
                }),
            },
            Field {
                name: "resource_group",
                set: Setter::String(|c, s| {
                    let ok = (1..=90).contains(&s.len())
                        && s.chars().all(|c| c.is_alphanumeric() || "-_.()".contains(c))
                        && !s.ends_with('.');
                    if !ok {
                        return Err(format!(
                            "resource_group {s:?} is not an Azure resource group name (1 to 90 letters, digits, \
                             '-', '_', '.', '(', ')', not ending with '.')"
                        ));
                    }
                    dns(c).resource_group = Some(s.to_string());
                    Ok(())
                }),
            },
            Field {
                name: "endpoint",
                set: Setter::String(|c, s| {
                    // Azure's bearer token goes in every request.
                    crate::transport::check_credential_url("endpoint", s)?;
                    dns(c).endpoint = Some(http_url("endpoint", s)?);
                    Ok(())
                }),
            },
            Field { name: "ttl", set: Setter::Int { min: 1, max: 2_147_483_647, set: |c, n| dns(c).ttl = Some(n) } },
        ],
        forbidden: &[
            Forbidden {
                name: "api_key",
                message: "secrets come from the environment, never from the platform file: set api_key_env to \
                          the NAME of the variable that holds the PowerDNS API key",
            },
            Forbidden {
                name: "client_secret",
                message: "Azure credentials come from the environment (AZURE_CLIENT_ID, AZURE_TENANT_ID, \
                          AZURE_CLIENT_SECRET), workload identity or the Azure CLI, never from the platform file",
            },
            Forbidden { name: "password", message: "secrets come from the environment, never from the platform file" },
            Forbidden { name: "token", message: "secrets come from the environment, never from the platform file" },
        ],
    },
    Section {
        name: "postgres",
        fields: &[
            Field {
                name: "host",
                set: Setter::String(|c, s| {
                    validate::host("host", s)?;
                    c.postgres_host = s.to_string();
                    Ok(())
                }),
            },
            Field { name: "port", set: Setter::Port(|c, p| c.postgres_port = p) },
            Field {
                name: "admin_url_env",
                set: Setter::String(|c, s| {
                    validate::env_var_name("admin_url_env", s)?;
                    c.postgres_admin_url_env = s.to_string();
                    Ok(())
                }),
            },
            Field {
                name: "connect_timeout_ms",
                set: Setter::Int { min: 1, max: 600_000, set: |c, n| c.postgres_connect_timeout_ms = n as u64 },
            },
        ],
        forbidden: &[
            Forbidden {
                name: "password",
                message: "secrets come from the environment, never from the platform file: \
                          remove the PostgreSQL password from matih.hcl",
            },
            Forbidden {
                name: "admin_url",
                message: "the admin connection string holds a password: put it in an environment variable and \
                          name that variable with admin_url_env = \"MATIH_POSTGRES_ADMIN_URL\"",
            },
        ],
    },
    Section {
        name: "images",
        fields: &[
            Field {
                name: "registry",
                set: Setter::String(|c, s| {
                    validate::registry("registry", s)?;
                    c.image_registry = s.to_string();
                    Ok(())
                }),
            },
            Field {
                name: "tag",
                set: Setter::String(|c, s| {
                    validate::image_tag("tag", s)?;
                    c.image_tag = s.to_string();
                    Ok(())
                }),
            },
            Field {
                name: "digests",
                set: Setter::StringList(|c, items| {
                    for i in items {
                        let at = |value: String| Spanned { value, location: i.location.clone() };
                        let (repository, digest) = validate::pinned_image("digests", &i.value).map_err(at)?;
                        if c.image_digests.insert(repository.to_string(), digest.to_string()).is_some() {
                            return Err(at(format!("digests pins {repository:?} twice")));
                        }
                    }
                    Ok(())
                }),
            },
        ],
        forbidden: &[],
    },
    Section {
        name: "network",
        fields: &[
            Field {
                name: "database_cidrs",
                set: Setter::StringList(|c, items| {
                    c.database_cidrs = cidrs("database_cidrs", items)?;
                    Ok(())
                }),
            },
            Field {
                name: "api_server_cidrs",
                set: Setter::StringList(|c, items| {
                    c.api_server_cidrs = cidrs("api_server_cidrs", items)?;
                    Ok(())
                }),
            },
        ],
        forbidden: &[],
    },
    Section {
        name: "certificates",
        fields: &[Field {
            name: "cluster_issuer",
            set: Setter::String(|c, s| {
                validate::dns_subdomain("cluster_issuer", s)?;
                c.cluster_issuer = s.to_string();
                Ok(())
            }),
        }],
        forbidden: &[],
    },
    Section {
        name: "kubernetes",
        fields: &[
            Field {
                name: "context",
                set: Setter::String(|c, s| {
                    validate::text("context", s)?;
                    kube(c).context = Some(s.to_string());
                    Ok(())
                }),
            },
            Field {
                name: "api_url",
                set: Setter::String(|c, s| {
                    if !(s.starts_with("http://") || s.starts_with("https://")) || s.contains(char::is_whitespace) {
                        return Err(format!("api_url must be an http:// or https:// URL, found {s:?}"));
                    }
                    // The kubeconfig's or the environment's credentials go in every request.
                    crate::transport::check_credential_url("api_url", s)?;
                    kube(c).api_url = Some(s.to_string());
                    Ok(())
                }),
            },
            Field {
                name: "load_balancer_ip_attempts",
                set: Setter::Int { min: 1, max: 10_000, set: |c, n| kube(c).load_balancer_ip_attempts = n as u32 },
            },
            Field {
                name: "load_balancer_ip_interval_ms",
                set: Setter::Int {
                    min: 1,
                    max: 3_600_000,
                    set: |c, n| kube(c).load_balancer_ip_interval_ms = n as u64,
                },
            },
            Field {
                name: "deployment_timeout_ms",
                set: Setter::Int { min: 1, max: 86_400_000, set: |c, n| kube(c).deployment_timeout_ms = n as u64 },
            },
            Field {
                name: "certificate_timeout_ms",
                set: Setter::Int { min: 1, max: 86_400_000, set: |c, n| kube(c).certificate_timeout_ms = n as u64 },
            },
            Field {
                name: "poll_interval_ms",
                set: Setter::Int { min: 1, max: 3_600_000, set: |c, n| kube(c).poll_interval_ms = n as u64 },
            },
        ],
        forbidden: &[Forbidden {
            name: "token",
            message: "credentials come from the kubeconfig or the environment, never from the platform file",
        }],
    },
    Section {
        name: "notifications",
        fields: &[
            Field {
                name: "smtp_host",
                set: Setter::String(|c, s| {
                    validate::dns_subdomain("smtp_host", s).or_else(|_| ip_literal("smtp_host", s))?;
                    smtp(c).host = s.to_string();
                    Ok(())
                }),
            },
            Field { name: "smtp_port", set: Setter::Port(|c, p| smtp(c).port = p) },
            Field {
                name: "smtp_tls",
                set: Setter::String(|c, s| {
                    if !["none", "starttls", "tls"].contains(&s) {
                        return Err(format!("smtp_tls must be \"none\", \"starttls\" or \"tls\", found {s:?}"));
                    }
                    smtp(c).tls = s.to_string();
                    Ok(())
                }),
            },
            Field {
                name: "smtp_from",
                set: Setter::String(|c, s| {
                    validate::email("smtp_from", s)?;
                    smtp(c).from = s.to_string();
                    Ok(())
                }),
            },
            Field {
                name: "smtp_username_env",
                set: Setter::String(|c, s| {
                    env_name("smtp_username_env", s)?;
                    smtp(c).username_env = Some(s.to_string());
                    Ok(())
                }),
            },
            Field {
                name: "smtp_password_env",
                set: Setter::String(|c, s| {
                    env_name("smtp_password_env", s)?;
                    smtp(c).password_env = Some(s.to_string());
                    Ok(())
                }),
            },
            Field {
                name: "webhook_url_env",
                set: Setter::String(|c, s| {
                    env_name("webhook_url_env", s)?;
                    c.notify.webhook_url_env = Some(s.to_string());
                    Ok(())
                }),
            },
        ],
        forbidden: &[
            Forbidden {
                name: "smtp_password",
                message: "secrets come from the environment: name the variable with smtp_password_env",
            },
            Forbidden {
                name: "webhook_url",
                message: "a webhook URL is a secret: name the variable that holds it with webhook_url_env",
            },
        ],
    },
    Section {
        name: "events",
        fields: &[
            Field {
                name: "kafka_brokers",
                set: Setter::StringList(|c, items| {
                    for b in items {
                        let ok = b.value.rsplit_once(':').is_some_and(|(h, p)| {
                            !h.is_empty() && !h.contains(char::is_whitespace) && p.parse::<u16>().is_ok_and(|p| p > 0)
                        });
                        if !ok {
                            return Err(Spanned {
                                value: format!("a Kafka broker is host:port, found {:?}", b.value),
                                location: b.location.clone(),
                            });
                        }
                    }
                    kafka(c).brokers = items.iter().map(|b| b.value.clone()).collect();
                    Ok(())
                }),
            },
            Field {
                name: "topic",
                set: Setter::String(|c, s| {
                    let ok = !s.is_empty()
                        && s.len() <= 249
                        && s.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-'));
                    if !ok {
                        return Err(format!(
                            "topic must be 1-249 characters of [a-zA-Z0-9._-] (a Kafka topic name), found {s:?}"
                        ));
                    }
                    kafka(c).topic = s.to_string();
                    Ok(())
                }),
            },
        ],
        forbidden: &[],
    },
    STATE_SECTION,
    Section {
        name: "observability",
        fields: &[
            // Read (relative to the platform file) by `check_observability`, which knows the file's path.
            Field { name: "otlp_ca_file", set: Setter::String(|_, s| validate::text("otlp_ca_file", s)) },
            Field { name: "otlp_insecure", set: Setter::Bool(|c, b| c.observability.otlp_insecure = b) },
        ],
        forbidden: &[],
    },
    Section {
        name: "services",
        fields: &[Field {
            name: "delivery",
            set: Setter::String(|c, s| {
                c.delivery = match s {
                    "manifests" => super::Delivery::Manifests,
                    "helm" => super::Delivery::Helm,
                    _ => {
                        return Err(format!(
                            "delivery must be one of {}, found {s:?}",
                            super::Delivery::NAMES.join(", ")
                        ))
                    }
                };
                Ok(())
            }),
        }],
        forbidden: &[],
    },
    Section {
        name: "helm",
        fields: &[
            Field {
                name: "binary",
                set: Setter::String(|c, s| {
                    validate::text("binary", s)?;
                    c.helm.binary = Some(s.to_string());
                    Ok(())
                }),
            },
            Field {
                name: "chart_repository",
                set: Setter::String(|c, s| {
                    validate::text("chart_repository", s)?;
                    let scheme = ["http://", "https://", "oci://"];
                    if s.contains("://") && !scheme.iter().any(|p| s.starts_with(p)) {
                        return Err(format!(
                            "chart_repository must be a directory, an http:// or https:// chart repository or an \
                             oci:// registry, found {s:?}"
                        ));
                    }
                    c.helm.chart_repository = s.trim_end_matches('/').to_string();
                    Ok(())
                }),
            },
            Field {
                name: "timeout_ms",
                set: Setter::Int { min: 1000, max: 86_400_000, set: |c, n| c.helm.timeout_ms = n as u64 },
            },
            Field {
                name: "registry_transport",
                set: Setter::String(|c, s| {
                    c.helm.plain_http = match s {
                        "https" => false,
                        "http" => true,
                        _ => return Err(format!("registry_transport must be one of https, http, found {s:?}")),
                    };
                    Ok(())
                }),
            },
        ],
        forbidden: &[],
    },
];

/// The SMTP settings of the `notifications` block, created with their defaults when first written.
fn smtp(c: &mut PlatformConfig) -> &mut super::SmtpPlatform {
    c.notify.smtp.get_or_insert_with(Default::default)
}

/// The Kafka settings of the `events` block, created with their defaults when first written.
fn kafka(c: &mut PlatformConfig) -> &mut super::KafkaPlatform {
    c.notify.kafka.get_or_insert_with(Default::default)
}

/// The name of an environment variable: `[A-Za-z_][A-Za-z0-9_]*`.
fn env_name(attr: &str, s: &str) -> Result<(), String> {
    let mut chars = s.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!("{attr} must be the NAME of an environment variable ([A-Za-z_][A-Za-z0-9_]*), found {s:?}"))
    }
}

/// An IP address literal (for hosts that are not DNS names, e.g. 127.0.0.1).
fn ip_literal(attr: &str, s: &str) -> Result<(), String> {
    s.parse::<std::net::IpAddr>()
        .map(|_| ())
        .map_err(|_| format!("{attr} must be a host name or an IP address, found {s:?}"))
}

/// The `state` block: which backend, where.
const STATE_SECTION: Section = Section {
    name: "state",
    fields: &[
        Field {
            name: "backend",
            set: Setter::String(|c, s| {
                c.state.backend = super::StateBackend::parse(s).ok_or_else(|| {
                    format!("backend must be one of {}, found {s:?}", super::StateBackend::NAMES.join(", "))
                })?;
                Ok(())
            }),
        },
        Field {
            name: "path",
            set: Setter::String(|c, s| {
                if s.trim().is_empty() {
                    return Err("path must name a directory".into());
                }
                c.state.path = Some(s.to_string());
                Ok(())
            }),
        },
        Field {
            name: "url_env",
            set: Setter::String(|c, s| {
                validate::env_var_name("url_env", s)?;
                c.state.url_env = s.to_string();
                Ok(())
            }),
        },
    ],
    forbidden: &[
        Forbidden {
            name: "url",
            message: "the state connection string comes from the environment (the variable url_env names), \
                      never from the platform file",
        },
        Forbidden {
            name: "password",
            message: "secrets come from the environment, never from the platform file: \
                      put the state connection string in the variable url_env names",
        },
    ],
};

/// The `kubernetes` settings, created with their defaults the first time the block is seen.
fn kube(c: &mut PlatformConfig) -> &mut super::KubernetesPlatform {
    c.kubernetes.get_or_insert_with(Default::default)
}

/// The `dns` provider settings, created with their defaults the first time one is written.
fn dns(c: &mut PlatformConfig) -> &mut DnsPlatform {
    c.dns.get_or_insert_with(Default::default)
}

/// An `http://` or `https://` URL without whitespace, stored without a trailing `/`.
fn http_url(attr: &str, s: &str) -> Result<String, String> {
    if !(s.starts_with("http://") || s.starts_with("https://")) || s.contains(char::is_whitespace) {
        return Err(format!("{attr} must be an http:// or https:// URL, found {s:?}"));
    }
    Ok(s.trim_end_matches('/').to_string())
}

/// The attributes of the `dns` block that belong to one provider only.
const POWERDNS_ONLY: &[&str] = &["api_url", "api_key_env", "server_id", "nameservers"];
const AZURE_ONLY: &[&str] = &["subscription_id", "resource_group", "endpoint"];

/// Checks across the `dns` block's attributes: a provider's required settings are present, and no
/// setting of the other provider (or of none) was written.
fn check_dns(ctx: &mut Ctx<'_>, block: &hcl_edit::structure::Block, values: &Fields<'_>, config: &mut PlatformConfig) {
    let at = |name: &str| -> Option<Location> {
        values
            .string(name)
            .map(|v| v.location)
            .or_else(|| values.int(name).map(|v| v.location))
            .or_else(|| values.string_list(name).and_then(|l| l.first().map(|v| v.location.clone())))
    };
    let block_loc = ctx.loc(schema::block_start(block));
    let Some(provider) = values.string("provider") else {
        let written: Vec<&str> =
            POWERDNS_ONLY.iter().chain(AZURE_ONLY).chain(&["ttl"]).copied().filter(|n| at(n).is_some()).collect();
        if let Some(first) = written.first() {
            ctx.push(
                Diagnostic::error(format!(
                    "{} set without a DNS provider: add provider = \"powerdns\" or \"azure\" to the dns block",
                    written.join(", ")
                ))
                .at(at(first).unwrap_or(block_loc)),
            );
        }
        config.dns = None;
        return;
    };
    let Some(dns) = config.dns.clone() else { return };
    if !DnsProviderKind::NAMES.contains(&provider.value.as_str()) {
        return;
    }
    let (required, foreign): (&[&str], &[&str]) = match dns.provider {
        DnsProviderKind::PowerDns => (&["api_url", "api_key_env", "nameservers"], AZURE_ONLY),
        DnsProviderKind::Azure => (&["subscription_id", "resource_group"], POWERDNS_ONLY),
    };
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|n| match *n {
            "nameservers" => dns.nameservers.is_empty(),
            _ => at(n).is_none(),
        })
        .collect();
    if !missing.is_empty() {
        ctx.push(
            Diagnostic::error(format!(
                "DNS provider {:?} needs {} in the dns block",
                provider.value,
                missing.join(", ")
            ))
            .at(block_loc),
        );
    }
    for name in foreign {
        if let Some(loc) = at(name) {
            ctx.push(
                Diagnostic::error(format!("{name} is a setting of another DNS provider, not of {:?}", provider.value))
                    .at(loc),
            );
        }
    }
}

/// SMTP credentials never travel in clear text: `smtp_tls = "none"` with a user name is allowed
/// only to a server on this machine.
fn check_smtp(ctx: &mut Ctx<'_>, values: &Fields<'_>, config: &PlatformConfig) {
    let Some(smtp) = &config.notify.smtp else { return };
    if smtp.tls == "none" && smtp.username_env.is_some() && !crate::transport::is_loopback_host(&smtp.host) {
        if let Some(tls) = values.string("smtp_tls") {
            ctx.push(
                Diagnostic::error(format!(
                    "smtp_tls = \"none\" would send the SMTP credentials to {} in clear text: use \"starttls\" or \
                     \"tls\" (no TLS is allowed only to a server on this machine)",
                    smtp.host
                ))
                .at(tls.location),
            );
        }
    }
}

/// The collectors' export to Tempo carries each tenant's credentials: `otlp_insecure = true` (no
/// TLS) is warned about each time the file is read and cannot be combined with a CA; the CA file
/// `otlp_ca_file` (relative to the platform file) must be readable PEM certificates.
fn check_observability(ctx: &mut Ctx<'_>, values: &Fields<'_>, config: &mut PlatformConfig) {
    let insecure = values.bool("otlp_insecure").filter(|b| b.value);
    let ca_file = values.string("otlp_ca_file").filter(|f| validate::text("otlp_ca_file", &f.value).is_ok());
    match (insecure, ca_file) {
        (Some(insecure), Some(_)) => ctx.push(
            Diagnostic::error(
                "otlp_insecure = true turns TLS off, so the CA of otlp_ca_file would not be used: remove one of them",
            )
            .at(insecure.location),
        ),
        (Some(insecure), None) => ctx.push(
            Diagnostic::warning(
                "otlp_insecure = true: each tenant's OpenTelemetry collector sends its credentials to Tempo in \
                 clear text; serve TLS on the catalog's tempo_otlp_endpoint and name its CA with otlp_ca_file",
            )
            .at(insecure.location),
        ),
        (None, Some(file)) => match read_ca(&ctx.src.path, &file.value) {
            Ok(pem) => config.observability.otlp_ca = Some(pem),
            Err(message) => ctx.push(Diagnostic::error(message).at(file.location)),
        },
        (None, None) => {}
    }
}

/// The PEM certificates of `otlp_ca_file` = `file`, a path relative to the platform file's
/// directory unless absolute.
fn read_ca(platform_file: &Path, file: &str) -> Result<String, String> {
    let path = match platform_file.parent() {
        Some(dir) if Path::new(file).is_relative() => dir.join(file),
        _ => Path::new(file).to_path_buf(),
    };
    let shown = path.display();
    let bytes = fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!("otlp_ca_file {shown} does not exist"),
        _ => format!("cannot read otlp_ca_file {shown}: {e}"),
    })?;
    let pem = String::from_utf8(bytes).ok().filter(|t| t.contains("-----BEGIN CERTIFICATE-----")).ok_or_else(|| {
        format!("otlp_ca_file {shown} is not a PEM file of certificates (no -----BEGIN CERTIFICATE-----)")
    })?;
    // The certificates go into a ConfigMap of every tenant namespace, readable by the tenant.
    if pem.contains("PRIVATE KEY-----") {
        return Err(format!(
            "otlp_ca_file {shown} holds a private key, which would be copied into every tenant's namespace: give \
             the CA's certificates only"
        ));
    }
    Ok(pem)
}

impl Section {
    fn schema(&self) -> Schema {
        let attrs = self.fields.iter().map(|f| AttrDef::optional(f.name, f.set.kind())).collect();
        Schema::new(attrs, Vec::new()).forbid(self.forbidden.to_vec())
    }
}

/// Parses the platform file. Missing fields keep PlatformConfig::default().
pub fn parse_platform(src: &SourceFile) -> (PlatformConfig, Vec<Diagnostic>) {
    let mut config = PlatformConfig { source: Some(src.location(0)), ..PlatformConfig::default() };
    let body = match hcl_edit::parser::parse_body(&src.text) {
        Ok(body) => body,
        Err(e) => return (config, vec![syntax_error(src, &e)]),
    };
    let mut ctx = Ctx::new(src);
    let top = Schema::new(Vec::new(), SECTIONS.iter().map(|s| BlockDef::plain(s.name)).collect());
    let fields = schema::walk(&mut ctx, &body, None, &top);
    for block in &fields.blocks {
        let Some(section) = SECTIONS.iter().find(|s| s.name == block.ident.as_str()) else {
            continue;
        };
        let values = schema::walk(&mut ctx, &block.body, Some(block), &section.schema());
        if section.name == "kubernetes" {
            kube(&mut config);
        }
        for field in section.fields {
            if let Some((Err(message), location)) = field.set.apply(field.name, &values, &mut config) {
                ctx.push(Diagnostic::error(message).at(location));
            }
        }
        if section.name == "dns" {
            check_dns(&mut ctx, block, &values, &mut config);
        }
        if section.name == "notifications" {
            check_smtp(&mut ctx, &values, &config);
        }
        if section.name == "observability" {
            check_observability(&mut ctx, &values, &mut config);
        }
    }
    let mut diags = ctx.diags;
    diag::sort(&mut diags);
    (config, diags)
}

/// Reads and parses the platform file at `path`; an unreadable file is a diagnostic and leaves
/// the defaults.
pub fn load_platform(path: &Path) -> (PlatformConfig, Vec<Diagnostic>) {
    match fs::read_to_string(path) {
        Ok(text) => parse_platform(&SourceFile::new(path, text)),
        Err(e) => (PlatformConfig::default(), vec![Diagnostic::error(format!("cannot read {}: {e}", path.display()))]),
    }
}
