use super::*;
use crate::apply::feed::{self, FeedCursor};
use crate::events::status::StatusDoc;
use crate::events::{Event, EventKind};
use crate::state::TenantState;

#[test]
fn slugs_and_ids() {
    assert!(valid_slug("acme") && valid_slug("a-1"));
    for bad in ["", "-a", "a-", "Acme", "a_b", "a/b", "..", &"a".repeat(64)] {
        assert!(!valid_slug(bad), "{bad}");
    }
    assert!(matches!(parse_id("acme"), Some(TenantId::Slug(_))));
    assert!(
        matches!(parse_id("550E8400-E29B-41D4-A716-446655440000"), Some(TenantId::Uuid(u)) if u == "550e8400-e29b-41d4-a716-446655440000")
    );
    assert!(parse_id("%00").is_none() && parse_id("a..b/c").is_none());
}

#[test]
fn query_parameters_are_percent_decoded() {
    assert_eq!(query_param(Some("a=1&access_token=x%2By%3D"), "access_token").as_deref(), Some("x+y="));
    assert_eq!(query_param(Some("access_token"), "access_token").as_deref(), Some(""));
    assert_eq!(query_param(Some("x=%zz%"), "x").as_deref(), Some("%zz%"));
    assert_eq!(query_param(None, "x"), None);
}

fn ev(kind: EventKind, phase: u8) -> Event {
    let mut e = Event::new("acme", kind);
    e.phase = Some(phase);
    e.phase_name = crate::phase::Phase::from_number(phase).map(|p| p.name().to_string());
    e
}

#[test]
fn events_fold_into_the_status_document() {
    let st = TenantState::new("acme", "550e8400-e29b-41d4-a716-446655440000");
    let mut doc = StatusDoc::from_state(&st);
    assert_eq!(doc.phases.len(), 10);
    doc.fold(&ev(EventKind::PhaseStarted, 1));
    assert_eq!(doc.status, TenantStatus::Provisioning);
    assert_eq!(doc.current_phase, Some(1));
    assert_eq!(doc.phases[0].state, "RUNNING");
    let mut r = ev(EventKind::ResourceFinished, 1);
    r.action = Some("create".into());
    r.outcome = Some("ok".into());
    doc.fold(&r);
    assert_eq!(doc.resources.total, 1);
    assert_eq!(doc.phases[0].operations, 1);
    let mut f = ev(EventKind::PhaseFinished, 1);
    f.outcome = Some("completed".into());
    f.duration_ms = Some(12);
    doc.fold(&f);
    assert_eq!(doc.phases[0].state, "COMPLETED");
    assert_eq!(doc.phases[0].duration_ms, Some(12));
    let mut f = ev(EventKind::PhaseFinished, 2);
    f.outcome = Some("failed".into());
    f.error = Some("boom".into());
    doc.fold(&f);
    assert_eq!(doc.status, TenantStatus::Failed);
    assert_eq!(doc.provisioning_error.as_deref(), Some("boom"));
    let mut t = Event::new("acme", EventKind::TenantFinished);
    t.tenant_status = Some(TenantStatus::Active);
    doc.fold(&t);
    assert_eq!(doc.status, TenantStatus::Active);
    assert!(doc.provisioning_error.is_none() && doc.provisioning_completed_at.is_some() && doc.current_phase.is_none());
    // A snapshot replaces everything.
    doc.fold(&Event::snapshot(StatusDoc::from_state(&st)));
    assert_eq!(doc, StatusDoc::from_state(&st));
}

#[test]
fn the_cursor_returns_complete_lines_once_and_restarts_after_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.jsonl");
    let line = |k: &str| format!("{{\"tenant\":\"acme\",\"type\":\"{k}\"}}\n");
    std::fs::write(&path, format!("{}{}{{\"tenant\":\"ac", line("phase_started"), "not json\n")).unwrap();
    let mut c = FeedCursor::default();
    let got = c.read_new(&path).unwrap();
    assert_eq!(got.len(), 1, "the malformed line is skipped, the partial one kept for later");
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    std::io::Write::write_all(&mut f, b"me\",\"type\":\"phase_finished\"}\n").unwrap();
    let got = c.read_new(&path).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].kind, EventKind::PhaseFinished);
    assert!(c.read_new(&path).unwrap().is_empty());
    std::fs::write(&path, line("future_kind")).unwrap();
    let got = c.read_new(&path).unwrap();
    assert_eq!(got[0].kind, EventKind::Unknown, "a shorter file is read from its start");
}

#[test]
fn a_client_that_falls_behind_is_told_so_and_the_writer_never_waits() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(feed::feed_dir(dir.path())).unwrap();
    let path = feed::feed_file(dir.path(), "acme");
    let st = TenantState::new("acme", "550e8400-e29b-41d4-a716-446655440000");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(f, "{}", serde_json::to_string(&Event::snapshot(StatusDoc::from_state(&st))).unwrap()).unwrap();
    let mut live = live::Live::default();
    live.scan(dir.path(), true);
    let mut sub = live.subscribe("acme");
    assert_eq!(sub.doc.as_ref().unwrap().0.slug, "acme", "the snapshot comes with the subscription");
    // Far more events than the channel holds arrive while the client reads nothing.
    for _ in 0..(live::CHANNEL_CAPACITY * 3) {
        writeln!(f, "{}", serde_json::to_string(&ev(EventKind::ResourceStarted, 1)).unwrap()).unwrap();
    }
    let t = std::time::Instant::now();
    live.scan(dir.path(), false);
    assert!(t.elapsed() < std::time::Duration::from_secs(2));
    assert!(matches!(sub.rx.try_recv(), Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_))));
    // The folded document is current, for the resynchronising snapshot.
    assert_eq!(live.doc("acme").unwrap().slug, "acme");
}

#[test]
fn shared_feed_events_fold_into_the_store_document_and_the_newer_answer_wins() {
    let mut st = TenantState::new("acme", "550e8400-e29b-41d4-a716-446655440000");
    st.status = TenantStatus::Provisioning;
    let stored = StatusDoc::from_state(&st);
    let mut live = live::Live::default();
    // An event without a snapshot first (serve started mid-run): folded into what the store says.
    live.seed(&stored);
    let mut sub = live.subscribe("acme");
    live.push(ev(EventKind::PhaseStarted, 4), false);
    let doc = live.doc("acme").unwrap();
    assert_eq!((doc.tenant_id.as_str(), doc.current_phase), (stored.tenant_id.as_str(), Some(4)));
    assert_eq!(sub.rx.try_recv().unwrap().kind, EventKind::PhaseStarted, "broadcast to clients");
    // Seeding again does not undo what the feed said.
    live.seed(&stored);
    assert_eq!(live.doc("acme").unwrap().current_phase, Some(4));
    // History (initial) is folded but neither broadcast nor recent.
    live.push(ev(EventKind::PhaseStarted, 5), true);
    assert!(sub.rx.try_recv().is_err());

    let (earlier, later) = (Instant::now(), Instant::now() + Duration::from_millis(1));
    assert!(feed_is_newer(None, None), "the store could not be read");
    assert!(feed_is_newer(Some(earlier), Some(later)));
    assert!(!feed_is_newer(Some(later), Some(earlier)));
    assert!(!feed_is_newer(Some(earlier), None), "nothing arrived since serve started");
}

#[test]
fn the_status_document_carries_tier_region_and_outputs_but_never_a_secret() {
    use crate::addr::ResourceAddr;
    use crate::phase::Phase;
    use crate::state::ResourceState;
    use crate::value::{Secret, Value};
    let mut st = TenantState::new("acme", "550e8400-e29b-41d4-a716-446655440000");
    let res = |phase, attrs: Value, outputs: Vec<(&str, Value)>| ResourceState {
        phase,
        attrs: match attrs {
            Value::Map(m) => m,
            _ => unreachable!(),
        },
        outputs: outputs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        depends_on: Default::default(),
    };
    let labels = Value::map([("matih.ai/tier", Value::str("professional")), ("matih.ai/region", Value::str("eastus"))]);
    st.resources.insert(
        ResourceAddr::new("kubernetes_namespace", "tenant"),
        res(Phase::CreateNamespace, Value::map([("metadata", Value::map([("labels", labels)]))]), vec![]),
    );
    let secret = Value::Secret(Secret { source: "generated".into(), fingerprint: Some("sha256:00".into()) });
    st.resources.insert(
        ResourceAddr::new("postgresql_role", "tenant"),
        res(Phase::SetupDatabase, Value::map([("name", Value::str("acme"))]), vec![("password", secret.clone())]),
    );
    st.resources.insert(
        ResourceAddr::new("kubernetes_service", "ingress_controller"),
        res(
            Phase::DeployIngressController,
            Value::Map(Default::default()),
            vec![("load_balancer_ip", Value::str("10.0.0.7"))],
        ),
    );
    st.resources.insert(
        ResourceAddr::new("dns_zone", "tenant"),
        res(
            Phase::CreateDnsZone,
            Value::map([("name", Value::str("acme.matih.ai"))]),
            vec![("nameservers", Value::List(vec![Value::str("ns1.matih.ai."), secret]))],
        ),
    );
    let rules = Value::List(vec![Value::map([("host", Value::str("acme.matih.ai"))])]);
    st.resources.insert(
        ResourceAddr::new("kubernetes_ingress", "tenant"),
        res(Phase::CreateTenantIngress, Value::map([("spec", Value::map([("rules", rules)]))]), vec![]),
    );
    let doc = StatusDoc::from_state(&st);
    assert_eq!((doc.tier.as_deref(), doc.region.as_deref()), (Some("professional"), Some("eastus")));
    let outs: Vec<(String, String, String)> =
        doc.outputs.iter().map(|o| (o.resource.clone(), o.name.clone(), o.value.to_string())).collect();
    assert_eq!(
        outs,
        [
            ("dns_zone.tenant".to_string(), "zone".to_string(), "\"acme.matih.ai\"".to_string()),
            ("kubernetes_ingress.tenant".into(), "url".into(), "\"https://acme.matih.ai\"".into()),
            ("kubernetes_service.ingress_controller".into(), "load_balancer_ip".into(), "\"10.0.0.7\"".into()),
        ],
        "a secret, and a list holding one, are left out"
    );
    assert!(!serde_json::to_string(&doc).unwrap().contains("sha256:00"));
    let summary = doc.summary();
    assert_eq!((summary.tier.as_deref(), summary.phases.len()), (Some("professional"), 10));
}
