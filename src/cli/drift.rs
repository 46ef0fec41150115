//! `matih drift`: what changed outside matih (read-only).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};

use matih::workflow::{self, connect::try_connect};

use super::{keep_shard, load_inputs, parse_shard, print, runtime, state_location, Format, Global, Shard};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Tenant spec files or directories of them.
    #[arg(default_value = "tenants")]
    pub paths: Vec<PathBuf>,
    /// How to print the report: text, json (for machines) or markdown (an issue or a comment).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Same as --format json.
    #[arg(long)]
    pub json: bool,
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

/// `matih drift`: strictly read-only. Reads the recorded states from a copy of the store (an apply
/// is kept waiting for the copy only), then reads every recorded resource back through the
/// providers and compares it with the state, and the specs with the state.
pub fn exec(global: &Global, args: &Args) -> Result<ExitCode> {
    use matih::drift::{self, DriftOptions, Recorded, TenantInput};

    let format = if args.json { Format::Json } else { args.format };
    let mut inputs = load_inputs(global, &args.paths)?;
    keep_shard(&mut inputs, args.shard);
    let slugs: Vec<&str> = inputs.graphs.iter().map(|g| g.tenant.slug.as_str()).collect();
    let recorded = state_location(global)?.read_recorded(&slugs)?;
    for ((spec, graph), r) in inputs.specs.iter().zip(&inputs.graphs).zip(&recorded) {
        match r {
            Recorded::State(st) => {
                if let Some(id) = workflow::changed_id(graph, st.as_ref()) {
                    bail!(
                        "{}: tenant {:?} is recorded with id {id} but the spec says {}; a tenant's id cannot change",
                        spec.id.location,
                        graph.tenant.slug,
                        graph.tenant.id
                    )
                }
            }
            Recorded::Busy(reason) if format == Format::Text => {
                eprintln!("Note: tenant {:?} is busy and is not checked: {reason}.", graph.tenant.slug)
            }
            Recorded::Busy(_) => {}
        }
    }

    let rt = runtime()?;
    let (providers, mut unavailable) = try_connect(&inputs.platform, &inputs.catalog, &rt);
    if std::env::var_os(&inputs.platform.postgres_admin_url_env).is_none() {
        unavailable.insert(
            "postgresql_".to_string(),
            format!(
                "not read: the environment variable {} (matih's PostgreSQL admin URL) is not set",
                inputs.platform.postgres_admin_url_env
            ),
        );
    }
    if inputs.platform_file.is_none() && format == Format::Text {
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
    print(&match format {
        Format::Text => drift::render_text(&report),
        Format::Json => drift::render_json(&report),
        Format::Markdown => drift::render_markdown(&report),
    })?;
    Ok(if args.detailed_exitcode && report.has_drift() { ExitCode::from(2) } else { ExitCode::SUCCESS })
}
