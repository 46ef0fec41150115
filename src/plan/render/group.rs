//! Tenants whose changes are the same apart from their own names, found so that a fleet-wide
//! change is shown once (`--group`; on by default in Markdown).
//!
//! A tenant's changes are rendered as the text plan shows them (no colours, no heading), then
//! *canonicalised*: every occurrence of the tenant's own names, as a whole word (not preceded or
//! followed by a letter or digit), is replaced by a placeholder: its id by `${tenant_id}`, its
//! slug, and the slug with `-` spelled `_` (PostgreSQL names: `tenant_acme_corp`), by `${slug}`.
//! Everything the graph derives from the slug (`matih-acme`, `acme.example.com`,
//! `ingress-nginx-acme`, `admin@acme.example`) then reads the same in every tenant; so does a
//! base64 value whose text holds a name (a Secret's `data`), shown as `base64(tenant_${slug})`, so
//! that tenants provisioned together group too. Two tenants are
//! in one group when the SHA-256 of their canonical changes (as the JSON plan lists them, and their
//! moves), of their risks (as the Markdown renderer finds them) and of whether they have recorded
//! state are equal: what the group shows
//! once is then exactly what each member's own section would show, names aside.
//!
//! Memory: per group, its digest, its members' slugs, its counts and risks, and where its
//! rendered changes are in a [`Bodies`] spill (the first member's as they are, and once a second
//! member joins, the canonical ones); never a plan. A fleet where every tenant differs costs one
//! slug and a few hundred bytes per tenant, its renderings being in the spill.
//!
//! **Invariant:** groups by what is shown, never by what a plan file holds (secrets are compared
//! as the renderings show them: not at all).

use std::cmp::Reverse;
use std::collections::HashMap;
use std::io;

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use sha2::{Digest, Sha256};

use super::risk::{verb, Risk};
use super::stream::{Bodies, BodyReader, Span, Spill};
use crate::plan::{Action, Summary, TenantPlan};

/// What the placeholders stand for, said once wherever a group is shown.
pub(super) const PLACEHOLDERS: &str =
    "${slug} and ${tenant_id} stand for each tenant's own slug and id, base64(…) for a value stored base64-encoded";

/// One tenant's names and their placeholders, longest first.
pub(super) struct Canon {
    names: Vec<(String, &'static str)>,
    /// The bytes a name starts with: a position starting with another byte is passed over
    /// without comparing (grouping a 1,000-tenant plan spent a fifth of its time in those
    /// comparisons).
    starts: [bool; 256],
    /// What every base64 encoding of a name holds, whatever stands before and after it (one
    /// string for each of the three offsets a name can have in the encoded text): a token holding
    /// none of them cannot decode to a text holding a name, so it is not decoded. `None` when a
    /// name is too short to have them (every token is decoded).
    cores: Option<Vec<Vec<u8>>>,
    /// Finds the names and the cores at once, so that only where one starts is looked at (a
    /// 1,000-tenant grouped plan scans about 200 MB of text).
    finder: Option<AhoCorasick>,
    /// Patterns of `finder` from this index on are cores; the ones before, names.
    first_core: usize,
}

impl Canon {
    pub fn of(t: &TenantPlan) -> Canon {
        let mut names = vec![(t.tenant_id.clone(), "${tenant_id}"), (t.slug.clone(), "${slug}")];
        let underscored = t.slug.replace('-', "_");
        if underscored != t.slug {
            names.push((underscored, "${slug}"));
        }
        names.retain(|(n, _)| !n.is_empty());
        names.sort_by_key(|(n, _)| Reverse(n.len()));
        let mut starts = [false; 256];
        for (n, _) in &names {
            starts[usize::from(n.as_bytes()[0])] = true;
        }
        let cores: Option<Vec<Vec<u8>>> =
            names.iter().flat_map(|(n, _)| (0..3).map(move |k| base64_core(n.as_bytes(), k))).collect();
        // Without cores every token may decode to a name: every position is looked at.
        let finder = cores.as_ref().and_then(|cores| {
            let patterns = names.iter().map(|(n, _)| n.as_bytes()).chain(cores.iter().map(Vec::as_slice));
            // No DFA: building one for each tenant cost more than the searches it sped up.
            AhoCorasick::builder().kind(Some(AhoCorasickKind::ContiguousNFA)).build(patterns).ok()
        });
        Canon { first_core: names.len(), names, starts, cores, finder }
    }

    /// `s` with each whole-word occurrence of a name replaced by its placeholder, in one pass
    /// (a placeholder is never replaced again), and each base64 token whose text holds a name
    /// (a Secret's `data`: `dGVuYW50X2FjbWU=`) replaced by `base64(…)` of its canonical text.
    pub fn apply(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        self.each_piece(s, &mut |piece| out.push_str(piece));
        out
    }

    /// [`Canon::apply`] of `s`, handed to `f` piece by piece (so that a digest of it needs no
    /// copy of the text).
    pub fn each_piece(&self, s: &str, f: &mut dyn FnMut(&str)) {
        let b = s.as_bytes();
        let Some(finder) = &self.finder else {
            return self.pieces_at(s, 0..b.len(), f);
        };
        // Where a name starts, and where a token holding a core starts: nothing else can change.
        let mut at: Vec<usize> = finder
            .find_overlapping_iter(b)
            .map(|m| {
                if m.pattern().as_usize() < self.first_core {
                    return m.start();
                }
                m.start() - b[..m.start()].iter().rev().take_while(|&&c| is_base64_body(c)).count()
            })
            .collect();
        at.sort_unstable();
        at.dedup();
        self.pieces_at(s, at.into_iter(), f);
    }

    /// The left-to-right pass of [`Canon::apply`], looking only at the positions `at` (ascending):
    /// a base64 token starting there that decodes to a name, else a name as a whole word.
    fn pieces_at(&self, s: &str, at: impl Iterator<Item = usize>, f: &mut dyn FnMut(&str)) {
        let b = s.as_bytes();
        let mut copied = 0;
        for i in at {
            if i < copied {
                continue;
            }
            if (i == 0 || !is_base64(b[i - 1])) && is_base64(b[i]) {
                if let Some((len, decoded)) = self.base64_at(&s[i..]) {
                    f(&s[copied..i]);
                    f("base64(");
                    f(&decoded);
                    f(")");
                    copied = i + len;
                    continue;
                }
            }
            if self.starts[usize::from(b[i])] && (i == 0 || !is_word(b[i - 1])) {
                let found = self
                    .names
                    .iter()
                    .find(|(n, _)| b[i..].starts_with(n.as_bytes()) && b.get(i + n.len()).is_none_or(|&c| !is_word(c)));
                if let Some((name, placeholder)) = found {
                    f(&s[copied..i]);
                    f(placeholder);
                    copied = i + name.len();
                }
            }
        }
        f(&s[copied..]);
    }

    /// The base64 token `s` starts with (padded, at least 8 characters, not followed by another
    /// base64 character), when it decodes to plain text (letters, digits and `._-@:/?=&%+,`, so
    /// that its canonical form needs no escaping in any rendering) that holds one of the names:
    /// its length and its canonical text.
    fn base64_at(&self, s: &str) -> Option<(usize, String)> {
        use base64::Engine as _;
        let b = s.as_bytes();
        let body = b.iter().take_while(|&&c| is_base64_body(c)).count();
        let len = body + b[body..].iter().take(2).take_while(|&&c| c == b'=').count();
        if len < 8 || !len.is_multiple_of(4) || b.get(len).is_some_and(|&c| is_base64(c)) {
            return None;
        }
        if let Some(cores) = &self.cores {
            let token = &b[..len];
            if !cores.iter().any(|core| token.windows(core.len()).any(|w| w == core.as_slice())) {
                return None;
            }
        }
        let text = base64::engine::general_purpose::STANDARD.decode(&s[..len]).ok()?;
        let text = String::from_utf8(text).ok()?;
        let plain = |c: char| c.is_ascii_alphanumeric() || "._-@:/?=&%+,".contains(c);
        if !text.chars().all(plain) {
            return None;
        }
        let canonical = self.apply(&text);
        (canonical != text).then_some((len, canonical))
    }
}

/// A character of a base64 token (padding included), or DEL (see [`is_word`]).
fn is_base64(c: u8) -> bool {
    is_word(c) || matches!(c, b'+' | b'/' | b'=')
}

/// A character of a base64 token's body (before its padding).
fn is_base64_body(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/')
}

/// A character a name must not touch to be a whole word: a letter or a digit, or DEL, which the
/// text plan writes `\u007f` (ending in a letter) and the JSON plan as it is; counted as one so
/// that the JSON, which grouping compares, never finds a name the text would not.
fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == 0x7f
}

/// The base64 characters that encode `name` alone when it stands at offset `k` (0, 1 or 2) of a
/// group of three bytes, whatever bytes surround it; `None` when there are none (a name of fewer
/// than three bytes).
fn base64_core(name: &[u8], k: usize) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let mut text = vec![0u8; k];
    text.extend_from_slice(name);
    let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&text);
    // Characters whose six bits all come from the name.
    let (from, to) = ((8 * k).div_ceil(6), 8 * (k + name.len()) / 6);
    (to > from + 1).then(|| encoded.as_bytes()[from..to].to_vec())
}

/// One risk of a group's changes (see the Markdown renderer).
pub(super) struct RiskLine {
    pub risk: Risk,
    pub address: String,
    pub action: Action,
    /// Why it is a risk, as found in the first member, and canonicalised.
    pub why: String,
    pub why_canonical: String,
}

impl RiskLine {
    /// `` `address` will be … (why)``, with the first member's names or the placeholders.
    pub fn text(&self, canonical: bool) -> String {
        let why = if canonical { &self.why_canonical } else { &self.why };
        format!("`{}` {}{why}", self.address, verb(self.action))
    }

    /// Why it is a risk, without the parentheses: the first member's names or the placeholders.
    pub fn why(&self, canonical: bool) -> &str {
        let why = if canonical { &self.why_canonical } else { &self.why };
        why.trim_start().trim_start_matches('(').trim_end_matches(')')
    }
}

pub(super) struct Group {
    pub digest: [u8; 32],
    /// Slugs, in plan order.
    pub members: Vec<String>,
    /// The first member's heading (`Tenant "acme" (tenants/acme.hcl)`).
    pub heading: String,
    /// Each member's counts (the same for all).
    pub summary: Summary,
    pub risks: Vec<RiskLine>,
    /// The changes shown (no-ops left out): address and action.
    pub changes: Vec<(String, Action)>,
    /// The first member's rendering, as it is.
    concrete: Option<Span>,
    /// The rendering of a later member, canonicalised (written when the second member joins).
    canonical: Option<Span>,
}

impl Group {
    /// The most serious risk of the group.
    pub fn risk(&self) -> Option<Risk> {
        self.risks.iter().map(|r| r.risk).min()
    }

    /// `sha256:…` of the canonical changes.
    pub fn digest_hex(&self) -> String {
        let hex: String = self.digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

    /// The first `n` members, `` `a`, `b` `` or `"a", "b"` (`quote`), and how many more there are.
    pub fn named(&self, n: usize, quote: char) -> String {
        let mut names: Vec<String> = self.members.iter().take(n).map(|m| format!("{quote}{m}{quote}")).collect();
        if self.members.len() > n {
            names.push(format!("and {} more", self.members.len() - n));
        }
        names.join(", ")
    }
}

/// The groups of a plan's tenants with changes, in the order they were first seen.
pub(super) struct Groups {
    index: HashMap<[u8; 32], usize>,
    pub list: Vec<Group>,
    bodies: Bodies,
}

impl Groups {
    /// Groups whose renderings are kept in `spill`.
    pub fn new(spill: Spill) -> Groups {
        Groups { index: HashMap::new(), list: Vec::new(), bodies: Bodies::new(spill) }
    }

    /// Adds a tenant with changes, [`Keyed`] by what it shows. `render` renders what the caller
    /// will show of it from the tenant's changes as the text plan shows them without colours and
    /// as the JSON plan lists them (no-ops left out); it is called at most twice per group: for
    /// its first member as it is (`None`), and for its second with the [`Canon`] that the caller
    /// applies to the text it shows (never to its own structure: a slug may be spelled like a
    /// JSON key).
    pub fn push(
        &mut self,
        t: &TenantPlan,
        keyed: Keyed,
        render: &mut dyn FnMut(&Shown, Option<&Canon>) -> String,
    ) -> io::Result<()> {
        let Keyed { shown, canon, risks, digest } = keyed;
        if let Some(&i) = self.index.get(&digest) {
            let group = &mut self.list[i];
            if group.canonical.is_none() {
                group.canonical = Some(self.bodies.put(&render(&shown, Some(&canon)))?);
            }
            group.members.push(t.slug.clone());
            return Ok(());
        }
        self.index.insert(digest, self.list.len());
        let concrete = Some(self.bodies.put(&render(&shown, None))?);
        self.list.push(Group {
            digest,
            members: vec![t.slug.clone()],
            heading: shown.heading,
            summary: t.summary(),
            risks,
            changes: t
                .resource_changes
                .iter()
                .filter(|c| c.action != Action::NoOp)
                .map(|c| (c.address.to_string(), c.action))
                .collect(),
            concrete,
            canonical: None,
        });
        Ok(())
    }

    /// Whether some group has more than one member (else grouping shows nothing new).
    pub fn any_shared(&self) -> bool {
        self.list.iter().any(|g| g.members.len() > 1)
    }

    /// The groups in the order they are shown, with a reader of their renderings: the most
    /// serious risk first (no risk last), then the largest, then the first seen. Deterministic
    /// for a given plan.
    pub fn finish(self) -> io::Result<(Vec<Group>, Rendered)> {
        let Groups { list, bodies, .. } = self;
        let mut list: Vec<(usize, Group)> = list.into_iter().enumerate().collect();
        list.sort_by_key(|(first, g)| (g.risk().is_none(), g.risk(), Reverse(g.members.len()), *first));
        Ok((list.into_iter().map(|(_, g)| g).collect(), Rendered(bodies.reader()?)))
    }
}

/// One tenant's changes (no-ops left out) as the JSON plan lists them (compact) and, for a text
/// plan, as it shows them without colours: what grouping compares and shows, names aside. The
/// renderers make it (`render::shown`); grouping knows nothing of how.
pub(super) struct Shown {
    /// The text plan's rendering, made ahead for a text plan only (the others render their own
    /// when a group needs it).
    pub text: Option<String>,
    pub json: String,
    /// The tenant's heading in the text plan (`Tenant "acme" (tenants/acme.hcl)`).
    pub heading: String,
}

/// A tenant with changes as grouping compares it: what it shows, its names, its risks and the
/// digest of all three, names aside. Made on any thread ([`Keyed::of`] reads the tenant only), so
/// that a fleet's tenants are keyed on every core while [`Groups::push`] stays in plan order.
pub(super) struct Keyed {
    shown: Shown,
    canon: Canon,
    risks: Vec<RiskLine>,
    digest: [u8; 32],
}

impl Keyed {
    /// The digest is of the canonical JSON changes, the moves and the risks: the JSON holds every
    /// change the text and Markdown plans show and more (full `before` and `after`), in a form
    /// where a name is never found where the text would not find it (strings escaped, multi-line
    /// ones included), so that equal digests mean equal renderings in every format, names aside.
    /// Moves alone (no-ops) are shown by the text plan only, and hashed apart.
    pub fn of(t: &TenantPlan, shown: Shown) -> Keyed {
        let canon = Canon::of(t);
        let risks = risk_lines(t, &canon);
        let mut hash = Sha256::new();
        hash.update(if t.prior_state.is_some() { "recorded\n" } else { "new\n" });
        canon.each_piece(&shown.json, &mut |piece| hash.update(piece.as_bytes()));
        for m in &t.moved {
            let hidden =
                t.resource_changes.iter().find(|c| c.address == m.to).and_then(|c| c.after.as_ref()).map(|a| a.len());
            let line = format!("\0moved {} {} {} {hidden:?}", m.from, m.to, m.declared_at);
            canon.each_piece(&line, &mut |piece| hash.update(piece.as_bytes()));
        }
        for r in &risks {
            hash.update(format!("\0{:?}\0{}\0{}", r.risk, r.address, r.why_canonical).as_bytes());
        }
        Keyed { shown, canon, risks, digest: hash.finalize().into() }
    }
}

/// The renderings of finished groups.
pub(super) struct Rendered(BodyReader);

impl Rendered {
    /// What the caller rendered for `g`: its first member's rendering for a group of one, the
    /// canonical one otherwise.
    pub fn get(&mut self, g: &Group) -> io::Result<String> {
        let span = if g.members.len() > 1 { g.canonical } else { g.concrete };
        self.0.get(span.expect("every group has a rendering"))
    }
}

fn risk_lines(t: &TenantPlan, canon: &Canon) -> Vec<RiskLine> {
    t.resource_changes
        .iter()
        .filter_map(|c| {
            let (risk, why) = Risk::of(t, c)?;
            let why_canonical = canon.apply(&why);
            Some(RiskLine { risk, address: c.address.to_string(), action: c.action, why, why_canonical })
        })
        .collect()
}

/// `1,000`.
pub(super) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `` `kubernetes_prometheus_rule.tenant` ~ update, `x.y` + create `` for at most `n` changes,
/// then how many more.
pub(super) fn change_list(g: &Group, n: usize) -> String {
    let mut items: Vec<String> =
        g.changes.iter().take(n).map(|(a, action)| format!("`{a}` {} {}", action.symbol(), action.name())).collect();
    if g.changes.len() > n {
        items.push(format!("{} more", g.changes.len() - n));
    }
    items.join(", ")
}

#[cfg(test)]
#[path = "group_tests.rs"]
mod tests;
