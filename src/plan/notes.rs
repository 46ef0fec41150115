//! Notes a reviewer needs beside the attribute diff, for resources whose diff alone reads poorly.
//!
//! - `postgresql_migrations`: `pending migrations: V3__orders.sql, R__views.sql`, the scripts
//!   that apply will run (versioned ones not applied yet, repeatable ones new or changed), in the
//!   order of the attribute (Flyway's order).
//! - `postgresql_migrations`: `migration history changed outside matih: …`, when what refresh read
//!   from the tenant's history table disagrees with the migrations desired in a way no file change
//!   explains (the plan already refused changed files against matih's record): an applied
//!   versioned migration with another checksum, or a history table that is not the tenant's table.
//!   Apply refuses such a tenant (`migrate::verify_history`); the note says so before it runs.
//!
//! **Invariant:** pure, like the diff: reads one change, decides nothing.

use super::{Action, ResourceChange};
use crate::value::Value;

/// The pending migrations of a `postgresql_migrations` change, when it has any.
pub(super) fn pending_migrations(change: &ResourceChange) -> Option<String> {
    if change.address.kind != "postgresql_migrations"
        || !matches!(change.action, Action::Create | Action::Update | Action::Replace)
    {
        return None;
    }
    let after = scripts(&change.after)?;
    let before = if change.action == Action::Update { scripts(&change.before).unwrap_or_default() } else { Vec::new() };
    // A versioned script read back with another checksum is not pending: the table was changed
    // (see `history_changed`).
    let tampered = |script: &str| script.starts_with('V') && before.iter().any(|(s, _)| *s == script);
    let pending: Vec<&str> =
        after.iter().filter(|m| !before.contains(m) && !tampered(m.0)).map(|(script, _)| *script).collect();
    (!pending.is_empty()).then(|| format!("pending migrations: {}", pending.join(", ")))
}

/// The note of a `postgresql_migrations` update whose refreshed history disagrees with what is
/// desired beyond pending migrations (see the module documentation).
pub(super) fn history_changed(change: &ResourceChange) -> Option<String> {
    if change.address.kind != "postgresql_migrations" || change.action != Action::Update {
        return None;
    }
    let (before, after) = (change.before.as_ref()?, change.after.as_ref()?);
    let mut found = Vec::new();
    if before.get("history_table") != after.get("history_table") {
        if let Some(Value::String(t)) = before.get("history_table") {
            found.push(format!("the history table is {t}"));
        }
    }
    let desired = scripts(&change.after).unwrap_or_default();
    for (script, live) in scripts(&change.before).unwrap_or_default() {
        if !script.starts_with('V') {
            continue;
        }
        if let Some((_, want)) = desired.iter().find(|(s, _)| *s == script) {
            if *want != live {
                let show = |v: Option<&Value>| match v {
                    Some(Value::Int(n)) => n.to_string(),
                    _ => "none".to_string(),
                };
                found.push(format!("{script} has checksum {} in the table, {} as applied", show(live), show(*want)));
            }
        }
    }
    (!found.is_empty()).then(|| {
        format!(
            "migration history changed outside matih: {}; apply will refuse this tenant until the table is restored",
            found.join(", ")
        )
    })
}

type Side = Option<std::collections::BTreeMap<String, Value>>;

/// `(script, checksum)` of every migration of one side of the change.
fn scripts(side: &Side) -> Option<Vec<(&str, Option<&Value>)>> {
    match side.as_ref()?.get("migrations")? {
        Value::List(items) => Some(items.iter().filter_map(script_and_checksum).collect()),
        _ => None,
    }
}

fn script_and_checksum(v: &Value) -> Option<(&str, Option<&Value>)> {
    let m = v.as_map()?;
    Some((m.get("script")?.as_str()?, m.get("checksum")))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::phase::Phase;

    fn mig(script: &str, checksum: i64) -> Value {
        Value::map([("script", Value::str(script)), ("checksum", Value::Int(checksum)), ("sql", Value::str("x"))])
    }

    fn change(kind: &str, action: Action, before: Vec<Value>, after: Vec<Value>) -> ResourceChange {
        let side = |l: Vec<Value>| Some(BTreeMap::from([("migrations".to_string(), Value::List(l))]));
        ResourceChange {
            address: format!("{kind}.tenant").parse().unwrap(),
            phase: Phase::SetupDatabase,
            action,
            before: if action == Action::Create { None } else { side(before) },
            after: side(after),
            changes: Vec::new(),
            depends_on: BTreeSet::new(),
            notes: Vec::new(),
            manifest_changes: Vec::new(),
        }
    }

    #[test]
    fn new_and_changed_scripts_are_pending() {
        let all = vec![mig("V1__a.sql", 1), mig("V2__b.sql", 2), mig("R__v.sql", 3)];
        let c = change("postgresql_migrations", Action::Create, vec![], all.clone());
        assert_eq!(pending_migrations(&c).unwrap(), "pending migrations: V1__a.sql, V2__b.sql, R__v.sql");
        let c =
            change("postgresql_migrations", Action::Update, vec![mig("V1__a.sql", 1), mig("R__v.sql", 9)], all.clone());
        assert_eq!(pending_migrations(&c).unwrap(), "pending migrations: V2__b.sql, R__v.sql");
        let c = change("postgresql_migrations", Action::NoOp, all.clone(), all.clone());
        assert_eq!(pending_migrations(&c), None);
        let c = change("postgresql_migrations", Action::Update, all.clone(), all.clone());
        assert_eq!(pending_migrations(&c), None, "an update of something else");
        let c = change("postgresql_seed_data", Action::Create, vec![], all);
        assert_eq!(pending_migrations(&c), None);
    }

    #[test]
    fn a_history_changed_outside_matih_is_named() {
        let all = vec![mig("V1__a.sql", 1), mig("V2__b.sql", 2)];
        let c = change("postgresql_migrations", Action::Update, vec![mig("V1__a.sql", 10)], all.clone());
        assert_eq!(
            history_changed(&c).unwrap(),
            "migration history changed outside matih: V1__a.sql has checksum 10 in the table, 1 as applied; apply \
             will refuse this tenant until the table is restored"
        );
        assert_eq!(pending_migrations(&c).unwrap(), "pending migrations: V2__b.sql", "V1 is not pending");
        let c = change("postgresql_migrations", Action::Update, vec![mig("V1__a.sql", 1)], all.clone());
        assert_eq!(history_changed(&c), None, "only pending migrations");
        let mut c = change("postgresql_migrations", Action::Update, vec![], all);
        c.before.as_mut().unwrap().insert("history_table".into(), Value::str("h (a view, not an ordinary table)"));
        c.after.as_mut().unwrap().insert("history_table".into(), Value::str("h"));
        assert!(history_changed(&c).unwrap().contains("the history table is h (a view, not an ordinary table)"));
    }
}
