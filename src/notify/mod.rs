//! What happens when a tenant's provisioning ends (the platform guide, "Provisioning Completion", steps 4 and 5):
//! an e-mail to the tenant admin, a Slack-compatible webhook message, and the `tenant.provisioned`
//! (or `tenant.provisioning_failed`) event on Kafka.
//!
//! Every message goes through the [`outbox::Outbox`] first: a file under `<state>/outbox/` written
//! atomically before any delivery is tried, removed only once the SMTP server, the webhook or the
//! broker acknowledged it. The applying process tries once right away ([`NotifyHooks`], one of the run's
//! hooks, through [`Completion::send`]);
//! what fails stays in the outbox and is retried with capped exponential backoff by `matih serve`
//! (every few seconds) and by the next `matih apply`. Delivery never fails the provisioning: an error
//! is logged and retried. An outbox file lock makes one process at a time deliver, so an entry is
//! never sent twice by two processes; see [`outbox`] for the one crash window that remains.
//!
//! Secrets stay out of the outbox: the webhook URL and SMTP credentials are read from the
//! environment when a delivery is attempted; entries hold only the names of those variables.

pub mod deliver;
mod hook;
pub mod outbox;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::plan::TenantPlan;
use crate::spec::NotifyPlatform;
use crate::value::Value;

pub use deliver::Deliverer;
pub use hook::NotifyHooks;
pub use outbox::{Outbox, OutboxEntry};

/// What notifications and events say about a tenant, taken from its plan: id, slug and tier from
/// the plan itself; region from the namespace's `matih.ai/region` label; recipients from the
/// Alertmanager e-mail receiver (the tenant admin first, then `monitoring.notify_email`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantInfo {
    pub slug: String,
    pub tenant_id: String,
    pub tier: String,
    pub region: String,
    pub emails: Vec<String>,
}

fn find_key<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    match v {
        Value::Map(m) => m.get(key).or_else(|| m.values().find_map(|x| find_key(x, key))),
        Value::List(items) => items.iter().find_map(|x| find_key(x, key)),
        _ => None,
    }
}

impl TenantInfo {
    pub fn from_plan(p: &TenantPlan) -> TenantInfo {
        let mut info = TenantInfo {
            slug: p.slug.clone(),
            tenant_id: p.tenant_id.clone(),
            tier: p.tier.clone(),
            ..Default::default()
        };
        for c in &p.resource_changes {
            let Some(attrs) = c.after.as_ref().or(c.before.as_ref()) else { continue };
            let attrs = Value::Map(attrs.clone());
            if info.region.is_empty() {
                if let Some(r) = find_key(&attrs, "matih.ai/region").and_then(Value::as_str) {
                    info.region = r.to_string();
                }
            }
            if info.emails.is_empty() {
                if let Some(Value::List(cfgs)) = find_key(&attrs, "emailConfigs") {
                    info.emails =
                        cfgs.iter().filter_map(|c| c.as_map()?.get("to")?.as_str().map(str::to_string)).collect();
                }
            }
        }
        info
    }
}

/// How one tenant's provisioning ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub info: TenantInfo,
    pub ok: bool,
    /// `ACTIVE` or `FAILED`.
    pub status: String,
    pub error: Option<String>,
    pub duration: Duration,
    /// RFC 3339.
    pub finished_at: String,
}

/// The event published to Kafka: the record's value, described by the JSON Schema
/// `schemas/events/tenant-event.schema.json`. The record's key is the tenant id and its headers
/// are the event's CloudEvents 1.0 attributes ([`cloudevent_headers`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantEvent {
    /// Unique per event: consumers can deduplicate on it.
    pub event_id: String,
    /// `tenant.provisioned` or `tenant.provisioning_failed`.
    #[serde(rename = "type")]
    pub kind: String,
    pub tenant_id: String,
    pub slug: String,
    pub tier: String,
    pub region: String,
    pub status: String,
    pub duration_ms: u64,
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The CloudEvents `source` of every event matih publishes.
pub const CLOUDEVENT_SOURCE: &str = "urn:matih:provisioner";

/// The CloudEvents `type` of an event: `ai.matih.tenant.provisioned` or
/// `ai.matih.tenant.provisioning_failed` (reverse-DNS prefix, as the specification recommends).
pub fn cloudevent_type(kind: &str) -> String {
    format!("ai.matih.{kind}")
}

/// The Kafka record headers of `ev` in CloudEvents 1.0 binary content mode (Kafka protocol
/// binding 1.0): every attribute as a `ce_`-prefixed header, the payload's media type as
/// `content-type`; the record's value is the event itself, its key the tenant id.
pub fn cloudevent_headers(ev: &TenantEvent) -> BTreeMap<String, Vec<u8>> {
    [
        ("ce_specversion", "1.0".to_string()),
        ("ce_id", ev.event_id.clone()),
        ("ce_source", CLOUDEVENT_SOURCE.to_string()),
        ("ce_type", cloudevent_type(&ev.kind)),
        ("ce_subject", ev.slug.clone()),
        ("ce_time", ev.timestamp.clone()),
        ("content-type", "application/json".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_bytes()))
    .collect()
}

/// One message to deliver.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Delivery {
    Email {
        to: Vec<String>,
        subject: String,
        body: String,
    },
    /// The URL is read from the variable `url_env` when delivering; it is never stored.
    Webhook {
        url_env: String,
        payload: serde_json::Value,
    },
    Kafka {
        topic: String,
        key: String,
        value: serde_json::Value,
    },
}

/// The messages an outcome produces under `cfg` (none of a kind that is not configured).
pub fn messages(cfg: &NotifyPlatform, o: &Outcome) -> Vec<Delivery> {
    let i = &o.info;
    let secs = o.duration.as_secs_f64();
    let (subject, text) = if o.ok {
        (
            format!("Tenant {} is provisioned ({})", i.slug, o.status),
            format!(
                "Tenant {} ({}, tier {}, region {}) was provisioned: all ten phases completed in {secs:.1}s at {}. Status: {}.",
                i.slug, i.tenant_id, i.tier, i.region, o.finished_at, o.status
            ),
        )
    } else {
        (
            format!("Provisioning of tenant {} FAILED", i.slug),
            format!(
                "Provisioning of tenant {} ({}, tier {}, region {}) failed after {secs:.1}s at {}: {}. \
                 Fix the cause and run matih apply again: it resumes from what was recorded.",
                i.slug,
                i.tenant_id,
                i.tier,
                i.region,
                o.finished_at,
                o.error.as_deref().unwrap_or("unknown error")
            ),
        )
    };
    let mut out = Vec::new();
    if cfg.smtp.is_some() && !i.emails.is_empty() {
        out.push(Delivery::Email { to: i.emails.clone(), subject: subject.clone(), body: text.clone() });
    }
    if let Some(env) = &cfg.webhook_url_env {
        let color = if o.ok { "good" } else { "danger" };
        let payload = serde_json::json!({
            "text": subject,
            "attachments": [{
                "color": color,
                "text": text,
                "fields": [
                    {"title": "Tenant", "value": i.slug, "short": true},
                    {"title": "Status", "value": o.status, "short": true},
                    {"title": "Tier", "value": i.tier, "short": true},
                    {"title": "Region", "value": i.region, "short": true},
                    {"title": "Duration", "value": format!("{secs:.1}s"), "short": true},
                ],
            }],
        });
        out.push(Delivery::Webhook { url_env: env.clone(), payload });
    }
    if let Some(k) = &cfg.kafka {
        let ev = TenantEvent {
            event_id: uuid::Uuid::new_v4().to_string(),
            kind: if o.ok { "tenant.provisioned" } else { "tenant.provisioning_failed" }.into(),
            tenant_id: i.tenant_id.clone(),
            slug: i.slug.clone(),
            tier: i.tier.clone(),
            region: i.region.clone(),
            status: o.status.clone(),
            duration_ms: o.duration.as_millis() as u64,
            timestamp: o.finished_at.clone(),
            // The schema requires a reason on every failure event.
            error: (!o.ok).then(|| o.error.clone().unwrap_or_else(|| "unknown error".into())),
        };
        out.push(Delivery::Kafka {
            topic: k.topic.clone(),
            key: i.tenant_id.clone(),
            value: serde_json::to_value(&ev).unwrap_or_default(),
        });
    }
    out
}

/// Completion handling of one apply process: enqueue, then deliver once right away.
#[derive(Clone, Debug)]
pub struct Completion {
    pub state_dir: PathBuf,
    pub config: NotifyPlatform,
    /// How long one delivery (an SMTP session, a webhook POST, a Kafka produce) may take.
    pub deliver_budget: Duration,
}

impl Completion {
    /// `None` when the platform file configures no notification and no event.
    pub fn new(state_dir: &Path, config: &NotifyPlatform) -> Option<Completion> {
        if config.smtp.is_none() && config.webhook_url_env.is_none() && config.kafka.is_none() {
            return None;
        }
        Some(Completion {
            state_dir: state_dir.to_path_buf(),
            config: config.clone(),
            deliver_budget: Duration::from_secs(10),
        })
    }

    /// Queues the messages of `o` and tries to deliver what is due. Returns warnings for the
    /// user (a message that could not be queued, or not delivered yet); they never fail the run.
    pub async fn send(&self, o: &Outcome) -> Vec<String> {
        let mut warnings = Vec::new();
        tracing::info!(
            "tenant {} {} after {:.1}s",
            o.info.slug,
            if o.ok { "provisioned" } else { "failed" },
            o.duration.as_secs_f64()
        );
        let outbox = Outbox::new(&self.state_dir);
        for m in messages(&self.config, o) {
            if let Err(e) = outbox.enqueue(&o.info.slug, m) {
                // The outbox is the durability guarantee; without it the message cannot be kept.
                warnings.push(format!("{}: a notification could not be queued: {e}", o.info.slug));
            }
        }
        // Each delivery has its own timeout inside; the whole pass is never cancelled halfway,
        // so that an acknowledged message is always removed from the outbox.
        let deliverer = Deliverer::new(&self.config, self.deliver_budget);
        let report = outbox.deliver_due(&deliverer).await;
        for (id, err) in &report.failed {
            warnings.push(format!(
                "{}: notification {id} not delivered yet ({err}); it stays queued in {} and is retried by matih serve or the next apply",
                o.info.slug,
                outbox.dir().display()
            ));
        }
        warnings
    }
}
