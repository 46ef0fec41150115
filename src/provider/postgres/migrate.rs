//! `postgresql_migrations`: Flyway-compatible SQL migrations.
//!
//! The history table (`flyway_schema_history` by default) lives in the tenant schema with
//! Flyway's exact columns, so Flyway itself can take over (or `flyway info` can read it):
//! `installed_rank, version, description, type, script, checksum, installed_by, installed_on,
//! execution_time, success`. Rules, as Flyway's `migrate` with its default `validate`:
//!
//! - versioned migrations (`V1__init.sql`) run once, in version order; repeatable ones
//!   (`R__views.sql`) run after them, by description, whenever their checksum changes;
//! - the pending migrations of a run run in one transaction (Flyway's `group = true`), as the
//!   tenant role, on a session logged in as the tenant's migrator (never the admin's: see
//!   [`super::session`]), with `search_path` set to the tenant schema, each recorded in the same
//!   transaction: a failing migration is rolled back with those before it in the run, recorded
//!   nowhere, and reported with its file name, the server's message and line (path
//!   `migrations[N]`). So the table never holds a migration matih's state does not;
//! - an applied versioned migration whose checksum changed is an error, never a silent re-run; so
//!   is a pending version older than the newest applied one, and a failed row in the history;
//! - concurrent runs serialize on a lock of the history table and read it under the lock;
//! - matih's own record (the resource's recorded attributes, handed to apply as
//!   `ResourceObject::recorded`) is the authority on what was applied, not the table, which the
//!   tenant can write: a table that disagrees with it (a checksum edited, a row marked applied or
//!   removed) fails this tenant's resource with a message naming the script ([`verify_history`]).
//!
//! `read` reports the migrations the history holds, in the attribute's shape: a migration not
//! applied is missing from the list, one applied with another checksum shows that checksum.
//!
//! The history table is the tenant's (it can write it), so it is read only on the migrator's
//! session, only after checking that it is an ordinary table owned by the tenant role, and every
//! value is checked for its type: a view or a retyped column in its place fails this tenant's
//! resource with a message, never matih.

use std::time::Instant;

use super::{attr_ident, db_err, err, session, sql, Observed, PostgresProvider, ResourceObject};
use crate::catalog::flyway_validate::{parse_items, pending, version_key, HistoryRow, Mig};
use crate::provider::ProviderError;
use crate::value::Value;

fn parse(obj: &ResourceObject) -> Result<Vec<Mig>, ProviderError> {
    let Some(Value::List(items)) = obj.attrs.get("migrations") else {
        return Err(err(obj, Some("migrations"), "missing list attribute \"migrations\"", false));
    };
    parse_items(items).map_err(|(path, message)| err(obj, Some(&path), message, false))
}

/// matih's record against the history table: every migration matih recorded as applied (the
/// `migrations` of the resource's recorded attributes, its own state) must be in the table as
/// applied with the recorded checksum, and the table must mark nothing applied that matih did not
/// apply. The table is the tenant's and the tenant can write it; matih's record is the authority,
/// so any disagreement is an error of this tenant's resource, naming the script, instead of a
/// migration skipped or run again on the table's word. Pure.
pub fn verify_history(recorded: &[Mig], history: &[HistoryRow]) -> Result<(), (String, String)> {
    let applied = |r: &HistoryRow| r.success;
    for m in recorded {
        let row = history.iter().rev().filter(|r| applied(r)).find(|r| match &m.version {
            Some(_) => r.version.is_some() && version_key(r.version.as_deref()) == m.version_key(),
            None => r.version.is_none() && r.script == m.script,
        });
        match row {
            None => {
                return Err((
                    m.script.clone(),
                    format!(
                        "matih applied migration {} (checksum {}) but the history table no longer records it",
                        m.script, m.checksum
                    ),
                ))
            }
            Some(r) if r.checksum != Some(m.checksum) => {
                return Err((
                    m.script.clone(),
                    format!(
                        "matih applied migration {} with checksum {} but the history table records checksum {}",
                        m.script,
                        m.checksum,
                        r.checksum.map_or("none".into(), |c| c.to_string())
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    for r in history.iter().filter(|r| applied(r)) {
        let known = recorded.iter().any(|m| match (&m.version, &r.version) {
            (Some(_), Some(v)) => version_key(Some(v.as_str())) == m.version_key(),
            (None, None) => r.script == m.script,
            _ => false,
        });
        if !known {
            return Err((
                r.script.clone(),
                format!(
                    "the history table marks migration {} applied (installed_rank {}) but matih never applied it",
                    r.script, r.installed_rank
                ),
            ));
        }
    }
    Ok(())
}

/// The migrations matih recorded as applied to this same history table, when `obj` carries its
/// record (an apply of a resource matih applied before; not a create, and not after the resource
/// moved to another schema or table).
fn recorded_migrations(obj: &ResourceObject) -> Option<Vec<Mig>> {
    let recorded = obj.recorded.as_ref()?;
    for key in ["database", "schema", "history_table"] {
        if recorded.get(key) != obj.attrs.get(key) {
            return None;
        }
    }
    match recorded.get("migrations") {
        Some(Value::List(items)) => parse_items(items).ok(),
        _ => None,
    }
}

struct Target {
    db: String,
    schema: String,
    qschema: String,
    owner: String,
    qowner: String,
    table: String,
    qtable: String,
}

fn target(obj: &ResourceObject) -> Result<Target, ProviderError> {
    let (db, _) = attr_ident(obj, "database")?;
    let (schema, qschema) = attr_ident(obj, "schema")?;
    let (owner, qowner) = attr_ident(obj, "owner")?;
    let table = obj.attrs.get("history_table").and_then(Value::as_str).unwrap_or("flyway_schema_history");
    let qtable = sql::ident(table).map_err(|m| err(obj, Some("history_table"), m, false))?;
    sql::ident(&format!("{table}_s_idx")).map_err(|m| err(obj, Some("history_table"), m, false))?;
    Ok(Target { db, schema, qschema, owner, qowner, table: table.to_string(), qtable })
}

async fn history(
    c: &impl tokio_postgres::GenericClient,
    obj: &ResourceObject,
    t: &Target,
) -> Result<Vec<HistoryRow>, ProviderError> {
    let rows = c
        .query(
            &format!(
                "SELECT installed_rank::int4, version::text, script::text, checksum::int4, success::bool \
                 FROM {}.{} ORDER BY installed_rank",
                t.qschema, t.qtable
            ),
            &[],
        )
        .await
        .map_err(|e| db_err(obj, &format!("read the migration history \"{}\".\"{}\"", t.schema, t.table), &e))?;
    rows.iter()
        .map(|r| {
            Ok(HistoryRow {
                installed_rank: r.try_get(0)?,
                version: r.try_get(1)?,
                script: r.try_get(2)?,
                checksum: r.try_get(3)?,
                success: r.try_get(4)?,
            })
        })
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(|e| {
            err(
                obj,
                None,
                format!("the migration history \"{}\".\"{}\" has an unexpected shape: {e}", t.schema, t.table),
                false,
            )
        })
}

pub(super) async fn apply(p: &PostgresProvider, obj: &ResourceObject) -> Result<Observed, ProviderError> {
    let t = target(obj)?;
    let migs = parse(obj)?;
    if !p.schema_exists(obj, &t.db, &t.schema).await? {
        return Err(err(
            obj,
            Some("schema"),
            format!("schema \"{}\" does not exist in database \"{}\"", t.schema, t.db),
            false,
        ));
    }
    let mut c = p.tenant_session(obj, &t.db, &t.owner, &t.schema).await?;
    let (qs, qt) = (&t.qschema, &t.qtable);
    let create = format!(
        "SET LOCAL ROLE {owner}; \
         CREATE TABLE IF NOT EXISTS {qs}.{qt} (\
           installed_rank INT NOT NULL, \
           version VARCHAR(50), \
           description VARCHAR(200) NOT NULL, \
           type VARCHAR(20) NOT NULL, \
           script VARCHAR(1000) NOT NULL, \
           checksum INTEGER, \
           installed_by VARCHAR(100) NOT NULL, \
           installed_on TIMESTAMP NOT NULL DEFAULT now(), \
           execution_time INTEGER NOT NULL, \
           success BOOLEAN NOT NULL, \
           CONSTRAINT {pk} PRIMARY KEY (installed_rank)); \
         CREATE INDEX IF NOT EXISTS {idx} ON {qs}.{qt} (success)",
        owner = t.qowner,
        pk = sql::quote_ident(&format!("{}_pk", t.table)),
        idx = sql::quote_ident(&format!("{}_s_idx", t.table)),
    );
    let what_table = format!("create the migration history \"{}\".\"{}\"", t.schema, t.table);
    // Whatever stands in the table's place must be the tenant's table before matih touches it.
    session::check_table(&*c, obj, &t.schema, &t.table, &t.owner, Some("history_table")).await?;
    let tx = c.transaction().await.map_err(|e| db_err(obj, &what_table, &e))?;
    tx.batch_execute(&create).await.map_err(|e| db_err(obj, &what_table, &e))?;
    tx.commit().await.map_err(|e| db_err(obj, &what_table, &e))?;
    session::check_table(&*c, obj, &t.schema, &t.table, &t.owner, Some("history_table")).await?;

    // All pending migrations in one transaction (Flyway's `group`), holding the history's lock:
    // a failure rolls back the whole run, so the table never holds more than matih records.
    let what_run = format!("migrate schema \"{}\"", t.schema);
    let tx = c.transaction().await.map_err(|e| db_err(obj, &what_run, &e))?;
    let enter = format!("SET LOCAL ROLE {}; SET LOCAL search_path TO {qs}", t.qowner);
    tx.batch_execute(&format!("{enter}; LOCK TABLE {qs}.{qt} IN SHARE ROW EXCLUSIVE MODE"))
        .await
        .map_err(|e| db_err(obj, &what_run, &e))?;
    // Read under the lock: a concurrent run's migrations are seen, and not run twice.
    let rows = history(&tx, obj, &t).await?;
    if let Some(recorded) = recorded_migrations(obj) {
        verify_history(&recorded, &rows).map_err(|(script, message)| {
            let index = migs.iter().find(|m| m.script == script).map(|m| format!("migrations[{}]", m.index));
            err(
                obj,
                index.as_deref(),
                format!(
                    "{message}: the migration history \"{}\".\"{}\" was changed outside matih, whose own record is \
                     authoritative; nothing was run. Restore the table's rows as matih applied them (or restore the \
                     tenant's database from a backup)",
                    t.schema, t.table
                ),
                false,
            )
        })?;
    }
    let todo = pending(&migs, &rows).map_err(|(index, message)| {
        let path = index.map(|i| format!("migrations[{i}]"));
        err(obj, path.as_deref(), message, false)
    })?;
    let mut applied = Vec::new();
    for index in todo {
        let m = &migs[index];
        let path = format!("migrations[{index}]");
        let what = format!("migration {} in schema \"{}\"", m.script, t.schema);
        let started = Instant::now();
        // Each migration starts as the tenant role in its schema, whatever the one before left.
        let run = async {
            tx.batch_execute(&enter).await?;
            tx.batch_execute(&m.sql).await
        };
        if let Err(e) = run.await {
            let (message, transient) = sql::describe(&e);
            let line = sql::error_line(&e, &m.sql).map(|l| format!(" (line {l})")).unwrap_or_default();
            drop(tx);
            let with = if applied.is_empty() {
                String::new()
            } else {
                format!(", with the {} migration(s) before it in this run", applied.len())
            };
            return Err(err(
                obj,
                Some(&path),
                format!("migration {} failed and was rolled back{with}: {message}{line}", m.script),
                transient,
            ));
        }
        let ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
        tx.batch_execute(&enter).await.map_err(|e| db_err(obj, &format!("record {what}"), &e))?;
        tx.execute(
            &format!(
                "INSERT INTO {qs}.{qt} (installed_rank, version, description, type, script, checksum, installed_by, \
                 installed_on, execution_time, success) \
                 SELECT COALESCE(MAX(installed_rank), 0) + 1, $1, $2, 'SQL', $3, $4, current_user, now(), $5, true \
                 FROM {qs}.{qt}"
            ),
            &[&m.version, &m.description, &m.script, &m.checksum, &ms],
        )
        .await
        .map_err(|e| db_err(obj, &format!("record {what}"), &e))?;
        applied.push((m.script.clone(), ms));
    }
    tx.commit().await.map_err(|e| db_err(obj, &format!("commit {what_run}"), &e))?;
    for (script, ms) in applied {
        tracing::info!("{}: applied migration {script} as \"{}\" in {ms} ms", obj.addr, t.owner);
    }
    Ok(Observed { attrs: obj.attrs.clone(), ..Observed::default() })
}

pub(super) async fn read(
    p: &PostgresProvider,
    obj: &ResourceObject,
    sessions: Option<&session::Sessions>,
) -> Result<Option<Observed>, ProviderError> {
    let t = target(obj)?;
    let migs = parse(obj)?;
    if !p.schema_exists(obj, &t.db, &t.schema).await? {
        return Ok(None);
    }
    let c = session::Sessions::get(sessions, p, obj, &t.db, &t.owner, &t.schema).await?;
    // A history that is not the tenant's ordinary table, or that cannot be read as one, is drift
    // of this resource (shown in the plan; apply then fails this tenant with the reason), not a
    // read error, which would stop the plan of every tenant.
    let (rows, owner) = match session::inspect_table(&**c, obj, &t.schema, &t.table, &t.owner).await? {
        session::TableCheck::Missing => (Vec::new(), None),
        session::TableCheck::Table => match history(&**c, obj, &t).await {
            Ok(rows) => (rows, Some(t.owner.clone())),
            Err(e) if !e.transient => {
                tracing::warn!("{}: {}", obj.addr, e.message);
                return Ok(Some(tampered(obj, &t, "unreadable")));
            }
            Err(e) => return Err(e),
        },
        session::TableCheck::Wrong(what) => {
            tracing::warn!("{}: \"{}\".\"{}\" is {what}", obj.addr, t.schema, t.table);
            return Ok(Some(tampered(obj, &t, &what)));
        }
    };
    let Some(Value::List(items)) = obj.attrs.get("migrations") else { unreachable!("checked by parse") };
    let mut live = Vec::new();
    for (m, item) in migs.iter().zip(items) {
        let row = rows.iter().rev().find(|r| {
            r.success
                && match &m.version {
                    Some(_) => r.version.is_some() && version_key(r.version.as_deref()) == m.version_key(),
                    None => r.version.is_none() && r.script == m.script,
                }
        });
        let Some(row) = row else { continue };
        if row.checksum == Some(m.checksum) {
            live.push(item.clone());
        } else {
            let mut changed = item.as_map().cloned().unwrap_or_default();
            changed.insert("checksum".into(), row.checksum.map_or(Value::Null, |c| Value::Int(i64::from(c))));
            live.push(Value::Map(changed));
        }
    }
    let mut attrs = obj.attrs.clone();
    attrs.insert("migrations".into(), Value::List(live));
    if let Some(owner) = owner {
        attrs.insert("owner".into(), Value::String(owner));
    }
    Ok(Some(Observed { attrs, ..Observed::default() }))
}

/// What `read` reports for a history that is not (or cannot be read as) the tenant's table: the
/// table's name with what is wrong, and no migration applied.
fn tampered(obj: &ResourceObject, t: &Target, what: &str) -> Observed {
    let mut attrs = obj.attrs.clone();
    attrs.insert("history_table".into(), Value::String(format!("{} ({what})", t.table)));
    attrs.insert("migrations".into(), Value::List(Vec::new()));
    Observed { attrs, ..Observed::default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::flyway_validate::fixtures::{mig, row};

    #[test]
    fn the_history_must_agree_with_what_matih_recorded() {
        let recorded = [mig(0, "V1__a.sql", 1), mig(1, "V2__b.sql", 2), mig(2, "R__v.sql", 9)];
        let history = [row(1, "V1__a.sql", 1), row(2, "V2__b.sql", 2), row(3, "R__v.sql", 9)];
        assert_eq!(verify_history(&recorded, &history), Ok(()));
        assert_eq!(verify_history(&recorded[..2], &history[..2]), Ok(()));
        // A checksum edited in the table.
        let edited = [row(1, "V1__a.sql", 1), row(2, "V2__b.sql", 20), row(3, "R__v.sql", 9)];
        let (script, msg) = verify_history(&recorded, &edited).unwrap_err();
        assert_eq!(script, "V2__b.sql");
        assert!(
            msg.contains("matih applied migration V2__b.sql with checksum 2 but the history table records checksum 20")
        );
        // A row marked applied that matih never ran.
        let forged = [history.to_vec(), vec![row(4, "V3__c.sql", 3)]].concat();
        let (script, msg) = verify_history(&recorded, &forged).unwrap_err();
        assert_eq!(script, "V3__c.sql");
        assert!(
            msg.contains("marks migration V3__c.sql applied (installed_rank 4) but matih never applied it"),
            "{msg}"
        );
        // A row deleted, or flipped to failed.
        let (script, msg) = verify_history(&recorded, &history[1..]).unwrap_err();
        assert_eq!(script, "V1__a.sql");
        assert!(msg.contains("no longer records it"), "{msg}");
        let flipped = [HistoryRow { success: false, ..row(1, "V1__a.sql", 1) }, history[1].clone(), history[2].clone()];
        assert_eq!(verify_history(&recorded, &flipped).unwrap_err().0, "V1__a.sql");
        // A repeatable re-recorded with another checksum.
        let rerun = [history.to_vec(), vec![row(4, "R__v.sql", 10)]].concat();
        assert_eq!(verify_history(&recorded, &rerun).unwrap_err().0, "R__v.sql");
    }
}
