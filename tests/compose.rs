//! deploy/compose/compose.yaml, held to what its README claims without a container engine: the
//! replicas, the stand-in for Proof and Redis are started as the file describes them (the same
//! binaries, the environment, config file and secrets it gives each container), on loopback with
//! fresh ports in place of the containers' names and fixed ports, and real `redis-server`s, one
//! for each Redis service the file declares. Then:
//!
//! - one user's limit is shared: once one replica refuses the user, so does the other;
//! - an `Idempotency-Key` answered by one replica is replayed by the other, and Proof receives
//!   one session request.
//!
//! The file's shape is checked too: the replicas are built from the repository's Dockerfile,
//! probe themselves, wait for a healthy Redis and are published on this machine's loopback only.

#[path = "support/redis.rs"]
mod redis_support;
mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use proof_bff::session::sign_hs256;
use redis_support::RedisServer;
use serde_json::Value;
use support::eventually::{EVENTUALLY, eventually_async, within};
use support::output::CapturedOutput;
use support::process::{Process, bff};

const CHECKOUT_BODY: &str = r#"{"network":"TRC20","currency":"USDT","amount":"100"}"#;

fn compose_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/compose")
}

/// compose.yaml as JSON, its `<<` merge keys applied (the replicas share an anchor).
fn compose_file() -> Value {
    let text = std::fs::read_to_string(compose_dir().join("compose.yaml")).unwrap();
    let mut yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    // One pass merges a mapping into another, but leaves the merged mapping's own `<<` (an
    // anchor built on another) as a plain key: apply again until none is left.
    while has_merge_key(&yaml) {
        yaml.apply_merge().unwrap();
    }
    serde_yaml_ng::from_value(yaml).unwrap()
}

fn has_merge_key(yaml: &serde_yaml_ng::Value) -> bool {
    match yaml {
        serde_yaml_ng::Value::Mapping(mapping) => {
            mapping.contains_key("<<") || mapping.values().any(has_merge_key)
        }
        serde_yaml_ng::Value::Sequence(items) => items.iter().any(has_merge_key),
        _ => false,
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| item.as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A service's `environment`, in either of the forms compose takes (a map or `KEY=value` lines).
fn environment(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Object(map) => map
            .iter()
            .map(|(key, value)| {
                let value = match value {
                    Value::String(text) => text.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (key.clone(), value)
            })
            .collect(),
        Value::Array(_) => strings(&service["environment"])
            .into_iter()
            .map(|line| {
                let (key, value) = line.split_once('=').unwrap_or((&line, ""));
                (key.to_owned(), value.to_owned())
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// The `ENV` of the Dockerfile's last stage, the image every service built from it starts with.
fn image_environment() -> BTreeMap<String, String> {
    let dockerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap();
    let joined = dockerfile.replace("\\\n", " ");
    let last_stage = joined
        .rsplit_once("\nFROM ")
        .map(|(_, stage)| stage)
        .unwrap();
    last_stage
        .lines()
        .filter_map(|line| line.trim().strip_prefix("ENV "))
        .flat_map(|assignments| {
            assignments
                .split_whitespace()
                .map(|pair| {
                    let (key, value) = pair.split_once('=').expect("ENV key=value");
                    (key.to_owned(), value.trim_matches('"').to_owned())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Where each file compose puts in a container comes from: `configs` and `secrets` (at their
/// `target`, by default `/<name>` and `/run/secrets/<name>`), from the top-level `file`s.
fn mounted_files(compose: &Value, service: &Value) -> Vec<(String, PathBuf)> {
    let mut mounted = Vec::new();
    for (kind, default_dir) in [("configs", "/"), ("secrets", "/run/secrets/")] {
        for entry in service[kind].as_array().into_iter().flatten() {
            let (source, target) = match entry {
                Value::String(name) => (name.clone(), None),
                long => (
                    long["source"].as_str().unwrap().to_owned(),
                    long["target"].as_str().map(str::to_owned),
                ),
            };
            let file = compose[kind][&source]["file"]
                .as_str()
                .unwrap_or_else(|| panic!("{kind}.{source} has no file"));
            let target = target.unwrap_or_else(|| format!("{default_dir}{source}"));
            mounted.push((target, compose_dir().join(file)));
        }
    }
    mounted
}

/// `host:port` from a listen address such as `0.0.0.0:8081`.
fn port_of(address: &str) -> u16 {
    address.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// The services, by role.
struct Services {
    replicas: Vec<String>,
    stand_in: String,
    redis: Vec<String>,
}

fn services(compose: &Value) -> Services {
    let mut replicas = Vec::new();
    let mut stand_in = Vec::new();
    let mut redis = Vec::new();
    for (name, service) in compose["services"].as_object().unwrap() {
        let image = service["image"].as_str().unwrap_or("");
        let entrypoint = strings(&service["entrypoint"]).join(" ");
        if image.starts_with("redis:") || image.starts_with("redis@") {
            redis.push(name.clone());
        } else if entrypoint.contains("proof-stand-in") {
            stand_in.push(name.clone());
        } else {
            replicas.push(name.clone());
        }
    }
    assert_eq!(stand_in.len(), 1, "one stand-in for Proof: {stand_in:?}");
    assert!(!redis.is_empty(), "a Redis service");
    Services {
        replicas,
        stand_in: stand_in.remove(0),
        redis,
    }
}

/// The service whose network namespace `name` runs in: its own, or the one `network_mode:
/// service:<other>` names.
fn namespace_of(compose: &Value, name: &str) -> String {
    compose["services"][name]["network_mode"]
        .as_str()
        .and_then(|mode| mode.strip_prefix("service:"))
        .unwrap_or(name)
        .to_owned()
}

#[test]
fn the_compose_file_builds_probes_and_publishes_its_replicas_on_loopback() {
    let compose = compose_file();
    let services = services(&compose);
    assert_eq!(services.replicas.len(), 2, "{:?}", services.replicas);
    let image_env = image_environment();
    for name in &services.replicas {
        let service = &compose["services"][name];
        let context = compose_dir().join(service["build"]["context"].as_str().unwrap());
        assert_eq!(
            context.canonicalize().unwrap(),
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .canonicalize()
                .unwrap(),
            "{name} is built from the repository"
        );
        assert_eq!(service["build"]["dockerfile"], "Dockerfile", "{name}");
        assert_eq!(
            strings(&service["healthcheck"]["test"]),
            ["CMD", "/usr/local/bin/proof-bff", "healthcheck"],
            "{name} probes itself"
        );
        for redis in &services.redis {
            assert_eq!(
                service["depends_on"][redis]["condition"], "service_healthy",
                "{name} waits for {redis}"
            );
        }
        // Published by whichever service owns the namespace, on loopback, to the port it listens on.
        let mut env = image_env.clone();
        env.extend(environment(service));
        let listen_port = port_of(&env["PROOF_BFF__SERVER__LISTEN"]);
        let owner = namespace_of(&compose, name);
        let published = strings(&compose["services"][&owner]["ports"]);
        assert!(
            published
                .iter()
                .any(|port| port.starts_with("127.0.0.1:")
                    && port.ends_with(&format!(":{listen_port}"))),
            "{name} listens on {listen_port}, published by {owner} as {published:?}"
        );
    }
    for (name, service) in compose["services"].as_object().unwrap() {
        for port in strings(&service["ports"]) {
            assert!(
                port.starts_with("127.0.0.1:"),
                "{name} publishes {port} beyond loopback"
            );
        }
    }
}

/// A TCP relay in front of the stand-in that counts the `POST /widget/session` requests passing
/// through it: what Proof received, whichever replica sent it.
struct CountingRelay {
    address: SocketAddr,
    sessions: Arc<AtomicUsize>,
}

impl CountingRelay {
    fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let sessions = Arc::new(AtomicUsize::new(0));
        let counter = sessions.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                let (client_read, server_write) = (client.try_clone().unwrap(), server);
                let (server_read, client_write) = (server_write.try_clone().unwrap(), client);
                let counter = counter.clone();
                std::thread::spawn(move || relay(client_read, server_write, Some(counter)));
                std::thread::spawn(move || relay(server_read, client_write, None));
            }
        });
        Self { address, sessions }
    }

    fn sessions(&self) -> usize {
        self.sessions.load(Ordering::SeqCst)
    }
}

/// Copies `from` to `to` until either closes, counting session requests when asked to. A request
/// line split between two reads is still seen: the end of the previous read is kept.
fn relay(mut from: TcpStream, mut to: TcpStream, sessions: Option<Arc<AtomicUsize>>) {
    const REQUEST_LINE: &[u8] = b"POST /widget/session ";
    let mut carried: Vec<u8> = Vec::new();
    let mut buffer = [0u8; 16384];
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if let Some(sessions) = &sessions {
            carried.extend_from_slice(&buffer[..read]);
            let found = carried
                .windows(REQUEST_LINE.len())
                .filter(|window| *window == REQUEST_LINE)
                .count();
            sessions.fetch_add(found, Ordering::SeqCst);
            let keep = carried.len().min(REQUEST_LINE.len() - 1);
            carried.drain(..carried.len() - keep);
        }
        if to.write_all(&buffer[..read]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// The stand-in binary of this build, built now if this run has not built it (a run of this test
/// alone builds only proof-bff's targets), in the profile proof-bff was built in.
fn stand_in_binary() -> PathBuf {
    let bff = Path::new(env!("CARGO_BIN_EXE_proof-bff"));
    let profile_dir = bff.parent().unwrap();
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .args(["build", "--locked", "--quiet", "--message-format=json"])
        .args(["-p", "proof-stand-in", "--bin", "proof-stand-in"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit());
    match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") => {}
        Some("release") => {
            command.arg("--release");
        }
        Some(profile) => {
            command.args(["--profile", profile]);
        }
        None => {}
    }
    let output = command.output().expect("cargo builds proof-stand-in");
    assert!(
        output.status.success(),
        "cargo build -p proof-stand-in failed"
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find_map(|message| {
            (message["reason"] == "compiler-artifact"
                && message["target"]["name"] == "proof-stand-in")
                .then(|| message["executable"].as_str().map(PathBuf::from))
                .flatten()
        })
        .expect("cargo names the proof-stand-in executable")
}

/// Replaces, in `text`, every container path and address the map knows.
fn localised(text: &str, replacements: &[(String, String)]) -> String {
    replacements
        .iter()
        .fold(text.to_owned(), |text, (from, to)| text.replace(from, to))
}

/// A scratch directory, removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("proof-bff-compose-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A process other than proof-bff, killed on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What compose.yaml describes, running on loopback.
struct Deployment {
    replicas: Vec<(String, String)>,
    relay: CountingRelay,
    /// The session key and origin the replicas take, as their settings say.
    session_key: Vec<u8>,
    origin: String,
    per_user_burst: u32,
    _processes: Vec<Process>,
    _stand_in: Child,
    _stand_in_output: CapturedOutput,
    _redis: Vec<RedisServer>,
    _scratch: ScratchDir,
}

impl Deployment {
    /// None when redis-server is not installed (and the run does not require it).
    fn start() -> Option<Self> {
        let compose = compose_file();
        let services = services(&compose);
        let scratch = ScratchDir::new();
        let mut redis = Vec::new();
        // Each Redis service is reached by its name on the port the image listens on.
        let mut redis_addresses = Vec::new();
        for name in &services.redis {
            let server = RedisServer::start()?;
            redis_addresses.push((format!("{name}:6379"), server.addr()));
            redis.push(server);
        }

        // The stand-in, with the environment and secrets the file gives it, on a fresh port.
        let stand_in_service = &compose["services"][&services.stand_in];
        let mut stand_in_env = environment(stand_in_service);
        let stand_in_listen = stand_in_env
            .remove("PROOF_STAND_IN_LISTEN")
            .expect("the stand-in's PROOF_STAND_IN_LISTEN");
        let stand_in_files: Vec<(String, String)> = mounted_files(&compose, stand_in_service)
            .into_iter()
            .map(|(target, file)| (target, file.display().to_string()))
            .collect();
        let mut command = Command::new(stand_in_binary());
        command.env_clear().stdin(Stdio::null());
        for (key, value) in &stand_in_env {
            command.env(key, localised(value, &stand_in_files));
        }
        command
            .env("PROOF_STAND_IN_LISTEN", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut stand_in = Child(command.spawn().expect("proof-stand-in starts"));
        let (stand_in_output, _) =
            CapturedOutput::read_from(stand_in.0.stdout.take().expect("its stdout"));
        let stand_in_url = within(EVENTUALLY, || {
            stand_in_output.text().lines().find_map(|line| {
                line.strip_prefix("proof-stand-in listening on http://")
                    .map(str::to_owned)
            })
        })
        .expect("the stand-in says where it listens");
        let relay = CountingRelay::start(stand_in_url.trim().parse().unwrap());

        let image_env = image_environment();
        let mut processes = Vec::new();
        let mut replicas = Vec::new();
        let mut settings = None;
        for name in &services.replicas {
            let service = &compose["services"][name];
            let mut env = image_env.clone();
            env.extend(environment(service));
            // Containers' names and ports become loopback addresses: the stand-in through the
            // relay, where the replica reaches it (on loopback when it shares the stand-in's
            // namespace, by name otherwise); each Redis by its name.
            let mut replacements: Vec<(String, String)> = mounted_files(&compose, service)
                .into_iter()
                .map(|(target, file)| (target, file.display().to_string()))
                .collect();
            let stand_in_port = port_of(&stand_in_listen);
            let stand_in_names: Vec<String> =
                if namespace_of(&compose, name) == namespace_of(&compose, &services.stand_in) {
                    vec![
                        format!("127.0.0.1:{stand_in_port}"),
                        format!("localhost:{stand_in_port}"),
                    ]
                } else {
                    vec![format!("{}:{stand_in_port}", services.stand_in)]
                };
            for stand_in_name in stand_in_names {
                replacements.push((stand_in_name, relay.address.to_string()));
            }
            replacements.extend(redis_addresses.iter().cloned());

            let config_path = env.remove("PROOF_BFF_CONFIG");
            let mut command = bff();
            for (key, value) in &env {
                command.env(key, localised(value, &replacements));
            }
            let mut config_text = String::new();
            if let Some(config_path) = config_path {
                let source = replacements
                    .iter()
                    .find(|(target, _)| *target == config_path)
                    .map(|(_, file)| PathBuf::from(file))
                    .unwrap_or_else(|| panic!("{name} reads {config_path}, which is not mounted"));
                config_text = localised(&std::fs::read_to_string(source).unwrap(), &replacements);
                let local = scratch.0.join(format!("{name}.toml"));
                std::fs::write(&local, &config_text).unwrap();
                command.env("PROOF_BFF_CONFIG", &local);
            }
            command.env("PROOF_BFF__SERVER__LISTEN", "127.0.0.1:0");
            let mut process = Process::spawn(command);
            let port = process.bound_addresses().listen.port();
            replicas.push((name.clone(), format!("http://127.0.0.1:{port}")));
            processes.push(process);
            settings = Some((config_text, env, replacements));
        }

        // The settings the test acts on, as the last replica reads them (the environment over
        // the file).
        let (config_text, env, replacements) = settings.expect("replicas");
        let config: toml::Table = toml::from_str(&config_text).unwrap();
        let setting = |section: &str, key: &str| -> Option<String> {
            let variable = format!(
                "PROOF_BFF__{}__{}",
                section.replace('.', "__").to_uppercase(),
                key.to_uppercase()
            );
            if let Some(value) = env.get(&variable) {
                return Some(localised(value, &replacements));
            }
            let mut table = &config;
            for part in section.split('.') {
                table = table.get(part)?.as_table()?;
            }
            Some(match table.get(key)? {
                toml::Value::String(text) => text.clone(),
                toml::Value::Array(items) => items[0].as_str()?.to_owned(),
                other => other.to_string(),
            })
        };
        let session_key = match setting("session.jwt", "secret_file") {
            Some(file) => std::fs::read(file).unwrap(),
            None => setting("session.jwt", "secret")
                .expect("an HS256 session key")
                .into_bytes(),
        };
        let session_key = String::from_utf8(session_key)
            .unwrap()
            .trim_end_matches(['\n', '\r'])
            .as_bytes()
            .to_vec();
        let origin = setting("browser", "allowed_origins").expect("an allowed origin");
        let per_user_burst =
            setting("rate_limit", "per_user_burst").map_or(5, |burst| burst.parse().unwrap());
        Some(Self {
            replicas,
            relay,
            session_key,
            origin,
            per_user_burst,
            _processes: processes,
            _stand_in: stand_in,
            _stand_in_output: stand_in_output,
            _redis: redis,
            _scratch: scratch,
        })
    }

    fn token(&self, user: &str) -> String {
        sign_hs256(
            &self.session_key,
            user,
            &format!("{user}@example.com"),
            3600,
        )
        .unwrap()
    }
}

/// A session token made by deploy/compose/session-token.py, as its README shows; None (with a
/// notice) without python3, unless the run is CI's.
fn documented_token(user: &str) -> Option<String> {
    let output = Command::new("python3")
        .arg(compose_dir().join("session-token.py"))
        .args([user, &format!("{user}@example.com")])
        .output();
    match output {
        Ok(output) => {
            assert!(
                output.status.success(),
                "session-token.py failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            Some(String::from_utf8(output.stdout).unwrap().trim().to_owned())
        }
        Err(_) if std::env::var_os("CI").is_some() => panic!("python3 is needed"),
        Err(_) => {
            eprintln!("NOTE: no python3, session-token.py not tried");
            None
        }
    }
}

struct Answer {
    status: u16,
    replayed: bool,
    code: String,
    retry_after: Option<u64>,
    body: bytes::Bytes,
}

async fn checkout(
    client: &reqwest::Client,
    deployment: &Deployment,
    replica: usize,
    token: &str,
    idempotency_key: Option<&str>,
) -> Answer {
    let mut request = client
        .post(format!("{}/start-checkout", deployment.replicas[replica].1))
        .header("Origin", &deployment.origin)
        .bearer_auth(token)
        .header("Content-Type", "application/json")
        .body(CHECKOUT_BODY);
    if let Some(key) = idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    let response = request.send().await.expect("the replica answers");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let replayed = header("idempotent-replayed").as_deref() == Some("true");
    let retry_after = header("retry-after").and_then(|value| value.parse().ok());
    let status = response.status().as_u16();
    let body = response.bytes().await.unwrap();
    let code = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|json| json["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    Answer {
        status,
        replayed,
        code,
        retry_after,
        body,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_replicas_share_one_limit_and_replay_each_others_answers() {
    let Some(deployment) = tokio::task::spawn_blocking(Deployment::start)
        .await
        .unwrap()
    else {
        return;
    };
    let client = reqwest::Client::new();
    for (name, url) in &deployment.replicas {
        eventually_async(&format!("{name} is ready"), async || {
            client
                .get(format!("{url}/readyz"))
                .send()
                .await
                .is_ok_and(|response| response.status() == 200)
        })
        .await;
    }

    // An Idempotency-Key answered by the first replica is replayed by the second, byte for byte,
    // and Proof receives the one session request. Bob's token is made as the README makes it.
    let bob = documented_token("bob").unwrap_or_else(|| deployment.token("bob"));
    let key = Some("\"bob-order-1\"");
    let first = checkout(&client, &deployment, 0, &bob, key).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert!(!first.replayed);
    let retry = checkout(&client, &deployment, 1, &bob, key).await;
    assert_eq!(retry.status, 200, "{:?}", retry.body);
    assert!(retry.replayed, "the retry on the other replica is a replay");
    assert_eq!(retry.body, first.body);
    assert_eq!(deployment.relay.sessions(), 1, "Proof received one session");

    // One user's limit, shared: the first replica serves Alice until her limit refuses her; the
    // second, asked at once, refuses her too. Replicas counting apart would let her through there,
    // since she has not been there yet. A refill between the two asks could let her through too,
    // but only if a whole Retry-After has passed; should a slow machine take that long, the two
    // asks are made again with a fresh user.
    for attempt in 0..5 {
        let alice = deployment.token(&format!("alice-{attempt}"));
        let mut served = 0;
        let refused = loop {
            let asked = Instant::now();
            let answer = checkout(&client, &deployment, 0, &alice, None).await;
            match answer.status {
                200 => served += 1,
                429 => break (asked, answer),
                other => panic!("unexpected {other}: {:?}", answer.body),
            }
            assert!(
                served <= 10 * deployment.per_user_burst,
                "the first replica never refused one user"
            );
        };
        let (asked, answer) = refused;
        assert_eq!(answer.code, "per_user");
        assert!(served >= deployment.per_user_burst, "served {served}");
        let other = checkout(&client, &deployment, 1, &alice, None).await;
        let elapsed = asked.elapsed();
        if other.status == 429 {
            assert_eq!(other.code, "per_user");
            return;
        }
        let retry_after = Duration::from_secs(answer.retry_after.expect("Retry-After"));
        // Retry-After is rounded up to whole seconds: a refill can come a second earlier.
        assert!(
            elapsed + Duration::from_secs(1) >= retry_after,
            "the second replica served a user the first had just refused ({} after {elapsed:?}): \
             the replicas do not share her limit",
            other.status
        );
        eprintln!("attempt {attempt}: {elapsed:?} between the two asks, a refill came; again");
    }
    panic!("every attempt took longer than a refill: nothing shown");
}
