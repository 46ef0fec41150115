//! `postgresql_seed_data`: the catalog's reference data (`schemas/seed/*.json`), upserted.
//!
//! Each file (table, key columns, rows) is one statement in its own transaction, run as the tenant
//! role (the owner of the tenant schema) on a session logged in as the tenant's migrator, never the
//! admin's (see [`super::session`]: a trigger on a seed table is the tenant's code), with
//! `search_path` set to the tenant schema, after checking that the table is an ordinary table
//! owned by the tenant role:
//!
//! ```sql
//! INSERT INTO "s"."t" ("c1", "c2") SELECT "c1", "c2" FROM jsonb_populate_recordset(NULL::"s"."t", $1::text::jsonb)
//! ON CONFLICT ("c1") DO UPDATE SET "c2" = EXCLUDED."c2" WHERE ROW("t"."c2") IS DISTINCT FROM ROW(EXCLUDED."c2")
//! ```
//!
//! The rows travel as one JSON parameter (never as SQL text) and PostgreSQL converts each value to
//! its column's type (JSON arrays to `TEXT[]`, objects to `JSONB`). Re-running changes no row
//! (the `WHERE` skips identical ones); a changed file updates the rows whose values changed. Rows
//! no longer in a file are left alone (other tables may reference them).
//!
//! `read` compares the live rows with the file, column by column as JSON: when every row matches,
//! the file is reported as it is; otherwise its `rows` are the live ones (a missing row is left
//! out), which the plan shows as drift. It reads on the migrator's session too, and reports a table
//! that is not the tenant's ordinary table (a view in its place) as holding no rows: drift, which
//! apply then refuses for this tenant with the reason.

use super::{attr_ident, db_err, err, session, sql, Observed, PostgresProvider, ResourceObject};
use crate::provider::ProviderError;
use crate::value::Value;

struct File {
    index: usize,
    name: String,
    table: String,
    qtable: String,
    keys: Vec<String>,
    columns: Vec<String>,
    rows: serde_json::Value,
}

fn parse(obj: &ResourceObject) -> Result<Vec<File>, ProviderError> {
    let Some(Value::List(items)) = obj.attrs.get("files") else {
        return Err(err(obj, Some("files"), "missing list attribute \"files\"", false));
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let path = format!("files[{index}]");
            let m = item.as_map().ok_or_else(|| err(obj, Some(&path), "must be a map", false))?;
            let name = m.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            let table = m
                .get("table")
                .and_then(Value::as_str)
                .ok_or_else(|| err(obj, Some(&format!("{path}.table")), "missing table", false))?;
            let qtable = sql::ident(table).map_err(|e| err(obj, Some(&format!("{path}.table")), e, false))?;
            let keys: Vec<String> = match m.get("key") {
                Some(Value::List(keys)) if !keys.is_empty() => keys
                    .iter()
                    .map(|k| k.as_str().map(str::to_string))
                    .collect::<Option<_>>()
                    .ok_or_else(|| err(obj, Some(&format!("{path}.key")), "key columns must be strings", false))?,
                _ => return Err(err(obj, Some(&format!("{path}.key")), "missing key columns", false)),
            };
            let Some(Value::List(rows)) = m.get("rows") else {
                return Err(err(obj, Some(&format!("{path}.rows")), "missing rows", false));
            };
            let mut columns: Vec<String> = Vec::new();
            for (i, row) in rows.iter().enumerate() {
                let row = row
                    .as_map()
                    .ok_or_else(|| err(obj, Some(&format!("{path}.rows[{i}]")), "a row must be a map", false))?;
                for col in row.keys() {
                    if !columns.contains(col) {
                        columns.push(col.clone());
                    }
                }
                if let Some(k) = keys.iter().find(|k| !row.contains_key(*k)) {
                    return Err(err(
                        obj,
                        Some(&format!("{path}.rows[{i}]")),
                        format!("missing key column {k:?}"),
                        false,
                    ));
                }
            }
            for col in keys.iter().chain(&columns) {
                sql::ident(col).map_err(|e| err(obj, Some(&format!("{path}.key")), e, false))?;
            }
            let rows = serde_json::Value::from(Value::List(rows.clone()));
            Ok(File { index, name, table: table.to_string(), qtable, keys, columns, rows })
        })
        .collect()
}

fn quoted(names: &[String]) -> Vec<String> {
    names.iter().map(|n| sql::quote_ident(n)).collect()
}

/// The upsert of one file (see the module documentation).
fn upsert_sql(qschema: &str, f: &File) -> String {
    let cols = quoted(&f.columns).join(", ");
    let keys = quoted(&f.keys).join(", ");
    let rest: Vec<String> = quoted(&f.columns.iter().filter(|c| !f.keys.contains(c)).cloned().collect::<Vec<_>>());
    let qt = &f.qtable;
    let on_conflict = if rest.is_empty() {
        "DO NOTHING".to_string()
    } else {
        let set = rest.iter().map(|c| format!("{c} = EXCLUDED.{c}")).collect::<Vec<_>>().join(", ");
        let old = rest.iter().map(|c| format!("{qt}.{c}")).collect::<Vec<_>>().join(", ");
        let new = rest.iter().map(|c| format!("EXCLUDED.{c}")).collect::<Vec<_>>().join(", ");
        format!("DO UPDATE SET {set} WHERE ROW({old}) IS DISTINCT FROM ROW({new})")
    };
    format!(
        "INSERT INTO {qschema}.{qt} AS {qt} ({cols}) SELECT {cols} FROM jsonb_populate_recordset(NULL::{qschema}.{qt}, \
         $1::text::jsonb) ON CONFLICT ({keys}) {on_conflict}"
    )
}

/// The tenant role whose schema `schema` is (see [`PostgresProvider::schema_owner`]).
async fn tenant_role(
    p: &PostgresProvider,
    obj: &ResourceObject,
    db: &str,
    schema: &str,
) -> Result<Option<String>, ProviderError> {
    if !p.schema_exists(obj, db, schema).await? {
        return Ok(None);
    }
    p.schema_owner(obj, db, schema).await
}

pub(super) async fn apply(p: &PostgresProvider, obj: &ResourceObject) -> Result<Observed, ProviderError> {
    let (db, _) = attr_ident(obj, "database")?;
    let (schema, qschema) = attr_ident(obj, "schema")?;
    let files = parse(obj)?;
    let Some(role) = tenant_role(p, obj, &db, &schema).await? else {
        return Err(err(
            obj,
            Some("schema"),
            format!("schema \"{schema}\" does not exist in database \"{db}\""),
            false,
        ));
    };
    let mut c = p.tenant_session(obj, &db, &role, &schema).await?;
    let qrole = c.quoted_role.clone();
    for f in &files {
        let path = format!("files[{}]", f.index);
        let what = format!("seed {} into table \"{schema}\".\"{}\"", f.name, f.table);
        if !session::check_table(&*c, obj, &schema, &f.table, &role, Some(&format!("{path}.table"))).await? {
            return Err(err(
                obj,
                Some(&format!("{path}.table")),
                format!("{what}: the table does not exist in database \"{db}\" (did the migrations run?)"),
                false,
            ));
        }
        let tx = c.transaction().await.map_err(|e| db_err(obj, &what, &e))?;
        tx.batch_execute(&format!("SET LOCAL ROLE {qrole}; SET LOCAL search_path TO {qschema}"))
            .await
            .map_err(|e| db_err(obj, &what, &e))?;
        let changed = tx
            .execute(&upsert_sql(&qschema, f), &[&f.rows.to_string()])
            .await
            .map_err(|e| ProviderError { path: Some(path.clone()), ..db_err(obj, &what, &e) })?;
        tx.commit().await.map_err(|e| db_err(obj, &what, &e))?;
        tracing::info!("{}: {what}: {changed} row(s) inserted or updated", obj.addr);
    }
    Ok(Observed { attrs: obj.attrs.clone(), ..Observed::default() })
}

pub(super) async fn read(
    p: &PostgresProvider,
    obj: &ResourceObject,
    sessions: Option<&session::Sessions>,
) -> Result<Option<Observed>, ProviderError> {
    let (db, _) = attr_ident(obj, "database")?;
    let (schema, qschema) = attr_ident(obj, "schema")?;
    let files = parse(obj)?;
    let Some(role) = tenant_role(p, obj, &db, &schema).await? else {
        return Ok(None);
    };
    // A schema not (yet) handed to an ordinary role, as a database whose apply was cut off
    // between its creation and the hand-over leaves it: no tenant's rows can be in it. It reads
    // as not seeded, so the plan repairs the database first and then seeds it, instead of a read
    // error that stops the tenant's plan.
    if !p.is_ordinary_role(obj, &role).await? {
        tracing::warn!(
            "{}: schema \"{schema}\" of database \"{db}\" belongs to \"{role}\", not a tenant role",
            obj.addr
        );
        return Ok(None);
    }
    let c = session::Sessions::get(sessions, p, obj, &db, &role, &schema).await?;
    let Some(Value::List(items)) = obj.attrs.get("files") else { unreachable!("checked by parse") };
    let mut live_files = Vec::new();
    for (f, item) in files.iter().zip(items) {
        let what = format!("read seed {} from table \"{schema}\".\"{}\"", f.name, f.table);
        let check = session::inspect_table(&**c, obj, &schema, &f.table, &role).await?;
        if let session::TableCheck::Wrong(found) = &check {
            tracing::warn!("{}: \"{schema}\".\"{}\" is {found}: read as holding no rows", obj.addr, f.table);
        }
        let (live, same): (String, bool) = if check == session::TableCheck::Table {
            let query = format!(
                "WITH wanted AS (SELECT d, ord FROM jsonb_array_elements($1::text::jsonb) WITH ORDINALITY AS x(d, ord)), \
                 found AS (SELECT w.ord, w.d, (SELECT jsonb_object_agg(e.key, to_jsonb(t) -> e.key) \
                     FROM {qschema}.{qt} t, jsonb_each(w.d) e \
                     WHERE NOT EXISTS (SELECT 1 FROM unnest($2::text[]) k WHERE to_jsonb(t) -> k IS DISTINCT FROM w.d -> k)) AS live \
                   FROM wanted w) \
                 SELECT COALESCE(jsonb_agg(live ORDER BY ord) FILTER (WHERE live IS NOT NULL), '[]')::text, \
                        COALESCE(bool_and(live IS NOT DISTINCT FROM d), true) FROM found",
                qt = f.qtable
            );
            match c.query_one(&query, &[&f.rows.to_string(), &f.keys]).await {
                Ok(row) => (row.get(0), row.get(1)),
                Err(e) if sql::describe(&e).1 => return Err(db_err(obj, &what, &e)),
                // The tenant changed the table so that it cannot be compared: drift, not a read error.
                Err(e) => {
                    tracing::warn!("{}: {what}: {}", obj.addr, sql::describe(&e).0);
                    ("[]".to_string(), f.rows.as_array().is_some_and(Vec::is_empty))
                }
            }
        } else {
            ("[]".to_string(), f.rows.as_array().is_some_and(Vec::is_empty))
        };
        if same {
            live_files.push(item.clone());
        } else {
            let rows: serde_json::Value =
                serde_json::from_str(&live).map_err(|e| err(obj, None, format!("{what}: {e}"), false))?;
            let rows = Value::try_from(rows).map_err(|e| err(obj, None, format!("{what}: {e}"), false))?;
            let mut changed = item.as_map().cloned().unwrap_or_default();
            changed.insert("rows".into(), rows);
            live_files.push(Value::Map(changed));
        }
    }
    let mut attrs = obj.attrs.clone();
    attrs.insert("files".into(), Value::List(live_files));
    Ok(Some(Observed { attrs, ..Observed::default() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upserts_touch_only_changed_rows() {
        let f = File {
            index: 0,
            name: "system_roles.json".into(),
            table: "system_roles".into(),
            qtable: "\"system_roles\"".into(),
            keys: vec!["name".into()],
            columns: vec!["description".into(), "name".into(), "permissions".into()],
            rows: serde_json::json!([]),
        };
        assert_eq!(
            upsert_sql("\"tenant_acme\"", &f),
            "INSERT INTO \"tenant_acme\".\"system_roles\" AS \"system_roles\" (\"description\", \"name\", \"permissions\") \
             SELECT \"description\", \"name\", \"permissions\" FROM jsonb_populate_recordset(NULL::\"tenant_acme\".\"system_roles\", \
             $1::text::jsonb) ON CONFLICT (\"name\") DO UPDATE SET \"description\" = EXCLUDED.\"description\", \
             \"permissions\" = EXCLUDED.\"permissions\" WHERE ROW(\"system_roles\".\"description\", \
             \"system_roles\".\"permissions\") IS DISTINCT FROM ROW(EXCLUDED.\"description\", EXCLUDED.\"permissions\")"
        );
        let keys_only = File { columns: vec!["name".into()], ..f };
        assert!(upsert_sql("\"s\"", &keys_only).ends_with("ON CONFLICT (\"name\") DO NOTHING"));
    }
}
