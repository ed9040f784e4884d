//! The Kubernetes manifests in deploy/kubernetes hold to what the service really does with the
//! configuration they ship: the ConfigMap's config.toml is loaded through the service's own loader,
//! with the image's environment (the Dockerfile's `ENV`) and the container's, so defaults and
//! overrides count as they would in the pod; then the probes, ports, mounts, grace period and
//! security context are checked against those effective values, and the built binary's
//! `check-config` must accept the file. (CI validates the manifests' schemas separately, with
//! kubernetes-validate: `.ci/run`, step "deploy/kubernetes".)
//!
//! Each check adds a problem saying what to fix; the test fails with all of them at once. The
//! tests at the end change one value of the real manifests in memory and see the check fail, so
//! none of the checks passes whatever the manifests say.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proof_bff::config::{AppConfig, RateLimitBackend, Settings, SettingsSources};
use serde::Deserialize;
use serde_json::Value;

/// The manifests' folder, relative to the repository.
const FOLDER: &str = "deploy/kubernetes";
/// After the drain's two waits, queued spans are sent for up to 5 s and queued log lines written
/// for up to 1 s before the process exits (docs/operations.md).
const FLUSH_ALLOWANCE: Duration = Duration::from_secs(6);
/// Placeholder secrets for validating the config: the real ones live in the partner's Secret.
const TOKEN: &str = "pk_test_deploy_3f9a1c7e5b2d4f6081a3c5e7f9b1d3a5";
const JWT_SECRET: &str = "deploy-test-hs256-secret-long-enough-0123456789";
const REDIS_URL: &str = "redis://127.0.0.1:6379/0";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    /// Unique within the process too: the tests run in parallel.
    fn new(name: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "proof-bff-deploy-{name}-{}-{n}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("a scratch directory");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// What the checks read: the kustomization, every manifest of the folder, and the image's
/// runtime stage.
#[derive(Clone)]
struct Bundle {
    kustomization: Value,
    /// Every `.yaml` file of the folder but kustomization.yaml, by file name.
    files: BTreeMap<String, Vec<Value>>,
    image: Image,
}

/// The runtime stage of the Dockerfile: its `ENV` and `USER`.
#[derive(Clone, Debug)]
struct Image {
    env: Vec<(String, String)>,
    uid: Option<i64>,
}

fn read_bundle() -> Bundle {
    let folder = root().join(FOLDER);
    let kustomization = yaml_documents(&folder.join("kustomization.yaml"))
        .pop()
        .expect("kustomization.yaml holds a document");
    let mut files = BTreeMap::new();
    for entry in fs::read_dir(&folder).expect("deploy/kubernetes exists") {
        let path = entry.expect("deploy/kubernetes is readable").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        if yaml && !name.starts_with("kustomization.") {
            files.insert(name, yaml_documents(&path));
        }
    }
    let dockerfile = fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile is readable");
    Bundle {
        kustomization,
        files,
        image: runtime_stage(&dockerfile),
    }
}

fn yaml_documents(path: &Path) -> Vec<Value> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| {
            Value::deserialize(document).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .filter(|document| !document.is_null())
        .collect()
}

/// `ENV` and `USER` of the Dockerfile's last stage (the image that runs), continued lines joined.
fn runtime_stage(dockerfile: &str) -> Image {
    let joined = dockerfile.replace("\\\n", " ");
    let mut image = Image {
        env: Vec::new(),
        uid: None,
    };
    for line in joined.lines().map(str::trim) {
        let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        match keyword.to_ascii_uppercase().as_str() {
            "FROM" => {
                image.env.clear();
                image.uid = None;
            }
            "ENV" => {
                for pair in rest.split_whitespace() {
                    if let Some((name, value)) = pair.split_once('=') {
                        image
                            .env
                            .push((name.to_owned(), value.trim_matches('"').to_owned()));
                    }
                }
            }
            "USER" => {
                let user = rest.trim().split(':').next().unwrap_or_default();
                image.uid = user.parse().ok();
            }
            _ => {}
        }
    }
    image
}

/// What the config in the ConfigMap comes to in the pod, through the service's own loader.
struct Effective {
    /// As loaded, before validation: the paths of the secret files.
    client_token_file: String,
    secret_files: Vec<(&'static str, String)>,
    backend: RateLimitBackend,
    allowed_origins: Vec<String>,
    /// Validated with placeholder secrets in place of the Secret's files.
    app: AppConfig,
}

impl Bundle {
    /// The one object of `kind` among the files the kustomization applies.
    fn applied(&self, kind: &str) -> Option<&Value> {
        let listed = self.listed();
        self.files
            .iter()
            .filter(|(name, _)| listed.contains(name))
            .flat_map(|(_, documents)| documents)
            .find(|document| document["kind"] == kind)
    }

    fn listed(&self) -> Vec<String> {
        self.kustomization["resources"]
            .as_array()
            .map(|resources| {
                resources
                    .iter()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn deployment(&self) -> &Value {
        self.applied("Deployment")
            .expect("the kustomization applies a Deployment")
    }

    fn pod(&self) -> &Value {
        &self.deployment()["spec"]["template"]["spec"]
    }

    fn container(&self) -> &Value {
        &self.pod()["containers"][0]
    }

    /// The image's environment with the container's literal `env` entries over it.
    fn environment(&self) -> Vec<(String, String)> {
        let mut env = self.image.env.clone();
        for entry in self.container()["env"].as_array().into_iter().flatten() {
            if let (Some(name), Some(value)) = (entry["name"].as_str(), entry["value"].as_str()) {
                env.retain(|(n, _)| n != name);
                env.push((name.to_owned(), value.to_owned()));
            }
        }
        env
    }

    fn config_path(&self) -> Option<String> {
        self.environment()
            .into_iter()
            .find(|(name, _)| name == "PROOF_BFF_CONFIG")
            .map(|(_, value)| value)
    }

    fn config_toml(&self) -> Option<&str> {
        self.applied("ConfigMap")?["data"]["config.toml"].as_str()
    }

    /// Loads the ConfigMap's config.toml as the pod would, then validates it with the secret
    /// files replaced by placeholders in `scratch`.
    fn effective(&self, scratch: &Path) -> Result<Effective, String> {
        let toml = self
            .config_toml()
            .ok_or("the kustomization applies no ConfigMap with a config.toml key")?;
        let file = scratch.join("config.toml");
        fs::write(&file, toml).unwrap();
        let sources = SettingsSources {
            preset: Vec::new(),
            file: Some(file),
        };
        let env = self.environment();
        let settings = Settings::load_with_env(&sources, os_pairs(&env))
            .map_err(|e| format!("the ConfigMap's config.toml does not load: {e}"))?;
        let secret_files = secret_files(&settings);
        let client_token_file = settings.proof.client_token_file.clone();
        let backend = settings.rate_limit.backend;
        let allowed_origins = settings.browser.allowed_origins.clone();
        let placeholders = placeholder_overrides(scratch, &secret_files);
        let mut env_with_placeholders = env.clone();
        env_with_placeholders.extend(placeholders);
        let app = Settings::load_with_env(&sources, os_pairs(&env_with_placeholders))
            .and_then(Settings::validate)
            .map_err(|e| format!("the ConfigMap's config.toml is not valid: {e}"))?;
        Ok(Effective {
            client_token_file,
            secret_files,
            backend,
            allowed_origins,
            app,
        })
    }
}

/// The secret file keys the config sets, with their paths.
fn secret_files(settings: &Settings) -> Vec<(&'static str, String)> {
    [
        ("proof.client_token_file", &settings.proof.client_token_file),
        ("session.jwt.secret_file", &settings.session.jwt.secret_file),
        (
            "rate_limit.redis_url_file",
            &settings.rate_limit.redis_url_file,
        ),
    ]
    .into_iter()
    .filter(|(_, path)| !path.trim().is_empty())
    .map(|(key, path)| (key, path.clone()))
    .collect()
}

fn os_pairs(env: &[(String, String)]) -> Vec<(OsString, OsString)> {
    env.iter()
        .map(|(name, value)| (name.into(), value.into()))
        .collect()
}

/// `PROOF_BFF__…` variables that point each secret file key at a placeholder file in `scratch`.
fn placeholder_overrides(
    scratch: &Path,
    secret_files: &[(&'static str, String)],
) -> Vec<(String, String)> {
    secret_files
        .iter()
        .map(|(key, _)| {
            let contents = match *key {
                "proof.client_token_file" => TOKEN,
                "session.jwt.secret_file" => JWT_SECRET,
                _ => REDIS_URL,
            };
            let path = scratch.join(key.replace('.', "_"));
            fs::write(&path, contents).unwrap();
            let name = format!("PROOF_BFF__{}", key.to_ascii_uppercase().replace('.', "__"));
            (name, path.to_string_lossy().into_owned())
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The checks: each returns what is wrong, saying what to fix.
// ---------------------------------------------------------------------------------------------

fn problems(bundle: &Bundle) -> Vec<String> {
    let mut problems = kustomization_problems(bundle);
    let scratch = TempDir::new("check");
    match bundle.effective(&scratch.0) {
        Ok(effective) => {
            problems.extend(config_problems(&effective));
            problems.extend(drain_problems(bundle, &effective));
            problems.extend(port_problems(bundle, &effective));
            problems.extend(mount_problems(bundle, &effective));
        }
        Err(problem) => problems.push(problem),
    }
    problems.extend(security_problems(bundle));
    problems.extend(selector_problems(bundle));
    problems.extend(resource_problems(bundle));
    problems
}

/// Every manifest of the folder is applied by the kustomization, except the `*.example.yaml`
/// ones (the Secret's example), which must not be; and the image can be overridden.
fn kustomization_problems(bundle: &Bundle) -> Vec<String> {
    let mut problems = Vec::new();
    let listed = bundle.listed();
    if listed.is_empty() {
        problems.push("kustomization.yaml: list the manifests under `resources:`".to_owned());
    }
    for name in &listed {
        if !bundle.files.contains_key(name) {
            problems.push(format!(
                "kustomization.yaml lists {name}, which is not a manifest in {FOLDER}: remove it or add the file"
            ));
        }
    }
    for name in bundle.files.keys() {
        let example = name.ends_with(".example.yaml");
        match (example, listed.contains(name)) {
            (false, false) => problems.push(format!(
                "{FOLDER}/{name} is not in kustomization.yaml's `resources:`: list it (or name it *.example.yaml if it must never be applied)"
            )),
            (true, true) => problems.push(format!(
                "kustomization.yaml lists {name}: an example must not be applied (it would overwrite the real Secret with placeholders)"
            )),
            _ => {}
        }
    }
    let image = bundle.container()["image"].as_str().unwrap_or_default();
    let image_name = image.split([':', '@']).next().unwrap_or_default();
    let overridable = bundle.kustomization["images"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|entry| entry["name"] == image_name);
    if !overridable {
        problems.push(format!(
            "kustomization.yaml: add an `images:` entry named {image_name:?} (the Deployment's image) for partners to point at their registry"
        ));
    }
    problems
}

fn config_problems(effective: &Effective) -> Vec<String> {
    let mut problems = Vec::new();
    if effective.app.server.drain_delay.is_zero() {
        problems.push("config.toml: set server.drain_delay_s above 0, above the readiness probe's periodSeconds x failureThreshold, so a pod leaves the endpoints before it refuses anything".to_owned());
    }
    if effective.backend != RateLimitBackend::Redis {
        problems.push("config.toml: set rate_limit.backend = \"redis\": with several replicas, in-memory limits count per replica".to_owned());
    }
    if effective.allowed_origins.is_empty() {
        problems.push(
            "config.toml: set browser.allowed_origins (a placeholder the partner replaces)"
                .to_owned(),
        );
    }
    if effective.client_token_file.trim().is_empty() {
        problems.push("config.toml: set proof.client_token_file to a file of the mounted Secret; the token must never be in the ConfigMap".to_owned());
    }
    problems
}

/// The grace period covers the whole drain, so the kubelet never kills a pod still finishing
/// requests: the drain delay, then up to `shutdown_timeout_s` for checkouts whose client has gone
/// and up to `shutdown_timeout_s` again for requests in flight (src/startup/mod.rs), then the
/// flushes, plus any preStop sleep.
fn drain_problems(bundle: &Bundle, effective: &Effective) -> Vec<String> {
    let mut problems = Vec::new();
    let pod = bundle.pod();
    // Kubernetes' default when the field is absent.
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
    let pre_stop = &bundle.container()["lifecycle"]["preStop"];
    let mut pre_stop_s = 0;
    if !pre_stop.is_null() {
        match pre_stop["sleep"]["seconds"].as_u64() {
            Some(seconds) => pre_stop_s = seconds,
            None => problems.push(
                "deployment.yaml: remove the preStop hook: the image has no shell or sleep to run, and server.drain_delay_s does its job".to_owned(),
            ),
        }
    }
    let server = &effective.app.server;
    let needed = server.drain_delay
        + 2 * server.shutdown_timeout
        + FLUSH_ALLOWANCE
        + Duration::from_secs(pre_stop_s);
    if Duration::from_secs(grace) < needed {
        problems.push(format!(
            "deployment.yaml: terminationGracePeriodSeconds is {grace}, below what a drain may take: \
             server.drain_delay_s ({}) + 2 x server.shutdown_timeout_s ({}) + {} s of flushing + preStop ({pre_stop_s}) = {} s; \
             raise it to at least that (with a margin), or lower those settings",
            server.drain_delay.as_secs(),
            server.shutdown_timeout.as_secs(),
            FLUSH_ALLOWANCE.as_secs(),
            needed.as_secs(),
        ));
    }
    problems
}

/// A probe's or a Service's port, by number or by the container port's name.
fn container_port(container: &Value, port: &Value) -> Option<u64> {
    match port {
        Value::Number(number) => number.as_u64(),
        Value::String(name) => container["ports"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == name.as_str())?["containerPort"]
            .as_u64(),
        _ => None,
    }
}

fn port_problems(bundle: &Bundle, effective: &Effective) -> Vec<String> {
    let mut problems = Vec::new();
    let container = bundle.container();
    let listen = u64::from(effective.app.server.listen.port());
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &container[probe]["httpGet"];
        if get["path"] != path {
            problems.push(format!(
                "deployment.yaml: {probe}.httpGet.path must be {path} (it is {})",
                get["path"]
            ));
        }
        if container_port(container, &get["port"]) != Some(listen) {
            problems.push(format!(
                "deployment.yaml: {probe}.httpGet.port ({}) must be the port server.listen binds ({listen}), by number or by the name of that container port",
                get["port"]
            ));
        }
    }
    let named = |name: &str| container_port(container, &Value::String(name.to_owned()));
    if named("http") != Some(listen) {
        problems.push(format!(
            "deployment.yaml: the container port named \"http\" must be {listen}, the port server.listen binds"
        ));
    }
    match &effective.app.metrics_listen {
        None => problems.push(
            "config.toml: set metrics.listen (e.g. \"0.0.0.0:9090\") so the pods can be scraped"
                .to_owned(),
        ),
        Some(metrics) => {
            let metrics = u64::from(metrics.port());
            if named("metrics") != Some(metrics) {
                problems.push(format!(
                    "deployment.yaml: the container port named \"metrics\" must be {metrics}, the port metrics.listen binds"
                ));
            }
            let annotation = &bundle.deployment()["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"];
            if !annotation.is_null() && annotation.as_str() != Some(&metrics.to_string()) {
                problems.push(format!(
                    "deployment.yaml: the prometheus.io/port annotation ({annotation}) must be {metrics}, the port metrics.listen binds"
                ));
            }
        }
    }
    if let Some(service) = bundle.applied("Service") {
        let ports = service["spec"]["ports"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for port in &ports {
            let target = &port["targetPort"];
            if !target.is_string() || container_port(container, target).is_none() {
                problems.push(format!(
                    "service.yaml: port {} must target a named container port of the Deployment (it targets {target})",
                    port["name"]
                ));
            }
        }
        for name in ["http", "metrics"] {
            if !ports
                .iter()
                .any(|p| p["name"] == name && p["targetPort"] == name)
            {
                problems.push(format!(
                    "service.yaml: add a port named {name:?} with targetPort {name:?}"
                ));
            }
        }
    } else {
        problems.push("the kustomization applies no Service".to_owned());
    }
    if let Some(policy) = bundle.applied("NetworkPolicy") {
        let mut allowed_in: Vec<u64> = policy["spec"]["ingress"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|rule| rule["ports"].as_array().cloned().unwrap_or_default())
            .filter_map(|port| container_port(container, &port["port"]))
            .collect();
        allowed_in.sort_unstable();
        allowed_in.dedup();
        let mut expected = vec![listen];
        if let Some(metrics) = &effective.app.metrics_listen {
            expected.push(u64::from(metrics.port()));
        }
        expected.sort_unstable();
        if allowed_in != expected {
            problems.push(format!(
                "networkpolicy.yaml: ingress must allow exactly the app port and the metrics port {expected:?} (it allows {allowed_in:?})"
            ));
        }
        let egress: Vec<(String, u64)> = policy["spec"]["egress"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|rule| rule["ports"].as_array().cloned().unwrap_or_default())
            .map(|port| {
                let protocol = port["protocol"].as_str().unwrap_or("TCP").to_owned();
                (protocol, port["port"].as_u64().unwrap_or_default())
            })
            .collect();
        for (protocol, port, what) in [
            ("TCP", 443, "Proof (HTTPS)"),
            ("TCP", 6379, "Redis"),
            ("UDP", 53, "DNS"),
            ("TCP", 53, "DNS"),
        ] {
            if !egress.contains(&(protocol.to_owned(), port)) {
                problems.push(format!(
                    "networkpolicy.yaml: egress must allow {protocol} {port} for {what}"
                ));
            }
        }
    } else {
        problems.push("the kustomization applies no NetworkPolicy".to_owned());
    }
    problems
}

/// The config file comes from the ConfigMap at the image's PROOF_BFF_CONFIG; each secret file the
/// config names comes from the Secret, mounted as a directory (never subPath, or a rotated token
/// never arrives).
fn mount_problems(bundle: &Bundle, effective: &Effective) -> Vec<String> {
    let mut problems = Vec::new();
    let container = bundle.container();
    let volumes = bundle.pod()["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mounts = container["volumeMounts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // The mount that holds `path`, the volume mounted there, and the file's name within it.
    let source = |path: &str| -> Option<(Value, Value, String)> {
        mounts.iter().find_map(|mount| {
            let at = mount["mountPath"].as_str()?.trim_end_matches('/');
            let volume = volumes.iter().find(|v| v["name"] == mount["name"])?.clone();
            let file = match mount["subPath"].as_str() {
                Some(sub_path) if path == at => sub_path.to_owned(),
                Some(_) => return None,
                None => path.strip_prefix(at)?.strip_prefix('/')?.to_owned(),
            };
            Some((mount.clone(), volume, file))
        })
    };
    // The key of a ConfigMap or Secret that a volume shows as `file`.
    let key_of = |volume_source: &Value, file: &str| -> Option<String> {
        match volume_source["items"].as_array() {
            Some(items) => items
                .iter()
                .find(|item| item["path"] == file)
                .and_then(|item| item["key"].as_str().map(str::to_owned)),
            None => Some(file.to_owned()),
        }
    };

    match bundle.config_path() {
        None => problems.push("Dockerfile: the image must set PROOF_BFF_CONFIG".to_owned()),
        Some(config_path) => {
            let config_map = bundle
                .applied("ConfigMap")
                .map(|c| c["metadata"]["name"].clone());
            let found = source(&config_path).and_then(|(_, volume, file)| {
                (volume["configMap"]["name"] == *config_map.as_ref()?)
                    .then(|| key_of(&volume["configMap"], &file))?
            });
            if found.as_deref() != Some("config.toml") {
                problems.push(format!(
                    "deployment.yaml: mount the ConfigMap's key config.toml at {config_path} (the image's PROOF_BFF_CONFIG)"
                ));
            }
        }
    }

    let secret = bundle
        .files
        .iter()
        .filter(|(name, _)| name.ends_with(".example.yaml"))
        .flat_map(|(_, documents)| documents)
        .find(|document| document["kind"] == "Secret");
    let Some(secret) = secret else {
        problems.push(format!(
            "{FOLDER}: ship the Secret's example as secret.example.yaml (not applied)"
        ));
        return problems;
    };
    let secret_name = &secret["metadata"]["name"];
    for (key, path) in &effective.secret_files {
        let Some((mount, volume, file)) = source(path) else {
            problems.push(format!(
                "deployment.yaml: {key} is {path}, which no volume mount provides: mount the Secret {secret_name} as a directory there"
            ));
            continue;
        };
        if volume["secret"]["secretName"] != *secret_name {
            problems.push(format!(
                "deployment.yaml: {key} ({path}) must come from the Secret {secret_name} (its volume is {})",
                volume["name"]
            ));
            continue;
        }
        if !mount["subPath"].is_null() {
            problems.push(format!(
                "deployment.yaml: mount the Secret for {key} as a directory, without subPath: a subPath mount never receives an updated Secret, so a rotated token would never arrive"
            ));
        }
        let secret_key = key_of(&volume["secret"], &file);
        let in_secret = secret_key.as_ref().is_some_and(|k| {
            !secret["stringData"][k.as_str()].is_null() || !secret["data"][k.as_str()].is_null()
        });
        if !in_secret {
            problems.push(format!(
                "{key} is {path}: the Secret {secret_name} (secret.example.yaml) needs the key {}",
                secret_key.unwrap_or(file)
            ));
        }
    }
    problems
}

/// The pod's and the container's security contexts, the container's winning.
fn security_problems(bundle: &Bundle) -> Vec<String> {
    let mut problems = Vec::new();
    let pod = &bundle.pod()["securityContext"];
    let container = &bundle.container()["securityContext"];
    let effective = |key: &str| -> &Value {
        if container[key].is_null() {
            &pod[key]
        } else {
            &container[key]
        }
    };
    if effective("runAsNonRoot") != true {
        problems.push("deployment.yaml: set securityContext.runAsNonRoot: true".to_owned());
    }
    match bundle.image.uid {
        Some(uid) if effective("runAsUser").as_i64() != Some(uid) => problems.push(format!(
            "deployment.yaml: set securityContext.runAsUser: {uid}, the image's USER (it is {})",
            effective("runAsUser")
        )),
        None => problems.push("Dockerfile: the runtime stage must set a numeric USER".to_owned()),
        _ => {}
    }
    if container["readOnlyRootFilesystem"] != true {
        problems.push(
            "deployment.yaml: set the container's securityContext.readOnlyRootFilesystem: true"
                .to_owned(),
        );
    }
    if container["allowPrivilegeEscalation"] != false {
        problems.push(
            "deployment.yaml: set the container's securityContext.allowPrivilegeEscalation: false"
                .to_owned(),
        );
    }
    if container["privileged"] == true {
        problems.push("deployment.yaml: the container must not be privileged".to_owned());
    }
    let drops_all = container["capabilities"]["drop"]
        .as_array()
        .is_some_and(|drop| drop.iter().any(|c| c == "ALL"));
    let adds = container["capabilities"]["add"]
        .as_array()
        .is_some_and(|add| !add.is_empty());
    if !drops_all || adds {
        problems.push(
            "deployment.yaml: set the container's securityContext.capabilities.drop: [ALL], and add none"
                .to_owned(),
        );
    }
    if effective("seccompProfile")["type"] != "RuntimeDefault" {
        problems.push(
            "deployment.yaml: set securityContext.seccompProfile.type: RuntimeDefault".to_owned(),
        );
    }
    problems
}

/// Every selector finds the Deployment's pods; the budget and the autoscaler leave two replicas.
fn selector_problems(bundle: &Bundle) -> Vec<String> {
    let mut problems = Vec::new();
    let deployment = bundle.deployment();
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let selects_pods = |selector: &Value| {
        selector
            .as_object()
            .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels[k] == *v))
    };
    let selectors = [
        (
            "deployment.yaml",
            "spec.selector.matchLabels",
            &deployment["spec"]["selector"]["matchLabels"],
        ),
        (
            "service.yaml",
            "spec.selector",
            bundle
                .applied("Service")
                .map_or(&Value::Null, |s| &s["spec"]["selector"]),
        ),
        (
            "poddisruptionbudget.yaml",
            "spec.selector.matchLabels",
            bundle
                .applied("PodDisruptionBudget")
                .map_or(&Value::Null, |p| &p["spec"]["selector"]["matchLabels"]),
        ),
        (
            "networkpolicy.yaml",
            "spec.podSelector.matchLabels",
            bundle
                .applied("NetworkPolicy")
                .map_or(&Value::Null, |n| &n["spec"]["podSelector"]["matchLabels"]),
        ),
    ];
    for (file, field, selector) in selectors {
        if !selects_pods(selector) {
            problems.push(format!(
                "{file}: {field} ({selector}) must select the Deployment's pods (labels {labels})"
            ));
        }
    }
    let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1);
    if replicas < 2 {
        problems.push("deployment.yaml: run at least 2 replicas".to_owned());
    }
    match bundle.applied("PodDisruptionBudget") {
        Some(budget) => {
            let min_available = budget["spec"]["minAvailable"].as_u64();
            if min_available.is_none_or(|min| min == 0 || min >= replicas) {
                problems.push(format!(
                    "poddisruptionbudget.yaml: set minAvailable between 1 and replicas - 1 ({}): at replicas it blocks every node drain",
                    replicas - 1
                ));
            }
        }
        None => problems.push("the kustomization applies no PodDisruptionBudget".to_owned()),
    }
    match bundle.applied("HorizontalPodAutoscaler") {
        Some(hpa) => {
            let target = &hpa["spec"]["scaleTargetRef"];
            if target["kind"] != "Deployment" || target["name"] != deployment["metadata"]["name"] {
                problems.push(
                    "horizontalpodautoscaler.yaml: scaleTargetRef must name the Deployment"
                        .to_owned(),
                );
            }
            if hpa["spec"]["minReplicas"].as_u64().unwrap_or(1) < replicas {
                problems.push(format!(
                    "horizontalpodautoscaler.yaml: minReplicas must be at least the Deployment's replicas ({replicas})"
                ));
            }
            let by_cpu = hpa["spec"]["metrics"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["resource"]["name"] == "cpu");
            if !by_cpu {
                problems.push(
                    "horizontalpodautoscaler.yaml: scale on the cpu resource metric".to_owned(),
                );
            }
        }
        None => problems.push("the kustomization applies no HorizontalPodAutoscaler".to_owned()),
    }
    problems
}

fn resource_problems(bundle: &Bundle) -> Vec<String> {
    let resources = &bundle.container()["resources"];
    let mut problems = Vec::new();
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            if resources[kind][resource].is_null() {
                problems.push(format!(
                    "deployment.yaml: set resources.{kind}.{resource} (the autoscaler needs the cpu request; BENCHMARKS.md gives the figures)"
                ));
            }
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------------

#[test]
fn the_manifests_hold_to_what_the_config_means() {
    let problems = problems(&read_bundle());
    assert!(
        problems.is_empty(),
        "{FOLDER}:\n- {}",
        problems.join("\n- ")
    );
}

/// The built binary accepts the ConfigMap's config, as the pod would start it (the image's
/// environment), given the secret files.
#[test]
fn check_config_accepts_the_configmaps_config() {
    let bundle = read_bundle();
    let scratch = TempDir::new("check-config");
    let file = scratch.0.join("config.toml");
    fs::write(
        &file,
        bundle
            .config_toml()
            .expect("a config.toml in the ConfigMap"),
    )
    .unwrap();
    // Loaded without validating, only to learn which secret files to provide: the binary alone
    // judges the config here.
    let sources = SettingsSources {
        preset: Vec::new(),
        file: Some(file.clone()),
    };
    let settings = Settings::load_with_env(&sources, os_pairs(&bundle.environment()))
        .expect("the ConfigMap's config.toml loads");
    let mut command = Command::new(env!("CARGO_BIN_EXE_proof-bff"));
    command.args(["check-config", "--config"]).arg(&file);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PROOF_BFF") {
            command.env_remove(name);
        }
    }
    command.envs(bundle.environment());
    command.envs(placeholder_overrides(&scratch.0, &secret_files(&settings)));
    let output = command.output().expect("proof-bff runs");
    assert!(
        output.status.success(),
        "proof-bff check-config refused the ConfigMap's config.toml ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Changes one value of the real manifests and returns what the checks say.
fn problems_after(change: impl FnOnce(&mut Bundle)) -> Vec<String> {
    let mut bundle = read_bundle();
    change(&mut bundle);
    problems(&bundle)
}

fn deployment_mut(bundle: &mut Bundle) -> &mut Value {
    bundle
        .files
        .values_mut()
        .flatten()
        .find(|document| document["kind"] == "Deployment")
        .expect("a Deployment")
}

fn assert_reported(problems: &[String], expected: &str) {
    assert!(
        problems.iter().any(|p| p.contains(expected)),
        "expected a problem mentioning {expected:?}, got {problems:#?}"
    );
}

#[test]
fn a_grace_period_shorter_than_the_drain_is_reported() {
    let problems = problems_after(|bundle| {
        let bundle_drain = {
            let scratch = TempDir::new("grace");
            let server = bundle
                .effective(&scratch.0)
                .expect("the config loads")
                .app
                .server;
            server.drain_delay + server.shutdown_timeout
        };
        deployment_mut(bundle)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] =
            Value::from(bundle_drain.as_secs() - 1);
    });
    assert_reported(&problems, "terminationGracePeriodSeconds is");
}

#[test]
fn a_secret_mounted_with_sub_path_is_reported() {
    let problems = problems_after(|bundle| {
        let container = &mut deployment_mut(bundle)["spec"]["template"]["spec"]["containers"][0];
        let mounts = container["volumeMounts"].as_array_mut().unwrap();
        let mount = mounts.iter_mut().find(|m| m["name"] == "secrets").unwrap();
        mount["mountPath"] = Value::from("/run/secrets/proof-bff/client_token");
        mount["subPath"] = Value::from("client_token");
    });
    assert_reported(&problems, "without subPath");
}

#[test]
fn a_probe_on_another_port_is_reported() {
    let problems = problems_after(|bundle| {
        deployment_mut(bundle)["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]
            ["port"] = Value::from("metrics");
    });
    assert_reported(&problems, "readinessProbe.httpGet.port");
}

#[test]
fn an_unlisted_manifest_is_reported() {
    let problems = problems_after(|bundle| {
        bundle.files.insert("ingress.yaml".to_owned(), Vec::new());
    });
    assert_reported(&problems, "ingress.yaml is not in kustomization.yaml");
}

#[test]
fn a_writable_root_filesystem_is_reported() {
    let problems = problems_after(|bundle| {
        deployment_mut(bundle)["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] =
            Value::from(false);
    });
    assert_reported(&problems, "readOnlyRootFilesystem");
}
