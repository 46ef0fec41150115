//! Turns the files of a `schemas/` tree into a validated [`Catalog`].
//!
//! **Invariant:** reads only the texts it is given (and, for `load_dir`, the directory tree); every
//! problem is a diagnostic, all of them reported at once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use hcl_edit::structure::{Block, Body};
use hcl_edit::Span;
use petgraph::algo::tarjan_scc;
use petgraph::graph::DiGraph;

use super::reader::{describe, labels, Ctx, Fields};
use super::template::{self, ALERT_VARS, DASHBOARD_VARS, IMAGE_VARS, NETWORK_VARS};
use super::{
    AlertRule, Catalog, ComputeResources, DashboardDef, DatabaseDef, DatabaseIsolation, Dependency, DnsDef,
    DnsRecordDef, FrontendDef, IgnoreDef, IngressControllerDef, Migration, MigrationKind, MonitoringDef, MovedDef,
    NetworkPolicyDef, ObservabilityDef, SeedFile, ServiceDef, TierDef,
};
use crate::addr::{AttrPath, ResourceAddr};
use crate::diag::{self, Diagnostic, Location, SourceFile};
use crate::kind;
use crate::phase::Phase;
use crate::value::Value;

/// One file of the tree: the path shown in diagnostics, the path inside the tree (with `/`), the text.
pub(super) struct CatalogFile {
    pub path: PathBuf,
    pub rel: String,
    pub text: String,
}

/// Reads every file under `dir` (sorted, so that loading is deterministic).
pub(super) fn read_tree(root: &Path, dir: &Path, files: &mut Vec<CatalogFile>, diags: &mut Vec<Diagnostic>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            diags.push(Diagnostic::error(format!("cannot read catalog directory {}: {e}", dir.display())));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            read_tree(root, &path, files, diags);
            continue;
        }
        let rel = path.strip_prefix(root).unwrap_or(&path);
        let rel = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
        match std::fs::read_to_string(&path) {
            Ok(text) => files.push(CatalogFile { path, rel, text }),
            Err(e) => diags.push(Diagnostic::error(format!("cannot read {}: {e}", path.display()))),
        }
    }
}

/// Top-level blocks of every HCL file, by type, with the file they come from.
#[derive(Default)]
struct Blocks<'a> {
    by_type: BTreeMap<&'a str, Vec<(&'a Ctx, &'a Block)>>,
    regions: Vec<(&'a Ctx, Fields<'a>)>,
}

const BLOCK_TYPES: &[&str] = &[
    "alert",
    "database",
    "dns",
    "frontend",
    "ignore_changes",
    "ingress_controller",
    "monitoring",
    "moved",
    "network_policy",
    "observability",
    "service",
    "service_defaults",
    "tier",
];

/// Loads and validates a catalog from the files of a `schemas/` tree.
pub(super) fn from_files(files: Vec<CatalogFile>) -> Result<Catalog, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let mut catalog = Catalog::default();

    // HCL files: parse all of them first, so that blocks may be split across files freely.
    let mut hcl: Vec<(Ctx, Option<Body>)> = Vec::new();
    for f in files.iter().filter(|f| f.rel.ends_with(".hcl")) {
        let ctx = Ctx::new(SourceFile::new(&f.path, f.text.clone()));
        let body = ctx.parse();
        hcl.push((ctx, body));
    }
    let mut blocks = Blocks::default();
    for (ctx, body) in &hcl {
        let Some(body) = body else { continue };
        let mut top = Fields::of_file(ctx, body);
        for &t in BLOCK_TYPES {
            for b in top.blocks(t) {
                blocks.by_type.entry(t).or_default().push((ctx, b));
            }
        }
        if body.has_attribute("regions") {
            blocks.regions.push((ctx, top));
        } else {
            top.finish();
        }
    }
    load_hcl(&mut catalog, blocks);
    for (ctx, _) in &hcl {
        diags.append(&mut ctx.diags.borrow_mut());
    }

    for f in &files {
        if let Some(name) = f.rel.strip_prefix("migrations/") {
            if name.ends_with(".sql") && !name.contains('/') {
                match Migration::from_file(name, f.text.clone()) {
                    Ok(m) => catalog.migrations.push(m),
                    Err(e) => diags.push(Diagnostic::error(e).at(SourceFile::new(&f.path, "").location(0))),
                }
            }
        } else if let Some(name) = f.rel.strip_prefix("seed/") {
            if name.ends_with(".json") && !name.contains('/') {
                if let Some(seed) = load_seed(f, name, &mut diags) {
                    catalog.seed.push(seed);
                }
            }
        } else if let Some(name) = f.rel.strip_prefix("dashboards/") {
            if name.ends_with(".json") && !name.contains('/') {
                if let Some(d) = load_dashboard(f, name, &mut diags) {
                    catalog.dashboards.push(d);
                }
            }
        }
    }
    catalog
        .migrations
        .sort_by(|a, b| (a.kind, a.version_key(), &a.description).cmp(&(b.kind, b.version_key(), &b.description)));
    catalog.seed.sort_by(|a, b| a.name.cmp(&b.name));
    catalog.dashboards.sort_by(|a, b| a.name.cmp(&b.name));

    // A file that does not parse leaves its sections empty: do not also report them as missing.
    let parsed_all = hcl.iter().all(|(_, body)| body.is_some());
    validate(&catalog, parsed_all, &mut diags);
    diag::sort(&mut diags);
    if diags.iter().any(Diagnostic::is_error) {
        Err(diags)
    } else {
        Ok(catalog)
    }
}

/// The only block of a type; a second one is an error.
fn single<'a>(blocks: &Blocks<'a>, ident: &str) -> Option<(&'a Ctx, &'a Block)> {
    let list = blocks.by_type.get(ident)?;
    for (ctx, b) in list.iter().skip(1) {
        ctx.error(b.span(), format!("duplicate `{ident}` block (the catalog has one)"));
    }
    list.first().copied()
}

/// The single label of a block, checked to be a catalog name.
fn label(ctx: &Ctx, block: &Block, kebab_ok: bool) -> Option<String> {
    let l = labels(block);
    if l.len() != 1 {
        ctx.error(block.span(), format!("`{}` block needs exactly one label", block.ident.as_str()));
        return None;
    }
    let name = l.into_iter().next().unwrap_or_default();
    let ok = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || (kebab_ok && b == b'-'));
    if !ok {
        let allowed =
            if kebab_ok { "lower-case letters, digits, '_' and '-'" } else { "lower-case letters, digits and '_'" };
        ctx.error(block.span(), format!("invalid name {name:?} in {} (use {allowed})", describe(block)));
        return None;
    }
    Some(name)
}

/// Checks a label is not used twice for blocks of one type.
fn unique(seen: &mut BTreeSet<String>, ctx: &Ctx, block: &Block, name: &str) -> bool {
    if seen.insert(name.to_string()) {
        true
    } else {
        ctx.error(block.span(), format!("duplicate {}", describe(block)));
        false
    }
}

fn load_hcl(c: &mut Catalog, mut blocks: Blocks<'_>) {
    load_regions(c, &mut blocks);
    load_tiers(c, &blocks);
    load_services(c, &blocks);
    load_alerts(c, &blocks);
    load_network_policies(c, &blocks);
    load_dns(c, &blocks);
    load_settings(c, &blocks);
    load_lifecycle(c, &blocks);
}

/// The `ignore_changes` and `moved` blocks (`schemas/lifecycle.hcl`).
fn load_lifecycle(c: &mut Catalog, blocks: &Blocks<'_>) {
    for &(ctx, b) in blocks.by_type.get("ignore_changes").into_iter().flatten() {
        let l = labels(b);
        let mut f = Fields::of_block(ctx, b);
        let location = f.location();
        let paths = f.string_list("paths");
        f.finish();
        let [target] = l.as_slice() else {
            ctx.error(b.span(), "`ignore_changes` block needs exactly one label: a resource kind or KIND.NAME");
            continue;
        };
        let kind = target.split_once('.').map_or(target.as_str(), |(k, _)| k);
        let valid = kind.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid || kind::Family::of(kind).is_none() {
            push(
                ctx,
                location.clone(),
                format!(
                    "ignore_changes {target:?}: {kind:?} is not a resource kind (kinds start with kubernetes_, \
                     postgresql_, dns_ or helm_, as `matih graph` shows them)"
                ),
            );
            continue;
        }
        if target.contains('.') && target.parse::<ResourceAddr>().is_err() {
            push(ctx, location.clone(), format!("ignore_changes {target:?}: not a resource kind or KIND.NAME"));
            continue;
        }
        if paths.is_empty() {
            push(ctx, location.clone(), format!("ignore_changes {target:?}: `paths` lists no attribute path"));
        }
        let mut def = IgnoreDef { target: target.clone(), paths: Vec::new() };
        for (text, at) in paths {
            match text.parse::<AttrPath>() {
                Ok(p) => def.paths.push((p, at)),
                Err(e) => push(ctx, at, format!("ignore_changes {target:?}: {e}")),
            }
        }
        c.ignore_changes.push(def);
    }
    for &(ctx, b) in blocks.by_type.get("moved").into_iter().flatten() {
        let mut f = Fields::of_block(ctx, b);
        let location = f.location();
        let (from, to) = (f.string("from"), f.string("to"));
        f.finish();
        if !labels(b).is_empty() {
            ctx.error(b.span(), "`moved` block takes no label");
        }
        let parse = |text: &str, which: &str| match text.parse::<ResourceAddr>() {
            Ok(a) => Some(a),
            Err(e) => {
                push(ctx, location.clone(), format!("moved: {which}: {e}"));
                None
            }
        };
        let (Some(from), Some(to)) = (parse(&from, "from"), parse(&to, "to")) else { continue };
        if from.kind != to.kind {
            push(
                ctx,
                location.clone(),
                format!("moved: {from} to {to} changes the resource kind; a move keeps the kind"),
            );
            continue;
        }
        if from == to {
            push(ctx, location.clone(), format!("moved: from and to are the same address {from}"));
            continue;
        }
        let clash = c.moved.iter().find(|m| m.from == from || m.to == to || m.from == to || m.to == from);
        if let Some(other) = clash {
            let why = if other.to == from || other.from == to {
                format!(
                    "moved: {from} to {to} chains with the move {} to {} at {}: write one move from the oldest \
                     address to the newest (and one from each intermediate address to the newest)",
                    other.from, other.to, other.location
                )
            } else {
                format!(
                    "moved: {from} to {to} names an address the move {} to {} at {} names too",
                    other.from, other.to, other.location
                )
            };
            push(ctx, location.clone(), why);
            continue;
        }
        c.moved.push(MovedDef { from, to, location });
    }
}

/// The `regions` lists: every region once.
fn load_regions(c: &mut Catalog, blocks: &mut Blocks<'_>) {
    for (ctx, mut top) in std::mem::take(&mut blocks.regions) {
        let list = top.string_list("regions");
        let mut seen = BTreeSet::new();
        for (r, at) in list {
            if !seen.insert(r.clone()) || c.regions.contains(&r) {
                ctx.diags.borrow_mut().push(Diagnostic::error(format!("duplicate region {r:?}")).at(at));
            } else {
                c.regions.push(r);
            }
        }
        top.finish();
    }
}

/// The `tier` blocks.
fn load_tiers(c: &mut Catalog, blocks: &Blocks<'_>) {
    let mut seen = BTreeSet::new();
    for &(ctx, b) in blocks.by_type.get("tier").into_iter().flatten() {
        let Some(name) = label(ctx, b, false) else { continue };
        if !unique(&mut seen, ctx, b, &name) {
            continue;
        }
        let mut f = Fields::of_block(ctx, b);
        let location = Some(f.location());
        let database_isolation = match f.string("database_isolation").as_str() {
            "schema" => DatabaseIsolation::Schema,
            "database" => DatabaseIsolation::Database,
            other => {
                if !other.is_empty() {
                    ctx.error(
                        b.span(),
                        format!("tier {name:?}: database_isolation {other:?} must be \"schema\" or \"database\""),
                    );
                }
                DatabaseIsolation::Schema
            }
        };
        let quota = f.value("quota").and_then(|(v, at)| quota(&name, v, at, ctx));
        let service_resources = f.value("service_resources").and_then(|(v, at)| service_resources(&name, v, at, ctx));
        let mut role_settings = BTreeMap::new();
        for (setting, units) in super::ROLE_SETTINGS {
            let Some(value) = f.opt_string(setting) else { continue };
            // A whole number and one of PostgreSQL's units for the setting: the value goes into
            // `ALTER ROLE … SET` as a literal, and drift compares it as PostgreSQL stores it.
            let number = value.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            let unit = &value[number.len()..];
            if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) || !units.contains(&unit) {
                ctx.error(
                    b.span(),
                    format!(
                        "tier {name:?}: {setting} {value:?} must be a whole number and one of {}",
                        units.join(", ")
                    ),
                );
                continue;
            }
            role_settings.insert(setting.to_string(), value);
        }
        let tier = TierDef {
            name: name.clone(),
            quota,
            database_isolation,
            connection_limit: f.int("connection_limit"),
            pool: f.string("pool"),
            pool_size: f.opt_int("pool_size"),
            trace_retention: f.string("trace_retention"),
            service_resources,
            role_settings,
            location,
        };
        f.finish();
        c.tiers.insert(name, tier);
    }
}

/// The `alert` blocks: a known severity, known placeholders in `expr`.
fn load_alerts(c: &mut Catalog, blocks: &Blocks<'_>) {
    let mut seen = BTreeSet::new();
    for &(ctx, b) in blocks.by_type.get("alert").into_iter().flatten() {
        let Some(name) = labels(b).into_iter().next().filter(|n| !n.is_empty() && labels(b).len() == 1) else {
            ctx.error(b.span(), "`alert` block needs exactly one label, the alert name");
            continue;
        };
        if !unique(&mut seen, ctx, b, &name) {
            continue;
        }
        let mut f = Fields::of_block(ctx, b);
        let location = f.location();
        let rule = AlertRule {
            name,
            summary: f.string("summary"),
            severity: f.string("severity"),
            for_: f.opt_string("for"),
            expr: f.string("expr").trim().to_string(),
            description: f.string("description"),
            location: Some(location.clone()),
        };
        if !["info", "warning", "critical"].contains(&rule.severity.as_str()) {
            push(
                ctx,
                location.clone(),
                format!("alert {:?}: severity {:?} must be info, warning or critical", rule.name, rule.severity),
            );
        }
        for p in template::unknown_placeholders(&rule.expr, ALERT_VARS) {
            push(ctx, location.clone(), format!("alert {:?}: unknown placeholder {{{p}}} in expr", rule.name));
        }
        f.finish();
        c.alerts.push(rule);
    }
}

/// The `network_policy` blocks: an object `spec` with known placeholders.
fn load_network_policies(c: &mut Catalog, blocks: &Blocks<'_>) {
    let mut seen = BTreeSet::new();
    for &(ctx, b) in blocks.by_type.get("network_policy").into_iter().flatten() {
        let Some(name) = label(ctx, b, true) else { continue };
        if !unique(&mut seen, ctx, b, &name) {
            continue;
        }
        let mut f = Fields::of_block(ctx, b);
        let location = f.location();
        let spec = match f.value("spec") {
            Some((v @ Value::Map(_), _)) => v,
            Some((_, at)) => {
                push(ctx, at, format!("network_policy {name:?}: spec must be an object"));
                Value::Map(BTreeMap::new())
            }
            None => {
                push(ctx, location.clone(), format!("network_policy {name:?} has no attribute `spec`"));
                Value::Map(BTreeMap::new())
            }
        };
        let only_if = f.opt_string("only_if");
        if let Some(o) = &only_if {
            if o != "connector_services" {
                push(
                    ctx,
                    location.clone(),
                    format!("network_policy {name:?}: only_if {o:?} must be \"connector_services\""),
                );
            }
        }
        let edge = match f.opt_string("namespace").as_deref() {
            None | Some("tenant") => false,
            Some("edge") => true,
            Some(other) => {
                push(
                    ctx,
                    location.clone(),
                    format!("network_policy {name:?}: namespace {other:?} must be \"tenant\" or \"edge\""),
                );
                false
            }
        };
        let mut strings = Vec::new();
        template::strings(&spec, &mut strings);
        for s in &strings {
            for p in template::unknown_placeholders(s, NETWORK_VARS) {
                push(ctx, location.clone(), format!("network_policy {name:?}: unknown placeholder {{{p}}}"));
            }
        }
        f.finish();
        c.network_policies.push(NetworkPolicyDef { name, spec, only_if, edge, location: Some(location) });
    }
}

/// The `dns` block and its A records.
fn load_dns(c: &mut Catalog, blocks: &Blocks<'_>) {
    if let Some((ctx, b)) = single(blocks, "dns") {
        let mut f = Fields::of_block(ctx, b);
        let mut dns = DnsDef { ns_delegation_ttl: f.int("ns_delegation_ttl"), records: Vec::new() };
        let mut seen = BTreeSet::new();
        for r in f.blocks("record") {
            let Some(resource) = label(ctx, r, false) else { continue };
            if !unique(&mut seen, ctx, r, &resource) {
                continue;
            }
            let mut rf = Fields::of_block(ctx, r);
            let rec =
                DnsRecordDef { resource, name: rf.string("name"), record_type: rf.string("type"), ttl: rf.int("ttl") };
            if rec.record_type != "A" {
                ctx.error(
                    r.span(),
                    format!("record {:?}: only A records point at the ingress controller", rec.resource),
                );
            }
            rf.finish();
            dns.records.push(rec);
        }
        f.finish();
        c.dns = dns;
    }
}

/// The single blocks of settings: `database`, `ingress_controller`, `monitoring`, `observability`.
fn load_settings(c: &mut Catalog, blocks: &Blocks<'_>) {
    if let Some((ctx, b)) = single(blocks, "database") {
        let mut f = Fields::of_block(ctx, b);
        c.database =
            DatabaseDef { shared_database: f.string("shared_database"), history_table: f.string("history_table") };
        f.finish();
    }
    if let Some((ctx, b)) = single(blocks, "ingress_controller") {
        let mut f = Fields::of_block(ctx, b);
        c.ingress_controller = IngressControllerDef {
            image: f.string("image"),
            replicas: f.int("replicas"),
            resources: ComputeResources {
                requests_cpu: f.string("requests_cpu"),
                requests_memory: f.string("requests_memory"),
                limits_cpu: f.string("limits_cpu"),
                limits_memory: f.string("limits_memory"),
            },
            health_path: f.string("health_path"),
            helm_chart: f.string("helm_chart"),
            chart_version: f.string("chart_version"),
        };
        f.finish();
    }
    if let Some((ctx, b)) = single(blocks, "monitoring") {
        let mut f = Fields::of_block(ctx, b);
        c.monitoring = MonitoringDef {
            prometheus_version: f.string("prometheus_version"),
            retention: f.string("retention"),
            scrape_interval: f.string("scrape_interval"),
            alertmanager_service: f.string("alertmanager_service"),
            alertmanager_port: f.string("alertmanager_port"),
        };
        f.finish();
    }
    if let Some((ctx, b)) = single(blocks, "observability") {
        let mut f = Fields::of_block(ctx, b);
        c.observability = ObservabilityDef {
            namespace: f.string("namespace"),
            loki_url: f.string("loki_url"),
            tempo_url: f.string("tempo_url"),
            tempo_otlp_endpoint: f.string("tempo_otlp_endpoint"),
            otel_collector_image: f.string("otel_collector_image"),
            check_image: f.string("check_image"),
        };
        f.finish();
    }
}

fn push(ctx: &Ctx, at: Location, message: String) {
    ctx.diags.borrow_mut().push(Diagnostic::error(message).at(at));
}

/// A tier's `service_resources`: the four quantities of [`ComputeResources`], each required.
fn service_resources(tier: &str, v: Value, at: Location, ctx: &Ctx) -> Option<ComputeResources> {
    let Value::Map(m) = v else {
        push(ctx, at, format!("tier {tier:?}: service_resources must be an object"));
        return None;
    };
    let get = |k: &str| match m.get(k) {
        Some(Value::String(q)) if crate::quantity::nanos(q).is_some() => Some(q.clone()),
        _ => {
            push(ctx, at.clone(), format!("tier {tier:?}: service_resources needs {k:?}, a quantity such as \"250m\""));
            None
        }
    };
    let r = ComputeResources {
        requests_cpu: get("requests_cpu")?,
        requests_memory: get("requests_memory")?,
        limits_cpu: get("limits_cpu")?,
        limits_memory: get("limits_memory")?,
    };
    if let Some(k) =
        m.keys().find(|k| !["requests_cpu", "requests_memory", "limits_cpu", "limits_memory"].contains(&k.as_str()))
    {
        push(ctx, at, format!("tier {tier:?}: service_resources has an unknown key {k:?}"));
        return None;
    }
    Some(r)
}

/// A tier's quota object: quantities as strings (integers are accepted and written as text).
fn quota(tier: &str, v: Value, at: Location, ctx: &Ctx) -> Option<BTreeMap<String, String>> {
    let Value::Map(m) = v else {
        push(ctx, at, format!("tier {tier:?}: quota must be an object of resource names to quantities"));
        return None;
    };
    let mut out = BTreeMap::new();
    for (k, v) in m {
        match v {
            Value::String(s) if !s.is_empty() => {
                out.insert(k, s);
            }
            Value::Int(n) if n >= 0 => {
                out.insert(k, n.to_string());
            }
            _ => push(ctx, at.clone(), format!("tier {tier:?}: quota {k:?} must be a quantity such as \"4Gi\"")),
        }
    }
    Some(out)
}

/// The value of a service attribute, falling back to `service_defaults`.
struct Defaults<'a> {
    fields: Option<Fields<'a>>,
    values: BTreeMap<&'static str, Option<Value>>,
}

impl Defaults<'_> {
    fn get(&mut self, key: &'static str) -> Option<Value> {
        if let Some(v) = self.values.get(key) {
            return v.clone();
        }
        let v = self.fields.as_mut().and_then(|f| f.value(key)).map(|(v, _)| v);
        self.values.insert(key, v.clone());
        v
    }
}

const DEFAULTABLE: &[&str] = &[
    "replicas",
    "image",
    "requests_cpu",
    "requests_memory",
    "limits_cpu",
    "limits_memory",
    "health_path",
    "helm_chart",
    "chart_version",
    "port",
    "internet_egress",
];

/// The `service_defaults` block, every defaultable key read (and the block checked) up front.
fn service_defaults<'a>(blocks: &Blocks<'a>) -> Defaults<'a> {
    let mut defaults = Defaults { fields: None, values: BTreeMap::new() };
    if let Some((ctx, b)) = single(blocks, "service_defaults") {
        let f = Fields::of_block(ctx, b);
        defaults.fields = Some(f);
        for key in DEFAULTABLE {
            defaults.get(key);
        }
    }
    if let Some(f) = defaults.fields.take() {
        f.finish();
    }
    defaults
}

fn load_services(c: &mut Catalog, blocks: &Blocks<'_>) {
    let mut defaults = service_defaults(blocks);

    let mut seen = BTreeSet::new();
    for &(ctx, b) in blocks.by_type.get("service").into_iter().flatten() {
        let Some(name) = label(ctx, b, false) else { continue };
        if !unique(&mut seen, ctx, b, &name) {
            continue;
        }
        let mut f = Fields::of_block(ctx, b);
        let location = f.location();
        let mut text = |f: &mut Fields<'_>, key: &'static str| -> String {
            match f.value(key).or_else(|| defaults.get(key).map(|v| (v, location.clone()))) {
                Some((Value::String(s), _)) => s,
                Some((_, at)) => {
                    push(ctx, at, format!("service {name:?}: `{key}` must be a string"));
                    String::new()
                }
                None => {
                    push(
                        ctx,
                        location.clone(),
                        format!("service {name:?} has no attribute `{key}` (nor does service_defaults)"),
                    );
                    String::new()
                }
            }
        };
        let image = text(&mut f, "image");
        let resources = ComputeResources {
            requests_cpu: text(&mut f, "requests_cpu"),
            requests_memory: text(&mut f, "requests_memory"),
            limits_cpu: text(&mut f, "limits_cpu"),
            limits_memory: text(&mut f, "limits_memory"),
        };
        let health_path = text(&mut f, "health_path");
        let helm_chart = text(&mut f, "helm_chart");
        let chart_version = text(&mut f, "chart_version");
        let mut int = |f: &mut Fields<'_>, key: &'static str| -> i64 {
            match f.value(key).or_else(|| defaults.get(key).map(|v| (v, location.clone()))) {
                Some((Value::Int(n), _)) => n,
                Some((_, at)) => {
                    push(ctx, at, format!("service {name:?}: `{key}` must be an integer"));
                    0
                }
                None => {
                    push(
                        ctx,
                        location.clone(),
                        format!("service {name:?} has no attribute `{key}` (nor does service_defaults)"),
                    );
                    0
                }
            }
        };
        let replicas = int(&mut f, "replicas");
        let port = int(&mut f, "port");
        let phase_number = f.int("phase");
        let internet_egress =
            match f.value("internet_egress").or_else(|| defaults.get("internet_egress").map(|v| (v, location.clone())))
            {
                Some((Value::Bool(b), _)) => b,
                Some((_, at)) => {
                    push(ctx, at, format!("service {name:?}: `internet_egress` must be true or false"));
                    false
                }
                None => false,
            };
        let phase = match u8::try_from(phase_number).ok().and_then(Phase::from_number) {
            Some(p @ (Phase::DeployCoreServices | Phase::DeployDataServices)) => p,
            _ => {
                push(ctx, location.clone(), format!("service {name:?}: phase {phase_number} must be 3 (DEPLOY_CORE_SERVICES) or 5 (DEPLOY_DATA_SERVICES)"));
                Phase::DeployCoreServices
            }
        };
        if !(1..=65535).contains(&port) {
            push(ctx, location.clone(), format!("service {name:?}: port {port} is not a TCP port"));
        }
        if replicas < 0 {
            push(ctx, location.clone(), format!("service {name:?}: replicas must not be negative"));
        }
        for p in template::unknown_placeholders(&image, IMAGE_VARS) {
            push(ctx, location.clone(), format!("service {name:?}: unknown placeholder {{{p}}} in image"));
        }
        let depends_on = f
            .string_list("depends_on")
            .into_iter()
            .map(|(service, at)| Dependency { service, location: Some(at) })
            .collect();
        let def = ServiceDef {
            name,
            phase,
            chart: f.string("chart"),
            helm_chart,
            chart_version,
            description: f.string("description"),
            image,
            port,
            replicas,
            resources,
            health_path,
            depends_on,
            internet_egress,
            location: Some(location),
        };
        f.finish();
        c.services.push(def);
    }
    load_frontends(c, blocks);
}

/// The `frontend` blocks: Ingress backends that no phase deploys.
fn load_frontends(c: &mut Catalog, blocks: &Blocks<'_>) {
    let mut seen = BTreeSet::new();
    for &(ctx, b) in blocks.by_type.get("frontend").into_iter().flatten() {
        let Some(name) = label(ctx, b, false) else { continue };
        if !unique(&mut seen, ctx, b, &name) {
            continue;
        }
        let mut f = Fields::of_block(ctx, b);
        let location = f.location();
        let phase_number = f.int("phase");
        let phase = u8::try_from(phase_number).ok().and_then(Phase::from_number).unwrap_or_else(|| {
            push(ctx, location.clone(), format!("frontend {name:?}: phase {phase_number} is not a phase (1 to 10)"));
            Phase::DeployDataServices
        });
        let target_at = f.value("target").map(|(_, at)| at);
        let target = Dependency { service: f.string("target"), location: target_at.or(Some(location.clone())) };
        let def = FrontendDef {
            name,
            phase,
            port: f.int("port"),
            target,
            description: f.string("description"),
            location: Some(location),
        };
        f.finish();
        c.frontends.push(def);
    }
}

fn load_seed(f: &CatalogFile, name: &str, diags: &mut Vec<Diagnostic>) -> Option<SeedFile> {
    let src = SourceFile::new(&f.path, "");
    let json: serde_json::Value = match serde_json::from_str(&f.text) {
        Ok(j) => j,
        Err(e) => {
            diags.push(Diagnostic::error(format!("invalid JSON: {e}")).at(src.line_col(e.line(), e.column())));
            return None;
        }
    };
    let at = src.line_col(1, 1);
    let table = json.get("table").and_then(|t| t.as_str()).map(str::to_string);
    let key: Option<Vec<String>> = json
        .get("key")
        .and_then(|k| k.as_array())
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect());
    let rows = json.get("rows").cloned().map(Value::try_from);
    match (table, key, rows) {
        (Some(table), Some(key), Some(Ok(rows @ Value::List(_)))) => {
            let all_objects = matches!(&rows, Value::List(items) if items.iter().all(|r| {
                r.as_map().is_some_and(|m| key.iter().all(|k| m.contains_key(k)))
            }));
            if !all_objects || key.is_empty() {
                diags.push(
                    Diagnostic::error(format!(
                        "seed file {name}: every row must be an object with the key columns {key:?}"
                    ))
                    .at(at),
                );
                return None;
            }
            let sha256 = crate::value::fingerprint(&f.text);
            Some(SeedFile { name: name.to_string(), table, key, rows, sha256 })
        }
        (_, _, Some(Err(e))) => {
            diags.push(Diagnostic::error(format!("seed file {name}: {e}")).at(at));
            None
        }
        _ => {
            diags.push(
                Diagnostic::error(format!(
                    "seed file {name} must be {{\"table\": …, \"key\": [columns], \"rows\": [objects]}}"
                ))
                .at(at),
            );
            None
        }
    }
}

fn load_dashboard(f: &CatalogFile, name: &str, diags: &mut Vec<Diagnostic>) -> Option<DashboardDef> {
    let src = SourceFile::new(&f.path, "");
    if let Err(e) = serde_json::from_str::<serde_json::Value>(&f.text) {
        diags.push(Diagnostic::error(format!("invalid JSON: {e}")).at(src.line_col(e.line(), e.column())));
        return None;
    }
    for p in template::unknown_placeholders(&f.text, DASHBOARD_VARS) {
        diags.push(Diagnostic::error(format!("dashboard {name}: unknown placeholder {{{p}}}")).at(src.line_col(1, 1)));
    }
    Some(DashboardDef { name: name.to_string(), json: f.text.clone() })
}

/// Cross-checks of the loaded catalog: required sections, service dependencies (unknown, later
/// phase, cycles), frontend targets, migration versions.
fn validate(c: &Catalog, parsed_all: bool, diags: &mut Vec<Diagnostic>) {
    if parsed_all {
        required_sections(c, diags);
    }

    let mut versions = BTreeMap::new();
    for m in c.migrations.iter().filter(|m| m.kind == MigrationKind::Versioned) {
        if let Some(other) = versions.insert(m.version_key(), &m.script) {
            diags.push(Diagnostic::error(format!("migrations {other} and {} have the same version", m.script)));
        }
    }

    let index: BTreeMap<&str, usize> = c.services.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
    let mut graph = DiGraph::<usize, ()>::new();
    let nodes: Vec<_> = (0..c.services.len()).map(|i| graph.add_node(i)).collect();
    for (i, s) in c.services.iter().enumerate() {
        for dep in &s.depends_on {
            let at = |d: Diagnostic| match &dep.location {
                Some(l) => d.at(l.clone()),
                None => d,
            };
            match index.get(dep.service.as_str()) {
                None => diags.push(at(Diagnostic::error(format!(
                    "service {:?} depends on unknown service {:?}",
                    s.name, dep.service
                )))),
                Some(&j) => {
                    let other = &c.services[j];
                    if other.phase > s.phase {
                        diags.push(at(Diagnostic::error(format!(
                            "service {:?} (phase {} {}) depends on {:?} of a later phase ({} {})",
                            s.name,
                            s.phase.number(),
                            s.phase,
                            other.name,
                            other.phase.number(),
                            other.phase
                        ))));
                    }
                    graph.add_edge(nodes[j], nodes[i], ());
                }
            }
        }
    }
    for scc in tarjan_scc(&graph) {
        let looped = scc.len() > 1 || graph.contains_edge(scc[0], scc[0]);
        if !looped {
            continue;
        }
        let mut names: Vec<&str> = scc.iter().map(|&n| c.services[graph[n]].name.as_str()).collect();
        names.sort_unstable();
        let cycle = service_cycle(c, &names);
        let first = c.service(names[0]);
        let mut d = Diagnostic::error(format!("dependency cycle among catalog services: {}", cycle.join(" -> ")))
            .with_note("each service depends on the next one");
        if let Some(loc) = first.and_then(|s| s.location.clone()) {
            d = d.at(loc);
        }
        diags.push(d);
    }

    for f in &c.frontends {
        let at = |d: Diagnostic| match &f.target.location {
            Some(l) => d.at(l.clone()),
            None => d,
        };
        match c.service(&f.target.service) {
            None => diags.push(at(Diagnostic::error(format!(
                "frontend {:?} targets unknown service {:?}",
                f.name, f.target.service
            )))),
            Some(t) if t.phase > f.phase => diags.push(at(Diagnostic::error(format!(
                "frontend {:?} (phase {}) targets {:?} of a later phase ({})",
                f.name,
                f.phase.number(),
                t.name,
                t.phase.number()
            )))),
            Some(_) => {}
        }
        if c.service(&f.name).is_some() {
            diags.push(at(Diagnostic::error(format!("frontend {:?} has the name of a service", f.name))));
        }
    }
}

/// One cycle through the given (strongly connected) services, in dependency order, starting and
/// ending at the first name: `a -> b -> a`.
fn service_cycle(c: &Catalog, members: &[&str]) -> Vec<String> {
    // Edges run from a service to what it depends on; walk them inside the component.
    let next = |name: &str| -> Vec<String> {
        let mut deps: Vec<String> = c
            .service(name)
            .map(|s| s.depends_on.iter().map(|d| d.service.clone()).filter(|d| members.contains(&d.as_str())).collect())
            .unwrap_or_default();
        deps.sort();
        deps
    };
    shortest_cycle(members[0], next)
}

/// The shortest cycle from `start` back to itself following `next` (breadth first, neighbours in
/// the order `next` gives them, so the answer is deterministic), as names with `start` at both
/// ends; just `[start, start]` when `start` is on no cycle.
pub(crate) fn shortest_cycle(start: &str, next: impl Fn(&str) -> Vec<String>) -> Vec<String> {
    let mut parent: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.to_string()]);
    while let Some(n) = queue.pop_front() {
        for m in next(&n) {
            if m == start {
                let mut back = Vec::new();
                let mut cur = n.clone();
                while cur != start {
                    back.push(cur.clone());
                    cur = parent[&cur].clone();
                }
                back.reverse();
                let mut path = vec![start.to_string()];
                path.extend(back);
                path.push(start.to_string());
                return path;
            }
            if !parent.contains_key(&m) {
                parent.insert(m.clone(), n.clone());
                queue.push_back(m);
            }
        }
    }
    vec![start.to_string(), start.to_string()]
}

/// Sections every catalog must have.
fn required_sections(c: &Catalog, diags: &mut Vec<Diagnostic>) {
    if c.tiers.is_empty() {
        diags.push(Diagnostic::error("the catalog defines no tier (expected `tier \"free\" { … }` blocks)"));
    }
    if c.regions.is_empty() {
        diags.push(Diagnostic::error("the catalog defines no region (expected `regions = [ … ]`)"));
    }
    if c.services.is_empty() {
        diags.push(Diagnostic::error("the catalog defines no service"));
    }
    for (what, missing) in [
        ("dns", c.dns.records.is_empty()),
        ("database", c.database.shared_database.is_empty()),
        ("ingress_controller", c.ingress_controller.image.is_empty()),
        ("monitoring", c.monitoring.prometheus_version.is_empty()),
        ("observability", c.observability.namespace.is_empty()),
    ] {
        if missing {
            diags.push(Diagnostic::error(format!("the catalog has no `{what}` block (or it is empty)")));
        }
    }
    if c.migrations.is_empty() {
        diags.push(Diagnostic::error("the catalog has no migrations (expected migrations/V1__….sql)"));
    }
}
