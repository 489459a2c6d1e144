//! Transport tests over real loopback sockets and real TLS 1.3: every party
//! runs its own CA, parties establish a mesh, exchange messages, and the
//! faults of the issue are injected (disconnect, stall, corrupted and
//! oversized frames; untrusted, expired and wrong-party certificates).
//! Every fault must end in the documented error, naming the peer and the
//! step, within the timeout and without a panic, and the same listeners must
//! then serve the next job.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cohort_worker::transport::frame::{FrameHeader, HEADER_LEN, wire_bytes};
use cohort_worker::transport::{
    CertifiedKey, InboundSource, JobId, Limits, Mesh, MeshConfig, PartyCa, PeerAddr, ProtocolOffer, Router,
    RouterLimits, Step, Timeouts, TlsFailure, TlsIdentity, TransportError, TransportErrorKind,
};
use tokio::net::TcpListener;
use tokio::time::Instant;

const FED: &str = "test-fed";
const PROTOCOL: &str = "additive-semi-honest";
const MAX_FRAME: usize = 64 * 1024;
const CONNECT: Duration = Duration::from_secs(2);
const ROUND: Duration = Duration::from_secs(1);
/// Generous slack on top of a timeout: only proves "no hang".
const SLACK: Duration = Duration::from_secs(5);

const HOUR: Duration = Duration::from_secs(3600);

fn _assert_mesh_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Mesh>();
}

/// Parties of one federation, each with its own CA and a bound listener.
struct Fed {
    names: Vec<String>,
    cas: Vec<PartyCa>,
    listeners: Vec<Arc<TcpListener>>,
    bundle: String,
}

impl Fed {
    async fn new(n: usize) -> Fed {
        let names: Vec<String> = (0..n).map(|i| format!("bank-{}", (b'a' + i as u8) as char)).collect();
        let cas: Vec<PartyCa> = names.iter().map(|p| PartyCa::generate(FED, p, 24 * HOUR).expect("CA")).collect();
        let bundle = cas.iter().map(|c| c.cert_pem()).collect::<String>();
        let mut listeners = Vec::new();
        for _ in 0..n {
            listeners.push(Arc::new(TcpListener::bind("127.0.0.1:0").await.expect("bind")));
        }
        Fed { names, cas, listeners, bundle }
    }

    fn leaf(&self, i: usize) -> CertifiedKey {
        leaf_from(&self.cas[i], &self.names[i], SystemTime::now() - HOUR, SystemTime::now() + HOUR)
    }

    fn identity(&self, i: usize) -> Arc<TlsIdentity> {
        self.identity_with(i, &self.names[i], &self.leaf(i))
    }

    fn identity_with(&self, _i: usize, party: &str, leaf: &CertifiedKey) -> Arc<TlsIdentity> {
        Arc::new(TlsIdentity::from_pem(FED, party, &leaf.cert_pem, &leaf.key_pem, &self.bundle).expect("identity"))
    }

    fn peers(&self) -> Vec<PeerAddr> {
        self.names
            .iter()
            .zip(&self.listeners)
            .map(|(name, l)| PeerAddr { name: name.clone(), addr: l.local_addr().expect("addr") })
            .collect()
    }

    fn config(&self, i: usize) -> MeshConfig {
        self.config_with(i, self.identity(i))
    }

    fn config_with(&self, i: usize, identity: Arc<TlsIdentity>) -> MeshConfig {
        MeshConfig {
            federation: FED.into(),
            self_index: i,
            parties: self.peers(),
            identity,
            protocol: ProtocolOffer { name: PROTOCOL.into(), min_version: 1, max_version: 1 },
            limits: Limits { max_frame_bytes: MAX_FRAME, ..Limits::default() },
            timeouts: Timeouts { connect: CONNECT, round: ROUND },
        }
    }

    fn configs(&self) -> Vec<MeshConfig> {
        (0..self.names.len()).map(|i| self.config(i)).collect()
    }
}

fn leaf_from(ca: &PartyCa, party: &str, not_before: SystemTime, not_after: SystemTime) -> CertifiedKey {
    ca.issue_party_cert(party, &["localhost".into(), "127.0.0.1".into()], not_before, not_after).expect("leaf")
}

/// Run `establish` for every (config, listener, job) concurrently.
async fn establish_each(runs: Vec<(MeshConfig, Arc<TcpListener>, JobId)>) -> Vec<Result<Mesh, TransportError>> {
    let start = Instant::now();
    let handles: Vec<_> = runs
        .into_iter()
        .map(|(cfg, listener, job)| tokio::spawn(async move { Mesh::establish(&cfg, &listener, job).await }))
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("establish must not panic"));
    }
    assert!(start.elapsed() < CONNECT + SLACK, "establish hung");
    out
}

async fn establish_all(fed: &Fed, cfgs: Vec<MeshConfig>) -> Vec<Mesh> {
    let job = JobId::random();
    let runs = cfgs.into_iter().zip(&fed.listeners).map(|(c, l)| (c, l.clone(), job)).collect();
    establish_each(runs).await.into_iter().map(|r| r.expect("establish")).collect()
}

fn payload(from: usize, to: usize, k: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u64 * 31 + from as u64 * 7 + to as u64 * 13 + k as u64 * 101) as u8).collect()
}

/// One party's part of an all-to-all round: send `len` bytes to every
/// other party at `step` while receiving and checking theirs.
async fn exchange_one(m: &Mesh, step: Step, len: usize) {
    let me = m.self_index();
    let n = m.party_count();
    let sends = async {
        for to in (0..n).filter(|&j| j != me) {
            m.send(to, step, payload(me, to, 0, len)).await.expect("send");
        }
    };
    let recvs = async {
        for from in (0..n).filter(|&j| j != me) {
            let got = m.recv(from, step).await.expect("recv");
            assert!(got == payload(from, me, 0, len), "wrong bytes from {from}");
        }
    };
    tokio::join!(sends, recvs);
}

/// An all-to-all round, every party concurrently.
async fn exchange_all(meshes: &[Mesh], step: Step, len: usize) {
    join_all(meshes.iter().map(|m| exchange_one(m, step, len)).collect()).await;
}

/// Minimal `join_all`: poll every future until all are done.
async fn join_all<F: std::future::Future<Output = ()>>(futs: Vec<F>) {
    let mut futs: Vec<Option<std::pin::Pin<Box<F>>>> = futs.into_iter().map(|f| Some(Box::pin(f))).collect();
    std::future::poll_fn(move |cx| {
        let mut pending = false;
        for slot in futs.iter_mut() {
            if let Some(f) = slot {
                if f.as_mut().poll(cx).is_ready() {
                    *slot = None;
                } else {
                    pending = true;
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await
}

fn tls_failure(e: &TransportError) -> &TlsFailure {
    match &e.kind {
        TransportErrorKind::Tls(f) => f,
        other => panic!("expected a TLS failure, got {other:?} ({e})"),
    }
}

/// After a fault: a fresh job on the same listeners works.
async fn next_job_works(fed: &Fed) {
    let meshes = establish_all(fed, fed.configs()).await;
    exchange_all(&meshes, Step::Setup, 1000).await;
    for m in meshes {
        m.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_three_parties_sizes_and_versions() {
    let fed = Fed::new(3).await;
    let mut cfgs = fed.configs();
    // Pairwise highest common versions: a-b 3, a-c 3, b-c 4 -> mesh 3.
    for (cfg, (lo, hi)) in cfgs.iter_mut().zip([(1, 3), (2, 5), (3, 4)]) {
        cfg.protocol.min_version = lo;
        cfg.protocol.max_version = hi;
    }
    let meshes = establish_all(&fed, cfgs).await;
    for m in &meshes {
        assert_eq!(m.protocol_version(), 3);
        assert_eq!(m.party_count(), 3);
        assert_eq!(m.party_name(1), "bank-b");
    }
    let job = meshes[0].job();
    assert!(meshes.iter().all(|m| m.job() == job));

    let sizes = [0, 1, 1000, MAX_FRAME, MAX_FRAME + 1, 2 * MAX_FRAME + 17, 300_000];
    let steps = [Step::Setup, Step::Input, Step::Layer(0), Step::Layer(7), Step::Output];
    let mut expected_sent = 0u64;
    for (k, &len) in sizes.iter().enumerate() {
        let step = steps[k % steps.len()];
        exchange_all(&meshes, step, len).await;
        expected_sent += 2 * wire_bytes(len, MAX_FRAME);
    }
    for m in &meshes {
        assert_eq!(m.bytes_sent(), expected_sent);
        let me = m.self_index();
        let per_peer: u64 = (0..3).filter(|&j| j != me).map(|j| m.bytes_sent_to(j)).sum();
        assert_eq!(per_peer, expected_sent);
        assert_eq!(m.bytes_received(), expected_sent);
    }
    for m in meshes {
        m.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_limits_split_large_messages() {
    let fed = Fed::new(2).await;
    let mut cfgs = fed.configs();
    for c in &mut cfgs {
        c.limits = Limits::default();
    }
    let meshes = establish_all(&fed, cfgs).await;
    let len = 9 * 1024 * 1024 + 5; // three frames of at most 4 MiB
    exchange_all(&meshes, Step::Layer(1), len).await;
    assert_eq!(meshes[0].bytes_sent(), len as u64 + 3 * HEADER_LEN as u64);
    for m in meshes {
        m.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disjoint_versions_and_protocol_mismatch_are_refused() {
    let fed = Fed::new(2).await;
    let mut cfgs = fed.configs();
    cfgs[0].protocol.min_version = 1;
    cfgs[0].protocol.max_version = 2;
    cfgs[1].protocol.min_version = 3;
    cfgs[1].protocol.max_version = 4;
    let job = JobId::random();
    let res = establish_each(vec![
        (cfgs[0].clone(), fed.listeners[0].clone(), job),
        (cfgs[1].clone(), fed.listeners[1].clone(), job),
    ])
    .await;
    let a = res[0].as_ref().expect_err("a refuses");
    let b = res[1].as_ref().expect_err("b refuses");
    assert_eq!(a.peer.as_deref(), Some("bank-b"));
    assert_eq!(a.step, Step::Handshake);
    assert!(
        matches!(a.kind, TransportErrorKind::VersionMismatch { our_min: 1, our_max: 2, their_min: 3, their_max: 4 }),
        "{a}"
    );
    assert_eq!(b.peer.as_deref(), Some("bank-a"));
    assert!(
        matches!(b.kind, TransportErrorKind::VersionMismatch { our_min: 3, our_max: 4, their_min: 1, their_max: 2 }),
        "{b}"
    );
    assert!(b.to_string().contains("no common protocol version"), "{b}");

    let mut cfgs = fed.configs();
    cfgs[1].protocol.name = "spdz-online".into();
    let res = establish_each(vec![
        (cfgs[0].clone(), fed.listeners[0].clone(), job),
        (cfgs[1].clone(), fed.listeners[1].clone(), job),
    ])
    .await;
    for r in &res {
        let e = r.as_ref().expect_err("protocol mismatch");
        assert!(matches!(e.kind, TransportErrorKind::ProtocolMismatch { .. }), "{e}");
    }
    next_job_works(&fed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_job_is_refused() {
    let fed = Fed::new(2).await;
    let cfgs = fed.configs();
    let res = establish_each(vec![
        (cfgs[0].clone(), fed.listeners[0].clone(), JobId([1; 16])),
        (cfgs[1].clone(), fed.listeners[1].clone(), JobId([2; 16])),
    ])
    .await;
    let a = res[0].as_ref().expect_err("a");
    let b = res[1].as_ref().expect_err("b");
    assert!(matches!(a.kind, TransportErrorKind::WrongJob), "{a}");
    assert_eq!(a.peer.as_deref(), Some("bank-b"));
    assert!(matches!(b.kind, TransportErrorKind::WrongJob), "{b}");
    assert_eq!(b.peer.as_deref(), Some("bank-a"));
    next_job_works(&fed).await;
}

/// Establish a two-party mesh where party `bad` uses `identity` (and,
/// optionally, its own view of the party list). Returns both results.
async fn establish_pair(
    fed: &Fed,
    cfg_a: MeshConfig,
    cfg_b: MeshConfig,
) -> (Result<Mesh, TransportError>, Result<Mesh, TransportError>) {
    let job = JobId::random();
    let mut res =
        establish_each(vec![(cfg_a, fed.listeners[0].clone(), job), (cfg_b, fed.listeners[1].clone(), job)]).await;
    let b = res.pop().expect("b");
    let a = res.pop().expect("a");
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_ca_is_refused_both_directions() {
    let fed = Fed::new(2).await;
    let outsider = PartyCa::generate(FED, "bank-b", 24 * HOUR).expect("outsider CA");
    let now = SystemTime::now();

    // The dialer (bank-b) presents a certificate from a CA nobody trusts.
    let leaf = leaf_from(&outsider, "bank-b", now - HOUR, now + HOUR);
    let b_cfg = fed.config_with(1, fed.identity_with(1, "bank-b", &leaf));
    let (a, b) = establish_pair(&fed, fed.config(0), b_cfg).await;
    let a = a.expect_err("bank-a refuses");
    assert_eq!(a.peer.as_deref(), Some("bank-b"));
    assert_eq!(a.step, Step::Handshake);
    assert_eq!(tls_failure(&a), &TlsFailure::UntrustedIssuer { party: "bank-b".into() });
    assert!(a.to_string().contains("untrusted issuer"), "{a}");
    let b = b.expect_err("bank-b learns it was refused");
    assert_eq!(b.peer.as_deref(), Some("bank-a"));
    assert!(b.to_string().contains("unknown CA"), "{b}");

    // The acceptor (bank-a) presents a certificate from a CA nobody trusts
    // (this time a CA of another name, above one impersonating bank-b's).
    let outsider_a = PartyCa::generate(FED, "mallory", 24 * HOUR).expect("outsider CA");
    let leaf = leaf_from(&outsider_a, "bank-a", now - HOUR, now + HOUR);
    let a_cfg = fed.config_with(0, fed.identity_with(0, "bank-a", &leaf));
    let (a, b) = establish_pair(&fed, a_cfg, fed.config(1)).await;
    let b = b.expect_err("bank-b refuses");
    assert_eq!(b.peer.as_deref(), Some("bank-a"));
    assert_eq!(tls_failure(&b), &TlsFailure::UntrustedIssuer { party: "bank-a".into() });
    let a = a.expect_err("bank-a learns it was refused");
    assert_eq!(a.peer.as_deref(), Some("bank-b"));
    assert!(a.to_string().contains("unknown CA"), "{a}");

    next_job_works(&fed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_for_the_wrong_party_is_refused() {
    let fed = Fed::new(2).await;
    let now = SystemTime::now();

    // bank-b's worker runs with a (validly issued) certificate for bank-c:
    // from its point of view it is "bank-c" at bank-b's address.
    let leaf = leaf_from(&fed.cas[1], "bank-c", now - HOUR, now + HOUR);
    let mut b_cfg = fed.config_with(1, fed.identity_with(1, "bank-c", &leaf));
    b_cfg.parties[1].name = "bank-c".into();
    let (a, b) = establish_pair(&fed, fed.config(0), b_cfg).await;
    let a = a.expect_err("bank-a refuses");
    assert_eq!(a.peer.as_deref(), Some("bank-b"));
    assert_eq!(tls_failure(&a), &TlsFailure::WrongIdentity { expected: "bank-b".into(), got: "bank-c".into() });
    assert!(a.to_string().contains("wrong identity: expected party bank-b"), "{a}");
    let b = b.expect_err("refused");
    assert!(b.to_string().contains("bad certificate"), "{b}");

    // bank-a's listener is served by a worker certified as bank-z.
    let leaf = leaf_from(&fed.cas[0], "bank-z", now - HOUR, now + HOUR);
    let mut a_cfg = fed.config_with(0, fed.identity_with(0, "bank-z", &leaf));
    a_cfg.parties[0].name = "bank-z".into();
    let (a, b) = establish_pair(&fed, a_cfg, fed.config(1)).await;
    let b = b.expect_err("bank-b refuses");
    assert_eq!(b.peer.as_deref(), Some("bank-a"));
    assert_eq!(tls_failure(&b), &TlsFailure::WrongIdentity { expected: "bank-a".into(), got: "bank-z".into() });
    assert!(a.is_err());

    next_job_works(&fed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_is_refused_both_directions() {
    let fed = Fed::new(2).await;
    let now = SystemTime::now();

    let leaf = leaf_from(&fed.cas[1], "bank-b", now - 3 * HOUR, now - HOUR);
    let b_cfg = fed.config_with(1, fed.identity_with(1, "bank-b", &leaf));
    let (a, b) = establish_pair(&fed, fed.config(0), b_cfg).await;
    let a = a.expect_err("bank-a refuses");
    assert_eq!(a.peer.as_deref(), Some("bank-b"));
    assert!(matches!(tls_failure(&a), TlsFailure::Expired { party, .. } if party == "bank-b"));
    assert!(a.to_string().contains("certificate of party bank-b expired at"), "{a}");
    let b = b.expect_err("refused");
    assert!(b.to_string().contains("expired"), "{b}");

    let leaf = leaf_from(&fed.cas[0], "bank-a", now - 3 * HOUR, now - HOUR);
    let a_cfg = fed.config_with(0, fed.identity_with(0, "bank-a", &leaf));
    let (a, b) = establish_pair(&fed, a_cfg, fed.config(1)).await;
    let b = b.expect_err("bank-b refuses");
    assert!(matches!(tls_failure(&b), TlsFailure::Expired { party, .. } if party == "bank-a"));
    assert!(a.is_err());

    next_job_works(&fed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_trust_refuses_a_peer_ca_vouching_for_another_party() {
    let fed = Fed::new(3).await;
    let now = SystemTime::now();
    let pinned = |i: usize, leaf: &CertifiedKey| {
        let cas: Vec<(String, String)> =
            fed.names.iter().zip(&fed.cas).map(|(n, c)| (n.clone(), c.cert_pem())).collect();
        Arc::new(
            TlsIdentity::from_pem_pinned(FED, &fed.names[i], &leaf.cert_pem, &leaf.key_pem, &cas)
                .expect("pinned identity"),
        )
    };
    // Honest parties with pinned trust work.
    let cfgs: Vec<MeshConfig> = (0..3).map(|i| fed.config_with(i, pinned(i, &fed.leaf(i)))).collect();
    let meshes = establish_all(&fed, cfgs).await;
    exchange_all(&meshes, Step::Setup, 10).await;
    drop(meshes);

    // bank-c's CA issues a "bank-b" certificate: refused by pinned bank-a.
    let forged = leaf_from(&fed.cas[2], "bank-b", now - HOUR, now + HOUR);
    let rogue = fed.config_with(1, fed.identity_with(1, "bank-b", &forged));
    let mut a_cfg = fed.config_with(0, pinned(0, &fed.leaf(0)));
    a_cfg.parties.truncate(2);
    let mut rogue = rogue;
    rogue.parties.truncate(2);
    let (a, _b) = establish_pair(&fed, a_cfg, rogue).await;
    let a = a.expect_err("refused");
    assert_eq!(tls_failure(&a), &TlsFailure::UntrustedIssuer { party: "bank-b".into() });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_disconnect_ends_the_job_on_every_other_party() {
    let fed = Fed::new(3).await;
    let mut meshes = establish_all(&fed, fed.configs()).await;
    exchange_all(&meshes, Step::Input, 5000).await;
    // bank-c crashes.
    let c = meshes.pop().expect("c");
    drop(c);
    let start = Instant::now();
    let (ra, rb) = tokio::join!(meshes[0].recv(2, Step::Layer(1)), meshes[1].recv(2, Step::Layer(1)));
    assert!(start.elapsed() < ROUND + SLACK);
    for r in [ra, rb] {
        let e = r.expect_err("disconnect");
        assert!(matches!(e.kind, TransportErrorKind::Disconnected), "{e}");
        assert_eq!(e.peer.as_deref(), Some("bank-c"));
        assert_eq!(e.step, Step::Layer(1));
        assert_eq!(e.to_string(), "party bank-c, step layer 1: peer closed the connection");
    }
    // Sticky: asked again, the same error, at once.
    let e = meshes[0].recv(2, Step::Layer(2)).await.expect_err("sticky");
    assert!(matches!(e.kind, TransportErrorKind::Disconnected));
    drop(meshes);
    next_job_works(&fed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_mid_frame_is_reported() {
    let fed = Fed::new(2).await;
    let meshes = establish_all(&fed, fed.configs()).await;
    let job = meshes[1].job();
    let mut raw = FrameHeader { job, step: Step::Output, last: true, len: 1000 }.encode().to_vec();
    raw.extend_from_slice(&[9u8; 10]); // 990 bytes never come
    meshes[1].send_raw(0, raw).await.expect("raw");
    let mut it = meshes.into_iter();
    let a = it.next().expect("a");
    let b = it.next().expect("b");
    b.close().await;
    let e = a.recv(1, Step::Output).await.expect_err("disconnect");
    assert!(matches!(e.kind, TransportErrorKind::Disconnected), "{e}");
    assert_eq!(e.peer.as_deref(), Some("bank-b"));
    drop(a);
    next_job_works(&fed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_peer_times_out_naming_peer_and_step() {
    let fed = Fed::new(2).await;
    let meshes = establish_all(&fed, fed.configs()).await;
    let start = Instant::now();
    let e = meshes[0].recv(1, Step::Layer(2)).await.expect_err("stall");
    let elapsed = start.elapsed();
    assert!(elapsed >= ROUND - Duration::from_millis(50) && elapsed < ROUND + SLACK);
    assert!(matches!(e.kind, TransportErrorKind::Timeout { .. }), "{e}");
    assert_eq!(e.peer.as_deref(), Some("bank-b"));
    assert_eq!(e.step, Step::Layer(2));
    assert!(e.to_string().starts_with("party bank-b, step layer 2: timed out"), "{e}");
    drop(meshes);
    next_job_works(&fed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_that_never_reads_makes_send_time_out() {
    let fed = Fed::new(2).await;
    let meshes = establish_all(&fed, fed.configs()).await;
    let start = Instant::now();
    let mut err = None;
    for k in 0..2048 {
        if let Err(e) = meshes[0].send(1, Step::Layer(0), vec![k as u8; 1 << 20]).await {
            err = Some(e);
            break;
        }
    }
    let e = err.expect("sending 2 GiB to a peer that never reads must fail");
    assert!(start.elapsed() < 4 * ROUND + SLACK);
    assert!(matches!(e.kind, TransportErrorKind::Timeout { .. }), "{e}");
    assert_eq!(e.peer.as_deref(), Some("bank-b"));
    drop(meshes);
    next_job_works(&fed).await;
}

/// Inject `raw` from bank-b to bank-a and return bank-a's receive error.
async fn inject(fed: &Fed, make: impl FnOnce(JobId) -> Vec<u8>, step: Step) -> TransportError {
    let meshes = establish_all(fed, fed.configs()).await;
    let raw = make(meshes[1].job());
    meshes[1].send_raw(0, raw).await.expect("raw");
    let start = Instant::now();
    let e = meshes[0].recv(1, step).await.expect_err("fault");
    assert!(start.elapsed() < ROUND + SLACK);
    assert_eq!(e.peer.as_deref(), Some("bank-b"));
    assert_eq!(e.step, step);
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("SENTINEL"), "payload bytes leaked into an error: {shown}");
    e
}

fn header(job: JobId, step: Step, last: bool, len: u32) -> Vec<u8> {
    FrameHeader { job, step, last, len }.encode().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_frames_are_malformed_errors() {
    let fed = Fed::new(2).await;
    let body = b"SECRET-SENTINEL-SECRET-SENTINEL";

    // Bad magic.
    let e = inject(
        &fed,
        |job| {
            let mut h = header(job, Step::Setup, true, body.len() as u32);
            h[0] ^= 0xff;
            h.extend_from_slice(body);
            h
        },
        Step::Setup,
    )
    .await;
    assert!(matches!(&e.kind, TransportErrorKind::Malformed(m) if m.contains("magic")), "{e}");

    // Pure garbage that happens to be payload-like.
    let e = inject(&fed, |_| body.repeat(4), Step::Setup).await;
    assert!(matches!(e.kind, TransportErrorKind::Malformed(_)), "{e}");

    // Unknown flag bits.
    let e = inject(
        &fed,
        |job| {
            let mut h = header(job, Step::Setup, true, 0);
            h[5] = 0xf1;
            h
        },
        Step::Setup,
    )
    .await;
    assert!(matches!(e.kind, TransportErrorKind::Malformed(_)), "{e}");

    // A frame for another job.
    let e = inject(
        &fed,
        |_| {
            let mut h = header(JobId([0xee; 16]), Step::Setup, true, body.len() as u32);
            h.extend_from_slice(body);
            h
        },
        Step::Setup,
    )
    .await;
    assert!(matches!(e.kind, TransportErrorKind::WrongJob), "{e}");

    // A well-formed frame for another step.
    let e = inject(
        &fed,
        |job| {
            let mut h = header(job, Step::Layer(4), true, body.len() as u32);
            h.extend_from_slice(body);
            h
        },
        Step::Layer(3),
    )
    .await;
    assert!(
        matches!(e.kind, TransportErrorKind::UnexpectedStep { expected: Step::Layer(3), got: Step::Layer(4) }),
        "{e}"
    );
    assert!(e.to_string().contains("expected a message for step layer 3"), "{e}");

    // Fragments of one message switching step midway.
    let e = inject(
        &fed,
        |job| {
            let mut h = header(job, Step::Input, false, 4);
            h.extend_from_slice(b"abcd");
            h.extend(header(job, Step::Output, true, 4));
            h.extend_from_slice(b"efgh");
            h
        },
        Step::Input,
    )
    .await;
    assert!(matches!(&e.kind, TransportErrorKind::Malformed(m) if m.contains("fragment")), "{e}");

    next_job_works(&fed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_are_refused_from_the_header() {
    let fed = Fed::new(2).await;
    // Only the header is sent: if the receiver waited for the body, this
    // would be a timeout, not FrameTooLarge.
    for len in [MAX_FRAME as u32 + 1, u32::MAX] {
        let e = inject(&fed, |job| header(job, Step::Layer(0), true, len), Step::Layer(0)).await;
        match e.kind {
            TransportErrorKind::FrameTooLarge { size, max } => {
                assert_eq!((size, max), (len as u64, MAX_FRAME as u64));
            }
            other => panic!("expected FrameTooLarge, got {other:?}"),
        }
    }
    next_job_works(&fed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_refused() {
    let fed = Fed::new(2).await;
    let mut cfgs = fed.configs();
    cfgs[0].limits.max_message_bytes = 3 * MAX_FRAME;
    // bank-b allows itself more than bank-a accepts.
    let meshes = establish_all(&fed, cfgs).await;
    let e = meshes[0].send(1, Step::Output, vec![0; 3 * MAX_FRAME + 1]).await.expect_err("too large to send");
    assert!(matches!(e.kind, TransportErrorKind::MessageTooLarge { .. }), "{e}");
    meshes[1].send(0, Step::Output, vec![0; 5 * MAX_FRAME]).await.expect("bank-b may send it");
    let e = meshes[0].recv(1, Step::Output).await.expect_err("too large to receive");
    assert!(matches!(e.kind, TransportErrorKind::MessageTooLarge { .. }), "{e}");
    assert_eq!(e.peer.as_deref(), Some("bank-b"));
    drop(meshes);
    next_job_works(&fed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stray_connections_do_not_disturb_establishment() {
    let fed = Fed::new(2).await;
    let addr = fed.listeners[0].local_addr().expect("addr");
    // One connection that never speaks, one that closes at once.
    let _silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
    drop(tokio::net::TcpStream::connect(addr).await.expect("connect"));
    next_job_works(&fed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_peer_times_out_naming_it() {
    let fed = Fed::new(3).await;
    // bank-c never shows up.
    let job = JobId::random();
    let cfgs = fed.configs();
    let res = establish_each(vec![
        (cfgs[0].clone(), fed.listeners[0].clone(), job),
        (cfgs[1].clone(), fed.listeners[1].clone(), job),
    ])
    .await;
    for r in res {
        let e = r.expect_err("timeout");
        assert!(matches!(e.kind, TransportErrorKind::Timeout { .. }), "{e}");
        assert_eq!(e.peer.as_deref(), Some("bank-c"), "{e}");
        assert_eq!(e.step, Step::Handshake);
    }
    // Only bank-c shows up: its dials land in listeners nobody serves, so
    // the TLS handshakes stall until the connect timeout.
    let res = establish_each(vec![(cfgs[2].clone(), fed.listeners[2].clone(), job)]).await;
    let e = res.into_iter().next().expect("one").expect_err("timeout");
    assert!(matches!(e.kind, TransportErrorKind::Timeout { .. }), "{e}");
    assert_eq!(e.peer.as_deref(), Some("bank-a, bank-b"), "{e}");
    // The stale connections left in the backlogs do not disturb the next job.
    next_job_works(&fed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_configuration_is_reported() {
    let fed = Fed::new(2).await;
    let mut cfg = fed.config(0);
    cfg.self_index = 5;
    let e = Mesh::establish(&cfg, &fed.listeners[0], JobId::random()).await.expect_err("bad index");
    assert!(matches!(e.kind, TransportErrorKind::Config(_)), "{e}");
    let cfg = fed.config_with(0, fed.identity(1));
    let e = Mesh::establish(&cfg, &fed.listeners[0], JobId::random()).await.expect_err("identity of another party");
    assert!(matches!(e.kind, TransportErrorKind::Config(_)), "{e}");
    // A certificate naming another party cannot be loaded as our identity.
    let leaf = fed.leaf(1);
    let e = TlsIdentity::from_pem(FED, "bank-a", &leaf.cert_pem, &leaf.key_pem, &fed.bundle).expect_err("mismatch");
    assert!(e.to_string().contains("names bank-b"), "{e}");
    // A key that does not match the certificate.
    let other = fed.leaf(0);
    let e =
        TlsIdentity::from_pem(FED, "bank-a", &other.cert_pem, &leaf.key_pem, &fed.bundle).expect_err("key mismatch");
    assert!(!e.to_string().contains("PRIVATE KEY"));
}

/// Establish the meshes of `jobs` concurrently, every party taking its
/// inbound connections from its router; party `late` registers each job
/// only after `delay` (its peers' connections wait parked).
async fn routed_jobs(cfgs: &[MeshConfig], routers: &[Arc<Router>], jobs: &[JobId], late: usize) -> Vec<Mesh> {
    let mut handles = Vec::new();
    for &job in jobs {
        for (i, router) in routers.iter().enumerate() {
            let (cfg, router) = (cfgs[i].clone(), router.clone());
            handles.push(tokio::spawn(async move {
                if i == late {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                let mut registration = router.register(job).expect("register");
                Mesh::establish_from(&cfg, InboundSource::Routed(registration.connections()), job).await
            }));
        }
    }
    let mut meshes = Vec::new();
    for h in handles {
        meshes.push(h.await.expect("no panic").expect("routed establish"));
    }
    meshes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_serves_concurrent_jobs_on_one_port_and_parks_early_dials() {
    let mut fed = Fed::new(3).await;
    let cfgs = fed.configs();
    // The routers take over the federation's listeners: one port per party.
    let mut routers = Vec::new();
    for (i, listener) in std::mem::take(&mut fed.listeners).into_iter().enumerate() {
        let listener = Arc::try_unwrap(listener).expect("sole owner");
        let peers = fed.names.iter().filter(|n| **n != fed.names[i]).cloned().collect();
        routers.push(Arc::new(Router::spawn(listener, fed.identity(i), peers, RouterLimits::default())));
    }
    // Two jobs at once; party 0 (dialed by everyone else) registers late,
    // so its peers' connections wait parked.
    let jobs = [JobId::random(), JobId::random()];
    let meshes = routed_jobs(&cfgs, &routers, &jobs, 0).await;
    for job_meshes in meshes.chunks(3) {
        exchange_all(job_meshes, Step::Layer(0), 1000).await;
    }
    // The same job id cannot take connections twice at once.
    let registration = routers[1].register(jobs[0]).expect("register");
    assert!(routers[1].register(jobs[0]).is_err());
    drop(registration);
    // A party outside the federation is refused; the routers keep serving.
    let stranger_ca = PartyCa::generate(FED, "bank-z", HOUR).expect("CA");
    let stranger = leaf_from(&stranger_ca, "bank-z", SystemTime::now() - HOUR, SystemTime::now() + HOUR);
    let mut bad = cfgs[2].clone();
    bad.identity = fed.identity_with(2, "bank-z", &stranger);
    bad.parties[2].name = "bank-z".into();
    bad.timeouts.connect = Duration::from_millis(500);
    let job = JobId::random();
    let _hold = routers[0].register(job).expect("register");
    let refused = Mesh::establish(&bad, &TcpListener::bind("127.0.0.1:0").await.expect("bind"), job).await;
    assert!(refused.is_err(), "a stranger must not connect");
    let meshes = routed_jobs(&cfgs, &routers, &[JobId::random()], 2).await;
    exchange_all(&meshes, Step::Output, 10).await;
}

/// Protocol version 2's abort frame: a party that gives up tells each peer
/// why, and frames queued before it still arrive first. At version 1 the
/// peers only see the connection close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_names_its_cause_at_version_2_and_is_silent_at_version_1() {
    let fed = Fed::new(3).await;
    let mut cfgs = fed.configs();
    for c in &mut cfgs {
        c.protocol.max_version = 2;
    }
    let meshes = establish_all(&fed, cfgs).await;
    assert!(meshes.iter().all(|m| m.protocol_version() == 2));
    meshes[2].send(0, Step::Layer(4), vec![7; 10]).await.expect("send");
    meshes[2].abort("party bank-x, layer 4: peer closed the connection\nforged log line");
    assert_eq!(meshes[0].recv(2, Step::Layer(4)).await.expect("the earlier message"), vec![7; 10]);
    for receiver in [0, 1] {
        let e = meshes[receiver].recv(2, Step::Layer(5)).await.expect_err("aborted");
        assert_eq!(e.peer.as_deref(), Some("bank-c"));
        match &e.kind {
            TransportErrorKind::Aborted(reason) => {
                assert_eq!(reason, "party bank-x, layer 4: peer closed the connection forged log line")
            }
            other => panic!("expected an abort, got {other}"),
        }
        assert!(e.to_string().contains("the peer aborted the job: party bank-x"), "{e}");
    }
    for m in meshes {
        m.close().await;
    }

    // Version 1: no abort frame; the peer sees the close.
    let meshes = establish_all(&fed, fed.configs()).await;
    assert!(meshes.iter().all(|m| m.protocol_version() == 1));
    let mut meshes = meshes.into_iter();
    let (a, b) = (meshes.next().expect("a"), meshes.next().expect("b"));
    b.abort("ignored at version 1");
    b.close().await;
    let e = a.recv(1, Step::Layer(0)).await.expect_err("closed");
    assert!(matches!(e.kind, TransportErrorKind::Disconnected), "{e}");
}

/// A router on a fresh port for party `i` of `fed`, with `limits`.
async fn router_for(fed: &Fed, i: usize, limits: RouterLimits) -> (Arc<Router>, std::net::SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let peers = fed.names.iter().filter(|n| **n != fed.names[i]).cloned().collect();
    (Arc::new(Router::spawn(listener, fed.identity(i), peers, limits)), addr)
}

/// Wait (bounded) until `cond` holds; false if it never did.
async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

/// Issue 15, item 15: a parked connection for a job that never registers
/// is dropped after `park_for` by the router's own timer, with no other
/// connection arriving to trigger the expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_connections_expire_without_further_traffic() {
    let fed = Fed::new(2).await;
    let limits = RouterLimits { park_for: Duration::from_millis(300), ..RouterLimits::default() };
    let (router, addr) = router_for(&fed, 0, limits).await;
    // bank-b dials bank-a for a job bank-a never registers.
    let mut cfg = fed.config(1);
    cfg.parties[0].addr = addr;
    cfg.timeouts.connect = Duration::from_millis(800);
    let dial = tokio::spawn(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Mesh::establish(&cfg, &listener, JobId::random()).await
    });
    assert!(eventually(SLACK, || router.parked() == 1).await, "the dial was parked");
    assert!(dial.await.expect("no panic").is_err(), "nobody answers the job");
    // Nothing else connects: the parked connection still goes.
    assert!(eventually(SLACK, || router.parked() == 0).await, "parked connections outlived park_for");
}

/// A TLS client for raw tests: presents `leaf` and accepts any server.
fn raw_client(leaf: &CertifiedKey) -> tokio_rustls::TlsConnector {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
    #[derive(Debug)]
    struct AnyServer(Arc<rustls::crypto::CryptoProvider>);
    impl ServerCertVerifier for AnyServer {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes()).collect::<Result<_, _>>().expect("chain");
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key");
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("tls13")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_client_auth_cert(chain, key)
        .expect("client cert");
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// A version hello (docs in transport::hello) naming `party`.
fn raw_hello(job: JobId, party: &str) -> Vec<u8> {
    let mut out = b"CHHI\x01".to_vec();
    out.extend_from_slice(&job.0);
    out.push(party.len() as u8);
    out.extend_from_slice(party.as_bytes());
    out.push(PROTOCOL.len() as u8);
    out.extend_from_slice(PROTOCOL.as_bytes());
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(&1u32.to_be_bytes());
    out
}

/// Issue 15, item 15: a hello naming another party than the dialer's
/// certificate is refused (status 4, with the reason), never parked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_naming_another_party_than_its_certificate_is_refused_not_parked() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fed = Fed::new(3).await;
    let (router, addr) = router_for(&fed, 0, RouterLimits::default()).await;
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    // bank-b's genuine certificate, a hello claiming bank-c.
    let mut tls = raw_client(&fed.leaf(1)).connect(name, tcp).await.expect("TLS");
    tls.write_all(&raw_hello(JobId::random(), "bank-c")).await.expect("hello");
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(SLACK, tls.read_to_end(&mut reply)).await.expect("answered and closed");
    assert!(reply.len() > 6 && &reply[..4] == b"CHRE", "{reply:?}");
    assert_eq!(reply[5], 4, "status refused");
    let text = String::from_utf8_lossy(&reply);
    assert!(text.contains("names party \"bank-c\" but the certificate identifies party bank-b"), "{text}");
    assert_eq!(router.parked(), 0);
}

/// Issue 15, item 11: a dialer whose certificate the accepting router
/// refuses (here expired) fails the accepting party's job at once with
/// the certificate's party and reason, rather than a connect timeout;
/// also when it dialed before the job was registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_certificate_fails_the_accepting_job_naming_its_party() {
    let fed = Fed::new(3).await;
    let (router, addr) = router_for(&fed, 0, RouterLimits::default()).await;
    let expired = leaf_from(&fed.cas[1], "bank-b", SystemTime::now() - 2 * HOUR, SystemTime::now() - HOUR);
    for registered_first in [true, false] {
        let job = JobId::random();
        let mut accepting = fed.config(0);
        accepting.timeouts.connect = Duration::from_secs(60);
        let mut dialing = fed.config_with(1, fed.identity_with(1, "bank-b", &expired));
        dialing.parties[0].addr = addr;
        let registration = registered_first.then(|| router.register(job).expect("register"));
        let dialed = Mesh::establish(&dialing, &TcpListener::bind("127.0.0.1:0").await.expect("bind"), job).await;
        assert!(dialed.is_err(), "the dialer is refused too");
        let mut registration = match registration {
            Some(r) => r,
            None => router.register(job).expect("register"),
        };
        let e = Mesh::establish_from(&accepting, InboundSource::Routed(registration.connections()), job)
            .await
            .expect_err("refused");
        assert_eq!(e.peer.as_deref(), Some("bank-b"), "{e}");
        assert!(matches!(tls_failure(&e), TlsFailure::Expired { .. }), "{e}");
        assert!(e.to_string().contains("certificate of party bank-b expired at"), "{e}");
    }
}

/// Issue 15, item 5: connections that never send a byte hold no handshake
/// slot and go after `client_hello_timeout`; a source address holds at
/// most `max_per_source`; a job's real connections get through meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_hold_no_handshake_slot_and_are_capped_per_source() {
    let mut fed = Fed::new(3).await;
    let cfgs = fed.configs();
    let limits = RouterLimits {
        max_handshakes: 4,
        // Longer than the job takes to connect: they are all still there.
        client_hello_timeout: Duration::from_secs(3),
        max_per_source: 20,
        ..RouterLimits::default()
    };
    let counts = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<&'static str, u64>::new()));
    let mut routers = Vec::new();
    for (i, listener) in std::mem::take(&mut fed.listeners).into_iter().enumerate() {
        let listener = Arc::try_unwrap(listener).expect("sole owner");
        let peers = fed.names.iter().filter(|n| **n != fed.names[i]).cloned().collect();
        let router = Router::spawn(listener, fed.identity(i), peers, limits);
        let counts = counts.clone();
        router.on_dropped(Box::new(move |reason| *counts.lock().expect("lock").entry(reason).or_default() += 1));
        routers.push(Arc::new(router));
    }
    let addr = cfgs[0].parties[0].addr;
    // 5 sources x 10 silent connections (within the cap), and 40 from one
    // more source (20 over the cap): 10x the handshake slots.
    let mut idle = Vec::new();
    for source in 2..=7u8 {
        let n = if source == 7 { 40 } else { 10 };
        for _ in 0..n {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket.bind(std::net::SocketAddr::from(([127, 0, 0, source], 0))).expect("bind a loopback source");
            idle.push(socket.connect(addr).await.expect("connect"));
        }
    }
    assert!(eventually(SLACK, || routers[0].unauthenticated().1 == 70).await, "{:?}", routers[0].unauthenticated());
    // Every handshake slot would be taken by now if silence held one.
    let meshes = routed_jobs(&cfgs, &routers, &[JobId::random()], 3).await;
    exchange_all(&meshes, Step::Layer(0), 100).await;
    assert!(eventually(SLACK, || routers[0].unauthenticated() == (0, 0)).await, "{:?}", routers[0].unauthenticated());
    let counts = counts.lock().expect("lock").clone();
    assert_eq!(counts.get("source_cap"), Some(&20), "{counts:?}");
    assert_eq!(counts.get("silent"), Some(&70), "{counts:?}");
    drop(idle);
}

/// Issue 15, item 10: when this process was not running past a round's
/// deadline (here its runtime thread is blocked, as under SIGSTOP), the
/// peer's message already in the socket is read rather than the peer
/// blamed; with nothing sent, the error says the clock jumped and names
/// no peer.
#[test]
fn a_stopped_party_reads_what_arrived_before_blaming_a_peer() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (fed, mut cfgs) = rt.block_on(async {
        let fed = Fed::new(2).await;
        let cfgs = fed.configs();
        (fed, cfgs)
    });
    let job = JobId::random();
    let (a_cfg, a_listener) = (cfgs.remove(0), fed.listeners[0].clone());
    let (a_to_b, b_from_a) = std::sync::mpsc::channel::<()>();
    // Party A on a runtime of its own, one thread, which the test blocks.
    let a = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let mesh = Mesh::establish(&a_cfg, &a_listener, job).await.expect("establish");
            a_to_b.send(()).expect("signal");
            let stop = || async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                std::thread::sleep(ROUND * 3); // stopped: no timer, no reader runs
            };
            let (first, ()) = tokio::join!(mesh.recv(1, Step::Layer(0)), stop());
            let (second, ()) = tokio::join!(mesh.recv(1, Step::Layer(1)), stop());
            (first, second)
        })
    });
    let b = rt.block_on(async {
        let listener = fed.listeners[1].clone();
        let b = Mesh::establish(&cfgs[0], &listener, job).await.expect("establish");
        tokio::task::spawn_blocking(move || b_from_a.recv().expect("signal")).await.expect("join");
        tokio::time::sleep(Duration::from_millis(500)).await;
        b.send(0, Step::Layer(0), vec![1, 2, 3]).await.expect("send");
        b
    });
    let (first, second) = a.join().expect("no panic");
    assert_eq!(first.expect("the message that arrived while stopped"), vec![1, 2, 3]);
    let e = second.expect_err("nothing was sent");
    assert_eq!(e.peer, None, "{e}");
    assert!(matches!(e.kind, TransportErrorKind::Stalled { .. }), "{e}");
    assert!(e.to_string().contains("this party's own timer fired"), "{e}");
    drop(b);
}

/// Issue 15, item 10: an abort that blames a party of the job is reported
/// as concerning that party (here: the receiver itself), not the sender.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_blaming_a_party_names_that_party() {
    let fed = Fed::new(3).await;
    let mut cfgs = fed.configs();
    for c in &mut cfgs {
        c.protocol.max_version = 2;
    }
    let meshes = establish_all(&fed, cfgs).await;
    meshes[2].abort("party bank-a, step layer 3: timed out after 1s waiting for a complete message");
    let e = meshes[0].recv(2, Step::Layer(3)).await.expect_err("aborted");
    assert_eq!(e.peer.as_deref(), Some("bank-a"), "{e}");
    assert!(matches!(&e.kind, TransportErrorKind::AbortedBy { by, .. } if by == "bank-c"), "{e}");
    // A receive from the healthy bank-b, timing out meanwhile, reports the
    // abort rather than blaming bank-b.
    let e = meshes[1].recv(0, Step::Layer(3)).await.expect_err("aborted");
    assert_eq!(e.peer.as_deref(), Some("bank-a"), "{e}");
}

/// Issue 15, item 12: two parties behind routers that list the parties in
/// different orders each expect the other to dial. The order query tells
/// both, naming the other party, well before the connect timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parties_that_disagree_on_the_order_are_told_so() {
    let mut fed = Fed::new(3).await;
    let mut cfgs = fed.configs();
    for c in &mut cfgs {
        c.timeouts.connect = Duration::from_secs(60);
    }
    // bank-b lists bank-b first: bank-a and bank-b each wait for the other.
    cfgs[1].parties.swap(0, 1);
    cfgs[1].self_index = 0;
    let mut routers = Vec::new();
    for (i, listener) in std::mem::take(&mut fed.listeners).into_iter().enumerate() {
        let listener = Arc::try_unwrap(listener).expect("sole owner");
        let peers = fed.names.iter().filter(|n| **n != fed.names[i]).cloned().collect();
        routers.push(Arc::new(Router::spawn(listener, fed.identity(i), peers, RouterLimits::default())));
    }
    let job = JobId::random();
    let mut handles = Vec::new();
    for (cfg, router) in cfgs.into_iter().zip(&routers) {
        let router = router.clone();
        handles.push(tokio::spawn(async move {
            let mut registration = router.register(job).expect("register");
            tokio::time::timeout(
                CONNECT + SLACK,
                Mesh::establish_from(&cfg, InboundSource::Routed(registration.connections()), job),
            )
            .await
        }));
    }
    let mut results = Vec::new();
    for h in handles {
        results.push(h.await.expect("no panic"));
    }
    for (i, other) in [(0, "bank-b"), (1, "bank-a")] {
        let e = match &results[i] {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => panic!("party {i} established a mesh with a disagreeing peer"),
            Err(_) => panic!("party {i} was not told: it waited for the connect timeout"),
        };
        assert_eq!(e.peer.as_deref(), Some(other), "{e}");
        assert!(matches!(e.kind, TransportErrorKind::Handshake(_)), "{e}");
        assert!(e.to_string().contains("disagree on the party list or its order"), "{e}");
    }
}
