//! The real Apache Kafka broker of the tests (scripts/lib/kafka.sh): the one `scripts/test` starts
//! for the whole run (`MATIH_TEST_KAFKA` names its directory), brokers a test starts and stops
//! itself, topics, and an independent reader: Kafka's own console consumer, run from the same jars.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A running broker: its directory (as kafka_start wrote it), address and jars.
#[derive(Clone, Debug)]
pub struct Broker {
    pub dir: PathBuf,
    pub bootstrap: String,
    pub libs: PathBuf,
}

/// The broker `scripts/test` started for the run. Its absence fails the test: tests never skip a
/// server they need.
pub fn shared() -> Broker {
    let dir = match std::env::var_os("MATIH_TEST_KAFKA") {
        Some(d) if Path::new(&d).join("bootstrap").is_file() => PathBuf::from(d),
        _ => panic!(
            "these tests need the Apache Kafka broker: run them through scripts/test, or start it with \
             `scripts/dev-env up && source .dev-env/env`, or `. scripts/lib/kafka.sh && kafka_start /tmp/matih-kafka` \
             (MATIH_TEST_KAFKA names its directory)"
        ),
    };
    Broker::read(&dir)
}

impl Broker {
    fn read(dir: &Path) -> Broker {
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .unwrap_or_else(|e| panic!("{}/{f}: {e}", dir.display()))
                .trim()
                .to_string()
        };
        Broker { dir: dir.to_path_buf(), bootstrap: read("bootstrap"), libs: PathBuf::from(read("libs.path")) }
    }

    /// Starts a broker of its own in `dir` on the given ports (with the shared broker's jars:
    /// nothing is fetched), through kafka_start. Stopped by [`Broker::stop`] or on drop of the guard.
    pub fn start_own(dir: &Path, port: u16, controller_port: u16) -> OwnBroker {
        let libs = shared().libs;
        let out = Command::new("bash")
            .arg("-c")
            .arg(r#". "$1/scripts/lib/kafka.sh" && kafka_start "$2" "$3" "$4""#)
            .arg("bash")
            .arg(root())
            .arg(dir)
            .arg(port.to_string())
            .arg(controller_port.to_string())
            .env("MATIH_KAFKA_LIBS", &libs)
            .stdin(Stdio::null())
            .output()
            .expect("bash");
        assert!(out.status.success(), "kafka_start failed: {}", String::from_utf8_lossy(&out.stderr));
        eprintln!("{}", String::from_utf8_lossy(&out.stderr).trim());
        OwnBroker(Broker::read(dir))
    }

    fn java(&self, class: &str) -> Command {
        let mut c = Command::new("java");
        c.arg("-Xmx256m").arg("-XX:TieredStopAtLevel=1").arg("-cp").arg(self.libs.join("*")).arg(class);
        c.stdin(Stdio::null());
        c
    }

    /// Creates `topic` (one partition) with Kafka's own TopicCommand; `configs` are topic configs.
    pub fn create_topic(&self, topic: &str, configs: &[(&str, &str)]) {
        let mut c = self.java("org.apache.kafka.tools.TopicCommand");
        c.args(["--bootstrap-server", &self.bootstrap, "--create", "--topic", topic]).args([
            "--partitions",
            "1",
            "--replication-factor",
            "1",
        ]);
        for (k, v) in configs {
            c.arg("--config").arg(format!("{k}={v}"));
        }
        run(c, "TopicCommand --create");
    }

    /// Changes a topic config with Kafka's own ConfigCommand.
    pub fn alter_topic(&self, topic: &str, key: &str, value: &str) {
        let mut c = self.java("org.apache.kafka.tools.ConfigCommand");
        c.args(["--bootstrap-server", &self.bootstrap, "--alter", "--entity-type", "topics", "--entity-name", topic])
            .args(["--add-config", &format!("{key}={value}")]);
        run(c, "ConfigCommand --alter");
    }

    /// The records of `topic` (partition 0, where matih publishes), read from the beginning by
    /// Kafka's console consumer (a client independent of matih's) until it has `expected` of
    /// them. That they are all there is checked with the partition's end offset, asked of the
    /// broker, which must equal `expected`: nothing was written twice.
    pub fn consume(&self, topic: &str, expected: usize) -> Vec<Consumed> {
        let end = self.end_offset(topic);
        assert_eq!(end, expected as i64, "{topic} holds {end} records, not {expected}");
        let mut c = self.java("org.apache.kafka.tools.consumer.ConsoleConsumer");
        c.args(["--bootstrap-server", &self.bootstrap, "--topic", topic])
            // Partition 0 assigned directly: no consumer group to join, so no waiting for a coordinator.
            .args(["--partition", "0", "--offset", "earliest"])
            .args(["--max-messages", &expected.to_string(), "--timeout-ms", "120000"])
            .args(["--formatter-property", "print.headers=true", "--formatter-property", "print.key=true"])
            .args(["--formatter-property", "print.offset=true", "--formatter-property", "print.partition=true"])
            .args(["--formatter-property", "key.separator=\u{1f}", "--formatter-property", "headers.separator=\u{1e}"]);
        let out = c.output().expect("java");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "the console consumer failed: {stderr}");
        let records: Vec<Consumed> =
            String::from_utf8(out.stdout).unwrap().lines().map(|l| Consumed::parse(l, &stderr)).collect();
        assert_eq!(records.len(), expected, "{records:#?}");
        records
    }

    /// The end offset (high watermark) of partition 0 of `topic`.
    fn end_offset(&self, topic: &str) -> i64 {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let client = rskafka::client::ClientBuilder::new(vec![self.bootstrap.clone()]).build().await.unwrap();
            let p = client
                .partition_client(topic, 0, rskafka::client::partition::UnknownTopicHandling::Error)
                .await
                .unwrap();
            p.get_offset(rskafka::client::partition::OffsetAt::Latest).await.unwrap()
        })
    }
}

fn run(mut c: Command, what: &str) {
    let out = c.output().expect("java");
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One record as the console consumer printed it.
#[derive(Clone, Debug)]
pub struct Consumed {
    pub partition: u32,
    pub offset: u64,
    pub key: String,
    pub headers: BTreeMap<String, String>,
    pub value: serde_json::Value,
}

impl Consumed {
    fn parse(line: &str, stderr: &str) -> Consumed {
        // Partition:N␟Offset:N␟headers␟key␟value
        let f: Vec<&str> = line.split('\u{1f}').collect();
        assert_eq!(f.len(), 5, "unexpected console consumer line {line:?} ({stderr})");
        let headers = if f[2] == "NO_HEADERS" {
            BTreeMap::new()
        } else {
            f[2].split('\u{1e}')
                .map(|h| {
                    // KEY:VALUE (header keys hold no colon).
                    let (k, v) = h.split_once(':').unwrap_or_else(|| panic!("header {h:?}"));
                    (k.to_string(), v.to_string())
                })
                .collect()
        };
        Consumed {
            partition: f[0].strip_prefix("Partition:").and_then(|n| n.parse().ok()).expect("partition"),
            offset: f[1].strip_prefix("Offset:").and_then(|n| n.parse().ok()).expect("offset"),
            key: f[3].to_string(),
            headers,
            value: serde_json::from_str(f[4]).unwrap_or_else(|e| panic!("value {:?}: {e}", f[4])),
        }
    }
}

/// A broker a test started; stopped when dropped.
pub struct OwnBroker(pub Broker);

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg("-c")
            .arg(r#". "$1/scripts/lib/kafka.sh" && kafka_stop "$2""#)
            .arg("bash")
            .arg(root())
            .arg(&self.0.dir)
            .status();
    }
}

/// A topic name no other test uses.
pub fn unique_topic(what: &str) -> String {
    format!("{what}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// The event schema (schemas/events/tenant-event.schema.json), compiled, with formats checked.
pub fn event_schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join("schemas/events/tenant-event.schema.json")).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    jsonschema::options().should_validate_formats(true).build(&schema).expect("the event schema compiles")
}

/// Panics with every violation when `value` does not match the event schema.
pub fn assert_valid_event(value: &serde_json::Value) {
    let v = event_schema();
    let errors: Vec<String> = v.iter_errors(value).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(
        errors.is_empty(),
        "the event does not match schemas/events/tenant-event.schema.json: {errors:?}\n{value:#}"
    );
}
