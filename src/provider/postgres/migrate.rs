//! `postgresql_migrations`: Flyway-compatible SQL migrations.
//!
//! The history table (`flyway_schema_history` by default) lives in the tenant schema with
//! Flyway's exact columns, so Flyway itself can take over (or `flyway info` can read it):
//! `installed_rank, version, description, type, script, checksum, installed_by, installed_on,
//! execution_time, success`. Rules, as Flyway's `migrate` with its default `validate`:
//!
//! - versioned migrations (`V1__init.sql`) run once, in version order; repeatable ones
//!   (`R__views.sql`) run after them, by description, whenever their checksum changes;
//! - each migration runs in its own transaction as the tenant role (`SET LOCAL ROLE`, so what it
//!   creates is the tenant's) with `search_path` set to the tenant schema, and is recorded in the
//!   same transaction: a failing migration is rolled back, recorded nowhere, and reported with its
//!   file name, the server's message and line (path `migrations[N]`);
//! - an applied versioned migration whose checksum changed is an error, never a silent re-run; so
//!   is a pending version older than the newest applied one, and a failed row in the history;
//! - concurrent runs serialize on a lock of the history table and re-check before running.
//!
//! `read` reports the migrations the history holds, in the attribute's shape: a migration not
//! applied is missing from the list, one applied with another checksum shows that checksum.

use std::time::Instant;

use super::{attr_ident, db_err, err, sql, Observed, PostgresProvider, ResourceObject};
use crate::catalog::flyway_validate::{parse_items, pending, version_key, HistoryRow, Mig};
use crate::provider::ProviderError;
use crate::value::Value;

fn parse(obj: &ResourceObject) -> Result<Vec<Mig>, ProviderError> {
    let Some(Value::List(items)) = obj.attrs.get("migrations") else {
        return Err(err(obj, Some("migrations"), "missing list attribute \"migrations\"", false));
    };
    parse_items(items).map_err(|(path, message)| err(obj, Some(&path), message, false))
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
                "SELECT installed_rank, version::text, script::text, checksum, success FROM {}.{} \
                 ORDER BY installed_rank",
                t.qschema, t.qtable
            ),
            &[],
        )
        .await
        .map_err(|e| db_err(obj, &format!("read the migration history \"{}\".\"{}\"", t.schema, t.table), &e))?;
    Ok(rows
        .iter()
        .map(|r| HistoryRow {
            installed_rank: r.get(0),
            version: r.get(1),
            script: r.get(2),
            checksum: r.get(3),
            success: r.get(4),
        })
        .collect())
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
    let mut c = p.conn(obj, &t.db).await?;
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
    let tx = c.transaction().await.map_err(|e| db_err(obj, &what_table, &e))?;
    tx.batch_execute(&create).await.map_err(|e| db_err(obj, &what_table, &e))?;
    tx.commit().await.map_err(|e| db_err(obj, &what_table, &e))?;

    let rows = history(&*c, obj, &t).await?;
    let todo = pending(&migs, &rows).map_err(|(index, message)| {
        let path = index.map(|i| format!("migrations[{i}]"));
        err(obj, path.as_deref(), message, false)
    })?;
    for index in todo {
        let m = &migs[index];
        let path = format!("migrations[{index}]");
        let what = format!("migration {} in schema \"{}\"", m.script, t.schema);
        let tx = c.transaction().await.map_err(|e| db_err(obj, &what, &e))?;
        tx.batch_execute(&format!(
            "SET LOCAL ROLE {}; SET LOCAL search_path TO {qs}; LOCK TABLE {qs}.{qt} IN SHARE ROW EXCLUSIVE MODE",
            t.qowner
        ))
        .await
        .map_err(|e| db_err(obj, &what, &e))?;
        // Another run may have applied it while this one waited for the lock.
        let rows = history(&tx, obj, &t).await?;
        let still = pending(std::slice::from_ref(m), &rows)
            .map_err(|(_, message)| err(obj, Some(&path), message, false))?
            .contains(&m.index);
        if !still {
            continue;
        }
        let started = Instant::now();
        if let Err(e) = tx.batch_execute(&m.sql).await {
            let (message, transient) = sql::describe(&e);
            let line = sql::error_line(&e, &m.sql).map(|l| format!(" (line {l})")).unwrap_or_default();
            drop(tx);
            return Err(err(
                obj,
                Some(&path),
                format!("migration {} failed and was rolled back: {message}{line}", m.script),
                transient,
            ));
        }
        let ms = i32::try_from(started.elapsed().as_millis()).unwrap_or(i32::MAX);
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
        tx.commit().await.map_err(|e| db_err(obj, &format!("commit {what}"), &e))?;
        tracing::info!("{}: applied migration {} as \"{}\" in {ms} ms", obj.addr, m.script, t.owner);
    }
    Ok(Observed { attrs: obj.attrs.clone(), ..Observed::default() })
}

pub(super) async fn read(p: &PostgresProvider, obj: &ResourceObject) -> Result<Option<Observed>, ProviderError> {
    let t = target(obj)?;
    let migs = parse(obj)?;
    if !p.schema_exists(obj, &t.db, &t.schema).await? {
        return Ok(None);
    }
    let c = p.conn(obj, &t.db).await?;
    let owner: Option<String> = c
        .query_opt(
            "SELECT tableowner::text FROM pg_tables WHERE schemaname = $1 AND tablename = $2",
            &[&t.schema, &t.table],
        )
        .await
        .map_err(|e| db_err(obj, &format!("look up the migration history \"{}\".\"{}\"", t.schema, t.table), &e))?
        .map(|r| r.get(0));
    let rows = match &owner {
        Some(_) => history(&*c, obj, &t).await?,
        None => Vec::new(),
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
