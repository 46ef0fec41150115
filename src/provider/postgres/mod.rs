//! The PostgreSQL provider: phase 2 (SETUP_DATABASE), every `postgresql_*` resource.
//!
//! | kind | apply | delete | read (drift) |
//! |---|---|---|---|
//! | `postgresql_role` | `CREATE`/`ALTER ROLE … LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS CONNECTION LIMIT n`; password generated at creation (and on rotation) | `DROP OWNED` in every database it has objects or rights in, then `DROP ROLE` | login, connection limit |
//! | `postgresql_schema` | shared database created if missing and closed to `PUBLIC`; `GRANT CONNECT` to the owner; `CREATE SCHEMA … AUTHORIZATION owner` | `DROP SCHEMA … CASCADE` (the phase's rollback) | owner |
//! | `postgresql_database` | `CREATE DATABASE … ENCODING … TEMPLATE template0` owned by the admin, `REVOKE ALL … FROM PUBLIC`, `GRANT CONNECT, TEMPORARY` to the owner, schema `public` owned by the owner | `DROP DATABASE … WITH (FORCE)` | owner (of its schema), encoding |
//! | `postgresql_migrations` | Flyway-compatible (see [`migrate`]) | nothing (the schema or database drop removes it) | applied migrations and their checksums |
//! | `postgresql_seed_data` | idempotent upserts (see [`seed`]) | nothing | rows as they are |
//! | `postgresql_connectivity_check` | logs in as the tenant (or, without its password, as its migrator: [`session`]) and queries its schema | nothing | whether the role may still use its schema |
//!
//! **Passwords.** The role's password is 48 hex characters from two UUIDv4 (the OS's CSPRNG). It
//! is sent to the server only as a SCRAM-SHA-256 verifier computed here, so neither the wire nor
//! the server's log ever sees it. It leaves the provider only as `Observed.sensitive["password"]`
//! and `["database_url"]` (held in memory by the engine for the `tenant-database-credentials`
//! Secret); the recorded attribute is its `sha256:` fingerprint. An update whose password has a
//! fingerprint keeps the password; one without a fingerprint sets a new one: a new role, or a
//! rotation, which the plan asks for when the credentials Secret is missing or no longer matches
//! the recorded fingerprint (see `plan::diff`, rule **Rotation**; the Secret is rewritten in the
//! same run). The admin connection URL (with its password) is never shown by `Debug`, errors or
//! logs.
//!
//! **Plan-time checks.** `catalog::flyway_validate::validate_applied` is Flyway's `validate` over what refresh
//! read back: `matih plan` refuses an applied migration whose file changed, naming the file.
//!
//! **Isolation.** A tenant role owns its schema and nothing else. Shared databases are created
//! from `template0` and closed to `PUBLIC` (`REVOKE ALL ON DATABASE`, `REVOKE ALL ON SCHEMA
//! public`), and so are matih's admin database and `template1` (before a tenant role is created or
//! altered), so a tenant's login reaches no database but its own; each tenant role gets
//! `CONNECT` on the shared database only, so it can neither read another tenant's schema nor
//! objects in `public` it was not granted. An enterprise database is owned by the admin, closed to
//! `PUBLIC`, and the tenant role gets `CONNECT`, `TEMPORARY` and the ownership of its schema
//! `public`: it cannot change the database's settings (a `search_path` there would reach every
//! session, the admin's included).
//!
//! **Tenant code never runs with admin rights.** Whatever may run code the tenant wrote
//! (migrations and seed upserts on its tables, reading its history and seed tables, the
//! connectivity check without the tenant's password) runs on a session that logs in as the
//! tenant's migrator, a `NOINHERIT` login that is a member of the tenant role only, with a
//! one-use password; see [`session`]. Never on the admin's session with `SET ROLE`, which any
//! function the tenant owns could undo with `RESET ROLE`. Tables are checked to be ordinary tables
//! owned by the tenant role before they are read or written. The admin's own sessions run only
//! matih's statements on catalogs and on objects as a whole (create, grant, drop), and pin
//! `search_path` to `pg_catalog, pg_temp` at connection start (overriding database defaults)
//! besides schema-qualifying catalog names.
//!
//! **Errors.** Connection failures, administrator shutdown (57P01), serialization failures
//! (40001) and deadlocks are transient (the engine retries them); syntax and permission errors
//! (class 42) and everything else are permanent. Messages name the object (`schema "tenant_acme"
//! in database "matih_tenants"`) and carry the server's message.
//!
//! **Connections.** One admin URL (from the environment variable the platform file names). A
//! small pool keeps idle admin connections per database; session state never leaks between uses,
//! as the admin's sessions never change role or `search_path`; one that holds a migrator's
//! advisory lock goes back only once the lock is released. Migrator sessions are never pooled
//! (one per resource applied, or per tenant schema read). TLS as the URL's
//! `sslmode` asks (libpq's modes, see [`crate::pgconn`]), for the admin connections and the
//! connectivity check alike.
//!
//! **Invariant:** knows nothing of graphs, plans or state; one resource per call.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{Observed, Provider, ProviderError, ProviderFuture, ReadMany, ResourceObject, TenantRef};
use crate::value::{fingerprint, Secret, Value};

pub mod migrate;
pub mod seed;
pub mod session;
pub mod sql;

use sql::{describe, ident, literal, quote_ident, url_encode};

/// The environment variable that holds the admin URL when the platform file does not name one.
pub const DEFAULT_ADMIN_URL_ENV: &str = "MATIH_POSTGRES_ADMIN_URL";

/// Idle connections kept per database: as many as tenants a plan refreshes at once
/// (`workflow::TENANTS_REFRESHED_AT_ONCE`), each reading one object at a time, so that a fleet's
/// refresh reuses its connections instead of opening one per read. A tenant's own database is
/// read by that tenant only, so it keeps one.
const POOL_IDLE_PER_DB: usize = 16;

/// The startup option of every session matih opens (see [`PostgresProvider::connect`]).
const PINNED_SEARCH_PATH: &str = "-csearch_path=pg_catalog,pg_temp";

/// Where the server is and what tenants are told.
#[derive(Clone)]
pub struct PostgresSettings {
    /// matih's own connection: `postgresql://USER:PASSWORD@HOST:PORT/DB` (a role that may create
    /// roles and databases; the tests use a superuser). Secret: never shown.
    pub admin_url: String,
    /// The host and port the tenants' services connect to (what `database_url` says). The
    /// provider itself always connects where `admin_url` points.
    pub tenant_host: String,
    pub tenant_port: u16,
    /// The database schema-per-tenant tiers share (the catalog's `database.shared_database`): the
    /// database of a role's `database_url` when the role's attributes do not name one.
    pub shared_database: String,
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSettings")
            .field("admin_url", &"<redacted>")
            .field("tenant_host", &self.tenant_host)
            .field("tenant_port", &self.tenant_port)
            .field("shared_database", &self.shared_database)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl PostgresSettings {
    /// Settings from the platform file and the catalog, the admin URL read from the environment
    /// variable named by `postgres { admin_url_env = "…" }`.
    pub fn from_platform(
        platform: &crate::spec::PlatformConfig,
        catalog: &crate::catalog::Catalog,
    ) -> Result<PostgresSettings, String> {
        let var = &platform.postgres_admin_url_env;
        let admin_url = std::env::var(var).map_err(|_| {
            format!(
                "the environment variable {var} (postgres.admin_url_env) is not set: it must hold matih's admin \
                 connection URL, postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
            )
        })?;
        Ok(PostgresSettings {
            admin_url,
            tenant_host: platform.postgres_host.clone(),
            tenant_port: platform.postgres_port,
            shared_database: catalog.database.shared_database.clone(),
            connect_timeout: Duration::from_millis(platform.postgres_connect_timeout_ms),
        })
    }
}

/// The provider. Cheap to share (`Arc`); connections are pooled per database.
pub struct PostgresProvider {
    base: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    admin_db: String,
    tenant_host: String,
    tenant_port: u16,
    shared_database: String,
    idle: Mutex<HashMap<String, Vec<Client>>>,
}

impl std::fmt::Debug for PostgresProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresProvider")
            .field("admin_db", &self.admin_db)
            .field("tenant_host", &self.tenant_host)
            .field("tenant_port", &self.tenant_port)
            .finish_non_exhaustive()
    }
}

/// A pooled connection, given back when dropped (unless the server closed it, or it was marked
/// [`Conn::discard_on_drop`]). Any transaction left open is rolled back by tokio-postgres before
/// the next use.
struct Conn<'a> {
    provider: &'a PostgresProvider,
    db: String,
    client: Option<Client>,
    /// Given back to the pool when dropped; `false`: closed (its session ends).
    reuse: bool,
}

impl<'a> Conn<'a> {
    fn new(provider: &'a PostgresProvider, db: &str, client: Client) -> Conn<'a> {
        Conn { provider, db: db.to_string(), client: Some(client), reuse: true }
    }

    /// Closes the session when dropped instead of giving it back, until [`Conn::reuse_on_drop`]:
    /// what the session holds (a session advisory lock) then ends with it, whatever happens to
    /// the future that uses it.
    fn discard_on_drop(&mut self) {
        self.reuse = false;
    }

    /// Gives the session back to the pool when dropped (it holds nothing of a caller's any more).
    fn reuse_on_drop(&mut self) {
        self.reuse = true;
    }
}

impl std::ops::Deref for Conn<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("taken only on drop")
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("taken only on drop")
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if client.is_closed() || !self.reuse {
                return;
            }
            let mut idle = self.provider.idle.lock().unwrap_or_else(|p| p.into_inner());
            let list = idle.entry(self.db.clone()).or_default();
            if list.len() < POOL_IDLE_PER_DB {
                list.push(client);
            }
        }
    }
}

pub(crate) fn err(
    obj: &ResourceObject,
    path: Option<&str>,
    message: impl Into<String>,
    transient: bool,
) -> ProviderError {
    ProviderError { address: obj.addr.clone(), path: path.map(str::to_string), message: message.into(), transient }
}

/// A server or connection error while doing `what` (`create schema "tenant_acme"`).
pub(crate) fn db_err(obj: &ResourceObject, what: &str, e: &tokio_postgres::Error) -> ProviderError {
    let (message, transient) = describe(e);
    err(obj, None, format!("{what}: {message}"), transient)
}

/// A string attribute.
pub(crate) fn attr_str<'a>(obj: &'a ResourceObject, key: &str) -> Result<&'a str, ProviderError> {
    obj.attrs
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| err(obj, Some(key), format!("missing string attribute {key:?}"), false))
}

/// A name attribute: (the name, the name checked and double-quoted).
pub(crate) fn attr_ident(obj: &ResourceObject, key: &str) -> Result<(String, String), ProviderError> {
    let raw = attr_str(obj, key)?;
    let quoted = ident(raw).map_err(|m| err(obj, Some(key), m, false))?;
    Ok((raw.to_string(), quoted))
}

fn attr_int(obj: &ResourceObject, key: &str, default: i64) -> Result<i64, ProviderError> {
    match obj.attrs.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Int(n)) => Ok(*n),
        Some(_) => Err(err(obj, Some(key), format!("{key} must be a whole number"), false)),
    }
}

fn attr_bool(obj: &ResourceObject, key: &str, default: bool) -> Result<bool, ProviderError> {
    match obj.attrs.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(err(obj, Some(key), format!("{key} must be true or false"), false)),
    }
}

/// A random password: 48 hex characters from two UUIDv4 (the OS's CSPRNG), 192 bits of entropy.
fn generate_password() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())[..48].to_string()
}

impl PostgresProvider {
    /// Parses the admin URL and checks that the server answers. The error never contains the URL.
    pub async fn connect(settings: &PostgresSettings) -> Result<PostgresProvider, String> {
        let crate::pgconn::PgConnect { config: mut base, tls } =
            crate::pgconn::parse(&settings.admin_url).map_err(|e| format!("the PostgreSQL admin URL: {e}"))?;
        base.connect_timeout(settings.connect_timeout);
        // Every session matih opens looks up names in the system catalog first and nowhere a tenant
        // can write: a database default (`ALTER DATABASE … SET search_path`) is overridden by this
        // startup option, and catalog names are schema-qualified besides.
        let options = match base.get_options() {
            Some(o) if !o.trim().is_empty() => format!("{o} {PINNED_SEARCH_PATH}"),
            _ => PINNED_SEARCH_PATH.to_string(),
        };
        base.options(&options);
        if base.get_application_name().is_none() {
            base.application_name("matih");
        }
        let admin_db = base.get_dbname().or(base.get_user()).unwrap_or("postgres").to_string();
        let provider = PostgresProvider {
            base,
            tls,
            admin_db,
            tenant_host: settings.tenant_host.clone(),
            tenant_port: settings.tenant_port,
            shared_database: settings.shared_database.clone(),
            idle: Mutex::new(HashMap::new()),
        };
        let client = provider
            .open(&provider.admin_db)
            .await
            .map_err(|e| format!("cannot connect to PostgreSQL as admin: {}", describe(&e).0))?;
        drop(Conn::new(&provider, &provider.admin_db, client));
        Ok(provider)
    }

    /// The database the admin URL names (where roles are created).
    pub fn admin_database(&self) -> &str {
        &self.admin_db
    }

    async fn open(&self, db: &str) -> Result<Client, tokio_postgres::Error> {
        let mut config = self.base.clone();
        config.dbname(db);
        let (client, connection) = config.connect(self.tls.clone()).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("PostgreSQL connection closed: {}", describe(&e).0);
            }
        });
        Ok(client)
    }

    /// A connection to `db`: an idle one that still answers, or a new one.
    async fn conn(&self, obj: &ResourceObject, db: &str) -> Result<Conn<'_>, ProviderError> {
        loop {
            let pooled = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                idle.get_mut(db).and_then(Vec::pop)
            };
            match pooled {
                Some(c) if c.is_closed() => continue,
                // An idle connection the server has ended since (restart, administrator command,
                // idle timeout) fails this round trip and is replaced, instead of failing the call.
                Some(c) if c.batch_execute("").await.is_err() => continue,
                Some(c) => return Ok(Conn::new(self, db, c)),
                None => break,
            }
        }
        let client = self.open(db).await.map_err(|e| db_err(obj, &format!("connect to database {db:?}"), &e))?;
        Ok(Conn::new(self, db, client))
    }

    /// Closes the idle connections to `db` (before it is dropped).
    fn forget(&self, db: &str) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).remove(db);
    }

    async fn database_exists(&self, obj: &ResourceObject, db: &str) -> Result<bool, ProviderError> {
        let c = self.conn(obj, &self.admin_db).await?;
        let row = c
            .query_opt("SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1", &[&db])
            .await
            .map_err(|e| db_err(obj, &format!("look up database {db:?}"), &e))?;
        Ok(row.is_some())
    }

    async fn role_exists(&self, obj: &ResourceObject, role: &str) -> Result<bool, ProviderError> {
        let c = self.conn(obj, &self.admin_db).await?;
        let row = c
            .query_opt("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1", &[&role])
            .await
            .map_err(|e| db_err(obj, &format!("look up role {role:?}"), &e))?;
        Ok(row.is_some())
    }

    async fn schema_exists(&self, obj: &ResourceObject, db: &str, schema: &str) -> Result<bool, ProviderError> {
        if !self.database_exists(obj, db).await? {
            return Ok(false);
        }
        let c = self.conn(obj, db).await?;
        let row = c
            .query_opt("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1", &[&schema])
            .await
            .map_err(|e| db_err(obj, &format!("look up schema {schema:?} in database {db:?}"), &e))?;
        Ok(row.is_some())
    }
}

// postgresql_role

impl PostgresProvider {
    fn database_url(&self, obj: &ResourceObject, user: &str, password: &str) -> String {
        let db = obj.attrs.get("database").and_then(Value::as_str).unwrap_or(&self.shared_database);
        let schema = obj.attrs.get("schema").and_then(Value::as_str).unwrap_or(user);
        let host =
            if self.tenant_host.contains(':') { format!("[{}]", self.tenant_host) } else { self.tenant_host.clone() };
        format!(
            "postgresql://{}:{}@{host}:{}/{}?options={}",
            url_encode(user),
            url_encode(password),
            self.tenant_port,
            url_encode(db),
            url_encode(&format!("-csearch_path={schema}")),
        )
    }

    async fn apply_role(&self, obj: &ResourceObject) -> Result<Observed, ProviderError> {
        let (name, q) = attr_ident(obj, "name")?;
        let login = attr_bool(obj, "login", true)?;
        let limit = attr_int(obj, "connection_limit", -1)?;
        if !(-1..=i64::from(i32::MAX)).contains(&limit) {
            return Err(err(obj, Some("connection_limit"), "connection_limit must be -1 (no limit) or more", false));
        }
        let secret = match obj.attrs.get("password") {
            None | Some(Value::Null) => None,
            Some(Value::Secret(s)) => Some(s.clone()),
            Some(_) => return Err(err(obj, Some("password"), "password must be a secret", false)),
        };
        let exists = self.role_exists(obj, &name).await?;
        // A new role, or a recorded password without fingerprint (rotation): a new password.
        let password = secret.as_ref().filter(|s| !exists || s.fingerprint.is_none()).map(|_| generate_password());
        let mut sql = format!(
            "{} ROLE {q} WITH {} NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION NOBYPASSRLS \
             CONNECTION LIMIT {limit}",
            if exists { "ALTER" } else { "CREATE" },
            if login { "LOGIN" } else { "NOLOGIN" },
        );
        if let Some(pw) = &password {
            let verifier = postgres_protocol::password::scram_sha_256(pw.as_bytes());
            sql.push_str(&format!(" PASSWORD {}", literal(&verifier)));
        }
        let what = format!("{} role \"{name}\"", if exists { "alter" } else { "create" });
        self.close_server_databases(obj).await?;
        // The tier's settings, and none other of those matih manages.
        let settings = match obj.attrs.get("settings") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Map(m)) => m.clone(),
            Some(_) => return Err(err(obj, Some("settings"), "settings must be a map", false)),
        };
        for (setting, _) in crate::catalog::ROLE_SETTINGS {
            match settings.get(*setting) {
                Some(Value::String(v)) => sql.push_str(&format!("; ALTER ROLE {q} SET {setting} = {}", literal(v))),
                Some(_) => return Err(err(obj, Some("settings"), "role settings must be strings", false)),
                None => sql.push_str(&format!("; ALTER ROLE {q} RESET {setting}")),
            }
        }
        let c = self.conn(obj, &self.admin_db).await?;
        c.batch_execute(&sql).await.map_err(|e| db_err(obj, &what, &e))?;
        // An admin that is not superuser must be a member of the role to give it schemas.
        let superuser: bool = c
            .query_one("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user", &[])
            .await
            .map_err(|e| db_err(obj, "look up the admin role", &e))?
            .get(0);
        if !superuser {
            c.batch_execute(&format!("GRANT {q} TO CURRENT_USER"))
                .await
                .map_err(|e| db_err(obj, &format!("grant role \"{name}\" to the admin"), &e))?;
        }
        tracing::info!(
            "{}: {} role \"{name}\" (connection limit {limit}{})",
            obj.addr,
            if exists { "updated" } else { "created" },
            if password.is_some() { ", new password" } else { "" }
        );
        let mut observed = Observed { attrs: obj.attrs.clone(), ..Observed::default() };
        if let (Some(pw), Some(s)) = (password, secret) {
            observed.attrs.insert(
                "password".into(),
                Value::Secret(Secret { source: s.source, fingerprint: Some(fingerprint(&pw)) }),
            );
            observed.sensitive.insert("database_url".into(), self.database_url(obj, &name, &pw));
            observed.sensitive.insert("password".into(), pw);
        }
        Ok(observed)
    }

    async fn read_role(&self, obj: &ResourceObject) -> Result<Option<Observed>, ProviderError> {
        let (name, _) = attr_ident(obj, "name")?;
        let c = self.conn(obj, &self.admin_db).await?;
        let row = c
            .query_opt(
                "SELECT r.rolcanlogin, r.rolconnlimit, COALESCE(s.setconfig, '{}')::text[] \
                 FROM pg_catalog.pg_roles r LEFT JOIN pg_catalog.pg_db_role_setting s \
                 ON s.setrole = r.oid AND s.setdatabase = 0 WHERE r.rolname = $1",
                &[&name],
            )
            .await
            .map_err(|e| db_err(obj, &format!("read role \"{name}\""), &e))?;
        let Some(row) = row else { return Ok(None) };
        let mut attrs = obj.attrs.clone();
        let login: bool = row.get(0);
        let limit: i32 = row.get(1);
        let config: Vec<String> = row.get(2);
        attrs.insert("login".into(), Value::Bool(login));
        attrs.insert("connection_limit".into(), Value::Int(i64::from(limit)));
        // The settings matih manages, as PostgreSQL stores them (`statement_timeout=30s`).
        let settings: BTreeMap<String, Value> = config
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .filter(|(k, _)| crate::catalog::ROLE_SETTINGS.iter().any(|(s, _)| s == k))
            .map(|(k, v)| (k.to_string(), Value::str(v)))
            .collect();
        if obj.attrs.contains_key("settings") || !settings.is_empty() {
            attrs.insert("settings".into(), Value::Map(settings));
        }
        Ok(Some(Observed { attrs, ..Observed::default() }))
    }

    async fn delete_role(&self, obj: &ResourceObject) -> Result<(), ProviderError> {
        let (name, _) = attr_ident(obj, "name")?;
        // The migrator first (a member of the role; it owns nothing, but may hold CONNECT).
        self.drop_role(obj, &session::migrator_name(&name)).await?;
        self.drop_role(obj, &name).await
    }

    /// `DROP OWNED` in every database where `name` owns objects or holds rights, then `DROP ROLE`.
    async fn drop_role(&self, obj: &ResourceObject, name: &str) -> Result<(), ProviderError> {
        let q = sql::ident(name).map_err(|m| err(obj, None, m, false))?;
        if !self.role_exists(obj, name).await? {
            return Ok(());
        }
        // Every database where the role still owns objects or holds rights.
        let dbs: Vec<String> = {
            let c = self.conn(obj, &self.admin_db).await?;
            c.query(
                "SELECT DISTINCT d.datname::text FROM pg_catalog.pg_shdepend s \
                 JOIN pg_catalog.pg_database d ON d.oid = s.dbid \
                 JOIN pg_catalog.pg_roles r ON r.oid = s.refobjid \
                 WHERE r.rolname = $1 AND d.datallowconn AND d.datname <> pg_catalog.current_database()",
                &[&name],
            )
            .await
            .map_err(|e| db_err(obj, &format!("find the objects of role \"{name}\""), &e))?
            .iter()
            .map(|r| r.get(0))
            .collect()
        };
        for db in dbs.iter().chain(std::iter::once(&self.admin_db)) {
            let c = self.conn(obj, db).await?;
            c.batch_execute(&format!("DROP OWNED BY {q}"))
                .await
                .map_err(|e| db_err(obj, &format!("drop what role \"{name}\" owns in database {db:?}"), &e))?;
        }
        let c = self.conn(obj, &self.admin_db).await?;
        c.batch_execute(&format!("DROP ROLE IF EXISTS {q}"))
            .await
            .map_err(|e| db_err(obj, &format!("drop role \"{name}\""), &e))?;
        tracing::info!("{}: dropped role \"{name}\"", obj.addr);
        Ok(())
    }
}

// postgresql_schema, postgresql_database

impl PostgresProvider {
    /// Creates the shared database when it is missing and closes it to `PUBLIC`: only the roles
    /// granted `CONNECT` (the tenants) may connect, and nobody but its owner uses `public`.
    async fn ensure_shared_database(&self, obj: &ResourceObject, db: &str, q: &str) -> Result<(), ProviderError> {
        if db == self.admin_db {
            return Ok(());
        }
        if !self.database_exists(obj, db).await? {
            let c = self.conn(obj, &self.admin_db).await?;
            // From template0: whatever someone put into template1 is not copied into every tenant's
            // database.
            match c.batch_execute(&format!("CREATE DATABASE {q} TEMPLATE template0")).await {
                Ok(()) => tracing::info!("{}: created the shared database {db:?}", obj.addr),
                // Created at the same moment by another tenant's apply.
                Err(e) if matches!(sql::code(&e), Some("42P04" | "23505")) => {}
                Err(e) => return Err(db_err(obj, &format!("create database {db:?}"), &e)),
            }
        }
        let admin_db = self.admin_db.clone();
        let what = format!("revoke PUBLIC rights on database {db:?}");
        self.shared_catalog_change(obj, &admin_db, &format!("REVOKE ALL ON DATABASE {q} FROM PUBLIC"), &what).await?;
        let what = format!("revoke PUBLIC rights on schema \"public\" of database {db:?}");
        self.shared_catalog_change(obj, db, "REVOKE ALL ON SCHEMA public FROM PUBLIC", &what).await?;
        Ok(())
    }

    /// Takes `PUBLIC`'s rights (`CONNECT`, `TEMPORARY`) on matih's admin database and on
    /// `template1` away before the first tenant role exists, so a tenant's login reaches its own
    /// database only: it cannot look around in the admin database's catalog or create temporary
    /// objects there. Idempotent, once per tenant role applied.
    async fn close_server_databases(&self, obj: &ResourceObject) -> Result<(), ProviderError> {
        let admin_db = self.admin_db.clone();
        for db in [admin_db.as_str(), "template1"] {
            let q = quote_ident(db);
            let what = format!("revoke PUBLIC rights on database {db:?}");
            self.shared_catalog_change(obj, &admin_db, &format!("REVOKE ALL ON DATABASE {q} FROM PUBLIC"), &what)
                .await?;
        }
        Ok(())
    }

    /// Runs a GRANT/REVOKE on an object every tenant shares (the shared database, its `public`
    /// schema) in a transaction holding an advisory lock: tenants applied at the same time would
    /// otherwise update the same catalog row at once and fail with "tuple concurrently updated".
    async fn shared_catalog_change(
        &self,
        obj: &ResourceObject,
        db: &str,
        statement: &str,
        what: &str,
    ) -> Result<(), ProviderError> {
        /// The advisory lock key of matih's changes to shared catalog rows ("matih" in ASCII).
        const SHARED_CATALOG_LOCK: i64 = 0x006d_6174_6968;
        let mut c = self.conn(obj, db).await?;
        let run = async {
            let tx = c.transaction().await?;
            tx.execute("SELECT pg_catalog.pg_advisory_xact_lock($1)", &[&SHARED_CATALOG_LOCK]).await?;
            tx.batch_execute(statement).await?;
            tx.commit().await
        };
        run.await.map_err(|e| db_err(obj, what, &e))
    }

    async fn apply_schema(&self, obj: &ResourceObject) -> Result<Observed, ProviderError> {
        let (name, q) = attr_ident(obj, "name")?;
        let (db, qdb) = attr_ident(obj, "database")?;
        let (owner, qowner) = attr_ident(obj, "owner")?;
        let what = format!("schema \"{name}\" in database \"{db}\"");
        self.ensure_shared_database(obj, &db, &qdb).await?;
        let admin_db = self.admin_db.clone();
        let grant = format!("GRANT CONNECT ON DATABASE {qdb} TO {qowner}");
        let granting = format!("grant CONNECT on database \"{db}\" to role \"{owner}\"");
        self.shared_catalog_change(obj, &admin_db, &grant, &granting).await?;
        let c = self.conn(obj, &db).await?;
        c.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {q} AUTHORIZATION {qowner}; ALTER SCHEMA {q} OWNER TO {qowner}; \
             REVOKE ALL ON SCHEMA {q} FROM PUBLIC"
        ))
        .await
        .map_err(|e| db_err(obj, &format!("create {what}"), &e))?;
        tracing::info!("{}: {what} owned by \"{owner}\"", obj.addr);
        Ok(Observed { attrs: obj.attrs.clone(), ..Observed::default() })
    }

    async fn read_schema(&self, obj: &ResourceObject) -> Result<Option<Observed>, ProviderError> {
        let (name, _) = attr_ident(obj, "name")?;
        let (db, _) = attr_ident(obj, "database")?;
        if !self.database_exists(obj, &db).await? {
            return Ok(None);
        }
        let c = self.conn(obj, &db).await?;
        let row = c
            .query_opt(
                "SELECT pg_catalog.pg_get_userbyid(nspowner)::text FROM pg_catalog.pg_namespace WHERE nspname = $1",
                &[&name],
            )
            .await
            .map_err(|e| db_err(obj, &format!("read schema \"{name}\" in database \"{db}\""), &e))?;
        let Some(row) = row else { return Ok(None) };
        let mut attrs = obj.attrs.clone();
        attrs.insert("owner".into(), Value::String(row.get(0)));
        Ok(Some(Observed { attrs, ..Observed::default() }))
    }

    async fn delete_schema(&self, obj: &ResourceObject) -> Result<(), ProviderError> {
        let (name, q) = attr_ident(obj, "name")?;
        let (db, qdb) = attr_ident(obj, "database")?;
        if !self.database_exists(obj, &db).await? {
            return Ok(());
        }
        let c = self.conn(obj, &db).await?;
        c.batch_execute(&format!("DROP SCHEMA IF EXISTS {q} CASCADE"))
            .await
            .map_err(|e| db_err(obj, &format!("drop schema \"{name}\" in database \"{db}\""), &e))?;
        drop(c);
        if let Ok((owner, qowner)) = attr_ident(obj, "owner") {
            if db != self.admin_db && self.role_exists(obj, &owner).await? {
                let admin_db = self.admin_db.clone();
                let revoke = format!("REVOKE ALL ON DATABASE {qdb} FROM {qowner}");
                let what = format!("revoke CONNECT on database \"{db}\" from \"{owner}\"");
                self.shared_catalog_change(obj, &admin_db, &revoke, &what).await?;
            }
        }
        tracing::info!("{}: dropped schema \"{name}\" in database \"{db}\"", obj.addr);
        Ok(())
    }

    /// The tenant's own database: owned by the admin (so the tenant cannot change its settings,
    /// `search_path` above all, which every session to it would inherit), with `CONNECT` and
    /// `TEMPORARY` for the tenant role, closed to `PUBLIC`, and its schema `public` owned by the
    /// tenant role. A database an earlier version gave to the tenant is taken back, and settings
    /// made on it are reset.
    async fn apply_database(&self, obj: &ResourceObject) -> Result<Observed, ProviderError> {
        let (name, q) = attr_ident(obj, "name")?;
        let (owner, qowner) = attr_ident(obj, "owner")?;
        let encoding = obj.attrs.get("encoding").and_then(Value::as_str).unwrap_or("UTF8");
        if encoding.is_empty() || !encoding.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(err(obj, Some("encoding"), format!("{encoding:?} is not an encoding name (like UTF8)"), false));
        }
        let c = self.conn(obj, &self.admin_db).await?;
        let exists = self.database_exists(obj, &name).await?;
        if !exists {
            let create = format!("CREATE DATABASE {q} ENCODING {} TEMPLATE template0", literal(encoding));
            match c.batch_execute(&create).await {
                Ok(()) => {}
                Err(e) if sql::code(&e) == Some("42P04") => {}
                Err(e) => return Err(db_err(obj, &format!("create database \"{name}\""), &e)),
            }
        }
        c.batch_execute(&format!(
            "ALTER DATABASE {q} OWNER TO CURRENT_USER; ALTER DATABASE {q} RESET ALL; \
             REVOKE ALL ON DATABASE {q} FROM PUBLIC; REVOKE ALL ON DATABASE {q} FROM {qowner}; \
             GRANT CONNECT, TEMPORARY ON DATABASE {q} TO {qowner}"
        ))
        .await
        .map_err(|e| db_err(obj, &format!("set the owner and rights of database \"{name}\""), &e))?;
        drop(c);
        let c = self.conn(obj, &name).await?;
        c.batch_execute(&format!("ALTER SCHEMA public OWNER TO {qowner}; REVOKE ALL ON SCHEMA public FROM PUBLIC"))
            .await
            .map_err(|e| db_err(obj, &format!("give schema \"public\" of database \"{name}\" to \"{owner}\""), &e))?;
        tracing::info!("{}: database \"{name}\" for \"{owner}\" (owner of its schema \"public\")", obj.addr);
        Ok(Observed { attrs: obj.attrs.clone(), ..Observed::default() })
    }

    /// `owner` is the owner of the schema `public` when the admin owns the database (as
    /// [`Self::apply_database`] leaves it); a database owned by anyone else reads as
    /// `"NAME (owns the database)"`, which the plan shows as drift and apply repairs.
    async fn read_database(&self, obj: &ResourceObject) -> Result<Option<Observed>, ProviderError> {
        let (name, _) = attr_ident(obj, "name")?;
        let c = self.conn(obj, &self.admin_db).await?;
        let row = c
            .query_opt(
                "SELECT pg_catalog.pg_get_userbyid(datdba)::text, pg_catalog.pg_encoding_to_char(encoding)::text, \
                        datdba = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user) \
                 FROM pg_catalog.pg_database WHERE datname = $1",
                &[&name],
            )
            .await
            .map_err(|e| db_err(obj, &format!("read database \"{name}\""), &e))?;
        let Some(row) = row else { return Ok(None) };
        drop(c);
        let (dba, encoding, admin_owns): (String, String, bool) = (row.get(0), row.get(1), row.get(2));
        let owner = if admin_owns {
            self.schema_owner(obj, &name, "public").await?.unwrap_or_else(|| "(no schema \"public\")".to_string())
        } else {
            format!("{dba} (owns the database)")
        };
        let mut attrs = obj.attrs.clone();
        attrs.insert("owner".into(), Value::String(owner));
        if attrs.contains_key("encoding") {
            attrs.insert("encoding".into(), Value::String(encoding));
        }
        Ok(Some(Observed { attrs, ..Observed::default() }))
    }

    async fn delete_database(&self, obj: &ResourceObject) -> Result<(), ProviderError> {
        let (name, q) = attr_ident(obj, "name")?;
        self.forget(&name);
        let c = self.conn(obj, &self.admin_db).await?;
        c.batch_execute(&format!("DROP DATABASE IF EXISTS {q} WITH (FORCE)"))
            .await
            .map_err(|e| db_err(obj, &format!("drop database \"{name}\""), &e))?;
        tracing::info!("{}: dropped database \"{name}\"", obj.addr);
        Ok(())
    }
}

// postgresql_connectivity_check

/// How the connectivity check logged in.
pub const CHECKED_WITH_PASSWORD: &str = "tenant_password";
pub const CHECKED_WITH_MIGRATOR: &str = "migrator_login";

impl PostgresProvider {
    /// The tenant's clear password when this run has it: the role's sensitive output
    /// (`output:postgresql_role.NAME.password`) or the secret a `password` attribute names.
    fn tenant_password(obj: &ResourceObject) -> Option<&str> {
        if let Some(Value::Secret(s)) = obj.attrs.get("password") {
            if let Some(clear) = obj.secrets.get(&s.source) {
                return Some(clear);
            }
        }
        obj.secrets
            .iter()
            .find(|(k, _)| k.starts_with("output:postgresql_role.") && k.ends_with(".password"))
            .map(|(_, v)| v.as_str())
    }

    /// Logs in as the tenant with its own password (where the admin connection points: the
    /// tenant-facing host is often reachable only from inside the cluster), or, without the
    /// password in this run, as the tenant's migrator switched to the tenant role (never the
    /// admin: see [`session`]); then queries the schema as the tenant: the role must see it as its
    /// `current_schema()` with USAGE and CREATE.
    async fn apply_check(&self, obj: &ResourceObject) -> Result<Observed, ProviderError> {
        let (db, _) = attr_ident(obj, "database")?;
        let (schema, qschema) = attr_ident(obj, "schema")?;
        let (user, quser) = attr_ident(obj, "user")?;
        let probe = "SELECT current_user::text, pg_catalog.current_schema()::text, \
                     pg_catalog.has_schema_privilege(current_user, pg_catalog.current_schema(), 'USAGE'), \
                     pg_catalog.has_schema_privilege(current_user, pg_catalog.current_schema(), 'CREATE'), \
                     (SELECT pg_catalog.count(*) FROM pg_catalog.pg_class c \
                      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                      WHERE n.nspname = pg_catalog.current_schema())";
        let what = format!("connectivity check of role \"{user}\" on schema \"{schema}\" in database \"{db}\"");
        let (row, method) = match Self::tenant_password(obj) {
            Some(password) => {
                let mut config = self.base.clone();
                config.user(&user).password(password).dbname(&db).application_name("matih-connectivity-check");
                let (client, connection) =
                    config.connect(self.tls.clone()).await.map_err(|e| db_err(obj, &what, &e))?;
                let task = tokio::spawn(connection);
                let row = async {
                    client.batch_execute(&format!("SET search_path TO {qschema}")).await?;
                    client.query_one(probe, &[]).await
                }
                .await
                .map_err(|e| db_err(obj, &what, &e));
                drop(client);
                let _ = task.await;
                (row?, CHECKED_WITH_PASSWORD)
            }
            None => {
                let mut s = self.tenant_session(obj, &db, &user, &schema).await?;
                let tx = s.transaction().await.map_err(|e| db_err(obj, &what, &e))?;
                tx.batch_execute(&format!("SET LOCAL ROLE {quser}; SET LOCAL search_path TO {qschema}"))
                    .await
                    .map_err(|e| db_err(obj, &what, &e))?;
                let row = tx.query_one(probe, &[]).await.map_err(|e| db_err(obj, &what, &e))?;
                tx.rollback().await.map_err(|e| db_err(obj, &what, &e))?;
                (row, CHECKED_WITH_MIGRATOR)
            }
        };
        let (current_user, current_schema): (String, Option<String>) = (row.get(0), row.get(1));
        let (usage, create, objects): (Option<bool>, Option<bool>, i64) = (row.get(2), row.get(3), row.get(4));
        if current_user != user || current_schema.as_deref() != Some(schema.as_str()) || usage != Some(true) {
            return Err(err(
                obj,
                None,
                format!(
                    "{what} failed: logged in as \"{current_user}\", current schema {}: the role cannot use its schema",
                    current_schema.as_deref().map_or("none".into(), |s| format!("\"{s}\""))
                ),
                false,
            ));
        }
        if create != Some(true) {
            return Err(err(obj, None, format!("{what} failed: the role may not create objects in its schema"), false));
        }
        tracing::info!("{}: {what} passed ({method}, {objects} objects in the schema)", obj.addr);
        Ok(Observed {
            attrs: obj.attrs.clone(),
            outputs: BTreeMap::from([("checked_with".to_string(), Value::str(method))]),
            ..Observed::default()
        })
    }

    /// Still passing, as far as the catalogs tell: the role exists and may use its schema.
    async fn read_check(&self, obj: &ResourceObject) -> Result<Option<Observed>, ProviderError> {
        let (db, _) = attr_ident(obj, "database")?;
        let (schema, _) = attr_ident(obj, "schema")?;
        let (user, _) = attr_ident(obj, "user")?;
        if !self.role_exists(obj, &user).await? || !self.schema_exists(obj, &db, &schema).await? {
            return Ok(None);
        }
        let c = self.conn(obj, &db).await?;
        let ok: bool = c
            .query_one("SELECT pg_catalog.has_schema_privilege($1, $2, 'USAGE')", &[&user, &schema])
            .await
            .map_err(|e| db_err(obj, &format!("read the rights of role \"{user}\" on schema \"{schema}\""), &e))?
            .get(0);
        Ok(ok.then(|| Observed { attrs: obj.attrs.clone(), ..Observed::default() }))
    }
}

impl PostgresProvider {
    async fn read_with(
        &self,
        obj: &ResourceObject,
        sessions: Option<&session::Sessions>,
    ) -> Result<Option<Observed>, ProviderError> {
        match obj.addr.kind.as_str() {
            "postgresql_role" => self.read_role(obj).await,
            "postgresql_schema" => self.read_schema(obj).await,
            "postgresql_database" => self.read_database(obj).await,
            "postgresql_migrations" => migrate::read(self, obj, sessions).await,
            "postgresql_seed_data" => seed::read(self, obj, sessions).await,
            "postgresql_connectivity_check" => self.read_check(obj).await,
            other => Err(unknown_kind(obj, other)),
        }
    }
}

impl Provider for PostgresProvider {
    fn handles(&self, kind: &str) -> bool {
        kind.starts_with("postgresql_")
    }

    fn read<'a>(&'a self, _tenant: &'a TenantRef, obj: &'a ResourceObject) -> ProviderFuture<'a, Option<Observed>> {
        Box::pin(self.read_with(obj, None))
    }

    /// The reads of [`Provider::read`], one after another on the pooled connections, sharing one
    /// migrator session per tenant schema ([`session::Sessions`]): one login per tenant instead of
    /// one for its migrations and one for its seed data. One at a time because each read is a few
    /// local round trips, while reads at once would each take a connection of their own: with many
    /// tenants refreshed at once, connections opened (and authenticated) only to be closed again.
    fn read_many<'a>(
        &'a self,
        _tenant: &'a TenantRef,
        objs: &'a [ResourceObject],
        _parallelism: usize,
    ) -> ReadMany<'a> {
        Box::pin(async move {
            let sessions = session::Sessions::default();
            let mut out = Vec::with_capacity(objs.len());
            for obj in objs {
                out.push(self.read_with(obj, Some(&sessions)).await);
            }
            out
        })
    }

    fn apply<'a>(&'a self, _tenant: &'a TenantRef, obj: &'a ResourceObject) -> ProviderFuture<'a, Observed> {
        Box::pin(async move {
            match obj.addr.kind.as_str() {
                "postgresql_role" => self.apply_role(obj).await,
                "postgresql_schema" => self.apply_schema(obj).await,
                "postgresql_database" => self.apply_database(obj).await,
                "postgresql_migrations" => migrate::apply(self, obj).await,
                "postgresql_seed_data" => seed::apply(self, obj).await,
                "postgresql_connectivity_check" => self.apply_check(obj).await,
                other => Err(unknown_kind(obj, other)),
            }
        })
    }

    fn delete<'a>(&'a self, _tenant: &'a TenantRef, obj: &'a ResourceObject) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            match obj.addr.kind.as_str() {
                "postgresql_role" => self.delete_role(obj).await,
                "postgresql_schema" => self.delete_schema(obj).await,
                "postgresql_database" => self.delete_database(obj).await,
                // Dropped with the schema or database that holds them; nothing of their own.
                "postgresql_migrations" | "postgresql_seed_data" | "postgresql_connectivity_check" => Ok(()),
                other => Err(unknown_kind(obj, other)),
            }
        })
    }
}

fn unknown_kind(obj: &ResourceObject, kind: &str) -> ProviderError {
    err(obj, None, format!("the PostgreSQL provider has no resource kind {kind:?}"), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_random_and_long() {
        let a = generate_password();
        assert_eq!(a.len(), 48);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, generate_password());
    }

    #[test]
    fn settings_debug_hides_the_admin_url() {
        let s = PostgresSettings {
            admin_url: "postgresql://postgres:hunter2@db:5432/postgres".into(),
            tenant_host: "pg.internal".into(),
            tenant_port: 5432,
            shared_database: "matih_tenants".into(),
            connect_timeout: Duration::from_secs(1),
        };
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("pg.internal"));
    }
}
