//! The Kubernetes end-to-end suite: three parties, each with its own
//! operator (the chart, installed once per namespace), compute the
//! salary-stats example through MpcClusters and MpcJobs, and every party's
//! result Secret must match the program evaluated in the clear.
//!
//! How to run it on kind or k3d, and how to debug a failure:
//! docs/e2e-kubernetes.md.
//!
//! # When it runs
//!
//! - `KUBECONFIG` unset (or empty): the suite prints why and passes. The
//!   suite never falls back to `~/.kube/config` or in-cluster credentials,
//!   so `cargo test --workspace` on a developer machine does not touch the
//!   current cluster unless `KUBECONFIG` is set explicitly.
//! - `KUBECONFIG` set but the API server does not answer within 10 s (or
//!   the file does not load): prints why and passes.
//! - `COHORT_E2E_K8S=require` turns both skips into failures (CI jobs that
//!   do have a cluster); `COHORT_E2E_K8S=skip` skips even with a cluster.
//! - `COHORT_E2E_OPERATOR_IMAGE` and `COHORT_E2E_WORKER_IMAGE` (image
//!   references the nodes can run, e.g. loaded with `kind load
//!   docker-image`) say which build to test; unset, the suite skips (so an
//!   exported `KUBECONFIG` alone never installs anything), and with
//!   `COHORT_E2E_K8S=require` it fails. A `helm` (v3) binary on `PATH` is
//!   required: the suite fails, before touching the cluster, without it.
//!
//! # Assumptions about the cluster
//!
//! - Kubernetes 1.31 or later (the CRDs' CEL rules), checked up front.
//! - The kubeconfig's user may create namespaces, CRDs and ClusterRoles
//!   (cluster-admin, as on a fresh kind or k3d cluster). The CRDs come with
//!   the chart: the first release owns them (`crds.create: true`), the
//!   other two set `crds.create: false`. They are kept at the end (the
//!   chart marks them `helm.sh/resource-policy: keep`); CRDs left by an
//!   earlier run belong to its deleted release, so delete them or use a
//!   fresh cluster before the next run.
//! - A default StorageClass (kind and k3d ship local-path): every worker
//!   has a results volume, the hosted dealer a journal volume.
//! - Pod-to-pod traffic between namespaces through ClusterIP Services. The
//!   operator writes NetworkPolicies; a CNI that enforces them (Calico,
//!   Cilium; not kind's kindnet) makes the run check them too.
//! - The images are on the nodes or pullable (`IfNotPresent`).
//!
//! # What it builds
//!
//! - Three namespaces `cohort-e2e-bank-{a,b,c}-<suffix>` (random suffix,
//!   so reruns and parallel runs never collide), labelled
//!   `cohort.dev/e2e=<suffix>`. Party k of `examples/salary-stats/run.yaml`
//!   (alice, bob, carol: the program names them) lives in namespace k.
//! - In each, `helm install cohort charts/cohort` with `scope: Namespace`
//!   and the two images.
//! - In each, an MpcCluster `consortium` (federation `consortium`, one
//!   shard, `service.type: ClusterIP`). Party k's endpoint is its shard-0
//!   peer Service, `consortium-peer-0.<ns k>.svc:7443`: the operator gives
//!   the Service `<cluster>-peer-<i>` the endpoint's port + i, and the
//!   shard certificate covers that name. One shard only: shard i > 0 would
//!   be reached at the *same host* on port + i, which in-cluster Service
//!   names cannot express.
//! - CA trust, exchanged the way parties do it (`COHORT_E2E_CA`):
//!   `operator` (default): create the MpcClusters, wait for each party's
//!   operator-generated `consortium-ca` Secret, and copy its `tls.crt` into
//!   the peers' namespaces as `<party>-ca` (key `ca.crt`), the Secrets each
//!   MpcCluster's `parties[].trust.secretRef` names. `provided`: the suite
//!   generates each party's CA, stores it as a `kubernetes.io/tls` Secret
//!   named by `spec.tls.ca`, and creates every trust Secret before the
//!   MpcClusters.
//! - The dealer (a trusted third party; here a test federation's): a
//!   PreprocessingPool `default` in bank-a's namespace with
//!   `generator.dealer.host: true`, name `main`; every MpcCluster's
//!   `spec.dealer` points at its Service `default-dealer.<ns a>.svc:7500`
//!   with trust `dealer-ca` = bank-a's CA (the operator issues the hosted
//!   dealer's certificate from the hosting party's CA). All of it is in
//!   [`dealer`].
//! - The same MpcJob `salary-stats` (the program of the example) in each
//!   namespace, with that party's data file in a Secret `payroll`; the job
//!   id is derived from the federation and the name, so it is the same
//!   everywhere.
//!
//! # What it checks
//!
//! Every MpcCluster and the pool become `Ready`; every MpcJob reaches
//! `Succeeded` within 10 minutes (a `Failed` job fails the suite at once,
//! with its failure); the jobs agree on the job id, report the program's
//! hash and `3 + interactive depth` rounds; each party's result Secret
//! holds exactly the outputs the program sends it, each within the
//! tolerance of `e2e/tests/examples.rs` of the plaintext evaluation.
//!
//! # Cleanup
//!
//! At the end, pass or fail (a guard's `Drop`, so a panic too): delete the
//! MpcJobs (their finalizer needs the operator), `helm uninstall` (it
//! removes the releases' ClusterRoles) and delete the namespaces.
//! `COHORT_E2E_KEEP=1` keeps everything for inspection. On failure the
//! suite first prints the resources' status, pods, warning events and
//! operator logs.

use std::collections::BTreeMap;
use std::future::Future;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cohort_cli::runfile::RunFile;
use cohort_crds::cluster::{
    CaSpec, MpcClusterSpec, Party, ProtocolSpec, PullPolicy, ServiceSpec, ServiceType, TlsSpec, WorkerSpec,
};
use cohort_crds::common::{CaSecretKeyReference, KeySelector, LocalObjectReference, SecretReference, Trust};
use cohort_crds::conditions::{find_condition, types};
use cohort_crds::job::{InputSource, JobPhase, JobTimeouts, OutputsSpec};
use cohort_crds::{MpcCluster, MpcJob, MpcJobSpec, PreprocessingPool, program_hash};
use cohort_e2e::{expected_outputs, repo_root};
use cohort_worker::data::DataFormat;
use cohort_worker::program::interactive_depth;
use cohort_worker::transport::PartyCa;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kube::api::{DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::config::KubeConfigOptions;
use kube::{Api, Client, Config, Resource, ResourceExt};
// k8s-openapi re-exports serde (not a direct dependency of this crate).
use k8s_openapi::serde::Serialize;
use k8s_openapi::serde::de::DeserializeOwned;

/// The namespaces' stem and the banks hosting the run file's parties, in
/// party order.
const NAMESPACE_PREFIX: &str = "cohort-e2e";
const BANKS: [&str; 3] = ["bank-a", "bank-b", "bank-c"];
/// The Helm release in every namespace.
const RELEASE: &str = "cohort";
/// The MpcCluster of every party, and the federation.
const CLUSTER: &str = "consortium";
const FEDERATION: &str = "consortium";
/// The peer port of shard 0: the endpoint's port, which the operator gives
/// the `<cluster>-peer-0` Service (`operator::cluster::desired::peer_service`).
const PEER_PORT: u16 = 7443;
/// The MpcJob (the same name at every party, so the same derived job id),
/// its input Secret and its result Secret.
const JOB: &str = "salary-stats";
const INPUT_SECRET: &str = "payroll";
const RESULT_SECRET: &str = "salary-stats-result";
/// The example the parties run.
const EXAMPLE: &str = "examples/salary-stats/run.yaml";
/// The key of a CA bundle in a trust Secret.
const CA_KEY: &str = "ca.crt";

/// How long the first API call may take before the cluster counts as absent.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// `helm install --wait` (the operator Deployment becomes ready).
const HELM_TIMEOUT: &str = "5m0s";
const CA_TIMEOUT: Duration = Duration::from_secs(180);
/// Clusters and the pool: pods scheduled, volumes bound, images started.
const READY_TIMEOUT: Duration = Duration::from_secs(420);
const JOB_TIMEOUT: Duration = Duration::from_secs(600);
/// How long cleanup waits for the operators to drop the MpcJobs' finalizers.
const CLEANUP_JOB_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_secs(3);
/// The oldest Kubernetes minor version the CRDs work on.
const MIN_MINOR: u32 = 31;

#[test]
fn three_banks_compute_salary_statistics_on_kubernetes() {
    let gate = match Gate::from_env() {
        Ok(g) => g,
        Err(e) => panic!("{e}"),
    };
    if gate == Gate::Skip {
        println!("skipping the Kubernetes suite: COHORT_E2E_K8S=skip");
        return;
    }
    // Installing charts into whatever cluster KUBECONFIG names needs
    // intent: without the images to test, a reachable cluster is skipped.
    let missing: Vec<&str> = ["COHORT_E2E_OPERATOR_IMAGE", "COHORT_E2E_WORKER_IMAGE"]
        .into_iter()
        .filter(|v| !std::env::var(v).is_ok_and(|s| !s.is_empty()))
        .collect();
    if gate == Gate::Auto && !missing.is_empty() {
        println!("skipping the Kubernetes suite: {} not set (docs/e2e-kubernetes.md)", missing.join(" and "));
        return;
    }
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime");
    let cluster = match runtime.block_on(connect()) {
        Ok(c) => c,
        Err(reason) if gate == Gate::Require => {
            panic!("COHORT_E2E_K8S=require, but the Kubernetes suite cannot run: {reason}")
        }
        Err(reason) => {
            println!("skipping the Kubernetes suite: {reason}");
            return;
        }
    };
    if let Err(e) = runtime.block_on(suite(cluster)) {
        panic!("the Kubernetes suite failed: {e}");
    }
}

/// `COHORT_E2E_K8S`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gate {
    /// Unset: run when a cluster answers, skip otherwise.
    Auto,
    /// `require`: a missing cluster is a failure.
    Require,
    /// `skip`: never run.
    Skip,
}

impl Gate {
    fn from_env() -> Result<Gate, String> {
        match std::env::var("COHORT_E2E_K8S").as_deref() {
            Err(_) | Ok("") => Ok(Gate::Auto),
            Ok("require") => Ok(Gate::Require),
            Ok("skip") => Ok(Gate::Skip),
            Ok(other) => Err(format!("COHORT_E2E_K8S={other:?}: expected `require`, `skip` or unset")),
        }
    }
}

/// `COHORT_E2E_CA`: how the parties get their CAs (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CaMode {
    Operator,
    Provided,
}

impl CaMode {
    fn from_env() -> Result<CaMode, String> {
        match std::env::var("COHORT_E2E_CA").as_deref() {
            Err(_) | Ok("") | Ok("operator") => Ok(CaMode::Operator),
            Ok("provided") => Ok(CaMode::Provided),
            Ok(other) => Err(format!("COHORT_E2E_CA={other:?}: expected `operator`, `provided` or unset")),
        }
    }
}

/// A progress line, with the time since the suite started.
fn log(message: impl std::fmt::Display) {
    static START: OnceLock<Instant> = OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    println!("[k8s-e2e +{t:6.1}s] {message}");
}

/// The innermost cause of an error, on one line and bounded: enough to
/// tell "connection refused" from "certificate unknown" in a skip line.
fn short_reason(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(source) = inner.source() {
        inner = source;
    }
    let text = inner.to_string().replace('\n', " ");
    let text = if text.is_empty() { e.to_string() } else { text };
    match text.char_indices().nth(160) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

fn api_error(what: impl std::fmt::Display) -> impl FnOnce(kube::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// A cluster whose API server answered.
struct Connected {
    client: Client,
    /// The API server's URL, for messages.
    url: String,
    version: k8s_openapi::apimachinery::pkg::version::Info,
}

/// A client for `KUBECONFIG`'s current context whose API server answered;
/// `Err` says why the suite should skip.
async fn connect() -> Result<Connected, String> {
    let Some(path) = std::env::var_os("KUBECONFIG").filter(|p| !p.is_empty()) else {
        return Err("KUBECONFIG is not set".into());
    };
    let path = PathBuf::from(path);
    // Only the kubeconfig: never in-cluster credentials (see the module docs).
    let config = Config::from_kubeconfig(&KubeConfigOptions::default())
        .await
        .map_err(|e| format!("KUBECONFIG={} does not load ({})", path.display(), short_reason(&e)))?;
    let url = config.cluster_url.to_string();
    let client = Client::try_from(config)
        .map_err(|e| format!("no client for the API server at {url} ({})", short_reason(&e)))?;
    match tokio::time::timeout(PROBE_TIMEOUT, client.apiserver_version()).await {
        Err(_) => {
            Err(format!("the API server at {url} does not answer (no reply within {}s)", PROBE_TIMEOUT.as_secs()))
        }
        // It answered, but with an error status (credentials, RBAC, or
        // not a Kubernetes API server at all).
        Ok(Err(kube::Error::Api(status))) => {
            let detail = if status.message.is_empty() { &status.reason } else { &status.message };
            Err(format!("the API server at {url} answers with an error (HTTP {}: {detail})", status.code))
        }
        Ok(Err(e)) => Err(format!("the API server at {url} does not answer ({})", short_reason(&e))),
        Ok(Ok(version)) => Ok(Connected { client, url, version }),
    }
}

/// The suite proper, against a cluster that answered. From here on a
/// missing prerequisite is a failure: someone pointed the suite at a
/// cluster.
async fn suite(cluster: Connected) -> Result<(), String> {
    let Connected { client, url, version } = cluster;
    log(format!("the API server at {url} answers: Kubernetes {}", version.git_version));
    // Some distributions report the minor version as "31+".
    let minor: u32 = version.minor.trim_end_matches('+').parse().unwrap_or(u32::MAX);
    if version.major == "1" && minor < MIN_MINOR {
        return Err(format!(
            "the cluster at {url} runs Kubernetes {}; the CRDs need 1.{MIN_MINOR} or later",
            version.git_version
        ));
    }
    let settings = Settings::from_env(&url)?;
    let helm = helm_version().await?;
    log(format!("{helm}; operator image {}, worker image {}", settings.operator_image.raw, settings.worker_image.raw));

    let run_file = repo_root().join(EXAMPLE);
    let run = RunFile::open(&run_file).map_err(|e| format!("{}: {e}", run_file.display()))?;
    if run.parties.len() != BANKS.len() {
        return Err(format!("{EXAMPLE} lists {} parties; the suite hosts {}", run.parties.len(), BANKS.len()));
    }
    let suffix = random_suffix();
    let parties: Vec<PartySite> = run
        .parties
        .iter()
        .zip(BANKS)
        .map(|(p, bank)| PartySite { name: p.name.clone(), namespace: format!("{NAMESPACE_PREFIX}-{bank}-{suffix}") })
        .collect();
    for p in &parties {
        log(format!("party {} lives in namespace {}", p.name, p.namespace));
    }

    let mut guard = Cleanup { namespaces: Vec::new(), releases: Vec::new() };
    let outcome = federate_and_run(&client, &settings, &run, &parties, &suffix, &mut guard).await;
    if outcome.is_err() {
        diagnose(&client, &parties).await;
    }
    // The guard's Drop cleans up (also on a panic above).
    drop(guard);
    outcome
}

/// What the environment provides once a cluster is there.
struct Settings {
    operator_image: ImageRef,
    worker_image: ImageRef,
    ca_mode: CaMode,
}

impl Settings {
    fn from_env(server: &str) -> Result<Settings, String> {
        let image = |var: &str| -> Result<ImageRef, String> {
            match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => ImageRef::parse(var, v.trim()),
                _ => Err(format!(
                    "a Kubernetes cluster answers at {server}, but {var} is not set. Build and load the images \
                     (docs/e2e-kubernetes.md), then set COHORT_E2E_OPERATOR_IMAGE and COHORT_E2E_WORKER_IMAGE to \
                     their references; or set COHORT_E2E_K8S=skip to skip this suite"
                )),
            }
        };
        Ok(Settings {
            operator_image: image("COHORT_E2E_OPERATOR_IMAGE")?,
            worker_image: image("COHORT_E2E_WORKER_IMAGE")?,
            ca_mode: CaMode::from_env()?,
        })
    }
}

/// An image reference split the way the chart's values take it
/// (`registry` left empty: the repository keeps any registry host).
#[derive(Clone, Debug, PartialEq, Eq)]
struct ImageRef {
    raw: String,
    repository: String,
    tag: String,
    digest: String,
}

impl ImageRef {
    fn parse(var: &str, raw: &str) -> Result<ImageRef, String> {
        let bad = |why: &str| format!("{var}={raw:?}: {why}");
        let (name, digest) = raw.split_once('@').unwrap_or((raw, ""));
        let digest_ok = digest.is_empty()
            || (digest.len() == 71
                && digest.starts_with("sha256:")
                && digest[7..].bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
        if !digest_ok {
            return Err(bad("the digest must be sha256: and 64 lowercase hex digits"));
        }
        // A ':' after the last '/' starts the tag; one before it is a
        // registry port.
        let last = name.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match name[last..].rfind(':') {
            Some(i) => (&name[..last + i], &name[last + i + 1..]),
            None => (name, ""),
        };
        if repository.is_empty() || repository.contains(char::is_whitespace) {
            return Err(bad("expected an image reference such as cohort-operator:e2e"));
        }
        let tag = if tag.is_empty() && digest.is_empty() { "latest" } else { tag };
        Ok(ImageRef { raw: raw.into(), repository: repository.into(), tag: tag.into(), digest: digest.into() })
    }

    fn values(&self) -> serde_json::Value {
        serde_json::json!({"registry": "", "repository": self.repository, "tag": self.tag, "digest": self.digest})
    }
}

/// One party of the run file and the namespace it lives in.
#[derive(Clone, Debug)]
struct PartySite {
    name: String,
    namespace: String,
}

/// A fresh lowercase suffix for names (no `rand` in this crate: the
/// standard library's hasher keys are random per process).
fn random_suffix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut x = std::collections::hash_map::RandomState::new().hash_one((nanos, std::process::id()));
    let mut s = String::new();
    for _ in 0..6 {
        s.push(char::from(b"0123456789abcdefghijklmnopqrstuvwxyz"[(x % 36) as usize]));
        x /= 36;
    }
    s
}

/// Steps 1 to 5: namespaces and releases, trust, clusters and dealer, jobs,
/// results.
async fn federate_and_run(
    client: &Client,
    settings: &Settings,
    run: &RunFile,
    parties: &[PartySite],
    suffix: &str,
    guard: &mut Cleanup,
) -> Result<(), String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for p in parties {
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(p.namespace.clone()),
                labels: Some(BTreeMap::from([
                    ("cohort.dev/e2e".to_string(), suffix.to_string()),
                    ("app.kubernetes.io/part-of".to_string(), NAMESPACE_PREFIX.to_string()),
                ])),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .map_err(api_error(format!("create namespace {}", p.namespace)))?;
        guard.namespaces.push(p.namespace.clone());
    }
    log("namespaces created");

    let values_dir = std::env::temp_dir().join(format!("cohort-e2e-{suffix}"));
    std::fs::create_dir_all(&values_dir).map_err(|e| format!("create {}: {e}", values_dir.display()))?;
    let mut installed = Ok(());
    for (k, p) in parties.iter().enumerate() {
        // Recorded before installing: a failed install can leave a release.
        guard.releases.push(p.namespace.clone());
        // One release per cluster owns the CRDs (the chart templates them,
        // so `helm upgrade` upgrades them); the others leave them alone.
        installed = helm_install(&p.namespace, settings, &values_dir, k == 0).await;
        if installed.is_err() {
            break;
        }
        log(format!("chart installed in {} (operator ready)", p.namespace));
    }
    let _ = std::fs::remove_dir_all(&values_dir);
    installed?;

    let dealer_host = &parties[0];
    let clusters: Vec<MpcCluster> = (0..parties.len())
        .map(|k| mpc_cluster(parties, k, settings.ca_mode, &dealer::cluster_dealer(&dealer_host.namespace)))
        .collect();
    match settings.ca_mode {
        CaMode::Provided => {
            let cas = provide_cas(client, parties).await?;
            create_trust(client, parties, &cas).await?;
            create_clusters(client, parties, &clusters).await?;
        }
        CaMode::Operator => {
            create_clusters(client, parties, &clusters).await?;
            let cas = operator_cas(client, parties).await?;
            create_trust(client, parties, &cas).await?;
        }
    }
    dealer::create_pool(client, &dealer_host.namespace).await?;
    wait_clusters_ready(client, parties).await?;
    dealer::wait_ready(client, &dealer_host.namespace).await?;

    create_jobs(client, run, parties).await?;
    let statuses = wait_jobs(client, parties).await?;
    check_job_statuses(run, parties, &statuses)?;
    check_results(client, run, parties, &statuses).await
}

/// `helm version --short`, or why helm cannot be used.
async fn helm_version() -> Result<String, String> {
    let out = tokio::process::Command::new("helm").args(["version", "--short"]).output().await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            "a Kubernetes cluster answers, but `helm` is not on PATH: install Helm 3 \
             (https://helm.sh/docs/intro/install/) or set COHORT_E2E_K8S=skip"
                .to_string()
        } else {
            format!("running `helm version`: {e}")
        }
    })?;
    if !out.status.success() {
        return Err(format!("`helm version` failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !version.starts_with("v3.") && !version.starts_with("v4.") {
        return Err(format!("helm {version}: the chart needs Helm 3 or later"));
    }
    Ok(format!("helm {version}"))
}

/// `helm install cohort charts/cohort` in `namespace`, namespaced, with the
/// suite's images; waits for the operator Deployment.
async fn helm_install(namespace: &str, settings: &Settings, values_dir: &Path, owns_crds: bool) -> Result<(), String> {
    let mut operator_image = settings.operator_image.values();
    operator_image["pullPolicy"] = "IfNotPresent".into();
    let values = serde_json::json!({
        "scope": "Namespace",
        "operator": {
            "image": operator_image,
            // Readable `kubectl logs` when debugging a run.
            "logFormat": "text",
            "logLevel": "info,cohort_operator=debug",
        },
        "worker": {"image": settings.worker_image.values()},
        "crds": {"create": owns_crds},
    });
    // JSON is YAML: Helm reads the file as values.
    let file = values_dir.join(format!("{namespace}.yaml"));
    let text = serde_json::to_string_pretty(&values).map_err(|e| format!("Helm values: {e}"))?;
    std::fs::write(&file, text).map_err(|e| format!("write {}: {e}", file.display()))?;
    let chart = repo_root().join("charts/cohort");
    let out = tokio::process::Command::new("helm")
        .arg("install")
        .arg(RELEASE)
        .arg(&chart)
        .args(["--namespace", namespace, "--values"])
        .arg(&file)
        .args(["--wait", "--timeout", HELM_TIMEOUT])
        .output()
        .await
        .map_err(|e| format!("running `helm install` in {namespace}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`helm install {RELEASE} {} -n {namespace}` failed (is the operator image on the nodes? the pods are \
             listed below): {}",
            chart.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Party k's MpcCluster: every party at its shard-0 peer Service, peers
/// trusted through `<party>-ca`, the federation's dealer.
fn mpc_cluster(
    parties: &[PartySite],
    k: usize,
    ca_mode: CaMode,
    dealer: &cohort_crds::common::DealerEndpoint,
) -> MpcCluster {
    let me = &parties[k];
    let spec = MpcClusterSpec {
        self_: me.name.clone(),
        federation: FEDERATION.into(),
        parties: parties
            .iter()
            .map(|p| Party {
                name: p.name.clone(),
                endpoint: peer_endpoint(&p.namespace),
                trust: (p.name != me.name).then(|| trust(&trust_secret(&p.name))),
            })
            .collect(),
        protocol: ProtocolSpec::default(),
        // One shard: see the module docs.
        shards: 1,
        worker: Some(WorkerSpec {
            // The chart's worker.image, as the operator's --worker-image.
            image: None,
            image_pull_policy: Some(PullPolicy::IfNotPresent),
            resources: None,
        }),
        tls: TlsSpec {
            ca: (ca_mode == CaMode::Provided)
                .then(|| CaSpec { secret_ref: SecretReference { name: provided_ca_secret(&me.name) } }),
            ..TlsSpec::default()
        },
        rollout: Default::default(),
        service: ServiceSpec { type_: ServiceType::ClusterIP, annotations: BTreeMap::new() },
        network: Default::default(),
        dealer: Some(dealer.clone()),
    };
    let mut cluster = MpcCluster::new(CLUSTER, spec);
    cluster.metadata.namespace = Some(me.namespace.clone());
    cluster
}

/// Where peers reach a party's shard 0: its `<cluster>-peer-0` Service.
fn peer_endpoint(namespace: &str) -> String {
    format!("{CLUSTER}-peer-0.{namespace}.svc:{PEER_PORT}")
}

fn trust(secret: &str) -> Trust {
    Trust { secret_ref: CaSecretKeyReference { name: secret.into(), key: CA_KEY.into() } }
}

/// The Secret in which the other parties keep `party`'s CA bundle.
fn trust_secret(party: &str) -> String {
    format!("{party}-ca")
}

/// The `kubernetes.io/tls` Secret of a CA the suite provides (`provided`).
fn provided_ca_secret(party: &str) -> String {
    format!("{party}-provided-ca")
}

fn secret(namespace: &str, name: &str, type_: &str, data: impl IntoIterator<Item = (String, Vec<u8>)>) -> Secret {
    Secret {
        metadata: ObjectMeta { name: Some(name.into()), namespace: Some(namespace.into()), ..ObjectMeta::default() },
        type_: Some(type_.into()),
        data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
        ..Secret::default()
    }
}

async fn create<K>(client: &Client, namespace: &str, object: &K) -> Result<K, String>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api.create(&PostParams::default(), object).await.map_err(api_error(format!(
        "create {} {namespace}/{}",
        K::kind(&()),
        object.name_any()
    )))
}

async fn create_clusters(client: &Client, parties: &[PartySite], clusters: &[MpcCluster]) -> Result<(), String> {
    for (p, c) in parties.iter().zip(clusters) {
        create(client, &p.namespace, c).await?;
    }
    log("MpcClusters created");
    Ok(())
}

/// `provided`: a CA per party, generated here and stored where the party's
/// `spec.tls.ca` points. Returns each party's CA certificate (PEM).
async fn provide_cas(client: &Client, parties: &[PartySite]) -> Result<Vec<String>, String> {
    let mut certs = Vec::new();
    for p in parties {
        let ca = PartyCa::generate(FEDERATION, &p.name, Duration::from_secs(365 * 86400))
            .map_err(|e| format!("generate {}'s CA: {e}", p.name))?;
        // The key leaves this process only in the Secret.
        let pem = ca.to_pem();
        let data = [
            ("tls.crt".to_string(), pem.cert_pem.as_bytes().to_vec()),
            ("tls.key".to_string(), pem.key_pem.as_bytes().to_vec()),
        ];
        create(client, &p.namespace, &secret(&p.namespace, &provided_ca_secret(&p.name), "kubernetes.io/tls", data))
            .await?;
        certs.push(ca.cert_pem());
    }
    log("party CAs provided (spec.tls.ca)");
    Ok(certs)
}

/// `operator`: each party's CA certificate from the `<cluster>-ca` Secret
/// its operator generated.
async fn operator_cas(client: &Client, parties: &[PartySite]) -> Result<Vec<String>, String> {
    let ca_secret = format!("{CLUSTER}-ca");
    let mut certs = Vec::new();
    for p in parties {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &p.namespace);
        let clusters: Api<MpcCluster> = Api::namespaced(client.clone(), &p.namespace);
        let what = format!("{}'s party CA (Secret {}/{ca_secret})", p.name, p.namespace);
        let pem = wait_for(&what, CA_TIMEOUT, || async {
            match secrets.get_opt(&ca_secret).await {
                Ok(Some(s)) => {
                    return match s.data.as_ref().and_then(|d| d.get("tls.crt")) {
                        Some(ByteString(bytes)) => String::from_utf8(bytes.clone())
                            .map(Poll::Done)
                            .map_err(|_| format!("{what}: tls.crt is not UTF-8 PEM")),
                        None => Ok(Poll::Pending("the Secret has no tls.crt yet".into())),
                    };
                }
                Ok(None) => {}
                Err(e) => return Ok(Poll::Pending(format!("API error {e}"))),
            }
            // Why not yet, in the operator's words.
            let state = match clusters.get_opt(CLUSTER).await {
                Ok(Some(c)) => ready_summary(&c),
                Ok(None) => "absent".into(),
                Err(e) => format!("API error {e}"),
            };
            Ok(Poll::Pending(format!("no Secret yet; MpcCluster: {state}")))
        })
        .await
        .map_err(|e| {
            format!(
                "{e}. The operator generates the party CA before anything else; the MpcCluster's status \
                 and the operator's log say why it did not (or run with COHORT_E2E_CA=provided)"
            )
        })?;
        certs.push(pem);
    }
    log("operator-generated party CAs read");
    Ok(certs)
}

/// In every namespace, the peers' CA bundles (`<party>-ca`) and the
/// dealer's (`dealer-ca`: the dealer host's CA issues the dealer's
/// certificate).
async fn create_trust(client: &Client, parties: &[PartySite], cas: &[String]) -> Result<(), String> {
    for p in parties {
        for (peer, pem) in parties.iter().zip(cas) {
            if peer.name == p.name {
                continue;
            }
            let data = [(CA_KEY.to_string(), pem.clone().into_bytes())];
            create(client, &p.namespace, &secret(&p.namespace, &trust_secret(&peer.name), "Opaque", data)).await?;
        }
        let data = [(CA_KEY.to_string(), cas[0].clone().into_bytes())];
        create(client, &p.namespace, &secret(&p.namespace, dealer::TRUST_SECRET, "Opaque", data)).await?;
    }
    log("CA bundles exchanged");
    Ok(())
}

/// `Ready=<status> <reason>: <message>` of a status's conditions.
fn condition_summary(conditions: &[Condition]) -> String {
    match find_condition(conditions, types::READY) {
        Some(c) => format!("Ready={} {}: {}", c.status, c.reason, c.message),
        None => "no Ready condition yet".into(),
    }
}

fn ready_summary(c: &MpcCluster) -> String {
    c.status.as_ref().map_or("no status yet".into(), |s| {
        format!("{} (shards {})", condition_summary(&s.conditions), s.shards_ready.as_deref().unwrap_or("?"))
    })
}

async fn wait_clusters_ready(client: &Client, parties: &[PartySite]) -> Result<(), String> {
    let apis: Vec<(String, Api<MpcCluster>)> =
        parties.iter().map(|p| (p.name.clone(), Api::namespaced(client.clone(), &p.namespace))).collect();
    wait_for("MpcClusters Ready", READY_TIMEOUT, || async {
        let mut pending = Vec::new();
        for (party, api) in &apis {
            match api.get_opt(CLUSTER).await {
                Ok(Some(c)) if c.status.as_ref().is_some_and(|s| is_ready(&s.conditions)) => {}
                Ok(Some(c)) => pending.push(format!("{party}: {}", ready_summary(&c))),
                Ok(None) => return Err(format!("{party}'s MpcCluster {CLUSTER} disappeared")),
                Err(e) => pending.push(format!("{party}: API error {e}")),
            }
        }
        Ok(if pending.is_empty() { Poll::Done(()) } else { Poll::Pending(pending.join("; ")) })
    })
    .await?;
    log("every MpcCluster is Ready");
    Ok(())
}

fn is_ready(conditions: &[Condition]) -> bool {
    find_condition(conditions, types::READY).is_some_and(|c| c.status == "True")
}

/// The federation's trusted dealer. Everything about it is here, so the
/// suite follows the PreprocessingPool work (operator/src/pool) in one
/// place: bank-a's namespace hosts it through a PreprocessingPool with
/// `generator.dealer.host: true`; every MpcCluster's `spec.dealer` names it
/// (the pool requires the hosting cluster's `spec.dealer` to match), and
/// the MpcJobs set no `preprocessing.poolRef`, so the workers draw from the
/// cluster's dealer on demand.
mod dealer {
    use cohort_crds::PreprocessingPool;
    use cohort_crds::common::{DealerEndpoint, Duration as SpecDuration, LocalObjectReference};
    use cohort_crds::pool::{
        GeneratorMode, GeneratorSpec, MaterialKind, MaterialTarget, PoolDealer, PreprocessingPoolSpec, StorageSpec,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use kube::{Api, Client};

    use super::{CLUSTER, Poll, READY_TIMEOUT, condition_summary, create, is_ready, log, trust, wait_for};

    /// The hosting pool, the dealer's name (`spiffe://<federation>/dealer/main`)
    /// and the Secret holding its CA at every party.
    pub const POOL: &str = "default";
    pub const NAME: &str = "main";
    pub const TRUST_SECRET: &str = "dealer-ca";
    /// The port of the pool's `<pool>-dealer` Service: the endpoint's port.
    const PORT: u16 = 7500;

    /// Every MpcCluster's `spec.dealer`: the hosting pool's Service.
    pub fn cluster_dealer(host_namespace: &str) -> DealerEndpoint {
        DealerEndpoint {
            name: NAME.into(),
            endpoint: format!("{POOL}-dealer.{host_namespace}.svc:{PORT}"),
            trust: trust(TRUST_SECRET),
        }
    }

    fn pool(host_namespace: &str) -> PreprocessingPool {
        let spec = PreprocessingPoolSpec {
            cluster_ref: LocalObjectReference::new(CLUSTER),
            // A dealer deals on demand; the targets only matter for stock.
            material: vec![
                MaterialTarget { kind: MaterialKind::BeaverTriple, target: 1000, low_watermark: 0 },
                MaterialTarget { kind: MaterialKind::DivisionPair, target: 1000, low_watermark: 0 },
            ],
            generator: GeneratorSpec {
                mode: GeneratorMode::Dealer,
                replicas: 1,
                dealer: Some(PoolDealer { host: Some(true), name: Some(NAME.into()), endpoint: None, trust: None }),
            },
            storage: StorageSpec { size: Quantity("1Gi".into()), storage_class_name: None },
            ttl: SpecDuration::new("24h"),
        };
        let mut p = PreprocessingPool::new(POOL, spec);
        p.metadata.namespace = Some(host_namespace.into());
        p
    }

    pub async fn create_pool(client: &Client, host_namespace: &str) -> Result<(), String> {
        create(client, host_namespace, &pool(host_namespace)).await?;
        log(format!("PreprocessingPool {POOL} (hosted dealer {NAME}) created in {host_namespace}"));
        Ok(())
    }

    pub async fn wait_ready(client: &Client, host_namespace: &str) -> Result<(), String> {
        let api: Api<PreprocessingPool> = Api::namespaced(client.clone(), host_namespace);
        let what = format!("PreprocessingPool {host_namespace}/{POOL} Ready");
        wait_for(&what, READY_TIMEOUT, || async {
            Ok(match api.get_opt(POOL).await {
                Ok(Some(p)) => match &p.status {
                    Some(s) if is_ready(&s.conditions) => Poll::Done(()),
                    Some(s) => Poll::Pending(condition_summary(&s.conditions)),
                    None => Poll::Pending("no status yet (does this operator build reconcile pools?)".into()),
                },
                Ok(None) => return Err(format!("{what}: the pool disappeared")),
                Err(e) => Poll::Pending(format!("API error {e}")),
            })
        })
        .await?;
        log("the dealer pool is Ready");
        Ok(())
    }
}

/// In every namespace, the party's data file in Secret `payroll` and the
/// same MpcJob binding it.
async fn create_jobs(client: &Client, run: &RunFile, parties: &[PartySite]) -> Result<(), String> {
    for (p, party_run) in parties.iter().zip(&run.parties) {
        let mut data = Vec::new();
        let mut inputs = BTreeMap::new();
        for input in &party_run.inputs {
            let key = input
                .file
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| format!("{}: no file name", input.file.display()))?
                .to_string();
            let bytes = std::fs::read(&input.file).map_err(|e| format!("read {}: {e}", input.file.display()))?;
            data.push((key.clone(), bytes));
            let column = match &input.format {
                DataFormat::Csv { column } => Some(column.clone()),
                DataFormat::Lines => None,
            };
            inputs.insert(
                input.name.clone(),
                InputSource {
                    secret_key_ref: Some(KeySelector { name: INPUT_SECRET.into(), key }),
                    config_map_key_ref: None,
                    column,
                },
            );
        }
        create(client, &p.namespace, &secret(&p.namespace, INPUT_SECRET, "Opaque", data)).await?;
        let spec = MpcJobSpec {
            cluster_ref: LocalObjectReference::new(CLUSTER),
            // Derived from the federation and the name: the same everywhere.
            job_id: None,
            program: run.program_source.clone(),
            inputs,
            outputs: Some(OutputsSpec { secret_name: Some(RESULT_SECRET.into()) }),
            preprocessing: None,
            timeouts: Some(JobTimeouts {
                // The parties' jobs are created one after another.
                connect: Some(cohort_crds::common::Duration::new("120s")),
                round: Some(cohort_crds::common::Duration::new("30s")),
                total: Some(cohort_crds::common::Duration::new("10m")),
            }),
            ttl_seconds_after_finished: None,
        };
        let mut job = MpcJob::new(JOB, spec);
        job.metadata.namespace = Some(p.namespace.clone());
        create(client, &p.namespace, &job).await?;
    }
    log(format!("MpcJob {JOB} created at every party"));
    Ok(())
}

fn job_summary(job: &MpcJob) -> String {
    let Some(s) = &job.status else { return "no status yet".into() };
    let phase = s.phase.map_or("-".to_string(), |p| format!("{p:?}"));
    let mut text = format!("{phase} {}", s.reason.as_deref().unwrap_or(""));
    if let Some(f) = &s.failure {
        text.push_str(&format!(
            " [party {}, step {}: {}]",
            f.party.as_deref().unwrap_or("-"),
            f.step.as_deref().unwrap_or("-"),
            f.message
        ));
    }
    text.trim_end().to_string()
}

/// Every party's MpcJob once all have `Succeeded`; a `Failed` one ends the
/// wait at once.
async fn wait_jobs(client: &Client, parties: &[PartySite]) -> Result<Vec<MpcJob>, String> {
    let apis: Vec<(String, Api<MpcJob>)> =
        parties.iter().map(|p| (p.name.clone(), Api::namespaced(client.clone(), &p.namespace))).collect();
    let jobs = wait_for("MpcJobs Succeeded", JOB_TIMEOUT, || async {
        let mut done = Vec::new();
        let mut pending = Vec::new();
        for (party, api) in &apis {
            match api.get_opt(JOB).await {
                Ok(Some(job)) => match job.status.as_ref().and_then(|s| s.phase) {
                    Some(JobPhase::Succeeded) => done.push(job),
                    Some(JobPhase::Failed) => return Err(format!("{party}'s MpcJob failed: {}", job_summary(&job))),
                    _ => pending.push(format!("{party}: {}", job_summary(&job))),
                },
                Ok(None) => return Err(format!("{party}'s MpcJob {JOB} disappeared")),
                Err(e) => pending.push(format!("{party}: API error {e}")),
            }
        }
        Ok(if pending.is_empty() { Poll::Done(done) } else { Poll::Pending(pending.join("; ")) })
    })
    .await?;
    log("every MpcJob Succeeded");
    Ok(jobs)
}

/// The parties agree on the job id, report the program's hash, and the
/// job took setup + inputs + one round per layer + output.
fn check_job_statuses(run: &RunFile, parties: &[PartySite], jobs: &[MpcJob]) -> Result<(), String> {
    let hash = program_hash(&run.program_source);
    let rounds = 3 + interactive_depth(&run.circuit) as i64;
    let mut errors = Vec::new();
    let mut ids = Vec::new();
    for (p, job) in parties.iter().zip(jobs) {
        let Some(s) = &job.status else {
            errors.push(format!("{}: no status", p.name));
            continue;
        };
        ids.push(s.job_id.clone());
        if s.program_hash.as_deref() != Some(hash.as_str()) {
            errors.push(format!("{}: status.programHash {:?}, expected {hash}", p.name, s.program_hash));
        }
        if s.rounds != Some(rounds) {
            errors.push(format!("{}: status.rounds {:?}, expected {rounds}", p.name, s.rounds));
        }
        if s.result.as_ref().map(|r| r.secret_name.as_str()) != Some(RESULT_SECRET) {
            errors.push(format!("{}: status.result {:?}, expected Secret {RESULT_SECRET}", p.name, s.result));
        }
    }
    if ids.first().is_none_or(Option::is_none) || ids.windows(2).any(|w| w[0] != w[1]) {
        errors.push(format!("the parties disagree on status.jobId: {ids:?}"));
    }
    if errors.is_empty() { Ok(()) } else { Err(errors.join("\n")) }
}

/// Each party's result Secret holds exactly the outputs sent to it, each
/// close to the plaintext evaluation on the same data.
async fn check_results(client: &Client, run: &RunFile, parties: &[PartySite], jobs: &[MpcJob]) -> Result<(), String> {
    let expected = expected_outputs(&run.path);
    let mut errors = Vec::new();
    for (k, (p, job)) in parties.iter().zip(jobs).enumerate() {
        let name = job.status.as_ref().and_then(|s| s.result.as_ref()).map_or(RESULT_SECRET, |r| &r.secret_name);
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &p.namespace);
        let s = secrets.get(name).await.map_err(api_error(format!("read {}'s result Secret {name}", p.name)))?;
        let data = s.data.unwrap_or_default();
        let want: BTreeMap<&str, &Vec<f64>> = run
            .circuit
            .outputs
            .iter()
            .filter(|o| o.recipients.contains(&k))
            .map(|o| (o.name.as_str(), &expected[&o.name]))
            .collect();
        let got_keys: Vec<&str> = data.keys().map(String::as_str).collect();
        let want_keys: Vec<&str> = want.keys().copied().collect();
        if got_keys != want_keys {
            errors
                .push(format!("{}: the result Secret holds {got_keys:?}, the program sends it {want_keys:?}", p.name));
        }
        for (output, w) in &want {
            let Some(ByteString(bytes)) = data.get(*output) else { continue };
            let got = match output_values(bytes) {
                Ok(v) => v,
                Err(e) => {
                    errors.push(format!("{}: output {output}: {e}", p.name));
                    continue;
                }
            };
            if got.len() != w.len() {
                errors.push(format!("{}: output {output} has {} values, expected {}", p.name, got.len(), w.len()));
                continue;
            }
            for (g, w) in got.iter().zip(w.iter()) {
                // The tolerance of e2e/tests/examples.rs: the protocol's
                // probabilistic truncation is off by at most one unit.
                let tolerance = 1e-2 + 1e-4 * w.abs();
                if (g - w).abs() > tolerance {
                    errors.push(format!("{}: output {output}: got {g}, expected {w}", p.name));
                }
            }
        }
        log(format!("{}'s outputs {got_keys:?} match the plaintext evaluation", p.name));
    }
    if errors.is_empty() { Ok(()) } else { Err(format!("wrong results:\n{}", errors.join("\n"))) }
}

/// An output as stored in the result Secret: the JSON of a number or of a
/// list of numbers.
fn output_values(bytes: &[u8]) -> Result<Vec<f64>, String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON ({e})"))?;
    let number = |v: &serde_json::Value| v.as_f64().ok_or_else(|| "not a number".to_string());
    match &value {
        serde_json::Value::Array(items) => items.iter().map(number).collect(),
        other => Ok(vec![number(other)?]),
    }
}

/// One look at something the suite waits for.
enum Poll<T> {
    Done(T),
    /// Not yet; what it looks like now (printed when it changes).
    Pending(String),
}

/// Poll `check` every few seconds until it is done, fails (`Err`: give up
/// at once), or `timeout` passes (the error quotes the last state seen).
async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Poll<T>, String>>,
{
    let start = Instant::now();
    let mut last = String::new();
    loop {
        match check().await? {
            Poll::Done(t) => return Ok(t),
            Poll::Pending(state) => {
                if state != last {
                    log(format!("waiting for {what}: {state}"));
                    last = state;
                }
            }
        }
        if start.elapsed() >= timeout {
            return Err(format!("{what}: not done within {}s; last seen: {last}", timeout.as_secs()));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// On failure: what each namespace looks like, for the log.
async fn diagnose(client: &Client, parties: &[PartySite]) {
    println!("---- diagnostics (keep the namespaces with COHORT_E2E_KEEP=1; docs/e2e-kubernetes.md) ----");
    for p in parties {
        let ns = &p.namespace;
        println!("== namespace {ns} (party {})", p.name);
        if let Ok(list) = Api::<MpcCluster>::namespaced(client.clone(), ns).list(&ListParams::default()).await {
            for c in &list.items {
                println!("MpcCluster {}: {}", c.name_any(), ready_summary(c));
                for peer in c.status.iter().flat_map(|s| &s.peers) {
                    println!(
                        "  peer {}: reachable={} {}",
                        peer.name,
                        peer.reachable,
                        peer.message.as_deref().unwrap_or("")
                    );
                }
            }
        }
        if let Ok(list) = Api::<PreprocessingPool>::namespaced(client.clone(), ns).list(&ListParams::default()).await {
            for pool in &list.items {
                let state = pool.status.as_ref().map_or("no status yet".into(), |s| condition_summary(&s.conditions));
                println!("PreprocessingPool {}: {state}", pool.name_any());
            }
        }
        if let Ok(list) = Api::<MpcJob>::namespaced(client.clone(), ns).list(&ListParams::default()).await {
            for job in &list.items {
                println!("MpcJob {}: {}", job.name_any(), job_summary(job));
            }
        }
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        let pod_list = pods.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
        for pod in &pod_list {
            println!("pod {}: {}", pod.name_any(), pod_summary(pod));
        }
        let events: Api<Event> = Api::namespaced(client.clone(), ns);
        if let Ok(list) = events.list(&ListParams::default().fields("type=Warning")).await {
            for e in list.items.iter().rev().take(15) {
                let object = &e.involved_object;
                println!(
                    "warning event {}/{}: {} {}",
                    object.kind.as_deref().unwrap_or("?"),
                    object.name.as_deref().unwrap_or("?"),
                    e.reason.as_deref().unwrap_or(""),
                    e.message.as_deref().unwrap_or("").trim()
                );
            }
        }
        for pod in &pod_list {
            let labels = pod.labels();
            let operator = labels.get("app.kubernetes.io/component").is_some_and(|c| c == "operator");
            let managed = labels.get("app.kubernetes.io/managed-by").is_some_and(|m| m == "cohort-operator");
            if !operator && !managed {
                continue;
            }
            let params = LogParams { tail_lines: Some(if operator { 40 } else { 20 }), ..LogParams::default() };
            match pods.logs(&pod.name_any(), &params).await {
                Ok(text) if !text.trim().is_empty() => {
                    println!("-- logs of {} (tail) --", pod.name_any());
                    println!("{}", text.trim_end());
                }
                Ok(_) => {}
                Err(e) => println!("-- no logs of {}: {}", pod.name_any(), short_reason(&e)),
            }
        }
    }
    println!("---- end of diagnostics ----");
}

/// Phase, readiness and why a container is not running (with a hint for
/// images the nodes do not have).
fn pod_summary(pod: &Pod) -> String {
    let Some(status) = &pod.status else { return "no status".into() };
    let containers = status.container_statuses.as_deref().unwrap_or_default();
    let ready = containers.iter().filter(|c| c.ready).count();
    let restarts: i32 = containers.iter().map(|c| c.restart_count).sum();
    let mut text =
        format!("{} ready {ready}/{} restarts {restarts}", status.phase.as_deref().unwrap_or("?"), containers.len());
    for c in containers {
        if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.as_deref().unwrap_or("");
            text.push_str(&format!("; {} waiting: {reason} {}", c.name, w.message.as_deref().unwrap_or("")));
            if matches!(reason, "ErrImagePull" | "ImagePullBackOff" | "ErrImageNeverPull") {
                text.push_str(" (load the image: `kind load docker-image` / `k3d image import`)");
            }
        }
    }
    for c in status.conditions.iter().flatten().filter(|c| c.status != "True") {
        if let Some(m) = &c.message {
            text.push_str(&format!("; {}: {m}", c.type_));
        }
    }
    text
}

/// Deletes what the suite created when dropped (pass, failure or panic),
/// unless `COHORT_E2E_KEEP=1`.
struct Cleanup {
    namespaces: Vec<String>,
    /// Namespaces where `helm install` ran.
    releases: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.namespaces.is_empty() {
            return;
        }
        let namespaces = std::mem::take(&mut self.namespaces);
        let releases = std::mem::take(&mut self.releases);
        if std::env::var("COHORT_E2E_KEEP").is_ok_and(|v| v == "1") {
            log(format!(
                "COHORT_E2E_KEEP=1: keeping {}. Remove them with: kubectl delete mpcjob --all -n <ns>; helm uninstall \
                 {RELEASE} -n <ns>; kubectl delete namespace <ns>",
                namespaces.join(", ")
            ));
            return;
        }
        // Drop may run inside the suite's runtime (or while unwinding
        // from it), which must not be blocked on: a thread with its own
        // runtime and client does the work.
        let worker =
            std::thread::spawn(move || match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(cleanup(&namespaces, &releases)),
                Err(e) => eprintln!("cleanup: no runtime ({e}); delete namespaces {} yourself", namespaces.join(", ")),
            });
        if worker.join().is_err() {
            eprintln!("cleanup panicked; delete the {NAMESPACE_PREFIX}-* namespaces yourself");
        }
    }
}

/// MpcJobs first (their finalizer needs the operator, which the namespace
/// deletion removes), then the releases (cluster-scoped ClusterRoles),
/// then the namespaces.
async fn cleanup(namespaces: &[String], releases: &[String]) {
    log(format!("cleaning up {}", namespaces.join(", ")));
    let client = match Config::from_kubeconfig(&KubeConfigOptions::default()).await.map(Client::try_from) {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return eprintln!("cleanup: no client ({e}); delete namespaces {} yourself", namespaces.join(", "));
        }
        Err(e) => {
            return eprintln!("cleanup: no kubeconfig ({e}); delete namespaces {} yourself", namespaces.join(", "));
        }
    };
    for ns in namespaces {
        let jobs: Api<MpcJob> = Api::namespaced(client.clone(), ns);
        if let Err(e) = jobs.delete_collection(&DeleteParams::default(), &ListParams::default()).await {
            eprintln!("cleanup: delete MpcJobs in {ns}: {e}");
        }
    }
    let start = Instant::now();
    loop {
        let mut left = Vec::new();
        for ns in namespaces {
            let jobs: Api<MpcJob> = Api::namespaced(client.clone(), ns);
            if let Ok(list) = jobs.list(&ListParams::default()).await {
                left.extend(list.items.into_iter().map(|j| (ns.clone(), j.name_any())));
            }
        }
        if left.is_empty() {
            break;
        }
        if start.elapsed() >= CLEANUP_JOB_TIMEOUT {
            // The operator did not release them: drop the finalizers so the
            // namespaces do not hang in Terminating.
            for (ns, name) in &left {
                eprintln!("cleanup: MpcJob {ns}/{name} kept its finalizer; removing it");
                let jobs: Api<MpcJob> = Api::namespaced(client.clone(), ns);
                let patch = Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}}));
                if let Err(e) = jobs.patch(name, &PatchParams::default(), &patch).await {
                    eprintln!("cleanup: remove the finalizer of MpcJob {ns}/{name}: {e}");
                }
            }
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    for ns in releases {
        let out = tokio::process::Command::new("helm")
            .args(["uninstall", RELEASE, "--namespace", ns, "--wait", "--timeout", "2m0s"])
            .output()
            .await;
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!("cleanup: helm uninstall in {ns}: {}", String::from_utf8_lossy(&o.stderr).trim()),
            Err(e) => eprintln!("cleanup: helm uninstall in {ns}: {e}"),
        }
    }
    let api: Api<Namespace> = Api::all(client);
    for ns in namespaces {
        if let Err(e) = api.delete(ns, &DeleteParams::background()).await {
            eprintln!("cleanup: delete namespace {ns}: {e}");
        }
    }
    log("namespaces deleted (they finish terminating in the background)");
}

#[test]
fn image_references_split_into_the_chart_values() {
    let r = ImageRef::parse("V", "cohort-operator:e2e").expect("valid");
    assert_eq!((r.repository.as_str(), r.tag.as_str(), r.digest.as_str()), ("cohort-operator", "e2e", ""));
    let r = ImageRef::parse("V", "localhost:5000/cohort/cohort-worker").expect("valid");
    assert_eq!((r.repository.as_str(), r.tag.as_str()), ("localhost:5000/cohort/cohort-worker", "latest"));
    let digest = format!("sha256:{}", "ab".repeat(32));
    let r = ImageRef::parse("V", &format!("ghcr.io/cohort-mpc/cohort-worker:0.1.0@{digest}")).expect("valid");
    assert_eq!((r.repository.as_str(), r.tag.as_str()), ("ghcr.io/cohort-mpc/cohort-worker", "0.1.0"));
    assert_eq!(r.digest, digest);
    assert!(ImageRef::parse("V", "x@sha256:nothex").is_err());
    assert!(ImageRef::parse("V", ":tag").is_err());
}

#[test]
fn party_endpoints_are_shard_zero_peer_services() {
    let parties: Vec<PartySite> = ["alice", "bob"]
        .iter()
        .zip(BANKS)
        .map(|(n, b)| PartySite { name: n.to_string(), namespace: format!("{NAMESPACE_PREFIX}-{b}-x") })
        .collect();
    let c = mpc_cluster(&parties, 1, CaMode::Provided, &dealer::cluster_dealer(&parties[0].namespace));
    assert_eq!(c.spec.self_, "bob");
    assert_eq!(c.spec.parties[0].endpoint, "consortium-peer-0.cohort-e2e-bank-a-x.svc:7443");
    assert_eq!(c.spec.parties[0].trust.as_ref().map(|t| t.secret_ref.name.as_str()), Some("alice-ca"));
    assert!(c.spec.parties[1].trust.is_none(), "a party does not trust itself through a Secret");
    assert_eq!(c.spec.tls.ca.as_ref().map(|ca| ca.secret_ref.name.as_str()), Some("bob-provided-ca"));
    let d = c.spec.dealer.as_ref().expect("a dealer");
    assert_eq!(d.endpoint, "default-dealer.cohort-e2e-bank-a-x.svc:7500");
    // The spec survives the API server's schema: it round-trips through JSON.
    let json = serde_json::to_value(&c).expect("serializes");
    assert_eq!(json["spec"]["service"]["type"], "ClusterIP");
    assert_eq!(json["spec"]["self"], "bob");
    let back: MpcCluster = serde_json::from_value(json).expect("deserializes");
    assert_eq!(back.spec, c.spec);
}
