//! A small loopback HTTP proxy that answers 500 for the requests a test picks and passes every
//! other request on unchanged: put in front of PowerDNS's HTTP API, it makes "PowerDNS answers
//! 500" happen for one chosen change, which PowerDNS itself cannot be told to do. It is an honest
//! stand-in for a failing DNS backend (the answer is PowerDNS's own error shape,
//! `{"error": "…"}`), not PowerDNS: the requests it lets through reach the real server.
//!
//! One request per connection (every answer says `Connection: close`, so the client opens a new
//! connection for the next one); plain HTTP/1.1 with `Content-Length` bodies, as matih's PowerDNS
//! client and PowerDNS speak it. Stopped when dropped.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Which requests fail: the method, and texts the body must all contain.
#[derive(Clone, Debug)]
struct Rule {
    method: String,
    body_contains: Vec<String>,
}

pub struct HttpFaultProxy {
    /// `http://127.0.0.1:PORT`, to use instead of the upstream's URL.
    pub url: String,
    rule: Arc<Mutex<Option<Rule>>>,
    fired: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    port: u16,
}

impl HttpFaultProxy {
    /// A proxy to `upstream` (`host:port`) on a free loopback port, passing everything on.
    pub fn start(upstream: &str) -> HttpFaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().unwrap().port();
        let rule: Arc<Mutex<Option<Rule>>> = Arc::new(Mutex::new(None));
        let (fired, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let upstream = upstream.to_string();
        let (r, f, s) = (Arc::clone(&rule), Arc::clone(&fired), Arc::clone(&stop));
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (r, f, upstream) = (Arc::clone(&r), Arc::clone(&f), upstream.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &upstream, &r, &f);
                });
            }
        });
        HttpFaultProxy { url: format!("http://127.0.0.1:{port}"), rule, fired, stop, port }
    }

    /// From now on every `method` request whose body contains all of `body_contains` is answered
    /// 500 without reaching the upstream, until [`Self::clear`].
    pub fn fail(&self, method: &str, body_contains: &[&str]) {
        let rule =
            Rule { method: method.to_string(), body_contains: body_contains.iter().map(|s| s.to_string()).collect() };
        *self.rule.lock().unwrap() = Some(rule);
    }

    /// Every request passes again.
    pub fn clear(&self) {
        *self.rule.lock().unwrap() = None;
    }

    /// How many requests were answered 500 so far.
    pub fn fired(&self) -> usize {
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for HttpFaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// A request or an answer: its head (start line and headers, without the blank line) and body.
struct Message {
    head: Vec<String>,
    body: Vec<u8>,
}

/// Reads one HTTP/1.1 message; a body is read by `Content-Length`, or to the end of the stream
/// (`to_eof`, for an answer without one).
fn read_message(r: &mut impl BufRead, to_eof: bool) -> std::io::Result<Message> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed before the head ended"));
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let length = head.iter().skip(1).find_map(|h| {
        let (k, v) = h.split_once(':')?;
        k.trim().eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok()).flatten()
    });
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            r.read_exact(&mut body)?;
        }
        None if to_eof => {
            r.read_to_end(&mut body)?;
        }
        None => {}
    }
    Ok(Message { head, body })
}

/// The message with `Connection: close` in place of the connection headers it had.
fn write_message(w: &mut impl Write, m: &Message) -> std::io::Result<()> {
    let mut out = String::new();
    for (i, h) in m.head.iter().enumerate() {
        let name = h.split_once(':').map(|(k, _)| k.trim().to_ascii_lowercase()).unwrap_or_default();
        if i > 0 && matches!(name.as_str(), "connection" | "keep-alive" | "content-length" | "transfer-encoding") {
            continue;
        }
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", m.body.len()));
    w.write_all(out.as_bytes())?;
    w.write_all(&m.body)?;
    w.flush()
}

fn serve(conn: TcpStream, upstream: &str, rule: &Mutex<Option<Rule>>, fired: &AtomicUsize) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let request = read_message(&mut reader, false)?;
    let method = request.head[0].split(' ').next().unwrap_or("").to_string();
    let body = String::from_utf8_lossy(&request.body);
    let hit = rule
        .lock()
        .unwrap()
        .as_ref()
        .is_some_and(|r| r.method == method && r.body_contains.iter().all(|t| body.contains(t.as_str())));
    let mut conn = conn;
    if hit {
        fired.fetch_add(1, Ordering::SeqCst);
        let answer = Message {
            head: vec!["HTTP/1.1 500 Internal Server Error".into(), "Content-Type: application/json".into()],
            body: br#"{"error": "injected fault: the backend failed (test stand-in for a PowerDNS 500)"}"#.to_vec(),
        };
        return write_message(&mut conn, &answer);
    }
    let up = TcpStream::connect(upstream)?;
    write_message(&mut &up, &request)?;
    let answer = read_message(&mut BufReader::new(&up), true)?;
    write_message(&mut conn, &answer)
}
