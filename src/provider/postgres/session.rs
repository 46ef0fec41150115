//! Sessions that run the tenant's code: logged in as the tenant's **migrator**, never the admin.
//!
//! Migrations, seed upserts, the reads of the history and seed tables, and the connectivity check
//! (when this run does not have the tenant's password) all touch relations the tenant owns, and so
//! may run code the tenant wrote: a trigger, a view calling a function, a cast, a default. Running
//! them on the admin's session with `SET ROLE` would not contain that code: `SET ROLE` is not a
//! security boundary, and any function the tenant owns can `RESET ROLE` and act as the admin.
//!
//! So every one of them runs on a session that **logs in** as a dedicated role per tenant role,
//! the migrator (`mig_<role>`, see [`migrator_name`]):
//!
//! - `LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS`, a member of
//!   the tenant role and of nothing else, `CONNECT` on the tenant's database and no other right;
//! - its session does `SET ROLE <tenant>` (what it creates is the tenant's) and sets `search_path`
//!   to the tenant schema. Tenant code that runs `RESET ROLE` falls back to the migrator, which,
//!   being `NOINHERIT`, has even fewer rights than the tenant;
//! - it has no stored password. Just before each login the admin gives it a fresh random password
//!   (192 bits, sent as a SCRAM verifier, never logged or stored) valid for two minutes, logs in,
//!   and removes the password at once (`PASSWORD NULL`). An advisory lock per migrator (held on an
//!   admin session across set, login and removal) keeps concurrent runs for one tenant from
//!   overwriting each other's password. That admin session comes from the pool and goes back to
//!   it only once the lock is released; otherwise it is closed, and the lock ends with it. The
//!   migrator's own settings (`ALTER ROLE … SET`, which the tenant's code could make as the
//!   migrator) are reset before each login.
//!
//! The tenant's own password cannot serve: matih generates it, hands it to the tenant's Secret and
//! keeps only its fingerprint, so later runs do not have it.
//!
//! Reads (refresh, `matih drift`) open these sessions too, so a read changes one thing on the
//! server: the migrator role itself (created when missing, its one-use password set and removed).
//! Nothing of the tenant's is changed by a read.
//!
//! The role a session is opened for is checked first: it must exist and be an ordinary role
//! (not superuser, no `CREATEROLE`, `CREATEDB`, `REPLICATION` or `BYPASSRLS`, not the admin
//! itself), so that a migrator can never be made a member of anything powerful. A migrator found
//! with another membership is refused.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use super::{db_err, err, sql, PostgresProvider, ResourceObject};
use crate::provider::ProviderError;

/// How long a migrator's one-use password stays valid, should removing it fail.
const PASSWORD_VALIDITY: &str = "2 minutes";

/// Connections a migrator may hold at once (one per resource being applied or read).
const MIGRATOR_CONNECTION_LIMIT: i32 = 4;

/// The migrator of tenant role `role`: `mig_<role>`, or when that would be longer than 63 bytes,
/// `mig_<first 50 bytes of role>_<8 hex of its SHA-256>`. Tenant roles are `tenant_<slug>`, so
/// no tenant's role can be another tenant's migrator.
pub fn migrator_name(role: &str) -> String {
    let full = format!("mig_{role}");
    if full.len() <= sql::MAX_IDENT {
        return full;
    }
    let hash: String = Sha256::digest(role.as_bytes())[..4].iter().map(|b| format!("{b:02x}")).collect();
    // Role names are checked plain ASCII names (`sql::ident`), so any byte is a boundary.
    let cut = role.char_indices().nth(50).map_or(role.len(), |(i, _)| i);
    format!("mig_{}_{hash}", &role[..cut])
}

/// The advisory lock key that serializes the logins of one migrator.
fn lock_key(migrator: &str) -> i64 {
    let d = Sha256::digest(format!("matih migrator login {migrator}").as_bytes());
    i64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// A session logged in as the tenant's migrator and switched to the tenant role, with
/// `search_path` set to the tenant schema. Closed when dropped; never pooled.
pub struct TenantSession {
    client: Client,
    pub role: String,
    pub quoted_role: String,
}

impl std::ops::Deref for TenantSession {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl std::ops::DerefMut for TenantSession {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

/// Migrator sessions shared by the reads of one [`crate::provider::Provider::read_many`]: the
/// migrations and seed data of a tenant schema are read on one login instead of one each. Keyed
/// by (database, role, schema), so a session is shared only where each read would open the same.
#[derive(Default)]
pub(crate) struct Sessions(tokio::sync::Mutex<HashMap<(String, String, String), Arc<TenantSession>>>);

impl Sessions {
    /// The session of (`db`, `role`, `schema`): the one already open in `sessions`, or a new one
    /// (kept there when there is `sessions`).
    pub(crate) async fn get(
        sessions: Option<&Sessions>,
        p: &PostgresProvider,
        obj: &ResourceObject,
        db: &str,
        role: &str,
        schema: &str,
    ) -> Result<Arc<TenantSession>, ProviderError> {
        let Some(sessions) = sessions else { return Ok(Arc::new(p.tenant_session(obj, db, role, schema).await?)) };
        let mut open = sessions.0.lock().await;
        let key = (db.to_string(), role.to_string(), schema.to_string());
        if let Some(s) = open.get(&key).filter(|s| !s.is_closed()) {
            return Ok(s.clone());
        }
        let s = Arc::new(p.tenant_session(obj, db, role, schema).await?);
        open.insert(key, s.clone());
        Ok(s)
    }
}

impl PostgresProvider {
    /// A session for tenant role `role` in database `db`, schema `schema` (see the module
    /// documentation). The only way matih runs SQL that may touch the tenant's code.
    pub(crate) async fn tenant_session(
        &self,
        obj: &ResourceObject,
        db: &str,
        role: &str,
        schema: &str,
    ) -> Result<TenantSession, ProviderError> {
        let qrole = sql::ident(role).map_err(|m| err(obj, None, m, false))?;
        let qschema = sql::ident(schema).map_err(|m| err(obj, None, m, false))?;
        let qdb = sql::ident(db).map_err(|m| err(obj, None, m, false))?;
        let migrator = migrator_name(role);
        let qmig = sql::ident(&migrator).map_err(|m| err(obj, None, m, false))?;
        let what = format!("prepare the migrator role \"{migrator}\" of role \"{role}\"");

        // A pooled admin session, closed rather than given back unless the advisory lock (a
        // session lock) is known to be released: it ends with the session whatever happens to this
        // future. Reusing it saves a login (a server process started and ended) per tenant.
        let mut admin = self.conn(obj, &self.admin_db).await?;
        admin.discard_on_drop();
        let key = lock_key(&migrator);
        admin.execute("SELECT pg_catalog.pg_advisory_lock($1)", &[&key]).await.map_err(|e| db_err(obj, &what, &e))?;

        refuse_privileged(&admin, obj, role, &what).await?;
        let names = Quoted { role: &qrole, migrator: &qmig, db: &qdb };
        self.ensure_migrator(&admin, obj, (role, &migrator, db), names, &what).await?;

        // The one-use password.
        let password = super::generate_password();
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        let until: String = admin
            .query_one(&format!("SELECT (pg_catalog.now() + interval {})::text", sql::literal(PASSWORD_VALIDITY)), &[])
            .await
            .map_err(|e| db_err(obj, &what, &e))?
            .get(0);
        // SUPERUSER, REPLICATION and BYPASSRLS may be named in ALTER ROLE by a superuser only, even
        // to turn them off; the migrator is created without them and checked for them instead.
        let powerful: bool = admin
            .query_one(
                "SELECT rolsuper OR rolreplication OR rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = $1",
                &[&migrator],
            )
            .await
            .map_err(|e| db_err(obj, &what, &e))?
            .get(0);
        if powerful {
            return Err(err(
                obj,
                None,
                format!("{what}: the migrator has SUPERUSER, REPLICATION or BYPASSRLS; it must have none of them"),
                false,
            ));
        }
        admin
            .batch_execute(&format!(
                "ALTER ROLE {qmig} WITH LOGIN NOINHERIT NOCREATEDB NOCREATEROLE \
                 CONNECTION LIMIT {MIGRATOR_CONNECTION_LIMIT} PASSWORD {} VALID UNTIL {}; \
                 ALTER ROLE {qmig} RESET ALL; ALTER ROLE {qmig} IN DATABASE {qdb} RESET ALL",
                sql::literal(&verifier),
                sql::literal(&until)
            ))
            .await
            .map_err(|e| db_err(obj, &what, &e))?;

        let login = format!("log in as the migrator role \"{migrator}\" to database \"{db}\"");
        let mut config = self.base.clone();
        config.user(&migrator).password(password.as_bytes()).dbname(db).application_name("matih-migrator");
        let connected = config.connect(self.tls.clone()).await;
        // Whatever the outcome, the password is of no further use.
        let cleared = admin.batch_execute(&format!("ALTER ROLE {qmig} PASSWORD NULL")).await;
        if cleared.is_ok() {
            let unlocked = admin.query_one("SELECT pg_catalog.pg_advisory_unlock($1)", &[&key]).await;
            if unlocked.is_ok_and(|r| r.get::<_, bool>(0)) {
                admin.reuse_on_drop();
            }
        }
        drop(admin);
        let (client, connection) = connected.map_err(|e| db_err(obj, &login, &e))?;
        cleared.map_err(|e| db_err(obj, &format!("remove the password of the migrator role \"{migrator}\""), &e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("PostgreSQL migrator connection closed: {}", sql::describe(&e).0);
            }
        });

        let switch = format!("switch to role \"{role}\" as the migrator \"{migrator}\"");
        client
            .batch_execute(&format!("SET ROLE {qrole}; SET search_path TO {qschema}"))
            .await
            .map_err(|e| db_err(obj, &switch, &e))?;
        let row = client
            .query_one("SELECT pg_catalog.session_user()::text, pg_catalog.current_user()::text", &[])
            .await
            .map_err(|e| db_err(obj, &switch, &e))?;
        let (session_user, current_user): (String, String) = (row.get(0), row.get(1));
        if session_user != migrator || current_user != role {
            return Err(err(
                obj,
                None,
                format!("{switch}: the session is \"{session_user}\" acting as \"{current_user}\""),
                false,
            ));
        }
        Ok(TenantSession { client, role: role.to_string(), quoted_role: qrole })
    }

    /// Makes the migrator of `role` exist, be a member of `role` only, and be allowed to connect to
    /// `db` (names as `(role, migrator, db)`), under the advisory lock `admin` holds.
    async fn ensure_migrator(
        &self,
        admin: &Client,
        obj: &ResourceObject,
        (role, migrator, db): (&str, &str, &str),
        Quoted { role: qrole, migrator: qmig, db: qdb }: Quoted<'_>,
        what: &str,
    ) -> Result<(), ProviderError> {
        let exists = admin
            .query_opt("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1", &[&migrator])
            .await
            .map_err(|e| db_err(obj, what, &e))?
            .is_some();
        if !exists {
            match admin.batch_execute(&format!("CREATE ROLE {qmig} WITH NOLOGIN NOINHERIT")).await {
                Ok(()) => tracing::info!("{}: created the migrator role \"{migrator}\"", obj.addr),
                Err(e) if sql::code(&e) == Some("42710") => {}
                Err(e) => return Err(db_err(obj, what, &e)),
            }
        }
        let memberships: Vec<String> = admin
            .query(
                "SELECT g.rolname::text FROM pg_catalog.pg_auth_members m \
                 JOIN pg_catalog.pg_roles g ON g.oid = m.roleid \
                 JOIN pg_catalog.pg_roles u ON u.oid = m.member WHERE u.rolname = $1",
                &[&migrator],
            )
            .await
            .map_err(|e| db_err(obj, what, &e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if let Some(other) = memberships.iter().find(|g| g.as_str() != role) {
            return Err(err(
                obj,
                None,
                format!(
                    "{what}: the migrator is also a member of role \"{other}\"; it must be a member of \"{role}\" \
                     only (revoke the other membership)"
                ),
                false,
            ));
        }
        if memberships.is_empty() {
            admin.batch_execute(&format!("GRANT {qrole} TO {qmig}")).await.map_err(|e| db_err(obj, what, &e))?;
        }
        let may_connect: bool = admin
            .query_one("SELECT pg_catalog.has_database_privilege($1, $2, 'CONNECT')", &[&migrator, &db])
            .await
            .map_err(|e| db_err(obj, what, &e))?
            .get(0);
        if !may_connect {
            let grant = format!("GRANT CONNECT ON DATABASE {qdb} TO {qmig}");
            let admin_db = self.admin_db.clone();
            self.shared_catalog_change(obj, &admin_db, &grant, what).await?;
        }
        Ok(())
    }

    /// The tenant role of schema `schema` in database `db`: the schema's owner (or, when the schema
    /// is owned by `pg_database_owner`, the database's owner). Checked by
    /// [`Self::tenant_session`] before any session is opened for it.
    pub(crate) async fn schema_owner(
        &self,
        obj: &ResourceObject,
        db: &str,
        schema: &str,
    ) -> Result<Option<String>, ProviderError> {
        let c = self.conn(obj, db).await?;
        let row = c
            .query_opt(
                "SELECT CASE WHEN n.nspowner = 'pg_database_owner'::pg_catalog.regrole \
                        THEN (SELECT pg_catalog.pg_get_userbyid(d.datdba) FROM pg_catalog.pg_database d \
                              WHERE d.datname = pg_catalog.current_database()) \
                        ELSE pg_catalog.pg_get_userbyid(n.nspowner) END::text \
                 FROM pg_catalog.pg_namespace n WHERE n.nspname = $1",
                &[&schema],
            )
            .await
            .map_err(|e| db_err(obj, &format!("look up the owner of schema \"{schema}\" in database \"{db}\""), &e))?;
        Ok(row.map(|r| r.get(0)))
    }
}

/// What stands at `schema.table`, as far as matih is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TableCheck {
    /// No relation of that name.
    Missing,
    /// An ordinary table owned by the expected role: matih may read and write it.
    Table,
    /// Something else: a view (which could run the tenant's code), a table of another owner, ….
    /// The text says what, for messages and for the attribute drift shows.
    Wrong(String),
}

/// Looks at `schema.table` before matih reads or writes it: only an ordinary table (`relkind =
/// 'r'`) owned by `owner` passes.
pub(crate) async fn inspect_table(
    c: &impl tokio_postgres::GenericClient,
    obj: &ResourceObject,
    schema: &str,
    table: &str,
    owner: &str,
) -> Result<TableCheck, ProviderError> {
    let row = c
        .query_opt(
            "SELECT c.relkind::text, pg_catalog.pg_get_userbyid(c.relowner)::text \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&schema, &table],
        )
        .await
        .map_err(|e| db_err(obj, &format!("look up table \"{schema}\".\"{table}\""), &e))?;
    let Some(row) = row else { return Ok(TableCheck::Missing) };
    let (kind, found_owner): (String, String) = (row.get(0), row.get(1));
    if kind != "r" {
        let what = match kind.as_str() {
            "v" => "a view",
            "m" => "a materialized view",
            "f" => "a foreign table",
            "p" => "a partitioned table",
            "S" => "a sequence",
            "i" | "I" => "an index",
            "c" => "a composite type",
            _ => "another kind of relation",
        };
        return Ok(TableCheck::Wrong(format!("{what}, not an ordinary table")));
    }
    if found_owner != owner {
        return Ok(TableCheck::Wrong(format!("a table owned by \"{found_owner}\", not by \"{owner}\"")));
    }
    Ok(TableCheck::Table)
}

/// [`inspect_table`] for a write: `Ok(false)` when missing, an error (this resource's, with a
/// message) when something else stands there.
pub(crate) async fn check_table(
    c: &impl tokio_postgres::GenericClient,
    obj: &ResourceObject,
    schema: &str,
    table: &str,
    owner: &str,
    path: Option<&str>,
) -> Result<bool, ProviderError> {
    match inspect_table(c, obj, schema, table, owner).await? {
        TableCheck::Missing => Ok(false),
        TableCheck::Table => Ok(true),
        TableCheck::Wrong(what) => Err(err(
            obj,
            path,
            format!(
                "\"{schema}\".\"{table}\" is {what}: it was changed outside matih, which reads and writes only \
                 the tables it created, owned by the tenant role (restore the table)"
            ),
            false,
        )),
    }
}

/// `role` and its migrator, quoted as SQL identifiers.
struct Quoted<'a> {
    role: &'a str,
    migrator: &'a str,
    db: &'a str,
}

/// Whether `role` is privileged (superuser, CREATEROLE, CREATEDB, REPLICATION, BYPASSRLS or the
/// admin matih logs in as); `None` when no such role exists.
async fn privileged(
    admin: &Client,
    obj: &ResourceObject,
    role: &str,
    what: &str,
) -> Result<Option<bool>, ProviderError> {
    let row = admin
        .query_opt(
            "SELECT r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls \
                        OR r.rolname = current_user \
                 FROM pg_catalog.pg_roles r WHERE r.rolname = $1",
            &[&role],
        )
        .await
        .map_err(|e| db_err(obj, what, &e))?;
    Ok(row.map(|r| r.get(0)))
}

/// Refuses a tenant role that does not exist or is privileged: tenant code runs only as an
/// ordinary role.
async fn refuse_privileged(admin: &Client, obj: &ResourceObject, role: &str, what: &str) -> Result<(), ProviderError> {
    match privileged(admin, obj, role, what).await? {
        None => Err(err(obj, None, format!("{what}: role \"{role}\" does not exist"), false)),
        Some(true) => Err(err(
            obj,
            None,
            format!(
                "{what}: role \"{role}\" is privileged (superuser, CREATEROLE, CREATEDB, REPLICATION, \
                     BYPASSRLS or matih's admin): matih runs tenant code only as an ordinary tenant role"
            ),
            false,
        )),
        Some(false) => Ok(()),
    }
}

impl PostgresProvider {
    /// Whether `role` exists and is an ordinary role, one a tenant session may run as.
    pub(crate) async fn is_ordinary_role(&self, obj: &ResourceObject, role: &str) -> Result<bool, ProviderError> {
        let admin = self.conn(obj, &self.admin_db).await?;
        Ok(privileged(&admin, obj, role, &format!("look up role \"{role}\"")).await? == Some(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrator_names_are_plain_bounded_and_distinct() {
        assert_eq!(migrator_name("tenant_acme"), "mig_tenant_acme");
        let long = format!("tenant_{}", "a".repeat(56));
        let m = migrator_name(&long);
        assert!(m.len() <= sql::MAX_IDENT && sql::ident(&m).is_ok(), "{m}");
        let other = format!("tenant_{}b", "a".repeat(55));
        assert_ne!(m, migrator_name(&other), "names that share a prefix get different hashes");
        assert!(!migrator_name("tenant_x").starts_with("tenant_"), "never a tenant role's name");
    }
}
