//! Helm releases (`helm_release`), through the real `helm` binary: the way the platform ships its
//! services when the platform file says `services { delivery = "helm" }`.
//!
//! A release's attributes are what matih decides and reads back: `name`, `namespace`, `chart`,
//! `version` (the chart's, from `helm get metadata`), `values` (the user-supplied values, as
//! `helm status` prints them), `status` (`deployed`; anything else read back is drift) and
//! `live_changes` (none: the release's objects as the chart renders them; a `kubectl edit` of one
//! of them is read back as a line here, so it is drift that the next upgrade reverts).
//! Apply is `helm upgrade --install --wait --atomic`: a first install that fails is uninstalled by helm, a failed upgrade goes back
//! to the previous revision, and the engine's phase rollback uninstalls what the run installed.
//! Values go to helm on its standard input, never through a file. A release with a LoadBalancer
//! Service (the ingress controller's) waits for its external IP as the platform guide says and outputs it
//! (`load_balancer_ip`). `preview` is helm-diff's view for plans: `helm template` of the desired
//! chart and values against `helm get manifest`, object by object, Secret values masked.
//! Charts come from a directory, an HTTP chart repository (`--repo`) or an OCI registry (`oci://`).
//!
//! **Invariant:** knows nothing of graphs, plans or state; every failure names the release's
//! address and carries helm's own message.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::{Observed, Provider, ProviderError, ProviderFuture, RenderedChange, ResourceObject, TenantRef};
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
    /// An OCI registry namespace (`oci://registry.example/charts`): the chart is `oci://…/CHART`.
    Oci(String),
}

impl ChartSource {
    /// `http://…` or `https://…` is a chart repository, `oci://…` a registry; anything else a
    /// directory.
    pub fn parse(s: &str) -> ChartSource {
        if s.starts_with("http://") || s.starts_with("https://") {
            ChartSource::Repository(s.to_string())
        } else if s.starts_with("oci://") {
            ChartSource::Oci(s.trim_end_matches('/').to_string())
        } else {
            ChartSource::Directory(PathBuf::from(s))
        }
    }

    /// What helm is given as the chart of `chart`, and the flags that say where it is.
    fn reference(&self, chart: &str, plain_http: bool) -> (String, Vec<String>) {
        match self {
            ChartSource::Directory(dir) => (dir.join(chart).to_string_lossy().into_owned(), Vec::new()),
            ChartSource::Repository(url) => (chart.to_string(), vec!["--repo".into(), url.clone()]),
            ChartSource::Oci(base) => {
                (format!("{base}/{chart}"), if plain_http { vec!["--plain-http".into()] } else { Vec::new() })
            }
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
    /// An OCI registry over plain HTTP (`--plain-http`; `registry_transport = "http"`).
    pub plain_http: bool,
    /// The platform guide's wait for a release's LoadBalancer Service to get its external IP: attempts and
    /// the pause between them (the `kubernetes` block's `load_balancer_ip_*`).
    pub lb_ip_attempts: u32,
    pub lb_ip_interval: Duration,
}

pub struct HelmProvider {
    binary: PathBuf,
    /// Reads the live objects of a release's manifest (drift of what the chart sets).
    client: kube::Client,
    charts: ChartSource,
    timeout: Duration,
    plain_http: bool,
    lb_ip_attempts: u32,
    lb_ip_interval: Duration,
    /// The scope of each kind met in a release's manifest (`group/version/Kind`), discovered once.
    scopes:
        std::sync::Mutex<std::collections::HashMap<String, (kube::api::ApiResource, kube::discovery::ApiCapabilities)>>,
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
        let mut config = match &settings.target {
            HelmTarget::Url(url) => {
                kube::Config::new(url.parse().map_err(|e| format!("invalid Kubernetes API URL {url:?}: {e}"))?)
            }
            HelmTarget::Kubeconfig { context } => {
                let opts = kube::config::KubeConfigOptions { context: context.clone(), ..Default::default() };
                kube::Config::from_kubeconfig(&opts).await.map_err(|e| format!("cannot load kubeconfig: {e}"))?
            }
        };
        // The engine retries transient errors itself (see `KubernetesProvider::connect`).
        config.default_retry = false;
        let client = kube::Client::try_from(config).map_err(|e| format!("cannot create a Kubernetes client: {e}"))?;
        let (context, kubeconfig) = match settings.target {
            HelmTarget::Kubeconfig { context } => (context, None),
            HelmTarget::Url(url) => {
                (None, Some(write_kubeconfig(&url).map_err(|e| format!("helm's kubeconfig: {e}"))?))
            }
        };
        Ok(HelmProvider {
            binary,
            client,
            charts: settings.charts,
            timeout: settings.timeout,
            plain_http: settings.plain_http,
            lb_ip_attempts: settings.lb_ip_attempts.max(1),
            lb_ip_interval: settings.lb_ip_interval,
            scopes: Default::default(),
            context,
            kubeconfig,
        })
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
        Ok(self.read_live(resource).await?.map(|(observed, _)| observed))
    }

    /// The release as read back, with its LoadBalancer Service (name, external IP) when it has one.
    async fn read_live(&self, resource: &ResourceObject) -> Result<Option<(Observed, LoadBalancer)>, ProviderError> {
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
        // One `helm status` gives the user-supplied values (`config`, as `helm get values` prints
        // them) and the manifest (as `helm get manifest` does).
        let status = self.run(resource, &["status", name, "--namespace", ns, "--output", "json"], None).await?;
        let mut status: serde_json::Value =
            serde_json::from_str(&status).map_err(|e| error(resource, format!("helm status printed no JSON: {e}")))?;
        let values = status["config"].take();
        let values = if values.is_null() { serde_json::json!({}) } else { values };
        let manifest = status["manifest"].as_str().unwrap_or_default().to_string();
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
        let live = self.live(resource, &manifest, ns).await?;
        let mut attrs = attrs;
        attrs.insert("live_changes".to_string(), Value::List(live.changes));
        let revision = meta["revision"].as_i64().unwrap_or_default();
        let mut outputs = BTreeMap::from([("revision".to_string(), Value::Int(revision))]);
        if let Some((_, Some(ip))) = &live.load_balancer {
            outputs.insert("load_balancer_ip".to_string(), Value::str(ip));
        }
        Ok(Some((Observed { attrs, outputs, ..Observed::default() }, live.load_balancer)))
    }

    /// What differs between the release's manifest (`helm get manifest`) and the live objects, on
    /// the fields the chart sets: one line per object deleted or field changed outside helm. A field
    /// another controller manages now (an autoscaler's `spec.replicas`, from `managedFields`) is
    /// not a change; an edit made with `kubectl` is.
    ///
    /// Also finds the release's LoadBalancer Service (the ingress controller's) and its external IP.
    async fn live(&self, resource: &ResourceObject, manifest: &str, ns: &str) -> Result<Live, ProviderError> {
        use kube::api::{Api, DynamicObject, GroupVersionKind};
        let docs = yaml_rust2::YamlLoader::load_from_str(manifest)
            .map_err(|e| error(resource, format!("the release's manifest is not YAML: {e}")))?;
        let mut changes = Vec::new();
        let mut load_balancer = None;
        for doc in docs.iter().map(yaml_to_json) {
            let (Some(api_version), Some(kind), Some(obj_name)) =
                (doc["apiVersion"].as_str(), doc["kind"].as_str(), doc["metadata"]["name"].as_str())
            else {
                continue;
            };
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
            let gvk = GroupVersionKind::gvk(group, version, kind);
            // Cluster-scoped objects (the controller chart's IngressClass and ClusterRole) are read
            // as such: the API server's discovery says which, once per kind.
            let key = api_version_kind(&gvk);
            let known = self.scopes.lock().unwrap_or_else(|e| e.into_inner()).get(&key).cloned();
            let (ar, caps) = match known {
                Some(found) => found,
                None => {
                    let found = kube::discovery::pinned_kind(&self.client, &gvk).await.map_err(|e| ProviderError {
                        transient: true,
                        ..error(resource, format!("discovering {api_version} {kind}: {e}"))
                    })?;
                    self.scopes.lock().unwrap_or_else(|e| e.into_inner()).insert(key, found.clone());
                    found
                }
            };
            let api: Api<DynamicObject> = match caps.scope {
                kube::discovery::Scope::Cluster => Api::all_with(self.client.clone(), &ar),
                kube::discovery::Scope::Namespaced => Api::namespaced_with(self.client.clone(), ns, &ar),
            };
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
            if kind == "Service" && live["spec"]["type"] == "LoadBalancer" && load_balancer.is_none() {
                let ingress = &live["status"]["loadBalancer"]["ingress"][0];
                let ip = ingress["ip"].as_str().or_else(|| ingress["hostname"].as_str()).map(str::to_string);
                load_balancer = Some((obj_name.to_string(), ip));
            }
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
        Ok(Live { changes: changes.into_iter().map(Value::str).collect(), load_balancer })
    }

    async fn upgrade_install(&self, resource: &ResourceObject) -> Result<Observed, ProviderError> {
        let (name, ns) = name_ns(resource)?;
        let chart = attr_str(resource, "chart")?;
        let version = attr_str(resource, "version")?;
        let values = resource.attrs.get("values").cloned().unwrap_or(Value::Map(BTreeMap::new()));
        let values =
            serde_json::to_vec(&values).map_err(|e| error(resource, format!("values could not be written: {e}")))?;
        let (chart_ref, source_flags) = self.charts.reference(chart, self.plain_http);
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
        args.extend(source_flags.iter().map(String::as_str));
        self.run(resource, &args, Some(values)).await?;
        // The platform guide's wait for the external IP of a LoadBalancer Service (the ingress controller's),
        // read from the chart's Service; helm's --wait has usually seen it assigned already.
        let mut attempt = 1;
        loop {
            let (observed, load_balancer) = self
                .read_live(resource)
                .await?
                .ok_or_else(|| error(resource, "helm reported success but the release is not there".into()))?;
            let Some(service) = waiting_for_ip(resource, load_balancer) else { return Ok(observed) };
            if attempt >= self.lb_ip_attempts {
                return Err(ProviderError {
                    path: Some("status.loadBalancer.ingress".into()),
                    ..error(
                        resource,
                        format!(
                            "no external IP assigned to LoadBalancer Service {service} after {} attempts ({}s)",
                            self.lb_ip_attempts,
                            (self.lb_ip_interval * (self.lb_ip_attempts - 1)).as_secs()
                        ),
                    )
                });
            }
            tracing::info!("{}: attempt {attempt}/{}: no external IP yet", resource.addr, self.lb_ip_attempts);
            attempt += 1;
            tokio::time::sleep(self.lb_ip_interval).await;
        }
    }

    /// helm-diff's view: `helm template` of the desired chart and values against the release's
    /// manifest (`helm get manifest`; none before the first install), object by object.
    async fn rendered_changes(&self, resource: &ResourceObject) -> Result<Vec<RenderedChange>, ProviderError> {
        let (name, ns) = name_ns(resource)?;
        let chart = attr_str(resource, "chart")?;
        let version = attr_str(resource, "version")?;
        let values = resource.attrs.get("values").cloned().unwrap_or(Value::Map(BTreeMap::new()));
        if values.descendants().any(|v| v.is_unknown() || v.is_sensitive()) {
            return Err(error(resource, "the values are known only during apply".into()));
        }
        let values =
            serde_json::to_vec(&values).map_err(|e| error(resource, format!("values could not be written: {e}")))?;
        let live = match self.run_or_message(resource, &["get", "manifest", name, "--namespace", ns], None).await? {
            Ok(manifest) => Some(manifest),
            Err(message) if message.contains("release: not found") => None,
            Err(message) => return Err(error(resource, format!("helm get manifest: {message}"))),
        };
        let (chart_ref, source_flags) = self.charts.reference(chart, self.plain_http);
        let mut args =
            vec!["template", name, &chart_ref, "--namespace", ns, "--version", version, "--values", "-", "--no-hooks"];
        if live.is_some() {
            args.push("--is-upgrade");
        }
        args.extend(source_flags.iter().map(String::as_str));
        let desired = self.run(resource, &args, Some(values)).await?;
        manifest_changes(live.as_deref().unwrap_or_default(), &desired).map_err(|e| error(resource, e))
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

/// `group/version/Kind`, the key of a kind's discovered scope.
fn api_version_kind(gvk: &kube::api::GroupVersionKind) -> String {
    format!("{}/{}/{}", gvk.group, gvk.version, gvk.kind)
}

/// A release's LoadBalancer Service: its name and external IP (`None` while unassigned).
type LoadBalancer = Option<(String, Option<String>)>;

/// What the live objects of a release say: drift of what the chart sets, and its LoadBalancer.
struct Live {
    changes: Vec<Value>,
    load_balancer: LoadBalancer,
}

/// The name of a release's LoadBalancer Service that has no external IP yet.
fn waiting_for_ip(resource: &ResourceObject, load_balancer: LoadBalancer) -> Option<String> {
    let (service, ip) = load_balancer?;
    match ip {
        Some(ip) => {
            tracing::info!("{}: external IP of Service {service} assigned: {ip}", resource.addr);
            None
        }
        None => Some(service),
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

    fn previews(&self) -> bool {
        true
    }

    fn preview<'a>(
        &'a self,
        _tenant: &'a TenantRef,
        resource: &'a ResourceObject,
    ) -> ProviderFuture<'a, Vec<RenderedChange>> {
        Box::pin(self.rendered_changes(resource))
    }
}

/// What a reviewer sees of a Secret's `data` and `stringData` values.
const SENSITIVE: &str = "(sensitive value)";
const SENSITIVE_CHANGED: &str = "(sensitive value, changed)";

/// The objects of two rendered manifests (multi-document YAML) compared by kind and name:
/// `added` (only in `desired`), `removed` (only in `live`), `changed` with a unified diff of their
/// YAML. Comments and formatting are not changes; Secret values are masked on both sides, and a
/// value that differs shows as `(sensitive value, changed)`.
pub fn manifest_changes(live: &str, desired: &str) -> Result<Vec<RenderedChange>, String> {
    use yaml_rust2::Yaml;
    let objects = |text: &str, what: &str| -> Result<Vec<(String, Yaml)>, String> {
        let docs = yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| format!("the {what} is not YAML: {e}"))?;
        Ok(docs
            .into_iter()
            .filter_map(|doc| {
                let kind = doc["kind"].as_str()?.to_string();
                let name = doc["metadata"]["name"].as_str()?.to_string();
                let ns = doc["metadata"]["namespace"].as_str().map(|n| format!(" (namespace {n})")).unwrap_or_default();
                Some((format!("{kind} {name}{ns}"), doc))
            })
            .collect())
    };
    let live = objects(live, "release's manifest")?;
    let desired = objects(desired, "rendered chart")?;
    let mut out = Vec::new();
    for (object, doc) in &desired {
        let Some((_, before)) = live.iter().find(|(o, _)| o == object) else {
            out.push(RenderedChange { object: object.clone(), change: "added", diff: None });
            continue;
        };
        let (before_text, after_text) = (emit(&mask(before, None)), emit(&mask(doc, Some(before))));
        if before_text != after_text {
            let diff = similar::TextDiff::from_lines(&before_text, &after_text);
            let diff = diff.unified_diff().context_radius(3).to_string();
            out.push(RenderedChange { object: object.clone(), change: "changed", diff: Some(diff) });
        }
    }
    for (object, _) in &live {
        if !desired.iter().any(|(o, _)| o == object) {
            out.push(RenderedChange { object: object.clone(), change: "removed", diff: None });
        }
    }
    Ok(out)
}

/// `doc` with the values of a Secret's `data` and `stringData` replaced by [`SENSITIVE`];
/// compared with `other`'s (the live object), a value that differs is `(sensitive value, changed)`.
fn mask(doc: &yaml_rust2::Yaml, other: Option<&yaml_rust2::Yaml>) -> yaml_rust2::Yaml {
    use yaml_rust2::Yaml;
    let mut doc = doc.clone();
    if doc["kind"].as_str() != Some("Secret") {
        return doc;
    }
    if let Yaml::Hash(top) = &mut doc {
        for field in ["data", "stringData"] {
            let Some(Yaml::Hash(values)) = top.get_mut(&Yaml::String(field.into())) else { continue };
            for (key, value) in values.iter_mut() {
                let live = other.and_then(|o| o[field].as_hash()).and_then(|h| h.get(key));
                let changed = other.is_some() && live.is_some_and(|l| l != value);
                *value = Yaml::String(if changed { SENSITIVE_CHANGED } else { SENSITIVE }.to_string());
            }
        }
    }
    doc
}

/// One manifest document as YAML text (helm's formatting and comments dropped).
fn emit(doc: &yaml_rust2::Yaml) -> String {
    let mut text = String::new();
    let mut emitter = yaml_rust2::YamlEmitter::new(&mut text);
    emitter.multiline_strings(true);
    if emitter.dump(doc).is_err() {
        return format!("{doc:?}");
    }
    text.push('\n');
    text
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
    fn rendered_manifests_compare_object_by_object_with_secrets_masked() {
        let live = "---\n# Source: c/templates/deployment.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  \
                    name: web\nspec:\n  replicas: 2\n  paused: false\n---\napiVersion: v1\nkind: ConfigMap\n\
                    metadata:\n  name: old\ndata:\n  a: b\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  \
                    name: creds\nstringData:\n  PASSWORD: hunter2\n  USER: app\n";
        // The same Deployment spelled otherwise but for its replicas, the ConfigMap gone, a Service
        // added, the Secret's password changed.
        let desired = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 3\n  \
                       paused: false\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n---\n\
                       apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  \
                       PASSWORD: correct-horse\n  USER: app\n";
        let found = manifest_changes(live, desired).unwrap();
        let summary: Vec<(&str, &str)> = found.iter().map(|c| (c.object.as_str(), c.change)).collect();
        assert_eq!(
            summary,
            [
                ("Deployment web", "changed"),
                ("Service web", "added"),
                ("Secret creds", "changed"),
                ("ConfigMap old", "removed")
            ]
        );
        let deployment = found[0].diff.as_deref().unwrap();
        assert!(deployment.contains("-  replicas: 2\n+  replicas: 3\n"), "{deployment}");
        assert!(!deployment.contains("paused: false\n+") && !deployment.contains("Source"), "{deployment}");
        let secret = found[2].diff.as_deref().unwrap();
        assert!(
            secret.contains("-  PASSWORD: (sensitive value)\n+  PASSWORD: \"(sensitive value, changed)\""),
            "{secret}"
        );
        assert!(
            !secret.contains("hunter2") && !secret.contains("correct-horse") && !secret.contains("-  USER"),
            "{secret}"
        );
        assert!(manifest_changes(desired, desired).unwrap().is_empty(), "the same manifest changes nothing");
        assert!(manifest_changes("", "a: [").is_err());
    }

    #[test]
    fn a_missing_binary_names_the_setting() {
        let e = find_binary(Some("/nonexistent/helm")).unwrap_err();
        assert!(e.contains("helm { binary = … }") && e.contains("/nonexistent/helm"), "{e}");
        assert_eq!(ChartSource::parse("https://c.example/x"), ChartSource::Repository("https://c.example/x".into()));
        assert_eq!(ChartSource::parse("charts"), ChartSource::Directory("charts".into()));
        let oci = ChartSource::parse("oci://127.0.0.1:5000/charts/");
        assert_eq!(oci, ChartSource::Oci("oci://127.0.0.1:5000/charts".into()));
        assert_eq!(oci.reference("web", true), ("oci://127.0.0.1:5000/charts/web".into(), vec!["--plain-http".into()]));
        assert_eq!(oci.reference("web", false).1, Vec::<String>::new());
    }
}
