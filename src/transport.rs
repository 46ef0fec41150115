//! The rules for connections that carry credentials (README, "Security model"): a credential never
//! crosses the network in clear text, and an HTTP client that sends one never follows a redirect
//! (a redirect would hand the API key or token to whatever host the answer names).
//!
//! Loopback is the one exception: a server on the same machine (a development environment, a
//! sidecar) is reached over plain HTTP or SMTP without TLS, as before.

use std::net::IpAddr;
use std::time::Duration;

/// Whether `host` (a name or an address, IPv6 with or without brackets) is this machine:
/// `localhost`, `*.localhost` (RFC 6761), 127.0.0.0/8 or ::1.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.');
    if host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost") {
        return true;
    }
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Checks that `url`, which will carry a credential, is `https://`, or `http://` to a loopback
/// host. `what` names the setting in the error. The error never contains the URL's path or query
/// (a webhook URL is itself the secret), only its scheme and host.
pub fn check_credential_url(what: &str, url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|_| format!("{what} is not a valid URL"))?;
    let host = parsed.host_str().unwrap_or("");
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(host) => Ok(()),
        "http" => Err(format!(
            "{what} is http://{host}: it carries a credential, which is sent only over https:// (plain http is \
             allowed to loopback addresses only)"
        )),
        other => Err(format!("{what} has the scheme {other:?}; expected https:// (or http:// to a loopback address)")),
    }
}

/// An HTTP client for requests that carry a credential: redirects are returned as answers, never
/// followed.
pub fn http_client(connect_timeout: Duration, timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// The log filter of `matih` from the variable `var` (`MATIH_LOG=debug`, tracing's directives),
/// with the PostgreSQL client capped at `info` whatever the variable says: at `debug` it logs every
/// statement's text, and matih's `CREATE ROLE … PASSWORD` statements carry password hashes.
pub fn log_filter(var: &str) -> tracing_subscriber::EnvFilter {
    cap_log_filter(tracing_subscriber::EnvFilter::from_env(var))
}

/// `filter` with the PostgreSQL client capped at `info` (see [`log_filter`]).
pub fn cap_log_filter(filter: tracing_subscriber::EnvFilter) -> tracing_subscriber::EnvFilter {
    filter
        .add_directive("tokio_postgres=info".parse().expect("a valid directive"))
        .add_directive("postgres_protocol=info".parse().expect("a valid directive"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "LOCALHOST", "pdns.localhost", "127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost."] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["", "example.com", "localhost.example.com", "10.0.0.1", "0.0.0.0", "::", "[::ffff:10.0.0.1]"] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn credential_urls() {
        assert!(check_credential_url("api_url", "https://dns.example.com/").is_ok());
        assert!(check_credential_url("api_url", "http://127.0.0.1:8081").is_ok());
        assert!(check_credential_url("api_url", "http://[::1]:8081").is_ok());
        let e = check_credential_url("api_url", "http://dns.example.com:8081/x?token=s3cret").unwrap_err();
        assert!(e.contains("http://dns.example.com") && e.contains("https://"), "{e}");
        assert!(!e.contains("s3cret") && !e.contains("8081"), "{e}");
        assert!(check_credential_url("webhook", "ftp://example.com").unwrap_err().contains("ftp"));
        assert!(check_credential_url("webhook", "not a url").unwrap_err().contains("not a valid URL"));
    }

    #[test]
    fn debug_logs_never_carry_the_postgres_clients_statements() {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::layer::SubscriberExt;
        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let var = "MATIH_TEST_LOG_FILTER_CAP";
        std::env::set_var(var, "debug,tokio_postgres=trace");
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::registry()
            .with(log_filter(var))
            .with(tracing_subscriber::fmt::layer().with_writer(move || writer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "tokio_postgres::query", "executing statement CREATE ROLE x PASSWORD 'SCRAM'");
            tracing::info!(target: "tokio_postgres::connection", "connection closed");
            tracing::debug!(target: "matih::apply", "matih's own debug line");
        });
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(!out.contains("SCRAM"), "{out}");
        assert!(out.contains("connection closed") && out.contains("matih's own debug line"), "{out}");
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let mut hits = 0;
            // Answers every request with a redirect to itself; a client that follows it comes back.
            while let Ok(Ok((mut sock, _))) = tokio::time::timeout(Duration::from_millis(500), listener.accept()).await
            {
                hits += 1;
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let answer = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{port}/elsewhere\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = sock.write_all(answer.as_bytes()).await;
            }
            hits
        });
        let client = http_client(Duration::from_secs(2), Duration::from_secs(2)).unwrap();
        let rsp = client.get(format!("http://127.0.0.1:{port}/")).header("X-API-Key", "k").send().await.unwrap();
        assert_eq!(rsp.status().as_u16(), 307);
        assert_eq!(server.await.unwrap(), 1, "the redirect was not followed");
    }
}
