//! The `tenant.provisioned` event on a real Apache Kafka broker (scripts/lib/kafka.sh; the shared
//! one `scripts/test` starts, named by `MATIH_TEST_KAFKA`, and brokers a test starts itself), read
//! back by an independent client: Kafka's own console consumer. Checked: the CloudEvents 1.0
//! binary-mode headers, the key, the payload against schemas/events/tenant-event.schema.json; an
//! event queued while the broker is down is delivered exactly once when it comes up; a topic that
//! does not exist and a broker that refuses the record give a retry, never a failed provisioning;
//! two `matih serve` processes racing over one outbox deliver every event once, in order.

use crate::support::kafka;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use matih::notify::{self, Completion, Deliverer, Delivery, Outbox, Outcome, TenantInfo};
use matih::spec::{KafkaPlatform, NotifyPlatform};

const TENANT_ID: &str = "550e8400-e29b-41d4-a716-446655440000";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn config(bootstrap: &str, topic: &str) -> NotifyPlatform {
    NotifyPlatform {
        kafka: Some(KafkaPlatform { brokers: vec![bootstrap.to_string()], topic: topic.into() }),
        ..Default::default()
    }
}

fn outcome(ok: bool) -> Outcome {
    Outcome {
        info: TenantInfo {
            slug: "acme".into(),
            tenant_id: TENANT_ID.into(),
            tier: "professional".into(),
            region: "eastus".into(),
            emails: vec!["admin@acme.example".into()],
        },
        ok,
        status: if ok { "ACTIVE" } else { "FAILED" }.into(),
        error: (!ok).then(|| "phase 3 failed".to_string()),
        duration: Duration::from_millis(9120),
        finished_at: "2026-02-12T10:00:09Z".into(),
    }
}

fn enqueue(outbox: &Outbox, cfg: &NotifyPlatform, ok: bool) -> String {
    let msgs = notify::messages(cfg, &outcome(ok));
    assert_eq!(msgs.len(), 1, "only Kafka is configured");
    outbox.enqueue("acme", msgs.into_iter().next().unwrap()).unwrap()
}

/// Checks one record against what matih promises consumers: key, CloudEvents headers, schema.
fn check_record(r: &kafka::Consumed, ok: bool) {
    let kind = if ok { "tenant.provisioned" } else { "tenant.provisioning_failed" };
    assert_eq!(r.key, TENANT_ID, "the key is the tenant id: {r:?}");
    kafka::assert_valid_event(&r.value);
    let v = &r.value;
    assert_eq!(v["type"], kind);
    assert_eq!((v["slug"].as_str(), v["tenantId"].as_str()), (Some("acme"), Some(TENANT_ID)));
    assert_eq!((v["tier"].as_str(), v["region"].as_str()), (Some("professional"), Some("eastus")));
    assert_eq!(v["durationMs"], 9120);
    assert_eq!(v["status"], if ok { "ACTIVE" } else { "FAILED" });
    let h = |k: &str| r.headers.get(k).map(String::as_str).unwrap_or_else(|| panic!("no header {k}: {r:?}"));
    assert_eq!(h("ce_specversion"), "1.0");
    assert_eq!(h("ce_id"), v["eventId"].as_str().unwrap());
    assert_eq!(h("ce_type"), format!("ai.matih.{kind}"));
    assert_eq!(h("ce_source"), notify::CLOUDEVENT_SOURCE);
    assert_eq!(h("ce_subject"), "acme");
    assert_eq!(h("ce_time"), "2026-02-12T10:00:09Z");
    assert_eq!(h("content-type"), "application/json");
    assert_eq!(r.headers.len(), 7, "nothing but the CloudEvents attributes and content-type: {:?}", r.headers);
}

#[test]
fn events_wait_in_the_outbox_while_the_broker_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::new(dir.path());
    let cfg = config(&format!("127.0.0.1:{}", free_port()), "tenant-events"); // nothing listens there
    let first = enqueue(&outbox, &cfg, true);
    let second = enqueue(&outbox, &cfg, false);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let d = Deliverer::new(&cfg, Duration::from_secs(2));
    let r = rt.block_on(outbox.deliver_due(&d));
    assert!(r.delivered.is_empty());
    assert_eq!(r.failed.len(), 1, "the first event failed, the second waited behind it: {r:?}");
    assert_eq!(r.failed[0].0, first);
    assert_eq!(r.waiting, 1);
    let entries = outbox.entries();
    assert_eq!(entries.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), [first.clone(), second]);
    assert_eq!(entries[0].attempts, 1);
    assert!(entries[0].last_error.as_deref().is_some_and(|e| e.contains("127.0.0.1")), "{:?}", entries[0]);
    let Delivery::Kafka { topic, key, value } = &entries[0].delivery else { panic!() };
    assert_eq!((topic.as_str(), key.as_str()), ("tenant-events", TENANT_ID));
    assert_eq!(value["type"], "tenant.provisioned");
    kafka::assert_valid_event(value);
    let Delivery::Kafka { value, .. } = &entries[1].delivery else { panic!() };
    kafka::assert_valid_event(value);
    // Not due again yet: the next pass leaves it alone.
    let r = rt.block_on(outbox.deliver_due(&d));
    assert!(r.failed.is_empty() && r.waiting == 2, "{r:?}");
    assert_eq!(notify::outbox::backoff(1), Duration::from_secs(1));
    assert_eq!(notify::outbox::backoff(30), notify::outbox::MAX_BACKOFF);
}

#[test]
fn the_schema_rejects_what_consumers_could_not_rely_on() {
    let mut ev =
        serde_json::to_value(notify::messages(&config("x:1", "t"), &outcome(false))).unwrap()[0]["value"].clone();
    kafka::assert_valid_event(&ev);
    let schema = kafka::event_schema();
    ev.as_object_mut().unwrap().remove("error");
    assert!(!schema.is_valid(&ev), "a failure event without its reason");
    let mut ok =
        serde_json::to_value(notify::messages(&config("x:1", "t"), &outcome(true))).unwrap()[0]["value"].clone();
    ok["timestamp"] = "yesterday".into();
    assert!(!schema.is_valid(&ok), "a timestamp that is not RFC 3339");
}

#[test]
fn one_process_at_a_time_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::new(dir.path());
    let cfg = config(&format!("127.0.0.1:{}", free_port()), "tenant-events");
    enqueue(&outbox, &cfg, true);
    // Another process holds the delivery lock.
    let holder =
        Command::new("flock").arg(outbox.dir().join(".lock")).args(["sleep", "5"]).spawn().expect("flock (util-linux)");
    std::thread::sleep(Duration::from_millis(300));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = rt.block_on(outbox.deliver(&Deliverer::new(&cfg, Duration::from_secs(1)), true));
    assert!(r.busy && r.failed.is_empty() && r.delivered.is_empty(), "{r:?}");
    kill(holder);
}

fn kill(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

#[test]
fn events_queued_while_the_broker_is_down_are_delivered_once_when_it_comes_up() {
    let _ = kafka::shared(); // fails at once, with how to start it, when there is no broker
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::new(dir.path());
    let (port, controller_port) = (free_port(), free_port());
    let cfg = config(&format!("127.0.0.1:{port}"), "tenant-events");
    let first = enqueue(&outbox, &cfg, true);
    let second = enqueue(&outbox, &cfg, false);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let d = Deliverer::new(&cfg, Duration::from_secs(3));

    // The broker is down: both events stay, the second behind the first.
    let r = rt.block_on(outbox.deliver(&d, true));
    assert_eq!(r.failed.len(), 1, "{r:?}");
    assert!(r.failed[0].1.contains(&format!("127.0.0.1:{port}")), "the error names the broker: {r:?}");
    assert_eq!(r.waiting, 1);
    assert_eq!(outbox.entries().len(), 2);

    // The broker comes up on that address.
    let broker_dir = tempfile::tempdir().unwrap();
    let broker = kafka::Broker::start_own(broker_dir.path(), port, controller_port);
    broker.0.create_topic("tenant-events", &[]);
    let r = rt.block_on(outbox.deliver(&d, true));
    assert_eq!(r.delivered, [first, second], "{r:?}");
    assert!(outbox.entries().is_empty());
    let r = rt.block_on(outbox.deliver(&d, true));
    assert!(r.delivered.is_empty() && r.failed.is_empty(), "nothing left to send: {r:?}");

    let records = broker.0.consume("tenant-events", 2);
    assert_eq!(records.iter().map(|r| r.offset).collect::<Vec<_>>(), [0, 1]);
    check_record(&records[0], true);
    check_record(&records[1], false);
    assert_ne!(records[0].value["eventId"], records[1].value["eventId"]);
}

#[test]
fn a_missing_topic_and_a_refusing_broker_are_retried_never_fatal() {
    let broker = kafka::shared();
    let topic = kafka::unique_topic("missing");
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&broker.bootstrap, &topic);
    let completion =
        Completion { state_dir: dir.path().to_path_buf(), config: cfg.clone(), deliver_budget: Duration::from_secs(3) };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let outbox = Outbox::new(dir.path());

    // The topic does not exist (the broker creates none by itself): a warning, the event kept.
    let warnings = rt.block_on(completion.send(&outcome(true)));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("not delivered yet") && warnings[0].contains(&topic), "{warnings:?}");
    let entries = outbox.entries();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].attempts, 1);

    // The topic exists but refuses records over 64 bytes: the broker's error, the event kept.
    broker.create_topic(&topic, &[("max.message.bytes", "64")]);
    let d = Deliverer::new(&cfg, Duration::from_secs(3));
    let r = rt.block_on(outbox.deliver(&d, true));
    assert_eq!(r.failed.len(), 1, "{r:?}");
    assert!(r.failed[0].1.contains(&format!("Kafka produce to {topic}")), "{r:?}");
    let entries = outbox.entries();
    assert_eq!(entries[0].attempts, 2, "{entries:?}");
    assert!(entries[0].last_error.is_some());

    // The broker accepts it now: delivered once.
    broker.alter_topic(&topic, "max.message.bytes", "1048588");
    let r = rt.block_on(outbox.deliver(&d, true));
    assert_eq!(r.delivered.len(), 1, "{r:?}");
    assert!(outbox.entries().is_empty());
    let records = broker.consume(&topic, 1);
    check_record(&records[0], true);
}

/// `matih serve` in `dir` (its state, its outbox), with a platform file holding only `events`.
fn serve(dir: &std::path::Path) -> Child {
    let mut child = crate::support::matih_command()
        .args(["--platform", "matih.hcl", "serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .env("MATIH_STATE_DIR", dir.join("state"))
        .env("MATIH_LOG", "info")
        .env_remove("MATIH_SERVE_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("matih serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("listening on "), "serve said {line:?}");
    child
}

#[test]
fn two_serve_processes_racing_over_one_outbox_deliver_each_event_once_in_order() {
    let broker = kafka::shared();
    let topic = kafka::unique_topic("race");
    broker.create_topic(&topic, &[]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("matih.hcl"),
        format!("events {{\n  kafka_brokers = [\"{}\"]\n  topic = \"{topic}\"\n}}\n", broker.bootstrap),
    )
    .unwrap();
    let cfg = config(&broker.bootstrap, &topic);
    let outbox = Outbox::new(&dir.path().join("state"));
    let ids: Vec<String> = (0..30).map(|i| enqueue(&outbox, &cfg, i % 3 != 0)).collect();
    let events: Vec<String> = outbox
        .entries()
        .iter()
        .map(|e| match &e.delivery {
            Delivery::Kafka { value, .. } => value["eventId"].as_str().unwrap().to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(events.len(), ids.len());

    // Both start delivering at once, and again every 2 s.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| serve(dir.path()));
        let b = s.spawn(|| serve(dir.path()));
        (a.join().unwrap(), b.join().unwrap())
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !outbox.entries().is_empty() {
        assert!(Instant::now() < deadline, "the outbox was not emptied: {:?}", outbox.entries());
        std::thread::sleep(Duration::from_millis(100));
    }
    // A few more passes of both, with nothing left to send.
    std::thread::sleep(Duration::from_secs(3));
    kill(a);
    kill(b);

    let records = broker.consume(&topic, events.len());
    let got: Vec<&str> = records.iter().map(|r| r.value["eventId"].as_str().unwrap()).collect();
    assert_eq!(got, events, "every event exactly once, in the order queued");
    for (i, r) in records.iter().enumerate() {
        check_record(r, i % 3 != 0);
    }
}
