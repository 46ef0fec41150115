//! Phase 2 (SETUP_DATABASE) end to end, as a platform engineer lives it: the real `matih` binary
//! against the real Kubernetes control plane, a real PostgreSQL and a real PowerDNS (the last two
//! started here), checked with the real `psql` and `kubectl`.
//!
//! - the three example tenants (globex free, acme professional, initech enterprise): a schema, a
//!   schema, a database, migrated and seeded; each tenant logs in with the credentials of its
//!   Secret and sees only its own objects; no password ever reaches the state directory, a plan
//!   file or matih's output; a second apply has nothing to do; a lost or edited Secret makes the
//!   plan rotate the password (role and Secret together); destroy removes everything;
//! - a failing migration fails phase 2 and rolls it back, leaving the server clean and the tenant
//!   FAILED; fixed, it applies; an applied migration edited afterwards is a plan-time error;
//!   pending migrations are named in the plan.
//!
//! Each test uses its own tenants, parent zone and proxy to the real Kubernetes control plane, so they run in
//! parallel against the binary's one PostgreSQL and one PowerDNS. Both run on both state backends
//! (`…::sled`, `…::postgres`); the two variants of a test take turns.

use crate::support as common;
use crate::support::kube;
use crate::support::powerdns;

use common::pg as postgres;
use common::{text, Backend, TestState};
use kube::Kube;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine as _;
use matih::provider::dns::{DnsBackend, PowerDnsBackend};

const ACME_WEBHOOK: &str = "https://hooks.slack.example/services/T0/B0/acme-db-e2e-webhook";
const INITECH_WEBHOOK: &str = "https://hooks.slack.example/services/T0/B0/initech-db-e2e-webhook";

impl Kube {
    /// The decoded data of a tenant's `tenant-database-credentials` Secret.
    fn credentials(&self, slug: &str) -> BTreeMap<String, String> {
        let ns = format!("matih-{slug}");
        let out = self.kubectl(&["get", "secret", "tenant-database-credentials", "-n", &ns, "-o", "json"]);
        assert!(out.status.success(), "{}", text(&out));
        let secret: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        secret["data"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                let clear = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();
                (k.clone(), String::from_utf8(clear).unwrap())
            })
            .collect()
    }
}

/// A working directory with `tenants/`, a platform file pointing at the three servers, and a
/// parent zone of its own in PowerDNS.
struct World {
    /// The other variant of the same test waits for this one (same tenants on the same servers).
    _one: std::sync::MutexGuard<'static, ()>,
    /// The tenants' slugs on the shared Kubernetes cluster.
    _claims: Vec<kube::TenantClaim>,
    state: TestState,
    dir: tempfile::TempDir,
    kube: Kube,
    pg: &'static postgres::PgServer,
    dns: &'static powerdns::PowerDns,
    /// Everything matih printed, for the secret checks.
    log: std::cell::RefCell<String>,
}

impl World {
    fn new(backend: Backend, parent: &str, tenants: &[(&str, String)]) -> World {
        let one = common::one_variant_at_a_time(parent);
        let slugs: Vec<&str> = tenants.iter().map(|(file, _)| file.trim_end_matches(".hcl")).collect();
        let claims = kube::claim_tenants(&slugs);
        let state = TestState::new(backend);
        let kube = Kube::start();
        let pg = postgres::server();
        let dns = powerdns::server();
        let pdns = PowerDnsBackend::new(&dns.api_url, "localhost", dns.api_key.clone(), vec![format!("ns1.{parent}.")])
            .unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        if rt.block_on(pdns.get_zone(parent)).unwrap().is_none() {
            rt.block_on(pdns.create_zone(parent)).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tenants")).unwrap();
        for (name, spec) in tenants {
            std::fs::write(dir.path().join("tenants").join(name), spec).unwrap();
        }
        state.write_platform(dir.path(), &common::platform_hcl(parent, &dns.api_url, pg.port, &kube.url));
        World { _one: one, _claims: claims, state, dir, kube, pg, dns, log: Default::default() }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn matih(&self, args: &[&str]) -> Output {
        let mut cmd = crate::support::matih_command();
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .env("MATIH_POSTGRES_ADMIN_URL", &self.pg.admin_url)
            .env("PDNS_API_KEY", &self.dns.api_key)
            .env("ACME_SLACK_WEBHOOK", ACME_WEBHOOK)
            .env("INITECH_SLACK_WEBHOOK", INITECH_WEBHOOK)
            .env_remove("MATIH_SCHEMAS_DIR")
            .stdin(Stdio::null());
        self.state.configure(&mut cmd, self.dir.path());
        let out = cmd.output().unwrap();
        self.log.borrow_mut().push_str(&text(&out));
        out
    }

    /// `matih ARGS`, which must succeed; its output.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.matih(args);
        assert!(out.status.success(), "matih {args:?} failed:\n{}", text(&out));
        text(&out)
    }
}

/// `psql` as the admin: one value.
fn admin(pg: &postgres::PgServer, db: &str, sql: &str) -> String {
    let url = pg.admin_url.rsplit_once('/').map(|(base, _)| format!("{base}/{db}")).unwrap();
    let out = Command::new("psql").args([url.as_str(), "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql]).output().unwrap();
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `psql URL -c SQL` as a tenant: the rows (`|`-separated) or psql's error.
fn tenant_psql(url: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql").args([url, "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql]).output().expect("psql");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// A tenant's URL into `db` with the Secret's user and password (not its own DATABASE_URL).
fn url_into(pg: &postgres::PgServer, creds: &BTreeMap<String, String>, db: &str) -> String {
    format!("postgresql://{}:{}@127.0.0.1:{}/{db}", creds["POSTGRES_USER"], creds["POSTGRES_PASSWORD"], pg.port)
}

fn example(name: &str) -> (&str, String) {
    let spec = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tenants").join(name)).unwrap();
    (name, spec)
}

/// What each tenant's tables and schemas are, from the server's catalogs.
struct Expect {
    slug: &'static str,
    db: &'static str,
    schema: &'static str,
    connection_limit: &'static str,
}

const TIERS: [Expect; 3] = [
    Expect { slug: "globex", db: "matih_tenants", schema: "tenant_globex", connection_limit: "10" },
    Expect { slug: "acme", db: "matih_tenants", schema: "tenant_acme", connection_limit: "40" },
    Expect { slug: "initech", db: "tenant_initech", schema: "public", connection_limit: "200" },
];

fn three_tiers_isolated_secrets_hidden_rotated_and_destroyed(backend: Backend) {
    let w = World::new(backend, "tiers.test", &[example("acme.hcl"), example("globex.hcl"), example("initech.hcl")]);
    let pg = w.pg;

    // The first plan names the migrations it will run.
    let plan = w.ok(&["plan", "tenants", "-out", "first.plan"]);
    assert_eq!(
        plan.matches("# pending migrations: V1__init.sql, V2__reference_tables.sql, R__views.sql").count(),
        3,
        "{plan}"
    );
    let out = w.ok(&["apply", "first.plan"]);
    assert!(out.contains("Apply complete!"), "{out}");

    // Isolation per tier: role, container, migrations and seed data on the server.
    for t in &TIERS {
        let role = format!("tenant_{}", t.slug);
        assert_eq!(
            admin(
                pg,
                "postgres",
                &format!(
                    "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolconnlimit FROM pg_roles \
                     WHERE rolname = '{role}'"
                )
            ),
            format!("t|f|f|f|{}", t.connection_limit),
            "{}",
            t.slug
        );
        if t.db == "matih_tenants" {
            let owner =
                admin(pg, t.db, &format!("SELECT nspowner::regrole FROM pg_namespace WHERE nspname = '{role}'"));
            assert_eq!(owner, role, "a schema of its own");
        } else {
            let owner =
                admin(pg, "postgres", &format!("SELECT datdba::regrole FROM pg_database WHERE datname = '{role}'"));
            assert_eq!(
                owner, "postgres",
                "a database of its own, owned by the admin (its settings reach every session)"
            );
            let owner = admin(pg, t.db, "SELECT nspowner::regrole FROM pg_namespace WHERE nspname = 'public'");
            assert_eq!(owner, role, "the tenant owns the schema in it");
        }
        let history = admin(
            pg,
            t.db,
            &format!(
                "SELECT string_agg(script, ',' ORDER BY installed_rank) FROM \"{}\".flyway_schema_history WHERE success",
                t.schema
            ),
        );
        assert_eq!(history, "V1__init.sql,V2__reference_tables.sql,R__views.sql", "{}", t.slug);
    }

    // Each tenant logs in with its Secret's credentials, sees its own objects and nothing else.
    let mut passwords = Vec::new();
    for t in &TIERS {
        let creds = w.kube.credentials(t.slug);
        assert_eq!(creds["POSTGRES_USER"], format!("tenant_{}", t.slug));
        assert_eq!(creds["POSTGRES_DB"], t.db);
        assert_eq!(creds["POSTGRES_HOST"], "127.0.0.1");
        assert_eq!(creds["POSTGRES_PORT"], pg.port.to_string());
        let password = creds["POSTGRES_PASSWORD"].clone();
        assert!(password.len() >= 32 && creds["DATABASE_URL"].contains(&password));
        let me = tenant_psql(
            &creds["DATABASE_URL"],
            "SELECT current_user, current_schema(), (SELECT count(*) FROM system_roles), \
             (SELECT count(*) FROM dashboard_templates) > 0",
        )
        .unwrap_or_else(|e| panic!("{} logs in with DATABASE_URL: {e}", t.slug));
        assert_eq!(me, format!("tenant_{}|{}|3|t", t.slug, t.schema), "migrated and seeded");
        let visible = tenant_psql(
            &url_into(pg, &creds, t.db),
            "SELECT string_agg(DISTINCT n.nspname, ',') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'v') AND has_schema_privilege(n.oid, 'USAGE') \
             AND has_table_privilege(c.oid, 'SELECT') AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
        )
        .unwrap();
        assert_eq!(visible, t.schema, "{} sees only its own tables", t.slug);
        for other in TIERS.iter().filter(|o| o.slug != t.slug) {
            if other.db == t.db {
                let e = tenant_psql(
                    &url_into(pg, &creds, t.db),
                    &format!("SELECT count(*) FROM \"{}\".configuration", other.schema),
                )
                .expect_err("another tenant's table");
                assert!(e.contains("permission denied for schema"), "{} reading {}: {e}", t.slug, other.slug);
            } else {
                let e =
                    tenant_psql(&url_into(pg, &creds, other.db), "SELECT 1").expect_err("another tenant's database");
                assert!(e.contains("permission denied for database"), "{} into {}: {e}", t.slug, other.db);
            }
        }
        passwords.push(password);
    }

    // After a successful apply, a second one has nothing to do.
    let again = w.ok(&["apply", "tenants", "--auto-approve"]);
    assert!(again.contains("No changes."), "{again}");
    assert_eq!(w.matih(&["plan", "tenants", "--detailed-exitcode"]).status.code(), Some(0));

    // The Secret is lost: the plan says so and rotates the password, role and Secret together.
    let old = w.kube.credentials("acme");
    assert!(w.kube.kubectl(&["delete", "secret", "tenant-database-credentials", "-n", "matih-acme"]).status.success());
    let out = w.matih(&["plan", "tenants/acme.hcl", "--detailed-exitcode", "-out", "rotate.plan"]);
    let plan = text(&out);
    assert_eq!(out.status.code(), Some(2), "{plan}");
    assert!(
        plan.contains(
            "  # postgresql_role.tenant will be updated in place\n  \
             # password rotated: kubernetes_secret.database_credentials is missing\n  \
             ~ resource \"postgresql_role\" \"tenant\" {\n      \
             ~ password = (sensitive value) -> (sensitive value)\n"
        ),
        "{plan}"
    );
    assert!(plan.contains("# kubernetes_secret.database_credentials will be created"), "{plan}");
    assert!(plan.contains("Plan: 1 to add, 1 to change, 0 to destroy."), "{plan}");
    w.ok(&["apply", "rotate.plan"]);
    let new = w.kube.credentials("acme");
    assert_ne!(new["POSTGRES_PASSWORD"], old["POSTGRES_PASSWORD"], "a new password");
    assert_eq!(tenant_psql(&new["DATABASE_URL"], "SELECT current_user").unwrap(), "tenant_acme");
    let e = tenant_psql(&old["DATABASE_URL"], "SELECT 1").expect_err("the old password is refused");
    assert!(e.contains("password authentication failed"), "{e}");
    passwords.push(new["POSTGRES_PASSWORD"].clone());

    // The Secret no longer matches the role (edited by hand): rotated the same way.
    let wrong = base64::engine::general_purpose::STANDARD.encode("not-the-password");
    let patch = format!(r#"{{"data":{{"POSTGRES_PASSWORD":"{wrong}"}}}}"#);
    let patched =
        w.kube.kubectl(&["patch", "secret", "tenant-database-credentials", "-n", "matih-globex", "-p", &patch]);
    assert!(patched.status.success(), "{}", text(&patched));
    let plan = w.ok(&["plan", "tenants"]);
    assert!(
        plan.contains(
            "# password rotated: kubernetes_secret.database_credentials data.POSTGRES_PASSWORD does not match it"
        ),
        "{plan}"
    );
    assert!(plan.contains("# takes the new secret values of postgresql_role.tenant (rotated)"), "{plan}");
    assert!(plan.contains("~ POSTGRES_PASSWORD = (sensitive value) -> (sensitive value)"), "{plan}");
    assert!(plan.contains("Plan: 0 to add, 2 to change, 0 to destroy."), "{plan}");
    w.ok(&["apply", "tenants", "--auto-approve"]);
    let globex = w.kube.credentials("globex");
    assert_eq!(tenant_psql(&globex["DATABASE_URL"], "SELECT current_user").unwrap(), "tenant_globex");
    passwords.push(globex["POSTGRES_PASSWORD"].clone());
    assert_eq!(w.matih(&["plan", "tenants", "--detailed-exitcode"]).status.code(), Some(0), "settled");

    // acme's record of its role, schema and Secret is lost (an old state store, a hand edit): the
    // plan adopts what exists instead of creating it, and the role keeps the password the
    // tenant's running pods hold (the Secret's), so nothing that uses it breaks.
    let held = w.kube.credentials("acme");
    let lost = ["postgresql_role.tenant", "postgresql_schema.tenant", "kubernetes_secret.database_credentials"];
    w.ok(&[&["state", "rm", "acme"][..], &lost[..]].concat());
    let out = w.matih(&["plan", "tenants/acme.hcl", "--detailed-exitcode", "-out", "adopt.plan"]);
    let plan = text(&out);
    assert_eq!(out.status.code(), Some(2), "{plan}");
    assert!(
        plan.contains(
            "  # postgresql_role.tenant will be adopted\n  \
             # exists and matih has no record of it: adopted, not created\n  \
             # password kept: the one kubernetes_secret.database_credentials holds\n \
             <= resource \"postgresql_role\" \"tenant\" {\n"
        ),
        "{plan}"
    );
    assert!(plan.contains("# postgresql_schema.tenant will be adopted"), "{plan}");
    assert!(plan.contains("# kubernetes_secret.database_credentials will be adopted"), "{plan}");
    assert!(plan.contains("(written by matih): adopted, not created"), "{plan}");
    assert!(plan.contains("Plan: 3 to adopt, 0 to add, 0 to change, 0 to destroy."), "{plan}");
    w.ok(&["apply", "adopt.plan"]);
    assert_eq!(w.kube.credentials("acme"), held, "the Secret is as it was");
    assert_eq!(tenant_psql(&held["DATABASE_URL"], "SELECT current_user").unwrap(), "tenant_acme", "it still logs in");
    assert_eq!(w.matih(&["plan", "tenants/acme.hcl", "--detailed-exitcode"]).status.code(), Some(0), "settled");

    // Lost with its Secret: the role is adopted, and the plan says its password is set anew.
    assert!(w.kube.kubectl(&["delete", "secret", "tenant-database-credentials", "-n", "matih-acme"]).status.success());
    w.ok(&["state", "rm", "acme", "postgresql_role.tenant", "kubernetes_secret.database_credentials"]);
    let plan = w.ok(&["plan", "tenants/acme.hcl"]);
    assert!(plan.contains("# password rotated: kubernetes_secret.database_credentials does not exist yet"), "{plan}");
    assert!(plan.contains("+ password = (sensitive value)"), "{plan}");
    assert!(plan.contains("Plan: 1 to adopt, 1 to add, 0 to change, 0 to destroy."), "{plan}");
    w.ok(&["apply", "tenants/acme.hcl", "--auto-approve"]);
    let new = w.kube.credentials("acme");
    assert_ne!(new["POSTGRES_PASSWORD"], held["POSTGRES_PASSWORD"]);
    assert_eq!(tenant_psql(&new["DATABASE_URL"], "SELECT current_user").unwrap(), "tenant_acme");
    passwords.push(new["POSTGRES_PASSWORD"].clone());

    // No password, old or new, and no webhook URL anywhere matih writes or prints.
    let state = String::from_utf8_lossy(&w.state.contents()).into_owned();
    assert!(state.contains("postgresql_role.tenant"), "the store's contents were read");
    let plans = [w.path("first.plan"), w.path("rotate.plan"), w.path("adopt.plan")]
        .map(|p| std::fs::read_to_string(p).unwrap())
        .concat();
    let log = w.log.borrow().clone();
    for secret in passwords.iter().map(String::as_str).chain([ACME_WEBHOOK, INITECH_WEBHOOK]) {
        assert!(!state.contains(secret), "a secret reached the state directory");
        assert!(!plans.contains(secret), "a secret reached a plan file");
        assert!(!log.contains(secret), "a secret reached matih's output");
    }

    // Destroy: roles, schemas and the enterprise database are gone.
    w.ok(&["destroy", "tenants", "--auto-approve"]);
    let ours = "('tenant_acme', 'tenant_globex', 'tenant_initech')";
    assert_eq!(admin(pg, "postgres", &format!("SELECT count(*) FROM pg_roles WHERE rolname IN {ours}")), "0");
    assert_eq!(admin(pg, "postgres", "SELECT count(*) FROM pg_database WHERE datname = 'tenant_initech'"), "0");
    assert_eq!(admin(pg, "matih_tenants", &format!("SELECT count(*) FROM pg_namespace WHERE nspname IN {ours}")), "0");
    for t in &TIERS {
        assert!(!w.kube.kubectl(&["get", "ns", &format!("matih-{}", t.slug)]).status.success());
        assert!(w.ok(&["status", t.slug]).contains("DESTROYED"));
    }
}
on_both_backends!(three_tiers_isolated_secrets_hidden_rotated_and_destroyed);

const HOOLI: &str = r#"tenant "hooli" {
  id          = "0a6b4c8e-2f1d-4e3a-9b7c-5d8e1f2a3b4c"
  tier        = "professional"
  region      = "eastus"
  admin_email = "admin@hooli.example"
}
"#;

fn hooli_exists(pg: &postgres::PgServer) -> (String, String) {
    (
        admin(pg, "postgres", "SELECT count(*) FROM pg_roles WHERE rolname = 'tenant_hooli'"),
        admin(pg, "matih_tenants", "SELECT count(*) FROM pg_namespace WHERE nspname = 'tenant_hooli'"),
    )
}

fn failing_changed_and_pending_migrations(backend: Backend) {
    let w = World::new(backend, "migrations.test", &[("hooli.hcl", HOOLI.to_string())]);
    let pg = w.pg;
    common::copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas"), &w.path("schemas"));
    let broken = w.path("schemas/migrations/V9__broken.sql");
    std::fs::write(&broken, "CREATE TABLE half_done (id int);\nSELECT * FROM no_such_table;\n").unwrap();
    let apply = ["--schemas", "schemas", "apply", "tenants", "--auto-approve"];

    // The failing migration fails phase 2, named with the server's message, and phase 2 is rolled
    // back: no role, no schema; the tenant is FAILED.
    let out = w.matih(&apply);
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains("failed in phase 2/10 SETUP_DATABASE"), "{log}");
    assert!(log.contains("migration V9__broken.sql failed and was rolled back"), "{log}");
    assert!(log.contains("relation \"no_such_table\" does not exist"), "{log}");
    assert!(log.contains("rolled back"), "{log}");
    assert_eq!(hooli_exists(pg), ("0".into(), "0".into()), "the server is clean");
    let status = w.ok(&["status", "hooli"]);
    assert!(status.contains("FAILED"), "{status}");
    assert!(status.contains("V9__broken.sql"), "{status}");

    // Fixed, it applies from where it stopped; a second apply has nothing to do.
    std::fs::write(&broken, "CREATE TABLE v9_table (id int);\n").unwrap();
    let log = w.ok(&apply);
    assert!(log.contains("Apply complete!"), "{log}");
    let again = w.ok(&apply);
    assert!(again.contains("No changes."), "{again}");
    assert_eq!(
        admin(
            pg,
            "matih_tenants",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'tenant_hooli' AND tablename = 'v9_table'"
        ),
        "1"
    );
    assert_eq!(
        admin(pg, "matih_tenants", "SELECT count(*) FROM pg_tables WHERE tablename = 'half_done'"),
        "0",
        "the failed attempt left nothing"
    );

    // An applied migration edited afterwards: the plan fails, naming the file; no plan file.
    std::fs::write(&broken, "CREATE TABLE v9_table (id bigint);\n").unwrap();
    let out = w.matih(&["--schemas", "schemas", "plan", "tenants", "-out", "edited.plan"]);
    let log = text(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains("migrations/V9__broken.sql: migration V9__broken.sql was applied with checksum"), "{log}");
    assert!(log.contains("(tenant \"hooli\")"), "{log}");
    assert!(!w.path("edited.plan").exists(), "no plan file for a plan with errors");
    let out = w.matih(&apply);
    assert_eq!(out.status.code(), Some(1), "apply refuses it too: {}", text(&out));
    std::fs::write(&broken, "CREATE TABLE v9_table (id int);\n").unwrap();

    // A new migration: the plan names it, pending, as an added entry of the list.
    std::fs::write(w.path("schemas/migrations/V10__more.sql"), "CREATE TABLE v10_table (id int);\n").unwrap();
    let plan = w.ok(&["--schemas", "schemas", "plan", "tenants"]);
    assert!(plan.contains("# pending migrations: V10__more.sql\n"), "{plan}");
    assert!(plan.contains("+ script      = \"V10__more.sql\""), "{plan}");
    assert!(plan.contains("Plan: 0 to add, 1 to change, 0 to destroy."), "{plan}");
    w.ok(&apply);
    assert_eq!(
        admin(
            pg,
            "matih_tenants",
            "SELECT string_agg(script, ',' ORDER BY installed_rank) FROM tenant_hooli.flyway_schema_history"
        ),
        "V1__init.sql,V2__reference_tables.sql,V9__broken.sql,R__views.sql,V10__more.sql"
    );
    assert!(w.ok(&apply).contains("No changes."));

    // Destroy: clean again.
    w.ok(&["--schemas", "schemas", "destroy", "tenants", "--auto-approve"]);
    assert_eq!(hooli_exists(pg), ("0".into(), "0".into()));
}
on_both_backends!(failing_changed_and_pending_migrations);
