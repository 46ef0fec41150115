//! `matih validate`: check specs and the platform file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use serde_json::{json, Value as J};

use matih::catalog::Catalog;
use matih::diag::{self, Diagnostic, Severity};
use matih::workflow::stream::{self, Stream};

use super::{load_catalog, load_platform, print, stream_inputs, Global};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Tenant spec files or directories of them.
    #[arg(default_value = "tenants")]
    pub paths: Vec<PathBuf>,
    /// text: `file:line:col: message` lines on stderr; json: one document on stdout shaped like
    /// Terraform's `validate -json` (valid, error and warning counts, diagnostics with ranges).
    #[arg(long, value_enum, default_value_t = ValidateFormat::Text)]
    pub format: ValidateFormat,
    /// Same as --format json (Terraform's -json).
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ValidateFormat {
    Text,
    Json,
}

pub fn exec(global: &Global, args: &Args) -> Result<ExitCode> {
    if args.json || args.format == ValidateFormat::Json {
        return json_report(global, &args.paths);
    }
    // A few tenants at a time, in bounded memory (see `workflow::stream`).
    let check = Stream { store: None, refresh: None, keep: &|_| true, prepare: matih::plan::Preparer::Nothing };
    let catalog = load_catalog(global)?;
    let streamed = stream_inputs(global, &catalog, &args.paths, &check, &mut |_, _| {})?;
    println!(
        "Success! {} tenant{} valid ({} resources).",
        streamed.tenants,
        if streamed.tenants == 1 { "" } else { "s" },
        streamed.resources
    );
    Ok(ExitCode::SUCCESS)
}

/// Every diagnostic of the catalog, the platform file and the specs, sorted.
fn diagnostics(global: &Global, paths: &[PathBuf]) -> Vec<Diagnostic> {
    let catalog = match &global.schemas {
        Some(dir) => Catalog::load_dir(dir),
        None => Catalog::embedded(),
    };
    let catalog = match catalog {
        Ok(c) => c,
        Err(diags) => return diags,
    };
    let (platform, _, mut diags) = load_platform(global);
    let check = Stream { store: None, refresh: None, keep: &|_| true, prepare: matih::plan::Preparer::Nothing };
    diags.extend(stream::stream_tenants(paths, &catalog, &platform, &check, &mut |_, _| {}).diagnostics);
    diag::sort(&mut diags);
    diags
}

/// The document of `validate --format json`, in the shape of Terraform's `validate -json`:
///
/// ```json
/// { "format_version": "1.0", "valid": false, "error_count": 1, "warning_count": 0,
///   "diagnostics": [ { "severity": "error", "summary": "unknown tier \"gold\" …", "detail": "",
///     "range": { "filename": "tenants/acme.hcl", "start": { "line": 4, "column": 18 },
///                "end": { "line": 4, "column": 18 } } } ] }
/// ```
///
/// `detail` holds the diagnostic's notes, one a line; `range` is absent for a diagnostic that is
/// in no file, and is the point where the problem starts (`end` equals `start`; no `byte`).
/// Exit 1 when not valid, as in text.
fn json_report(global: &Global, paths: &[PathBuf]) -> Result<ExitCode> {
    let diags = diagnostics(global, paths);
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let list: Vec<J> = diags
        .iter()
        .map(|d| {
            let mut o = json!({
                "severity": match d.severity { Severity::Error => "error", Severity::Warning => "warning" },
                "summary": d.message,
                "detail": d.notes.join("\n"),
            });
            if let Some(loc) = &d.location {
                let pos = json!({ "line": loc.line, "column": loc.column });
                o["range"] = json!({ "filename": loc.file.display().to_string(), "start": pos, "end": pos });
            }
            o
        })
        .collect();
    let doc = json!({
        "format_version": "1.0",
        "valid": errors == 0,
        "error_count": errors,
        "warning_count": diags.len() - errors,
        "diagnostics": list,
    });
    print(&format!("{}\n", serde_json::to_string_pretty(&doc)?))?;
    Ok(if errors == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
