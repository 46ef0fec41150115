//! Helm releases (`helm_release`), through the real `helm` binary: the way the platform ships its
//! services when the platform file says `services { delivery = "helm" }`.
//!
//! A release's attributes are what matih decides and reads back: `name`, `namespace`, `chart`,
//! `version` (the chart's, from `helm get metadata`), `values` (the user-supplied values, as
//! `helm get values` prints them) and `status` (`deployed`; anything else read back is drift).
//! Apply is `helm upgrade --install --wait --atomic`: a first install that fails is uninstalled by helm, a failed upgrade goes back
//! to the previous revision, and the engine's phase rollback uninstalls what the run installed.
//! Values go to helm on its standard input, never through a file.
//!
//! **Invariant:** knows nothing of graphs, plans or state; every failure names the release's
//! address and carries helm's own message.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::{Observed, Provider, ProviderError, ProviderFuture, ResourceObject, TenantRef};
use crate::value::Value;

/// The kind this provider handles.
pub const KIND: &str = "helm_release";

/// Which cluster helm talks to (the platform file's `kubernetes` block).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HelmTarget {
    /// An explicit API server URL (the local test servers): helm gets a kubeconfig naming only it.
    Url(String),
    /// The user's kubeconfig (`KUBECONFIG` or `~/.kube/config`), optionally a named context.
    Kubeconfig { context: Option<String> },
}

/// Where the catalog's charts come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChartSource {
    /// A directory holding one directory per chart (`DIR/matih-service`).
    Directory(PathBuf),
    /// An HTTP(S) chart repository (`URL/index.yaml`), passed to helm as `--repo`.
    Repository(String),
}

impl ChartSource {
    /// `http://…` or `https://…` is a chart repository; anything else a directory.
    pub fn parse(s: &str) -> ChartSource {
        if s.starts_with("http://") || s.starts_with("https://") {
            ChartSource::Repository(s.to_string())
        } else {
            ChartSource::Directory(PathBuf::from(s))
        }
    }
}

#[derive(Clone, Debug)]
pub struct HelmSettings {
    /// The binary; `None`: `helm` on the PATH.
    pub binary: Option<String>,
    pub charts: ChartSource,
    pub target: HelmTarget,
    /// `--timeout` of install, upgrade and uninstall.
    pub timeout: Duration,
}

pub struct HelmProvider {
    binary: PathBuf,
    charts: ChartSource,
    timeout: Duration,
    /// `--kube-context`, or the kubeconfig written for an explicit URL (removed on drop).
    context: Option<String>,
    kubeconfig: Option<PathBuf>,
}

impl Drop for HelmProvider {
    fn drop(&mut self) {
        if let Some(dir) = self.kubeconfig.as_ref().and_then(|k| k.parent()) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The `helm` binary `binary` names (a path, or a name looked up on the PATH); the error says
/// which platform-file setting to change.
pub fn find_binary(binary: Option<&str>) -> Result<PathBuf, String> {
    let name = binary.unwrap_or("helm");
    let found = if name.contains('/') {
        Some(PathBuf::from(name)).filter(|p| p.is_file())
    } else {
        std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .find(|p| p.is_file())
    };
    found.ok_or_else(|| match binary {
        Some(b) => format!(
            "services are delivered with helm (services {{ delivery = \"helm\" }}) but the helm binary {b:?} \
             named by `helm {{ binary = … }}` in the platform file does not exist"
        ),
        None => "services are delivered with helm (services { delivery = \"helm\" }) but `helm` is not on the \
                 PATH: install Helm 3 or set `helm { binary = \"/path/to/helm\" }` in the platform file"
            .to_string(),
    })
}

impl HelmProvider {
    /// Finds the binary and checks that it runs (`helm version`); writes the kubeconfig of an
    /// explicit API server URL.
    pub async fn connect(settings: HelmSettings) -> Result<HelmProvider, String> {
        let binary = find_binary(settings.binary.as_deref())?;
        let out = Command::new(&binary)
            .args(["version", "--short"])
            .output()
            .await
            .map_err(|e| format!("running {}: {e}", binary.display()))?;
        if !out.status.success() || !String::from_utf8_lossy(&out.stdout).starts_with("v3.") {
            return Err(format!(
                "{} is not Helm 3 (`helm version --short` said {:?}); set `helm {{ binary = … }}` in the platform file",
                binary.display(),
                String::from_utf8_lossy(if out.stdout.is_empty() { &out.stderr } else { &out.stdout }).trim()
            ));
        }
        let (context, kubeconfig) = match settings.target {
            HelmTarget::Kubeconfig { context } => (context, None),
            HelmTarget::Url(url) => {
                (None, Some(write_kubeconfig(&url).map_err(|e| format!("helm's kubeconfig: {e}"))?))
            }
        };
        Ok(HelmProvider { binary, charts: settings.charts, timeout: settings.timeout, context, kubeconfig })
    }

    /// `helm ARGS` against the configured cluster, `stdin` written to its standard input.
    async fn helm(&self, args: &[&str], stdin: Option<Vec<u8>>) -> std::io::Result<std::process::Output> {
        let mut cmd = Command::new(&self.binary);
        cmd.args(args).kill_on_drop(true).stdout(Stdio::piped()).stderr(Stdio::piped());
        if let Some(ctx) = &self.context {
            cmd.args(["--kube-context", ctx]);
        }
        if let Some(k) = &self.kubeconfig {
            cmd.env("KUBECONFIG", k);
        }
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = cmd.spawn()?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(&input).await?;
            drop(pipe);
        }
        child.wait_with_output().await
    }

    async fn run(
        &self,
        resource: &ResourceObject,
        args: &[&str],
        stdin: Option<Vec<u8>>,
    ) -> Result<String, ProviderError> {
        let out = self
            .helm(args, stdin)
            .await
            .map_err(|e| error(resource, format!("running {}: {e}", self.binary.display())))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(error(resource, format!("helm {}: {}", args[0], helm_message(&out.stderr))))
        }
    }

    async fn read_release(&self, resource: &ResourceObject) -> Result<Option<Observed>, ProviderError> {
        let (name, ns) = name_ns(resource)?;
        let out = self
            .helm(&["get", "metadata", name, "--namespace", ns, "--output", "json"], None)
            .await
            .map_err(|e| error(resource, format!("running {}: {e}", self.binary.display())))?;
        if !out.status.success() {
            let message = helm_message(&out.stderr);
            if message.contains("release: not found") {
                return Ok(None);
            }
            return Err(error(resource, format!("helm get metadata: {message}")));
        }
        let meta: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| error(resource, format!("helm get metadata printed no JSON: {e}")))?;
        let values = self.run(resource, &["get", "values", name, "--namespace", ns, "--output", "json"], None).await?;
        let values: serde_json::Value = serde_json::from_str(&values)
            .map_err(|e| error(resource, format!("helm get values printed no JSON: {e}")))?;
        let values = if values.is_null() { serde_json::json!({}) } else { values };
        let values: Value = serde_json::from_value(values)
            .map_err(|e| error(resource, format!("the release's values are not plain data: {e}")))?;
        let text = |v: &serde_json::Value| Value::str(v.as_str().unwrap_or_default());
        let attrs = BTreeMap::from([
            ("name".to_string(), Value::str(name)),
            ("namespace".to_string(), Value::str(ns)),
            ("chart".to_string(), text(&meta["chart"])),
            ("version".to_string(), text(&meta["version"])),
            ("values".to_string(), values),
            ("status".to_string(), text(&meta["status"])),
        ]);
        let revision = meta["revision"].as_i64().unwrap_or_default();
        Ok(Some(Observed {
            attrs,
            outputs: BTreeMap::from([("revision".to_string(), Value::Int(revision))]),
            ..Observed::default()
        }))
    }

    async fn upgrade_install(&self, resource: &ResourceObject) -> Result<Observed, ProviderError> {
        let (name, ns) = name_ns(resource)?;
        let chart = attr_str(resource, "chart")?;
        let version = attr_str(resource, "version")?;
        let values = resource.attrs.get("values").cloned().unwrap_or(Value::Map(BTreeMap::new()));
        let values =
            serde_json::to_vec(&values).map_err(|e| error(resource, format!("values could not be written: {e}")))?;
        let chart_ref = match &self.charts {
            ChartSource::Directory(dir) => dir.join(chart).to_string_lossy().into_owned(),
            ChartSource::Repository(_) => chart.to_string(),
        };
        // helm ignores --version for a chart directory: check the directory's own version first.
        if let ChartSource::Directory(_) = &self.charts {
            let shown = self.run(resource, &["show", "chart", &chart_ref], None).await?;
            let found = shown.lines().find_map(|l| l.strip_prefix("version:")).map(str::trim).unwrap_or_default();
            if found != version {
                return Err(error(
                    resource,
                    format!("chart {chart_ref} is version {found}, the catalog asks for {version}"),
                ));
            }
        }
        let timeout = format!("{}ms", self.timeout.as_millis());
        let mut args = vec![
            "upgrade",
            "--install",
            name,
            &chart_ref,
            "--namespace",
            ns,
            "--version",
            version,
            "--values",
            "-",
            "--wait",
            "--atomic",
            "--timeout",
            &timeout,
        ];
        if let ChartSource::Repository(url) = &self.charts {
            args.extend(["--repo", url.as_str()]);
        }
        self.run(resource, &args, Some(values)).await?;
        self.read_release(resource)
            .await?
            .ok_or_else(|| error(resource, "helm reported success but the release is not there".into()))
    }

    async fn uninstall(&self, resource: &ResourceObject) -> Result<(), ProviderError> {
        let (name, ns) = name_ns(resource)?;
        let timeout = format!("{}ms", self.timeout.as_millis());
        let args = ["uninstall", name, "--namespace", ns, "--wait", "--timeout", &timeout];
        let out = self
            .helm(&args, None)
            .await
            .map_err(|e| error(resource, format!("running {}: {e}", self.binary.display())))?;
        let message = helm_message(&out.stderr);
        if out.status.success() || message.contains("not found") {
            Ok(())
        } else {
            Err(error(resource, format!("helm uninstall: {message}")))
        }
    }
}

impl Provider for HelmProvider {
    fn handles(&self, kind: &str) -> bool {
        kind == KIND
    }

    fn read<'a>(
        &'a self,
        _tenant: &'a TenantRef,
        resource: &'a ResourceObject,
    ) -> ProviderFuture<'a, Option<Observed>> {
        Box::pin(self.read_release(resource))
    }

    fn apply<'a>(&'a self, _tenant: &'a TenantRef, resource: &'a ResourceObject) -> ProviderFuture<'a, Observed> {
        Box::pin(self.upgrade_install(resource))
    }

    fn delete<'a>(&'a self, _tenant: &'a TenantRef, resource: &'a ResourceObject) -> ProviderFuture<'a, ()> {
        Box::pin(self.uninstall(resource))
    }
}

fn error(resource: &ResourceObject, message: String) -> ProviderError {
    ProviderError { address: resource.addr.clone(), path: None, message, transient: false }
}

fn attr_str<'a>(resource: &'a ResourceObject, key: &str) -> Result<&'a str, ProviderError> {
    resource.attrs.get(key).and_then(Value::as_str).ok_or_else(|| ProviderError {
        path: Some(key.to_string()),
        ..error(resource, format!("{key} must be a string"))
    })
}

fn name_ns(resource: &ResourceObject) -> Result<(&str, &str), ProviderError> {
    Ok((attr_str(resource, "name")?, attr_str(resource, "namespace")?))
}

/// helm's own message: its stderr without the `Error: ` prefix, on one line.
fn helm_message(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let joined = lines.join(" ");
    joined.strip_prefix("Error: ").unwrap_or(&joined).to_string()
}

/// A kubeconfig naming only `url` (no credentials: the local test servers), in a fresh private
/// directory under the system's temporary directory.
fn write_kubeconfig(url: &str) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("matih-helm-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    let path = dir.join("kubeconfig");
    let doc = serde_json::json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "matih",
        "clusters": [{"name": "matih", "cluster": {"server": url}}],
        "contexts": [{"name": "matih", "context": {"cluster": "matih", "user": "matih"}}],
        "users": [{"name": "matih", "user": {}}],
    });
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
    std::io::Write::write_all(&mut f, doc.to_string().as_bytes())?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helm_messages_lose_the_error_prefix_and_stay_on_one_line() {
        assert_eq!(helm_message(b"Error: release: not found\n"), "release: not found");
        assert_eq!(helm_message(b"Error: UPGRADE FAILED: x\n  more\n"), "UPGRADE FAILED: x more");
    }

    #[test]
    fn a_missing_binary_names_the_setting() {
        let e = find_binary(Some("/nonexistent/helm")).unwrap_err();
        assert!(e.contains("helm { binary = … }") && e.contains("/nonexistent/helm"), "{e}");
        assert_eq!(ChartSource::parse("https://c.example/x"), ChartSource::Repository("https://c.example/x".into()));
        assert_eq!(ChartSource::parse("charts"), ChartSource::Directory("charts".into()));
    }
}
