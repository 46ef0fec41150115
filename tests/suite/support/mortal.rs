//! Servers of one test alone, which it may kill with SIGKILL and start again (tests/suite/server_death.rs):
//! a Kubernetes control plane ([`ControlPlane`]: scripts/lib/controlplane.sh's `cp_start` in a
//! directory of its own), a PostgreSQL cluster ([`Postgres`]) and a PowerDNS ([`PowerDns`]). The
//! binary's shared servers (support/{kube,postgres,powerdns}.rs) are never killed: other tests use them.
//!
//! Each server's processes are named by pid files in the server's directory (`NAME.pid`). A server
//! is stopped and its directory removed when it is dropped and, whatever way the test process ends,
//! by a detached watchdog that waits for the test process and then kills every process the pid
//! files name. [`Server::kill`] sends SIGKILL (to the process and to its children: PostgreSQL's
//! backends) and waits until they are gone; [`Server::restart`] starts it again on the same ports
//! and data (the same command line, read from `/proc` when it was killed).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::pg as postgres;

/// A directory of private servers: removed, and the processes its pid files name killed, when
/// dropped and (through a watchdog) when the test process exits.
pub struct Private {
    pub dir: PathBuf,
    /// The processes this test process started again (reaped when killed).
    children: Vec<Child>,
}

impl Private {
    fn new(prefix: &str) -> Private {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir().expect("temp dir").keep();
        let script = format!(
            "while kill -0 {me} 2>/dev/null; do sleep 0.5; done; \
             for f in '{d}'/*.pid; do [ -f \"$f\" ] && kill -9 $(cat \"$f\") 2>/dev/null; done; sleep 0.5; rm -rf '{d}'",
            me = std::process::id(),
            d = dir.display()
        );
        let mut cmd = Command::new("setsid");
        cmd.args(["sh", "-c", &script]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        // Never waited for on purpose: it must outlive this process.
        #[allow(clippy::zombie_processes)]
        cmd.spawn().expect("start the private servers' watchdog (setsid)");
        Private { dir, children: Vec::new() }
    }

    fn pid_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pid"))
    }

    /// The pid of server process `name`.
    pub fn pid(&self, name: &str) -> u32 {
        let file = self.pid_file(name);
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        text.trim().parse().unwrap_or_else(|e| panic!("{}: {e}", file.display()))
    }

    /// SIGKILL to `pid` and to its children (listed first, so that none is missed), then waits
    /// (at most 10 s) until they are all gone; whether they are.
    fn kill_tree(&mut self, pid: u32) -> bool {
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let mut pids = vec![pid];
        pids.extend(children.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        for p in &pids {
            let _ = Command::new("kill").args(["-9", &p.to_string()]).stderr(Stdio::null()).status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for c in &mut self.children {
            if pids.contains(&c.id()) {
                let _ = c.wait();
            }
        }
        while pids.iter().any(|p| alive(*p)) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// [`Self::kill_tree`], failing the test unless they are gone.
    fn kill(&mut self, pid: u32) {
        assert!(self.kill_tree(pid), "process {pid} (or a child) still alive 10 s after SIGKILL");
    }

    /// Starts `argv` (its output appended to `log`) and records its pid as server process `name`.
    fn spawn(&mut self, name: &str, argv: &[String], log: &Path) {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("open the server's log");
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", argv[0]));
        std::fs::write(self.pid_file(name), child.id().to_string()).unwrap();
        self.children.push(child);
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if e.path().extension().is_some_and(|x| x == "pid") {
                if let Some(pid) = std::fs::read_to_string(e.path()).ok().and_then(|t| t.trim().parse().ok()) {
                    // Never a panic here (this may run while a failed test unwinds).
                    let _ = self.kill_tree(pid);
                }
            }
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether `pid` is a process that has not exited (a zombie has).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(") ").is_none_or(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// The command line of a running process.
fn cmdline(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_else(|e| panic!("/proc/{pid}/cmdline: {e}"));
    raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
}

/// A server a test kills and starts again.
pub trait Server {
    /// Its name in messages and results (`kube-apiserver`, `etcd`, `postgres`, `powerdns`).
    fn name(&self) -> &str;
    /// SIGKILL to the server (all its processes); returns once they are gone.
    fn kill(&mut self);
    /// Starts it again on the same ports and data; returns once it answers.
    fn restart(&mut self);
}

/// Waits up to `secs` for `ready`.
fn wait_until(what: &str, secs: u64, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} did not come up within {secs} s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// Kubernetes

/// A Kubernetes control plane of this test alone (etcd, kube-apiserver, controller-manager,
/// scheduler, kwok's nodes, the cloud stand-ins), started by scripts/lib/controlplane.sh's
/// `cp_start` (with the binaries it built and cached). matih reaches it with its kubeconfig
/// ([`ControlPlane::kubeconfig`]), straight to the API server: no proxy in between.
pub struct ControlPlane {
    pub private: Private,
    pub url: String,
}

impl ControlPlane {
    pub fn start() -> ControlPlane {
        let private = Private::new("matih-cp-");
        let script = format!(
            ". '{}' && cp_start '{}'",
            super::root().join("scripts/lib/controlplane.sh").display(),
            private.dir.display()
        );
        let out = Command::new("bash").args(["-c", &script]).output().expect("run bash");
        let logs = || {
            let mut all = String::new();
            for e in std::fs::read_dir(&private.dir).into_iter().flatten().flatten() {
                if e.path().extension().is_some_and(|x| x == "log") {
                    let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(10).collect();
                    all.push_str(&format!(
                        "== {}\n{}\n",
                        e.path().display(),
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    ));
                }
            }
            all
        };
        assert!(
            out.status.success(),
            "cp_start of a private control plane failed:\n{}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            logs()
        );
        let url = std::fs::read_to_string(private.dir.join("apiserver.url")).unwrap().trim().to_string();
        ControlPlane { private, url }
    }

    /// The cluster admin's kubeconfig (client certificate), for matih and kubectl.
    pub fn kubeconfig(&self) -> PathBuf {
        self.private.dir.join("kubeconfig")
    }

    /// kubectl as the cluster admin.
    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .arg("--cache-dir")
            .arg(self.private.dir.join(".kube-cache"))
            .args(args)
            .env_remove("KUBECONFIG")
            .output()
            .expect("kubectl must be installed")
    }

    /// Whether the API server answers `/readyz` (which needs etcd too).
    pub fn ready(&self) -> bool {
        self.kubectl(&["get", "--raw", "/readyz", "--request-timeout=2s"]).status.success()
    }

    /// One of its processes (`kube-apiserver` or `etcd`), to kill and start again.
    pub fn process<'a>(&'a mut self, name: &'static str) -> CpProcess<'a> {
        CpProcess { cp: self, name, argv: Vec::new() }
    }
}

/// A process of a [`ControlPlane`], started again with the command line it had.
pub struct CpProcess<'a> {
    cp: &'a mut ControlPlane,
    name: &'static str,
    argv: Vec<String>,
}

impl Server for CpProcess<'_> {
    fn name(&self) -> &str {
        self.name
    }

    fn kill(&mut self) {
        let pid = self.cp.private.pid(self.name);
        self.argv = cmdline(pid);
        self.cp.private.kill(pid);
    }

    fn restart(&mut self) {
        assert!(!self.argv.is_empty(), "restart before kill");
        let log = self.cp.private.dir.join(format!("{}.log", self.name));
        let argv = self.argv.clone();
        self.cp.private.spawn(self.name, &argv, &log);
        let cp = &*self.cp;
        wait_until(&format!("the private {} again", self.name), 120, || cp.ready());
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// A PostgreSQL 15 cluster of this test alone (as support/postgres.rs starts the shared one, but
/// with `synchronous_commit` on: a commit is written to the OS before it is acknowledged, so a
/// SIGKILL of the whole server loses nothing committed; `fsync` stays off, the OS keeps it).
pub struct Postgres {
    pub private: Private,
    pub port: u16,
    pub admin_password: String,
    pub admin_url: String,
    root: bool,
    opts: String,
}

impl Postgres {
    pub fn start() -> Postgres {
        let private = Private::new("matih-pg-mortal-");
        let root = postgres::is_root();
        let password = format!("adm{}", uuid::Uuid::new_v4().simple());
        std::fs::write(private.dir.join("pwfile"), &password).unwrap();
        if root {
            let st = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&private.dir).status().unwrap();
            assert!(st.success(), "chown the private cluster's directory to postgres");
        }
        let mut initdb = postgres::pg_command("initdb", root);
        initdb
            .arg("-D")
            .arg(private.dir.join("data"))
            .args(["-U", "postgres", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", private.dir.join("pwfile").display()));
        let out = initdb.output().expect("run initdb");
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let mut pg = Postgres {
            private,
            port: 0,
            admin_password: password,
            admin_url: String::new(),
            root,
            opts: String::new(),
        };
        for _ in 0..5 {
            pg.port = postgres::free_port();
            pg.opts = format!(
                "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c synchronous_commit=on \
                 -c full_page_writes=off -c max_connections=200",
                pg.port,
                pg.private.dir.display()
            );
            if pg.pg_ctl_start() {
                pg.admin_url = format!("postgresql://postgres:{}@127.0.0.1:{}/postgres", pg.admin_password, pg.port);
                return pg;
            }
        }
        panic!("pg_ctl start of a private cluster failed five times: {}", pg.log_tail());
    }

    fn log_tail(&self) -> String {
        std::fs::read_to_string(self.private.dir.join("server.log")).unwrap_or_default()
    }

    /// `pg_ctl start`; records the postmaster's pid.
    fn pg_ctl_start(&mut self) -> bool {
        let data = self.private.dir.join("data");
        let mut start = postgres::pg_command("pg_ctl", self.root);
        start.arg("-D").arg(&data).arg("-l").arg(self.private.dir.join("server.log"));
        start.args(["-w", "-t", "60", "-o", &self.opts, "start"]);
        if !start.output().expect("run pg_ctl").status.success() {
            return false;
        }
        let pidfile = std::fs::read_to_string(data.join("postmaster.pid")).expect("postmaster.pid");
        std::fs::write(self.private.pid_file("postgres"), pidfile.lines().next().unwrap()).unwrap();
        true
    }

    /// The URL of database `db` as the admin.
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres:{}@127.0.0.1:{}/{db}", self.admin_password, self.port)
    }

    /// A new empty database; its URL.
    pub fn database(&self, name: &str) -> String {
        super::psql(&self.admin_url, &format!("CREATE DATABASE {name}"));
        self.url(name)
    }
}

impl Server for Postgres {
    fn name(&self) -> &str {
        "postgres"
    }

    fn kill(&mut self) {
        let pid = self.private.pid("postgres");
        self.private.kill(pid);
    }

    fn restart(&mut self) {
        // The same port and data directory; crash recovery replays the WAL.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.pg_ctl_start() {
            assert!(Instant::now() < deadline, "the private PostgreSQL did not start again: {}", self.log_tail());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PowerDNS

/// A PowerDNS Authoritative server of this test alone (LMDB, HTTP API), as support/powerdns.rs
/// starts the shared one.
pub struct PowerDns {
    pub private: Private,
    pub api_url: String,
    pub api_key: String,
    pub dns_port: u16,
    argv: Vec<String>,
}

impl PowerDns {
    pub fn start() -> PowerDns {
        let private = Private::new("matih-pdns-mortal-");
        let dir = private.dir.clone();
        let (dns_port, api_port) = (super::powerdns::free_port(), super::powerdns::free_port());
        let api_key = uuid::Uuid::new_v4().simple().to_string();
        let conf = format!(
            "launch=lmdb\nlmdb-filename={dir}/pdns.lmdb\nlocal-address=127.0.0.1\nlocal-port={dns_port}\ndaemon=no\n\
             guardian=no\nsocket-dir={dir}\napi=yes\napi-key={api_key}\nwebserver=yes\nwebserver-address=127.0.0.1\n\
             webserver-port={api_port}\nwebserver-allow-from=127.0.0.1/32\nsecurity-poll-suffix=\nloglevel=4\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("pdns.conf"), conf).unwrap();
        let argv = vec![
            super::powerdns::program("pdns_server").display().to_string(),
            format!("--config-dir={}", dir.display()),
        ];
        let mut pdns = PowerDns { private, api_url: format!("http://127.0.0.1:{api_port}"), api_key, dns_port, argv };
        pdns.restart();
        pdns
    }

    /// Whether its API answers.
    pub fn ready(&self) -> bool {
        super::powerdns::api_answers(&self.api_url, &self.api_key)
    }
}

impl Server for PowerDns {
    fn name(&self) -> &str {
        "powerdns"
    }

    fn kill(&mut self) {
        let pid = self.private.pid("pdns");
        self.private.kill(pid);
    }

    fn restart(&mut self) {
        let argv = self.argv.clone();
        let log = self.private.dir.join("pdns.log");
        self.private.spawn("pdns", &argv, &log);
        let me = &*self;
        wait_until("the private PowerDNS", 30, || me.ready());
    }
}
