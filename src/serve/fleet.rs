//! The fleet view's arithmetic: the query of `GET /api/v1/tenants` (filters, sort, paging, each
//! checked with a clear error), the counts by status, and the phase durations across the fleet
//! against the platform guide's expected range per phase. Pure functions over the tenants'
//! summaries, so that the page and the API agree and both are tested without a server.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::Serialize;

use super::status::{StatusDoc, TenantSummary};
use crate::phase::Phase;

/// The guide's expected duration of each phase, in seconds, phases 1 to 10 (the "Phase Overview"
/// table of the platform's tenant-provisioning guide: `1 CREATE_NAMESPACE 5-30s`, …).
pub const GUIDE_SECS: [(u64, u64); 10] =
    [(5, 30), (30, 120), (60, 300), (10, 30), (60, 300), (30, 120), (10, 60), (10, 30), (30, 60), (10, 30)];

/// The statuses a filter may name. `NEVER_APPLIED` is the API's other name for `PENDING`.
const STATUSES: [&str; 6] = ["PENDING", "PROVISIONING", "ACTIVE", "FAILED", "DESTROYING", "DESTROYED"];

/// The columns the fleet can be sorted by.
const SORT_KEYS: [&str; 10] =
    ["slug", "status", "tier", "region", "phase", "resources", "duration", "started", "completed", "updated"];

pub const MAX_PAGE_SIZE: usize = 1000;
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// A parsed and checked `GET /api/v1/tenants` query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// Any of these statuses (empty: every status).
    pub status: Vec<String>,
    pub tier: Option<String>,
    pub region: Option<String>,
    /// Free text, lower-cased: a substring of the slug, id, tier, region, phase or error.
    pub q: Option<String>,
    pub sort: String,
    pub desc: bool,
    pub page: usize,
    pub page_size: usize,
}

impl Default for Query {
    fn default() -> Query {
        Query {
            status: Vec::new(),
            tier: None,
            region: None,
            q: None,
            sort: "slug".into(),
            desc: false,
            page: 1,
            page_size: DEFAULT_PAGE_SIZE,
        }
    }
}

/// The parameters of a query string, decoded, in order.
pub fn params(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (super::percent_decode(k), super::percent_decode(v))
        })
        .collect()
}

fn number(name: &str, v: &str, max: usize) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("{name} must be a whole number from 1 to {max}, found {v:?}")),
    }
}

/// Parses `status=&tier=&region=&q=&sort=&order=&page=&pageSize=` (`access_token` is the
/// server's). `paged`: whether `page`/`pageSize` are accepted (the duration plot takes filters only).
pub fn parse(query: Option<&str>, paged: bool) -> Result<Query, String> {
    let mut out = Query::default();
    for (k, v) in params(query) {
        let v = v.trim().to_string();
        match k.as_str() {
            "status" => {
                for s in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let s = s.to_ascii_uppercase();
                    let s = if s == "NEVER_APPLIED" { "PENDING".to_string() } else { s };
                    if !STATUSES.contains(&s.as_str()) {
                        return Err(format!(
                            "status must be one or more (comma-separated) of {}, NEVER_APPLIED; found {s:?}",
                            STATUSES.join(", ")
                        ));
                    }
                    if !out.status.contains(&s) {
                        out.status.push(s);
                    }
                }
            }
            "tier" => out.tier = Some(v).filter(|v| !v.is_empty()),
            "region" => out.region = Some(v).filter(|v| !v.is_empty()),
            "q" => out.q = Some(v.to_lowercase()).filter(|v| !v.is_empty()),
            "sort" => {
                let (key, desc) = match v.strip_prefix('-') {
                    Some(k) => (k.to_string(), true),
                    None => (v.clone(), out.desc),
                };
                if !SORT_KEYS.contains(&key.as_str()) {
                    return Err(format!("sort must be one of {}, found {v:?}", SORT_KEYS.join(", ")));
                }
                out.sort = key;
                out.desc = desc;
            }
            "order" => {
                out.desc = match v.as_str() {
                    "asc" => false,
                    "desc" => true,
                    _ => return Err(format!("order must be asc or desc, found {v:?}")),
                }
            }
            "page" if paged => out.page = number("page", &v, 1_000_000)?,
            "pageSize" if paged => out.page_size = number("pageSize", &v, MAX_PAGE_SIZE)?,
            "access_token" => {}
            other => {
                let known = if paged {
                    "status, tier, region, q, sort, order, page, pageSize"
                } else {
                    "status, tier, region, q"
                };
                return Err(format!("unknown query parameter {other:?} (known: {known})"));
            }
        }
    }
    Ok(out)
}

/// A tenant's line in the fleet: its summary and, when a drift report names it, its badge.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    #[serde(flatten)]
    pub summary: TenantSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<DriftBadge>,
}

/// What the last drift report says of a tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DriftBadge {
    /// `in_sync`, `drifted` or `busy`.
    pub status: String,
    pub findings: usize,
}

fn status_of(r: &Row) -> String {
    super::status_name(r.summary.status)
}

fn matches(r: &Row, q: &Query) -> bool {
    let s = &r.summary;
    if !q.status.is_empty() && !q.status.contains(&status_of(r)) {
        return false;
    }
    if q.tier.as_ref().is_some_and(|t| s.tier.as_deref() != Some(t.as_str())) {
        return false;
    }
    if q.region.as_ref().is_some_and(|t| s.region.as_deref() != Some(t.as_str())) {
        return false;
    }
    if let Some(text) = &q.q {
        let fields = [
            Some(s.slug.as_str()),
            Some(s.tenant_id.as_str()),
            s.tier.as_deref(),
            s.region.as_deref(),
            s.current_phase_name.as_deref(),
            s.provisioning_error.as_deref(),
        ];
        if !fields.iter().flatten().any(|f| f.to_lowercase().contains(text.as_str())) {
            return false;
        }
    }
    true
}

fn compare(a: &Row, b: &Row, key: &str) -> Ordering {
    let (x, y) = (&a.summary, &b.summary);
    let by = match key {
        "status" => status_of(a).cmp(&status_of(b)),
        "tier" => x.tier.cmp(&y.tier),
        "region" => x.region.cmp(&y.region),
        "phase" => x.current_phase.cmp(&y.current_phase),
        "resources" => x.resources.cmp(&y.resources),
        "duration" => x.duration_ms.cmp(&y.duration_ms),
        "started" => x.started_at.cmp(&y.started_at),
        "completed" => x.provisioning_completed_at.cmp(&y.provisioning_completed_at),
        "updated" => x.updated_at.cmp(&y.updated_at),
        _ => Ordering::Equal,
    };
    by.then_with(|| x.slug.cmp(&y.slug))
}

/// What `GET /api/v1/tenants` answers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    pub tenants: Vec<Row>,
    /// Tenants matching the filters (all pages).
    pub total: usize,
    pub page: usize,
    pub page_size: usize,
    pub pages: usize,
    /// Over the whole fleet (not filtered): tenants per status, `NEVER_APPLIED` being `PENDING`.
    pub counts: BTreeMap<String, usize>,
    /// The tiers and regions of the fleet, for the filters' choices.
    pub tiers: Vec<String>,
    pub regions: Vec<String>,
    /// Over the whole fleet: tenants per drift status, when a drift report is loaded.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub drift: BTreeMap<String, usize>,
}

/// Filters, sorts and pages `rows` as `q` says.
pub fn select(rows: Vec<Row>, q: &Query) -> Answer {
    let mut counts: BTreeMap<String, usize> = STATUSES.iter().map(|s| (s.to_string(), 0)).collect();
    let mut tiers = Vec::new();
    let mut regions = Vec::new();
    let mut drift = BTreeMap::new();
    for r in &rows {
        *counts.entry(status_of(r)).or_insert(0) += 1;
        tiers.extend(r.summary.tier.clone());
        regions.extend(r.summary.region.clone());
        if let Some(d) = &r.drift {
            *drift.entry(d.status.clone()).or_insert(0) += 1;
        }
    }
    counts.insert("NEVER_APPLIED".into(), counts["PENDING"]);
    tiers.sort();
    tiers.dedup();
    regions.sort();
    regions.dedup();
    let mut hits: Vec<Row> = rows.into_iter().filter(|r| matches(r, q)).collect();
    hits.sort_by(|a, b| {
        let o = compare(a, b, &q.sort);
        if q.desc {
            o.reverse()
        } else {
            o
        }
    });
    let total = hits.len();
    let pages = total.div_ceil(q.page_size).max(1);
    let tenants = hits.into_iter().skip((q.page - 1).saturating_mul(q.page_size)).take(q.page_size).collect();
    Answer { tenants, total, page: q.page, page_size: q.page_size, pages, counts, tiers, regions, drift }
}

/// The filters of `q` alone (no paging): which documents the duration plot is made of.
pub fn filtered<'a>(docs: &'a [StatusDoc], rows: &[Row], q: &Query) -> Vec<&'a StatusDoc> {
    docs.iter().zip(rows).filter(|(_, r)| matches(r, q)).map(|(d, _)| d).collect()
}

/// One phase across the fleet.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PhaseStats {
    pub number: u8,
    pub name: String,
    pub expected_min_ms: u64,
    pub expected_max_ms: u64,
    /// Completed runs of the phase measured (the last run of each tenant).
    pub count: usize,
    pub median_ms: Option<u64>,
    pub p95_ms: Option<u64>,
    pub max_ms: Option<u64>,
    /// How many took longer than the guide's upper bound.
    pub over: usize,
}

/// The `p`-th percentile of sorted `v` by nearest rank (p in 0..=100).
pub fn percentile(v: &[u64], p: usize) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let rank = (p * v.len()).div_ceil(100).max(1);
    v.get(rank - 1).copied()
}

/// Median and p95 of every phase over the completed phases of `docs`' last runs.
pub fn phase_stats(docs: &[&StatusDoc]) -> Vec<PhaseStats> {
    Phase::ALL
        .iter()
        .map(|p| {
            let n = p.number();
            let mut v: Vec<u64> = docs
                .iter()
                .filter_map(|d| d.phases.iter().find(|x| x.number == n))
                .filter(|x| x.state == "COMPLETED")
                .filter_map(|x| x.duration_ms)
                .collect();
            v.sort_unstable();
            let (lo, hi) = GUIDE_SECS[usize::from(n) - 1];
            PhaseStats {
                number: n,
                name: p.name().to_string(),
                expected_min_ms: lo * 1000,
                expected_max_ms: hi * 1000,
                count: v.len(),
                median_ms: percentile(&v, 50),
                p95_ms: percentile(&v, 95),
                max_ms: v.last().copied(),
                over: v.iter().filter(|d| **d > hi * 1000).count(),
            }
        })
        .collect()
}
