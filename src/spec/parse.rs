//! Tenant files: HCL → [`TenantSpec`], every problem reported at its position.
//!
//! # The tenant spec language
//!
//! One file per tenant in `tenants/` (a file may hold several `tenant` blocks). Only literal values
//! are allowed: no variables, function calls, interpolation or operators, so a file means exactly
//! what it says and a reviewer needs nothing else to read it.
//!
//! ```hcl
//! tenant "acme" {                          # the slug: a DNS-1123 label, at most 52 characters
//!   id           = "550e8400-e29b-41d4-a716-446655440000"   # required, a UUID (8-4-4-4-12)
//!   tier         = "professional"          # required, a catalog tier (free, professional, enterprise)
//!   region       = "eastus"                # required, a catalog region
//!   admin_email  = "admin@acme.example"    # required
//!   display_name = "Acme Corporation"      # optional
//!   protect_database = true                # optional: destroy (and any apply that deletes or
//!                                          # replaces the database/schema) needs --allow-data-loss
//!
//!   services {                             # optional: at most one block per catalog service
//!     ai_service {
//!       replicas   = 2                     # 0..=50
//!       enabled    = true                  # false leaves an optional service out
//!       image_tag  = "1.4.2"               # overrides the platform's default tag
//!       depends_on = ["catalog_service"]   # extra dependencies, by catalog service name
//!     }
//!   }
//!
//!   monitoring {                           # optional
//!     notify_email             = ["ops@acme.example"]
//!     notify_slack_webhook_env = "ACME_SLACK_WEBHOOK"   # the NAME of an environment variable
//!   }
//!
//!   lifecycle {                            # optional: differences plan and drift leave alone
//!     ignore_changes = ["kubernetes_deployment.query_engine:spec.replicas"]   # KIND.NAME:PATH
//!   }
//! }
//! ```
//!
//! Secrets never appear in a spec file: the Slack webhook URL is read at plan time from the
//! environment variable named by `notify_slack_webhook_env`, and writing `notify_slack_webhook`
//! is an error whose message never repeats the value.
//!
//! Validation reports, each at the offending key, value, label or block: syntax errors; unknown
//! blocks and attributes (with a suggestion for near misses); wrong types; missing required
//! attributes; duplicates; non-literal expressions; a slug that is not a DNS-1123 label or makes
//! `matih-{slug}` longer than 63 characters; a tier, region or service the catalog lacks; an id
//! that is not a UUID; malformed e-mail addresses and environment-variable names; replicas out of
//! range; and, across all files read together, two tenants with the same slug or id. Dependency
//! cycles and dependencies on later phases are the graph's to check; every `depends_on` element
//! keeps its location for that.
//!
//! **Invariant:** this module reads files and the catalog's names; it knows nothing of graphs,
//! plans, state or providers, and a [`TenantSpec`] is returned only for a block without errors.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use hcl_edit::structure::Block;
use hcl_edit::Span;

use super::schema::{self, AttrDef, BlockDef, Ctx, Forbidden, Kind, Schema};
use super::validate;
use super::{IgnoreEntry, MonitoringSpec, ServiceOverride, Spanned, TenantSpec};
use crate::addr;
use crate::catalog::Catalog;
use crate::diag::{self, Diagnostic, Location, SourceFile};

/// The name of the platform file, skipped when tenant files are collected.
pub const PLATFORM_FILE: &str = "matih.hcl";

/// The largest replica count a service override may ask for.
pub const MAX_REPLICAS: i64 = 50;

/// Parses and validates every `tenant` block of one file.
pub fn parse_tenants(src: &SourceFile, catalog: &Catalog) -> (Vec<TenantSpec>, Vec<Diagnostic>) {
    let (candidates, mut diags) = read_file(src, catalog);
    let specs = Admission::default().admit(FileTenants(candidates), &mut diags);
    diag::sort(&mut diags);
    (specs, diags)
}

/// Expands directories to the `*.hcl` files directly inside them (sorted by name; a file named `matih.hcl`
/// is skipped — that is the platform file), reads each, parses, and adds the cross-file checks
/// (two tenants with the same slug or the same id, pointing at the second with a note naming the first).
/// Unreadable paths / no .hcl in a directory are diagnostics too. Diagnostics sorted (diag::sort).
pub fn load_tenants(paths: &[PathBuf], catalog: &Catalog) -> (Vec<TenantSpec>, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let files = tenant_files(paths, &mut diags);
    let mut admitted = Admission::default();
    let mut specs = Vec::new();
    for file in files {
        let (found, file_diags) = read_tenant_file(&file, catalog);
        diags.extend(file_diags);
        specs.extend(admitted.admit(found, &mut diags));
    }
    diag::sort(&mut diags);
    (specs, diags)
}

/// The tenants of one file as read, before the checks across files ([`Admission`]): what
/// [`load_tenants`] does file by file, for a reader that streams a fleet (many files read at
/// once, then admitted in file order). Diagnostics are not sorted.
pub struct FileTenants(Vec<Candidate>);

impl FileTenants {
    /// The valid specs of the file, in order, before the checks across files.
    pub fn specs(&self) -> impl Iterator<Item = &TenantSpec> {
        self.0.iter().filter_map(|c| c.spec.as_ref())
    }
}

/// Reads and parses one tenant file (see [`load_tenants`]).
pub fn read_tenant_file(file: &Path, catalog: &Catalog) -> (FileTenants, Vec<Diagnostic>) {
    match fs::read_to_string(file) {
        Ok(text) => {
            let src = SourceFile::new(file, text);
            let (found, diags) = read_file(&src, catalog);
            (FileTenants(found), diags)
        }
        Err(e) => (FileTenants(Vec::new()), vec![Diagnostic::error(format!("cannot read {}: {e}", file.display()))]),
    }
}

/// The checks across files, fed one file at a time in the order of [`tenant_files`]: a tenant
/// with the slug or id of an earlier one is reported and dropped. Holds one slug and one id per
/// tenant seen, nothing else.
#[derive(Default)]
pub struct Admission {
    slugs: BTreeMap<String, Location>,
    ids: BTreeMap<String, (Option<String>, Location)>,
}

impl Admission {
    /// The specs of `file` that are valid and not duplicates of earlier ones.
    pub fn admit(&mut self, file: FileTenants, diags: &mut Vec<Diagnostic>) -> Vec<TenantSpec> {
        let mut candidates = file.0;
        self.check(&mut candidates, diags);
        candidates.into_iter().filter_map(|c| c.spec).collect()
    }

    /// [`admit`](Self::admit) for a reader that worked on the specs of `file` ahead
    /// ([`FileTenants::specs`]): whether each of them, in that order, is admitted.
    pub fn admit_each(&mut self, file: FileTenants, diags: &mut Vec<Diagnostic>) -> Vec<bool> {
        let mut candidates = file.0;
        let valid: Vec<bool> = candidates.iter().map(|c| c.spec.is_some()).collect();
        self.check(&mut candidates, diags);
        candidates.iter().zip(valid).filter(|(_, valid)| *valid).map(|(c, _)| c.spec.is_some()).collect()
    }

    /// Reports a second tenant with the slug or id of an earlier one, and drops its spec.
    fn check(&mut self, candidates: &mut [Candidate], diags: &mut Vec<Diagnostic>) {
        for c in candidates.iter_mut() {
            if let Some(slug) = &c.slug {
                if let Some(first) = self.slugs.get(&slug.value) {
                    diags.push(
                        Diagnostic::error(format!("duplicate tenant slug {:?}", slug.value))
                            .at(slug.location.clone())
                            .with_note(format!("tenant {:?} is first defined at {first}", slug.value)),
                    );
                    c.spec = None;
                } else {
                    self.slugs.insert(slug.value.clone(), slug.location.clone());
                }
            }
            if let Some(id) = &c.id {
                if let Some((first_slug, first)) = self.ids.get(&id.value) {
                    let owner =
                        first_slug.as_deref().map_or_else(|| "another tenant".to_string(), |s| format!("tenant {s:?}"));
                    diags.push(
                        Diagnostic::error(format!("duplicate tenant id {:?}", id.value))
                            .at(id.location.clone())
                            .with_note(format!("{owner} already has this id, at {first}")),
                    );
                    c.spec = None;
                } else {
                    self.ids.insert(id.value.clone(), (c.slug.as_ref().map(|s| s.value.clone()), id.location.clone()));
                }
            }
        }
    }
}

/// The tenant files named by `paths`: files as given, directories expanded to the `*.hcl` files
/// directly inside them in name order, the platform file left out, each file once.
pub fn tenant_files(paths: &[PathBuf], diags: &mut Vec<Diagnostic>) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut push = |files: &mut Vec<PathBuf>, file: PathBuf| push(files, &mut seen, file);
    for path in paths {
        match fs::metadata(path) {
            Ok(meta) if meta.is_dir() => match hcl_files_in(path) {
                Ok(found) if found.is_empty() => diags.push(Diagnostic::error(format!(
                    "no tenant files (*.hcl, other than {PLATFORM_FILE}) in directory {}",
                    path.display()
                ))),
                Ok(found) => found.into_iter().for_each(|f| push(&mut files, f)),
                Err(e) => diags.push(Diagnostic::error(format!("cannot read directory {}: {e}", path.display()))),
            },
            Ok(_) if is_platform_file(path) => diags.push(Diagnostic::warning(format!(
                "skipping {}: {PLATFORM_FILE} is the platform file, not a tenant file",
                path.display()
            ))),
            Ok(_) => push(&mut files, path.clone()),
            Err(e) => diags.push(Diagnostic::error(format!("cannot read {}: {e}", path.display()))),
        }
    }
    files
}

/// Adds `file` unless it is already there: the same file named twice (`tenants/ tenants/acme.hcl`)
/// is read once, not reported as a duplicate tenant. `seen` holds the canonical paths added so far.
fn push(files: &mut Vec<PathBuf>, seen: &mut std::collections::HashSet<PathBuf>, file: PathBuf) {
    let key = fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
    if seen.insert(key) {
        files.push(file);
    }
}

fn is_platform_file(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == PLATFORM_FILE)
}

fn hcl_files_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() && path.extension().is_some_and(|e| e == "hcl") && !is_platform_file(&path) {
            found.push(path);
        }
    }
    found.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(found)
}

/// One `tenant` block as read: its slug and id when those were valid (for the duplicate checks,
/// which run even when something else in the block is wrong), and the spec when nothing was.
struct Candidate {
    slug: Option<Spanned<String>>,
    id: Option<Spanned<String>>,
    spec: Option<TenantSpec>,
}

/// Parses one file and reads each of its `tenant` blocks; diagnostics are not yet sorted.
fn read_file(src: &SourceFile, catalog: &Catalog) -> (Vec<Candidate>, Vec<Diagnostic>) {
    let body = match hcl_edit::parser::parse_body(&src.text) {
        Ok(body) => body,
        Err(e) => return (Vec::new(), vec![syntax_error(src, &e)]),
    };
    let mut ctx = Ctx::new(src);
    let top = Schema::new(
        Vec::new(),
        vec![BlockDef { name: "tenant".into(), label: Some("the tenant slug"), repeatable: true }],
    );
    let fields = schema::walk(&mut ctx, &body, None, &top);
    let candidates: Vec<Candidate> =
        fields.blocks_named("tenant").map(|block| read_tenant(&mut ctx, block, catalog)).collect();
    if candidates.is_empty() && ctx.error_count() == 0 {
        ctx.push(Diagnostic::warning("no tenant blocks in this file").at(src.location(0)));
    }
    (candidates, ctx.diags)
}

/// `path:line:col: syntax error: …` on one line, at the position the parser stopped. The parser
/// refuses an attribute set twice in one body; that one is reported as what it is,
/// `duplicate attribute "tier"`, at the second key.
pub(crate) fn syntax_error(src: &SourceFile, e: &hcl_edit::parser::Error) -> Diagnostic {
    let location = src.location(e.location().offset());
    if e.message().contains("redefined attribute") {
        let key: String = e
            .line()
            .chars()
            .skip(e.location().column().saturating_sub(1))
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        if !key.is_empty() {
            return Diagnostic::error(format!("duplicate attribute \"{key}\"")).at(location);
        }
    }
    Diagnostic::error(format!("syntax error: {}", e.message())).at(location)
}

fn tenant_schema() -> Schema {
    Schema::new(
        vec![
            AttrDef::required("id", Kind::String),
            AttrDef::required("tier", Kind::String),
            AttrDef::required("region", Kind::String),
            AttrDef::required("admin_email", Kind::String),
            AttrDef::optional("display_name", Kind::String),
            AttrDef::optional("protect_database", Kind::Bool),
        ],
        vec![BlockDef::plain("services"), BlockDef::plain("monitoring"), BlockDef::plain("lifecycle")],
    )
}

fn lifecycle_schema() -> Schema {
    Schema::new(vec![AttrDef::optional("ignore_changes", Kind::StringList)], Vec::new())
}

/// `lifecycle { ignore_changes = ["KIND.NAME:PATH", …] }`: each entry's syntax (whether the
/// resource and the path exist is the graph's to check), none twice.
fn read_lifecycle(ctx: &mut Ctx<'_>, block: &Block, out: &mut Vec<IgnoreEntry>) {
    let f = schema::walk(ctx, &block.body, Some(block), &lifecycle_schema());
    for entry in f.string_list("ignore_changes").unwrap_or_default() {
        let Some((address, path)) = check(ctx, &entry, addr::parse_ignore_entry(&entry.value)) else { continue };
        if out.iter().any(|e| e.address == address && e.path == path) {
            ctx.push(
                Diagnostic::error(format!("{:?} is listed twice in ignore_changes", entry.value)).at(entry.location),
            );
            continue;
        }
        out.push(IgnoreEntry { address, path, location: entry.location });
    }
}

fn services_schema(catalog: &Catalog) -> Schema {
    let blocks = catalog.services.iter().map(|s| BlockDef::plain(s.name.clone())).collect();
    Schema::new(Vec::new(), blocks).block_noun("service")
}

fn service_schema() -> Schema {
    Schema::new(
        vec![
            AttrDef::optional("replicas", Kind::Int { min: 0, max: MAX_REPLICAS }),
            AttrDef::optional("enabled", Kind::Bool),
            AttrDef::optional("image_tag", Kind::String),
            AttrDef::optional("depends_on", Kind::StringList),
        ],
        Vec::new(),
    )
}

fn monitoring_schema() -> Schema {
    Schema::new(
        vec![
            AttrDef::optional("notify_email", Kind::StringList),
            AttrDef::optional("notify_slack_webhook_env", Kind::String),
        ],
        Vec::new(),
    )
    .forbid(vec![Forbidden {
        name: "notify_slack_webhook",
        message: "secrets come from the environment, never from the file: set notify_slack_webhook_env to the \
                  name of an environment variable that holds the webhook URL",
    }])
}

/// Runs a value check, reporting its message at the value; `Some` when the value is good.
fn check<T>(ctx: &mut Ctx<'_>, value: &Spanned<String>, result: Result<T, String>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(message) => {
            ctx.push(Diagnostic::error(message).at(value.location.clone()));
            None
        }
    }
}

fn read_tenant(ctx: &mut Ctx<'_>, block: &Block, catalog: &Catalog) -> Candidate {
    let errors_before = ctx.error_count();
    let location = ctx.loc(schema::block_start(block));

    // The label is checked for count by the walker; its content is the slug.
    let slug = match block.labels.as_slice() {
        [label] => {
            let slug = Spanned::new(label.as_str().to_string(), ctx.loc(label.span()));
            check(ctx, &slug, validate::slug(&slug.value)).map(|()| slug)
        }
        _ => None,
    };

    let fields = schema::walk(ctx, &block.body, Some(block), &tenant_schema());
    let id = fields.string("id").and_then(|raw| {
        let normalized = check(ctx, &raw, validate::uuid(&raw.value))?;
        Some(Spanned::new(normalized, raw.location))
    });
    let tier = fields.string("tier").filter(|t| check(ctx, t, validate::tier(catalog, &t.value)).is_some());
    let region = fields.string("region").filter(|r| check(ctx, r, validate::region(catalog, &r.value)).is_some());
    let admin_email =
        fields.string("admin_email").filter(|e| check(ctx, e, validate::email("admin_email", &e.value)).is_some());
    let display_name =
        fields.string("display_name").filter(|d| check(ctx, d, validate::text("display_name", &d.value)).is_some());

    let mut services = BTreeMap::new();
    for services_block in fields.blocks_named("services") {
        read_services(ctx, services_block, catalog, &mut services);
    }
    let mut monitoring = MonitoringSpec::default();
    for monitoring_block in fields.blocks_named("monitoring") {
        monitoring = read_monitoring(ctx, monitoring_block);
    }

    let protect_database = fields.bool("protect_database");
    let mut ignore_changes = Vec::new();
    for lifecycle_block in fields.blocks_named("lifecycle") {
        read_lifecycle(ctx, lifecycle_block, &mut ignore_changes);
    }

    let clean = ctx.error_count() == errors_before;
    let spec = match (clean, slug.clone(), id.clone(), tier, region, admin_email) {
        (true, Some(slug), Some(id), Some(tier), Some(region), Some(admin_email)) => Some(TenantSpec {
            slug,
            id,
            tier,
            region,
            admin_email,
            display_name,
            services,
            monitoring,
            protect_database,
            ignore_changes,
            location,
        }),
        _ => None,
    };
    Candidate { slug, id, spec }
}

fn read_services(
    ctx: &mut Ctx<'_>,
    block: &Block,
    catalog: &Catalog,
    services: &mut BTreeMap<String, ServiceOverride>,
) {
    let fields = schema::walk(ctx, &block.body, Some(block), &services_schema(catalog));
    for service_block in &fields.blocks {
        let name = service_block.ident.as_str();
        let f = schema::walk(ctx, &service_block.body, Some(service_block), &service_schema());
        let image_tag =
            f.string("image_tag").filter(|t| check(ctx, t, validate::image_tag("image_tag", &t.value)).is_some());
        let mut depends_on: Vec<Spanned<String>> = Vec::new();
        for dep in f.string_list("depends_on").unwrap_or_default() {
            if depends_on.iter().any(|d| d.value == dep.value) {
                ctx.push(Diagnostic::error(format!("{:?} is listed twice in depends_on", dep.value)).at(dep.location));
                continue;
            }
            if check(ctx, &dep, validate::service(catalog, &dep.value)).is_some() {
                depends_on.push(dep);
            }
        }
        let override_ = ServiceOverride {
            replicas: f.int("replicas"),
            enabled: f.bool("enabled"),
            image_tag,
            depends_on,
            location: Some(ctx.loc(schema::block_start(service_block))),
        };
        services.insert(name.to_string(), override_);
    }
}

fn read_monitoring(ctx: &mut Ctx<'_>, block: &Block) -> MonitoringSpec {
    let f = schema::walk(ctx, &block.body, Some(block), &monitoring_schema());
    let notify_email = f
        .string_list("notify_email")
        .unwrap_or_default()
        .into_iter()
        .filter(|e| check(ctx, e, validate::email("notify_email", &e.value)).is_some())
        .collect();
    let notify_slack_webhook_env = f
        .string("notify_slack_webhook_env")
        .filter(|v| check(ctx, v, validate::env_var_name("notify_slack_webhook_env", &v.value)).is_some());
    MonitoringSpec { notify_email, notify_slack_webhook_env }
}
