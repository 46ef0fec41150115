//! Flyway's `validate`, pure: the migrations of a `postgresql_migrations` resource (its
//! `migrations` attribute) against the rows of a history table, giving the migrations to run or
//! what is wrong. The PostgreSQL provider runs it against the live history table before it
//! migrates; the plan runs it against what refresh read (or state recorded), so that a changed
//! applied migration fails the plan, not the apply.
//!
//! **Invariant:** knows Flyway's rules only; never connects to a database.

use crate::value::Value;

/// One migration of the resource's `migrations` attribute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mig {
    /// Position in the attribute (`migrations[N]`).
    pub index: usize,
    pub version: Option<String>,
    pub description: String,
    pub script: String,
    pub sql: String,
    pub checksum: i32,
}

impl Mig {
    pub fn version_key(&self) -> Vec<u64> {
        version_key(self.version.as_deref())
    }
}

pub fn version_key(v: Option<&str>) -> Vec<u64> {
    v.map_or_else(Vec::new, |v| v.split('.').map(|p| p.parse().unwrap_or(u64::MAX)).collect())
}

/// One row of the history table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryRow {
    pub installed_rank: i32,
    pub version: Option<String>,
    pub script: String,
    pub checksum: Option<i32>,
    pub success: bool,
}

/// The migrations of a `migrations` list; the error is `(attribute path, message)`.
pub fn parse_items(items: &[Value]) -> Result<Vec<Mig>, (String, String)> {
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let path = format!("migrations[{index}]");
            let m = item.as_map().ok_or_else(|| (path.clone(), "must be a map".to_string()))?;
            let s = |k: &str| {
                m.get(k)
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or_else(|| (format!("{path}.{k}"), format!("missing string {k:?}")))
            };
            let checksum = match m.get("checksum") {
                Some(Value::Int(n)) => {
                    i32::try_from(*n).map_err(|_| (format!("{path}.checksum"), "not a 32-bit checksum".to_string()))?
                }
                _ => return Err((format!("{path}.checksum"), "missing checksum".to_string())),
            };
            let version = match m.get("version") {
                None | Some(Value::Null) => None,
                Some(Value::String(v)) => Some(v.clone()),
                Some(_) => return Err((format!("{path}.version"), "must be a string or null".to_string())),
            };
            Ok(Mig { index, version, description: s("description")?, script: s("script")?, sql: s("sql")?, checksum })
        })
        .collect()
}

/// Flyway's `validate` and the list of migrations to run, in order: pending versioned ones by
/// version, then repeatable ones (new or changed) by description. The error names the index of
/// the offending migration (when one is) and says what is wrong.
pub fn pending(migs: &[Mig], history: &[HistoryRow]) -> Result<Vec<usize>, (Option<usize>, String)> {
    if let Some(failed) = history.iter().find(|r| !r.success) {
        let index = migs.iter().find(|m| m.script == failed.script).map(|m| m.index);
        return Err((
            index,
            format!(
                "the history table records a failed migration {} (installed_rank {}): repair it before migrating",
                failed.script, failed.installed_rank
            ),
        ));
    }
    let max_applied = history.iter().filter(|r| r.version.is_some()).map(|r| version_key(r.version.as_deref())).max();
    let mut versioned: Vec<&Mig> = migs.iter().filter(|m| m.version.is_some()).collect();
    versioned.sort_by_key(|m| m.version_key());
    let mut out = Vec::new();
    for m in versioned {
        let applied =
            history.iter().rev().find(|r| r.version.is_some() && version_key(r.version.as_deref()) == m.version_key());
        match applied {
            Some(r) if r.checksum != Some(m.checksum) => {
                return Err((
                    Some(m.index),
                    format!(
                        "migration {} was applied with checksum {} but the file now has checksum {}: an applied \
                         migration must never change (add a new V… migration instead)",
                        m.script,
                        r.checksum.map_or("none".into(), |c| c.to_string()),
                        m.checksum
                    ),
                ));
            }
            Some(_) => {}
            None => {
                if let Some(max) = &max_applied {
                    if &m.version_key() < max {
                        return Err((
                            Some(m.index),
                            format!(
                                "migration {} (version {}) is older than the newest applied version: out-of-order \
                                 migrations are refused",
                                m.script,
                                m.version.as_deref().unwrap_or_default()
                            ),
                        ));
                    }
                }
                out.push(m.index);
            }
        }
    }
    let mut repeatable: Vec<&Mig> = migs.iter().filter(|m| m.version.is_none()).collect();
    repeatable.sort_by(|a, b| a.description.cmp(&b.description));
    for m in repeatable {
        let latest = history.iter().rev().find(|r| r.version.is_none() && r.script == m.script);
        if latest.and_then(|r| r.checksum) != Some(m.checksum) {
            out.push(m.index);
        }
    }
    Ok(out)
}

/// Flyway's `validate`, at plan time: the migrations desired (`desired`, the resource's attributes)
/// against those applied (`applied`, what `read` returned in a refresh, or what state recorded):
/// an applied versioned migration whose checksum changed, a pending version older than the newest
/// applied one. Returns the offending script and the message; `None` when apply can proceed, or
/// when the two name another schema (the resource is replaced and starts afresh). Pure.
pub fn validate_applied(
    desired: &std::collections::BTreeMap<String, Value>,
    applied: &std::collections::BTreeMap<String, Value>,
) -> Option<(String, String)> {
    for key in ["database", "schema", "history_table"] {
        if desired.get(key) != applied.get(key) {
            return None;
        }
    }
    let list = |attrs: &std::collections::BTreeMap<String, Value>| match attrs.get("migrations") {
        Some(Value::List(items)) => parse_items(items).ok(),
        _ => None,
    };
    let (migs, live) = (list(desired)?, list(applied)?);
    let history: Vec<HistoryRow> = live
        .iter()
        .enumerate()
        .map(|(i, m)| HistoryRow {
            installed_rank: i32::try_from(i + 1).unwrap_or(i32::MAX),
            version: m.version.clone(),
            script: m.script.clone(),
            checksum: Some(m.checksum),
            success: true,
        })
        .collect();
    let (index, message) = pending(&migs, &history).err()?;
    let script = index.and_then(|i| migs.get(i)).map(|m| m.script.clone()).unwrap_or_default();
    Some((script, message))
}

/// Migrations and history rows named by their script, for the tests here and the provider's.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::{HistoryRow, Mig};

    pub(crate) fn mig(index: usize, script: &str, checksum: i32) -> Mig {
        let version = script.strip_prefix('V').and_then(|s| s.split_once("__")).map(|(v, _)| v.replace('_', "."));
        let description = script.split_once("__").unwrap().1.trim_end_matches(".sql").to_string();
        Mig { index, version, description, script: script.into(), sql: String::new(), checksum }
    }

    pub(crate) fn row(rank: i32, script: &str, checksum: i32) -> HistoryRow {
        let m = mig(0, script, checksum);
        HistoryRow {
            installed_rank: rank,
            version: m.version,
            script: script.into(),
            checksum: Some(checksum),
            success: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{mig, row};
    use super::*;

    #[test]
    fn versioned_in_version_order_then_repeatables() {
        let migs = [mig(0, "V10__c.sql", 3), mig(1, "V2__b.sql", 2), mig(2, "R__v.sql", 9), mig(3, "V1__a.sql", 1)];
        assert_eq!(pending(&migs, &[]).unwrap(), [3, 1, 0, 2]);
        let history = [row(1, "V1__a.sql", 1), row(2, "V2__b.sql", 2), row(3, "R__v.sql", 9)];
        assert_eq!(pending(&migs, &history).unwrap(), [0]);
        let all = [history.to_vec(), vec![row(4, "V10__c.sql", 3)]].concat();
        assert!(pending(&migs, &all).unwrap().is_empty(), "nothing runs twice");
    }

    #[test]
    fn repeatables_rerun_when_their_checksum_changes() {
        let history = [row(1, "R__v.sql", 9), row(2, "R__v.sql", 10)];
        assert!(pending(&[mig(0, "R__v.sql", 10)], &history).unwrap().is_empty(), "the latest row counts");
        assert_eq!(pending(&[mig(0, "R__v.sql", 9)], &history).unwrap(), [0]);
    }

    #[test]
    fn changed_checksums_out_of_order_and_failed_rows_are_errors() {
        let (index, msg) = pending(
            &[mig(0, "V1__a.sql", 1), mig(1, "V2__b.sql", 5)],
            &[row(1, "V1__a.sql", 1), row(2, "V2__b.sql", 2)],
        )
        .unwrap_err();
        assert_eq!(index, Some(1));
        assert!(msg.contains("V2__b.sql was applied with checksum 2 but the file now has checksum 5"), "{msg}");
        let (index, msg) = pending(
            &[mig(0, "V1__a.sql", 1), mig(1, "V3__c.sql", 3)],
            &[row(1, "V1__a.sql", 1), row(2, "V4__d.sql", 4)],
        )
        .unwrap_err();
        assert_eq!(index, Some(1));
        assert!(msg.contains("out-of-order"), "{msg}");
        let failed = HistoryRow { success: false, ..row(1, "V1__a.sql", 1) };
        let (index, msg) = pending(&[mig(0, "V1__a.sql", 1)], &[failed]).unwrap_err();
        assert_eq!(index, Some(0));
        assert!(msg.contains("failed migration V1__a.sql"), "{msg}");
    }

    fn attrs(migs: &[(&str, i64)]) -> std::collections::BTreeMap<String, Value> {
        let list = migs.iter().map(|(script, checksum)| {
            let m = mig(0, script, 0);
            Value::map([
                ("version", m.version.map_or(Value::Null, Value::String)),
                ("description", Value::str(m.description)),
                ("script", Value::str(*script)),
                ("sql", Value::str("SELECT 1;")),
                ("checksum", Value::Int(*checksum)),
            ])
        });
        [
            ("database", Value::str("matih_tenants")),
            ("schema", Value::str("tenant_acme")),
            ("migrations", Value::list(list)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    #[test]
    fn validate_applied_finds_changed_checksums_before_apply() {
        let desired = attrs(&[("V1__a.sql", 1), ("V2__b.sql", 2), ("R__v.sql", 3)]);
        // V2 pending, the repeatable changed: apply runs them, no error.
        assert_eq!(validate_applied(&desired, &attrs(&[("V1__a.sql", 1), ("R__v.sql", 30)])), None);
        assert_eq!(validate_applied(&desired, &desired), None);
        // V1 applied with another checksum: the file was edited after it ran.
        let (script, message) = validate_applied(&desired, &attrs(&[("V1__a.sql", 10), ("V2__b.sql", 2)])).unwrap();
        assert_eq!(script, "V1__a.sql");
        assert!(
            message.contains("V1__a.sql was applied with checksum 10 but the file now has checksum 1"),
            "{message}"
        );
        // Another schema: the resource is replaced, nothing applied there yet.
        let mut elsewhere = attrs(&[("V1__a.sql", 10)]);
        elsewhere.insert("schema".into(), Value::str("tenant_old"));
        assert_eq!(validate_applied(&desired, &elsewhere), None);
    }
}
