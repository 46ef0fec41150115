//! `matih serve`: provisioning progress over HTTP and WebSocket, and a status page.
//!
//! Where the data comes from ([`source`]): the applying process reports every progress event, and
//! a status snapshot after every phase, as [`crate::events::Event`]s (`apply::EventHooks`); serve folds those events into
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
//! - `GET /` the fleet view and `GET /tenants/{slug}` a tenant's page (one HTML page, `/app.js`,
//!   `/app.css`; no build step, nothing fetched from elsewhere, a strict Content-Security-Policy on
//!   every answer), `GET /healthz`
//! - `GET /api/v1/tenants?status=&tier=&region=&q=&sort=&order=&page=&pageSize=` → one page of
//!   the fleet, filtered and sorted, with the counts by status over the whole fleet ([`fleet`]):
//!   `{"tenants": [summary…], "total", "page", "pageSize", "pages", "counts", "tiers", "regions", "drift"}`;
//!   a bad parameter is a 400 naming it
//! - `GET /api/v1/phases/durations?status=&tier=&region=&q=` → per phase, the median and p95 of the
//!   last runs' durations against the guide's expected range: `{"phases": [{"number", "name",
//!   "expectedMinMs", "expectedMaxMs", "count", "medianMs", "p95Ms", "maxMs", "over"}]}`
//! - `GET /api/v1/tenants/{id}/provisioning/status` → the [`status::StatusDoc`] (`id`: slug or UUID)
//! - `GET /api/v1/tenants/{id}/runs?page=1&pageSize=10` → the tenant's runs, newest first, with
//!   their phases, operations, error and rollback ([`runs`]): from the audit log, or from the feed
//!   while a running apply holds the (sled) store: `{"tenant", "source": "audit"|"feed", "page",
//!   "pageSize", "total", "items": [run…]}`
//! - `GET /api/v1/tenants/{id}/drift` → what the drift report (`--drift-report FILE`, the JSON of
//!   `matih drift --format json`, read again whenever the file changes) says of the tenant:
//!   `{"available": bool, "checkedAt", "status", "findings": […]}`
//! - `GET /api/v1/tenants/{id}/provisioning/audit?page=1&pageSize=50` → the tenant's progress events,
//!   oldest first: `{"tenant", "page", "pageSize", "total", "items": [event…]}`
//! - `GET /ws/provisioning/{id}` (WebSocket) → a `snapshot` message, then every event as it happens
//!   (the feed's JSON lines); a client that falls behind gets a new snapshot instead of the events it missed.
//!
//! - `POST /api/v1/ws-tickets` → `{"ticket", "expires_in_seconds": 30}`: a one-use ticket for one
//!   WebSocket upgrade (`/ws/provisioning/{id}?ticket=…`) when serve has a token
//!
//! Security: loopback by default, where only requests whose `Host` names this machine are answered
//! (no DNS rebinding); a request with an `Origin` must come from this server's own pages. Listening
//! on any other address needs `MATIH_SERVE_TOKEN` (16 characters at least) and TLS (`--tls-cert`,
//! `--tls-key`). With the token set, every request must carry it (`Authorization: Bearer TOKEN`,
//! or `?access_token=TOKEN` in a page's URL) and every WebSocket upgrade a ticket instead (browsers
//! cannot set headers on WebSocket requests; a token in a URL would reach logs). Bounded: 512
//! connections, 16 KiB request heads read within 10 s, 4 KiB client frames.

pub mod fleet;
pub mod live;
pub mod runs;
pub mod source;
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

pub use crate::events::status;
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
    /// The JSON report of `matih drift --format json` (e.g. written by a nightly job), if any.
    pub drift_report: Option<PathBuf>,
    /// Tenants known from their specs (`matih serve PATHS`): those without state are listed as
    /// never applied.
    pub specs: Vec<KnownTenant>,
    /// HTTPS: the PEM certificate chain and private key files (`--tls-cert`, `--tls-key`).
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// A tenant as its spec describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownTenant {
    pub slug: String,
    pub tenant_id: String,
    pub tier: String,
    pub region: String,
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
            drift_report: None,
            specs: Vec::new(),
            tls: None,
        }
    }
}

pub struct App {
    token_hash: Option<[u8; 32]>,
    /// WebSocket tickets handed out and not yet used: their digest and when each expires.
    tickets: Mutex<std::collections::HashMap<[u8; 32], Instant>>,
    live: Arc<Mutex<Live>>,
    source: Source,
    drift: Drift,
    specs: Vec<KnownTenant>,
}

/// The drift report, read again when its file changes.
#[derive(Default)]
struct Drift {
    path: Option<PathBuf>,
    /// The file's modification time and length when read, and the report (or why it is unusable).
    loaded: Mutex<Option<(FileKey, LoadedDrift)>>,
}

/// A file's modification time and length: when either changes, the file is read again.
type FileKey = (std::time::SystemTime, u64);
/// A drift report as read (or why it could not be).
type LoadedDrift = Arc<Result<DriftReport, String>>;

/// What serve takes from a drift report: per tenant, its status and findings.
struct DriftReport {
    checked_at: String,
    tenants: std::collections::HashMap<String, (String, Vec<serde_json::Value>)>,
}

impl Drift {
    /// The report as it is now; None when no report is configured or its file does not exist yet.
    fn report(&self) -> Option<LoadedDrift> {
        let path = self.path.as_ref()?;
        let meta = std::fs::metadata(path).ok()?;
        let key = (meta.modified().ok()?, meta.len());
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, r)) = loaded.as_ref() {
            if *k == key {
                return Some(r.clone());
            }
        }
        let report = Arc::new(parse_drift(path, key.0));
        if let Err(e) = report.as_ref() {
            tracing::warn!("drift report {}: {e}", path.display());
        }
        *loaded = Some((key, report.clone()));
        Some(report)
    }
}

fn parse_drift(path: &Path, modified: std::time::SystemTime) -> Result<DriftReport, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))?;
    let tenants = v["tenants"].as_array().ok_or("no \"tenants\" list: not a report of `matih drift --format json`")?;
    let mut out = std::collections::HashMap::new();
    for t in tenants {
        let (Some(slug), Some(status)) = (t["slug"].as_str(), t["status"].as_str()) else { continue };
        out.insert(slug.to_string(), (status.to_string(), Vec::new()));
    }
    for f in v["findings"].as_array().into_iter().flatten() {
        if let Some((_, list)) = f["tenant"].as_str().and_then(|s| out.get_mut(s)) {
            list.push(f.clone());
        }
    }
    Ok(DriftReport { checked_at: humantime::format_rfc3339_seconds(modified).to_string(), tenants: out })
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
        App::with_drift(source, token, None)
    }

    pub fn with_drift(source: Source, token: Option<&str>, drift_report: Option<PathBuf>) -> Arc<App> {
        App::with_options(source, token, drift_report, Vec::new())
    }

    pub fn with_options(
        source: Source,
        token: Option<&str>,
        drift_report: Option<PathBuf>,
        specs: Vec<KnownTenant>,
    ) -> Arc<App> {
        Arc::new(App {
            token_hash: token.map(sha),
            tickets: Mutex::new(std::collections::HashMap::new()),
            live: Arc::new(Mutex::new(Live::default())),
            source,
            drift: Drift { path: drift_report, loaded: Mutex::new(None) },
            specs,
        })
    }

    /// Every tenant's line of the fleet view (with its drift badge), beside its document.
    async fn rows(&self) -> (View, Vec<fleet::Row>) {
        let view = self.view().await;
        let report = self.drift.report();
        let report = report.as_deref().and_then(|r| r.as_ref().ok());
        let rows = view
            .docs
            .iter()
            .map(|(d, _)| fleet::Row {
                summary: d.summary(),
                drift: report
                    .and_then(|r| r.tenants.get(&d.slug))
                    .map(|(status, findings)| fleet::DriftBadge { status: status.clone(), findings: findings.len() }),
            })
            .collect();
        (view, rows)
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
        // Tenants with a spec: never applied when nothing is recorded; tier and region from the
        // spec until the namespace records them.
        for k in &self.specs {
            match docs.iter_mut().find(|(d, _)| d.slug == k.slug) {
                Some((d, _)) => {
                    d.tier.get_or_insert_with(|| k.tier.clone());
                    d.region.get_or_insert_with(|| k.region.clone());
                }
                None => {
                    let mut d = StatusDoc::empty(&k.slug, &k.tenant_id);
                    d.tier = Some(k.tier.clone());
                    d.region = Some(k.region.clone());
                    docs.push((d, None));
                }
            }
        }
        docs.sort_by(|a, b| a.0.slug.cmp(&b.0.slug));
        View { docs, listed: listing.listed_at.is_some() }
    }

    /// A new WebSocket ticket (64 random hex digits, good for one upgrade within [`TICKET_TTL`]), or
    /// `None` when [`MAX_TICKETS`] unused ones are outstanding.
    fn new_ticket(&self) -> Option<String> {
        let ticket = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let now = Instant::now();
        let mut tickets = self.tickets.lock().unwrap_or_else(|e| e.into_inner());
        tickets.retain(|_, expires| *expires > now);
        if tickets.len() >= MAX_TICKETS {
            return None;
        }
        tickets.insert(sha(&ticket), now + TICKET_TTL);
        Some(ticket)
    }

    /// Takes a ticket: true once, within its lifetime.
    fn take_ticket(&self, ticket: &str) -> bool {
        let mut tickets = self.tickets.lock().unwrap_or_else(|e| e.into_inner());
        tickets.remove(&sha(ticket)).is_some_and(|expires| expires > Instant::now())
    }

    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let Some(want) = &self.token_hash else { return true };
        // A WebSocket upgrade carries a ticket (browsers cannot set its headers), never the token:
        // a URL ends up in logs and histories, a used or expired ticket is worth nothing.
        if req.uri().path().starts_with("/ws/") {
            if let Some(ticket) = query_param(req.uri().query(), "ticket") {
                return self.take_ticket(&ticket);
            }
        }
        let header = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::to_string);
        let in_query =
            || query_param(req.uri().query(), "access_token").filter(|_| !req.uri().path().starts_with("/ws/"));
        let given = header.or_else(in_query);
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
    r.headers_mut().insert("content-security-policy", HeaderValue::from_static(CSP));
    r.headers_mut().insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    r.headers_mut().insert("x-frame-options", HeaderValue::from_static("DENY"));
    // Browsers honour it over HTTPS only (serve off loopback), and ignore it over plain HTTP.
    r.headers_mut().insert("strict-transport-security", HeaderValue::from_static("max-age=31536000"));
    r
}

/// Scripts, styles and connections from this server only; no inline script or style, no plugin,
/// no frame, nothing fetched from elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn json(code: StatusCode, v: &impl serde::Serialize) -> Resp {
    respond(code, "application/json", serde_json::to_vec_pretty(v).unwrap_or_default())
}

fn error(code: StatusCode, kind: &str, message: impl Into<String>) -> Resp {
    json(code, &serde_json::json!({"error": kind, "message": message.into()}))
}

/// Answers one request. Public so that tests can drive the handler without a socket.
/// How long a WebSocket ticket (`POST /api/v1/ws-tickets`) stays good.
pub const TICKET_TTL: Duration = Duration::from_secs(30);

/// How many unused tickets may be outstanding at once.
pub const MAX_TICKETS: usize = 1024;

/// The shortest `MATIH_SERVE_TOKEN` accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// How many connections are served at once; one more is closed as soon as it is accepted.
pub const MAX_CONNECTIONS: usize = 512;

/// The largest request head (request line and headers) read; a larger one is answered 431.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The host part of a `Host` header or an origin's authority (`[::1]:8080` → `::1`).
fn host_of(authority: &str) -> &str {
    match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    }
}

/// DNS rebinding and cross-site requests: a server on loopback answers only requests whose `Host`
/// names this machine (a web page's own name that was made to resolve to 127.0.0.1 does not), and a
/// request that carries an `Origin` (browsers send it with WebSocket upgrades and cross-origin
/// requests) must come from a page of this server (`Origin` naming the `Host`).
fn host_and_origin_ok(loopback: bool, req: &Request<Incoming>) -> Result<(), &'static str> {
    let host = req.headers().get(hyper::header::HOST).and_then(|v| v.to_str().ok());
    let Some(host) = host.or_else(|| req.uri().authority().map(|a| a.as_str())) else {
        return Err("a Host header is required");
    };
    if loopback {
        let name = host_of(host);
        let local =
            name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !local {
            return Err("this server listens on loopback: the Host must be localhost or a loopback address");
        }
    }
    if let Some(origin) = req.headers().get(hyper::header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let authority = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://"));
        if !authority.is_some_and(|a| a.eq_ignore_ascii_case(host)) {
            return Err("cross-origin requests are refused: the Origin must be this server's");
        }
    }
    Ok(())
}

pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    handle_on(app, false, req).await
}

/// [`handle`] for a server listening on loopback (`loopback`: the `Host` check applies).
pub async fn handle_on(app: Arc<App>, loopback: bool, mut req: Request<Incoming>) -> Result<Resp, Infallible> {
    if let Err(why) = host_and_origin_ok(loopback, &req) {
        return Ok(error(StatusCode::FORBIDDEN, "forbidden", why));
    }
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
            | ["tenants", _]
            | ["api", "v1", "tenants"]
            | ["api", "v1", "phases", "durations"]
            | ["api", "v1", "tenants", _, "provisioning", "status" | "audit"]
            | ["api", "v1", "tenants", _, "runs" | "drift"]
            | ["ws", "provisioning", _]
            | ["api", "v1", "ws-tickets"]
    );
    if !known {
        return Ok(error(StatusCode::NOT_FOUND, "not_found", format!("no such path: {path}")));
    }
    if segs.as_slice() == ["api", "v1", "ws-tickets"] {
        if req.method() != Method::POST {
            let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "tickets are made with POST");
            r.headers_mut().insert("allow", HeaderValue::from_static("POST"));
            return Ok(r);
        }
        return Ok(match app.new_ticket() {
            Some(ticket) => json(
                StatusCode::CREATED,
                &serde_json::json!({ "ticket": ticket, "expires_in_seconds": TICKET_TTL.as_secs() }),
            ),
            None => {
                error(StatusCode::TOO_MANY_REQUESTS, "too_many_tickets", "too many unused tickets: use or let expire")
            }
        });
    }
    if !get {
        let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "only GET is supported");
        r.headers_mut().insert("allow", HeaderValue::from_static("GET, HEAD"));
        return Ok(r);
    }
    Ok(match segs.as_slice() {
        [""] => respond(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML),
        ["tenants", slug] => {
            if !valid_slug(slug) {
                return Ok(bad_id());
            }
            respond(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML)
        }
        ["app.js"] => respond(StatusCode::OK, "text/javascript; charset=utf-8", APP_JS),
        ["app.css"] => respond(StatusCode::OK, "text/css; charset=utf-8", APP_CSS),
        ["healthz"] => json(StatusCode::OK, &serde_json::json!({"ok": true})),
        ["api", "v1", "tenants"] => {
            let q = match fleet::parse(req.uri().query(), true) {
                Ok(q) => q,
                Err(e) => return Ok(error(StatusCode::BAD_REQUEST, "bad_request", e)),
            };
            let (view, rows) = app.rows().await;
            let answer = fleet::select(rows, &q);
            let mut body = serde_json::to_value(&answer).unwrap_or_default();
            body["source"] = (if view.listed { "store" } else { "feed" }).into();
            json(StatusCode::OK, &body)
        }
        ["api", "v1", "phases", "durations"] => {
            let q = match fleet::parse(req.uri().query(), false) {
                Ok(q) => q,
                Err(e) => return Ok(error(StatusCode::BAD_REQUEST, "bad_request", e)),
            };
            let (view, rows) = app.rows().await;
            let docs: Vec<StatusDoc> = view.docs.into_iter().map(|(d, _)| d).collect();
            let chosen = fleet::filtered(&docs, &rows, &q);
            json(StatusCode::OK, &serde_json::json!({"tenants": chosen.len(), "phases": fleet::phase_stats(&chosen)}))
        }
        ["api", "v1", "tenants", id, what @ ("runs" | "drift")] => {
            let Some(id) = parse_id(id) else { return Ok(bad_id()) };
            let view = app.view().await;
            let Some((doc, _)) = find(&view.docs, &id) else {
                return Ok(error(StatusCode::NOT_FOUND, "not_found", "no such tenant"));
            };
            if *what == "runs" {
                runs(&app, doc, req.uri().query()).await
            } else {
                drift(&app, doc)
            }
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

/// `page` and `pageSize` of a query, checked.
fn paging(query: Option<&str>, default_size: usize, max_size: usize) -> Result<(usize, usize), String> {
    let num = |name: &str, default: usize, max: usize| -> Result<usize, String> {
        match query_param(query, name) {
            None => Ok(default),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(format!("{name} must be a whole number from 1 to {max}, found {v:?}")),
            },
        }
    };
    match (num("page", 1, 1_000_000), num("pageSize", default_size, max_size)) {
        (Ok(p), Ok(s)) => Ok((p, s)),
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

async fn runs(app: &App, doc: &StatusDoc, query: Option<&str>) -> Resp {
    let (page, size) = match paging(query, 10, 100) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", e),
    };
    // The audit log when the store can be read; while a running apply holds it, the feed.
    let (source, all) = match app.source.audit(&doc.slug).await {
        Ok(entries) if !entries.is_empty() || doc.serial.is_some() => ("audit", runs::from_audit(&entries)),
        other => {
            if let Err(e) = other {
                tracing::debug!("the audit log of {} cannot be read now ({e}); answering from the feed", doc.slug);
            }
            match app.source.events(&doc.slug).await {
                Ok(evs) => ("feed", runs::from_events(&evs)),
                Err(e) => {
                    tracing::warn!("cannot read the progress events of {}: {e}", doc.slug);
                    return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the runs cannot be read now");
                }
            }
        }
    };
    // A run the audit log does not have yet (running now, the store busy a moment ago) comes from the feed.
    let mut all = all;
    if source == "audit" {
        if let Ok(evs) = app.source.events(&doc.slug).await {
            for run in runs::from_events(&evs) {
                if run.outcome == "running" && !all.iter().any(|r| r.run_id == run.run_id) {
                    all.insert(0, run);
                }
            }
        }
    }
    let items: Vec<_> = all.iter().skip((page - 1).saturating_mul(size)).take(size).collect();
    json(
        StatusCode::OK,
        &serde_json::json!({
            "tenant": doc.slug, "tenantId": doc.tenant_id, "source": source, "page": page, "pageSize": size,
            "total": all.len(), "items": items,
        }),
    )
}

fn drift(app: &App, doc: &StatusDoc) -> Resp {
    let none = |why: &str| serde_json::json!({"tenant": doc.slug, "available": false, "reason": why});
    let body = match app.drift.report() {
        None if app.drift.path.is_none() => none("no drift report is configured (matih serve --drift-report FILE)"),
        None => none("the drift report has not been written yet"),
        Some(r) => match r.as_ref() {
            Err(e) => none(&format!("the drift report cannot be read: {e}")),
            Ok(r) => match r.tenants.get(&doc.slug) {
                None => none("the drift report does not include this tenant"),
                Some((status, findings)) => serde_json::json!({
                    "tenant": doc.slug, "available": true, "checkedAt": r.checked_at,
                    "status": status, "findings": findings,
                }),
            },
        },
    };
    json(StatusCode::OK, &body)
}

async fn audit(app: &App, doc: &StatusDoc, query: Option<&str>) -> Resp {
    let (page, size) = match paging(query, 50, 500) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", e),
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
    if let Some(t) = &token {
        if t.chars().count() < MIN_TOKEN_LEN {
            anyhow::bail!(
                "MATIH_SERVE_TOKEN is {} characters long: use at least {MIN_TOKEN_LEN} random ones \
                 (e.g. `openssl rand -hex 32`)",
                t.chars().count()
            );
        }
    }
    if !opts.listen.ip().is_loopback() && token.is_none() {
        anyhow::bail!(
            "refusing to listen on {} without a token: set MATIH_SERVE_TOKEN (every request must then carry it), \
             or listen on a loopback address",
            opts.listen
        );
    }
    if !opts.listen.ip().is_loopback() && opts.tls.is_none() {
        anyhow::bail!(
            "refusing to serve the token over cleartext on {}: give --tls-cert and --tls-key, or listen on a \
             loopback address",
            opts.listen
        );
    }
    let tls = match &opts.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(opts.listen).await?;
    let addr = listener.local_addr()?;
    let source = match &opts.postgres {
        Some(store) => Source::postgres(store.clone()),
        None => Source::sled(&opts.state_dir),
    };
    let app = App::with_options(source, token.as_deref(), opts.drift_report.clone(), opts.specs.clone());
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
    println!("listening on {}://{addr}", if tls.is_some() { "https" } else { "http" });
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let loopback = opts.listen.ip().is_loopback();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Past the cap the connection is closed at once: memory stays bounded however many
        // clients connect and idle.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                Some(acceptor) => {
                    // The handshake gets the same deadline as a request head.
                    match tokio::time::timeout(HEAD_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls_stream)) => serve_connection(app, loopback, tls_stream).await,
                        Ok(Err(e)) => tracing::debug!("tls handshake: {e}"),
                        Err(_) => tracing::debug!("tls handshake: timed out"),
                    }
                }
                None => serve_connection(app, loopback, stream).await,
            }
        });
    }
}

/// How long a client may take to send a request head (or finish a TLS handshake).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves HTTP/1.1 (and WebSocket upgrades) on one connection.
async fn serve_connection<S>(app: Arc<App>, loopback: bool, io: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| handle_on(app.clone(), loopback, req));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!("connection: {e}");
    }
}

/// A TLS acceptor from PEM files: the certificate chain and its private key (rustls, ring).
fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use anyhow::Context as _;
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("--tls-cert {}: not a readable PEM certificate chain", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("--tls-cert {}: no certificate in the file", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("--tls-key {}: not a readable PEM private key", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("--tls-cert and --tls-key do not make a usable certificate (does the key match?)")?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests;
