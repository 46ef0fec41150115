//! What makes a change a risk to review (the Markdown plan's **Risks** section, and what
//! grouping compares): the categories and their order are described in `markdown.rs`. Reads a
//! finished plan only.

use crate::kind::{self, RiskClass};
use crate::phase::Phase;
use crate::plan::{Action, ResourceChange, TenantPlan};
use crate::value::Value;

/// How a change is said in a sentence: `` `x` will be created``.
pub(super) fn verb(action: Action) -> &'static str {
    match action {
        Action::NoOp => "is unchanged",
        Action::Create => "will be created",
        Action::Adopt => "will be adopted",
        Action::Update => "will be updated in place",
        Action::Replace => "must be replaced",
        Action::Delete => "will be destroyed",
    }
}

/// A category of risk, most serious first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Risk {
    DataLoss,
    Isolation,
    DnsTls,
    Credentials,
    Destroyed,
    Adopted,
}

impl Risk {
    pub(super) fn title(self) -> &'static str {
        match self {
            Risk::DataLoss => "Data loss",
            Risk::Isolation => "Network isolation, access control and quotas",
            Risk::DnsTls => "DNS and TLS",
            Risk::Credentials => "Credentials rotated",
            Risk::Destroyed => "Destroyed or replaced",
            Risk::Adopted => "Existing objects taken over (adopted)",
        }
    }

    /// The risk of one change, with what to add after its line (why it is a risk).
    pub(super) fn of(tenant: &TenantPlan, c: &ResourceChange) -> Option<(Risk, String)> {
        let destructive = matches!(c.action, Action::Delete | Action::Replace);
        let changes = match c.action {
            Action::NoOp => false,
            Action::Create => tenant.prior_state.is_some(),
            Action::Adopt | Action::Update | Action::Replace | Action::Delete => true,
        };
        let labels_changed = || c.changes.iter().any(|a| a.path.starts_with("metadata.labels"));
        let risk = kind::info(&c.address.kind).risk;
        if let (true, RiskClass::Data { what }) = (destructive, risk) {
            Some((Risk::DataLoss, format!(" (drops the tenant's {what} and all its data)")))
        } else if let Some(found) =
            (changes && risk == RiskClass::Migrations).then(|| destructive_migrations(c)).filter(|f| !f.is_empty())
        {
            let quoted: Vec<String> = found.iter().map(|(script, stmt)| format!("`{script}`: `{stmt}`")).collect();
            Some((Risk::DataLoss, format!(" and runs statements that drop data: {}", quoted.join("; "))))
        } else if matches!(c.action, Action::Update | Action::Adopt) && c.changes.iter().any(rotates) {
            Some((Risk::Credentials, " (a new password: restart what uses the old one)".into()))
        } else if c.action == Action::Adopt {
            Some((Risk::Adopted, " (it exists and matih has no record of it)".into()))
        } else if changes && risk == RiskClass::Isolation {
            Some((Risk::Isolation, String::new()))
        } else if c.action == Action::Update && risk == RiskClass::IsolationLabels && labels_changed() {
            Some((Risk::Isolation, " (its labels change; network policies select namespaces by them)".into()))
        } else if changes && risk == RiskClass::DnsTls {
            Some((Risk::DnsTls, String::new()))
        } else if destructive && c.phase == Phase::DeployIngressController {
            Some((
                Risk::DnsTls,
                " (tenant traffic stops until it is back; a new LoadBalancer IP moves the DNS records)".into(),
            ))
        } else if destructive {
            Some((Risk::Destroyed, String::new()))
        } else {
            None
        }
    }
}

/// A recorded secret replaced by one generated at apply.
fn rotates(a: &crate::plan::AttrChange) -> bool {
    use crate::value::{Secret, Value};
    matches!(
        (&a.before, &a.after),
        (Some(Value::Secret(Secret { fingerprint: Some(_), .. })), Some(Value::Secret(Secret { fingerprint: None, source })))
            if source == "generated"
    )
}

/// The migrations a `postgresql_migrations` change runs that the recorded state has not run (new
/// scripts, or repeatable ones whose checksum changed), with each statement of theirs that drops
/// data: `(script, statement)`, the statement shortened to one line.
fn destructive_migrations(c: &ResourceChange) -> Vec<(String, String)> {
    let list = |side: &Option<std::collections::BTreeMap<String, Value>>| -> Vec<Value> {
        match side.as_ref().and_then(|a| a.get("migrations")) {
            Some(Value::List(items)) => items.clone(),
            _ => Vec::new(),
        }
    };
    let key = |m: &Value| {
        let get = |k: &str| m.get_path(k).cloned().unwrap_or(Value::Null);
        (get("script"), get("checksum"), get("sql"))
    };
    let ran: Vec<_> = list(&c.before).iter().map(key).collect();
    let mut out = Vec::new();
    for m in list(&c.after) {
        if ran.contains(&key(&m)) {
            continue;
        }
        let script = m.get_path("script").and_then(Value::as_str).unwrap_or("(unnamed)").to_string();
        if let Some(sql) = m.get_path("sql").and_then(Value::as_str) {
            for stmt in dropping_statements(sql) {
                out.push((script.clone(), stmt));
            }
        }
    }
    out
}

/// The statements of `sql` that drop data, each on one line and at most 100 characters.
pub(super) fn dropping_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    for stmt in split_statements(sql) {
        let words: Vec<String> = stmt.split_whitespace().map(|w| w.to_ascii_uppercase()).collect();
        let word = |i: usize| words.get(i).map(String::as_str).unwrap_or("");
        let alter_table = word(0) == "ALTER" && word(1) == "TABLE";
        let drops = word(0) == "TRUNCATE"
            || (0..words.len()).any(|i| {
                words[i] == "DROP"
                    && (matches!(
                        word(i + 1),
                        "TABLE" | "SCHEMA" | "DATABASE" | "COLUMN" | "MATERIALIZED" | "OWNED" | "SEQUENCE"
                    ) || (alter_table
                        && !matches!(
                            word(i + 1),
                            "CONSTRAINT" | "DEFAULT" | "NOT" | "INDEX" | "TRIGGER" | "IDENTITY" | "EXPRESSION" | ""
                        )))
            });
        if drops {
            let line = stmt.split_whitespace().collect::<Vec<_>>().join(" ");
            out.push(if line.chars().count() > 100 {
                format!("{}…", line.chars().take(100).collect::<String>())
            } else {
                line
            });
        }
    }
    out
}

/// Splits SQL into statements at `;`, without comments (`--`, `/* */`) and with string literals
/// and quoted identifiers replaced by `''` / `""`, so that neither can look like a statement.
fn split_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '-' if chars.peek() == Some(&'-') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                cur.push(' ');
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
                cur.push(' ');
            }
            '\'' | '"' => {
                for d in chars.by_ref() {
                    if d == c {
                        break;
                    }
                }
                cur.push(c);
                cur.push(c);
            }
            ';' => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}
