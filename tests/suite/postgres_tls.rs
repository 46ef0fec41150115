//! TLS to PostgreSQL, as the URL's `sslmode` asks (libpq's modes), against a real PostgreSQL 15
//! with `ssl=on` and a certificate from a test CA for the name `db.matih.test` only: the state
//! store and the PostgreSQL provider connect encrypted, verify the chain and the name when told
//! to, and refuse a server whose certificate does not check out, without ever showing the URL.

use crate::support as common;

use std::time::Duration;

use common::pg;
use matih::provider::postgres::{PostgresProvider, PostgresSettings};
use matih::state::{PostgresStore, StateStore, TenantState};

fn tls() -> &'static pg::TlsServer {
    pg::tls_server()
}

/// The TLS server's admin URL with `query` appended; `host` is what the certificate is checked
/// against (reached at 127.0.0.1 through `hostaddr` when it is the certificate's name).
fn url(host: &str, query: &str) -> String {
    let s = &tls().server;
    let via = if host == "db.matih.test" { "&hostaddr=127.0.0.1" } else { "" };
    format!("postgresql://postgres:{}@{host}:{}/postgres?{query}{via}", s.admin_password, s.port)
}

/// Whether the session `url` opens is encrypted (`pg_stat_ssl`), through matih's own connector.
fn encrypted(url: &str) -> Result<bool, String> {
    let c = matih::pgconn::parse(url)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (client, conn) = c.config.connect(c.tls.clone()).await.map_err(|e| format!("{e:?}"))?;
        tokio::spawn(conn);
        let row = client
            .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
            .await
            .map_err(|e| e.to_string())?;
        Ok(row.get::<_, bool>(0))
    })
}

fn ca(file: &std::path::Path) -> String {
    format!("sslrootcert={}", file.display())
}

#[test]
fn each_sslmode_connects_as_libpq_would() {
    let right = ca(&tls().ca_file);
    let wrong = ca(&tls().other_ca_file);
    assert_eq!(encrypted(&url("127.0.0.1", "sslmode=disable")), Ok(false));
    assert_eq!(encrypted(&url("127.0.0.1", "sslmode=prefer")), Ok(true), "prefer uses TLS when offered");
    assert_eq!(encrypted(&url("127.0.0.1", "sslmode=require")), Ok(true), "require does not check the certificate");
    assert_eq!(encrypted(&url("127.0.0.1", &format!("sslmode=verify-ca&{right}"))), Ok(true), "the chain is enough");
    assert_eq!(encrypted(&url("db.matih.test", &format!("sslmode=verify-full&{right}"))), Ok(true));

    // verify-full checks the name: the certificate is not for 127.0.0.1.
    let e = encrypted(&url("127.0.0.1", &format!("sslmode=verify-full&{right}"))).unwrap_err();
    assert!(e.contains("NotValidForName"), "{e}");
    // A chain from another CA fails both verifying modes.
    for mode in ["verify-ca", "verify-full"] {
        let e = encrypted(&url("db.matih.test", &format!("sslmode={mode}&{wrong}"))).unwrap_err();
        assert!(e.contains("UnknownIssuer"), "{mode}: {e}");
    }
    // The root certificates may also come from PGSSLROOTCERT (libpq's variable); the URL wins. The
    // connector reads it in this process: checked in a child process with it set from its start.
    let ca_file = tls().ca_file.display().to_string();
    if common::rerun_in_child("postgres_tls::each_sslmode_connects_as_libpq_would", &[("PGSSLROOTCERT", &ca_file)]) {
        return;
    }
    assert_eq!(encrypted(&url("db.matih.test", "sslmode=verify-full")), Ok(true));
    assert!(encrypted(&url("db.matih.test", &format!("sslmode=verify-full&{wrong}"))).is_err());
}

#[test]
fn the_state_store_and_the_provider_use_tls_and_refuse_a_server_they_cannot_verify() {
    let right = ca(&tls().ca_file);
    let store = PostgresStore::connect(&url("db.matih.test", &format!("sslmode=verify-full&{right}"))).unwrap();
    let st = TenantState { serial: 1, ..TenantState::new("acme", "550e8400-e29b-41d4-a716-446655440000") };
    store.put(&st, None, "test").unwrap();
    assert_eq!(store.get("acme").unwrap().unwrap().serial, 1);

    let wrong = url("db.matih.test", &format!("sslmode=verify-full&{}", ca(&tls().other_ca_file)));
    let e = PostgresStore::connect(&wrong).unwrap_err().to_string();
    assert!(e.contains("UnknownIssuer") || e.contains("certificate"), "{e}");
    assert!(!e.contains(&tls().server.admin_password), "the password never shows: {e}");

    let settings = |admin_url: String| PostgresSettings {
        admin_url,
        tenant_host: "127.0.0.1".into(),
        tenant_port: tls().server.port,
        shared_database: "matih_tenants".into(),
        connect_timeout: Duration::from_secs(10),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ok = settings(url("db.matih.test", &format!("sslmode=verify-full&{right}")));
    rt.block_on(PostgresProvider::connect(&ok)).expect("the provider connects over verified TLS");
    let e = rt
        .block_on(PostgresProvider::connect(&settings(url("127.0.0.1", &format!("sslmode=verify-full&{right}")))))
        .unwrap_err();
    assert!(e.contains("NotValidForName") || e.contains("certificate"), "{e}");
    assert!(!e.contains(&tls().server.admin_password), "{e}");
}

#[test]
fn off_loopback_a_url_without_sslmode_is_verify_full_with_channel_binding() {
    // libpq would take `prefer` and accept any certificate; matih verifies the chain and the name of
    // every host that is not this machine unless the URL says otherwise.
    let right = ca(&tls().ca_file);
    let wrong = ca(&tls().other_ca_file);
    // The server asks for SCRAM (`--auth-host=scram-sha-256`); matih requires the binding to the TLS
    // channel (SCRAM-SHA-256-PLUS), so this connection succeeding means the binding was made.
    assert_eq!(encrypted(&url("db.matih.test", &right)), Ok(true));
    let e = encrypted(&url("db.matih.test", &wrong)).unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");
    assert!(!e.contains(&tls().server.admin_password), "{e}");
    // Explicitly weaker off loopback: kept (and logged), as the operator asked.
    assert_eq!(encrypted(&url("db.matih.test", &format!("sslmode=require&{wrong}"))), Ok(true));
}
