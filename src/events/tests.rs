use super::status::StatusDoc;
use super::*;

/// A feed file as matih wrote it before events had a version: every line is still an event, and
/// folding them gives the document its run left behind.
#[test]
fn a_feed_written_before_versions_reads_as_version_1() {
    let text = include_str!("../../tests/fixtures/feed-before-version-1.jsonl");
    let events: Vec<Event> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    assert_eq!(events.len(), 13);
    assert!(events.iter().all(|e| e.version == 1 && e.tenant == "acme" && e.kind != EventKind::Unknown));
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(&kinds[..3], [EventKind::Snapshot, EventKind::PhaseStarted, EventKind::ResourceStarted]);
    assert_eq!(events[3].duration_ms, Some(311));
    assert_eq!(events[8].delay_ms, Some(500));
    assert_eq!(events[12].tenant_status, Some(TenantStatus::Failed));
    assert!(events.iter().all(|e| e.plan.is_none() && e.summary.is_none()));

    let mut doc = StatusDoc::empty("acme", "");
    for e in &events {
        doc.fold(e);
    }
    assert_eq!(doc.status, TenantStatus::Failed);
    assert_eq!(doc.phases[0].state, "COMPLETED");
    assert_eq!(doc.phases[1].state, "FAILED");
    assert_eq!(doc.phases[1].duration_ms, Some(1570));
    assert!(doc.provisioning_error.as_deref().unwrap().contains("connection refused"));
    assert_eq!(doc.tenant_id, "550e8400-e29b-41d4-a716-446655440000", "from the first snapshot");

    // Written again by this version, a line is the same event plus its version.
    let again = serde_json::to_value(&events[3]).unwrap();
    let mut old: serde_json::Value = serde_json::from_str(text.lines().nth(3).unwrap()).unwrap();
    old["version"] = serde_json::json!(1);
    assert_eq!(again, old);
}

#[test]
fn plan_and_summary_events_have_no_tenant_and_read_back_the_same() {
    let plan = Event::plan(PlanCounts { to_adopt: 2, to_add: 3, to_change: 1, to_destroy: 0 });
    let line = serde_json::to_value(&plan).unwrap();
    assert_eq!(line["type"], "plan");
    assert_eq!(line["version"], VERSION);
    assert_eq!(
        (line["toAdd"].clone(), line["toChange"].clone(), line["toDestroy"].clone()),
        (3.into(), 1.into(), 0.into())
    );
    assert_eq!(line["toAdopt"], 2);
    assert!(line.get("tenant").is_none() && line.get("destroy").is_none());
    assert_eq!(serde_json::from_value::<Event>(line).unwrap(), plan);

    let counts =
        RunSummary { tenants: 2, failed: 1, applied_by_another_run: 0, adopted: 2, added: 4, changed: 0, destroyed: 1 };
    let summary = Event::summary(counts, false, 1234);
    let line = serde_json::to_value(&summary).unwrap();
    assert_eq!(line["outcome"], "failed");
    assert_eq!(line["durationMs"], 1234);
    assert_eq!((line["appliedByAnotherRun"].clone(), line["adopted"].clone()), (0.into(), 2.into()));
    assert_eq!(serde_json::from_value::<Event>(line).unwrap(), summary);

    // A resource event is neither: no counts appear on it.
    let ev = Event::new("acme", EventKind::ResourceStarted).in_phase(Some(Phase::CreateNamespace));
    let back: Event = serde_json::from_str(&serde_json::to_string(&ev).unwrap()).unwrap();
    assert_eq!(back, ev);
    assert_eq!(back.phase_name.as_deref(), Some("CREATE_NAMESPACE"));
}

#[test]
fn a_type_from_a_newer_matih_is_read_as_unknown() {
    let ev: Event = serde_json::from_str(r#"{"version":2,"seq":1,"tenant":"acme","type":"quantum_leap"}"#).unwrap();
    assert_eq!((ev.kind, ev.version), (EventKind::Unknown, 2));
}
