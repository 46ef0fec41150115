//! Progress for terminals: [`LiveHooks`] keeps one line per tenant redrawn in place (phase N/10,
//! resources done/total, elapsed). The plain lines of [`super::ConsoleHooks`] are for everything
//! else; machines read the events ([`super::EventHooks`], `--progress json`).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{Hooks, RunOutcome};
use crate::addr::ResourceAddr;
use crate::phase::Phase;
use crate::plan::Action;
use crate::provider::ProviderError;

/// Where one tenant's run stands, for the live display.
struct TenantLine {
    started: Instant,
    phase: Option<Phase>,
    done: usize,
    total: usize,
    /// Set when the run ended: `ACTIVE in 12.3s`, `FAILED in 4.0s`.
    finished: Option<String>,
    retries: usize,
}

struct Live {
    out: Box<dyn Write + Send>,
    tenants: BTreeMap<String, TenantLine>,
    /// Lines of the live block currently on screen (below the cursor's line start).
    drawn: usize,
    stopped: bool,
}

impl Live {
    fn render_line(slug: &str, t: &TenantLine) -> String {
        let elapsed = format!("{:.0}s", t.started.elapsed().as_secs_f64());
        if let Some(f) = &t.finished {
            return format!("{slug:<20} {f}  ({}/{} resources)", t.done, t.total);
        }
        let phase =
            t.phase.map_or_else(|| "starting".to_string(), |p| format!("phase {:>2}/10 {:<26}", p.number(), p.name()));
        let retries = if t.retries > 0 { format!("  {} retries", t.retries) } else { String::new() };
        format!("{slug:<20} {phase} {:>3}/{:<3} resources  {elapsed:>5} elapsed{retries}", t.done, t.total)
    }

    /// Erases the live block and prints it again, with `messages` above it.
    fn redraw(&mut self, messages: &[String]) {
        let mut buf = String::new();
        if self.drawn > 0 {
            buf.push_str(&format!("\x1b[{}A", self.drawn));
        }
        for m in messages {
            buf.push_str("\r\x1b[2K");
            buf.push_str(m);
            buf.push('\n');
        }
        for (slug, t) in &self.tenants {
            buf.push_str("\r\x1b[2K");
            buf.push_str(&Live::render_line(slug, t));
            buf.push('\n');
        }
        buf.push_str("\x1b[J");
        self.drawn = self.tenants.len();
        let _ = self.out.write_all(buf.as_bytes());
        let _ = self.out.flush();
    }
}

/// The terminal display: one line per tenant, redrawn in place on every event and every second;
/// retries, failures and rollbacks are printed above it as plain lines, so they stay on screen.
pub struct LiveHooks {
    live: Arc<(Mutex<Live>, Condvar)>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl LiveHooks {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        let live =
            Arc::new((Mutex::new(Live { out, tenants: BTreeMap::new(), drawn: 0, stopped: false }), Condvar::new()));
        let for_ticker = live.clone();
        let ticker = std::thread::spawn(move || {
            let (lock, cv) = &*for_ticker;
            let mut l = lock.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                l = cv.wait_timeout(l, Duration::from_secs(1)).unwrap_or_else(|e| e.into_inner()).0;
                if l.stopped {
                    return;
                }
                if l.tenants.values().any(|t| t.finished.is_none()) {
                    l.redraw(&[]);
                }
            }
        });
        LiveHooks { live, ticker: Some(ticker) }
    }

    fn update(&self, tenant: &str, messages: Vec<String>, f: impl FnOnce(&mut TenantLine)) {
        let mut l = self.live.0.lock().unwrap_or_else(|e| e.into_inner());
        let line = l.tenants.entry(tenant.to_string()).or_insert_with(|| TenantLine {
            started: Instant::now(),
            phase: None,
            done: 0,
            total: 0,
            finished: None,
            retries: 0,
        });
        f(line);
        l.redraw(&messages);
    }
}

impl Drop for LiveHooks {
    fn drop(&mut self) {
        self.live.0.lock().unwrap_or_else(|e| e.into_inner()).stopped = true;
        self.live.1.notify_all();
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

impl Hooks for LiveHooks {
    fn tenant_started(&self, tenant: &str, changes: usize) {
        self.update(tenant, Vec::new(), |t| {
            t.started = Instant::now();
            t.total = changes;
        });
    }

    fn tenant_finished(&self, tenant: &str, outcome: &RunOutcome) {
        let status = serde_json::to_value(outcome.status).ok().and_then(|v| v.as_str().map(str::to_string));
        let text = format!("{} in {:.1}s", status.unwrap_or_default(), outcome.duration.as_secs_f64());
        self.update(tenant, Vec::new(), |t| t.finished = Some(text));
    }

    fn phase_started(&self, tenant: &str, phase: Phase) {
        self.update(tenant, Vec::new(), |t| t.phase = Some(phase));
    }

    fn phase_finished(&self, tenant: &str, phase: Phase, ok: bool, elapsed: Duration) {
        let messages = if ok {
            Vec::new()
        } else {
            vec![format!(
                "{tenant}: Phase {}/10 {} FAILED after {:.1}s",
                phase.number(),
                phase.name(),
                elapsed.as_secs_f64()
            )]
        };
        self.update(tenant, messages, |_| {});
    }

    fn resource_retrying(&self, tenant: &str, err: &ProviderError, attempt: u32, delay: Duration) {
        let m = format!("{tenant}: {err} (attempt {attempt} failed; retrying in {:.1}s)", delay.as_secs_f64());
        self.update(tenant, vec![m], |t| t.retries += 1);
    }

    fn resource_finished(
        &self,
        tenant: &str,
        addr: &ResourceAddr,
        _action: Action,
        result: Result<Duration, &ProviderError>,
    ) {
        let messages = match result {
            Ok(_) => Vec::new(),
            Err(e) => vec![format!("{tenant}: {addr}: failed: {}", e.message)],
        };
        self.update(tenant, messages, |t| {
            if result.is_ok() {
                t.done += 1;
            }
        });
    }

    fn tenant_note(&self, tenant: &str, note: &str) {
        // Above the live block, without a line of its own: the tenant may never run here.
        self.live.0.lock().unwrap_or_else(|e| e.into_inner()).redraw(&[format!("{tenant}: {note}")]);
    }

    fn rollback_started(&self, tenant: &str, phase: Phase, resources: usize) {
        let m = format!(
            "{tenant}: rolling back phase {}/10 {}: deleting {resources} resource(s) created by this run",
            phase.number(),
            phase.name()
        );
        self.update(tenant, vec![m], |_| {});
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::tests::Buf;

    #[test]
    fn live_display_redraws_one_line_per_tenant_in_place() {
        let buf = Buf::default();
        let hooks = LiveHooks::new(Box::new(buf.clone()));
        let addr: ResourceAddr = "kubernetes_namespace.tenant".parse().unwrap();
        hooks.tenant_started("acme", 2);
        hooks.tenant_started("globex", 5);
        hooks.phase_started("acme", Phase::DeployCoreServices);
        hooks.resource_finished("acme", &addr, Action::Create, Ok(Duration::from_millis(5)));
        drop(hooks);
        let text = buf.text();
        assert!(text.contains("\x1b[2A"), "moves up over the two tenant lines: {text:?}");
        let last = text.rsplit("\x1b[2A").next().unwrap();
        assert!(last.contains("acme") && last.contains("phase  3/10 DEPLOY_CORE_SERVICES"), "{last:?}");
        assert!(last.contains("1/2   resources"), "{last:?}");
        assert!(last.contains("globex") && last.contains("starting"), "{last:?}");
    }
}
