//! How matih connects to PostgreSQL (the state store and the PostgreSQL provider): a connection
//! URL, with libpq's TLS settings, becomes a `tokio_postgres::Config` and a rustls connector.
//!
//! `sslmode`, a query parameter of the URL as in libpq (`postgresql://…/db?sslmode=verify-full`):
//!
//! | `sslmode` | TLS | server certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers it | not verified (encryption only, as libpq) |
//! | `require` | always | not verified (as libpq without a root certificate) |
//! | `verify-ca` | always | chain verified against the root certificates |
//! | `verify-full` | always | chain verified, and the certificate must name the host |
//!
//! Root certificates: the PEM file named by `sslrootcert=PATH` in the URL, else by the
//! `PGSSLROOTCERT` environment variable (libpq's names), else the system's roots.
//!
//! **Off loopback, verified by default.** Where libpq defaults to `prefer`, matih defaults to
//! `verify-full` for every host that is not this machine (`localhost`, 127.0.0.0/8, ::1, a Unix
//! socket): a password is never sent to a server that has not proved its name. A weaker mode off
//! loopback is an explicit choice in the URL, and matih logs a warning each time it is used. Where
//! TLS is mandatory (`require`, `verify-ca`, `verify-full`), SCRAM channel binding is required too
//! (`channel_binding=require`), so a man in the middle cannot relay the authentication.
//!
//! **Invariant:** errors never contain the URL (it holds a password).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::{ChannelBinding, Host, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::encoding::{self, Escapes};
use crate::transport;

/// A parsed connection URL and the TLS connector its `sslmode` asks for.
#[derive(Clone)]
pub struct PgConnect {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
}

impl std::fmt::Debug for PgConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConnect").field("ssl_mode", &self.config.get_ssl_mode()).finish_non_exhaustive()
    }
}

/// How the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verify {
    Nothing,
    Chain,
    ChainAndName,
}

const EXPECTED: &str = "expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE";

/// Parses `url` (`postgresql://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=…&sslrootcert=…`, or
/// libpq's `key=value` form without the two verifying modes).
pub fn parse(url: &str) -> Result<PgConnect, String> {
    let mut verify = Verify::Nothing;
    let mut root_file = std::env::var("PGSSLROOTCERT").ok().filter(|p| !p.is_empty());
    let mut rest = url.to_string();
    // libpq's key=value form: `host=db sslmode=require …`.
    let mut explicit_mode = !url.contains("://") && url.split_whitespace().any(|kv| kv.starts_with("sslmode="));
    if let Some((base, query)) = url.split_once('?') {
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            explicit_mode |= key == "sslmode";
            match (key, value) {
                ("sslmode", "verify-ca") => {
                    verify = Verify::Chain;
                    kept.push("sslmode=require".to_string());
                }
                ("sslmode", "verify-full") => {
                    verify = Verify::ChainAndName;
                    kept.push("sslmode=require".to_string());
                }
                ("sslrootcert", path) => root_file = Some(percent_decode(path)?),
                _ => kept.push(pair.to_string()),
            }
        }
        rest = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    }
    let mut config: tokio_postgres::Config = rest.parse().map_err(|e: tokio_postgres::Error| {
        let why = e.to_string();
        // The parser's messages name the offending option, never its value.
        if why.contains("sslmode") {
            "the PostgreSQL URL has an unknown sslmode (disable, prefer, require, verify-ca or verify-full)".to_string()
        } else {
            format!("the PostgreSQL URL is not a valid connection string ({EXPECTED})")
        }
    })?;
    let remote: Vec<&str> = config
        .get_hosts()
        .iter()
        .filter_map(|h| match h {
            Host::Tcp(name) if !transport::is_loopback_host(name) => Some(name.as_str()),
            _ => None,
        })
        .collect();
    if !remote.is_empty() {
        if !explicit_mode {
            verify = Verify::ChainAndName;
            config.ssl_mode(SslMode::Require);
        } else if verify == Verify::Nothing {
            let mode = match config.get_ssl_mode() {
                SslMode::Disable => "disable",
                SslMode::Prefer => "prefer",
                _ => "require",
            };
            tracing::warn!(
                "PostgreSQL at {} with sslmode={mode}: the server's certificate is not verified{}; use \
                 sslmode=verify-full off loopback",
                remote.join(","),
                if mode == "require" { "" } else { " and the connection may not be encrypted" },
            );
        }
    }
    if config.get_ssl_mode() == SslMode::Require {
        config.channel_binding(ChannelBinding::Require);
    }
    let tls = if config.get_ssl_mode() == SslMode::Disable {
        // Never used for a handshake, but `connect` wants a connector.
        tls_config(Verify::Nothing, None)?
    } else {
        tls_config(verify, root_file.as_deref())?
    };
    Ok(PgConnect { config, tls: MakeRustlsConnect::new(tls) })
}

fn percent_decode(s: &str) -> Result<String, String> {
    let out =
        encoding::percent_decode(s, Escapes::Strict).ok_or("the PostgreSQL URL has a bad %-escape in sslrootcert")?;
    String::from_utf8(out).map_err(|_| "the PostgreSQL URL's sslrootcert is not UTF-8".to_string())
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(file: Option<&str>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<_, _>>())
                .map_err(|e| format!("cannot read the root certificates in {path} (sslrootcert): {e}"))?;
            if certs.is_empty() {
                return Err(format!("{path} (sslrootcert) holds no PEM certificate"));
            }
            for c in certs {
                store.add(c).map_err(|e| format!("a root certificate in {path} (sslrootcert) is not usable: {e}"))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                // A broken system certificate is skipped, as every TLS client does.
                let _ = store.add(c);
            }
            if store.is_empty() {
                return Err("no root certificates: the system has none; name a PEM file with sslrootcert=PATH in the \
                            URL or PGSSLROOTCERT"
                    .into());
            }
        }
    }
    Ok(store)
}

fn tls_config(verify: Verify, root_file: Option<&str>) -> Result<ClientConfig, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    if verify == Verify::ChainAndName {
        return Ok(builder.with_root_certificates(roots(root_file)?).with_no_client_auth());
    }
    let chain = match verify {
        Verify::Chain => Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots(root_file)?), provider())
                .build()
                .map_err(|e| format!("TLS setup: {e}"))?,
        ),
        _ => None,
    };
    let verifier = Arc::new(Relaxed { chain, provider: provider() });
    Ok(builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth())
}

/// The verifier of `prefer`, `require` and `verify-ca`: with `chain`, the certificate must lead
/// to a root but its name is not checked (`verify-ca`); without, anything is accepted (encryption
/// without checking who is at the other end, libpq's meaning of `prefer` and `require`). The
/// handshake's signatures are checked either way.
#[derive(Debug)]
struct Relaxed {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Relaxed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else { return Ok(ServerCertVerified::assertion()) };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// SQLSTATEs worth retrying: connection failures (class 08), administrator shutdown and crash
/// recovery (57P01-57P03), serialization failures and deadlocks (40001, 40P01), too many
/// connections and out of resources (53300, 53400), lock not available (55P03). Everything else
/// (syntax and permission errors of class 42 above all) is permanent.
pub fn is_transient_code(code: &str) -> bool {
    code.starts_with("08")
        || matches!(code, "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "53300" | "53400" | "55P03")
}

/// The server's message (`ERROR 42P01: relation "x" does not exist (detail)`) and whether to
/// retry. Errors that are not the server's (connection refused, reset, closed, timed out) are
/// transient. Never contains a statement's text, so never a password.
pub fn describe(e: &tokio_postgres::Error) -> (String, bool) {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            let mut msg = format!("{} {code}: {}", db.severity(), db.message());
            if let Some(detail) = db.detail() {
                msg.push_str(&format!(" ({detail})"));
            }
            // Two sessions changing the same catalog row (a GRANT on a shared object) at once:
            // the loser gets XX000 "tuple concurrently updated"; trying again succeeds.
            let concurrent = code == "XX000" && db.message().contains("concurrently updated");
            (msg, is_transient_code(code) || concurrent)
        }
        None => {
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                let text = s.to_string();
                if !msg.contains(&text) {
                    msg.push_str(&format!(": {text}"));
                }
                source = s.source();
            }
            (msg, true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_modes_map_onto_tokio_postgres_and_the_url_never_shows_in_errors() {
        let c = parse("postgresql://u:secret@127.0.0.1:5432/matih").unwrap();
        assert_eq!(c.config.get_ssl_mode(), SslMode::Prefer, "loopback keeps libpq's default");
        assert_eq!(c.config.get_channel_binding(), ChannelBinding::Prefer);
        let c = parse("postgresql://u:secret@db.example/matih?sslmode=disable").unwrap();
        assert_eq!(c.config.get_ssl_mode(), SslMode::Disable);
        let c = parse("postgresql://u:secret@db.example/matih?application_name=x&sslmode=require").unwrap();
        assert_eq!(c.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(c.config.get_channel_binding(), ChannelBinding::Require, "TLS is on: SCRAM binds to it");
        assert_eq!(c.config.get_application_name(), Some("x"));
        let c = parse("postgresql://u:secret@db.example/matih?sslmode=verify-full").unwrap();
        assert_eq!(c.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(c.config.get_dbname(), Some("matih"));
        let c = parse("host=db.example user=u sslmode=prefer").unwrap();
        assert_eq!(c.config.get_ssl_mode(), SslMode::Prefer, "an explicit weaker mode is kept (and logged)");
        for bad in [
            "postgresql://u:secret@db.example/matih?sslmode=sometimes",
            "postgresql://u:secret@db.example:notaport/matih",
            "postgresql://u:secret@db.example/matih?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(!e.contains("secret"), "{e}");
        }
        let e = parse("postgresql://u:secret@db.example/matih?sslmode=verify-ca&sslrootcert=/nonexistent/ca%2Dx.pem")
            .unwrap_err();
        assert!(e.contains("/nonexistent/ca-x.pem (sslrootcert)"), "{e}");
    }

    #[test]
    fn off_loopback_the_default_is_verify_full() {
        let url = |host: &str| format!("postgresql://u:secret@{host}/matih");
        for host in ["db.example", "10.1.2.3"] {
            // The system's roots (or PGSSLROOTCERT) back the default; a machine without any gets
            // an error that says how to name one, never the URL. (tests/suite/postgres_tls.rs checks the
            // default against a real server.)
            match parse(&url(host)) {
                Ok(c) => {
                    assert_eq!(c.config.get_ssl_mode(), SslMode::Require, "{host}");
                    assert_eq!(c.config.get_channel_binding(), ChannelBinding::Require, "{host}");
                }
                Err(e) => assert!(e.contains("sslrootcert") && !e.contains("secret"), "{e}"),
            }
        }
        for host in ["localhost", "127.0.0.1", "[::1]"] {
            let c = parse(&url(host)).unwrap();
            assert_eq!(c.config.get_ssl_mode(), SslMode::Prefer, "{host}");
        }
    }
}
