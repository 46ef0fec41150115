//! What `matih apply` and `matih destroy` print around a run: the plan's counts as a JSON event,
//! and the summary after it (a JSON event, or the line Terraform users know).

use std::process::ExitCode;

use matih::apply::write_event;
use matih::events::{Event, PlanCounts, RunSummary};
use matih::plan::Plan;
use matih::workflow::run::FleetOutcome;

/// The `plan` event for `--progress json`, instead of the rendered plan.
pub fn plan_event(plan: &Plan) {
    let s = plan.summary();
    let counts = PlanCounts { to_adopt: s.adopt, to_add: s.to_add(), to_change: s.change, to_destroy: s.to_destroy() };
    write_event(&mut std::io::stdout(), &Event::plan(counts));
}

/// Prints each failed tenant's error, then the summary, and returns the exit code of the run.
pub fn summary(outcome: &FleetOutcome, json: bool, destroy: bool) -> ExitCode {
    for (slug, r) in &outcome.results {
        if let Err(e) = r {
            eprintln!("error: {slug}: {e}");
        }
    }
    let t = outcome.tally();
    let (failed, refused, tenants) = (t.failed, t.refused, outcome.results.len());
    let (added, changed, destroyed, overtaken) = (t.added, t.changed, t.destroyed, t.overtaken);
    let adopted = if t.adopted > 0 { format!("{} adopted, ", t.adopted) } else { String::new() };
    if json {
        let counts = RunSummary {
            tenants,
            failed,
            applied_by_another_run: overtaken,
            adopted: t.adopted,
            added,
            changed,
            destroyed,
        };
        let ev = Event::summary(counts, failed == 0, outcome.elapsed.as_millis() as u64);
        write_event(&mut std::io::stdout(), &ev);
        return if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) };
    }
    let verb = if destroy { "Destroy" } else { "Apply" };
    let others = if overtaken > 0 { format!("; {overtaken} already done by another run") } else { String::new() };
    if failed == 0 {
        println!(
            "\n{verb} complete! Resources: {adopted}{added} added, {changed} changed, {destroyed} destroyed. ({tenants} tenant(s) in {:.1}s{others})",
            outcome.elapsed.as_secs_f64()
        );
        ExitCode::SUCCESS
    } else if refused == failed {
        eprintln!(
            "\n{verb} refused for {failed} of {tenants} tenant(s) (see above); nothing was changed for {}.",
            if failed == 1 { "it" } else { "them" }
        );
        ExitCode::from(1)
    } else {
        eprintln!(
            "\n{verb} failed for {} of {tenants} tenant(s){}; what finished is recorded in the state, and `matih apply` resumes from there.",
            failed - refused,
            if refused > 0 { format!(" and was refused for {refused} (nothing changed for those)") } else { String::new() }
        );
        ExitCode::from(1)
    }
}
