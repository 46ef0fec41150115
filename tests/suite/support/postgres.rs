//! A throwaway PostgreSQL cluster for integration tests, started once per test run (the suite is
//! one test binary; a child process that a test reruns itself in uses its parent's).
//!
//! `server()` runs `initdb` (as the `postgres` user when the tests run as root: the server refuses
//! to run as root) into a fresh temp dir, starts it with `pg_ctl` on a free loopback port with
//! fsync off, and returns its admin URL. Host connections need a password (SCRAM), so a test
//! can tell a tenant's real password from a wrong one; the admin password is random too.
//!
//! The cluster is stopped and its directory removed when the test process exits, whatever way it
//! exits: a detached watchdog (`setsid sh -c 'while kill -0 PID …'`) waits for the test process
//! and then runs `pg_ctl stop -m immediate`. No orphan servers pile up.
//!
//! Missing binaries are a test failure with a clear message, never a skip.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

pub struct PgServer {
    /// `postgresql://postgres:PASSWORD@127.0.0.1:PORT/postgres`
    pub admin_url: String,
    pub admin_password: String,
    pub port: u16,
    pub dir: PathBuf,
}

static SERVER: OnceLock<PgServer> = OnceLock::new();
static TLS_SERVER: OnceLock<TlsServer> = OnceLock::new();
/// The variables that hand the servers already started to a child of the test binary
/// (`support::rerun_in_child`), which then uses them instead of starting its own.
const SERVER_VAR: &str = "MATIH_SUITE_PG";
const TLS_SERVER_VAR: &str = "MATIH_SUITE_PG_TLS";

/// The binary's shared server, started on first use.
pub fn server() -> &'static PgServer {
    SERVER.get_or_init(|| PgServer::inherited(SERVER_VAR).unwrap_or_else(start))
}

/// The started servers, as variables for a child process.
pub fn children_env() -> Vec<(&'static str, String)> {
    let mut vars: Vec<_> = SERVER.get().map(|s| (SERVER_VAR, s.encode())).into_iter().collect();
    vars.extend(TLS_SERVER.get().map(|s| (TLS_SERVER_VAR, s.server.encode())));
    vars
}

impl PgServer {
    fn encode(&self) -> String {
        format!("{}\n{}\n{}", self.port, self.admin_password, self.dir.display())
    }

    /// The server a parent process started, from `var` (see [`children_env`]).
    fn inherited(var: &str) -> Option<PgServer> {
        let value = std::env::var(var).ok()?;
        let mut parts = value.splitn(3, '\n');
        let port: u16 = parts.next()?.parse().ok()?;
        let admin_password = parts.next()?.to_string();
        let dir = PathBuf::from(parts.next()?);
        let admin_url = format!("postgresql://postgres:{admin_password}@127.0.0.1:{port}/postgres");
        Some(PgServer { admin_url, admin_password, port, dir })
    }
}

pub fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(tool).is_file()))
}

/// Runs a PostgreSQL tool, as `postgres` when we are root.
pub fn pg_command(tool: &str, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", tool]);
        c
    } else {
        Command::new(tool)
    }
}

fn run(mut cmd: Command, what: &str, log: Option<&Path>) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    if !out.status.success() {
        let log = log.and_then(|l| std::fs::read_to_string(l).ok()).unwrap_or_default();
        panic!(
            "{what} failed ({}):\n{}\n{}\n{log}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind a loopback port").port()
}

fn start() -> PgServer {
    start_with(|_| String::new())
}

/// A second cluster with TLS on, for the tests of `sslmode`: its certificate is issued by a test CA
/// for the name `db.matih.test` only (not `localhost`, not 127.0.0.1), so that `verify-full`
/// through 127.0.0.1 fails on the name while `verify-ca` passes. Also a CA that issued nothing.
pub struct TlsServer {
    pub server: PgServer,
    pub ca_file: PathBuf,
    pub other_ca_file: PathBuf,
}

/// The binary's TLS cluster, started on first use. Needs the `openssl` command.
pub fn tls_server() -> &'static TlsServer {
    TLS_SERVER.get_or_init(|| {
        if let Some(server) = PgServer::inherited(TLS_SERVER_VAR) {
            let (ca_file, other_ca_file) = (server.dir.join("ca.crt"), server.dir.join("other-ca.crt"));
            return TlsServer { server, ca_file, other_ca_file };
        }
        assert!(on_path("openssl"), "`openssl` is not on the PATH: the TLS tests make their certificates with it");
        let server = start_with(|dir| {
            let script = "set -e
                for ca in ca other-ca; do
                  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -keyout $ca.key -out $ca.crt \
                    -subj \"/CN=matih test $ca\" 2>/dev/null
                done
                openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=db.matih.test 2>/dev/null
                printf 'subjectAltName=DNS:db.matih.test\nextendedKeyUsage=serverAuth\n' > server.ext
                openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
                  -extfile server.ext -out server.crt 2>/dev/null
                chmod 600 server.key";
            let mut c = Command::new("sh");
            c.current_dir(dir).args(["-c", script]);
            run(c, "openssl: the test CA and the server certificate", None);
            format!(" -c ssl=on -c ssl_cert_file={d}/server.crt -c ssl_key_file={d}/server.key", d = dir.display())
        });
        let (ca_file, other_ca_file) = (server.dir.join("ca.crt"), server.dir.join("other-ca.crt"));
        TlsServer { server, ca_file, other_ca_file }
    })
}

fn start_with(prepare: impl Fn(&Path) -> String) -> PgServer {
    let root = is_root();
    let mut needed = vec!["initdb", "pg_ctl"];
    if root {
        needed.push("runuser");
    }
    for tool in needed {
        assert!(
            on_path(tool),
            "`{tool}` is not on the PATH: the PostgreSQL provider tests need a real PostgreSQL 15 server \
             (initdb, pg_ctl; run as the `postgres` user when root). Install it (Debian: postgresql-15) or put its \
             bin directory on the PATH; these tests are never skipped."
        );
    }
    let dir = tempfile::Builder::new().prefix("matih-pg-").tempdir().expect("temp dir").keep();
    let password = format!("adm{}", uuid_like());
    std::fs::write(dir.join("pwfile"), &password).expect("write pwfile");
    let extra_opts = prepare(&dir);
    if root {
        run(
            {
                let mut c = Command::new("chown");
                c.args(["-R", "postgres:postgres"]).arg(&dir);
                c
            },
            "chown the test cluster directory to postgres",
            None,
        );
    }
    let data = dir.join("data");
    let log = dir.join("server.log");
    let mut initdb = pg_command("initdb", root);
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
        .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
        .arg(format!("--pwfile={}", dir.join("pwfile").display()));
    run(initdb, "initdb", None);

    let mut last_err = String::new();
    for _ in 0..5 {
        let port = free_port();
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=200{extra_opts}",
            dir.display()
        );
        let mut start = pg_command("pg_ctl", root);
        start.arg("-D").arg(&data).arg("-l").arg(&log).args(["-w", "-t", "30", "-o", &opts, "start"]);
        let out = start.output().expect("run pg_ctl start");
        if out.status.success() {
            watchdog(&dir, root);
            return PgServer {
                admin_url: format!("postgresql://postgres:{password}@127.0.0.1:{port}/postgres"),
                admin_password: password,
                port,
                dir,
            };
        }
        last_err = format!(
            "{}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    panic!("pg_ctl start failed five times:\n{last_err}");
}

/// A detached process that stops the cluster and removes its directory once this process exits.
fn watchdog(dir: &Path, root: bool) {
    let pg_ctl = if root { "runuser -u postgres -- pg_ctl" } else { "pg_ctl" };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
         {pg_ctl} -D '{d}/data' -m immediate -w stop >/dev/null 2>&1; rm -rf '{d}'",
        pid = std::process::id(),
        d = dir.display()
    );
    let mut cmd = if on_path("setsid") {
        let mut c = Command::new("setsid");
        c.args(["sh", "-c", &script]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", &script]);
        c
    };
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // Never waited for on purpose: it must outlive this process (and is reaped by init).
    #[allow(clippy::zombie_processes)]
    cmd.spawn().expect("start the cluster's watchdog");
}

fn uuid_like() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
