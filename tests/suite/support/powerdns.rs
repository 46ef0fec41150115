//! A real PowerDNS Authoritative server for the tests of one run: started on first use on
//! free loopback ports with its own config dir (LMDB backend, HTTP API with a random key, no
//! outbound security poll), stopped when the test process exits.
//!
//! A missing `pdns_server` or `dig` is a test failure naming the install command, never a skip.
//!
//! Stopping: statics are never dropped, so a small shell watchdog started beside the server waits
//! for the test process to end (normally or not), then asks PowerDNS to quit and removes the dir.

#![allow(dead_code)]

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const INSTALL_HINT: &str =
    "install PowerDNS and dig with `scripts/lib/powerdns.sh install` (apt-get install pdns-server pdns-backend-lmdb bind9-dnsutils)";

pub struct PowerDns {
    pub dir: PathBuf,
    pub dns_port: u16,
    pub api_port: u16,
    pub api_url: String,
    pub api_key: String,
}

static SERVER: OnceLock<PowerDns> = OnceLock::new();

/// The variable that hands the server to a child of the test binary (`support::rerun_in_child`).
const SERVER_VAR: &str = "MATIH_SUITE_PDNS";

/// The started server, as variables for a child process.
pub fn children_env() -> Vec<(&'static str, String)> {
    let encode = |s: &PowerDns| format!("{}\n{}\n{}\n{}", s.dns_port, s.api_port, s.api_key, s.dir.display());
    SERVER.get().map(|s| (SERVER_VAR, encode(s))).into_iter().collect()
}

/// The server a parent process started (see [`children_env`]).
fn inherited() -> Option<PowerDns> {
    let value = std::env::var(SERVER_VAR).ok()?;
    let mut parts = value.splitn(4, '\n');
    let dns_port = parts.next()?.parse().ok()?;
    let api_port = parts.next()?.parse().ok()?;
    let api_key = parts.next()?.to_string();
    let dir = PathBuf::from(parts.next()?);
    Some(PowerDns { dir, dns_port, api_port, api_url: format!("http://127.0.0.1:{api_port}"), api_key })
}

/// The PowerDNS of this test run, started on first use.
pub fn server() -> &'static PowerDns {
    SERVER.get_or_init(|| {
        if let Some(s) = inherited() {
            return s;
        }
        require("pdns_server");
        require("pdns_control");
        require("dig");
        let mut last = String::new();
        for _ in 0..5 {
            match start() {
                Ok(s) => return s,
                Err(e) => last = e,
            }
        }
        panic!("cannot start PowerDNS: {last}");
    })
}

fn require(program: &str) {
    let found =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file())).unwrap_or(false)
            || Path::new("/usr/sbin").join(program).is_file();
    assert!(found, "{program} is not installed: {INSTALL_HINT}");
}

pub fn program(name: &str) -> PathBuf {
    let sbin = Path::new("/usr/sbin").join(name);
    if sbin.is_file() {
        sbin
    } else {
        PathBuf::from(name)
    }
}

/// A port free for both TCP and UDP on 127.0.0.1 (the DNS port needs both).
pub fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn start() -> Result<PowerDns, String> {
    let dir = std::env::temp_dir().join(format!("matih-pdns-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let (dns_port, api_port) = (free_port(), free_port());
    let api_key = format!("{}", uuid::Uuid::new_v4().simple());
    let conf = format!(
        "launch=lmdb\nlmdb-filename={dir}/pdns.lmdb\nlocal-address=127.0.0.1\nlocal-port={dns_port}\ndaemon=no\n\
         guardian=no\nsocket-dir={dir}\napi=yes\napi-key={api_key}\nwebserver=yes\nwebserver-address=127.0.0.1\n\
         webserver-port={api_port}\nwebserver-allow-from=127.0.0.1/32\nsecurity-poll-suffix=\nloglevel=4\n",
        dir = dir.display()
    );
    std::fs::write(dir.join("pdns.conf"), conf).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.join("pdns.log")).map_err(|e| e.to_string())?;
    let mut child = Command::new(program("pdns_server"))
        .arg(format!("--config-dir={}", dir.display()))
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot run pdns_server ({e}): {INSTALL_HINT}"))?;
    // The watchdog: when this test process is gone, stop PowerDNS and remove its dir.
    let watchdog = format!(
        "while kill -0 {me} 2>/dev/null && kill -0 {pdns} 2>/dev/null; do sleep 0.2; done; \
         {control} --config-dir={dir} quit >/dev/null 2>&1; \
         for i in $(seq 25); do kill -0 {pdns} 2>/dev/null || break; sleep 0.2; done; \
         kill {pdns} 2>/dev/null; rm -rf {dir}",
        me = std::process::id(),
        pdns = child.id(),
        control = program("pdns_control").display(),
        dir = dir.display()
    );
    Command::new("sh")
        .args(["-c", &watchdog])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the PowerDNS watchdog: {e}"))?;
    let server =
        PowerDns { api_url: format!("http://127.0.0.1:{api_port}"), dir: dir.clone(), dns_port, api_port, api_key };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("pdns.log")).unwrap_or_default();
            return Err(format!("pdns_server exited with {status}:\n{log}"));
        }
        if server.api_ready() {
            return Ok(server);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let log = std::fs::read_to_string(dir.join("pdns.log")).unwrap_or_default();
            return Err(format!("pdns_server did not answer on 127.0.0.1:{api_port} within 15 s:\n{log}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl PowerDns {
    /// A client of this server's API for zones delegated from `parent` (nameservers `ns1.{parent}.`),
    /// with the zone `parent` created unless it exists. Tests in several modules share a parent
    /// zone (`matih.test`): one of them at a time looks and creates.
    pub fn parent_zone(&self, rt: &tokio::runtime::Runtime, parent: &str) -> matih::provider::dns::PowerDnsBackend {
        use matih::provider::dns::DnsBackend as _;
        static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = CREATING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let pdns = matih::provider::dns::PowerDnsBackend::new(
            &self.api_url,
            "localhost",
            self.api_key.clone(),
            vec![format!("ns1.{parent}.")],
        )
        .unwrap();
        if rt.block_on(pdns.get_zone(parent)).unwrap().is_none() {
            rt.block_on(pdns.create_zone(parent)).unwrap();
        }
        pdns
    }

    /// Whether the API answers (a plain HTTP/1.0 request, so this needs no async runtime).
    fn api_ready(&self) -> bool {
        api_answers(&self.api_url, &self.api_key)
    }

    /// `dig @127.0.0.1 -p PORT NAME TYPE +short`, one answer per line.
    pub fn dig(&self, name: &str, rtype: &str) -> Vec<String> {
        let out = Command::new(program("dig"))
            .args([
                "@127.0.0.1",
                "-p",
                &self.dns_port.to_string(),
                name,
                rtype,
                "+short",
                "+norecurse",
                "+time=2",
                "+tries=2",
            ])
            .output()
            .unwrap_or_else(|e| panic!("cannot run dig ({e}): {INSTALL_HINT}"));
        assert!(out.status.success(), "dig failed: {}", String::from_utf8_lossy(&out.stderr));
        let mut lines: Vec<String> =
            String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).filter(|l| !l.is_empty()).collect();
        lines.sort();
        lines
    }
}

/// Whether the PowerDNS API at `api_url` (`http://127.0.0.1:PORT`) answers (a plain HTTP/1.0
/// request, so this needs no async runtime).
pub fn api_answers(api_url: &str, api_key: &str) -> bool {
    let Some(port) = api_url.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()) else { return false };
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /api/v1/servers/localhost HTTP/1.0\r\nHost: 127.0.0.1\r\nX-API-Key: {}\r\n\r\n", api_key);
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}
