//! `matih serve` on the PostgreSQL state backend, against a real PostgreSQL 15: serve and apply run
//! as two "machines" (separate working and state directories, sharing nothing but the state
//! database); serve lists the tenants from PostgreSQL, picks up state written elsewhere through
//! `NOTIFY`, and streams a real apply's progress live over WebSocket through the `matih_feed`
//! table. The shared feed itself: a follower that loses its session catches up from the table
//! without losing or repeating an event, and the table stays bounded per tenant.

use crate::support as common;
use crate::support::serve as serve_support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::fresh_database;
use matih::state::{FeedNews, PostgresStore, StateStore, TenantState, TenantStatus, FEED_KEEP_PER_TENANT};
use serde_json::Value;
use serve_support::*;

const ACME_ID: &str = "550e8400-e29b-41d4-a716-446655440000";

/// The first column of every row `sql` returns, as text (through `psql`).
fn admin_sql(url: &str, sql: &str) -> Vec<String> {
    common::psql(url, sql).lines().map(str::to_string).collect()
}

/// `matih serve` on "machine A": its own directory and state directory, a platform file that only
/// selects the postgres backend, and the state URL; nothing of the applying machine.
fn serve_elsewhere(dir: &Path, url: &str) -> Serve {
    std::fs::write(dir.join("matih.hcl"), "state {\n  backend = \"postgres\"\n}\n").unwrap();
    let mut c = crate::support::matih_command();
    c.args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .env("MATIH_STATE_DIR", dir.join("state"))
        .env("MATIH_STATE_URL", url)
        .env("NO_COLOR", "1")
        .env_remove("MATIH_PLATFORM_FILE")
        .env_remove("MATIH_SERVE_TOKEN")
        .stdin(Stdio::null());
    Serve::start(c)
}

fn record(url: &str, slug: &str, id: &str, status: TenantStatus) {
    let store = PostgresStore::connect(url).unwrap();
    let st = TenantState { serial: 1, status, ..TenantState::new(slug, id) };
    store.put(&st, None, "apply").unwrap();
}

async fn status_of(serve: &Serve, slug: &str) -> (u16, Value) {
    get(&serve.url(&format!("/api/v1/tenants/{slug}/provisioning/status")), None).await
}

#[test]
fn serve_on_another_machine_follows_an_apply_through_postgres() {
    let url = fresh_database();
    // Recorded before serve starts: listed from PostgreSQL at start.
    record(&url, "globex", "6ba7b810-9dad-11d1-80b4-00c04fd430c8", TenantStatus::Active);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Machine B applies: its own workspace and state directory.
        let mut ws = Workspace::new(600, "state {\n  backend = \"postgres\"\n}\n");
        ws.env.push(("MATIH_STATE_URL".into(), url.clone()));
        // Machine A serves.
        let machine_a = tempfile::tempdir().unwrap();
        let serve = serve_elsewhere(machine_a.path(), &url);

        let (code, list) = get(&serve.url("/api/v1/tenants"), None).await;
        assert_eq!(code, 200, "{list}");
        assert_eq!(list["source"], "store", "{list}");
        let slugs: Vec<&str> =
            list["tenants"].as_array().unwrap().iter().map(|t| t["slug"].as_str().unwrap()).collect();
        assert_eq!(slugs, ["globex"], "{list}");
        assert_eq!(list["tenants"][0]["status"], "ACTIVE");
        assert_eq!(status_of(&serve, "acme").await.0, 404);

        // Written by another process after serve started: picked up through NOTIFY matih_state.
        record(&url, "initech", "7c9e6679-7425-40de-944b-e07fc1f90ae7", TenantStatus::Failed);
        wait_for_status(&serve, "initech", "FAILED", Duration::from_secs(10)).await;

        let mut apply = ws.spawn_apply();
        // The apply's first state write names the tenant; serve reads it from PostgreSQL.
        wait_for_provisioning(&serve, &ws, &mut apply).await;
        let first = watch_acme_through_phase(&serve, 3).await;
        // Mid-apply, a second client (by UUID) is sent the snapshot first, with phases 1-3 done.
        let second = connect_after_phase_3(&serve, ACME_ID).await;
        for c in [&first, &second] {
            c.wait_for("tenant_finished", Duration::from_secs(240), |e| e["type"] == "tenant_finished").await;
        }
        let status = tokio::task::spawn_blocking(move || apply.wait()).await.unwrap().unwrap();
        let log = ws.apply_log();
        assert!(status.success(), "{log}");

        // The stream: live resource events inside their phases, phases in order, each once, ending ACTIVE.
        let events = first.snapshot();
        check_stream(&events, 14, 30);
        let seqs: Vec<u64> = events[1..].iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "each event once, in order: {seqs:?}");
        check_later_phases(&second.snapshot());

        // The final status, from PostgreSQL.
        wait_for_status(&serve, "acme", "ACTIVE", Duration::from_secs(10)).await;
        let (_, done) = status_of(&serve, "acme").await;
        assert!(done["serial"].as_u64().is_some(), "{done}");
        assert!(done["provisioningCompletedAt"].is_string() && done["currentPhase"].is_null(), "{done}");
        for p in done["phases"].as_array().unwrap() {
            assert_eq!(p["state"], "COMPLETED", "{p}");
        }
        let (_, list) = get(&serve.url("/api/v1/tenants"), None).await;
        let slugs: Vec<&str> =
            list["tenants"].as_array().unwrap().iter().map(|t| t["slug"].as_str().unwrap()).collect();
        assert_eq!(slugs, ["acme", "globex", "initech"], "{list}");

        // The audit trail of the whole run comes from matih_feed too.
        let (code, all) = get(&serve.url("/api/v1/tenants/acme/provisioning/audit?pageSize=500"), None).await;
        assert_eq!(code, 200, "{all}");
        assert_eq!(phase_events(all["items"].as_array().unwrap()), all_phase_events());

        // Nothing reached machine A's directory: everything came through PostgreSQL. Machine B
        // still has its local feed file; the shared rows hold no secret.
        assert!(!machine_a.path().join("state/feed").exists());
        assert!(ws.path().join("state/feed/acme.jsonl").is_file());
        let rows = admin_sql(&url, "SELECT event FROM matih_feed WHERE slug = 'acme' ORDER BY seq");
        assert!(rows.len() > 80, "{}", rows.len());
        let shared = rows.join("\n");
        assert!(!shared.contains(SLACK) && !shared.contains(&ws.pg.admin_password));
    });
}

async fn wait_for_status(serve: &Serve, slug: &str, want: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let (code, body) = status_of(serve, slug).await;
        if code == 200 && body["status"] == want {
            return;
        }
        assert!(Instant::now() < deadline, "{slug} never showed {want}: {code} {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn a_follower_that_loses_its_session_catches_up_without_losing_or_repeating_events() {
    let url = fresh_database();
    let serving = PostgresStore::connect(&url).unwrap();
    let applying = PostgresStore::connect(&url).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut news = serving.follow();
    let mut seen = Seen::default();
    seen.take(&rt, &mut news);
    assert_eq!((seen.connected, seen.rows.len()), (1, 0), "connected first, at the end of the table");
    let publisher = applying.feed_publisher().expect("the postgres backend shares a feed");
    let event = |n: usize| format!("{{\"tenant\":\"acme\",\"type\":\"resource_started\",\"seq\":{n}}}");
    for n in 0..700 {
        publisher.publish("acme", event(n));
    }
    assert!(rt.block_on(publisher.flush(Duration::from_secs(20))));
    // A state write is announced too.
    applying.put(&TenantState { serial: 1, ..TenantState::new("acme", ACME_ID) }, None, "apply").unwrap();
    while seen.changed.is_empty() || seen.rows.len() < 700 {
        seen.take(&rt, &mut news);
    }
    assert_eq!(seen.changed, ["acme"]);

    // The follower's session is killed; what is published meanwhile is read from the table.
    let killed = admin_sql(
        &url,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE application_name = 'matih-serve' AND datname = current_database()",
    );
    assert_eq!(killed, ["1"]);
    for n in 700..1500 {
        publisher.publish("acme", event(n));
    }
    assert!(rt.block_on(publisher.flush(Duration::from_secs(20))));
    while seen.rows.len() < 1500 {
        seen.take(&rt, &mut news);
    }
    assert_eq!(seen.connected, 2, "the follower reconnected once");
    let rows = seen.rows;
    let texts: Vec<String> = rows.iter().map(|r| r.event.clone()).collect();
    assert_eq!(texts, (0..1500).map(event).collect::<Vec<_>>(), "every event once, in order");
    assert!(rows.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(rows.iter().all(|r| r.slug == "acme"));
    // Nothing more arrives (no duplicates trickling in).
    assert!(rt.block_on(async { tokio::time::timeout(Duration::from_millis(500), news.recv()).await }).is_err());
}

/// What a follower reported so far.
#[derive(Default)]
struct Seen {
    connected: usize,
    rows: Vec<matih::state::FeedRow>,
    changed: Vec<String>,
}

impl Seen {
    /// Takes the next report, waiting up to 20 s.
    fn take(&mut self, rt: &tokio::runtime::Runtime, news: &mut tokio::sync::mpsc::Receiver<FeedNews>) {
        let n = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(20), news.recv()).await })
            .expect("news within 20 s")
            .expect("the follower runs");
        match n {
            FeedNews::Connected => self.connected += 1,
            FeedNews::Events(r) => self.rows.extend(r),
            FeedNews::StateChanged(slug) => self.changed.push(slug),
        }
    }
}

#[test]
fn the_shared_feed_is_bounded_per_tenant() {
    let url = fresh_database();
    let store = PostgresStore::connect(&url).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let publisher = store.feed_publisher().unwrap();
    let total = FEED_KEEP_PER_TENANT as usize + 700;
    for n in 0..total {
        publisher.publish("acme", format!("{{\"n\":{n}}}"));
        if n % 1000 == 999 {
            assert!(rt.block_on(publisher.flush(Duration::from_secs(30))));
        }
    }
    publisher.publish("globex", "{\"n\":0}".into());
    assert!(rt.block_on(publisher.flush(Duration::from_secs(30))));
    let rows = store.feed_events("acme").unwrap();
    assert_eq!(rows.len(), FEED_KEEP_PER_TENANT as usize, "pruned to the newest");
    assert_eq!(rows.last().unwrap().event, format!("{{\"n\":{}}}", total - 1));
    assert_eq!(rows[0].event, format!("{{\"n\":{}}}", total - FEED_KEEP_PER_TENANT as usize));
    assert_eq!(store.feed_events("globex").unwrap().len(), 1, "other tenants keep theirs");
}
