//! Sending one outbox message: SMTP (lettre, STARTTLS/TLS with rustls), a Slack-compatible webhook
//! (reqwest), a Kafka record (rskafka, pure Rust: no librdkafka).

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::ClientBuilder;
use rskafka::record::Record;

use super::{cloudevent_headers, Delivery, TenantEvent};
use crate::spec::{KafkaPlatform, NotifyPlatform, SmtpPlatform};
use crate::transport;

/// Delivers messages with the platform's settings; credentials come from the environment.
#[derive(Clone, Debug)]
pub struct Deliverer {
    smtp: Option<SmtpPlatform>,
    kafka: Option<KafkaPlatform>,
    timeout: Duration,
    http: reqwest::Client,
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
}

impl Deliverer {
    pub fn new(cfg: &NotifyPlatform, timeout: Duration) -> Deliverer {
        // The webhook URL is a credential: a redirect is an answer, never followed.
        let http = transport::http_client(timeout, timeout).unwrap_or_default();
        Deliverer { smtp: cfg.smtp.clone(), kafka: cfg.kafka.clone(), timeout, http }
    }

    /// Sends one message; `Err` carries a message for the log and the outbox entry (never a secret).
    pub async fn deliver(&self, d: &Delivery) -> Result<(), String> {
        let fut = async {
            match d {
                Delivery::Email { to, subject, body } => self.email(to, subject, body).await,
                Delivery::Webhook { url_env, payload } => self.webhook(url_env, payload).await,
                Delivery::Kafka { topic, key, value } => self.kafka(topic, key, value).await,
            }
        };
        // A little more than the per-step timeouts, so that those report their own errors first.
        match tokio::time::timeout(self.timeout + Duration::from_secs(2), fut).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {:?}", self.timeout)),
        }
    }

    async fn email(&self, to: &[String], subject: &str, body: &str) -> Result<(), String> {
        let smtp = self.smtp.as_ref().ok_or("no SMTP server is configured (notifications block of matih.hcl)")?;
        let mut msg = Message::builder()
            .from(smtp.from.parse().map_err(|e| format!("smtp_from {:?}: {e}", smtp.from))?)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN);
        for t in to {
            msg = msg.to(t.parse().map_err(|e| format!("recipient {t:?}: {e}"))?);
        }
        let msg = msg.body(body.to_string()).map_err(|e| e.to_string())?;
        let builder = match smtp.tls.as_str() {
            "none" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
            "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host).map_err(|e| e.to_string())?,
            _ => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host).map_err(|e| e.to_string())?,
        };
        let mut builder = builder.port(smtp.port).timeout(Some(self.timeout));
        if let Some(user_env) = &smtp.username_env {
            // The platform file's check, again where the credentials are used.
            if smtp.tls == "none" && !transport::is_loopback_host(&smtp.host) {
                return Err(format!("SMTP {}: credentials are never sent without TLS (smtp_tls)", smtp.host));
            }
            let pass = match &smtp.password_env {
                Some(p) => env(p)?,
                None => String::new(),
            };
            builder = builder.credentials(Credentials::new(env(user_env)?, pass));
        }
        let transport = builder.build();
        transport.send(msg).await.map(|_| ()).map_err(|e| format!("SMTP {}:{}: {e}", smtp.host, smtp.port))
    }

    async fn webhook(&self, url_env: &str, payload: &serde_json::Value) -> Result<(), String> {
        let url = env(url_env)?;
        // The URL is a secret: errors name the variable, never the URL (only its scheme and host).
        transport::check_credential_url(&format!("the webhook URL in {url_env}"), &url)?;
        let resp = self
            .http
            .post(&url)
            .json(payload)
            .send()
            .await
            .map_err(|e| format!("webhook ({url_env}): {}", e.without_url()))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("webhook ({url_env}) answered {}", resp.status()))
        }
    }

    async fn kafka(&self, topic: &str, key: &str, value: &serde_json::Value) -> Result<(), String> {
        let k = self.kafka.as_ref().ok_or("no Kafka brokers are configured (events block of matih.hcl)")?;
        // The headers are derived from the queued event at delivery time (one source of truth).
        let event: TenantEvent = serde_json::from_value(value.clone())
            .map_err(|e| format!("the queued Kafka message is not a tenant event: {e}"))?;
        let headers = cloudevent_headers(&event);
        let backoff = rskafka::BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            base: 2.0,
            deadline: Some(self.timeout),
        };
        let client = ClientBuilder::new(k.brokers.clone())
            .client_id("matih")
            .backoff_config(backoff)
            .build()
            .await
            .map_err(|e| format!("Kafka {}: {e}", k.brokers.join(",")))?;
        let partition = client
            .partition_client(topic.to_string(), 0, UnknownTopicHandling::Retry)
            .await
            .map_err(|e| format!("Kafka topic {topic}: {e}"))?;
        let record = Record {
            key: Some(key.as_bytes().to_vec()),
            value: Some(serde_json::to_vec(value).map_err(|e| e.to_string())?),
            headers,
            timestamp: rskafka::chrono::Utc::now(),
        };
        partition
            .produce(vec![record], Compression::NoCompression)
            .await
            .map(|_| ())
            .map_err(|e| format!("Kafka produce to {topic}: {e}"))
    }
}
