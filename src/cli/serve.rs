//! `matih serve`: status API, WebSocket stream and status page.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;

use matih::diag;
use matih::spec::StateBackend;

use matih::workflow::store::connect_postgres_state;

use super::{load_platform, print_diagnostics, runtime, state_location, Global, Reported};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Tenant spec files or directories of them (optional): tenants with a spec but no state are
    /// listed as never applied, with their tier and region.
    pub paths: Vec<std::path::PathBuf>,
    /// Address to listen on. Anything but loopback needs MATIH_SERVE_TOKEN, and TLS.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key); required off loopback.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// The JSON report of `matih drift --format json` (e.g. written nightly): a drift badge per
    /// tenant and its findings on the tenant's page. Read again whenever the file changes.
    #[arg(long, env = "MATIH_DRIFT_REPORT", value_name = "FILE")]
    pub drift_report: Option<std::path::PathBuf>,
}

/// `matih serve`: status API, WebSocket stream and status page; also retries queued notifications.
pub fn exec(global: &Global, args: &Args) -> Result<ExitCode> {
    let (platform, _, diags) = load_platform(global);
    print_diagnostics(&diags);
    if diag::has_errors(&diags) {
        return Err(Reported.into());
    }
    let mut specs = Vec::new();
    if !args.paths.is_empty() {
        let catalog = super::load_catalog(global)?;
        let (loaded, diags) = matih::spec::load_tenants(&args.paths, &catalog);
        print_diagnostics(&diags);
        if diag::has_errors(&diags) {
            return Err(Reported.into());
        }
        specs = loaded
            .iter()
            .map(|t| matih::serve::KnownTenant {
                slug: t.slug.value.clone(),
                tenant_id: t.id.value.clone(),
                tier: t.tier.value.clone(),
                region: t.region.value.clone(),
            })
            .collect();
    }
    let loc = state_location(global)?;
    let mut opts = matih::serve::ServeOptions::new(args.listen, &loc.dir);
    if matches!(loc.backend, StateBackend::Postgres) {
        // Shared by every machine: serve reads the tenants from it and follows applies anywhere.
        opts.postgres = Some(Arc::new(connect_postgres_state(&loc.url_env)?));
    }
    opts.token = std::env::var("MATIH_SERVE_TOKEN").ok().filter(|t| !t.is_empty());
    opts.notify = platform.notify;
    opts.drift_report = args.drift_report.clone();
    opts.specs = specs;
    opts.tls = args.tls_cert.clone().zip(args.tls_key.clone());
    runtime()?.block_on(matih::serve::run(opts))?;
    Ok(ExitCode::SUCCESS)
}
