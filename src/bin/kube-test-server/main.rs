//! A Kubernetes API test server: speaks the Kubernetes REST protocol over plain HTTP on loopback, with an
//! in-memory store, server-side apply, simple controllers, latency and fault injection.
//!
//! Behaviour worth knowing when writing tests against it:
//! - Discovery (`/version`, `/api`, `/apis`, `/api/v1`, `/apis/{g}/{v}`) is served as plain JSON, which
//!   `kubectl` accepts in place of aggregated discovery; `/openapi/v3` lists PATCH operations only (so that
//!   `kubectl apply` validates on the server), `/openapi/v2` answers 404.
//! - `kubectl get` receives server-side Tables; everything else is JSON. Protobuf request bodies (sent by
//!   `kubectl create namespace NAME`) are refused with 415: use `kubectl create -f` or `apply` instead.
//! - Lists are atomic for server-side apply (as for custom resources without list-type markers): a list is
//!   owned as a whole by the managers that set it.
//! - Deleting a namespace marks it Terminating, deletes its objects at once, and removes the namespace after
//!   `--namespace-delete-delay-ms` (default 0, i.e. on the next controller tick, about 10 ms).
//! - A namespace in the body that differs from the URL is a 400 BadRequest, as on a real API server.
//! - Watches (`?watch=true`) stream newline-delimited events; a `resourceVersion` replays what happened since.
//!
//! See `admin.rs` for the admin API under `/_admin/` and `api.rs` for the served REST paths.

mod admin;
mod api;
mod fields;
mod kinds;
mod patch;
mod selector;
mod status;
mod store;
mod table;
mod util;

use admin::Admin;
use api::{ApiRequest, Reply};
use bytes_body::{full, Body, ChannelBody};
use clap::Parser;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{json, Value};
use status::ApiError;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::{RuntimeConfig, Store};

/// Command line of the server.
#[derive(Parser, Debug)]
#[command(name = "kube-test-server", about = "A Kubernetes API test server for matih's tests")]
struct Cli {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// File to write the server URL to once it accepts connections.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Time from a Deployment's creation or spec change until it reports all replicas available.
    #[arg(long, default_value_t = 200)]
    deployment_ready_delay_ms: u64,
    /// Time from a LoadBalancer Service's creation until it gets an ingress IP.
    #[arg(long, default_value_t = 200)]
    lb_ip_delay_ms: u64,
    /// Addresses handed to LoadBalancer Services, in order.
    #[arg(long, default_value = "20.85.123.0/24")]
    lb_ip_pool: String,
    /// Time from a cert-manager Certificate's creation or spec change until it is Ready.
    #[arg(long, default_value_t = 200)]
    certificate_ready_delay_ms: u64,
    /// Time a deleted namespace stays Terminating (its objects are deleted at once).
    #[arg(long, default_value_t = 0)]
    namespace_delete_delay_ms: u64,
    /// Delay added to every API request.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
}

/// Everything behind one lock: requests are short and never wait while holding it.
struct Shared {
    store: Store,
    admin: Admin,
}

struct App {
    shared: Mutex<Shared>,
    seq: std::sync::atomic::AtomicU64,
}

impl App {
    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        // A panic while holding the lock would be a bug; the data is still usable for a test server.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

mod bytes_body {
    //! Response bodies: a whole JSON document, or a stream of watch events.

    use http_body_util::{combinators::BoxBody, BodyExt, Full};
    use hyper::body::{Bytes, Frame};
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::sync::mpsc;

    pub type Body = BoxBody<Bytes, Infallible>;

    pub fn full(bytes: Vec<u8>) -> Body {
        Full::new(Bytes::from(bytes)).boxed()
    }

    /// A body fed line by line through a channel; it ends when the sender is dropped.
    pub struct ChannelBody(pub mpsc::Receiver<Bytes>);

    impl hyper::body::Body for ChannelBody {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
        }
    }
}

fn json_response(code: u16, body: &Value, retry_after: Option<u64>) -> Response<Body> {
    let mut b = Response::builder().status(code).header("content-type", "application/json");
    if let Some(s) = retry_after {
        b = b.header("retry-after", s.to_string());
    }
    b.body(full(serde_json::to_vec(body).unwrap_or_default())).expect("valid response")
}

fn header(req: &Request<Incoming>, name: &str) -> String {
    req.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

async fn serve(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    use http_body_util::BodyExt;
    let started = Instant::now();
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().unwrap_or_default().to_string();
    let content_type = header(&req, "content-type");
    let accept = header(&req, "accept");
    let user_agent = header(&req, "user-agent");
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(e) => return Ok(json_response(400, &ApiError::bad_request(format!("reading body: {e}")).body, None)),
    };

    if path == "/_admin" || path.starts_with("/_admin/") {
        let mut guard = app.lock();
        let Shared { store, admin } = &mut *guard;
        let (code, v) = admin::handle(admin, store, &method, &path, &body);
        return Ok(json_response(code, &v, None));
    }

    let latency = app.lock().store.config.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }

    let request =
        ApiRequest { method, path, query: util::parse_query(&raw_query), content_type, accept, user_agent, body };
    let mut guard = app.lock();
    let Shared { store, admin } = &mut *guard;
    let kinds = store.kinds();
    let route = api::route(&request.path, &kinds);
    let info = api::classify(&request, route.as_ref().ok());
    let outcome = match admin.check_faults(&request.path, &info) {
        Some(fault) => Err(fault),
        None => route.and_then(|r| api::handle(store, &request, r)),
    };
    let (code, response) = match outcome {
        Ok(Reply::Json(code, v)) => (code, json_response(code, &v, None)),
        Ok(Reply::Watch(watch)) => (200, start_watch(*watch)),
        Err(e) => (e.code, json_response(e.code, &e.body, e.retry_after)),
    };
    admin.requests.push(json!({
        "seq": app.seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
        "method": request.method,
        "path": request.path,
        "query": raw_query,
        "contentType": request.content_type,
        "accept": request.accept,
        "userAgent": request.user_agent,
        "fieldManager": request.param("fieldManager"),
        "verb": info.verb,
        "resource": info.resource,
        "subresource": info.subresource,
        "namespace": info.namespace,
        "name": info.name,
        "status": code,
        "durationMs": started.elapsed().as_millis() as u64,
    }));
    Ok(response)
}

/// Streams watch events as newline-delimited JSON until the timeout, a lagging feed or the client leaving.
fn start_watch(mut watch: api::Watch) -> Response<Body> {
    use http_body_util::BodyExt;
    use hyper::body::Bytes;
    use tokio::sync::{broadcast::error::RecvError, mpsc};
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let line = |v: &Value| {
        let mut b = serde_json::to_vec(v).unwrap_or_default();
        b.push(b'\n');
        Bytes::from(b)
    };
    tokio::spawn(async move {
        for v in std::mem::take(&mut watch.initial) {
            if tx.send(line(&v)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(Duration::from_secs(watch.timeout_secs));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                event = watch.feed.recv() => match event {
                    Ok(e) if watch.wants(&e) => {
                        if tx.send(line(&watch.line(e.kind, &e.object))).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return,
                },
            }
        }
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(ChannelBody(rx).boxed())
        .expect("valid response")
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let lb_pool = match store::parse_pool(&cli.lb_ip_pool) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("kube-test-server: --lb-ip-pool: {e}");
            std::process::exit(2);
        }
    };
    let config = RuntimeConfig {
        latency_ms: cli.latency_ms,
        deployment_ready_delay_ms: cli.deployment_ready_delay_ms,
        lb_ip_delay_ms: cli.lb_ip_delay_ms,
        certificate_ready_delay_ms: cli.certificate_ready_delay_ms,
        namespace_delete_delay_ms: cli.namespace_delete_delay_ms,
        never_ready_deployments: false,
        never_assign_lb_ip: false,
        never_ready_certificates: false,
    };
    let app = Arc::new(App {
        shared: Mutex::new(Shared {
            store: Store::new(config.clone(), lb_pool),
            admin: Admin { startup: config, faults: Vec::new(), next_fault_id: 1, requests: Vec::new() },
        }),
        seq: std::sync::atomic::AtomicU64::new(1),
    });

    let listener = match tokio::net::TcpListener::bind(cli.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("kube-test-server: cannot listen on {}: {e}", cli.listen);
            std::process::exit(1);
        }
    };
    let url = format!("http://{}", listener.local_addr().expect("bound address"));

    let controllers = app.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        loop {
            tick.tick().await;
            controllers.lock().store.run_controllers();
        }
    });

    if let Some(path) = &cli.ready_file {
        let tmp = path.with_extension("tmp");
        if let Err(e) = std::fs::write(&tmp, &url).and_then(|()| std::fs::rename(&tmp, path)) {
            eprintln!("kube-test-server: cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
    }
    println!("listening on {url}");
    use std::io::Write;
    let _ = std::io::stdout().flush();

    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("kube-test-server: accept: {e}");
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| serve(app.clone(), req));
            let io = hyper_util::rt::TokioIo::new(stream);
            // Connection errors (a client hanging up mid-request) concern only that connection.
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
        });
    }
}
