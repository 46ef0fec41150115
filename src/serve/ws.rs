//! `GET /ws/provisioning/{id}`: the WebSocket stream of one tenant's progress.
//!
//! Messages (text frames, JSON): first `{"type":"snapshot","tenant":…,"status":{status document}}`,
//! then every feed event as the apply writes it (`phase_started`, `resource_started`,
//! `resource_finished`, `phase_finished`, `snapshot`, `tenant_finished`, …). Events come from a
//! bounded broadcast channel: a client that falls more than [`super::live::CHANNEL_CAPACITY`]
//! events behind is sent a fresh snapshot and continues from there; a client that does not take a
//! frame within [`SEND_TIMEOUT`] is disconnected. Neither ever slows the apply or other clients.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, UPGRADE};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::broadcast::error::RecvError;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::{error, App, Resp};
use crate::events::status::StatusDoc;
use crate::events::Event;

/// The largest message or frame a client may send (the server reads only close and ping frames).
pub const MAX_CLIENT_MESSAGE: usize = 4 * 1024;

/// How long one frame may wait for a slow client before it is disconnected.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn upgrade(app: Arc<App>, req: &mut Request<Incoming>, doc: StatusDoc, store_read: Option<Instant>) -> Resp {
    let h = req.headers();
    let is_upgrade = h.get(UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let key = h.get("sec-websocket-key").map(|k| k.as_bytes().to_vec());
    let version_ok = h.get("sec-websocket-version").is_some_and(|v| v.as_bytes() == b"13");
    let (true, Some(key), true) = (is_upgrade, key, version_ok) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "this is a WebSocket endpoint: send Upgrade: websocket, Sec-WebSocket-Key and Sec-WebSocket-Version: 13",
        );
    };
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                // The server only sends: a client's frames are small control frames, so anything
                // larger is refused (the connection closes) instead of buffered.
                let config = WebSocketConfig::default()
                    .max_message_size(Some(MAX_CLIENT_MESSAGE))
                    .max_frame_size(Some(MAX_CLIENT_MESSAGE));
                let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
                stream(app, ws, doc, store_read).await;
            }
            Err(e) => tracing::debug!("websocket upgrade: {e}"),
        }
    });
    let mut r = super::respond(StatusCode::SWITCHING_PROTOCOLS, "text/plain", "");
    r.headers_mut().remove(hyper::header::CONTENT_TYPE);
    r.headers_mut().insert(UPGRADE, HeaderValue::from_static("websocket"));
    r.headers_mut().insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(&key)) {
        r.headers_mut().insert("sec-websocket-accept", v);
    }
    r
}

async fn stream<S>(app: Arc<App>, ws: WebSocketStream<S>, store_doc: StatusDoc, store_read: Option<Instant>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut tx, mut rx_client) = ws.split();
    // The snapshot and the subscription are taken together, so that no event falls between them.
    let sub = app.live.lock().unwrap_or_else(|e| e.into_inner()).subscribe(&store_doc.slug);
    let slug = store_doc.slug.clone();
    let first = match sub.doc {
        // The feed is newer than the store read (or the store was busy): it has the live state.
        Some((doc, last)) if super::feed_is_newer(store_read, last) => doc,
        _ => store_doc,
    };
    let mut events = sub.rx;
    let send = |ev: &Event| Message::text(serde_json::to_string(ev).unwrap_or_default());
    if !matches!(tokio::time::timeout(SEND_TIMEOUT, tx.send(send(&Event::snapshot(first)))).await, Ok(Ok(()))) {
        return;
    }
    let mut ping = tokio::time::interval(Duration::from_secs(30));
    ping.tick().await;
    loop {
        let msg = tokio::select! {
            ev = events.recv() => match ev {
                Ok(ev) => send(&ev),
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!("websocket client of {slug} fell {n} events behind; resynchronising");
                    let doc = app.live.lock().unwrap_or_else(|e| e.into_inner()).doc(&slug);
                    match doc {
                        Some(d) => send(&Event::snapshot(d)),
                        None => continue,
                    }
                }
                Err(RecvError::Closed) => break,
            },
            incoming = rx_client.next() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => continue,
            },
            _ = ping.tick() => Message::Ping(Vec::new().into()),
        };
        match tokio::time::timeout(SEND_TIMEOUT, tx.send(msg)).await {
            Ok(Ok(())) => {}
            _ => break,
        }
    }
    let _ = tx.close().await;
}
