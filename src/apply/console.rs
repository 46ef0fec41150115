//! Progress for people: one line per event, like Terraform's apply output.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use super::Hooks;
use crate::addr::ResourceAddr;
use crate::phase::Phase;
use crate::plan::Action;
use crate::provider::ProviderError;

/// Writes apply progress lines to a writer (stdout in the CLI). Lines of concurrent tenants
/// interleave, each prefixed with its tenant.
pub struct ConsoleHooks {
    out: Mutex<Box<dyn Write + Send>>,
}

impl ConsoleHooks {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        ConsoleHooks { out: Mutex::new(out) }
    }

    fn line(&self, s: String) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "{s}");
        let _ = out.flush();
    }
}

fn verb(action: Action) -> (&'static str, &'static str) {
    match action {
        Action::Create => ("Creating...", "Creation complete"),
        Action::Adopt => ("Adopting...", "Adoption complete"),
        Action::Update => ("Modifying...", "Modifications complete"),
        Action::Replace => ("Replacing...", "Replacement complete"),
        Action::Delete => ("Destroying...", "Destruction complete"),
        Action::NoOp => ("Checking...", "Unchanged"),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

impl Hooks for ConsoleHooks {
    fn phase_started(&self, tenant: &str, phase: Phase) {
        self.line(format!("{tenant}: Phase {}/10 {} started", phase.number(), phase.name()));
    }

    fn phase_finished(&self, tenant: &str, phase: Phase, ok: bool, elapsed: Duration) {
        let how = if ok { "complete" } else { "FAILED" };
        self.line(format!("{tenant}: Phase {}/10 {} {how} after {}", phase.number(), phase.name(), secs(elapsed)));
    }

    fn resource_started(&self, tenant: &str, addr: &ResourceAddr, action: Action) {
        self.line(format!("{tenant}: {addr}: {}", verb(action).0));
    }

    fn resource_retrying(&self, tenant: &str, err: &ProviderError, attempt: u32, delay: Duration) {
        self.line(format!("{tenant}: {err} (attempt {attempt} failed; retrying in {})", secs(delay)));
    }

    fn resource_finished(
        &self,
        tenant: &str,
        addr: &ResourceAddr,
        action: Action,
        result: Result<Duration, &ProviderError>,
    ) {
        match result {
            Ok(d) => self.line(format!("{tenant}: {addr}: {} after {}", verb(action).1, secs(d))),
            Err(e) => self.line(format!("{tenant}: {addr}: failed: {}", e.message)),
        }
    }

    fn tenant_note(&self, tenant: &str, note: &str) {
        self.line(format!("{tenant}: {note}"));
    }

    fn rollback_started(&self, tenant: &str, phase: Phase, resources: usize) {
        self.line(format!(
            "{tenant}: rolling back phase {}/10 {}: deleting {resources} resource(s) created by this run",
            phase.number(),
            phase.name()
        ));
    }
}
