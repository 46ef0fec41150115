//! `matih plan`: what would change, rendered; optionally saved as a sealed plan file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};

use matih::apply::{Providers, DEFAULT_PARALLELISM};
use matih::plan;

use matih::workflow::connect::connect;
use matih::workflow::stream::Stream;
use matih::workflow::{self, run, Refresh};

use super::policy::{Checker, JsonShape, PolicyArgs};
use super::{
    compute_plan, in_automation, keep_shard, load_catalog, load_inputs, load_platform, open_state_for_read,
    parse_shard, print, render, runtime, stream_inputs, Format, Global, GroupArgs, Shard, TargetArgs,
};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Tenant spec files or directories of them.
    #[arg(default_value = "tenants")]
    pub paths: Vec<PathBuf>,
    /// Save the plan to FILE (sealed, bound to the state it was made from) for `matih apply FILE`.
    #[arg(long = "out", short = 'o', value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// How to print the plan: text (like Terraform's), json (the machine interface), markdown (a
    /// pull-request comment).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Same as --format json (Terraform's -json).
    #[arg(long)]
    pub json: bool,
    /// Exit 0 when nothing changes, 2 when something does, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Read live objects through the providers before planning (needs a platform file); also reads
    /// each planned create, so an existing object matih has no record of is adopted (`<=`), not created.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub refresh: bool,
    /// Accepted for Terraform's -input=false; plan never asks anything.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub input: bool,
    /// Plan the destruction of every recorded resource of the tenants (as `matih destroy` would),
    /// to review and save it (`-out FILE`) like any plan; `matih apply FILE` performs it.
    #[arg(long)]
    pub destroy: bool,
    /// Plan only to record what is live (Terraform's -refresh-only): objects changed or deleted
    /// outside matih, to accept as they are; `matih apply FILE` writes them to the state and changes
    /// nothing in the real world.
    #[arg(long, conflicts_with = "destroy")]
    pub refresh_only: bool,
    #[command(flatten)]
    pub targets: TargetArgs,
    #[command(flatten)]
    pub group: GroupArgs,
    /// Only the tenants of shard K of N (1 ≤ K ≤ N), chosen by a hash of their slug (as for apply).
    #[arg(long, value_parser = parse_shard, value_name = "K/N")]
    pub shard: Option<Shard>,
    #[command(flatten)]
    pub policies: PolicyArgs,
}

pub fn exec(global: &Global, args: &Args, color: bool) -> Result<ExitCode> {
    let format = if args.json { Format::Json } else { args.format };
    args.policies.check_shape(format, args.group.on(format))?;
    let checker = args.policies.load()?;
    if !args.destroy && !args.refresh_only && args.out.is_none() && !args.targets.any() {
        return exec_streamed(global, args, format, color, checker);
    }
    let mut inputs = load_inputs(global, &args.paths)?;
    keep_shard(&mut inputs, args.shard);
    let store = open_state_for_read(global)?;
    let rt = runtime()?;
    let targeting = args.targets.targeting();
    if args.refresh_only && (!args.refresh || targeting.is_partial() || !targeting.replace.is_empty()) {
        bail!("--refresh-only reads every recorded resource: it takes no --refresh=false, --target, --exclude or --replace");
    }
    let plan = if args.refresh_only {
        super::compute_refresh_only(&inputs, store.as_ref(), &rt)?
    } else if args.destroy {
        if !targeting.replace.is_empty() {
            bail!("--replace has no meaning with --destroy, which deletes everything it selects");
        }
        let whole = run::destroy_plan(&inputs.specs, &inputs.graphs, store.as_ref())?;
        workflow::select(whole, &targeting)?
    } else {
        let providers = if args.refresh { connect(&inputs.platform, &inputs.catalog, &rt)? } else { Providers::new() };
        compute_plan(&inputs, store.as_ref(), &providers, args.refresh, &targeting, &rt)?
    };
    let hints = !in_automation();
    if hints
        && !args.destroy
        && !args.refresh_only
        && inputs.platform_file.is_none()
        && args.refresh
        && format == Format::Text
    {
        eprintln!(
            "Note: no platform file (matih.hcl), so live objects were not read: this plan compares the specs \
             with the recorded state alone."
        );
    }
    let mut checker = checker;
    if let Some(c) = &mut checker {
        c.check_plan(&plan)?;
    }
    // Saved first, so that what is printed names the digest of the file as written; never when
    // a policy denies the plan.
    let digest = match &args.out {
        Some(out) if checker.as_ref().is_none_or(Checker::passed) => Some(plan::save_plan(&plan, out)?),
        _ => None,
    };
    if format == Format::Json && args.policies.json_shape == JsonShape::Terraform {
        print(&plan::render_terraform(&plan))?;
    } else {
        print(&render(&plan, format, color, digest.as_deref(), args.group.on(format)))?;
    }
    if let Some(c) = checker {
        c.report(args.out.is_some())?;
    }
    if let (Some(out), Some(digest)) = (&args.out, &digest) {
        if format == Format::Text {
            println!("\nSaved the plan to: {}", out.display());
            if hints {
                println!(
                    "To perform exactly these actions, run: matih apply {} --expect-digest {digest}",
                    out.display()
                );
            }
        }
    }
    Ok(if args.detailed_exitcode && plan.has_changes() { ExitCode::from(2) } else { ExitCode::SUCCESS })
}

/// The renderer a streamed plan goes through.
enum Renderer {
    Text(plan::TextStream),
    Json(plan::JsonStream),
    Markdown(plan::MarkdownStream),
    Terraform(plan::TerraformStream),
}

impl Renderer {
    /// With `group`, the groups' renderings wait in a spooled spill too (see `plan::Spill`).
    fn new(format: Format, color: bool, group: bool, shape: JsonShape) -> Renderer {
        use plan::Spill;
        match format {
            Format::Json if shape == JsonShape::Terraform => {
                Renderer::Terraform(plan::TerraformStream::new(Spill::spooled(), Spill::spooled()))
            }
            Format::Text => {
                let r = plan::TextStream::new(plan::TextOptions { color, digest: None }, Spill::spooled());
                Renderer::Text(if group { r.grouped(Spill::spooled()) } else { r })
            }
            Format::Json => {
                let r = plan::JsonStream::new(None, Spill::spooled());
                Renderer::Json(if group { r.grouped(Spill::spooled()) } else { r })
            }
            Format::Markdown => {
                let r = plan::MarkdownStream::new(None);
                Renderer::Markdown(if group { r.grouped(Spill::spooled()) } else { r })
            }
        }
    }

    fn preparer(&self) -> plan::Preparer {
        match self {
            Renderer::Text(r) => r.preparer(),
            Renderer::Json(r) => r.preparer(),
            Renderer::Markdown(r) => r.preparer(),
            Renderer::Terraform(_) => plan::Preparer::Nothing,
        }
    }

    fn push(&mut self, t: &plan::TenantPlan, prepared: plan::Prepared) -> std::io::Result<()> {
        match self {
            Renderer::Text(r) => r.push_prepared(t, prepared),
            Renderer::Json(r) => r.push_prepared(t, prepared),
            Renderer::Markdown(r) => r.push_prepared(t, prepared),
            Renderer::Terraform(r) => r.push(t),
        }
    }

    fn finish(self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        match self {
            Renderer::Text(r) => r.finish(out),
            Renderer::Json(r) => r.finish(out),
            Renderer::Markdown(r) => r.finish(out),
            Renderer::Terraform(r) => r.finish(out),
        }
    }
}

/// A plan that is neither saved nor targeted, of any number of tenants in bounded memory: each
/// tenant is read, compiled, diffed and rendered in turn (see `workflow::stream`), and the output
/// is written once everything succeeded. The same bytes as [`render`] of the whole plan.
fn exec_streamed(
    global: &Global,
    args: &Args,
    format: Format,
    color: bool,
    mut checker: Option<Checker>,
) -> Result<ExitCode> {
    let catalog = load_catalog(global)?;
    let (platform, platform_file, platform_diags) = load_platform(global);
    let rt = runtime()?;
    let keep_all = |_: &str| true;
    let shard = args.shard;
    let in_shard = move |slug: &str| shard.is_none_or(|s| workflow::shard_of(slug, s.n) == s.k - 1);
    // What the plan needs besides the files. When it cannot be had, the files are still checked
    // first: an error in them is what the user must see (as when the whole fleet is loaded first).
    let setup = || -> Result<_> {
        let store = open_state_for_read(global)?;
        let providers = if args.refresh { connect(&platform, &catalog, &rt)? } else { Providers::new() };
        Ok((store, providers))
    };
    let found = if matih::diag::has_errors(&platform_diags) { None } else { Some(setup()) };
    let (store, providers) = match found {
        Some(Ok(found)) => found,
        other => {
            let check = Stream { store: None, refresh: None, keep: &keep_all, prepare: plan::Preparer::Nothing };
            stream_inputs(global, &catalog, &args.paths, &check, &mut |_, _| {})?;
            // Without errors in the files (so the platform file had none either): the setup's.
            return Err(match other {
                Some(Err(e)) => e,
                _ => anyhow::Error::new(super::Reported),
            });
        }
    };
    let r = Refresh { providers: &providers, runtime: &rt, parallelism: DEFAULT_PARALLELISM };
    let mut renderer = Renderer::new(format, color, args.group.on(format), args.policies.json_shape);
    let with = Stream {
        store: Some(store.as_ref()),
        refresh: if args.refresh { Some(&r) } else { None },
        keep: &in_shard,
        prepare: renderer.preparer(),
    };
    let mut failed_output: Option<std::io::Error> = None;
    let mut failed_policy: Option<anyhow::Error> = None;
    let mut changes = false;
    let streamed = stream_inputs(global, &catalog, &args.paths, &with, &mut |t, prepared| {
        changes |= t.has_changes();
        if failed_output.is_none() {
            failed_output = renderer.push(&t, prepared).err();
        }
        if let (Some(c), None) = (&mut checker, &failed_policy) {
            failed_policy = c.check(&t, false).err();
        }
    })?;
    if let Some(Shard { k, n }) = args.shard {
        eprintln!("shard {k}/{n}: {} of {} tenant(s)", streamed.kept, streamed.tenants);
    }
    if let Some(e) = streamed.failed {
        return Err(e.into());
    }
    if !streamed.read_errors.is_empty() {
        for e in &streamed.read_errors {
            eprintln!("error: refresh: {e}");
        }
        bail!("{} resource(s) could not be read; no plan was made", streamed.read_errors.len());
    }
    if let Some(e) = failed_output {
        return Err(anyhow::Error::new(e).context("cannot write the plan to a temporary file"));
    }
    if let Some(e) = failed_policy {
        return Err(e);
    }
    if !in_automation() && platform_file.is_none() && args.refresh && format == Format::Text {
        eprintln!(
            "Note: no platform file (matih.hcl), so live objects were not read: this plan compares the specs \
             with the recorded state alone."
        );
    }
    let mut out = std::io::stdout().lock();
    match renderer.finish(&mut out).and_then(|_| std::io::Write::flush(&mut out)) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other?,
    }
    if let Some(c) = checker {
        c.report(false)?;
    }
    Ok(if args.detailed_exitcode && changes { ExitCode::from(2) } else { ExitCode::SUCCESS })
}
