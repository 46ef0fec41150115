//! The plan as JSON (`matih plan --format json`, `matih show --json`): the machine interface.
//!
//! # Format
//!
//! ```json
//! {
//!   "format_version": "1.2",
//!   "tenants": [
//!     {
//!       "slug": "acme",
//!       "tenant_id": "550e8400-e29b-41d4-a716-446655440000",
//!       "tier": "professional",
//!       "source": "tenants/acme.hcl",
//!       "prior_state": { "lineage": "…", "serial": 12 },
//!       "partial": null,
//!       "summary": { "adopt": 0, "add": 1, "change": 0, "replace": 0, "destroy": 0 },
//!       "resource_changes": [
//!         {
//!           "address": "kubernetes_namespace.tenant",
//!           "type": "kubernetes_namespace",
//!           "name": "tenant",
//!           "phase": "CREATE_NAMESPACE",
//!           "phase_number": 1,
//!           "action": "create",
//!           "before": null,
//!           "after": { "metadata": { "name": "matih-acme" } },
//!           "after_unknown": [],
//!           "sensitive_paths": [],
//!           "changes": [],
//!           "depends_on": [],
//!           "notes": []
//!         }
//!       ]
//!     }
//!   ],
//!   "summary": { "adopt": 0, "add": 1, "change": 0, "replace": 0, "destroy": 0 }
//! }
//! ```
//!
//! - `groups` (only with `--group`; an added key, so `format_version` stays the same): the
//!   tenants with changes grouped by their changes apart from their own names (slug, id and what
//!   is derived from them), in the order the text and Markdown plans show them (most serious risk
//!   first, then the largest group, then the first seen). Each group: `{ "digest": "sha256:…" (of
//!   the canonical changes), "size": N, "members": ["slug", …] (every member, in plan order),
//!   "summary": { … } (each member's counts), "risks": [{ "category", "address", "action", "why" }],
//!   "resource_changes": [ … ] }`, the changes (no-ops left out) shaped as in `tenants`. In a group
//!   of several, names in `resource_changes` and `why` are `${slug}` and `${tenant_id}`, and a
//!   base64 value holding a name is `base64(…)` of its text; a group of one shows its tenant's own.
//!   Every tenant is still listed whole in `tenants`; `groups` only indexes them.
//! - `digest` (`"sha256:…"`, only for a plan saved with `-out FILE` or read by `matih show FILE`):
//!   the SHA-256 of the plan file's bytes, what `sha256sum FILE` prints; `matih apply FILE
//!   --expect-digest sha256:…` applies that file and no other.
//! - `moved` (a tenant's, only when it has any; an added key): the records the catalog's `moved`
//!   blocks give a new address, `{ "from", "to", "declared_at" }`; applying the plan moves them
//!   (never a destroy and a create), and their changes, if any, are listed under `to`, whose change
//!   has the note `moved from …`. The summaries count them as `moved`.
//! - `ignored` (a tenant's, only when it has any; an added key, so `format_version` stays the same):
//!   the differences left alone because an `ignore_changes` path of the catalog or the tenant's
//!   spec covers them, `{ "address", "path", "before" (recorded, or live after a refresh), "after"
//!   (what the spec says), "declared_at": "file:line:col" }`; the plan keeps `before` there.
//! - `refresh_only` (`true`, only for `matih plan --refresh-only`): every update is an object changed
//!   outside matih (`before` recorded, `after` live) and every delete one deleted outside matih;
//!   applying the plan records them in the state and changes nothing in the real world.
//! - `partial` (only for a plan made with `--target`/`--exclude`): `{ "target": [...], "exclude":
//!   [...], "left_out": N }`, the addresses as given and the changes of the full plan left out;
//!   each tenant has its own `partial` (`null` in a whole plan), and such a plan lists only the
//!   selected resources (what a target depends on included). Tenants with nothing selected are
//!   not listed.
//! - `source` is `null` when the tenant's spec file is unknown; `prior_state` is `null` for a
//!   tenant with no recorded state (everything is created).
//! - `action` is one of `no-op`, `create`, `adopt`, `update`, `replace`, `delete`. `adopt` (since
//!   1.2): the object exists although matih has no record of it; it is taken over, not created:
//!   `before` is what was read, `changes` what adopting it changes, a note says so. Every desired resource
//!   is listed, no-ops included; resources are in apply order (phase, then dependencies), with the
//!   deletes of a phase after its other changes.
//! - `summary` counts each action once: `adopt` counts adoptions, `add` creates, `replace` replaces,
//!   `destroy` deletes. Terraform's line `N to add, M to change, K to destroy` is
//!   `add + replace`, `change`, `destroy + replace`.
//! - `before` is `null` for a create, `after` is `null` for a delete. Both are the full attribute
//!   objects (plain JSON), except for two markers that stand in for values:
//!   - `"(known after apply)"`: a value known only after apply (an output of a resource not yet
//!     created, a computed value). Every such path of `after` is in `after_unknown`.
//!   - `"(sensitive value)"`: a secret. Neither its clear text nor its fingerprint is ever
//!     written here. Every path holding a secret in `before` or `after` is in `sensitive_paths`.
//!     A secret generated at apply is both sensitive and in `after_unknown`.
//!
//!   A real string equal to a marker is told apart by those lists.
//! - Paths are written `metadata.labels["matih.ai/tier"]`, `spec.containers[0].image`: keys that
//!   are identifiers after a `.`, other keys as `["…"]` with JSON escaping, list indexes `[n]`.
//! - `changes` lists the attribute changes of adoptions, updates and replaces (empty otherwise):
//!   `{ "path", "before", "after", "forces_replacement" }`, where a missing side (an attribute
//!   added or removed) is `null`, with the same markers as above.
//! - `depends_on` lists the addresses the resource waits for, sorted.
//! - `notes` says, one line each, why a change happens or what it will do when the attribute diff
//!   alone does not (`password rotated: kubernetes_secret.database_credentials is missing`,
//!   `pending migrations: V3__orders.sql`).
//! - `manifest_changes` (Helm releases, when planned with the cluster at hand; absent when empty):
//!   the objects of the rendered chart against the release's live manifest, as helm-diff shows
//!   them: `{ "object": "Deployment ai-service", "change": "added" | "removed" | "changed",
//!   "diff": "@@ … (unified diff, live to desired; changed only)" }`. Secret values are
//!   `(sensitive value)`.
//!
//! The output is pretty-printed, ends with a newline and is the same bytes for the same plan.
//!
//! **Invariant:** a view of the plan for machines; it adds nothing a plan does not hold, and
//! removes only secrets.

use std::cell::Cell;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{json, Map, Value as J};

use super::group::Groups;
use super::stream::{Fleet, Spill};
use super::writer::room_for;
use super::{Prepared, Preparer, SENSITIVE, UNKNOWN};
use crate::plan::{Action, Plan, ResourceChange, Summary, TenantPlan};
use crate::value::Value;

/// Renders the plan as the documented JSON, pretty-printed with a trailing newline.
pub fn render_json(plan: &Plan) -> String {
    render_json_saved(plan, None)
}

/// [`render_json`] of a plan saved to (or read from) a plan file whose SHA-256 digest is
/// `digest` (`sha256:…`): the document has a `"digest"` member after `format_version`.
pub fn render_json_saved(plan: &Plan, digest: Option<&str>) -> String {
    render_json_with(plan, digest, false)
}

/// [`render_json_saved`], with the `groups` section when `group`.
pub fn render_json_with(plan: &Plan, digest: Option<&str>, group: bool) -> String {
    let mut r = JsonStream::new(digest.map(str::to_string), Spill::memory());
    r.format_version.clone_from(&plan.format_version);
    if group {
        r = r.grouped(Spill::memory());
    }
    r.fleet.refresh_only = plan.refresh_only;
    for t in &plan.tenants {
        r.push(t).expect("writing to memory cannot fail");
    }
    let mut out = Vec::new();
    r.finish(&mut out).expect("writing to memory cannot fail");
    String::from_utf8(out).expect("the renderer writes UTF-8")
}

/// The JSON document of a plan of `t` alone (`refresh_only` as the plan's), as [`render_json`]
/// writes it, as a tree: a policy's `input`.
pub fn json_document(t: &TenantPlan, refresh_only: bool) -> J {
    let mut doc = Map::new();
    doc.insert("format_version".into(), json!(crate::plan::FORMAT_VERSION));
    if refresh_only {
        doc.insert("refresh_only".into(), json!(true));
    }
    if let Some(p) = &t.partial {
        doc.insert("partial".into(), json!({ "target": p.target, "exclude": p.exclude, "left_out": p.left_out }));
    }
    doc.insert("tenants".into(), json!([tenant(t)]));
    doc.insert("summary".into(), summary(&t.summary()));
    J::Object(doc)
}

/// [`render_json_saved`] one tenant at a time (see [`super::TextStream`]): each tenant is
/// serialized as it comes, indented as it will stand in the `tenants` array, and set aside.
pub struct JsonStream {
    format_version: String,
    digest: Option<String>,
    fleet: Fleet,
    spill: Spill,
    groups: Option<Groups>,
}

impl JsonStream {
    pub fn new(digest: Option<String>, spill: Spill) -> JsonStream {
        JsonStream {
            format_version: crate::plan::FORMAT_VERSION.to_string(),
            digest,
            fleet: Fleet::default(),
            spill,
            groups: None,
        }
    }

    /// Adds the `groups` section, the groups' changes waiting in `spill` until the end.
    pub fn grouped(mut self, spill: Spill) -> JsonStream {
        self.groups = Some(Groups::new(spill));
        self
    }

    /// How this stream renders a tenant ahead of [`JsonStream::push_prepared`].
    pub fn preparer(&self) -> Preparer {
        Preparer::Json { grouped: self.groups.is_some() }
    }

    pub fn push(&mut self, t: &TenantPlan) -> std::io::Result<()> {
        let prepared = self.preparer().prepare(t);
        self.push_prepared(t, prepared)
    }

    /// Takes the next tenant of the plan, rendered ahead by [`JsonStream::preparer`].
    pub fn push_prepared(&mut self, t: &TenantPlan, prepared: Prepared) -> std::io::Result<()> {
        let first = self.fleet.tenants == 0;
        self.fleet.push(t);
        if let (Some(groups), Some(keyed)) = (&mut self.groups, prepared.keyed) {
            // Canonical as grouping compared it: compact JSON whose names are placeholders.
            groups.push(t, keyed, &mut |shown, canon| {
                canon.map_or_else(|| shown.json.clone(), |c| c.apply(&shown.json))
            })?;
        }
        self.spill.write(if first { "\n    " } else { ",\n    " })?;
        self.spill.write(&prepared.section.unwrap_or_else(|| element(t)))
    }

    pub fn finish(self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        let mut doc = Map::new();
        doc.insert("format_version".into(), json!(self.format_version));
        if let Some(d) = &self.digest {
            doc.insert("digest".into(), json!(d));
        }
        if self.fleet.refresh_only {
            doc.insert("refresh_only".into(), json!(true));
        }
        if let Some((p, left_out)) = self.fleet.partial() {
            doc.insert("partial".into(), json!({ "target": p.target, "exclude": p.exclude, "left_out": left_out }));
        }
        doc.insert("tenants".into(), J::Array(Vec::new()));
        doc.insert("summary".into(), summary(&self.fleet.summary));
        if self.groups.is_some() {
            doc.insert("groups".into(), J::Array(Vec::new()));
        }
        let skeleton = serde_json::to_string_pretty(&J::Object(doc)).expect("a JSON tree always serializes");
        // The only raw newline followed by this key at this depth: strings escape theirs.
        let key = "\n  \"tenants\": []";
        let at = skeleton.find(key).expect("the skeleton has a tenants member");
        let (head, tail) = skeleton.split_at(at + key.len() - 1);
        out.write_all(head.as_bytes())?;
        let any = self.fleet.tenants > 0;
        self.spill.copy_to(out)?;
        if any {
            out.write_all(b"\n  ")?;
        }
        match self.groups {
            Some(groups) => {
                let key = "\n  \"groups\": []";
                let at = tail.find(key).expect("the skeleton has a groups member");
                let (middle, tail) = tail.split_at(at + key.len() - 1);
                out.write_all(middle.as_bytes())?;
                write_groups(out, groups)?;
                out.write_all(tail.as_bytes())?;
            }
            None => out.write_all(tail.as_bytes())?,
        }
        out.write_all(b"\n")
    }
}

/// The elements of `groups`, one group in memory at a time, as the pretty printer would write
/// them in the whole document.
fn write_groups(out: &mut dyn std::io::Write, groups: Groups) -> std::io::Result<()> {
    let (list, mut rendered) = groups.finish()?;
    for (i, g) in list.iter().enumerate() {
        let several = g.members.len() > 1;
        let changes: J = serde_json::from_str(&rendered.get(g)?)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let doc = json!({
            "digest": g.digest_hex(),
            "size": g.members.len(),
            "members": g.members,
            "summary": summary(&g.summary),
            "risks": g.risks.iter().map(|r| json!({
                "category": r.risk.title(),
                "address": r.address,
                "action": r.action,
                "why": r.why(several),
            })).collect::<Vec<_>>(),
            "resource_changes": changes,
        });
        let pretty = serde_json::to_string_pretty(&doc).expect("a JSON tree always serializes");
        out.write_all(if i == 0 { b"\n    " } else { b",\n    " })?;
        out.write_all(pretty.replace('\n', "\n    ").as_bytes())?;
    }
    if !list.is_empty() {
        out.write_all(b"\n  ")?;
    }
    Ok(())
}

fn summary(s: &Summary) -> J {
    let mut doc =
        json!({ "adopt": s.adopt, "add": s.add, "change": s.change, "replace": s.replace, "destroy": s.destroy });
    if s.moved > 0 {
        doc["moved"] = json!(s.moved);
    }
    doc
}

fn tenant(t: &TenantPlan) -> J {
    serde_json::to_value(Tenant(t)).expect("a plan always serializes")
}

/// A tenant as an element of the `tenants` array at depth 2, as the pretty printer writes it in
/// the whole document: every line four spaces in (strings hold no raw newline).
pub(super) fn element(t: &TenantPlan) -> String {
    let mut out = Indented(Vec::with_capacity(room_for(ELEMENT_LEN.get())));
    serde_json::to_writer_pretty(&mut out, &Tenant(t)).expect("a plan always serializes");
    ELEMENT_LEN.set(out.0.len());
    String::from_utf8(out.0).expect("serde_json writes UTF-8")
}

/// A tenant's changes (no-ops left out) as `resource_changes` lists them, compact: what grouping
/// compares and what a group's `resource_changes` shows.
pub(super) fn changes_compact(t: &TenantPlan) -> String {
    let shown: Vec<Change<'_>> = t.resource_changes.iter().filter(|c| c.action != Action::NoOp).map(Change).collect();
    let mut out = Vec::with_capacity(room_for(COMPACT_LEN.get()));
    serde_json::to_writer(&mut out, &shown).expect("a plan always serializes");
    COMPACT_LEN.set(out.len());
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

thread_local! {
    /// The lengths of the last [`element`] and [`changes_compact`] this thread made (see [`room_for`]).
    static ELEMENT_LEN: Cell<usize> = const { Cell::new(0) };
    static COMPACT_LEN: Cell<usize> = const { Cell::new(0) };
}

/// Writes what it is given with four spaces after every newline: a pretty-printed document one
/// level deeper, as it stands in `tenants` (JSON strings escape their newlines, so each raw one is
/// the pretty printer's).
struct Indented(Vec<u8>);

impl std::io::Write for Indented {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            self.0.extend_from_slice(&rest[..=at]);
            self.0.extend_from_slice(b"    ");
            rest = &rest[at + 1..];
        }
        self.0.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// The documented shapes, serialized straight from the plan (no tree of `serde_json::Value`s in
// between: building one cloned every string of a fleet's plan and was most of its JSON's cost).

/// A tenant of `tenants`.
struct Tenant<'a>(&'a TenantPlan);

/// A resource change of `resource_changes`.
struct Change<'a>(&'a ResourceChange);

/// A value as plain JSON, with the markers for unknown and sensitive values.
struct Plain<'a>(&'a Value);

/// An attribute map (`before`, `after`), `null` when absent.
struct Attrs<'a>(&'a Option<std::collections::BTreeMap<String, Value>>);

/// An optional value, `null` when absent.
struct MaybePlain<'a>(&'a Option<Value>);

impl Serialize for Plain<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(n) => s.serialize_i64(*n),
            Value::String(v) => s.serialize_str(v),
            Value::List(items) => s.collect_seq(items.iter().map(Plain)),
            Value::Map(m) => s.collect_map(m.iter().map(|(k, v)| (k, Plain(v)))),
            Value::Ref { .. } | Value::Computed { .. } => s.serialize_str(UNKNOWN),
            Value::Secret(_) => s.serialize_str(SENSITIVE),
        }
    }
}

impl Serialize for Attrs<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            None => s.serialize_unit(),
            Some(m) => s.collect_map(m.iter().map(|(k, v)| (k, Plain(v)))),
        }
    }
}

impl Serialize for MaybePlain<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            None => s.serialize_unit(),
            Some(v) => Plain(v).serialize(s),
        }
    }
}

impl Serialize for Change<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Attr<'a> {
            path: &'a str,
            before: MaybePlain<'a>,
            after: MaybePlain<'a>,
            forces_replacement: bool,
        }
        let c = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("address", &c.address.to_string())?;
        m.serialize_entry("type", &c.address.kind)?;
        m.serialize_entry("name", &c.address.name)?;
        m.serialize_entry("phase", c.phase.name())?;
        m.serialize_entry("phase_number", &c.phase.number())?;
        m.serialize_entry("action", &c.action)?;
        m.serialize_entry("before", &Attrs(&c.before))?;
        m.serialize_entry("after", &Attrs(&c.after))?;
        m.serialize_entry("after_unknown", &c.after_unknown())?;
        m.serialize_entry("sensitive_paths", &c.sensitive_paths())?;
        let changes = c.changes.iter().map(|a| Attr {
            path: &a.path,
            before: MaybePlain(&a.before),
            after: MaybePlain(&a.after),
            forces_replacement: a.forces_replacement,
        });
        m.serialize_entry("changes", &Seq::new(changes))?;
        m.serialize_entry("depends_on", &Seq::new(c.depends_on.iter().map(ToString::to_string)))?;
        m.serialize_entry("notes", &c.notes)?;
        if !c.manifest_changes.is_empty() {
            m.serialize_entry("manifest_changes", &c.manifest_changes)?;
        }
        m.end()
    }
}

impl Serialize for Tenant<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Prior<'a> {
            lineage: &'a str,
            serial: u64,
        }
        #[derive(Serialize)]
        struct Part<'a> {
            target: &'a [String],
            exclude: &'a [String],
            left_out: usize,
        }
        #[derive(Serialize)]
        struct Moved<'a> {
            from: String,
            to: String,
            declared_at: &'a str,
        }
        #[derive(Serialize)]
        struct Ignored<'a> {
            address: String,
            path: &'a str,
            before: MaybePlain<'a>,
            after: MaybePlain<'a>,
            declared_at: &'a str,
        }
        let t = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("slug", &t.slug)?;
        m.serialize_entry("tenant_id", &t.tenant_id)?;
        m.serialize_entry("tier", &t.tier)?;
        m.serialize_entry("source", &t.source.as_ref().map(|p| p.display().to_string()))?;
        m.serialize_entry(
            "prior_state",
            &t.prior_state.as_ref().map(|p| Prior { lineage: &p.lineage, serial: p.serial }),
        )?;
        let partial = t.partial.as_ref().map(|p| Part { target: &p.target, exclude: &p.exclude, left_out: p.left_out });
        m.serialize_entry("partial", &partial)?;
        m.serialize_entry("summary", &summary(&t.summary()))?;
        m.serialize_entry("resource_changes", &Seq::new(t.resource_changes.iter().map(Change)))?;
        if !t.moved.is_empty() {
            let moved = t.moved.iter().map(|v| Moved {
                from: v.from.to_string(),
                to: v.to.to_string(),
                declared_at: &v.declared_at,
            });
            m.serialize_entry("moved", &Seq::new(moved))?;
        }
        if !t.ignored.is_empty() {
            let ignored = t.ignored.iter().map(|i| Ignored {
                address: i.address.to_string(),
                path: &i.path,
                before: MaybePlain(&i.before),
                after: MaybePlain(&i.after),
                declared_at: &i.declared_at,
            });
            m.serialize_entry("ignored", &Seq::new(ignored))?;
        }
        m.end()
    }
}

/// A sequence serialized from an iterator, once.
struct Seq<I>(std::cell::Cell<Option<I>>);

impl<I> Seq<I> {
    fn new(items: I) -> Seq<I> {
        Seq(std::cell::Cell::new(Some(items)))
    }
}

impl<I: Iterator<Item = T>, T: Serialize> Serialize for Seq<I> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.take().expect("a sequence is serialized once"))
    }
}

/// A value as plain JSON, with the markers for unknown and sensitive values.
pub(super) fn value(v: &Value) -> J {
    serde_json::to_value(Plain(v)).expect("a value always serializes")
}
