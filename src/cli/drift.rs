//! `matih drift`: what changed outside matih (read-only).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Result};

use matih::spec::StateBackend;

use super::{
    keep_shard, load_inputs, open_store_at, parse_shard, print, runtime, state_location, try_connect_providers, Format,
    Global, Shard, StateLocation, StoreUse,
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Tenant spec files or directories of them.
    #[arg(default_value = "tenants")]
    pub paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Exit 0 when nothing drifted, 2 when something did, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Tenants checked at once.
    #[arg(long, default_value_t = 4)]
    pub parallelism: usize,
    /// Only the tenants of shard K of N (1 ≤ K ≤ N), chosen by a hash of their slug (as for apply).
    #[arg(long, value_parser = parse_shard, value_name = "K/N")]
    pub shard: Option<Shard>,
}

/// What `drift::read_recorded` reads from a sled store, read from the PostgreSQL one (which
/// needs no copy: reads change nothing there): a locked tenant is busy.
pub fn read_recorded_postgres(loc: &StateLocation, slugs: &[&str]) -> Result<Vec<matih::drift::Recorded>> {
    use matih::drift::Recorded;
    let store = open_store_at(loc, StoreUse::Read)?;
    let locks = store.locks()?;
    let mut out = Vec::with_capacity(slugs.len());
    for slug in slugs {
        match locks.iter().find(|l| l.slug == *slug) {
            Some(l) => out.push(Recorded::Busy(format!(
                "locked by {} ({} on {}, pid {}, since {}); if that run is gone, release the lock with \
                 `matih lock force-unlock {slug} {}`",
                l.who, l.operation, l.host, l.pid, l.created_at, l.id
            ))),
            None => out.push(Recorded::State(store.get(slug)?)),
        }
    }
    Ok(out)
}

/// How long `matih drift` waits for the state store, which a running apply holds, before it
/// reports every tenant as busy.
pub const DRIFT_STORE_WAIT: Duration = Duration::from_secs(2);

/// `matih drift`: strictly read-only. Reads the recorded states from a copy of the store (an apply
/// is kept waiting for the copy only), then reads every recorded resource back through the
/// providers and compares it with the state, and the specs with the state.
pub fn exec(global: &Global, args: &Args) -> Result<ExitCode> {
    use matih::drift::{self, DriftOptions, Recorded, TenantInput};

    let mut inputs = load_inputs(global, &args.paths)?;
    keep_shard(&mut inputs, args.shard);
    let slugs: Vec<&str> = inputs.graphs.iter().map(|g| g.tenant.slug.as_str()).collect();
    let loc = state_location(global)?;
    let recorded = match loc.backend {
        StateBackend::Sled => drift::read_recorded(&loc.dir, &slugs, DRIFT_STORE_WAIT)?,
        StateBackend::Postgres => read_recorded_postgres(&loc, &slugs)?,
    };
    for ((spec, graph), r) in inputs.specs.iter().zip(&inputs.graphs).zip(&recorded) {
        match r {
            Recorded::State(Some(st)) if st.tenant_id != graph.tenant.id => bail!(
                "{}: tenant {:?} is recorded with id {} but the spec says {}; a tenant's id cannot change",
                spec.id.location,
                graph.tenant.slug,
                st.tenant_id,
                graph.tenant.id
            ),
            Recorded::Busy(reason) if args.format == Format::Text => {
                eprintln!("Note: tenant {:?} is busy and is not checked: {reason}.", graph.tenant.slug)
            }
            _ => {}
        }
    }

    let rt = runtime()?;
    let (providers, mut unavailable) = try_connect_providers(&inputs.platform, &inputs.catalog, &rt);
    if std::env::var_os(&inputs.platform.postgres_admin_url_env).is_none() {
        unavailable.insert(
            "postgresql_".to_string(),
            format!(
                "not read: the environment variable {} (matih's PostgreSQL admin URL) is not set",
                inputs.platform.postgres_admin_url_env
            ),
        );
    }
    if inputs.platform_file.is_none() && args.format == Format::Text {
        eprintln!(
            "Note: no platform file (matih.hcl), so no live object can be read: every recorded resource is \
             reported as unreadable."
        );
    }
    let tenants: Vec<TenantInput> = inputs
        .specs
        .iter()
        .zip(inputs.graphs)
        .zip(recorded)
        .map(|((spec, graph), recorded)| TenantInput { graph, source: Some(spec.location.file.clone()), recorded })
        .collect();
    let opts = DriftOptions { tenant_concurrency: args.parallelism.max(1), unavailable, ..DriftOptions::default() };
    let report = rt.block_on(drift::check(tenants, &providers, &opts));
    print(&match args.format {
        Format::Text => drift::render_text(&report),
        Format::Json => drift::render_json(&report),
        Format::Markdown => drift::render_markdown(&report),
    })?;
    Ok(if args.detailed_exitcode && report.has_drift() { ExitCode::from(2) } else { ExitCode::SUCCESS })
}
