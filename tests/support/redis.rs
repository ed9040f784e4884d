//! Real `redis-server` processes on loopback ports, started and stopped by the tests, and a
//! three-master Redis Cluster made with `redis-cli --cluster create`.
//!
//! `redis-server` and `redis-cli` are looked up on PATH (Debian: `redis-server`, `redis-tools`).
//! When they are missing the tests say so and stop early, unless `CI` is set, where a missing Redis
//! is a failure.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a server may take to accept connections, or a cluster to agree on its slots: generous,
/// for a busy CI machine; a healthy start takes milliseconds.
const START_WITHIN: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Binaries {
    pub server: PathBuf,
    pub cli: PathBuf,
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// `redis-server` and `redis-cli` from PATH, or None (with a notice) when they are missing and
/// the run does not require them.
pub fn binaries() -> Option<Binaries> {
    match (on_path("redis-server"), on_path("redis-cli")) {
        (Some(server), Some(cli)) => Some(Binaries { server, cli }),
        _ if std::env::var_os("CI").is_some() => panic!(
            "the Redis tests need redis-server and redis-cli on PATH: apt-get install redis-server redis-tools"
        ),
        _ => {
            eprintln!(
                "SKIPPED: the Redis tests need redis-server and redis-cli on PATH (apt-get install redis-server redis-tools)"
            );
            None
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

fn scratch_dir(port: u16) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "proof-bff-redis-{}-{port}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("a scratch directory for redis-server");
    dir
}

/// One `redis-server` on 127.0.0.1, without persistence; killed when dropped.
pub struct RedisServer {
    binaries: Binaries,
    port: u16,
    dir: PathBuf,
    args: Vec<String>,
    /// The `default` user's password, when the server requires one (for admin connections).
    admin_password: Option<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// A plain server, or None when the tests are skipped.
    pub fn start() -> Option<Self> {
        Self::start_with(&[], None)
    }

    /// A server with extra `redis-server` arguments; `admin_password` is the `default` user's
    /// password when `args` set one (`--requirepass`), for [`admin`](Self::admin).
    pub fn start_with(args: &[&str], admin_password: Option<&str>) -> Option<Self> {
        let binaries = binaries()?;
        let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        // A port found free may be taken before redis-server binds it: try another.
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut server = Self {
                binaries: binaries.clone(),
                port,
                dir: scratch_dir(port),
                args: args.clone(),
                admin_password: admin_password.map(str::to_owned),
                child: None,
            };
            match server.launch() {
                Ok(()) => return Some(server),
                Err(log) => last_log = log,
            }
        }
        panic!("redis-server did not start; its last log:\n{last_log}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `redis://127.0.0.1:<port>`, without credentials.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr())
    }

    /// Kills the server (SIGKILL, as a crash would) and waits for it to be gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, with the same arguments and an empty dataset.
    pub fn restart(&mut self) {
        self.stop();
        // The port was ours a moment ago; redis-server binds with SO_REUSEADDR.
        if let Err(log) = self.launch() {
            panic!("redis-server did not restart on port {}:\n{log}", self.port);
        }
    }

    /// Freezes the process (SIGSTOP): connections stay open and nothing is answered.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a paused process (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the server is running");
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} failed");
    }

    /// A synchronous admin connection (the `default` user).
    pub fn admin(&self) -> redis::Connection {
        let url = match &self.admin_password {
            Some(password) => format!("redis://:{password}@{}", self.addr()),
            None => self.url(),
        };
        redis::Client::open(url)
            .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(10)))
            .expect("an admin connection to redis-server")
    }

    /// Every key, read with SCAN.
    pub fn keys(&self) -> Vec<String> {
        let mut admin = self.admin();
        let mut keys = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("COUNT")
                .arg(1000)
                .query(&mut admin)
                .expect("SCAN");
            keys.extend(batch);
            if next == 0 {
                return keys;
            }
            cursor = next;
        }
    }

    fn launch(&mut self) -> Result<(), String> {
        let log_file = self.dir.join("redis.log");
        let mut command = Command::new(&self.binaries.server);
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log_file)
            .args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = command
            .spawn()
            .map_err(|err| format!("redis-server could not be spawned: {err}"))?;
        let deadline = Instant::now() + START_WITHIN;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("exited with {status}\n{}", read_log(&log_file)));
            }
            if answers_ping(self.port) {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "no answer within {START_WITHIN:?}\n{}",
                    read_log(&log_file)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL ends a paused (stopped) process too.
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// True once the port answers a RESP `PING`, whatever the answer (`+PONG`, `-NOAUTH`, `-LOADING`).
fn answers_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut first = [0u8; 1];
    matches!(stream.read(&mut first), Ok(1) if first[0] == b'+' || first[0] == b'-')
}

/// Three masters and no replicas, every slot assigned; killed when dropped.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Option<Self> {
        let binaries = binaries()?;
        let mut nodes = Vec::new();
        for _ in 0..3 {
            // The cluster bus gets a port of its own: the default (port + 10000) may be taken or
            // beyond 65535.
            let bus_port = free_port().to_string();
            nodes.push(RedisServer::start_with(
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    &bus_port,
                ],
                None,
            )?);
        }
        let output = Command::new(&binaries.cli)
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(RedisServer::addr))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli runs");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = Self { nodes };
        cluster.wait_until_ready();
        Some(cluster)
    }

    /// `redis://` URL of one node.
    pub fn url(&self, node: usize) -> String {
        self.nodes[node].url()
    }

    /// Every node's keys, by node.
    pub fn keys_by_node(&self) -> Vec<Vec<String>> {
        self.nodes.iter().map(RedisServer::keys).collect()
    }

    fn wait_until_ready(&self) {
        let deadline = Instant::now() + START_WITHIN;
        for node in &self.nodes {
            let mut admin = node.admin();
            loop {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut admin)
                    .expect("CLUSTER INFO");
                if info.contains("cluster_state:ok")
                    && info.contains("cluster_slots_ok:16384")
                    && info.contains("cluster_known_nodes:3")
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster was not ready within {START_WITHIN:?}:\n{info}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// A private CA and a certificate it signed for 127.0.0.1, made with the `openssl` command.
pub struct TestCertificates {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCertificates {
    pub fn generate() -> Self {
        let dir = scratch_dir(0);
        let openssl = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .stdin(Stdio::null())
                .output()
                .expect("the openssl command runs");
            assert!(
                output.status.success(),
                "openssl {args:?} failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &["-keyout", "ca.key", "-out", "ca.crt"],
            ]
            .concat()
            .into_iter()
            .chain(["-days", "2", "-subj", "/CN=proof-bff test CA"])
            .collect::<Vec<_>>(),
        );
        openssl(
            &[
                &["req"][..],
                &ec,
                &["-keyout", "server.key", "-out", "server.csr"],
            ]
            .concat()
            .into_iter()
            .chain(["-subj", "/CN=localhost"])
            .collect::<Vec<_>>(),
        );
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
        )
        .expect("the extensions file");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        Self {
            ca: dir.join("ca.crt"),
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
            dir,
        }
    }
}

impl Drop for TestCertificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
