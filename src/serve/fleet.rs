//! The fleet view's arithmetic: the query of `GET /api/v1/tenants` (filters, sort, paging, each
//! checked with a clear error), the counts by status, and the phase durations across the fleet
//! against the platform guide's expected range per phase. Pure functions over the tenants'
//! summaries, so that the page and the API agree and both are tested without a server.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::Serialize;

use crate::events::status::{StatusDoc, TenantSummary};
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::TenantStatus;

    fn row(slug: &str, status: TenantStatus, tier: &str, region: &str, ms: u64) -> Row {
        Row {
            summary: TenantSummary {
                tenant_id: format!("id-{slug}"),
                slug: slug.into(),
                status,
                current_phase: None,
                provisioning_error: (status == TenantStatus::Failed).then(|| "phase 6/10: no external IP".into()),
                provisioning_completed_at: None,
                resources: 1,
                updated_at: String::new(),
                current_phase_name: None,
                tier: Some(tier.into()),
                region: Some(region.into()),
                started_at: None,
                duration_ms: ms,
                phases: Vec::new(),
            },
            drift: None,
        }
    }

    fn fleet() -> Vec<Row> {
        vec![
            row("acme", TenantStatus::Active, "professional", "eastus", 900),
            row("globex", TenantStatus::Active, "free", "westeurope", 300),
            row("initech", TenantStatus::Failed, "enterprise", "westus2", 500),
            row("hooli", TenantStatus::Pending, "free", "eastus", 0),
            row("umbrella", TenantStatus::Provisioning, "free", "eastus", 100),
        ]
    }

    fn slugs(a: &Answer) -> Vec<&str> {
        a.tenants.iter().map(|r| r.summary.slug.as_str()).collect()
    }

    #[test]
    fn queries_are_checked_with_errors_that_name_the_parameter() {
        let q =
            parse(Some("status=active,never_applied&tier=free&q=Glo&sort=-duration&page=2&pageSize=10"), true).unwrap();
        assert_eq!(q.status, ["ACTIVE", "PENDING"]);
        assert_eq!(
            (q.tier.as_deref(), q.q.as_deref(), q.sort.as_str(), q.desc),
            (Some("free"), Some("glo"), "duration", true)
        );
        assert_eq!((q.page, q.page_size), (2, 10));
        assert!(parse(Some("sort=slug&order=desc&access_token=x"), true).unwrap().desc);
        for (bad, says) in [
            ("status=DONE", "status must be one or more"),
            ("page=0", "page must be a whole number from 1 to 1000000, found \"0\""),
            ("pageSize=5000", "pageSize must be a whole number from 1 to 1000"),
            ("pageSize=ten", "pageSize must be"),
            ("sort=colour", "sort must be one of slug, status"),
            ("order=up", "order must be asc or desc"),
            ("limit=3", "unknown query parameter \"limit\""),
        ] {
            let e = parse(Some(bad), true).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert!(parse(Some("page=2"), false).unwrap_err().contains("unknown query parameter \"page\""));
    }

    #[test]
    fn the_fleet_is_filtered_sorted_and_paged_with_counts_over_all_of_it() {
        let a = select(fleet(), &parse(Some("tier=free"), true).unwrap());
        assert_eq!(slugs(&a), ["globex", "hooli", "umbrella"]);
        assert_eq!((a.counts["ACTIVE"], a.counts["FAILED"], a.counts["NEVER_APPLIED"], a.total), (2, 1, 1, 3));
        assert_eq!(a.tiers, ["enterprise", "free", "professional"]);
        assert_eq!(a.regions, ["eastus", "westeurope", "westus2"]);
        let a = select(fleet(), &parse(Some("q=EXTERNAL"), true).unwrap());
        assert_eq!(slugs(&a), ["initech"], "the error is searched");
        let a = select(fleet(), &parse(Some("status=ACTIVE,FAILED&sort=duration&order=desc"), true).unwrap());
        assert_eq!(slugs(&a), ["acme", "initech", "globex"]);
        let a = select(fleet(), &parse(Some("sort=status&pageSize=2&page=3"), true).unwrap());
        assert_eq!((a.total, a.pages, a.page), (5, 3, 3));
        assert_eq!(slugs(&a), ["umbrella"]);
        let a = select(fleet(), &parse(Some("page=9"), true).unwrap());
        assert!(a.tenants.is_empty() && a.total == 5, "a page past the end is empty, not an error");
        let a = select(fleet(), &parse(Some("region=eastus&status=NEVER_APPLIED"), true).unwrap());
        assert_eq!(slugs(&a), ["hooli"]);
    }

    #[test]
    fn phase_durations_are_median_and_p95_against_the_guide() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[7], 95), Some(7));
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!((percentile(&v, 50), percentile(&v, 95)), (Some(50), Some(95)));
        let mut docs = Vec::new();
        for ms in [1000, 2000, 40_000] {
            let mut d = StatusDoc::empty("t", "id");
            d.phases[0].state = "COMPLETED".into();
            d.phases[0].duration_ms = Some(ms);
            d.phases[1].state = "FAILED".into();
            d.phases[1].duration_ms = Some(5);
            docs.push(d);
        }
        let stats = phase_stats(&docs.iter().collect::<Vec<_>>());
        assert_eq!(stats.len(), 10);
        let p1 = &stats[0];
        assert_eq!((p1.count, p1.median_ms, p1.p95_ms, p1.over), (3, Some(2000), Some(40_000), 1));
        assert_eq!((p1.expected_min_ms, p1.expected_max_ms), (5_000, 30_000));
        assert_eq!(stats[1].count, 0, "only completed phases are measured");
        assert_eq!(stats[2].expected_max_ms, 300_000);
        assert_eq!(GUIDE_SECS[9], (10, 30));
    }
}
