//! Where `matih`'s logs go.

use anyhow::Result;

/// Logs go to stderr at the level of `MATIH_LOG` (none by default), or, with `MATIH_LOG_PATH`, are
/// appended to that file (at `MATIH_LOG`'s level, `info` when it is not set) and kept off the
/// terminal.
pub fn init() -> Result<()> {
    use anyhow::Context;
    use tracing_subscriber::EnvFilter;
    let path = std::env::var_os("MATIH_LOG_PATH").filter(|p| !p.is_empty());
    let Some(path) = path else {
        tracing_subscriber::fmt()
            .with_env_filter(matih::transport::log_filter("MATIH_LOG"))
            .with_writer(std::io::stderr)
            .init();
        return Ok(());
    };
    let filter = matih::transport::cap_log_filter(match std::env::var("MATIH_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::new(v),
        _ => EnvFilter::new("info"),
    });
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("MATIH_LOG_PATH: cannot open {}", std::path::Path::new(&path).display()))?;
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(std::sync::Mutex::new(file)).init();
    Ok(())
}
