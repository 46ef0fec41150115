//! The `tenant.provisioned` event and its outbox. Without a broker: an event waits in the outbox
//! while the broker is down (kept, retried with backoff, later events held behind it, one deliverer
//! at a time). With a real Kafka-compatible broker (Tansu): after the broker comes up, the event is
//! delivered exactly once and reads back with its fields.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use matih::notify::{self, Deliverer, Delivery, Outbox, Outcome, TenantInfo};
use matih::spec::{KafkaPlatform, NotifyPlatform};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn config(port: u16) -> NotifyPlatform {
    NotifyPlatform {
        kafka: Some(KafkaPlatform { brokers: vec![format!("127.0.0.1:{port}")], topic: "tenant-events".into() }),
        ..Default::default()
    }
}

fn outcome(ok: bool) -> Outcome {
    Outcome {
        info: TenantInfo {
            slug: "acme".into(),
            tenant_id: "550e8400-e29b-41d4-a716-446655440000".into(),
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

#[test]
fn events_wait_in_the_outbox_while_the_broker_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::new(dir.path());
    let cfg = config(free_port()); // nothing listens there
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
    assert_eq!((topic.as_str(), key.as_str()), ("tenant-events", "550e8400-e29b-41d4-a716-446655440000"));
    assert_eq!(value["type"], "tenant.provisioned");
    assert_eq!(entries[1].delivery.kind(), "kafka");
    // Not due again yet: the next pass leaves it alone.
    let r = rt.block_on(outbox.deliver_due(&d));
    assert!(r.failed.is_empty() && r.waiting == 2, "{r:?}");
    assert_eq!(notify::outbox::backoff(1), Duration::from_secs(1));
    assert_eq!(notify::outbox::backoff(30), notify::outbox::MAX_BACKOFF);
}

#[test]
fn one_process_at_a_time_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::new(dir.path());
    let cfg = config(free_port());
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

fn tansu() -> PathBuf {
    if let Some(p) = std::env::var_os("MATIH_TANSU") {
        return p.into();
    }
    let on_path = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("tansu"))
        .find(|p| p.is_file());
    on_path.or_else(|| Some(PathBuf::from("/opt/tansu/bin/tansu")).filter(|p| p.is_file())).expect(
        "the Tansu broker is not installed: cargo install tansu --locked --features dynostore --root /opt/tansu \
         (about 20 minutes on 2 cores), or set MATIH_TANSU",
    )
}

#[test]
#[ignore = "needs the Tansu broker (cargo install tansu --locked --features dynostore --root /opt/tansu); run with --ignored"]
fn events_are_delivered_once_after_the_broker_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::new(dir.path());
    let port = free_port();
    let cfg = config(port);
    let id = enqueue(&outbox, &cfg, true);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let d = Deliverer::new(&cfg, Duration::from_secs(3));
    // The broker is down: the event stays.
    let r = rt.block_on(outbox.deliver(&d, true));
    assert_eq!(r.failed.len(), 1, "{r:?}");
    assert_eq!(outbox.entries().len(), 1);

    // The broker comes up.
    let url = format!("tcp://127.0.0.1:{port}");
    let broker = Command::new(tansu())
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "tansu did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    rt.block_on(async {
        let client = rskafka::client::ClientBuilder::new(vec![format!("127.0.0.1:{port}")]).build().await.unwrap();
        client.controller_client().unwrap().create_topic("tenant-events", 1, 1, 5_000).await.unwrap();

        let r = outbox.deliver(&d, true).await;
        assert_eq!(r.delivered, [id], "{r:?}");
        assert!(outbox.entries().is_empty());
        let r = outbox.deliver(&d, true).await;
        assert!(r.delivered.is_empty() && r.failed.is_empty(), "nothing left to send: {r:?}");

        let partition = client
            .partition_client("tenant-events", 0, rskafka::client::partition::UnknownTopicHandling::Retry)
            .await
            .unwrap();
        let (records, high) = partition.fetch_records(0, 1..1_000_000, 1_000).await.unwrap();
        assert_eq!(high, 1, "exactly one record on the topic");
        assert_eq!(records.len(), 1);
        let rec = &records[0].record;
        assert_eq!(rec.key.as_deref(), Some(b"550e8400-e29b-41d4-a716-446655440000".as_slice()));
        let v: serde_json::Value = serde_json::from_slice(rec.value.as_deref().unwrap()).unwrap();
        assert_eq!(v["type"], "tenant.provisioned");
        assert_eq!(v["slug"], "acme");
        assert_eq!(v["tenantId"], "550e8400-e29b-41d4-a716-446655440000");
        assert_eq!((v["tier"].as_str(), v["region"].as_str()), (Some("professional"), Some("eastus")));
        assert_eq!(v["durationMs"], 9120);
        assert_eq!(v["timestamp"], "2026-02-12T10:00:09Z");
        assert!(v["eventId"].is_string());
        assert_eq!(rec.headers.get("type").map(Vec::as_slice), Some(b"tenant.provisioned".as_slice()));
    });
    kill(broker);
}
