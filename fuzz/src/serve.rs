//! `matih serve`'s request handling, without a socket: the fuzz input is the raw bytes a client
//! sends (request line, headers, pipelined requests, WebSocket upgrades), served by the same hyper
//! HTTP/1 connection and the same handler (`serve::handle`) as `matih serve`, over an in-memory
//! pipe. The store is a state directory with a feed for tenant `acme` (from its spec) and a token,
//! so that both the refused and the authorized paths run. A server error (5xx) for any request, or
//! a connection that does not end when the client has sent everything and closed, is a finding.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use matih::events::status::StatusDoc;
use matih::events::{Event, EventKind};
use matih::serve::source::Source;
use matih::serve::{App, KnownTenant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "fuzz-token";

/// The state directory the server reads (under TMPDIR, one per process).
pub fn state_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("matih-fuzz-serve-{}", std::process::id()));
        let feed = matih::apply::feed::feed_dir(&dir);
        std::fs::create_dir_all(&feed).unwrap();
        // A run of acme as the feed records it: phase 1 started, a resource, the phase failed.
        let mut lines = Vec::new();
        let mut seq = 0;
        let mut ev = |kind: EventKind, f: &dyn Fn(&mut Event)| {
            seq += 1;
            let mut e = Event::new("acme", kind);
            e.seq = seq;
            e.run = Some("run-1".into());
            f(&mut e);
            lines.push(serde_json::to_string(&e).unwrap());
        };
        ev(EventKind::Snapshot, &|e| e.status = Some(Box::new(StatusDoc::empty("acme", ACME_ID))));
        ev(EventKind::PhaseStarted, &|e| e.phase = Some(1));
        ev(EventKind::ResourceStarted, &|e| {
            e.phase = Some(1);
            e.resource = Some("kubernetes_namespace.tenant".into());
            e.action = Some("create".into());
        });
        ev(EventKind::ResourceFinished, &|e| {
            e.phase = Some(1);
            e.resource = Some("kubernetes_namespace.tenant".into());
            e.outcome = Some("failed".into());
            e.error = Some("boom".into());
        });
        ev(EventKind::PhaseFinished, &|e| {
            e.phase = Some(1);
            e.outcome = Some("failed".into());
        });
        std::fs::write(matih::apply::feed::feed_file(&dir, "acme"), lines.join("\n") + "\n").unwrap();
        dir
    })
}

const ACME_ID: &str = "550e8400-e29b-41d4-a716-446655440000";

fn app(token: bool) -> Arc<App> {
    static APPS: OnceLock<(Arc<App>, Arc<App>)> = OnceLock::new();
    let (open, guarded) = APPS.get_or_init(|| {
        let specs = vec![KnownTenant {
            slug: "acme".into(),
            tenant_id: ACME_ID.into(),
            tier: "professional".into(),
            region: "eastus".into(),
        }];
        let make = |token: Option<&str>| App::with_options(Source::sled(state_dir()), token, None, specs.clone());
        (make(None), make(Some(TOKEN)))
    });
    if token {
        guarded.clone()
    } else {
        open.clone()
    }
}

/// One input.
pub fn run(data: &[u8]) {
    let Some((&mode, request)) = data.split_first() else { return };
    let app = app(mode & 1 == 1);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let response = rt.block_on(async move {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (mut rd, mut wr) = tokio::io::split(client);
        let conn = tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| matih::serve::handle(app.clone(), req));
            // As `serve::run` builds it, but with half-closes allowed: the harness shuts its
            // write side after the input, and every request of the input must still be answered
            // (clients of the real server keep their side open while they wait).
            let _ = hyper::server::conn::http1::Builder::new()
                .half_close(true)
                .serve_connection(TokioIo::new(server), service)
                .with_upgrades()
                .await;
        });
        // Written while the answers are read: pipelined requests may be answered before all
        // of them are sent, and neither side may wait for the other's buffer.
        let request = request.to_vec();
        let send = tokio::spawn(async move {
            wr.write_all(&request).await.ok();
            wr.shutdown().await.ok();
        });
        let receive = async {
            // Until the server closes; after a 101 the connection is a WebSocket, which streams
            // until the client leaves: the harness leaves once the 101's headers are in.
            let mut out = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
                if switched(&out) {
                    break;
                }
            }
            out
        };
        let out = tokio::time::timeout(Duration::from_secs(30), receive).await;
        send.abort();
        conn.abort();
        out
    });
    let Ok(response) = response else { panic!("the connection did not end within 30 s after the client closed it") };
    let text = String::from_utf8_lossy(&response);
    for line in text.split("\r\n").filter(|l| l.starts_with("HTTP/1.1 ")) {
        let code = line.get(9..12).unwrap_or("");
        assert!(!code.starts_with('5') || code == "503", "a server error for a client's request: {line}");
    }
}

/// Whether `out` holds a complete `101 Switching Protocols` head.
fn switched(out: &[u8]) -> bool {
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    find(out, b"HTTP/1.1 101 ").is_some_and(|at| find(&out[at..], b"\r\n\r\n").is_some())
}
