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
                    ElemType::Fixed => fp.decode(*x),
                })
                .collect();
            (decl.name.clone(), decoded)
        })
        .collect()
}

/// The values of a JSON output (a number or a list of numbers).
pub fn json_values(value: &serde_json::Value) -> Vec<f64> {
    match value {
        serde_json::Value::Array(items) => items.iter().map(|x| x.as_f64().expect("a number")).collect(),
        other => vec![other.as_f64().expect("a number")],
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
