//! Shared by the controller tests: an in-memory API server with the CRDs,
//! a controller context, and polling.

#![allow(dead_code)]

pub mod chart;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cohort_memapi::ApiServer;
use cohort_operator::cluster::desired::Settings;
use cohort_operator::controller::{Context, ControlEndpoints, ShardRef};
use cohort_operator::metrics::Metrics;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::events::Reporter;
use kube::{Api, Client};

/// The user the operator's requests are recorded under (its bearer token
/// against the in-memory API server): the chart's ServiceAccount.
pub const OPERATOR_USER: &str = "system:serviceaccount:cohort-system:cohort-operator";

/// The operator's client: its requests are what the chart's RBAC must allow
/// ([`assert_chart_rbac_allows`]).
pub fn operator_client(server: &ApiServer) -> Client {
    server.client_as(OPERATOR_USER)
}

/// One rule of a rendered Role or ClusterRole, with where it applies
/// (`None`: every namespace and cluster-scoped objects).
#[derive(Debug)]
struct Granted {
    namespace: Option<String>,
    groups: Vec<String>,
    resources: Vec<String>,
    names: Vec<String>,
    verbs: Vec<String>,
}

/// The rules the chart (default values: scope Cluster, release `cohort` in
/// `cohort-system`) grants its operator's ServiceAccount.
fn chart_rbac() -> Vec<Granted> {
    let chart = chart::Chart::load(&cohort_e2e::repo_root().join("charts/cohort")).expect("the chart loads");
    let objects =
        chart.objects("templates/rbac.yaml", "cohort", "cohort-system", serde_json::Value::Null).expect("rbac renders");
    let str_list = |v: &serde_json::Value| -> Vec<String> {
        v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect()
    };
    let sa = OPERATOR_USER.rsplit(":").next().unwrap_or_default();
    let mut granted = Vec::new();
    for binding in objects.iter().filter(|o| matches!(o["kind"].as_str(), Some("RoleBinding" | "ClusterRoleBinding"))) {
        let bound = binding["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["kind"] == "ServiceAccount" && s["name"] == sa && s["namespace"] == "cohort-system");
        if !bound {
            continue;
        }
        let (role_kind, role_name) = (&binding["roleRef"]["kind"], &binding["roleRef"]["name"]);
        let role = objects
            .iter()
            .find(|o| &o["kind"] == role_kind && &o["metadata"]["name"] == role_name)
            .unwrap_or_else(|| panic!("{role_kind} {role_name} is bound but not rendered"));
        // A RoleBinding grants in its own namespace only.
        let namespace = binding["metadata"]["namespace"].as_str().map(str::to_string);
        for rule in role["rules"].as_array().into_iter().flatten() {
            granted.push(Granted {
                namespace: namespace.clone(),
                groups: str_list(&rule["apiGroups"]),
                resources: str_list(&rule["resources"]),
                names: str_list(&rule["resourceNames"]),
                verbs: str_list(&rule["verbs"]),
            });
        }
    }
    assert!(!granted.is_empty(), "the chart binds no rule to its operator");
    granted
}

/// Whether the chart's RBAC lets the operator do `verb` on `group`/`resource`
/// (any namespace, any name).
pub fn chart_rbac_grants(verb: &str, group: &str, resource: &str) -> bool {
    chart_rbac().iter().any(|g| {
        g.names.is_empty()
            && g.groups.iter().any(|x| x == group || x == "*")
            && g.resources.iter().any(|x| x == resource || x == "*")
            && g.verbs.iter().any(|x| x == verb || x == "*")
    })
}

/// Every request the operator made against `server` (recorded under
/// [`OPERATOR_USER`]) is allowed by the chart's rendered RBAC, as the API
/// server's RBAC authorizer decides: group, resource (with subresource),
/// verb, resourceNames, and a RoleBinding's namespace. Returns the distinct
/// (verb, resource) pairs seen.
pub fn assert_chart_rbac_allows(server: &ApiServer) -> std::collections::BTreeSet<String> {
    let granted = chart_rbac();
    let mut refused = std::collections::BTreeSet::new();
    let mut seen = std::collections::BTreeSet::new();
    for r in server.requests().into_iter().filter(|r| r.user.as_deref() == Some(OPERATOR_USER)) {
        let resource = match &r.subresource {
            Some(sub) => format!("{}/{sub}", r.resource),
            None => r.resource.clone(),
        };
        let group = if r.group.is_empty() { "core".to_string() } else { r.group.clone() };
        seen.insert(format!("{} {group}/{resource}", r.verb));
        let allowed = granted.iter().any(|g| {
            let in_scope = g.namespace.is_none() || g.namespace == r.namespace;
            // resourceNames never match list, watch, create or deletecollection.
            let named = g.names.is_empty() || r.name.as_ref().is_some_and(|n| g.names.contains(n));
            in_scope
                && named
                && g.groups.iter().any(|x| x == &r.group || x == "*")
                && g.resources.iter().any(|x| x == &resource || x == "*")
                && g.verbs.iter().any(|x| x == &r.verb || x == "*")
        });
        if !allowed {
            refused.insert(format!(
                "{} {group}/{resource} {}{}",
                r.verb,
                r.namespace.map(|n| format!("in {n} ")).unwrap_or_default(),
                r.name.unwrap_or_default()
            ));
        }
    }
    assert!(!seen.is_empty(), "no request of the operator was recorded (did it use operator_client?)");
    assert!(refused.is_empty(), "the chart's RBAC refuses requests the operator makes: {refused:#?}");
    // COHORT_RBAC_SEEN=1 lists what was used (to trim the chart's rules).
    if std::env::var_os("COHORT_RBAC_SEEN").is_some() {
        eprintln!("operator requests: {seen:#?}");
    }
    seen
}

/// An in-memory API server serving Cohort's CRDs.
pub async fn api_server() -> ApiServer {
    let server = ApiServer::start().await.expect("the in-memory API server starts");
    for crd in cohort_crds::crds() {
        server.register_crd(&crd);
    }
    server
}

pub fn settings() -> Settings {
    Settings {
        worker_otlp_endpoint: None,
        default_image: "ghcr.io/cohort-mpc/cohort-worker:test".into(),
        operator_namespace: "cohort-system".into(),
        operator_pod_labels: BTreeMap::from([("app.kubernetes.io/name".into(), "cohort-operator".into())]),
    }
}

/// A controller context named `instance`.
pub fn context(client: Client, instance: &str, endpoints: ControlEndpoints) -> Arc<Context> {
    let reporter = Reporter { controller: "cohort-operator".into(), instance: Some(instance.into()) };
    let mut ctx = Context::new(client, settings(), reporter, Metrics::shared(), endpoints);
    ctx.job_poll = Duration::from_millis(200);
    ctx.rollout_poll = Duration::from_millis(200);
    Arc::new(ctx)
}

/// Poll `check` until it returns `Some`, or panic after `timeout` with
/// `what` and the last observation.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => panic!("timed out waiting for {what}; last seen: {last}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Create (or replace) an Opaque Secret with `data`.
pub async fn put_secret(client: &Client, ns: &str, name: &str, data: &[(&str, &[u8])]) {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = Secret {
        metadata: ObjectMeta { name: Some(name.into()), namespace: Some(ns.into()), ..ObjectMeta::default() },
        data: Some(data.iter().map(|(k, v)| (k.to_string(), ByteString(v.to_vec()))).collect()),
        ..Secret::default()
    };
    match api.get_opt(name).await.expect("read the Secret") {
        Some(existing) => {
            let mut replaced = secret;
            replaced.metadata.resource_version = existing.metadata.resource_version;
            api.replace(name, &PostParams::default(), &replaced).await.expect("replace the Secret");
        }
        None => {
            api.create(&PostParams::default(), &secret).await.expect("create the Secret");
        }
    }
}

/// The text of a Secret key.
pub fn secret_text(secret: &Secret, key: &str) -> String {
    let bytes = secret.data.as_ref().and_then(|d| d.get(key)).unwrap_or_else(|| panic!("key {key}"));
    String::from_utf8(bytes.0.clone()).expect("UTF-8")
}

/// The first YAML document of `path` (relative to the repository root)
/// whose `kind` is `kind`, parsed as `T`.
pub fn example<T: serde::de::DeserializeOwned>(path: &str, kind: &str) -> T {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let text = std::fs::read_to_string(root.join(path)).expect("example file");
    for doc in text.split("\n---") {
        let value: serde_json::Value = match serde_saphyr::from_str(doc) {
            Ok(v) => v,
            Err(_) => continue,
        };
        if value.get("kind").and_then(|k| k.as_str()) == Some(kind) {
            return serde_json::from_value(value).expect("the example parses as its kind");
        }
    }
    panic!("no {kind} in {path}");
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("address").port()
}

/// `GET path` on a plain-HTTP address: (status code, body).
pub async fn http_get(addr: &str, path: &str) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut text = String::new();
    tcp.read_to_string(&mut text).await.map_err(|e| e.to_string())?;
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or("no status line")?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((code, body))
}

/// A real `cohort-operator` process serving `namespace`, with a kubeconfig
/// for the in-memory API server, on free loopback ports. Killed on drop.
pub struct OperatorProcess {
    pub child: tokio::process::Child,
    /// `/healthz`, `/readyz`.
    pub health: String,
    /// `/metrics`.
    pub metrics: String,
    _dir: tempfile::TempDir,
}

pub fn spawn_operator(server: &ApiServer, namespace: &str) -> OperatorProcess {
    let dir = tempfile::tempdir().expect("a temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters: [{{name: mem, cluster: {{server: \"{}\"}}}}]\n\
         users: [{{name: op, user: {{token: \"{OPERATOR_USER}\"}}}}]\ncontexts: [{{name: mem, context: {{cluster: mem, user: op}}}}]\n\
         current-context: mem\n",
        server.url()
    );
    std::fs::write(&kubeconfig, config).expect("write the kubeconfig");
    let (health, metrics) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cohort-operator"))
        .args(["--watch-namespace", namespace, "--lease-duration", "3s"])
        .args(["--health-addr", &health, "--metrics-addr", &metrics, "--log-json"])
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAME", "cohort-operator-0")
        .env("POD_NAMESPACE", "cohort-system")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("cohort-operator starts");
    OperatorProcess { child, health, metrics, _dir: dir }
}

/// The CA Secrets bank-a's example MpcCluster references in `bank-a`:
/// the peers' (`bank-b-ca`, `bank-c-ca`) and the dealer's (`dealer-ca`),
/// each a freshly generated CA under `ca.crt`.
pub async fn bank_a_trust(client: &Client) {
    for (secret, holder) in [("bank-b-ca", "bank-b"), ("bank-c-ca", "bank-c"), ("dealer-ca", "neutral")] {
        let ca =
            cohort_worker::transport::PartyCa::generate("consortium", holder, Duration::from_secs(3600)).expect("a CA");
        put_secret(client, "bank-a", secret, &[("ca.crt", ca.cert_pem().as_bytes())]).await;
    }
}

/// Real `cohort-worker` processes standing in for the shards of
/// `consortium` in `namespace`, with the certificates the operator issued:
/// files written from the Secrets and the trust ConfigMap as the kubelet
/// would mount them (re-read with [`Shards::refresh`]). Each worker's
/// parties and `protocol` section are those the operator rendered for its
/// shard when it starts (so a changed protocol reaches the replaced pods),
/// on loopback addresses of their own.
pub struct Shards {
    dir: tempfile::TempDir,
    namespace: String,
    shards: usize,
    peer_ca: String,
    worker_bin: std::path::PathBuf,
    client: Client,
    /// Control endpoint per shard (share it with the operator's
    /// `control_endpoints`).
    pub endpoints: Arc<std::sync::Mutex<BTreeMap<usize, String>>>,
    /// The operator's client identity (to ask a worker for its health).
    identity: std::sync::Mutex<Option<Arc<cohort_worker::transport::TlsIdentity>>>,
}

impl Shards {
    pub async fn new(
        client: &Client,
        namespace: &str,
        shards: usize,
        peer_ca: &str,
        endpoints: Arc<std::sync::Mutex<BTreeMap<usize, String>>>,
    ) -> Shards {
        let dir = tempfile::tempdir().expect("a temp dir");
        let s = Shards {
            dir,
            namespace: namespace.into(),
            shards,
            peer_ca: peer_ca.into(),
            worker_bin: cohort_e2e::launch_options("warn", None).worker_bin,
            client: client.clone(),
            endpoints,
            identity: std::sync::Mutex::new(None),
        };
        s.refresh().await;
        s
    }

    /// Write every shard's files from the Secrets and the trust ConfigMap,
    /// and reload the operator's client identity.
    pub async fn refresh(&self) {
        use k8s_openapi::api::core::v1::ConfigMap;
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        let dir = self.dir.path();
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write");
            path
        };
        let trust = maps.get("consortium-trust").await.expect("the trust ConfigMap").data.unwrap_or_default();
        let own = trust.get("bank-a.pem").cloned().expect("this party's CA bundle");
        write("ca.pem", &own);
        write("bank-b.pem", &self.peer_ca);
        // Every other peer's CA as the operator mounts it.
        for (key, pem) in &trust {
            if key != "bank-a.pem" && key != "bank-b.pem" && !key.starts_with('_') {
                write(key, pem);
            }
        }
        for i in 0..self.shards {
            let s = secrets.get(&format!("consortium-worker-{i}")).await.expect("the shard's certificate");
            write(&format!("shard-{i}.crt"), &secret_text(&s, "tls.crt"));
            write(&format!("shard-{i}.key"), &secret_text(&s, "tls.key"));
        }
        let op = secrets.get("consortium-operator-client").await.expect("the operator's client certificate");
        let identity = cohort_worker::transport::TlsIdentity::from_pem_pinned(
            "consortium",
            "controller/operator",
            &secret_text(&op, "tls.crt"),
            &secret_text(&op, "tls.key"),
            &[("bank-a".to_string(), secret_text(&op, "ca.crt"))],
        )
        .expect("the operator's identity");
        *self.identity.lock().expect("lock") = Some(Arc::new(identity));
    }

    /// Write shard `i`'s configuration: the parties and `protocol` section
    /// the operator rendered for the shard (`consortium-config`), with this
    /// test's loopback listeners and credential files.
    async fn write_config(&self, i: usize) -> std::path::PathBuf {
        use k8s_openapi::api::core::v1::ConfigMap;
        let maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
        let files = maps.get("consortium-config").await.expect("the config ConfigMap").data.unwrap_or_default();
        let text = files.get(&format!("shard-{i}.yaml")).unwrap_or_else(|| panic!("shard {i}'s configuration"));
        let rendered: serde_json::Value = serde_saphyr::from_str(text).expect("the rendered configuration parses");
        let dir = self.dir.path();
        let parties = rendered["parties"].as_array().cloned().expect("parties");
        let peer_cas: serde_json::Map<String, serde_json::Value> = parties
            .iter()
            .filter_map(|p| p["name"].as_str())
            .filter(|name| *name != "bank-a")
            .map(|name| (name.to_string(), dir.join(format!("{name}.pem")).display().to_string().into()))
            .collect();
        let config = serde_json::json!({
            "federation": "consortium", "party": "bank-a",
            "listen": {"peer": "127.0.0.1:0", "control": "127.0.0.1:0", "metrics": "127.0.0.1:0"},
            "tls": {"cert": dir.join(format!("shard-{i}.crt")), "key": dir.join(format!("shard-{i}.key")), "peerCas": peer_cas},
            "controller": {"name": "operator", "ca": dir.join("ca.pem")},
            "parties": parties,
            "protocol": rendered["protocol"].clone(),
        });
        let path = dir.join(format!("shard-{i}.yaml"));
        std::fs::write(&path, config.to_string()).expect("write the configuration");
        path
    }

    /// Start shard `i`'s worker from its files (its configuration as the
    /// operator renders it now) and record its control endpoint.
    pub async fn start(&self, i: usize) -> tokio::process::Child {
        use tokio::io::AsyncBufReadExt;
        let config = self.write_config(i).await;
        let mut child = tokio::process::Command::new(&self.worker_bin)
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("cohort-worker starts");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let control = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("read stdout") {
                let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if let Some(c) = v.get("control").and_then(|c| c.as_str()) {
                    return c.to_string();
                }
            }
            panic!("the worker of shard {i} exited before listening");
        })
        .await
        .expect("the worker listens");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.endpoints.lock().expect("lock").insert(i, control);
        child
    }

    /// A control-API client of shard `i`, as the operator.
    pub fn client(&self, i: usize) -> Option<cohort_worker::service::control::ControlClient> {
        let endpoint = self.endpoints.lock().expect("lock").get(&i).cloned()?;
        let identity = self.identity.lock().expect("lock").clone()?;
        Some(cohort_worker::service::control::ControlClient::new(identity, endpoint, "bank-a"))
    }
}

/// A table of shard workers' control endpoints that a test fills as it
/// starts them, and the operator's view of it (a shard not started yet
/// resolves to a closed port).
pub fn shard_endpoints() -> (Arc<Mutex<BTreeMap<usize, String>>>, ControlEndpoints) {
    let endpoints: Arc<Mutex<BTreeMap<usize, String>>> = Arc::new(Mutex::new(BTreeMap::new()));
    let lookup = endpoints.clone();
    let control: ControlEndpoints = Arc::new(move |s: &ShardRef<'_>| {
        lookup.lock().expect("lock").get(&s.shard).cloned().unwrap_or_else(|| "127.0.0.1:1".into())
    });
    (endpoints, control)
}
