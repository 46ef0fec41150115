//! `matih serve` watching a real `matih apply` (another process) against the Kubernetes API test
//! server, PostgreSQL and PowerDNS: the status endpoint while the store is held by the apply, the
//! WebSocket stream (events in phase order; a client connecting mid-apply gets the snapshot first),
//! the audit trail, and the completion notifications to a local SMTP sink and webhook receiver,
//! the webhook's first (failed) delivery retried by serve from the outbox.

use crate::support::serve as serve_support;

use std::time::Duration;

use serve_support::*;

#[test]
fn serve_follows_a_real_apply_live_and_notifies_on_completion() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let smtp = SmtpSink::start().await;
        let hook = Webhook::start(1).await;
        let mut ws = Workspace::new(
            600,
            &format!(
                "notifications {{\n  smtp_host = \"127.0.0.1\"\n  smtp_port = {}\n  smtp_tls = \"none\"\n  smtp_from = \"matih@matih.test\"\n  webhook_url_env = \"MATIH_TEST_WEBHOOK\"\n}}\n",
                smtp.port
            ),
        );
        ws.env.push(("MATIH_TEST_WEBHOOK".into(), format!("http://127.0.0.1:{}/hooks/secret-path", hook.port)));
        let serve = ws.serve("127.0.0.1:0", None);

        // Before anything is applied: an empty list, 404 for the tenant, 400 for a bad id, 404 elsewhere.
        let (code, body) = get(&serve.url("/api/v1/tenants"), None).await;
        assert_eq!((code, body["tenants"].as_array().map(Vec::len)), (200, Some(0)), "{body}");
        let (code, body) = get(&serve.url("/api/v1/tenants/acme/provisioning/status"), None).await;
        assert_eq!(code, 404, "{body}");
        assert_eq!(body["error"], "not_found");
        let (code, body) = get(&serve.url("/api/v1/tenants/NOT_A..SLUG/provisioning/status"), None).await;
        assert_eq!((code, body["error"].as_str()), (400, Some("bad_request")), "{body}");
        assert_eq!(get(&serve.url("/api/v1/nothing"), None).await.0, 404);
        assert_eq!(get(&serve.url("/ws/provisioning/acme"), None).await.0, 404, "unknown tenant, no upgrade");

        let started = std::time::Instant::now();
        let mut apply = ws.spawn_apply();

        // The tenant appears (from the feed: the apply holds the store) as PROVISIONING.
        let body = wait_for_provisioning(&serve, &ws, &mut apply).await;
        assert_eq!(body["totalPhases"], 10);
        assert_eq!(body["phases"].as_array().unwrap().len(), 10);
        // Mid-apply: once phase 3 is done, a second client connects (by UUID) and is sent the snapshot first.
        let first = watch_acme_through_phase(&serve, 3).await;
        let id = "550e8400-e29b-41d4-a716-446655440000";
        let (code, mid) = get(&serve.url(&format!("/api/v1/tenants/{id}/provisioning/status")), None).await;
        assert_eq!(code, 200, "{mid}");
        assert_eq!(mid["status"], "PROVISIONING", "{mid}");
        assert_eq!(mid["phases"][2]["state"], "COMPLETED", "{mid}");
        assert!(mid["phases"][2]["durationMs"].as_u64().is_some(), "{mid}");
        let second = connect_after_phase_3(&serve, id).await;
        let snap = &second.snapshot()[0];
        assert!(snap["status"]["phases"][9]["state"] != "COMPLETED", "{snap}");

        // The end: both clients see tenant_finished ACTIVE.
        for c in [&first, &second] {
            c.wait_for("tenant_finished", Duration::from_secs(240), |e| e["type"] == "tenant_finished").await;
        }
        let status = tokio::task::spawn_blocking(move || apply.wait()).await.unwrap().unwrap();
        let log = ws.apply_log();
        assert!(status.success(), "{log}");
        eprintln!("apply took {:.1}s", started.elapsed().as_secs_f64());

        // Events in phase order: phase N started, finished, then N+1; resources inside their phase.
        // The first client connected during the apply: its events are the tail of the full sequence,
        // starting in the phase its snapshot showed running.
        let events = first.snapshot();
        let seen = check_stream(&events, 17, 40);
        let running = events[0]["status"]["currentPhase"].as_u64();
        assert!(running.is_some(), "{}", events[0]);
        assert!(
            seen[0] == ("phase_finished".to_string(), running.unwrap())
                || seen[0] == ("phase_started".to_string(), running.unwrap() + 1),
            "{:?} after a snapshot in phase {running:?}",
            seen[0]
        );
        // The second client saw the rest live, in order, after its snapshot.
        check_later_phases(&second.snapshot());

        // After the apply the store is free again: the status comes from it.
        let (code, done) = get(&serve.url("/api/v1/tenants/acme/provisioning/status"), None).await;
        assert_eq!(code, 200);
        assert_eq!(done["status"], "ACTIVE", "{done}");
        assert!(done["serial"].as_u64().is_some(), "read from the store: {done}");
        assert!(done["provisioningCompletedAt"].is_string() && done["provisioningError"].is_null(), "{done}");
        assert!(done["currentPhase"].is_null());
        for p in done["phases"].as_array().unwrap() {
            assert_eq!(p["state"], "COMPLETED", "{p}");
            assert!(p["startedAt"].is_string() && p["finishedAt"].is_string() && p["durationMs"].is_u64(), "{p}");
        }
        let graph = {
            let catalog = matih::catalog::Catalog::embedded().unwrap();
            let (specs, _) = matih::spec::load_tenants(&[ws.path().join("tenants/acme.hcl")], &catalog);
            matih::graph::compile(&specs[0], &catalog, &matih::spec::PlatformConfig::default()).0.unwrap()
        };
        assert_eq!(done["resources"]["total"].as_u64(), Some(graph.len() as u64), "{done}");
        let (_, list) = get(&serve.url("/api/v1/tenants"), None).await;
        assert_eq!(list["tenants"][0]["slug"], "acme");
        assert_eq!(list["tenants"][0]["status"], "ACTIVE");

        // The audit trail, paginated.
        let (code, page1) = get(&serve.url("/api/v1/tenants/acme/provisioning/audit?pageSize=5"), None).await;
        assert_eq!(code, 200, "{page1}");
        assert_eq!(page1["items"].as_array().unwrap().len(), 5);
        assert_eq!(page1["items"][0]["type"], "phase_started");
        let total = page1["total"].as_u64().unwrap();
        assert!(total > 80, "{total}");
        let (_, page2) = get(&serve.url("/api/v1/tenants/acme/provisioning/audit?pageSize=5&page=2"), None).await;
        assert_ne!(page2["items"][0], page1["items"][0]);
        // The whole run, from phase 1, in order.
        let (_, all) = get(&serve.url("/api/v1/tenants/acme/provisioning/audit?pageSize=500"), None).await;
        assert_eq!(phase_events(all["items"].as_array().unwrap()), all_phase_events());
        let (code, _) = get(&serve.url("/api/v1/tenants/acme/provisioning/audit?pageSize=0"), None).await;
        assert_eq!(code, 400);

        // Notifications: the e-mail went to the tenant admin; the webhook's first answer was a 500,
        // so the message stayed in the outbox and serve delivered it again.
        wait_until("the e-mail", Duration::from_secs(10), || !smtp.messages.lock().unwrap().is_empty()).await;
        let mail = smtp.messages.lock().unwrap()[0].clone();
        assert!(mail.contains("RCPT TO:<admin@acme.example>"), "{mail}");
        assert!(mail.contains("Subject: Tenant acme is provisioned (ACTIVE)"), "{mail}");
        wait_until("the webhook retry", Duration::from_secs(20), || hook.bodies.lock().unwrap().len() >= 2).await;
        let bodies = hook.bodies.lock().unwrap().clone();
        assert_eq!(bodies.iter().map(|b| b.0).collect::<Vec<_>>(), [500, 200]);
        assert_eq!(bodies[1].1["text"], "Tenant acme is provisioned (ACTIVE)");
        assert_eq!(bodies[0].1, bodies[1].1, "the same message, retried");
        assert!(log.contains("not delivered yet"), "the failed delivery is logged: {log}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(hook.bodies.lock().unwrap().len(), 2, "delivered once, not again");
        let outbox: Vec<_> = std::fs::read_dir(ws.path().join("state/outbox"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .collect();
        assert!(outbox.is_empty(), "the outbox is empty once everything was delivered");
        // The webhook URL (a secret) is in no file of the state directory and not in the output.
        let all = dir_text(&ws.path().join("state"));
        assert!(!all.contains("secret-path") && !log.contains("secret-path"));
    });
}

fn dir_text(dir: &std::path::Path) -> String {
    let mut s = String::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            s.push_str(&dir_text(&p));
        } else {
            s.push_str(&String::from_utf8_lossy(&std::fs::read(&p).unwrap()));
        }
    }
    s
}
