//! Helpers for the end-to-end tests in `tests/`: where the binaries are,
//! and the plaintext expectation of a run file's job.
//!
//! The tests run the real binaries as separate processes. `cargo test
//! --workspace` builds them first (every package with integration tests
//! has its binaries built); run alone, `cargo build --workspace --bins`
//! first.

pub mod otlp;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cohort_cli::runfile::RunFile;
use cohort_worker::fixed::{self, FixedPoint};
use cohort_worker::program::ir::ElemType;
use cohort_worker::program::plain::{PlainInputs, evaluate};

/// The directory holding the workspace's built binaries (`target/debug`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test> -> target/debug
    exe.parent().and_then(Path::parent).expect("target directory").to_path_buf()
}

/// A workspace binary, checked to exist.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` (cargo test --workspace builds it)",
        path.display()
    );
    path
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// Options for launching local federations from tests: the built
/// binaries, logs to `log_dir` at `log` level.
pub fn launch_options(log: &str, log_dir: Option<PathBuf>) -> cohort_cli::launch::Options {
    cohort_cli::launch::Options {
        worker_bin: bin("cohort-worker"),
        dealer_bin: bin("cohort-dealer"),
        log: log.into(),
        log_dir,
        ..cohort_cli::launch::Options::beside_current_exe()
    }
}

/// Each output of the run file's job evaluated in the clear on the same
/// data: what every recipient must see (up to the protocol's rounding).
pub fn expected_outputs(run_file: &Path) -> BTreeMap<String, Vec<f64>> {
    let (run, inputs) = RunFile::load(run_file).expect("run file loads");
    let circuit = &run.circuit;
    let fp = FixedPoint::new(circuit.frac_bits).expect("precision");
    let mut plain = PlainInputs::new();
    for (party, party_inputs) in inputs.iter().enumerate() {
        for input in &party_inputs.inputs {
            let index = circuit.inputs.iter().position(|d| d.name == input.name).expect("declared");
            let encoded = input.values.encode(fp).expect("encodes");
            plain.insert(index, party, encoded.expose().to_vec());
        }
    }
    let values = evaluate(circuit, &plain).expect("plaintext evaluation");
    circuit
        .outputs
        .iter()
        .zip(values)
        .map(|(decl, v)| {
            let decoded = v
                .iter()
                .map(|x| match decl.elem {
                    ElemType::Int => fixed::decode_int(*x) as f64,
                    ElemType::Bool => (*x & 1) as f64,
                    ElemType::Fixed => fp.decode(*x),
                })
                .collect();
            (decl.name.clone(), decoded)
        })
        .collect()
}

/// The values of a JSON output (a number or a boolean, or a list of them),
/// as [`expected_outputs`] gives them: a bool is 0 or 1.
pub fn json_values(value: &serde_json::Value) -> Vec<f64> {
    let one = |x: &serde_json::Value| match x {
        serde_json::Value::Bool(b) => f64::from(u8::from(*b)),
        x => x.as_f64().expect("a number or a boolean"),
    };
    match value {
        serde_json::Value::Array(items) => items.iter().map(one).collect(),
        other => vec![one(other)],
    }
}

/// Whether a JSON output has the JSON type its declaration says: booleans
/// for `bool` outputs, integers for `int` ones, numbers for `fixed` ones
/// (elementwise for a list).
pub fn json_has_type(value: &serde_json::Value, elem: ElemType) -> bool {
    let one = |x: &serde_json::Value| match elem {
        ElemType::Bool => x.is_boolean(),
        ElemType::Int => x.is_i64(),
        ElemType::Fixed => x.is_number(),
    };
    match value {
        serde_json::Value::Array(items) => items.iter().all(one),
        other => one(other),
    }
}

/// `GET path` from a plain-HTTP endpoint (metrics, probes): the whole
/// response, status line and headers included.
pub async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.expect("read");
    out
}

/// Join `job` as party-1 of a two-party federation whose party-0 is a real
/// worker: the test holds a genuine certificate from party-1's CA, so
/// party-0's worker sees an authenticated peer that then misbehaves as the
/// test chooses. Protocol version 1; 10 s connect and round timeouts.
pub async fn join_as_party_1(
    federation: &cohort_cli::launch::Federation,
    job: cohort_worker::transport::JobId,
) -> cohort_worker::transport::Mesh {
    join_as_last(federation, job, cohort_worker::protocol::ProtocolName::AdditiveSemiHonest).await
}

/// Join `job` as the federation's last party, whose worker the test did
/// not give the job, speaking `protocol` in the hello: the other parties'
/// real workers see an authenticated peer (a genuine certificate from the
/// last party's CA) that then misbehaves as the test chooses. Protocol
/// version 1; 10 s connect and round timeouts.
pub async fn join_as_last(
    federation: &cohort_cli::launch::Federation,
    job: cohort_worker::transport::JobId,
    protocol: cohort_worker::protocol::ProtocolName,
) -> cohort_worker::transport::Mesh {
    use cohort_worker::transport::{Limits, Mesh, MeshConfig, PeerAddr, ProtocolOffer, Timeouts, TlsIdentity};
    use std::time::{Duration, SystemTime};
    let me = federation.workers.len() - 1;
    let name = federation.workers[me].name.clone();
    let ca = &federation.cas[&name];
    let now = SystemTime::now();
    let leaf = ca.issue_party_cert(&name, &[], now, now + Duration::from_secs(600)).expect("leaf");
    let chain = format!("{}{}", leaf.cert_pem, ca.cert_pem());
    let others = &federation.workers[..me];
    let trust: Vec<(String, String)> =
        others.iter().map(|w| (w.name.clone(), federation.cas[&w.name].cert_pem())).collect();
    let identity = TlsIdentity::from_pem_pinned("local", &name, &chain, &leaf.key_pem, &trust).expect("identity");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut parties: Vec<PeerAddr> =
        others.iter().map(|w| PeerAddr { name: w.name.clone(), addr: w.peer.parse().expect("addr") }).collect();
    parties.push(PeerAddr { name, addr: listener.local_addr().expect("addr") });
    let cfg = MeshConfig {
        federation: "local".into(),
        self_index: me,
        parties,
        identity: std::sync::Arc::new(identity),
        protocol: ProtocolOffer { name: protocol.as_str().into(), min_version: 1, max_version: 1 },
        limits: Limits::default(),
        timeouts: Timeouts { connect: Duration::from_secs(10), round: Duration::from_secs(10) },
    };
    Mesh::establish(&cfg, &listener, job).await.expect("the test joins as the last party")
}

/// A scratch directory for a test's run files and data, removed on drop.
pub struct Dir(pub PathBuf);

impl Dir {
    /// A fresh `cohort-e2e-<tag>-<pid>` under the temporary directory.
    pub fn new(tag: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("cohort-e2e-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Dir(dir)
    }

    /// Write `text` to `name` inside the directory; its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
