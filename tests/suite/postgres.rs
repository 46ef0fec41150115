//! The PostgreSQL provider against a real PostgreSQL server (one throwaway cluster per run of this
//! binary, see `support/postgres.rs`), driven directly and through the apply engine with real
//! plans of phase 2. Every test uses its own tenant slugs, so they run in parallel.

use crate::support::pg as pg_support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use matih::addr::ResourceAddr;
use matih::apply::{apply_tenant, refresh, ApplyOptions, NoHooks, Providers};
use matih::catalog::flyway_validate::validate_applied;
use matih::catalog::Catalog;
use matih::diag::SourceFile;
use matih::plan::{Action, TenantPlan};
use matih::provider::postgres::{PostgresProvider, PostgresSettings, CHECKED_WITH_MIGRATOR, CHECKED_WITH_PASSWORD};
use matih::provider::{Observed, Provider, ProviderError, ProviderFuture, ResourceObject, TenantRef};
use matih::spec::PlatformConfig;
use matih::state::{MemoryStore, StateStore, TenantStatus};
use matih::value::{fingerprint, Secret, Value};
use tokio_postgres::NoTls;

fn catalog() -> &'static Catalog {
    static C: std::sync::OnceLock<Catalog> = std::sync::OnceLock::new();
    C.get_or_init(|| Catalog::embedded().unwrap_or_else(|d| panic!("catalog: {d:?}")))
}

fn settings() -> PostgresSettings {
    let server = pg_support::server();
    PostgresSettings {
        admin_url: server.admin_url.clone(),
        // The tenant-facing address is the test server itself, so database_url is usable here.
        tenant_host: "127.0.0.1".into(),
        tenant_port: server.port,
        shared_database: catalog().database.shared_database.clone(),
        connect_timeout: Duration::from_secs(10),
    }
}

async fn provider() -> PostgresProvider {
    PostgresProvider::connect(&settings()).await.expect("connect to the test server")
}

fn platform() -> PlatformConfig {
    PlatformConfig { postgres_host: "127.0.0.1".into(), postgres_port: pg_support::server().port, ..Default::default() }
}

/// The real plan of a new tenant, limited to its `postgresql_*` resources.
fn phase2_plan(slug: &str, tier: &str) -> TenantPlan {
    let text = format!(
        "tenant \"{slug}\" {{\n  id = \"{}\"\n  tier = \"{tier}\"\n  region = \"eastus\"\n  admin_email = \"admin@{slug}.example\"\n}}\n",
        uuid::Uuid::new_v4()
    );
    let (specs, diags) = matih::spec::parse_tenants(&SourceFile::new(format!("{slug}.hcl"), text), catalog());
    assert!(diags.is_empty(), "{diags:?}");
    let (graph, diags) = matih::graph::compile(&specs[0], catalog(), &platform());
    assert!(diags.is_empty(), "{diags:?}");
    let mut plan = matih::plan::diff(&graph.unwrap(), None, None);
    plan.resource_changes.retain(|c| c.address.kind.starts_with("postgresql_"));
    plan
}

fn tenant(plan: &TenantPlan) -> TenantRef {
    TenantRef { slug: plan.slug.clone(), id: plan.tenant_id.clone() }
}

/// The desired object of `kind.tenant` in the plan.
fn obj(plan: &TenantPlan, kind: &str) -> ResourceObject {
    let c = plan
        .resource_changes
        .iter()
        .find(|c| c.address.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} in the plan of {}", plan.slug));
    ResourceObject::new(c.address.clone(), c.after.clone().unwrap())
}

fn addr(s: &str) -> ResourceAddr {
    s.parse().unwrap()
}

async fn admin(db: &str) -> tokio_postgres::Client {
    let mut config: tokio_postgres::Config = pg_support::server().admin_url.parse().unwrap();
    config.dbname(db);
    let (client, conn) = config.connect(NoTls).await.expect("admin connection");
    tokio::spawn(conn);
    client
}

async fn login(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

fn url_for(user: &str, password: &str, db: &str) -> String {
    format!("postgresql://{user}:{password}@127.0.0.1:{}/{db}", pg_support::server().port)
}

fn sqlstate(e: &tokio_postgres::Error) -> String {
    e.code().map(|c| c.code().to_string()).unwrap_or_else(|| e.to_string())
}

/// Applies role, container (schema or database), migrations and seed data directly; returns the
/// role's observation (with its sensitive outputs).
async fn provision(p: &PostgresProvider, plan: &TenantPlan) -> Observed {
    let t = tenant(plan);
    let role = p.apply(&t, &obj(plan, "postgresql_role")).await.expect("role");
    let container = if plan.tier == "enterprise" { "postgresql_database" } else { "postgresql_schema" };
    p.apply(&t, &obj(plan, container)).await.expect("container");
    p.apply(&t, &obj(plan, "postgresql_migrations")).await.expect("migrations");
    p.apply(&t, &obj(plan, "postgresql_seed_data")).await.expect("seed");
    role
}

/// Wraps the provider to see the sensitive outputs the engine gets (and keep them for checks).
struct Spy {
    inner: Arc<PostgresProvider>,
    sensitive: Mutex<Vec<(String, String)>>,
}

impl Provider for Spy {
    fn handles(&self, kind: &str) -> bool {
        self.inner.handles(kind)
    }
    fn read<'a>(&'a self, t: &'a TenantRef, o: &'a ResourceObject) -> ProviderFuture<'a, Option<Observed>> {
        self.inner.read(t, o)
    }
    fn apply<'a>(&'a self, t: &'a TenantRef, o: &'a ResourceObject) -> ProviderFuture<'a, Observed> {
        Box::pin(async move {
            let r = self.inner.apply(t, o).await?;
            for (k, v) in &r.sensitive {
                self.sensitive.lock().unwrap().push((format!("{}.{k}", o.addr), v.clone()));
            }
            Ok(r)
        })
    }
    fn delete<'a>(&'a self, t: &'a TenantRef, o: &'a ResourceObject) -> ProviderFuture<'a, ()> {
        self.inner.delete(t, o)
    }
}

/// A row of `flyway_schema_history` (without installed_on and execution_time, which vary).
type HistoryRow = (i32, Option<String>, String, String, String, Option<i32>, String, bool);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_tenant_through_the_apply_engine() {
    let plan = phase2_plan("pg-apply", "professional");
    let kinds: Vec<&str> = plan.resource_changes.iter().map(|c| c.address.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "postgresql_role",
            "postgresql_schema",
            "postgresql_migrations",
            "postgresql_seed_data",
            "postgresql_connectivity_check"
        ]
    );
    let pg = Arc::new(provider().await);
    let spy = Arc::new(Spy { inner: pg.clone(), sensitive: Mutex::new(Vec::new()) });
    let providers = Providers::new().with(spy.clone());
    let store = MemoryStore::new();
    let started = Instant::now();
    let report = apply_tenant(&plan, &store, &providers, &NoHooks, &ApplyOptions::default()).await.expect("apply");
    eprintln!("phase 2 (professional, 5 resources) applied in {:?}", started.elapsed());
    assert_eq!(report.status, TenantStatus::Active);
    assert_eq!(report.operations.len(), 5);

    // The role: login, connection limit of the tier, password only as a fingerprint in state.
    let sensitive: BTreeMap<String, String> = spy.sensitive.lock().unwrap().iter().cloned().collect();
    let password = sensitive["postgresql_role.tenant.password"].clone();
    let url = sensitive["postgresql_role.tenant.database_url"].clone();
    let state = store.get("pg-apply").unwrap().unwrap();
    let state_json = serde_json::to_string(&state).unwrap();
    assert!(!state_json.contains(&password), "the password reached the state");
    assert_eq!(
        state.resources[&addr("postgresql_role.tenant")].attrs["password"],
        Value::Secret(Secret { source: "generated".into(), fingerprint: Some(fingerprint(&password)) })
    );
    assert_eq!(
        state.resources[&addr("postgresql_connectivity_check.tenant")].outputs["checked_with"],
        Value::str(CHECKED_WITH_PASSWORD),
        "the check logs in with the password the role generated in the same run"
    );
    let a = admin("postgres").await;
    let row = a
        .query_one("SELECT rolcanlogin, rolconnlimit, rolsuper FROM pg_roles WHERE rolname = 'tenant_pg_apply'", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, bool>(0), row.get::<_, i32>(1), row.get::<_, bool>(2)), (true, 40, false));

    // database_url logs in, in the shared database, with the tenant schema first on the path.
    assert!(url.starts_with("postgresql://tenant_pg_apply:"), "{}", url.replace(&password, "***"));
    assert!(url.ends_with("/matih_tenants?options=-csearch_path%3Dtenant_pg_apply"));
    let tenant_client = login(&url).await.expect("log in with database_url");
    let row = tenant_client.query_one("SELECT current_user::text, current_schema()::text", &[]).await.unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("tenant_pg_apply".into(), "tenant_pg_apply".into())
    );

    // Schema owner, migration history with the catalog's checksums, objects owned by the tenant.
    let db = admin("matih_tenants").await;
    let owner: String = db
        .query_one("SELECT pg_get_userbyid(nspowner)::text FROM pg_namespace WHERE nspname = 'tenant_pg_apply'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, "tenant_pg_apply");
    let rows = db
        .query(
            "SELECT installed_rank, version::text, description::text, type::text, script::text, checksum, \
             installed_by::text, execution_time, success FROM tenant_pg_apply.flyway_schema_history ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<HistoryRow> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6), r.get(8))).collect();
    let want: Vec<_> = catalog()
        .migrations
        .iter()
        .enumerate()
        .map(|(i, m)| {
            (
                i as i32 + 1,
                m.version.clone(),
                m.description.clone(),
                "SQL".to_string(),
                m.script.clone(),
                Some(m.checksum),
                "tenant_pg_apply".to_string(),
                true,
            )
        })
        .collect();
    assert_eq!(got, want);
    let foreign: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'tenant_pg_apply' AND tableowner <> 'tenant_pg_apply'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(foreign, 0, "every table belongs to the tenant role");
    let roles: i64 = tenant_client.query_one("SELECT count(*) FROM system_roles", &[]).await.unwrap().get(0);
    assert_eq!(roles, 3);

    // Reading back gives exactly what was recorded: no drift, and a new plan has nothing to do.
    let refreshed = refresh(&state, &providers, 4).await;
    assert!(refreshed.errors.is_empty(), "{:?}", refreshed.errors);
    assert!(refreshed.gone.is_empty() && refreshed.changed.is_empty(), "{refreshed:?}");
    let replan = {
        let text = format!(
            "tenant \"pg-apply\" {{\n  id = \"{}\"\n  tier = \"professional\"\n  region = \"eastus\"\n  admin_email = \"admin@pg-apply.example\"\n}}\n",
            plan.tenant_id
        );
        let (specs, _) = matih::spec::parse_tenants(&SourceFile::new("pg-apply.hcl", text), catalog());
        let (graph, _) = matih::graph::compile(&specs[0], catalog(), &platform());
        let mut p = matih::plan::diff(&graph.unwrap(), refreshed.state.as_ref(), None);
        p.resource_changes.retain(|c| c.address.kind.starts_with("postgresql_"));
        p
    };
    let actions: Vec<(String, Action)> =
        replan.resource_changes.iter().map(|c| (c.address.to_string(), c.action)).collect();
    // This test applied phase 2's PostgreSQL resources only: the credentials Secret that should
    // hold the password was never written, so the plan rotates the password for it. The rest
    // has nothing to do.
    let role = &replan.resource_changes[0];
    assert_eq!((role.address.to_string(), role.action), ("postgresql_role.tenant".to_string(), Action::Update));
    assert_eq!(role.notes, ["password rotated: kubernetes_secret.database_credentials does not exist yet"]);
    assert_eq!(role.changes.iter().map(|c| c.path.as_str()).collect::<Vec<_>>(), ["password"]);
    assert!(actions[1..].iter().all(|(_, a)| *a == Action::NoOp), "{actions:?}");
    drop(tenant_client);

    // Destroy, in reverse: the schema (with everything in it) and the role are gone.
    let t = tenant(&plan);
    for c in plan.resource_changes.iter().rev() {
        let recorded = ResourceObject::new(c.address.clone(), state.resources[&c.address].attrs.clone());
        pg.delete(&t, &recorded).await.unwrap_or_else(|e| panic!("delete {}: {e}", c.address));
    }
    let schema = db.query_opt("SELECT 1 FROM pg_namespace WHERE nspname = 'tenant_pg_apply'", &[]).await.unwrap();
    assert!(schema.is_none());
    let role = a.query_opt("SELECT 1 FROM pg_roles WHERE rolname = 'tenant_pg_apply'", &[]).await.unwrap();
    assert!(role.is_none());
    for c in &plan.resource_changes {
        let recorded = ResourceObject::new(c.address.clone(), state.resources[&c.address].attrs.clone());
        assert_eq!(pg.read(&t, &recorded).await.unwrap(), None, "{} still reads as present", c.address);
        pg.delete(&t, &recorded).await.expect("deleting an absent object succeeds");
    }
}

#[tokio::test]
async fn tenants_cannot_reach_each_other() {
    let p = provider().await;
    let a_plan = phase2_plan("iso-a", "free");
    let b_plan = phase2_plan("iso-b", "free");
    let e_plan = phase2_plan("iso-ent", "enterprise");
    let a = provision(&p, &a_plan).await;
    provision(&p, &b_plan).await;
    provision(&p, &e_plan).await;
    let a_url = &a.sensitive["database_url"];
    let a_pw = &a.sensitive["password"];

    // Something of the platform's in the shared database's public schema.
    let shared = admin("matih_tenants").await;
    shared.batch_execute("CREATE TABLE IF NOT EXISTS public.platform_secrets (x int)").await.unwrap();

    let ta = login(a_url).await.expect("tenant A logs in");
    let own: i64 = ta.query_one("SELECT count(*) FROM configuration", &[]).await.unwrap().get(0);
    assert_eq!(own, 4, "its own seeded configuration");
    for (query, why) in [
        ("SELECT * FROM tenant_iso_b.users", "another tenant's table"),
        ("SELECT * FROM tenant_iso_b.flyway_schema_history", "another tenant's history"),
        ("CREATE TABLE tenant_iso_b.intruder (x int)", "creating in another tenant's schema"),
        ("SELECT * FROM public.platform_secrets", "objects in public it was not granted"),
        ("CREATE TABLE public.squatter (x int)", "creating in public"),
        ("CREATE SCHEMA squatter", "creating schemas"),
    ] {
        let e = ta.batch_execute(query).await.expect_err(why);
        assert_eq!(sqlstate(&e), "42501", "{why}: {e}");
    }
    // Other databases: the enterprise tenant's is closed to everyone but its owner; matih's admin
    // database and template1 to every tenant (PUBLIC's CONNECT and TEMPORARY were taken away).
    let e = login(&url_for("tenant_iso_a", a_pw, "tenant_iso_ent")).await.expect_err("connect to B's database");
    assert_eq!(sqlstate(&e), "42501", "{e}");
    for db in ["postgres", "template1"] {
        let e = login(&url_for("tenant_iso_a", a_pw, db)).await.expect_err(db);
        assert_eq!(sqlstate(&e), "42501", "{db}: {e}");
    }
    // The enterprise tenant owns its database and its public schema, and may not enter the shared one.
    let e = login(&url_for("tenant_iso_ent", "wrong-password", "tenant_iso_ent")).await.expect_err("bad password");
    assert_eq!(sqlstate(&e), "28P01");
}

#[tokio::test]
async fn an_enterprise_tenant_gets_its_own_database() {
    let p = provider().await;
    let plan = phase2_plan("pg-ent", "enterprise");
    let kinds: Vec<&str> = plan.resource_changes.iter().map(|c| c.address.kind.as_str()).collect();
    assert!(kinds.contains(&"postgresql_database") && !kinds.contains(&"postgresql_schema"), "{kinds:?}");
    let t = tenant(&plan);
    // With the database named on the role (see the report: compile should pass it), database_url is exact.
    let mut role = obj(&plan, "postgresql_role");
    role.attrs.insert("database".into(), Value::str("tenant_pg_ent"));
    role.attrs.insert("schema".into(), Value::str("public"));
    let observed = p.apply(&t, &role).await.unwrap();
    for kind in ["postgresql_database", "postgresql_migrations", "postgresql_seed_data"] {
        p.apply(&t, &obj(&plan, kind)).await.unwrap_or_else(|e| panic!("{kind}: {e}"));
    }
    let a = admin("postgres").await;
    let row = a
        .query_one(
            "SELECT pg_get_userbyid(datdba)::text, pg_encoding_to_char(encoding)::text, rolconnlimit \
             FROM pg_database, pg_roles WHERE datname = 'tenant_pg_ent' AND rolname = 'tenant_pg_ent'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1), row.get::<_, i32>(2)),
        ("postgres".into(), "UTF8".into(), 200),
        "the admin owns the database (its settings reach every session), the tenant its schema"
    );
    let c = login(&observed.sensitive["database_url"]).await.expect("database_url logs in");
    let n: i64 = c.query_one("SELECT count(*) FROM dashboard_templates", &[]).await.unwrap().get(0);
    assert_eq!(n, 3);
    let owner: String = c
        .query_one("SELECT tableowner::text FROM pg_tables WHERE tablename = 'flyway_schema_history'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, "tenant_pg_ent");
    let schema_owner: String = c
        .query_one("SELECT pg_get_userbyid(nspowner)::text FROM pg_namespace WHERE nspname = 'public'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(schema_owner, "tenant_pg_ent");
    drop(c);
    let check = p.apply(&t, &obj(&plan, "postgresql_connectivity_check")).await.expect("check");
    assert_eq!(check.outputs["checked_with"], Value::str(CHECKED_WITH_MIGRATOR));

    let db = obj(&plan, "postgresql_database");
    assert_eq!(p.read(&t, &db).await.unwrap().unwrap().attrs, db.attrs, "read matches the recorded shape");
    p.delete(&t, &db).await.expect("drop database");
    assert_eq!(p.read(&t, &db).await.unwrap(), None);
    assert_eq!(p.read(&t, &obj(&plan, "postgresql_migrations")).await.unwrap(), None);
    p.delete(&t, &role).await.expect("drop role");
    assert_eq!(p.read(&t, &role).await.unwrap(), None);
}

fn migrations_of(o: &ResourceObject) -> Vec<Value> {
    match &o.attrs["migrations"] {
        Value::List(l) => l.clone(),
        other => panic!("{other:?}"),
    }
}

fn migration(script: &str, sql: &str) -> Value {
    let m = matih::catalog::Migration::from_file(script, sql.to_string()).unwrap();
    m.to_value()
}

#[tokio::test]
async fn migrations_run_once_refuse_changed_checksums_and_roll_back_failures() {
    let p = provider().await;
    let plan = phase2_plan("pg-mig", "free");
    let t = tenant(&plan);
    provision(&p, &plan).await;
    let mig = obj(&plan, "postgresql_migrations");
    let db = admin("matih_tenants").await;
    let count = || async {
        let n: i64 =
            db.query_one("SELECT count(*) FROM tenant_pg_mig.flyway_schema_history", &[]).await.unwrap().get(0);
        n
    };
    assert_eq!(count().await, 3);
    p.apply(&t, &mig).await.expect("re-apply");
    assert_eq!(count().await, 3, "nothing runs twice");
    assert_eq!(p.read(&t, &mig).await.unwrap().unwrap().attrs, mig.attrs);

    // An applied migration whose file changed: an error naming it, nothing run.
    let mut changed = mig.clone();
    let mut list = migrations_of(&mig);
    list[0] = migration("V1__init.sql", "CREATE TABLE sneaky (x int);");
    changed.attrs.insert("migrations".into(), Value::List(list));
    let e = p.apply(&t, &changed).await.unwrap_err();
    assert_eq!(e.path.as_deref(), Some("migrations[0]"));
    assert!(!e.transient);
    assert!(e.message.contains("V1__init.sql was applied with checksum"), "{e}");
    // read shows the live checksum: drift.
    let live = p.read(&t, &changed).await.unwrap().unwrap();
    assert_ne!(live.attrs, changed.attrs);
    let applied_checksum = |v: &Value| match v {
        Value::List(l) => l[0].get_path("checksum").cloned(),
        _ => None,
    };
    assert_eq!(applied_checksum(&live.attrs["migrations"]), applied_checksum(&mig.attrs["migrations"]));
    assert_ne!(applied_checksum(&live.attrs["migrations"]), applied_checksum(&changed.attrs["migrations"]));
    // What refresh reads back is enough to refuse it at plan time, naming the file.
    let (script, message) = validate_applied(&changed.attrs, &live.attrs).expect("a plan-time error");
    assert_eq!(script, "V1__init.sql");
    assert!(message.contains("V1__init.sql was applied with checksum"), "{message}");
    assert_eq!(validate_applied(&mig.attrs, &live.attrs), None, "the unchanged files plan cleanly");

    // A failing migration: rolled back entirely (its first statement too), named with the server's message.
    let mut broken = mig.clone();
    let mut list = migrations_of(&mig);
    list.insert(2, migration("V3__broken.sql", "CREATE TABLE half_done (x int);\nCREATE TABLEX oops (y int);\n"));
    broken.attrs.insert("migrations".into(), Value::List(list.clone()));
    let e = p.apply(&t, &broken).await.unwrap_err();
    assert_eq!(e.path.as_deref(), Some("migrations[2]"));
    assert!(!e.transient, "{e}");
    assert!(e.message.contains("migration V3__broken.sql failed and was rolled back"), "{e}");
    assert!(e.message.contains("42601") && e.message.contains("syntax error") && e.message.contains("(line 2)"), "{e}");
    assert!(e.to_string().starts_with("postgresql_migrations.tenant (migrations[2]): "), "{e}");
    let half = db.query_opt("SELECT 1 FROM pg_tables WHERE tablename = 'half_done'", &[]).await.unwrap();
    assert!(half.is_none(), "the failed migration's first statement was rolled back");
    assert_eq!(count().await, 3, "a failed migration is not recorded");

    // Fixed, plus a changed repeatable: V3 runs once, R__views again, as the tenant.
    list[2] = migration("V3__fixed.sql", "CREATE TABLE notes (id int PRIMARY KEY, body text);");
    let r = list.iter().position(|m| m.get_path("script") == Some(&Value::str("R__views.sql"))).unwrap();
    list[r] = migration("R__views.sql", "CREATE OR REPLACE VIEW note_count AS SELECT count(*) AS n FROM notes;");
    let mut fixed = mig.clone();
    fixed.attrs.insert("migrations".into(), Value::List(list));
    p.apply(&t, &fixed).await.expect("fixed migrations");
    let rows = db
        .query(
            "SELECT script::text, version::text, installed_by::text FROM tenant_pg_mig.flyway_schema_history \
             WHERE installed_rank > 3 ORDER BY installed_rank",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<(String, Option<String>, String)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(
        got,
        [
            ("V3__fixed.sql".to_string(), Some("3".to_string()), "tenant_pg_mig".to_string()),
            ("R__views.sql".to_string(), None, "tenant_pg_mig".to_string())
        ]
    );
    p.apply(&t, &fixed).await.expect("again");
    assert_eq!(count().await, 5);
    assert_eq!(p.read(&t, &fixed).await.unwrap().unwrap().attrs, fixed.attrs);

    // A version older than the newest applied one is refused.
    let mut late = fixed.clone();
    let mut list = migrations_of(&fixed);
    list.push(migration("V2_5__late.sql", "SELECT 1;"));
    late.attrs.insert("migrations".into(), Value::List(list));
    let live = p.read(&t, &late).await.unwrap().unwrap();
    let (script, message) = validate_applied(&late.attrs, &live.attrs).expect("refused at plan time too");
    assert_eq!(script, "V2_5__late.sql");
    assert!(message.contains("out-of-order"), "{message}");
    let e = p.apply(&t, &late).await.unwrap_err();
    assert!(e.message.contains("out-of-order"), "{e}");
}

async fn xmins(db: &tokio_postgres::Client, table: &str) -> Vec<(String, String)> {
    db.query(&format!("SELECT name::text, xmin::text FROM tenant_pg_seed.{table} ORDER BY name"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test]
async fn seed_data_is_idempotent_and_follows_the_files() {
    let p = provider().await;
    let plan = phase2_plan("pg-seed", "free");
    let t = tenant(&plan);
    provision(&p, &plan).await;
    let seed = obj(&plan, "postgresql_seed_data");
    let db = admin("matih_tenants").await;
    let before = xmins(&db, "system_roles").await;
    assert_eq!(before.len(), 3);
    p.apply(&t, &seed).await.expect("re-seed");
    assert_eq!(xmins(&db, "system_roles").await, before, "re-running rewrites no row");
    assert_eq!(p.read(&t, &seed).await.unwrap().unwrap().attrs, seed.attrs, "no drift");
    let perms: Vec<String> = db
        .query_one("SELECT permissions FROM tenant_pg_seed.system_roles WHERE name = 'viewer'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(perms, ["dashboards:read"], "JSON arrays land in TEXT[]");
    let value: String = db
        .query_one("SELECT value::text FROM tenant_pg_seed.configuration WHERE key = 'query.max_rows'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(value, "100000", "JSON values land in JSONB");

    // Someone edits a row: read shows the live row.
    db.batch_execute("UPDATE tenant_pg_seed.system_roles SET description = 'edited' WHERE name = 'viewer'")
        .await
        .unwrap();
    let live = p.read(&t, &seed).await.unwrap().unwrap();
    assert_ne!(live.attrs, seed.attrs);
    assert!(live.attrs["files"].to_string().contains("edited") || format!("{:?}", live.attrs).contains("edited"));
    // Applying restores it, touching that row only.
    let before = xmins(&db, "system_roles").await;
    p.apply(&t, &seed).await.expect("restore");
    let after = xmins(&db, "system_roles").await;
    let rewritten: Vec<&str> =
        before.iter().zip(&after).filter(|(b, a)| b.1 != a.1).map(|(b, _)| b.0.as_str()).collect();
    assert_eq!(rewritten, ["viewer"]);
    assert_eq!(p.read(&t, &seed).await.unwrap().unwrap().attrs, seed.attrs);

    // A changed file updates its rows and adds new ones.
    let mut changed = seed.clone();
    let files = changed.attrs.get_mut("files").unwrap();
    let Value::List(files) = files else { panic!() };
    let roles = files.iter_mut().find(|f| f.get_path("table") == Some(&Value::str("system_roles"))).unwrap();
    let Value::Map(roles) = roles else { panic!() };
    roles.insert(
        "rows".into(),
        Value::list([
            Value::map([
                ("name", Value::str("viewer")),
                ("description", Value::str("Reads dashboards")),
                ("permissions", Value::list([Value::str("dashboards:read"), Value::str("catalog:read")])),
            ]),
            Value::map([
                ("name", Value::str("auditor")),
                ("description", Value::str("Reads the audit log")),
                ("permissions", Value::list([Value::str("audit:read")])),
            ]),
        ]),
    );
    p.apply(&t, &changed).await.expect("changed seed");
    let rows: Vec<(String, String, Vec<String>)> = db
        .query("SELECT name::text, description, permissions FROM tenant_pg_seed.system_roles ORDER BY name", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(rows.len(), 4, "rows no longer in the file are kept: {rows:?}");
    assert!(rows.contains(&("auditor".into(), "Reads the audit log".into(), vec!["audit:read".into()])));
    assert!(rows.contains(&(
        "viewer".into(),
        "Reads dashboards".into(),
        vec!["dashboards:read".into(), "catalog:read".into()]
    )));
    assert_eq!(p.read(&t, &changed).await.unwrap().unwrap().attrs, changed.attrs);
}

#[tokio::test]
async fn read_sees_drift_and_absence() {
    let p = provider().await;
    let plan = phase2_plan("pg-drift", "free");
    let t = tenant(&plan);
    provision(&p, &plan).await;
    let role = obj(&plan, "postgresql_role");
    let recorded_role = ResourceObject::new(role.addr.clone(), {
        let mut attrs = role.attrs.clone();
        attrs.insert(
            "password".into(),
            Value::Secret(Secret { source: "generated".into(), fingerprint: Some("sha256:x".into()) }),
        );
        attrs
    });
    let schema = obj(&plan, "postgresql_schema");
    let check = obj(&plan, "postgresql_connectivity_check");
    p.apply(&t, &check).await.expect("check");
    assert_eq!(p.read(&t, &recorded_role).await.unwrap().unwrap().attrs, recorded_role.attrs);
    assert_eq!(p.read(&t, &check).await.unwrap().unwrap().attrs, check.attrs);

    let a = admin("postgres").await;
    a.batch_execute("ALTER ROLE tenant_pg_drift CONNECTION LIMIT 3").await.unwrap();
    let live = p.read(&t, &recorded_role).await.unwrap().unwrap();
    assert_eq!(live.attrs["connection_limit"], Value::Int(3));
    assert_eq!(live.attrs["password"], recorded_role.attrs["password"]);
    // Applying the recorded role puts the limit back and keeps the password (nothing sensitive).
    let applied = p.apply(&t, &recorded_role).await.unwrap();
    assert!(applied.sensitive.is_empty());
    assert_eq!(p.read(&t, &recorded_role).await.unwrap().unwrap().attrs["connection_limit"], Value::Int(10));

    // The tier's role settings are applied, and a tenant that lifts its own statement_timeout is
    // drift that apply puts back. temp_file_limit it cannot change at all (superuser only).
    let settings = Value::map([("statement_timeout", Value::str("30s")), ("temp_file_limit", Value::str("1GB"))]);
    assert_eq!(recorded_role.attrs["settings"], settings, "the free tier's, from schemas/tiers.hcl");
    assert_eq!(p.read(&t, &recorded_role).await.unwrap().unwrap().attrs["settings"], settings);
    a.batch_execute("ALTER ROLE tenant_pg_drift SET statement_timeout = 0").await.unwrap();
    let e = a
        .batch_execute("SET ROLE tenant_pg_drift; ALTER ROLE tenant_pg_drift SET temp_file_limit = -1")
        .await
        .expect_err("temp_file_limit is for superusers");
    assert_eq!(sqlstate(&e), "42501", "{e}");
    a.batch_execute("RESET ROLE").await.unwrap();
    let live = p.read(&t, &recorded_role).await.unwrap().unwrap();
    assert_eq!(
        live.attrs["settings"],
        Value::map([("statement_timeout", Value::str("0")), ("temp_file_limit", Value::str("1GB"))])
    );
    p.apply(&t, &recorded_role).await.unwrap();
    assert_eq!(p.read(&t, &recorded_role).await.unwrap().unwrap().attrs["settings"], settings);

    let db = admin("matih_tenants").await;
    db.batch_execute("ALTER SCHEMA tenant_pg_drift OWNER TO postgres").await.unwrap();
    assert_eq!(p.read(&t, &schema).await.unwrap().unwrap().attrs["owner"], Value::str("postgres"));
    db.batch_execute("DROP SCHEMA tenant_pg_drift CASCADE").await.unwrap();
    for kind in ["postgresql_schema", "postgresql_migrations", "postgresql_seed_data", "postgresql_connectivity_check"]
    {
        assert_eq!(p.read(&t, &obj(&plan, kind)).await.unwrap(), None, "{kind}");
    }
    // The migrations then refuse to run in a missing schema, naming it.
    let e = p.apply(&t, &obj(&plan, "postgresql_migrations")).await.unwrap_err();
    assert_eq!(e.path.as_deref(), Some("schema"));
    assert!(e.message.contains("schema \"tenant_pg_drift\" does not exist in database \"matih_tenants\""), "{e}");
    p.delete(&t, &schema).await.expect("deleting a dropped schema succeeds");
    p.delete(&t, &role).await.expect("drop role");
    assert_eq!(p.read(&t, &role).await.unwrap(), None);
}

#[tokio::test]
async fn passwords_rotate_on_request_and_never_leak() {
    let p = provider().await;
    let plan = phase2_plan("pg-secret", "free");
    let t = tenant(&plan);
    let role = obj(&plan, "postgresql_role");
    let first = p.apply(&t, &role).await.unwrap();
    let pw1 = first.sensitive["password"].clone();
    assert_eq!(pw1.len(), 48);
    for shown in [format!("{first:?}"), format!("{:?}", first.attrs), serde_json::to_string(&first.attrs).unwrap()] {
        assert!(!shown.contains(&pw1), "password in {shown}");
    }
    assert!(first.sensitive["database_url"].contains(&pw1));
    p.apply(&t, &obj(&plan, "postgresql_schema")).await.unwrap();
    login(&url_for("tenant_pg_secret", &pw1, "matih_tenants")).await.expect("the password works");

    // Update with the recorded fingerprint: the password is kept.
    let recorded = ResourceObject::new(role.addr.clone(), first.attrs.clone());
    let again = p.apply(&t, &recorded).await.unwrap();
    assert!(again.sensitive.is_empty());
    assert_eq!(again.attrs, first.attrs);
    login(&url_for("tenant_pg_secret", &pw1, "matih_tenants")).await.expect("still works");

    // Rotation: the fingerprint removed from what is applied.
    let rotated = p.apply(&t, &role).await.unwrap();
    let pw2 = rotated.sensitive["password"].clone();
    assert_ne!(pw1, pw2);
    assert_eq!(
        rotated.attrs["password"],
        Value::Secret(Secret { source: "generated".into(), fingerprint: Some(fingerprint(&pw2)) })
    );
    let e = login(&url_for("tenant_pg_secret", &pw1, "matih_tenants")).await.expect_err("old password refused");
    assert_eq!(sqlstate(&e), "28P01");
    login(&url_for("tenant_pg_secret", &pw2, "matih_tenants")).await.expect("new password works");

    // The connectivity check with the password of this run, and with a wrong one.
    p.apply(&t, &obj(&plan, "postgresql_migrations")).await.unwrap();
    let mut check = obj(&plan, "postgresql_connectivity_check");
    check.secrets.insert("output:postgresql_role.tenant.password".into(), pw2.clone());
    let ok = p.apply(&t, &check).await.expect("check with the tenant's password");
    assert_eq!(ok.outputs["checked_with"], Value::str(CHECKED_WITH_PASSWORD));
    assert!(ok.sensitive.is_empty());
    assert!(!format!("{check:?}").contains(&pw2), "ResourceObject's Debug shows no secret");
    check.secrets.insert("output:postgresql_role.tenant.password".into(), pw1.clone());
    let e = p.apply(&t, &check).await.unwrap_err();
    assert!(!e.transient);
    assert!(e.message.contains("28P01") && e.message.contains("password authentication failed"), "{e}");
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains(&pw1) && !shown.contains(&pw2), "{shown}");

    // The admin password never shows either.
    let admin_pw = &pg_support::server().admin_password;
    assert!(!format!("{p:?} {:?}", settings()).contains(admin_pw.as_str()));
    let bad =
        PostgresSettings { admin_url: format!("postgresql://postgres:{admin_pw}@127.0.0.1:1/postgres"), ..settings() };
    let e = PostgresProvider::connect(&bad).await.unwrap_err();
    assert!(e.contains("cannot connect to PostgreSQL as admin"), "{e}");
    assert!(!e.contains(admin_pw.as_str()), "{e}");
    let e = PostgresProvider::connect(&PostgresSettings {
        admin_url: format!("postgres://x:{admin_pw}@h:port/"),
        ..settings()
    })
    .await
    .unwrap_err();
    assert!(!e.contains(admin_pw.as_str()), "{e}");

    for kind in ["postgresql_schema", "postgresql_role"] {
        p.delete(&t, &obj(&plan, kind)).await.unwrap();
    }
}

#[tokio::test]
async fn errors_name_the_object_and_are_classified() {
    // Its own application_name, so that terminating its connections leaves other tests alone.
    let own = PostgresSettings {
        admin_url: format!("{}?application_name=matih_err_test", settings().admin_url),
        ..settings()
    };
    let p = PostgresProvider::connect(&own).await.unwrap();
    let plan = phase2_plan("pg-err", "free");
    let t = tenant(&plan);
    // The owner does not exist: permanent, naming the schema and carrying the server's message.
    let schema = obj(&plan, "postgresql_schema");
    let e: ProviderError = p.apply(&t, &schema).await.unwrap_err();
    assert!(!e.transient, "{e}");
    assert!(e.message.contains("tenant_pg_err"), "{e}");
    assert!(e.message.contains("42704") && e.message.contains("does not exist"), "{e}");
    // A name that is not a plain SQL name never reaches SQL.
    let mut evil = obj(&plan, "postgresql_role");
    evil.attrs.insert("name".into(), Value::str("x\"; DROP ROLE postgres; --"));
    let e = p.apply(&t, &evil).await.unwrap_err();
    assert_eq!(e.path.as_deref(), Some("name"));
    assert!(!e.transient);
    // Connections the server ends (administrator command) are replaced transparently.
    let role = obj(&plan, "postgresql_role");
    p.apply(&t, &role).await.unwrap();
    let a = admin("postgres").await;
    a.batch_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'matih_err_test' AND pid <> pg_backend_pid()",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(p.read(&t, &role).await.unwrap().is_some(), "the pool replaced its terminated connections");
    p.delete(&t, &role).await.unwrap();
}

// Issue 21, item 1: a tenant's own code (a trigger, a view calling a function, a search_path
// on its database) must never run with matih's admin rights, whatever tier.

/// Whether a role of that name exists (what the attacks below try to create).
async fn role_exists(name: &str) -> bool {
    admin("postgres").await.query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&name]).await.unwrap().is_some()
}

/// The tenant, logged in with its own password, as its services would be.
async fn as_tenant(role: &str, password: &str, db: &str, schema: &str) -> tokio_postgres::Client {
    let c = login(&url_for(role, password, db)).await.expect("the tenant logs in");
    c.batch_execute(&format!("SET search_path TO {schema}")).await.unwrap();
    c
}

/// plpgsql that leaves the role matih's session gave it (`RESET ROLE`), notes who it is then, and
/// tries a statement only a privileged role may run; it swallows the refusal so that the attack
/// is silent. `{back}` is run after it (to return to the tenant role or not).
fn escalation(evil: &str, back: &str) -> String {
    format!(
        "DECLARE who text; \
         BEGIN \
           RESET ROLE; \
           who := current_user; \
           BEGIN EXECUTE 'CREATE ROLE {evil}'; EXCEPTION WHEN insufficient_privilege OR duplicate_object THEN NULL; END; \
           {back} \
           PERFORM set_config('matih_test.who', who, false); \
           RETURN {ret}; \
         END",
        ret = if back.is_empty() { "true" } else { "NEW" }
    )
}

/// The cast function of the cast variant: escalates, then returns the version as text.
fn escalation_cast(evil: &str) -> String {
    format!(
        "BEGIN \
           RESET ROLE; \
           BEGIN EXECUTE 'CREATE ROLE {evil}'; EXCEPTION WHEN insufficient_privilege OR duplicate_object THEN NULL; END; \
           RETURN pg_catalog.textin(pg_catalog.enum_out(v)); \
         END"
    )
}

async fn tenant_code_never_runs_as_admin(slug: &str, tier: &str) {
    let p = provider().await;
    let plan = phase2_plan(slug, tier);
    let t = tenant(&plan);
    let observed = provision(&p, &plan).await;
    let migrations = obj(&plan, "postgresql_migrations");
    let seed = obj(&plan, "postgresql_seed_data");
    let s = |o: &ResourceObject, k: &str| o.attrs[k].as_str().unwrap().to_string();
    let (role, db, schema) = (s(&migrations, "owner"), s(&migrations, "database"), s(&migrations, "schema"));
    let password = observed.sensitive["password"].clone();
    let migrator = matih::provider::postgres::session::migrator_name(&role);
    let tc = as_tenant(&role, &password, &db, &schema).await;

    // Trigger: a seed table gets a trigger that leaves the session's role; a seed row is deleted,
    // so the next apply inserts it again and fires the trigger.
    let evil_trigger = format!("evil_{role}_trigger");
    tc.batch_execute(&format!(
        "CREATE TABLE escalation_seen (who text); \
         CREATE FUNCTION escalate_trigger() RETURNS trigger LANGUAGE plpgsql AS $f${body}$f$; \
         CREATE TRIGGER escalate BEFORE INSERT OR UPDATE ON system_roles FOR EACH ROW \
           EXECUTE FUNCTION escalate_trigger(); \
         DELETE FROM system_roles WHERE name = (SELECT min(name) FROM system_roles)",
        body =
            escalation(&evil_trigger, &format!("EXECUTE 'SET ROLE {role}'; INSERT INTO escalation_seen VALUES (who);"))
    ))
    .await
    .unwrap();
    let read = p.read(&t, &seed).await.expect("read the seed data").unwrap();
    assert_ne!(read.attrs, seed.attrs, "the deleted row shows as drift");
    p.apply(&t, &seed).await.expect("the seed is applied again, harmlessly");
    assert!(!role_exists(&evil_trigger).await, "{tier}: the trigger ran with admin rights");
    let seen: Vec<String> =
        tc.query("SELECT DISTINCT who FROM escalation_seen", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(seen, std::slice::from_ref(&migrator), "{tier}: RESET ROLE falls back to the powerless migrator");
    let n: i64 = tc.query_one("SELECT count(*) FROM system_roles", &[]).await.unwrap().get(0);
    assert_eq!(n, 3, "the row is back");
    assert_eq!(p.read(&t, &seed).await.unwrap().unwrap().attrs, seed.attrs, "no drift left");

    // Cast: the history's version column gets a type of the tenant's, with a cast to text written
    // by the tenant; reading the history (`version::text`) calls it.
    let evil_cast = format!("evil_{role}_cast");
    tc.batch_execute(&format!(
        "CREATE TYPE history_version AS ENUM ('1', '2'); \
         ALTER TABLE flyway_schema_history ALTER COLUMN version TYPE history_version \
           USING version::text::history_version; \
         CREATE FUNCTION history_version_text(v history_version) RETURNS text LANGUAGE plpgsql AS $f${body}$f$; \
         CREATE CAST (history_version AS text) WITH FUNCTION history_version_text(history_version)",
        body = escalation_cast(&evil_cast)
    ))
    .await
    .unwrap();
    let read = p.read(&t, &migrations).await.expect("the history is read, as the tenant").unwrap();
    assert_eq!(read.attrs, migrations.attrs, "{tier}: the history reads as applied");
    assert!(!role_exists(&evil_cast).await, "{tier}: the history was read with admin rights");
    tc.batch_execute(
        "ALTER TABLE flyway_schema_history ALTER COLUMN version TYPE varchar(50) USING pg_catalog.enum_out(version); \
         DROP CAST (history_version AS text)",
    )
    .await
    .unwrap();

    // View: the migration history is replaced by a view that calls the tenant's function.
    let evil_view = format!("evil_{role}_view");
    tc.batch_execute(&format!(
        "ALTER TABLE flyway_schema_history RENAME TO flyway_history_real; \
         CREATE FUNCTION escalate_view() RETURNS boolean LANGUAGE plpgsql AS $f${body}$f$; \
         CREATE VIEW flyway_schema_history AS SELECT * FROM flyway_history_real WHERE escalate_view()",
        body = escalation(&evil_view, "")
    ))
    .await
    .unwrap();
    let read = p.read(&t, &migrations).await.expect("a view is drift, not a read error").unwrap();
    assert_eq!(
        read.attrs["history_table"],
        Value::str("flyway_schema_history (a view, not an ordinary table)"),
        "{tier}"
    );
    assert_eq!(read.attrs["migrations"], Value::List(vec![]), "nothing is read from the view");
    let e = p.apply(&t, &migrations).await.expect_err("migrating over a view is refused");
    assert!(
        e.message.contains("\"flyway_schema_history\" is a view, not an ordinary table")
            && e.message.contains("changed outside matih"),
        "{e}"
    );
    assert!(!e.transient);
    assert!(!role_exists(&evil_view).await, "{tier}: the view ran the tenant's function with admin rights");
    // The connectivity check without the tenant's password logs in as the migrator too.
    let check = p.apply(&t, &obj(&plan, "postgresql_connectivity_check")).await.expect("check");
    assert_eq!(check.outputs["checked_with"], Value::str(CHECKED_WITH_MIGRATOR));
    assert!(!role_exists(&evil_view).await && !role_exists(&evil_trigger).await);

    // search_path: the tenant cannot set its database's defaults (every session would inherit them).
    let e = tc
        .batch_execute(&format!("ALTER DATABASE {db} SET search_path = {schema}, pg_catalog"))
        .await
        .expect_err("the tenant does not own its database");
    assert_eq!(sqlstate(&e), "42501", "{tier}: {e}");

    // The migrator holds no right of its own and is a member of the tenant role only.
    let a = admin("postgres").await;
    let row = a
        .query_one(
            "SELECT rolinherit, rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls, rolpassword IS NULL, \
             array(SELECT g.rolname::text FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid \
                   WHERE m.member = r.oid) \
             FROM pg_authid r WHERE rolname = $1",
            &[&migrator],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, bool>(0), row.get::<_, bool>(1), row.get::<_, bool>(2), row.get::<_, Vec<String>>(3)),
        (false, false, true, vec![role.clone()]),
        "NOINHERIT, unprivileged, no password left behind, member of the tenant role only"
    );
    drop(tc);

    // Destroy removes the migrator with the role.
    let container = if tier == "enterprise" { "postgresql_database" } else { "postgresql_schema" };
    p.delete(&t, &obj(&plan, container)).await.expect("drop the container");
    p.delete(&t, &obj(&plan, "postgresql_role")).await.expect("drop the role");
    assert!(!role_exists(&migrator).await && !role_exists(&role).await);
}

#[tokio::test]
async fn tenant_code_never_runs_as_admin_free() {
    tenant_code_never_runs_as_admin("sec-free", "free").await;
}

#[tokio::test]
async fn tenant_code_never_runs_as_admin_professional() {
    tenant_code_never_runs_as_admin("sec-pro", "professional").await;
}

#[tokio::test]
async fn tenant_code_never_runs_as_admin_enterprise() {
    tenant_code_never_runs_as_admin("sec-ent", "enterprise").await;
}

/// An enterprise database left owned by its tenant (as matih made them before): the tenant points
/// the database's `search_path` at its schema, where a view named `pg_namespace` and a function
/// named `has_schema_privilege` wait for an unqualified catalog lookup. matih's sessions pin their
/// own path and qualify catalog names; the plan shows the ownership as drift and apply takes the
/// database back and resets its settings.
#[tokio::test]
async fn an_enterprise_database_search_path_does_not_reach_the_admin() {
    let p = provider().await;
    let plan = phase2_plan("sec-ent-path", "enterprise");
    let t = tenant(&plan);
    let observed = provision(&p, &plan).await;
    let role = "tenant_sec_ent_path";
    let a = admin("postgres").await;
    a.batch_execute(&format!("ALTER DATABASE {role} OWNER TO {role}")).await.unwrap();
    let tc = as_tenant(role, &observed.sensitive["password"], role, "public").await;
    let evil = "evil_sec_ent_path";
    tc.batch_execute(&format!(
        "CREATE FUNCTION public.escalate() RETURNS boolean LANGUAGE plpgsql AS $f${body}$f$; \
         CREATE VIEW public.pg_namespace AS SELECT n.* FROM pg_catalog.pg_namespace n WHERE public.escalate(); \
         CREATE VIEW public.pg_class AS SELECT c.* FROM pg_catalog.pg_class c WHERE public.escalate(); \
         CREATE FUNCTION public.has_schema_privilege(name, text, text) RETURNS boolean LANGUAGE sql \
           AS 'SELECT public.escalate()'; \
         CREATE FUNCTION public.pg_get_userbyid(oid) RETURNS name LANGUAGE sql \
           AS 'SELECT CASE WHEN public.escalate() THEN pg_catalog.pg_get_userbyid($1) END'; \
         ALTER DATABASE {role} SET search_path = public, pg_catalog",
        body = escalation(evil, "")
    ))
    .await
    .expect("the tenant owns the database, so it may set its search_path");
    drop(tc);

    // Every read a plan makes, then every apply, including the check without the password.
    let db = obj(&plan, "postgresql_database");
    let read = p.read(&t, &db).await.unwrap().unwrap();
    assert_eq!(read.attrs["owner"], Value::str(format!("{role} (owns the database)")), "drift to repair");
    for kind in ["postgresql_role", "postgresql_migrations", "postgresql_seed_data", "postgresql_connectivity_check"] {
        p.read(&t, &obj(&plan, kind)).await.unwrap_or_else(|e| panic!("read {kind}: {e}"));
    }
    assert!(!role_exists(evil).await, "a read followed the tenant's search_path");
    for kind in
        ["postgresql_database", "postgresql_migrations", "postgresql_seed_data", "postgresql_connectivity_check"]
    {
        p.apply(&t, &obj(&plan, kind)).await.unwrap_or_else(|e| panic!("apply {kind}: {e}"));
    }
    assert!(!role_exists(evil).await, "an apply followed the tenant's search_path");

    // The database is the admin's again, without the tenant's settings; the schema stays the tenant's.
    let row = a
        .query_one(
            "SELECT pg_get_userbyid(d.datdba)::text, \
             (SELECT count(*) FROM pg_db_role_setting s WHERE s.setdatabase = d.oid) \
             FROM pg_database d WHERE datname = $1",
            &[&role],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, i64>(1)), ("postgres".to_string(), 0));
    assert_eq!(p.read(&t, &db).await.unwrap().unwrap().attrs, db.attrs, "no drift left");
    let tc = as_tenant(role, &observed.sensitive["password"], role, "public").await;
    let e = tc.batch_execute(&format!("ALTER DATABASE {role} SET search_path = public")).await.unwrap_err();
    assert_eq!(sqlstate(&e), "42501");
    drop(tc);
    p.delete(&t, &db).await.unwrap();
    p.delete(&t, &obj(&plan, "postgresql_role")).await.unwrap();
}

// Issue 21, item 2: a tenant that edits its own flyway_schema_history fails only itself.

/// One tenant's spec and graph, with a fixed id (so that it can be planned again).
fn spec_and_graph(slug: &str, tier: &str, id: &str) -> (matih::spec::TenantSpec, matih::graph::ResourceGraph) {
    let text = format!(
        "tenant \"{slug}\" {{\n  id = \"{id}\"\n  tier = \"{tier}\"\n  region = \"eastus\"\n  admin_email = \"admin@{slug}.example\"\n}}\n"
    );
    let (mut specs, diags) = matih::spec::parse_tenants(&SourceFile::new(format!("{slug}.hcl"), text), catalog());
    assert!(diags.is_empty(), "{diags:?}");
    let (graph, diags) = matih::graph::compile(&specs[0], catalog(), &platform());
    assert!(diags.is_empty(), "{diags:?}");
    (specs.remove(0), graph.unwrap())
}

fn postgres_only(mut plan: TenantPlan) -> TenantPlan {
    plan.resource_changes.retain(|c| c.address.kind.starts_with("postgresql_"));
    plan
}

#[test]
fn a_history_edited_by_its_tenant_fails_only_that_tenant() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let pg = Arc::new(rt.block_on(provider()));
    let providers = Providers::new().with(pg.clone());
    let store = MemoryStore::new();
    let tenants: Vec<_> = ["hist-a", "hist-b"]
        .iter()
        .map(|slug| spec_and_graph(slug, "free", &uuid::Uuid::new_v4().to_string()))
        .collect();
    for (_, graph) in &tenants {
        let plan = postgres_only(matih::plan::diff(graph, None, None));
        let report =
            rt.block_on(apply_tenant(&plan, &store, &providers, &NoHooks, &ApplyOptions::default())).expect("apply");
        assert_eq!(report.status, TenantStatus::Active);
    }

    // hist-a edits the checksum of an applied migration in its own table.
    let v2 = catalog().migrations.iter().find(|m| m.version.as_deref() == Some("2")).unwrap();
    rt.block_on(async {
        admin("matih_tenants")
            .await
            .batch_execute("UPDATE tenant_hist_a.flyway_schema_history SET checksum = checksum + 1 WHERE version = '2'")
            .await
            .unwrap()
    });

    // The fleet's plan is made (the check is against matih's record); hist-a's shows the edit.
    let specs: Vec<_> = tenants.iter().map(|(s, _)| s.clone()).collect();
    let graphs: Vec<_> = tenants.iter().map(|(_, g)| g.clone()).collect();
    let refresh_with = matih::workflow::Refresh { providers: &providers, runtime: &rt, parallelism: 4 };
    let (plan, read_errors) = matih::workflow::plan_tenants(&specs, &graphs, &store, Some(&refresh_with))
        .expect("one tenant's table does not stop the plan");
    assert!(read_errors.is_empty(), "{read_errors:?}");
    let migrations_of = |slug: &str| {
        plan.tenants
            .iter()
            .find(|t| t.slug == slug)
            .unwrap()
            .resource_changes
            .iter()
            .find(|c| c.address.kind == "postgresql_migrations")
            .unwrap()
            .clone()
    };
    let a = migrations_of("hist-a");
    assert_eq!(a.action, Action::Update);
    assert_eq!(
        a.notes,
        [format!(
            "migration history changed outside matih: {} has checksum {} in the table, {} as applied; apply will \
             refuse this tenant until the table is restored",
            v2.script,
            v2.checksum + 1,
            v2.checksum
        )]
    );
    assert_eq!(migrations_of("hist-b").action, Action::NoOp);

    // Applying: hist-a fails with the reason, nothing run; hist-b is unaffected.
    for tp in &plan.tenants {
        let applied = rt.block_on(apply_tenant(
            &postgres_only(tp.clone()),
            &store,
            &providers,
            &NoHooks,
            &ApplyOptions::default(),
        ));
        let state = store.get(&tp.slug).unwrap().unwrap();
        if tp.slug == "hist-a" {
            let e = applied.expect_err("hist-a fails");
            assert_eq!(state.status, TenantStatus::Failed, "{e:?}");
            let why = state.provisioning_error.unwrap_or_default();
            assert!(
                why.contains(&format!(
                    "matih applied migration {} with checksum {} but the history table records checksum {}",
                    v2.script,
                    v2.checksum,
                    v2.checksum + 1
                )) && why.contains("was changed outside matih, whose own record is authoritative; nothing was run"),
                "{why}"
            );
        } else {
            assert_eq!(applied.expect("hist-b applies").status, TenantStatus::Active);
        }
    }

    // Restored, hist-a applies again.
    rt.block_on(async {
        admin("matih_tenants")
            .await
            .batch_execute("UPDATE tenant_hist_a.flyway_schema_history SET checksum = checksum - 1 WHERE version = '2'")
            .await
            .unwrap()
    });
    let (plan, _) = matih::workflow::plan_tenants(&specs[..1], &graphs[..1], &store, Some(&refresh_with)).unwrap();
    let report = rt
        .block_on(apply_tenant(
            &postgres_only(plan.tenants[0].clone()),
            &store,
            &providers,
            &NoHooks,
            &ApplyOptions::default(),
        ))
        .expect("apply");
    assert_eq!(report.status, TenantStatus::Active);
    for (spec, _) in &tenants {
        let recorded = store.get(&spec.slug.value).unwrap().unwrap();
        let t = TenantRef { slug: recorded.slug.clone(), id: recorded.tenant_id.clone() };
        for kind in ["postgresql_schema", "postgresql_role"] {
            let (addr, r) = recorded.resources.iter().find(|(a, _)| a.kind == kind).unwrap();
            rt.block_on(pg.delete(&t, &ResourceObject::new(addr.clone(), r.attrs.clone()))).unwrap();
        }
    }
}

/// An enterprise database whose apply was cut off between `CREATE DATABASE` and handing its
/// schema `public` to the tenant (a runner killed there): the schema is the admin's. Every read of
/// the tenant still succeeds, the database reads as drift and the seed as not applied (no tenant's
/// rows can be in a schema the tenant does not own), and applying in phase order repairs it.
#[tokio::test]
async fn an_enterprise_database_cut_off_before_the_hand_over_is_repaired() {
    let p = provider().await;
    let plan = phase2_plan("pg-ent-cut", "enterprise");
    let t = tenant(&plan);
    let role = obj(&plan, "postgresql_role");
    p.apply(&t, &role).await.expect("role");
    let a = admin("postgres").await;
    a.batch_execute("CREATE DATABASE tenant_pg_ent_cut ENCODING 'UTF8' TEMPLATE template0").await.unwrap();

    let db = obj(&plan, "postgresql_database");
    let read = p.read(&t, &db).await.expect("read database").expect("it exists");
    assert_eq!(read.attrs["owner"], Value::str("postgres"), "the admin's schema is drift to repair");
    let seed = obj(&plan, "postgresql_seed_data");
    assert_eq!(p.read(&t, &seed).await.expect("read seed"), None, "nothing seeded into the admin's schema");
    let migrations = obj(&plan, "postgresql_migrations");
    let live = p.read(&t, &migrations).await.expect("read migrations").expect("the schema exists");
    assert_eq!(migrations_of(&ResourceObject::new(migrations.addr.clone(), live.attrs)), Vec::<Value>::new());
    assert!(p.apply(&t, &seed).await.is_err(), "the seed still refuses to run as the admin");

    for kind in ["postgresql_database", "postgresql_migrations", "postgresql_seed_data"] {
        p.apply(&t, &obj(&plan, kind)).await.unwrap_or_else(|e| panic!("apply {kind}: {e}"));
    }
    for o in [&db, &migrations, &seed] {
        assert_eq!(p.read(&t, o).await.unwrap().unwrap().attrs, o.attrs, "{} after the repair", o.addr);
    }
}

/// How many sessions were ever opened to `db`, once the server's count has settled (a backend
/// reports its session when it ends, or at its next transaction).
async fn sessions_to(stats: &tokio_postgres::Client, db: &str) -> i64 {
    let mut last = -1;
    loop {
        let n: i64 =
            stats.query_one("SELECT sessions FROM pg_stat_database WHERE datname = $1", &[&db]).await.unwrap().get(0);
        if n == last {
            return n;
        }
        last = n;
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
}

// Issue 16, item 3: the admin session that sets a migrator's one-use password and holds its
// advisory lock is a pooled one, given back once the lock is released: reads of a tenant's
// migrations log matih's admin in once, not once per read, and no pooled session keeps a lock.
#[tokio::test]
async fn migrator_logins_reuse_one_admin_session_and_leave_no_lock_behind() {
    let plan = phase2_plan("pg-pool", "free");
    let t = tenant(&plan);
    let setup = provider().await;
    provision(&setup, &plan).await;
    // matih's admin database for this test alone, so that its sessions are counted apart.
    let db = format!("matih_pool_{}", uuid::Uuid::new_v4().simple());
    let stats = admin("postgres").await;
    stats.batch_execute(&format!("CREATE DATABASE {db}")).await.unwrap();
    let (base, _) = settings().admin_url.rsplit_once('/').map(|(b, d)| (b.to_string(), d.to_string())).unwrap();
    let own = PostgresSettings { admin_url: format!("{base}/{db}"), ..settings() };
    let before = sessions_to(&stats, &db).await;

    let p = PostgresProvider::connect(&own).await.unwrap();
    let migrations = obj(&plan, "postgresql_migrations");
    for _ in 0..5 {
        assert!(p.read(&t, &migrations).await.unwrap().is_some(), "the migrations are read");
    }
    let held: i64 = stats
        .query_one(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND a.datname = $1",
            &[&db],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(held, 0, "a pooled admin session still holds a migrator's advisory lock");
    drop(p);
    let opened = sessions_to(&stats, &db).await - before;
    // One for the provider's pool (a second only if the server ended the first); five reads that
    // each logged the admin in again would make six.
    assert!(opened <= 2, "{opened} admin sessions for 5 reads of one tenant's migrations");

    stats.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)")).await.unwrap();
    for kind in ["postgresql_schema", "postgresql_role"] {
        setup.delete(&t, &obj(&plan, kind)).await.unwrap();
    }
}
