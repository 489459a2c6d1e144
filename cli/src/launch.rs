//! A local federation of real processes: one `cohort-worker` per party and,
//! with a trusted dealer's material, one `cohort-dealer`, on loopback, with
//! ephemeral certificates. Every worker runs [`Options::protocol`].
//!
//! [`Federation::start`] creates a private working directory, a CA per
//! party (each party trusts every peer only through that peer's CA), a CA
//! for the controller (this process) and one for the dealer, writes each
//! worker's configuration, starts the processes and waits until each has
//! bound its ports. [`Federation::run`] submits a job to every worker
//! through its control API and waits for all of them.
//!
//! The directory holds every party's private key, so it must not outlive
//! the run: [`Federation::shutdown`] stops the processes gracefully
//! (SIGTERM, so that each drains and exports its spans, then SIGKILL after
//! a grace period) and removes it; dropping the federation instead (a
//! panic, an early return) kills the processes at once and removes it too.
//! `COHORT_KEEP_DIR` keeps the directory (for debugging).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use cohort_worker::preprocessing::Mode;
use cohort_worker::protocol::ProtocolName;
use cohort_worker::service::EXIT_ADDRESS_IN_USE;
use cohort_worker::service::api::{
    FillRequest, FillStatus, InputValue, JobRequest, JobStatus, JobTimeouts, MaterialKind,
};
use cohort_worker::service::control::{ControlClient, ControlError};
use cohort_worker::transport::{JobId, PartyCa, Role, SharedIdentity, TlsIdentity, TransportError};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The federation name local runs use.
pub const FEDERATION: &str = "local";
/// The controller principal's name by default (`controller/cohort`).
pub const CONTROLLER: &str = "cohort";
/// The dealer principal's name (`dealer/main`).
const DEALER: &str = "main";
/// How long a process may take to bind its ports.
const STARTUP: Duration = Duration::from_secs(30);
/// How many times [`Federation::start`] picks fresh ports when one it
/// picked was taken (by any process on the host) before its worker bound it.
const START_ATTEMPTS: usize = 5;

/// Why a local federation could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("certificates: {0}")]
    Certificates(#[from] TransportError),
    #[error("{process} did not start: {reason}")]
    Start { process: String, reason: String },
    /// A port picked for a process was taken before the process bound it.
    #[error("{process} did not start: the port picked for it was taken meanwhile")]
    PortTaken { process: String },
    #[error(transparent)]
    Control(Box<ControlError>),
}

impl From<ControlError> for LaunchError {
    fn from(e: ControlError) -> LaunchError {
        LaunchError::Control(Box::new(e))
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LaunchError {
    let what = what.into();
    move |source| LaunchError::Io { what, source }
}

/// Where the binaries are and how the processes behave.
#[derive(Clone, Debug)]
pub struct Options {
    pub worker_bin: PathBuf,
    pub dealer_bin: PathBuf,
    /// `RUST_LOG` for the processes.
    pub log: String,
    /// Where process logs go: `None` inherits stderr.
    pub log_dir: Option<PathBuf>,
    /// The name in the controller principal (`controller/<name>`) the
    /// workers accept on their control API. The operator's is `operator`.
    pub controller_name: String,
    /// Validity of the workers' certificates (tests of rotation use
    /// seconds; see [`Federation::renew_leaf`]).
    pub leaf_lifetime: Duration,
    /// How often workers look for renewed TLS files (`tls.reloadInterval`).
    pub tls_reload: Duration,
    /// How often workers probe their peers (`peerProbe.interval`).
    pub peer_probe: Duration,
    /// Extra environment for the worker and dealer processes (e.g. the
    /// `OTEL_*` variables of a trace collector); the rest is inherited.
    pub env: Vec<(String, String)>,
    /// The workers' `--shutdown-grace` (how long a SIGTERM waits for
    /// running jobs); `None` leaves the worker's default (30 s).
    pub worker_shutdown_grace: Option<Duration>,
    /// The protocol every worker runs (`protocol.name` of its
    /// configuration). Under a protocol without material (`replicated-3`)
    /// no dealer starts, the workers have no pool, jobs name no
    /// preprocessing mode, and `preprocessing` is not used.
    pub protocol: ProtocolName,
    /// Where jobs take their material: with [`Mode::Dealer`] a trusted
    /// dealer process starts beside the workers; with [`Mode::Ot`] none
    /// does, and the workers generate the material among themselves; with
    /// [`Mode::Pool`] the workers take it from their pools, which
    /// [`Federation::fill`] fills (every worker has a pool in any mode of
    /// a protocol that takes material).
    pub preprocessing: Mode,
    /// The workers' pools keep these watermarks themselves (background
    /// generation); `None`: they are filled by [`Federation::fill`] only.
    pub pool_watermarks: Option<PoolWatermarks>,
    /// The pools' `ttl` (the worker's default, 7 days, when `None`).
    pub pool_ttl: Option<Duration>,
}

/// A pool's background generation settings (`pool.lowWatermark`, `target`,
/// `perBatch`, `checkInterval` of the worker configuration).
#[derive(Clone, Copy, Debug)]
pub struct PoolWatermarks {
    /// The triples' (and division pairs') watermarks.
    pub low_watermark: usize,
    pub target: usize,
    pub per_batch: usize,
    pub check_interval: Duration,
    /// The binary kinds' `(lowWatermark, target)`, the same for bit
    /// triples (in words of 64), edaBits and daBits; `None`: not kept.
    pub binary: Option<(usize, usize)>,
}

impl Options {
    /// Binaries next to the running executable (how `cargo build` and an
    /// install lay them out), overridable by `COHORT_WORKER_BIN` and
    /// `COHORT_DEALER_BIN`.
    pub fn beside_current_exe() -> Options {
        let dir = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)).unwrap_or_default();
        let pick = |var: &str, name: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .unwrap_or_else(|| dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX)))
        };
        Options {
            worker_bin: pick("COHORT_WORKER_BIN", "cohort-worker"),
            dealer_bin: pick("COHORT_DEALER_BIN", "cohort-dealer"),
            log: std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            log_dir: None,
            controller_name: CONTROLLER.into(),
            leaf_lifetime: Duration::from_secs(24 * 3600),
            tls_reload: Duration::from_secs(10),
            peer_probe: Duration::from_secs(30),
            env: Vec::new(),
            worker_shutdown_grace: None,
            protocol: ProtocolName::default(),
            preprocessing: Mode::Dealer,
            pool_watermarks: None,
            pool_ttl: None,
        }
    }
}

/// One party's worker process.
pub struct WorkerProcess {
    pub name: String,
    pub child: Child,
    /// Its configuration file.
    pub config: PathBuf,
    pub peer: String,
    pub control: String,
    pub metrics: String,
    pub client: ControlClient,
}

/// A running local federation.
pub struct Federation {
    pub dir: PathBuf,
    pub workers: Vec<WorkerProcess>,
    pub dealer: Option<Child>,
    /// The dealer's metrics endpoint (`host:port`).
    pub dealer_metrics: String,
    /// The controller's identity; [`Federation::set_trusted_cas`] updates
    /// its trust too.
    pub controller: SharedIdentity,
    /// Each party's CA (tests issue certificates from them).
    pub cas: BTreeMap<String, PartyCa>,
    options: Options,
    keep_dir: bool,
}

/// What [`Federation::shutdown`] did.
#[derive(Debug, Default)]
pub struct Shutdown {
    /// Processes that had not exited by the deadline and were killed.
    pub killed: Vec<String>,
    /// The working directory, when `COHORT_KEEP_DIR` kept it.
    pub kept_dir: Option<PathBuf>,
}

/// Ask `child` to stop (SIGTERM): it drains, flushes and exits.
fn terminate(child: &Child) {
    #[cfg(unix)]
    if let Some(pid) = child.id().and_then(|p| libc::pid_t::try_from(p).ok()) {
        // SAFETY: kill(2) has no memory effects; `pid` is our own child,
        // not yet reaped (`id()` is `None` once it has been), so the id
        // cannot have been reused.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    #[cfg(not(unix))]
    let _ = child;
}

impl Federation {
    /// Stop every process and remove the working directory (and with it
    /// every private key). Each process gets SIGTERM: a worker stops taking
    /// jobs, waits for running ones (its `--shutdown-grace`), exports its
    /// queued spans and exits; so does the dealer. Whatever still runs
    /// after `grace`, or once `hurry` completes (a second Ctrl-C), is
    /// killed. Every process has exited when this returns.
    pub async fn shutdown(mut self, grace: Duration, hurry: impl std::future::Future<Output = ()>) -> Shutdown {
        let mut children: Vec<(String, &mut Child)> =
            self.workers.iter_mut().map(|w| (format!("cohort-worker of {}", w.name), &mut w.child)).collect();
        if let Some(dealer) = &mut self.dealer {
            children.push(("cohort-dealer".into(), dealer));
        }
        for (_, child) in &children {
            terminate(child);
        }
        let all_exited = async {
            for (_, child) in children.iter_mut() {
                let _ = child.wait().await;
            }
        };
        tokio::select! {
            () = all_exited => {}
            () = tokio::time::sleep(grace) => {}
            () = hurry => {}
        }
        let mut report = Shutdown::default();
        for (name, child) in children.iter_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill().await;
                report.killed.push(std::mem::take(name));
            }
        }
        if self.keep_dir {
            report.kept_dir = Some(self.dir.clone());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        report
    }
}

impl Drop for Federation {
    fn drop(&mut self) {
        for w in &mut self.workers {
            let _ = w.child.start_kill();
        }
        if let Some(dealer) = &mut self.dealer {
            let _ = dealer.start_kill();
        }
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Removes a directory that nothing owns yet when dropped.
struct DirGuard(Option<PathBuf>);

impl Drop for DirGuard {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Write `contents` to `path`, readable only by this user when `private`.
fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), LaunchError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(io(format!("cannot create {}", path.display())))?;
    file.write_all(contents.as_bytes()).map_err(io(format!("cannot write {}", path.display())))
}

/// A CA, and a leaf of `principal` issued by it, written as `<stem>-ca.pem`,
/// `<stem>.crt` (chain) and `<stem>.key`.
fn credentials(
    dir: &Path,
    stem: &str,
    principal: &str,
    leaf_lifetime: Duration,
) -> Result<(PartyCa, (PathBuf, PathBuf, PathBuf)), LaunchError> {
    let ca = PartyCa::generate(FEDERATION, principal, Duration::from_secs(24 * 3600))?;
    let (ca_path, cert_path, key_path) =
        (dir.join(format!("{stem}-ca.pem")), dir.join(format!("{stem}.crt")), dir.join(format!("{stem}.key")));
    write_file(&ca_path, &ca.cert_pem(), false)?;
    write_leaf(&ca, principal, leaf_lifetime, &cert_path, &key_path)?;
    Ok((ca, (ca_path, cert_path, key_path)))
}

/// Issue a leaf of `principal` from `ca`, valid from a minute ago for
/// `lifetime`, and replace the chain and key files with it. Each file is
/// written beside its final name and renamed over it, so a reader never
/// sees a half-written file (a key may still briefly pair with the old
/// certificate: the worker refuses that state and waits for the next).
fn write_leaf(
    ca: &PartyCa,
    principal: &str,
    lifetime: Duration,
    cert_path: &Path,
    key_path: &Path,
) -> Result<SystemTime, LaunchError> {
    let now = SystemTime::now();
    let not_after = now + lifetime;
    let leaf = ca.issue_party_cert(
        principal,
        &["localhost".into(), "127.0.0.1".into()],
        now - Duration::from_secs(60),
        not_after,
    )?;
    replace_file(key_path, &leaf.key_pem, true)?;
    replace_file(cert_path, &format!("{}{}", leaf.cert_pem, ca.cert_pem()), false)?;
    Ok(not_after)
}

/// Write `contents` to `path` through a temporary file and a rename.
fn replace_file(path: &Path, contents: &str, private: bool) -> Result<(), LaunchError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".next");
    let tmp = PathBuf::from(tmp);
    write_file(&tmp, contents, private)?;
    std::fs::rename(&tmp, path).map_err(io(format!("cannot replace {}", path.display())))
}

/// A free loopback port (bound, read, released: the process that uses it
/// binds it moments later, and exits with [`EXIT_ADDRESS_IN_USE`] if
/// another socket took it meanwhile; [`Federation::start`] then retries).
fn free_port() -> Result<u16, LaunchError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("cannot reserve a loopback port"))?;
    Ok(l.local_addr().map_err(io("cannot reserve a loopback port"))?.port())
}

/// Read lines from a child's stdout until one satisfies `parse`.
async fn await_line<T>(
    process: &str,
    child: &mut Child,
    mut parse: impl FnMut(&str) -> Option<T>,
) -> Result<T, LaunchError> {
    let start = |reason: String| LaunchError::Start { process: process.to_string(), reason };
    let stdout = child.stdout.take().ok_or_else(|| start("no stdout".into()))?;
    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(STARTUP, async {
        while let Some(line) = lines.next_line().await.map_err(|e| start(e.to_string()))? {
            if let Some(found) = parse(&line) {
                return Ok(found);
            }
        }
        match child.wait().await {
            Ok(status) if status.code() == Some(i32::from(EXIT_ADDRESS_IN_USE)) => {
                Err(LaunchError::PortTaken { process: process.to_string() })
            }
            Ok(status) => Err(start(format!("it exited ({status}); its log says why"))),
            Err(e) => Err(start(format!("it exited ({e}); its log says why"))),
        }
    })
    .await
    .map_err(|_| start(format!("not listening after {STARTUP:?}")))??;
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(found)
}

impl Federation {
    /// Start the trusted dealer, trusting each party through its own CA;
    /// its address and CA file.
    async fn start_dealer(&mut self, dir: &Path, party_files: &PartyFiles) -> Result<(String, PathBuf), LaunchError> {
        let options = self.options.clone();
        let (_, (dealer_ca, dealer_cert, dealer_key)) =
            credentials(dir, "dealer", &Role::Dealer.principal(DEALER), Duration::from_secs(24 * 3600))?;

        // The dealer, trusting each party through its own CA.
        let mut dealer = Command::new(&options.dealer_bin);
        dealer
            .args(["--federation", FEDERATION, "--name", DEALER, "--listen", "127.0.0.1:0"])
            .arg("--cert")
            .arg(&dealer_cert)
            .arg("--key")
            .arg(&dealer_key)
            .arg("--reload-interval")
            .arg(format!("{}ms", options.tls_reload.as_millis()));
        dealer.args(["--metrics-addr", "127.0.0.1:0"]);
        for (name, (ca, _, _)) in party_files {
            dealer.arg("--party").arg(name).arg("--peer-ca").arg(format!("{name}={}", ca.display()));
        }
        let dealer = self.dealer.insert(spawn(&mut dealer, "cohort-dealer", &options, "dealer")?);
        let mut metrics = String::new();
        let dealer_addr = await_line("cohort-dealer", dealer, |line| {
            if let Some(at) = line.strip_prefix("metrics on ") {
                metrics = at.trim().to_string();
            }
            line.strip_prefix("listening on ").map(|a| a.trim().to_string())
        })
        .await?;
        self.dealer_metrics = metrics;
        Ok((dealer_addr, dealer_ca))
    }

    /// Start one worker per party (and, for [`Mode::Dealer`], a trusted
    /// dealer) in a fresh directory. Workers' peer ports are picked here
    /// (every configuration names every peer's endpoint), so one may be
    /// taken before its worker binds it: then the whole federation starts
    /// again on fresh ports, up to [`START_ATTEMPTS`] times.
    pub async fn start(parties: &[String], options: &Options) -> Result<Federation, LaunchError> {
        let mut attempt = 1;
        loop {
            match Federation::start_once(parties, options).await {
                // The failed attempt's processes and directory go with it.
                Err(LaunchError::PortTaken { .. }) if attempt < START_ATTEMPTS => attempt += 1,
                result => return result,
            }
        }
    }

    async fn start_once(parties: &[String], options: &Options) -> Result<Federation, LaunchError> {
        let dir = std::env::temp_dir().join(format!("cohort-run-{}", JobId::random()));
        std::fs::create_dir_all(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io(format!("cannot restrict {}", dir.display())))?;
        }
        // Until the federation owns the directory, a failure here removes it.
        let mut unowned = DirGuard(Some(dir.clone()));
        let mut party_files = PartyFiles::new();
        let mut cas = BTreeMap::new();
        for name in parties {
            let (ca, files) = credentials(&dir, name, name, options.leaf_lifetime)?;
            party_files.insert(name.clone(), files);
            cas.insert(name.clone(), ca);
        }
        let mut federation = Federation {
            dir: dir.clone(),
            workers: Vec::new(),
            dealer: None,
            dealer_metrics: String::new(),
            controller: controller_identity(&dir, &options.controller_name, parties)?.into(),
            cas,
            options: options.clone(),
            keep_dir: std::env::var_os("COHORT_KEEP_DIR").is_some(),
        };
        unowned.0 = None;
        let material = options.protocol.uses_preprocessing();
        let dealer = match options.preprocessing {
            Mode::Dealer if material => Some(federation.start_dealer(&dir, &party_files).await?),
            _ => None,
        };

        // Workers: peer ports are reserved first, since every worker's
        // configuration names every peer's endpoint.
        let ports = parties.iter().map(|_| free_port()).collect::<Result<Vec<_>, _>>()?;
        let controller_ca = dir.join("controller-ca.pem");
        for (i, name) in parties.iter().enumerate() {
            let (_, cert, key) = &party_files[name];
            let peer_cas: BTreeMap<String, String> = party_files
                .iter()
                .filter(|(peer, _)| *peer != name)
                .map(|(peer, (ca, _, _))| (peer.clone(), ca.display().to_string()))
                .collect();
            let config = serde_json::json!({
                "federation": FEDERATION,
                "party": name,
                "listen": {"peer": format!("127.0.0.1:{}", ports[i]), "control": "127.0.0.1:0", "metrics": "127.0.0.1:0"},
                "tls": {"cert": cert, "key": key, "peerCas": peer_cas, "reloadInterval": format!("{}ms", options.tls_reload.as_millis())},
                "controller": {"name": options.controller_name, "ca": controller_ca},
                "parties": parties.iter().zip(&ports)
                    .map(|(p, port)| serde_json::json!({"name": p, "endpoint": format!("127.0.0.1:{port}")}))
                    .collect::<Vec<_>>(),
                "resultsDir": dir.join(format!("{name}-results")),
                "auditLog": dir.join(format!("{name}-audit.jsonl")),
                "peerProbe": {"interval": format!("{}ms", options.peer_probe.as_millis())},
                "protocol": {"name": options.protocol.as_str()},
            });
            let mut config = config;
            // A worker refuses a pool under a protocol that takes no material.
            if material {
                config["pool"] = serde_json::json!({"dir": dir.join(format!("{name}-pool"))});
            }
            if let Some(w) = options.pool_watermarks.as_ref().filter(|_| material) {
                config["pool"]["lowWatermark"] = w.low_watermark.into();
                config["pool"]["target"] = w.target.into();
                config["pool"]["perBatch"] = w.per_batch.into();
                config["pool"]["checkInterval"] = format!("{}ms", w.check_interval.as_millis()).into();
                if let Some((low, target)) = w.binary {
                    for kind in ["bitTriples", "edaBits", "daBits"] {
                        config["pool"][kind] = serde_json::json!({"lowWatermark": low, "target": target});
                    }
                }
            }
            if let Some(ttl) = options.pool_ttl.filter(|_| material) {
                config["pool"]["ttl"] = format!("{}ms", ttl.as_millis()).into();
            }
            if let Some((dealer_addr, dealer_ca)) = &dealer {
                config["dealer"] = serde_json::json!({"name": DEALER, "endpoint": dealer_addr, "ca": dealer_ca});
            }
            // JSON is YAML: the worker reads it as its YAML configuration.
            let path = dir.join(format!("{name}.yaml"));
            write_file(&path, &config.to_string(), false)?;
            let mut cmd = Command::new(&options.worker_bin);
            cmd.arg("--config").arg(&path);
            if let Some(grace) = options.worker_shutdown_grace {
                cmd.arg("--shutdown-grace").arg(format!("{}ms", grace.as_millis()));
            }
            let child = spawn(&mut cmd, "cohort-worker", options, name)?;
            federation.workers.push(WorkerProcess {
                name: name.clone(),
                child,
                config: path,
                peer: format!("127.0.0.1:{}", ports[i]),
                control: String::new(),
                metrics: String::new(),
                client: ControlClient::new(federation.controller.clone(), "", name.clone()),
            });
        }
        for i in 0..federation.workers.len() {
            federation.await_worker(i).await?;
        }
        Ok(federation)
    }

    /// Wait for worker `i` to bind its ports, and connect its client.
    async fn await_worker(&mut self, i: usize) -> Result<(), LaunchError> {
        let w = &mut self.workers[i];
        let process = format!("cohort-worker of {}", w.name);
        let (control, metrics) = await_line(&process, &mut w.child, |line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            Some((v.get("control")?.as_str()?.to_string(), v.get("metrics")?.as_str()?.to_string()))
        })
        .await?;
        w.client = ControlClient::new(self.controller.clone(), control.clone(), w.name.clone());
        (w.control, w.metrics) = (control, metrics);
        Ok(())
    }

    /// The files of the controller's credentials: (its CA, certificate
    /// chain, key).
    pub fn controller_files(&self) -> (PathBuf, PathBuf, PathBuf) {
        (self.dir.join("controller-ca.pem"), self.dir.join("controller.crt"), self.dir.join("controller.key"))
    }

    /// The files of `party`'s credentials: (CA, certificate chain, key).
    pub fn party_files(&self, party: &str) -> (PathBuf, PathBuf, PathBuf) {
        (
            self.dir.join(format!("{party}-ca.pem")),
            self.dir.join(format!("{party}.crt")),
            self.dir.join(format!("{party}.key")),
        )
    }

    /// Renew `party`'s worker certificate: a new key and a leaf from
    /// `issuer` (its own CA unless a test passes another) living `lifetime`,
    /// replacing the files the worker reads. Returns the new expiry.
    pub fn renew_leaf(
        &self,
        party: &str,
        issuer: Option<&PartyCa>,
        lifetime: Duration,
    ) -> Result<SystemTime, LaunchError> {
        let ca = match issuer {
            Some(ca) => ca,
            None => self.cas.get(party).ok_or_else(|| LaunchError::Start {
                process: format!("cohort-worker of {party}"),
                reason: "no such party".into(),
            })?,
        };
        let (_, cert, key) = self.party_files(party);
        write_leaf(ca, party, lifetime, &cert, &key)
    }

    /// Replace the CA bundle every other worker trusts for `party` (PEM;
    /// several CAs during a CA key replacement).
    /// The controller trusts the same bundle from now on.
    pub fn set_trusted_cas(&self, party: &str, bundle_pem: &str) -> Result<(), LaunchError> {
        replace_file(&self.party_files(party).0, bundle_pem, false)?;
        let parties: Vec<String> = self.workers.iter().map(|w| w.name.clone()).collect();
        let principal = Role::Controller.principal(&self.options.controller_name);
        self.controller.replace(load_controller_identity(&self.dir, &principal, &parties)?)?;
        Ok(())
    }

    /// Kill worker `i` at once (SIGKILL).
    pub async fn kill_worker(&mut self, i: usize) -> Result<(), LaunchError> {
        let w = &mut self.workers[i];
        w.child.kill().await.map_err(io(format!("cannot kill the worker of {}", w.name)))
    }

    /// (Re)start worker `i` from its configuration file (killing it first if
    /// it runs), e.g. after a test changed its files.
    pub async fn restart_worker(&mut self, i: usize) -> Result<(), LaunchError> {
        let _ = self.workers[i].child.kill().await;
        let mut cmd = Command::new(&self.options.worker_bin);
        cmd.arg("--config").arg(&self.workers[i].config);
        if let Some(grace) = self.options.worker_shutdown_grace {
            cmd.arg("--shutdown-grace").arg(format!("{}ms", grace.as_millis()));
        }
        let name = self.workers[i].name.clone();
        self.workers[i].child = spawn(&mut cmd, "cohort-worker", &self.options, &format!("{name}-restarted"))?;
        self.await_worker(i).await
    }

    /// Fill every worker's pool: one generation session of `batches`
    /// batches of `per_batch` items of `kind` (division pairs for
    /// `divisor`) among all the parties, waiting until every worker has
    /// stored its shares. Every party's final fill status.
    pub async fn fill(
        &self,
        kind: MaterialKind,
        divisor: Option<u64>,
        per_batch: usize,
        batches: usize,
    ) -> Result<Vec<FillStatus>, LaunchError> {
        let request = FillRequest {
            id: JobId::random().to_string(),
            parties: self.workers.iter().map(|w| w.name.clone()).collect(),
            kind,
            divisor,
            per_batch,
            batches,
            timeouts: JobTimeouts::default(),
        };
        for w in &self.workers {
            w.client.fill(&request).await?;
        }
        let mut statuses = Vec::new();
        for w in &self.workers {
            loop {
                let status = w.client.fill_status(&request.id).await?;
                if status.phase.is_final() {
                    statuses.push(status);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Ok(statuses)
    }

    /// Submit `program` with each party's inputs to every worker, and wait
    /// for every party's final status. `on_wait` is called about once a
    /// second while waiting (progress).
    pub async fn run(
        &self,
        program: &str,
        inputs: Vec<BTreeMap<String, Vec<InputValue>>>,
        timeouts: JobTimeouts,
        mut on_wait: impl FnMut(Duration),
    ) -> Result<Vec<JobStatus>, LaunchError> {
        let id = JobId::random().to_string();
        let parties: Vec<String> = self.workers.iter().map(|w| w.name.clone()).collect();
        for (w, inputs) in self.workers.iter().zip(inputs) {
            let request = JobRequest {
                id: id.clone(),
                program: program.into(),
                parties: parties.clone(),
                inputs,
                timeouts,
                preprocessing: self.options.protocol.uses_preprocessing().then_some(self.options.preprocessing),
            };
            w.client.submit(&request).await?;
        }
        let started = std::time::Instant::now();
        let mut reported = Duration::ZERO;
        let mut statuses = Vec::new();
        for w in &self.workers {
            loop {
                let status = w.client.status(&id).await?;
                if status.phase.is_final() {
                    statuses.push(status);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                if started.elapsed() >= reported + Duration::from_secs(1) {
                    reported = started.elapsed();
                    on_wait(reported);
                }
            }
        }
        Ok(statuses)
    }
}

fn spawn(cmd: &mut Command, what: &str, options: &Options, log_name: &str) -> Result<Child, LaunchError> {
    cmd.env("RUST_LOG", &options.log)
        .envs(options.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    match &options.log_dir {
        Some(dir) => {
            let path = dir.join(format!("{log_name}.log"));
            let file = std::fs::File::create(&path).map_err(io(format!("cannot create {}", path.display())))?;
            cmd.stderr(file);
        }
        None => {
            cmd.stderr(Stdio::inherit());
        }
    }
    cmd.spawn().map_err(|e| {
        let path = cmd.as_std().get_program().to_string_lossy().into_owned();
        let hint = match e.kind() {
            std::io::ErrorKind::NotFound => {
                "; build it (`cargo build --workspace`) or point COHORT_WORKER_BIN / COHORT_DEALER_BIN at it"
            }
            _ => "",
        };
        LaunchError::Start { process: what.into(), reason: format!("cannot execute {path}: {e}{hint}") }
    })
}

/// Party files by name: (CA, certificate chain, key).
type PartyFiles = BTreeMap<String, (PathBuf, PathBuf, PathBuf)>;

/// This process's identity as the workers' controller (principal
/// `controller/cohort`, its own CA), trusting each party through that
/// party's CA.
/// Create the controller's CA and certificate, and load its identity.
fn controller_identity(dir: &Path, name: &str, parties: &[String]) -> Result<TlsIdentity, LaunchError> {
    let principal = Role::Controller.principal(name);
    credentials(dir, "controller", &principal, Duration::from_secs(24 * 3600))?;
    load_controller_identity(dir, &principal, parties)
}

/// The controller's identity from its files, trusting each party through
/// the CA bundle file the workers trust it by.
fn load_controller_identity(dir: &Path, principal: &str, parties: &[String]) -> Result<TlsIdentity, LaunchError> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(io(format!("cannot read {}", p.display())));
    let cert = read(&dir.join("controller.crt"))?;
    let key = zeroize::Zeroizing::new(read(&dir.join("controller.key"))?);
    let mut trust = Vec::new();
    for name in parties {
        trust.push((name.clone(), read(&dir.join(format!("{name}-ca.pem")))?));
    }
    Ok(TlsIdentity::from_pem_pinned(FEDERATION, principal, &cert, &key, &trust)?)
}
