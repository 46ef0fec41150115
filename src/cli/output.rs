//! `matih output SLUG [NAME]`: a tenant's outputs (LoadBalancer IP, nameservers, URLs, database
//! host and name; never a password), from its recorded state.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use serde_json::Value as J;

use matih::workflow::outputs::{tenant_outputs, OUTPUTS};

use super::{open_state_for_read, print, state_location, Global};

#[derive(clap::Args, Debug)]
#[command(after_help = output_names())]
pub struct Args {
    /// The tenant's slug.
    pub slug: String,
    /// One output only (see the list below); without it, every output recorded.
    pub name: Option<String>,
    /// Print JSON: an object of every output, or the one value.
    #[arg(long, conflicts_with = "raw")]
    pub json: bool,
    /// Print the value of NAME alone, without quotes (a list: one item per line), for scripts.
    #[arg(long, requires = "name")]
    pub raw: bool,
}

fn output_names() -> String {
    let mut s = String::from("Outputs:\n");
    for (name, what) in OUTPUTS {
        s.push_str(&format!("  {name:<18} {what}\n"));
    }
    s.push_str(
        "\nExamples:\n  matih output acme\n  matih output acme load_balancer_ip --raw\n  matih output acme --json",
    );
    s
}

/// A value the way Terraform's `output` prints it: strings quoted, lists one item a line.
fn hcl(v: &J) -> String {
    match v {
        J::Array(items) => {
            let mut s = String::from("[\n");
            for i in items {
                s.push_str(&format!("  {},\n", hcl(i)));
            }
            s.push(']');
            s
        }
        other => other.to_string(),
    }
}

fn raw(v: &J) -> String {
    match v {
        J::String(s) => s.clone(),
        J::Array(items) => items.iter().map(raw).collect::<Vec<_>>().join("\n"),
        other => other.to_string(),
    }
}

pub fn exec(global: &Global, args: &Args) -> Result<ExitCode> {
    let store = open_state_for_read(global)?;
    let st = store.get(&args.slug)?.with_context(|| {
        format!(
            "no tenant {:?} in the state store at {}",
            args.slug,
            state_location(global).map(|l| l.describe()).unwrap_or_default()
        )
    })?;
    let outputs = tenant_outputs(&st);
    let Some(name) = &args.name else {
        if args.json {
            print(&format!("{}\n", serde_json::to_string_pretty(&outputs)?))?;
        } else {
            let lines: Vec<String> = outputs.iter().map(|(k, v)| format!("{k} = {}\n", hcl(v))).collect();
            print(&lines.concat())?;
        }
        return Ok(ExitCode::SUCCESS);
    };
    let Some(v) = outputs.get(name.as_str()) else {
        if OUTPUTS.iter().any(|(n, _)| n == name) {
            bail!(
                "tenant {:?} has no {name} recorded yet (the resource that gives it has not been applied)",
                args.slug
            );
        }
        let names: Vec<&str> = OUTPUTS.iter().map(|(n, _)| *n).collect();
        bail!("no output {name:?}; the outputs are {}", names.join(", "));
    };
    let text = if args.json {
        serde_json::to_string_pretty(v)?
    } else if args.raw {
        raw(v)
    } else {
        hcl(v)
    };
    print(&format!("{text}\n"))?;
    Ok(ExitCode::SUCCESS)
}
