//! `matih serve`: provisioning progress over HTTP and WebSocket, and a status page.
//!
//! Where the data comes from ([`source`]): the applying process reports every progress event, and
//! a status snapshot after every phase, through [`feed::FeedHooks`]; serve folds those events into
//! a status document per tenant and broadcasts them to WebSocket clients ([`live`]), and reads the
//! tenants from the state store. Per backend:
//! - sled (process-exclusive: a running `matih apply` holds it for the whole run): the events go to
//!   a change feed file per tenant, `<state>/feed/<slug>.jsonl`, which serve tails; for a request
//!   serve opens the store briefly when it is free, and when it is busy answers from the feed (the
//!   tenants being applied) and from its last successful store read (the rest);
//! - PostgreSQL (shared by every machine): the events are also published into the store
//!   (`matih_feed` + `NOTIFY`); serve LISTENs, streams them, and reads a tenant again whenever its
//!   state is written (`NOTIFY matih_state`), so it follows an apply running on another machine.
//!
//! For each tenant the newer of the two answers wins: the store's document, or the one folded from
//! the feed when an event arrived after the store was read.
//!
//! Endpoints (all JSON unless said otherwise; errors are `{"error": CODE, "message": TEXT}`):
//! - `GET /` the status page (HTML; `/app.js`, `/app.css`), `GET /healthz`
//! - `GET /api/v1/tenants` → `{"tenants": [summary…]}`
//! - `GET /api/v1/tenants/{id}/provisioning/status` → the [`status::StatusDoc`] (`id`: slug or UUID)
//! - `GET /api/v1/tenants/{id}/provisioning/audit?page=1&pageSize=50` → the tenant's progress events,
//!   oldest first: `{"tenant", "page", "pageSize", "total", "items": [event…]}`
//! - `GET /ws/provisioning/{id}` (WebSocket) → a `snapshot` message, then every event as it happens
//!   (the feed's JSON lines); a client that falls behind gets a new snapshot instead of the events it missed.
//!
//! Security: loopback by default. Listening on any other address needs `MATIH_SERVE_TOKEN`; when
//! the token is set, every request and WebSocket upgrade must carry it (`Authorization: Bearer
//! TOKEN`, or `?access_token=TOKEN` for browsers, which cannot set headers on WebSocket requests).

pub mod feed;
pub mod live;
pub mod source;
pub mod status;
mod ws;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};

pub use feed::FeedHooks;
use live::Live;
use source::Source;
use status::StatusDoc;

use crate::encoding::{self, Escapes};
use crate::notify::{Completion, Deliverer, Outbox};
use crate::spec::NotifyPlatform;
use crate::state::{PostgresStore, TenantStatus};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// The status as the API spells it (`ACTIVE`).
pub fn status_name(s: TenantStatus) -> String {
    serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// A slug as the API accepts it: a DNS-1123 label (the specs' rule for slugs is stricter).
pub fn valid_slug(s: &str) -> bool {
    crate::spec::is_dns_label(s)
}

#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    /// The sled store and its feed files (any backend: also where the notification outbox is).
    pub state_dir: PathBuf,
    /// The PostgreSQL state store, when the platform file selects it: tenants and progress then
    /// come from it instead of from `state_dir`.
    pub postgres: Option<Arc<PostgresStore>>,
    /// Required on every request when set; must be set to listen off loopback.
    pub token: Option<String>,
    /// Where queued notifications and events go (retried every `outbox_every`).
    pub notify: NotifyPlatform,
    pub feed_poll: Duration,
    pub outbox_every: Duration,
}

impl ServeOptions {
    pub fn new(listen: SocketAddr, state_dir: &Path) -> ServeOptions {
        ServeOptions {
            listen,
            state_dir: state_dir.to_path_buf(),
            postgres: None,
            token: None,
            notify: NotifyPlatform::default(),
            feed_poll: Duration::from_millis(100),
            outbox_every: Duration::from_secs(2),
        }
    }
}

pub struct App {
    token_hash: Option<[u8; 32]>,
    live: Arc<Mutex<Live>>,
    source: Source,
}

/// Tenants as one request sees them.
struct View {
    /// Each tenant's document, with when the store was read for it (None: the document comes from
    /// the feed, or the store could not be read).
    docs: Vec<(StatusDoc, Option<Instant>)>,
    /// Whether the list of tenants comes from the store (false: it was busy or unreadable).
    listed: bool,
}

fn sha(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Whether the feed's document (last event at `event`) is newer than the store's (read at `read`).
fn feed_is_newer(read: Option<Instant>, event: Option<Instant>) -> bool {
    match (read, event) {
        (None, _) => true,
        (Some(read), Some(event)) => event > read,
        (Some(_), None) => false,
    }
}

impl App {
    pub fn new(source: Source, token: Option<&str>) -> Arc<App> {
        Arc::new(App { token_hash: token.map(sha), live: Arc::new(Mutex::new(Live::default())), source })
    }

    /// The store's tenants, each replaced by the feed's document when that is newer.
    async fn view(&self) -> View {
        let listing = self.source.listing().await;
        let mut docs = listing.docs;
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner()).docs();
        for (doc, last_event) in live {
            match docs.iter_mut().find(|(d, _)| d.slug == doc.slug) {
                Some((d, read)) if feed_is_newer(*read, last_event) => *d = doc,
                Some(_) => {}
                None if feed_is_newer(listing.listed_at, last_event) => docs.push((doc, None)),
                None => {}
            }
        }
        docs.sort_by(|a, b| a.0.slug.cmp(&b.0.slug));
        View { docs, listed: listing.listed_at.is_some() }
    }

    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let Some(want) = &self.token_hash else { return true };
        let header = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::to_string);
        let given = header.or_else(|| query_param(req.uri().query(), "access_token"));
        // Compared as digests: constant time, and the length of the token does not leak.
        given.is_some_and(|g| {
            let g = sha(&g);
            g.iter().zip(want.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
        })
    }
}

/// The id in a URL: a slug or a tenant UUID.
enum TenantId {
    Slug(String),
    Uuid(String),
}

/// The answer to a path whose tenant id is neither a slug nor a UUID.
fn bad_id() -> Resp {
    error(StatusCode::BAD_REQUEST, "bad_request", "a tenant id is a slug (DNS label) or a UUID")
}

fn parse_id(s: &str) -> Option<TenantId> {
    if valid_slug(s) && uuid::Uuid::parse_str(s).is_err() {
        return Some(TenantId::Slug(s.to_string()));
    }
    uuid::Uuid::parse_str(s).ok().map(|u| TenantId::Uuid(u.hyphenated().to_string()))
}

fn find<'a>(docs: &'a [(StatusDoc, Option<Instant>)], id: &TenantId) -> Option<&'a (StatusDoc, Option<Instant>)> {
    docs.iter().find(|(d, _)| match id {
        TenantId::Slug(s) => &d.slug == s,
        TenantId::Uuid(u) => d.tenant_id.eq_ignore_ascii_case(u),
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = encoding::percent_decode(s, Escapes::Form).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

type Resp = Response<Full<Bytes>>;

fn respond(code: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = code;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert("cache-control", HeaderValue::from_static("no-store"));
    r.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    r
}

fn json(code: StatusCode, v: &impl serde::Serialize) -> Resp {
    respond(code, "application/json", serde_json::to_vec_pretty(v).unwrap_or_default())
}

fn error(code: StatusCode, kind: &str, message: impl Into<String>) -> Resp {
    json(code, &serde_json::json!({"error": kind, "message": message.into()}))
}

/// Answers one request. Public so that tests can drive the handler without a socket.
pub async fn handle(app: Arc<App>, mut req: Request<Incoming>) -> Result<Resp, Infallible> {
    if !app.authorized(&req) {
        let mut r = error(StatusCode::UNAUTHORIZED, "unauthorized", "a bearer token is required (MATIH_SERVE_TOKEN)");
        r.headers_mut().insert("www-authenticate", HeaderValue::from_static("Bearer realm=\"matih\""));
        return Ok(r);
    }
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.strip_prefix('/').unwrap_or(&path).split('/').collect();
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    let known = matches!(
        segs.as_slice(),
        [""] | ["app.js"]
            | ["app.css"]
            | ["healthz"]
            | ["api", "v1", "tenants"]
            | ["api", "v1", "tenants", _, "provisioning", "status" | "audit"]
            | ["ws", "provisioning", _]
    );
    if !known {
        return Ok(error(StatusCode::NOT_FOUND, "not_found", format!("no such path: {path}")));
    }
    if !get {
        let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "only GET is supported");
        r.headers_mut().insert("allow", HeaderValue::from_static("GET, HEAD"));
        return Ok(r);
    }
    Ok(match segs.as_slice() {
        [""] => respond(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML),
        ["app.js"] => respond(StatusCode::OK, "text/javascript; charset=utf-8", APP_JS),
        ["app.css"] => respond(StatusCode::OK, "text/css; charset=utf-8", APP_CSS),
        ["healthz"] => json(StatusCode::OK, &serde_json::json!({"ok": true})),
        ["api", "v1", "tenants"] => {
            let view = app.view().await;
            let tenants: Vec<_> = view.docs.iter().map(|(d, _)| d.summary()).collect();
            json(
                StatusCode::OK,
                &serde_json::json!({"tenants": tenants, "source": if view.listed { "store" } else { "feed" }}),
            )
        }
        ["api", "v1", "tenants", id, "provisioning", what] => {
            let Some(id) = parse_id(id) else { return Ok(bad_id()) };
            let view = app.view().await;
            let Some((doc, _)) = find(&view.docs, &id) else {
                return Ok(error(StatusCode::NOT_FOUND, "not_found", "no such tenant"));
            };
            if *what == "status" {
                json(StatusCode::OK, doc)
            } else {
                audit(&app, doc, req.uri().query()).await
            }
        }
        ["ws", "provisioning", id] => {
            let Some(id) = parse_id(id) else { return Ok(bad_id()) };
            let view = app.view().await;
            let Some((doc, read)) = find(&view.docs, &id).cloned() else {
                return Ok(error(StatusCode::NOT_FOUND, "not_found", "no such tenant"));
            };
            ws::upgrade(app.clone(), &mut req, doc, read)
        }
        _ => error(StatusCode::NOT_FOUND, "not_found", format!("no such path: {path}")),
    })
}

async fn audit(app: &App, doc: &StatusDoc, query: Option<&str>) -> Resp {
    let num = |name: &str, default: usize, max: usize| -> Result<usize, String> {
        match query_param(query, name) {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(format!("{name} must be a whole number from 1 to {max}, found {v:?}")),
            },
        }
    };
    let (page, size) = match (num("page", 1, 1_000_000), num("pageSize", 50, 500)) {
        (Ok(p), Ok(s)) => (p, s),
        (Err(e), _) | (_, Err(e)) => return error(StatusCode::BAD_REQUEST, "bad_request", e),
    };
    let events = match app.source.events(&doc.slug).await {
        Ok(evs) => evs.into_iter().filter(live::is_audit).collect::<Vec<_>>(),
        Err(e) => {
            tracing::warn!("cannot read the progress events of {}: {e}", doc.slug);
            return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the progress events cannot be read now");
        }
    };
    let items: Vec<_> = events.iter().skip((page - 1).saturating_mul(size)).take(size).collect();
    json(
        StatusCode::OK,
        &serde_json::json!({
            "tenant": doc.slug, "tenantId": doc.tenant_id, "page": page, "pageSize": size,
            "total": events.len(), "source": "feed", "items": items,
        }),
    )
}

/// Runs the server until the process ends. Prints `listening on http://ADDR` once bound.
pub async fn run(opts: ServeOptions) -> anyhow::Result<()> {
    let token = opts.token.clone().filter(|t| !t.is_empty());
    if !opts.listen.ip().is_loopback() && token.is_none() {
        anyhow::bail!(
            "refusing to listen on {} without a token: set MATIH_SERVE_TOKEN (every request must then carry it), \
             or listen on a loopback address",
            opts.listen
        );
    }
    let listener = tokio::net::TcpListener::bind(opts.listen).await?;
    let addr = listener.local_addr()?;
    let source = match &opts.postgres {
        Some(store) => Source::postgres(store.clone()),
        None => Source::sled(&opts.state_dir),
    };
    let app = App::new(source, token.as_deref());
    app.source.start(app.live.clone(), opts.feed_poll).await;
    if let Some(c) = Completion::new(&opts.state_dir, &opts.notify) {
        let every = opts.outbox_every;
        tokio::spawn(async move {
            let outbox = Outbox::new(&c.state_dir);
            let deliverer = Deliverer::new(&c.config, c.deliver_budget);
            loop {
                if outbox.dir().is_dir() {
                    outbox.deliver_due(&deliverer).await;
                }
                tokio::time::sleep(every).await;
            }
        });
    }
    println!("listening on http://{addr}");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(app.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                tracing::debug!("connection: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests;
