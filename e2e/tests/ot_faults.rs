//! A peer that dies during OT-based preprocessing, against a real worker
//! process (issue 15, item 9): the test plays party-1 of a two-party job
//! with a genuine certificate, takes part in the setup step and the first
//! base-OT message, then closes its connections. The worker's job must fail
//! naming party-1 and the preprocessing step (the transport error's party
//! and step kept, not flattened into a party-less `preprocessing` failure).

use std::collections::BTreeMap;
use std::time::Duration;

use cohort_cli::launch::Federation;
use cohort_e2e::launch_options;
use cohort_worker::preprocessing::Mode;
use cohort_worker::service::api::{JobRequest, JobTimeouts, Phase};
use cohort_worker::transport::{JobId, Step};

const PROGRAM: &str = "input x: fixed[] from each\noutput m = mean(concat(x))\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_dies_during_ot_preprocessing_is_named_with_the_step() {
    let parties: Vec<String> = vec!["party-0".into(), "party-1".into()];
    let federation = Federation::start(&parties, &launch_options("warn", None)).await.expect("start");
    let job = JobId::random();
    let values: Vec<cohort_worker::service::api::InputValue> =
        (0..50_000).map(|i| serde_json::Number::from_f64(i as f64 / 7.0).expect("finite").into()).collect();
    let request = JobRequest {
        id: job.to_string(),
        program: PROGRAM.into(),
        parties: parties.clone(),
        inputs: BTreeMap::from([("x".to_string(), values)]),
        timeouts: JobTimeouts { connect_seconds: Some(10.0), round_seconds: Some(10.0), total_seconds: Some(60.0) },
        preprocessing: Some(Mode::Ot),
    };
    federation.workers[0].client.submit(&request).await.expect("submit");

    let mesh = cohort_e2e::join_as_party_1(&federation, job).await;

    // The setup step, as a real party-1 holding one value: the consent
    // digest of this program, party list and mode, and its input length.
    let mut setup = vec![1u8];
    setup.extend_from_slice(&cohort_worker::local::consent_digest_for(PROGRAM, &parties, Mode::Ot));
    setup.extend_from_slice(&1u32.to_le_bytes());
    setup.extend_from_slice(&0u32.to_le_bytes());
    setup.extend_from_slice(&1u64.to_le_bytes());
    mesh.send(0, Step::Setup, setup).await.expect("setup sent");
    mesh.recv(0, Step::Setup).await.expect("party-0's setup");
    // Party-0 starts generating: its first base-OT message arrives. Then
    // party-1 dies.
    mesh.recv(0, Step::Preprocess(0)).await.expect("party-0 generates");
    drop(mesh);

    let status = federation.workers[0].client.wait(&job.to_string(), Duration::from_millis(10)).await.expect("wait");
    assert_eq!(status.phase, Phase::Failed, "{status:?}");
    let f = status.failure.expect("failure");
    assert_eq!(f.party.as_deref(), Some("party-1"), "{}", f.message);
    let step = f.step.expect("a step");
    assert!(step.starts_with("preprocessing message"), "step {step}: {}", f.message);
    assert!(!f.retryable);
}
