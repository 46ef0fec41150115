//! Helm releases (`helm_release`), through the real `helm` binary: the way the platform ships its
//! services when the platform file says `services { delivery = "helm" }`.
//!
//! A release's attributes are what matih decides and reads back: `name`, `namespace`, `chart`,
//! `version` (the chart's, from `helm get metadata`), `values` (the user-supplied values, as
//! `helm get values` prints them), `status` (`deployed`; anything else read back is drift) and
//! `live_changes` (none: the release's objects as the chart renders them; a `kubectl edit` of one
//! of them is read back as a line here, so it is drift that the next upgrade reverts).
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
    /// Reads the live objects of a release's manifest (drift of what the chart sets).
    client: kube::Client,
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
        let config = match &settings.target {
            HelmTarget::Url(url) => {
                kube::Config::new(url.parse().map_err(|e| format!("invalid Kubernetes API URL {url:?}: {e}"))?)
            }
            HelmTarget::Kubeconfig { context } => {
                let opts = kube::config::KubeConfigOptions { context: context.clone(), ..Default::default() };
                kube::Config::from_kubeconfig(&opts).await.map_err(|e| format!("cannot load kubeconfig: {e}"))?
            }
        };
        let client = kube::Client::try_from(config).map_err(|e| format!("cannot create a Kubernetes client: {e}"))?;
        let (context, kubeconfig) = match settings.target {
            HelmTarget::Kubeconfig { context } => (context, None),
            HelmTarget::Url(url) => {
                (None, Some(write_kubeconfig(&url).map_err(|e| format!("helm's kubeconfig: {e}"))?))
            }
        };
        Ok(HelmProvider { binary, client, charts: settings.charts, timeout: settings.timeout, context, kubeconfig })
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
        self.run_or_message(resource, args, stdin)
            .await?
            .map_err(|message| error(resource, format!("helm {}: {message}", args[0])))
    }

    /// Runs helm: its standard output when it succeeds, else helm's one-line message (for callers
    /// that treat some failures as answers). Only a helm that cannot be started is an error here.
    async fn run_or_message(
        &self,
        resource: &ResourceObject,
        args: &[&str],
        stdin: Option<Vec<u8>>,
    ) -> Result<Result<String, String>, ProviderError> {
        let out = self
            .helm(args, stdin)
            .await
            .map_err(|e| error(resource, format!("running {}: {e}", self.binary.display())))?;
        Ok(if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(helm_message(&out.stderr))
        })
    }

    async fn read_release(&self, resource: &ResourceObject) -> Result<Option<Observed>, ProviderError> {
        let (name, ns) = name_ns(resource)?;
        let meta = match self
            .run_or_message(resource, &["get", "metadata", name, "--namespace", ns, "--output", "json"], None)
            .await?
        {
            Ok(meta) => meta,
            Err(message) if message.contains("release: not found") => return Ok(None),
            Err(message) => return Err(error(resource, format!("helm get metadata: {message}"))),
        };
        let meta: serde_json::Value = serde_json::from_str(&meta)
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
            ("live_changes".to_string(), Value::List(self.live_changes(resource, name, ns).await?)),
        ]);
        let revision = meta["revision"].as_i64().unwrap_or_default();
        Ok(Some(Observed {
            attrs,
            outputs: BTreeMap::from([("revision".to_string(), Value::Int(revision))]),
            ..Observed::default()
        }))
    }

    /// What differs between the release's manifest (`helm get manifest`) and the live objects, on
    /// the fields the chart sets: one line per object deleted or field changed outside helm. A field
    /// another controller manages now (an autoscaler's `spec.replicas`, from `managedFields`) is
    /// not a change; an edit made with `kubectl` is.
    async fn live_changes(&self, resource: &ResourceObject, name: &str, ns: &str) -> Result<Vec<Value>, ProviderError> {
        use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
        let manifest = self.run(resource, &["get", "manifest", name, "--namespace", ns], None).await?;
        let docs = yaml_rust2::YamlLoader::load_from_str(&manifest)
            .map_err(|e| error(resource, format!("the release's manifest is not YAML: {e}")))?;
        let mut changes = Vec::new();
        for doc in docs.iter().map(yaml_to_json) {
            let (Some(api_version), Some(kind), Some(obj_name)) =
                (doc["apiVersion"].as_str(), doc["kind"].as_str(), doc["metadata"]["name"].as_str())
            else {
                continue;
            };
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
            let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
            let live = api.get_opt(obj_name).await.map_err(|e| ProviderError {
                transient: matches!(&e, kube::Error::Api(s) if s.code == 429 || s.code >= 500)
                    || matches!(e, kube::Error::HyperError(_) | kube::Error::Service(_)),
                ..error(resource, format!("reading {kind} {obj_name}: {e}"))
            })?;
            let Some(live) = live else {
                changes.push(format!("{kind} {obj_name}: deleted"));
                continue;
            };
            let live = serde_json::to_value(&live).unwrap_or_default();
            let others: Vec<&serde_json::Value> = live["metadata"]["managedFields"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|m| m["manager"].as_str().is_some_and(|n| n != "helm" && !n.starts_with("kubectl")))
                .map(|m| &m["fieldsV1"])
                .collect();
            for key in ["spec", "data", "metadata"] {
                let desired = if key == "metadata" {
                    serde_json::json!({"labels": doc["metadata"]["labels"], "annotations": doc["metadata"]["annotations"]})
                } else {
                    doc[key].clone()
                };
                let mut found = Vec::new();
                compare(&desired, &live[key], key, &mut found);
                for (path, live_value, chart_value) in found {
                    if !yielded(&others, &path) {
                        changes
                            .push(format!("{kind} {obj_name}: {path} = {live_value} (the chart sets {chart_value})"));
                    }
                }
            }
        }
        changes.sort();
        Ok(changes.into_iter().map(Value::str).collect())
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

/// YAML (a manifest document) as JSON.
fn yaml_to_json(y: &yaml_rust2::Yaml) -> serde_json::Value {
    use yaml_rust2::Yaml;
    match y {
        Yaml::Real(r) => r.parse::<f64>().ok().map(serde_json::Value::from).unwrap_or(serde_json::Value::Null),
        Yaml::Integer(i) => (*i).into(),
        Yaml::String(s) => s.clone().into(),
        Yaml::Boolean(b) => (*b).into(),
        Yaml::Array(a) => a.iter().map(yaml_to_json).collect(),
        Yaml::Hash(h) => h
            .iter()
            .filter_map(|(k, v)| match k {
                Yaml::String(k) => Some((k.clone(), yaml_to_json(v))),
                Yaml::Integer(i) => Some((i.to_string(), yaml_to_json(v))),
                Yaml::Boolean(b) => Some((b.to_string(), yaml_to_json(v))),
                _ => None,
            })
            .collect::<serde_json::Map<_, _>>()
            .into(),
        Yaml::Alias(_) | Yaml::Null | Yaml::BadValue => serde_json::Value::Null,
    }
}

/// The leaves of `desired` whose live value differs: `(path, live, desired)`. Quantities compare by
/// amount (`1000m` is `1`); list items by position, and a list of another length is one change.
fn compare(desired: &serde_json::Value, live: &serde_json::Value, path: &str, out: &mut Vec<(String, String, String)>) {
    use serde_json::Value as J;
    match (desired, live) {
        (J::Null, _) => {}
        (J::Object(d), _) => {
            for (k, v) in d {
                let sub = if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    format!("{path}.{k}")
                } else {
                    format!("{path}[{k:?}]")
                };
                compare(v, live.get(k).unwrap_or(&J::Null), &sub, out);
            }
        }
        (J::Array(d), J::Array(l)) if d.len() == l.len() => {
            for (i, (dv, lv)) in d.iter().zip(l).enumerate() {
                compare(dv, lv, &format!("{path}[{i}]"), out);
            }
        }
        (J::Array(d), J::Array(l)) => {
            out.push((path.into(), format!("{} items", l.len()), format!("{} items", d.len())))
        }
        (d, l) if d == l => {}
        (J::String(d), J::String(l))
            if crate::quantity::nanos(d).is_some() && crate::quantity::nanos(d) == crate::quantity::nanos(l) => {}
        (d, l) => out.push((path.into(), l.to_string(), d.to_string())),
    }
}

/// Whether a field at `path` (`spec.replicas`) is managed by one of `others` (their `fieldsV1`).
/// Only paths of map keys are matched: a field inside a list item is never taken as yielded.
fn yielded(others: &[&serde_json::Value], path: &str) -> bool {
    if path.contains('[') {
        return false;
    }
    others.iter().any(|fields| path.split('.').try_fold(*fields, |node, key| node.get(format!("f:{key}"))).is_some())
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
    fn live_objects_differ_on_the_fields_the_chart_sets_unless_a_controller_took_them() {
        let desired = serde_json::json!({"replicas": 2, "template": {"spec": {"containers": [
            {"name": "web", "resources": {"limits": {"cpu": "1000m", "memory": "1Gi"}}}]}}});
        let live = serde_json::json!({"replicas": 5, "progressDeadlineSeconds": 600, "template": {"spec": {"containers": [
            {"name": "web", "terminationMessagePath": "/dev/termination-log",
             "resources": {"limits": {"cpu": "1", "memory": "2Gi"}}}]}}});
        let mut found = Vec::new();
        compare(&desired, &live, "spec", &mut found);
        assert_eq!(
            found,
            [
                ("spec.replicas".to_string(), "5".to_string(), "2".to_string()),
                (
                    "spec.template.spec.containers[0].resources.limits.memory".to_string(),
                    "\"2Gi\"".to_string(),
                    "\"1Gi\"".to_string()
                ),
            ],
            "server defaults are not changes, 1000m is 1"
        );
        let autoscaler = serde_json::json!({"f:spec": {"f:replicas": {}}});
        assert!(yielded(&[&autoscaler], "spec.replicas"));
        assert!(!yielded(&[&autoscaler], "spec.template"));
        assert!(!yielded(&[], "spec.replicas"));
        let yaml = yaml_rust2::YamlLoader::load_from_str("a:\n  b: [1, \"x\", true]\n").unwrap();
        assert_eq!(yaml_to_json(&yaml[0]), serde_json::json!({"a": {"b": [1, "x", true]}}));
    }

    #[test]
    fn a_missing_binary_names_the_setting() {
        let e = find_binary(Some("/nonexistent/helm")).unwrap_err();
        assert!(e.contains("helm { binary = … }") && e.contains("/nonexistent/helm"), "{e}");
        assert_eq!(ChartSource::parse("https://c.example/x"), ChartSource::Repository("https://c.example/x".into()));
        assert_eq!(ChartSource::parse("charts"), ChartSource::Directory("charts".into()));
    }
}
