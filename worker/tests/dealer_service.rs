//! The networked trusted dealer (a TRUSTED THIRD PARTY) over real sockets
//! and TLS: the `DealerServer`, `client::draw`, the `cohort-dealer` binary,
//! and a full engine job drawing its material from the dealer.

mod common;

use cohort_worker::executor::{ExecuteOptions, execute};
use cohort_worker::local::LocalFederation;
use cohort_worker::preprocessing::dealer::DealerSource;
use cohort_worker::preprocessing::dealer::client::{DealerEndpoint, DrawOptions, draw};
use cohort_worker::preprocessing::dealer::service::{DealerConfig, DealerServer};
use cohort_worker::preprocessing::{Demand, LayerMaterial, MaterialPlan, MaterialSource, PreprocessingError};
use cohort_worker::program::compile;
use cohort_worker::transport::{JobId, Limits, PartyCa, Timeouts, TlsIdentity};
use common::material::check_plan;
use common::{output, own_inputs, sample};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const FED: &str = cohort_worker::local::FEDERATION;
const DEALER: &str = "dealer/main";

/// A federation of parties plus a dealer, each with its own CA; every
/// party trusts each peer and the dealer only through that one's CA.
struct Fed {
    names: Vec<String>,
    cas: Vec<PartyCa>,
    parties: Vec<Arc<TlsIdentity>>,
    dealer_ca: PartyCa,
    dealer: Arc<TlsIdentity>,
}

fn chain_and_key(ca: &PartyCa, principal: &str) -> (String, String) {
    let now = SystemTime::now();
    let leaf = ca
        .issue_party_cert(
            principal,
            &["localhost".to_string()],
            now - Duration::from_secs(60),
            now + Duration::from_secs(3600),
        )
        .unwrap();
    (format!("{}\n{}", leaf.cert_pem, ca.cert_pem()), leaf.key_pem.clone())
}

fn federation(n: usize) -> Fed {
    let names: Vec<String> = (0..n).map(|i| format!("party-{i}")).collect();
    let day = Duration::from_secs(24 * 3600);
    let cas: Vec<PartyCa> = names.iter().map(|p| PartyCa::generate(FED, p, day).unwrap()).collect();
    let dealer_ca = PartyCa::generate(FED, DEALER, day).unwrap();
    let party_cas: Vec<(String, String)> = names.iter().cloned().zip(cas.iter().map(PartyCa::cert_pem)).collect();
    let mut parties = Vec::new();
    for (name, ca) in names.iter().zip(&cas) {
        let (chain, key) = chain_and_key(ca, name);
        let mut trust: Vec<(String, String)> = party_cas.iter().filter(|(p, _)| p != name).cloned().collect();
        trust.push((DEALER.to_string(), dealer_ca.cert_pem()));
        parties.push(Arc::new(TlsIdentity::from_pem_pinned(FED, name, &chain, &key, &trust).unwrap()));
    }
    let (chain, key) = chain_and_key(&dealer_ca, DEALER);
    let dealer = Arc::new(TlsIdentity::from_pem_pinned(FED, DEALER, &chain, &key, &party_cas).unwrap());
    Fed { names, cas, parties, dealer_ca, dealer }
}

struct Running {
    addr: SocketAddr,
    metrics: Arc<cohort_worker::preprocessing::dealer::metrics::DealerMetrics>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn endpoint(&self) -> DealerEndpoint {
        DealerEndpoint { principal: DEALER.to_string(), addr: self.addr }
    }
    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task).await.expect("server stops").unwrap();
    }
}

async fn serve(fed: &Fed, config: DealerConfig) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = DealerServer::new(listener, fed.dealer.clone(), config).unwrap();
    let addr = server.local_addr().unwrap();
    let metrics = server.metrics();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Running { addr, metrics, stop: Some(stop), task }
}

fn config(fed: &Fed) -> DealerConfig {
    DealerConfig::new(fed.names.clone())
}

fn options() -> DrawOptions {
    DrawOptions {
        connect: Duration::from_secs(5),
        ready: Duration::from_secs(20),
        max_batch_items: 300,
        ..DrawOptions::default()
    }
}

fn plan() -> MaterialPlan {
    MaterialPlan {
        layers: vec![
            Demand { triples: 1000, div_pairs: vec![(3, 200), (1 << 16, 450)], ..Default::default() },
            Demand::default(),
            Demand { triples: 7, div_pairs: vec![], ..Default::default() },
            Demand { triples: 0, div_pairs: vec![(1000, 301)], ..Default::default() },
        ],
    }
}

/// Every party of `parties` (indices into the federation) draws its stream
/// for `job`, concurrently.
async fn draw_all(
    fed: &Fed,
    endpoint: &DealerEndpoint,
    job: JobId,
    parties: &[usize],
    plans: Vec<MaterialPlan>,
) -> Vec<Result<DealerSource, PreprocessingError>> {
    let names: Vec<String> = parties.iter().map(|&i| fed.names[i].clone()).collect();
    let mut tasks = Vec::new();
    for (&i, plan) in parties.iter().zip(plans) {
        let identity = fed.parties[i].clone();
        let endpoint = endpoint.clone();
        let names = names.clone();
        tasks.push(tokio::spawn(async move { draw(&identity, &endpoint, job, &names, &plan, &options()).await }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Drain every layer of `plan` from every source concurrently.
async fn drain(sources: Vec<DealerSource>, plan: &MaterialPlan) -> Vec<Result<Vec<LayerMaterial>, PreprocessingError>> {
    let mut tasks = Vec::new();
    for mut source in sources {
        let plan = plan.clone();
        tasks.push(tokio::spawn(async move {
            let mut layers = Vec::new();
            for (l, demand) in plan.layers.iter().enumerate() {
                layers.push(source.next_layer(l, demand).await?);
            }
            Ok(layers)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

async fn draw_and_check(fed: &Fed, endpoint: &DealerEndpoint, parties: &[usize], plan: &MaterialPlan) {
    let job = JobId::random();
    let sources: Vec<DealerSource> = draw_all(fed, endpoint, job, parties, vec![plan.clone(); parties.len()])
        .await
        .into_iter()
        .map(|r| r.expect("draw succeeds"))
        .collect();
    let layers: Vec<Vec<LayerMaterial>> = drain(sources, plan).await.into_iter().map(|r| r.expect("layers")).collect();
    check_plan(&layers, plan);
}

fn message(r: &Result<DealerSource, PreprocessingError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_three_and_five_parties_draw_concurrently() {
    let fed = federation(5);
    let server = serve(&fed, config(&fed)).await;
    let endpoint = server.endpoint();
    let plan = plan();
    let jobs = [vec![0, 1], vec![2, 0, 4], vec![0, 1, 2, 3, 4], vec![4, 3]];
    let mut runs = Vec::new();
    for parties in &jobs {
        runs.push(draw_and_check(&fed, &endpoint, parties, &plan));
    }
    futures_join(runs).await;
    server.shutdown().await;
}

async fn futures_join<F: std::future::Future<Output = ()>>(futs: Vec<F>) {
    // Run the futures concurrently on this task.
    let mut futs: Vec<_> = futs.into_iter().map(Box::pin).collect();
    std::future::poll_fn(|cx| {
        futs.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if futs.is_empty() { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_party_with_a_different_plan_fails_the_job_for_everyone() {
    let fed = federation(3);
    let server = serve(&fed, config(&fed)).await;
    let mut other = plan();
    other.layers[2].triples += 1;
    let results = draw_all(&fed, &server.endpoint(), JobId::random(), &[0, 1, 2], vec![plan(), plan(), other]).await;
    for r in &results {
        let m = message(r);
        assert!(m.contains("party-2") && m.contains("different material plan"), "{m}");
    }
    // A different party list is named the same way.
    let job = JobId::random();
    let names: Vec<String> = fed.names.clone();
    let (ep, p, o) = (server.endpoint(), plan(), options());
    let (a, b) = tokio::join!(draw(&fed.parties[0], &ep, job, &names[..2], &p, &o), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        draw(&fed.parties[1], &ep, job, &names, &p, &o).await
    });
    for r in [&a, &b] {
        let m = message(r);
        assert!(m.contains("party-1") && m.contains("different party list"), "{m}");
    }
    assert!(matches!(a, Err(PreprocessingError::Mismatch(_))));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_party_times_out_naming_it() {
    let fed = federation(3);
    let mut cfg = config(&fed);
    cfg.timeouts.gather = Duration::from_millis(500);
    let server = serve(&fed, cfg).await;
    let job = JobId::random();
    let names = fed.names.clone();
    let ep = server.endpoint();
    let (p, o) = (plan(), options());
    let (a, c) =
        tokio::join!(draw(&fed.parties[0], &ep, job, &names, &p, &o), draw(&fed.parties[2], &ep, job, &names, &p, &o),);
    for r in [&a, &c] {
        let m = message(r);
        assert!(m.contains("party party-1 did not ask"), "{m}");
        assert!(!m.contains("party-0 did not") && !m.contains("party-2 did not"), "{m}");
    }
    // The late party learns why.
    let late = draw(&fed.parties[1], &ep, job, &names, &p, &o).await;
    let m = message(&late);
    assert!(m.contains("party-1 did not ask") && m.contains("never reused"), "{m}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reused_job_id_is_refused() {
    let fed = federation(2);
    let server = serve(&fed, config(&fed)).await;
    let ep = server.endpoint();
    let job = JobId::random();
    let plan = plan();
    let sources: Vec<_> =
        draw_all(&fed, &ep, job, &[0, 1], vec![plan.clone(); 2]).await.into_iter().map(Result::unwrap).collect();
    let layers: Vec<_> = drain(sources, &plan).await.into_iter().map(Result::unwrap).collect();
    check_plan(&layers, &plan);
    for r in draw_all(&fed, &ep, job, &[0, 1], vec![plan.clone(); 2]).await {
        assert!(matches!(&r, Err(PreprocessingError::Reused(_))), "{}", message(&r));
        assert!(message(&r).contains("already served"), "{}", message(&r));
    }
    server.shutdown().await;
}

/// Accepts any server certificate (for raw test clients that talk to the
/// dealer without the worker's verifier).
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
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
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A raw TLS client presenting `principal`'s certificate from `ca`.
async fn raw_client(ca: &PartyCa, principal: &str, addr: SocketAddr) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let (chain, key) = chain_and_key(ca, principal);
    let certs = CertificateDer::pem_slice_iter(chain.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let p = provider();
    let cfg = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(p)))
        .with_client_auth_cert(certs, key)
        .unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(ServerName::IpAddress(addr.ip().into()), tcp).await.unwrap()
}

/// A request encoded by hand from the documented layout.
fn request(job: JobId, party: &str, parties: &[String], plan: &MaterialPlan) -> Vec<u8> {
    let mut body = job.0.to_vec();
    body.push(party.len() as u8);
    body.extend_from_slice(party.as_bytes());
    body.extend_from_slice(&(parties.len() as u16).to_le_bytes());
    for p in parties {
        body.push(p.len() as u8);
        body.extend_from_slice(p.as_bytes());
    }
    body.extend_from_slice(&100u64.to_le_bytes());
    body.extend_from_slice(&(plan.layers.len() as u32).to_le_bytes());
    for l in &plan.layers {
        body.extend_from_slice(&(l.triples as u64).to_le_bytes());
        body.extend_from_slice(&(l.div_pairs.len() as u32).to_le_bytes());
        for &(d, n) in &l.div_pairs {
            body.extend_from_slice(&d.to_le_bytes());
            body.extend_from_slice(&(n as u64).to_le_bytes());
        }
    }
    let mut out = b"CHDQ\x01".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Read a response that must be a refusal: (code, reason).
async fn read_refusal<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> (u8, String) {
    let mut head = [0u8; 10];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut head)).await.unwrap().unwrap();
    assert_eq!(&head[..5], b"CHDR\x01");
    assert_eq!(head[5], 4, "a FAILURE frame");
    let len = u32::from_le_bytes(head[6..10].try_into().unwrap()) as usize;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    (body[0], String::from_utf8(body[1..].to_vec()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_claiming_another_party_is_refused() {
    let fed = federation(2);
    let server = serve(&fed, config(&fed)).await;
    // party-1's certificate, asking as party-0.
    let mut s = raw_client(&fed.cas[1], "party-1", server.addr).await;
    s.write_all(&request(JobId::random(), "party-0", &fed.names, &plan())).await.unwrap();
    let (code, reason) = read_refusal(&mut s).await;
    assert_eq!(code, 1);
    assert!(reason.contains("claims party party-0") && reason.contains("identifies party party-1"), "{reason}");
    // A certificate for party-0 issued by party-1's CA fails at the handshake.
    let mut s = raw_client(&fed.cas[1], "party-0", server.addr).await;
    let _ = s.write_all(&request(JobId::random(), "party-0", &fed.names, &plan())).await;
    let mut buf = [0u8; 1];
    assert!(!matches!(s.read(&mut buf).await, Ok(1)), "the dealer must not answer");
    // The dealer keeps serving.
    draw_and_check(&fed, &server.endpoint(), &[0, 1], &plan()).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_requests_are_refused_and_the_dealer_keeps_serving() {
    let fed = federation(2);
    let server = serve(&fed, config(&fed)).await;
    // Not TLS at all.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut buf)).await.unwrap();
    // TLS, then garbage; then an oversized length; then a bad plan.
    let job = JobId::random();
    let mut bad_plan = request(job, "party-0", &fed.names, &plan());
    let n = bad_plan.len();
    bad_plan[n - 16..n - 8].copy_from_slice(&0u64.to_le_bytes()); // divisor 0
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"hello dealer, please give me everything".to_vec(), "bad magic"),
        (b"CHDQ\x01\xff\xff\xff\xff".to_vec(), "at most"),
        (b"CHDQ\x07\x00\x00\x00\x00".to_vec(), "version 7"),
        (bad_plan, "divisor 0"),
    ];
    for (bytes, want) in cases {
        let mut s = raw_client(&fed.cas[0], "party-0", server.addr).await;
        s.write_all(&bytes).await.unwrap();
        let (code, reason) = read_refusal(&mut s).await;
        assert_eq!(code, 1);
        assert!(reason.contains(want) && reason.contains("party party-0"), "{reason}");
    }
    // A client outside the federation is refused at the handshake.
    let stranger = PartyCa::generate(FED, "party-9", Duration::from_secs(3600)).unwrap();
    let mut s = raw_client(&stranger, "party-9", server.addr).await;
    let _ = s.write_all(&request(JobId::random(), "party-9", &fed.names, &plan())).await;
    let mut buf = [0u8; 1];
    assert!(!matches!(s.read(&mut buf).await, Ok(1)));
    draw_and_check(&fed, &server.endpoint(), &[0, 1], &plan()).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hostile_dealer_sending_an_oversized_frame_is_an_error() {
    use rustls::pki_types::pem::PemObject;
    let fed = federation(2);
    let (chain, key) = chain_and_key(&fed.dealer_ca, DEALER);
    let certs = CertificateDer::pem_slice_iter(chain.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hostile = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut s = tokio_rustls::TlsAcceptor::from(Arc::new(cfg)).accept(tcp).await.unwrap();
        let mut head = [0u8; 9];
        s.read_exact(&mut head).await.unwrap();
        let mut body = vec![0u8; u32::from_le_bytes(head[5..9].try_into().unwrap()) as usize];
        s.read_exact(&mut body).await.unwrap();
        let mut out = b"CHDR\x01".to_vec();
        out.push(1);
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u64.to_le_bytes());
        out.extend_from_slice(&100u64.to_le_bytes());
        out.push(2);
        out.extend_from_slice(&u32::MAX.to_le_bytes());
        s.write_all(&out).await.unwrap();
        s.flush().await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let ep = DealerEndpoint { principal: DEALER.to_string(), addr };
    let plan = MaterialPlan { layers: vec![Demand { triples: 100, div_pairs: vec![], ..Default::default() }] };
    let mut source = draw(&fed.parties[0], &ep, JobId::random(), &fed.names, &plan, &options()).await.unwrap();
    let err = source.next_layer(0, &plan.layers[0]).await.unwrap_err();
    assert!(matches!(err, PreprocessingError::Malformed(_)), "{err}");
    let m = err.to_string();
    assert!(m.contains("4294967295 bytes") && m.contains("party party-0") && m.contains("dealer main"), "{m}");
    hostile.abort();

    // A "dealer" whose certificate names a party is refused by the client.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let impostor = DealerServer::new(listener, fed.parties[1].clone(), DealerConfig::new(fed.names.clone()));
    assert!(impostor.unwrap_err().to_string().contains("not a dealer"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_job_draws_its_material_from_the_network_dealer() {
    let fed = federation(3);
    let mut cfg = config(&fed);
    cfg.limits.max_batch_items = 64; // several batches per layer
    let server = serve(&fed, cfg).await;
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(Arc::new(TcpListener::bind("127.0.0.1:0").await.unwrap()));
    }
    let local = LocalFederation {
        names: fed.names.clone(),
        listeners,
        identities: fed.parties.clone(),
        timeouts: Timeouts::default(),
        limits: Limits::default(),
        protocol: Default::default(),
    };
    let source = "
input x: fixed[] from each
let all = concat(x)
output mean = mean(all)
output variance = variance(all)
output dot = sum(x[party-0] * x[party-1])
output median = median(all)
";
    // `x[party-0] * x[party-1]` needs equal lengths; parties 0 and 1 bring 30 values.
    // The median sorts: a permutation step per party, each one batch of
    // 77 elements × 2 columns, larger than the 64 items per batch.
    let data = [sample(30, 1000.0, 11), sample(30, 1000.0, 12), sample(17, 1000.0, 13)];
    let circuit = Arc::new(compile(source, &fed.names).expect("compiles"));
    let consent = local.consent(source);
    let job = JobId::random();
    let meshes = local.meshes(job).await.unwrap();
    let mut tasks = Vec::new();
    for (me, mesh) in meshes.into_iter().enumerate() {
        let circuit = circuit.clone();
        let inputs = own_inputs(&circuit, &[("x", data[me].clone())]).unwrap();
        let identity = fed.parties[me].clone();
        let ep = server.endpoint();
        let names = fed.names.clone();
        tasks.push(tokio::spawn(async move {
            let provide =
                |plan: MaterialPlan| async move { draw(&identity, &ep, job, &names, &plan, &options()).await };
            let r = execute(&mesh, &circuit, &inputs, &ExecuteOptions::new(consent), provide).await;
            mesh.close().await;
            r
        }));
    }
    let all: Vec<f64> = data.concat();
    let mean = all.iter().sum::<f64>() / all.len() as f64;
    let var = all.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / all.len() as f64;
    let dot: f64 = data[0].iter().zip(&data[1]).map(|(a, b)| a * b).sum();
    let mut sorted = all.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    for t in tasks {
        let out = t.await.unwrap().expect("job succeeds");
        let got = |name| output(&out, name, 16).unwrap()[0];
        assert!((got("mean") - mean).abs() < 1e-3, "mean {} vs {mean}", got("mean"));
        assert!((got("variance") - var).abs() < 1.0, "variance {} vs {var}", got("variance"));
        assert!((got("dot") - dot).abs() < 1.0, "dot {} vs {dot}", got("dot"));
        assert!((got("median") - median).abs() < 1e-4, "median {} vs {median}", got("median"));
    }
    server.shutdown().await;
}

/// A fresh directory for one test's files.
fn temp_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("cohort-dealer-{tag}-{}-{}", std::process::id(), JobId::random()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cohort_dealer_binary_serves_and_stops_on_sigterm() {
    use std::io::BufRead;
    let fed = federation(2);
    let dir = temp_dir("bin");
    let (chain, key) = chain_and_key(&fed.dealer_ca, DEALER);
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let cert = write("dealer.pem", &chain);
    let key = write("dealer.key", &key);
    let ca0 = write("party-0-ca.pem", &fed.cas[0].cert_pem());
    let bundle = write("bundle.pem", &fed.cas[1].cert_pem());
    let bin = env!("CARGO_BIN_EXE_cohort-dealer");
    let mut child = std::process::Command::new(bin)
        .args(["--federation", FED, "--listen", "127.0.0.1:0", "--cert", &cert, "--key", &key])
        .args(["--peer-ca", &format!("party-0={ca0}"), "--trust", &bundle])
        .args(["--party", "party-0", "--party", "party-1"])
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let addr: SocketAddr = line.trim().strip_prefix("listening on ").expect("the listening line").parse().unwrap();
    let ep = DealerEndpoint { principal: DEALER.to_string(), addr };
    draw_and_check(&fed, &ep, &[0, 1], &plan()).await;
    draw_and_check(&fed, &ep, &[1, 0], &plan()).await;

    let status = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(exit.success(), "{exit:?}");
    let logs = logs.join().unwrap();
    assert!(logs.contains("job dealt") && logs.contains("shutting down"), "{logs}");
    // Logs name jobs and parties, never key material.
    assert!(!logs.contains("PRIVATE KEY"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A running `cohort-dealer` process of `fed`, with its stderr collected.
struct DealerProcess {
    child: std::process::Child,
    addr: SocketAddr,
    logs: std::thread::JoinHandle<String>,
}

impl DealerProcess {
    fn endpoint(&self) -> DealerEndpoint {
        DealerEndpoint { principal: DEALER.to_string(), addr: self.addr }
    }

    /// SIGTERM, wait for a clean exit, return the logs.
    async fn stop(self) -> String {
        let status = std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let mut child = self.child;
        let exit = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
        assert!(exit.success(), "{exit:?}");
        self.logs.join().unwrap()
    }
}

/// The dealer's files for `fed` in `dir`, and the arguments naming them.
fn dealer_args(fed: &Fed, dir: &std::path::Path) -> Vec<String> {
    let (chain, key) = chain_and_key(&fed.dealer_ca, DEALER);
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let mut args: Vec<String> = ["--federation", FED, "--listen", "127.0.0.1:0"].map(String::from).to_vec();
    args.extend(["--cert".into(), write("dealer.pem", &chain), "--key".into(), write("dealer.key", &key)]);
    for (name, ca) in fed.names.iter().zip(&fed.cas) {
        let path = write(&format!("{name}-ca.pem"), &ca.cert_pem());
        args.extend(["--party".into(), name.clone(), "--peer-ca".into(), format!("{name}={path}")]);
    }
    args
}

/// Start `cohort-dealer` with `args` and wait for its listening line.
async fn start_dealer(args: &[String]) -> DealerProcess {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cohort-dealer"))
        .args(args)
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let Some(addr) = line.trim().strip_prefix("listening on ") else {
        let _ = child.wait();
        panic!("no listening line; logs:\n{}", logs.join().unwrap());
    };
    DealerProcess { addr: addr.parse().unwrap(), child, logs }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_dealer_with_the_same_state_dir_refuses_a_job_it_served() {
    let fed = federation(2);
    let dir = temp_dir("journal");
    let state = dir.join("state");
    let mut args = dealer_args(&fed, &dir);
    args.extend(["--state-dir".into(), state.display().to_string()]);
    let plan = plan();
    let served = JobId::random();

    let dealer = start_dealer(&args).await;
    let sources: Vec<_> = draw_all(&fed, &dealer.endpoint(), served, &[0, 1], vec![plan.clone(); 2])
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let layers: Vec<_> = drain(sources, &plan).await.into_iter().map(Result::unwrap).collect();
    check_plan(&layers, &plan);
    let logs = dealer.stop().await;
    assert!(logs.contains("job dealt"), "{logs}");
    let journal = std::fs::read_to_string(state.join("served-jobs.journal")).unwrap();
    assert!(journal.contains(&served.to_string()), "{journal}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join("served-jobs.journal")), 0o600);
    }

    // A new process, the same state directory: the id stays refused, for
    // every party, and the reason names the job; a fresh id is dealt.
    let dealer = start_dealer(&args).await;
    for r in draw_all(&fed, &dealer.endpoint(), served, &[0, 1], vec![plan.clone(); 2]).await {
        assert!(matches!(&r, Err(PreprocessingError::Reused(_))), "{}", message(&r));
        let m = message(&r);
        assert!(m.contains(&format!("job {served}")) && m.contains("journal") && m.contains("never reused"), "{m}");
    }
    draw_and_check(&fed, &dealer.endpoint(), &[1, 0], &plan).await;
    dealer.stop().await;

    // Without the state directory the dealer forgets (the in-memory path).
    let memory_only: Vec<String> = args[..args.len() - 2].to_vec();
    let dealer = start_dealer(&memory_only).await;
    for r in draw_all(&fed, &dealer.endpoint(), served, &[0, 1], vec![plan.clone(); 2]).await {
        assert!(r.is_ok(), "{}", message(&r));
    }
    dealer.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_cohort_dealer_binary_refuses_a_corrupt_journal_naming_file_and_line() {
    let fed = federation(2);
    let dir = temp_dir("corrupt");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let journal = state.join("served-jobs.journal");
    std::fs::write(&journal, "cohort-dealer-journal 1\nnot a record\n").unwrap();
    let mut args = dealer_args(&fed, &dir);
    args.extend(["--state-dir".into(), state.display().to_string()]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cohort-dealer")).args(&args).output().unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "it never listened");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&journal.display().to_string()) && err.contains("line 2"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_cohort_dealer_binary_names_an_unreadable_file() {
    let dir = temp_dir("badcfg");
    let missing = dir.join("nope.pem").display().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cohort-dealer"))
        .args(["--federation", FED, "--listen", "127.0.0.1:0", "--cert", &missing, "--key", &missing])
        .args(["--trust", &missing, "--party", "a", "--party", "b"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot read the certificate file") && err.contains("nope.pem"), "{err}");
    assert!(out.stdout.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_party_that_stops_reading_fails_the_job_for_the_others() {
    let fed = federation(2);
    let mut cfg = config(&fed);
    cfg.timeouts.stall = Duration::from_millis(800);
    let server = serve(&fed, cfg).await;
    // The last party receives 8 bytes per triple: far more than the
    // buffers between the dealer and a party that never reads.
    let plan = MaterialPlan { layers: vec![Demand { triples: 4 << 20, div_pairs: vec![], ..Default::default() }] };
    let opts = DrawOptions { max_batch_items: 1 << 16, ..options() };
    let ep = server.endpoint();
    let job = JobId::random();
    let (a, b) = tokio::join!(
        draw(&fed.parties[0], &ep, job, &fed.names, &plan, &opts),
        draw(&fed.parties[1], &ep, job, &fed.names, &plan, &opts),
    );
    let (mut reader, _stalled) = (a.unwrap(), b.unwrap());
    let err = tokio::time::timeout(Duration::from_secs(30), reader.next_layer(0, &plan.layers[0]))
        .await
        .expect("the reading party is not held beyond the stall timeout")
        .unwrap_err();
    let m = err.to_string();
    assert!(m.contains("party party-1 did not read its material"), "{m}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_party_that_leaves_does_not_stop_the_others_streams() {
    let fed = federation(3);
    let server = serve(&fed, config(&fed)).await;
    let plan = MaterialPlan { layers: vec![Demand { triples: 1 << 20, div_pairs: vec![], ..Default::default() }] };
    let opts = DrawOptions { max_batch_items: 1 << 14, ..options() };
    let ep = server.endpoint();
    let job = JobId::random();
    let (a, b, c) = tokio::join!(
        draw(&fed.parties[0], &ep, job, &fed.names, &plan, &opts),
        draw(&fed.parties[1], &ep, job, &fed.names, &plan, &opts),
        draw(&fed.parties[2], &ep, job, &fed.names, &plan, &opts),
    );
    // party-2 leaves at once (its worker died); the others learn that from
    // their mesh, so their own material must keep coming.
    drop(c.expect("party-2 drew"));
    let (mut a, mut b) = (a.expect("party-0 drew"), b.expect("party-1 drew"));
    let (la, lb) = tokio::join!(a.next_layer(0, &plan.layers[0]), b.next_layer(0, &plan.layers[0]));
    let (la, lb) = (la.expect("party-0's material"), lb.expect("party-1's material"));
    assert_eq!(la.tag, lb.tag);
    assert_eq!(la.triples.a.len(), 1 << 20);
    server.shutdown().await;
}

/// A plan with the binary kinds of comparisons (issue 16): bit triples,
/// edaBits and daBits, mixed with arithmetic kinds and split across
/// batches of 300 items, dealt over mTLS to 2, 3 and 5 parties at once;
/// every layer reconstructs to its definitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn binary_kinds_are_dealt_over_the_network() {
    let fed = federation(5);
    let server = serve(&fed, config(&fed)).await;
    let endpoint = server.endpoint();
    let plan = MaterialPlan {
        layers: vec![
            Demand { triples: 100, div_pairs: vec![(1 << 16, 50)], edabits: 500, dabits: 100, ..Default::default() },
            Demand { bit_triple_words: 700, ..Default::default() },
            Demand::default(),
            Demand { triples: 3, bit_triple_words: 1, dabits: 301, ..Default::default() },
        ],
    };
    let jobs = [vec![0, 1], vec![2, 0, 4], vec![0, 1, 2, 3, 4]];
    let mut runs = Vec::new();
    for parties in &jobs {
        runs.push(draw_and_check(&fed, &endpoint, parties, &plan));
    }
    futures_join(runs).await;
    let metrics = server.metrics.render();
    // 10 parties over the three jobs, 1 + 700 words each.
    assert!(metrics.contains(&format!("kind=\"bit_triple\"}} {}", 10 * 64 * 701)), "{metrics}");
    assert!(metrics.contains(&format!("kind=\"edabit\"}} {}", 10 * 500)), "{metrics}");
    server.shutdown().await;
}

/// Rolling upgrades: a party of a build before the binary kinds speaks
/// protocol version 1 and reads only version-1 batches. This dealer still
/// serves it a plan without binary kinds in version 1, byte for byte the
/// old format (raw clients here play the old parties).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_old_party_speaking_version_1_still_draws_arithmetic_material() {
    use cohort_worker::preprocessing::dealer::{DealerBatch, WIRE_VERSION_ARITHMETIC};
    let fed = federation(2);
    let server = serve(&fed, config(&fed)).await;
    let job = JobId::random();
    let plan = plan();
    let old_party = |i: usize| {
        let (fed, plan) = (&fed, &plan);
        async move {
            let name = &fed.names[i];
            let mut s = raw_client(&fed.cas[i], name, server.addr).await;
            s.write_all(&request(job, name, &fed.names, plan)).await.unwrap();
            let mut preamble = [0u8; 5];
            s.read_exact(&mut preamble).await.unwrap();
            assert_eq!(&preamble, b"CHDR\x01", "answered in the version asked");
            let mut batches = Vec::new();
            loop {
                let mut head = [0u8; 5];
                s.read_exact(&mut head).await.unwrap();
                let mut body = vec![0u8; u32::from_le_bytes(head[1..5].try_into().unwrap()) as usize];
                s.read_exact(&mut body).await.unwrap();
                match head[0] {
                    1 => {}
                    2 => {
                        assert_eq!(body[4], WIRE_VERSION_ARITHMETIC, "an arithmetic batch in version 1");
                        batches.push(DealerBatch::from_bytes(&body).expect("a valid batch"));
                    }
                    3 => break,
                    other => panic!("frame kind {other}"),
                }
            }
            batches
        }
    };
    for batches in futures::future::join_all([old_party(0), old_party(1)]).await {
        // 1000 + 650 + 7 + 301 items in batches of at most 100.
        assert_eq!(batches.len(), 17 + 1 + 4);
    }
    server.shutdown().await;
}

/// Rolling upgrades, the other way: a worker with comparisons asks an old
/// dealer (version 1 only) in version 2. The old dealer refuses in its own
/// version; the worker reports the dealer's reason (an unsupported
/// version), not a garbled preamble. A version-1 READY to a version-2
/// request is malformed. (A stand-in plays the old dealer over real TLS.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_old_dealer_refusing_a_version_2_request_is_reported_with_its_reason() {
    use rustls::pki_types::pem::PemObject;
    let fed = federation(2);
    let (chain, key) = chain_and_key(&fed.dealer_ca, DEALER);
    let certs = CertificateDer::pem_slice_iter(chain.as_bytes()).collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let old_dealer = tokio::spawn(async move {
        for answer_ready in [false, true] {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut s = tokio_rustls::TlsAcceptor::from(cfg.clone()).accept(tcp).await.unwrap();
            let mut head = [0u8; 9];
            s.read_exact(&mut head).await.unwrap();
            assert_eq!(&head[..5], b"CHDQ\x02", "a plan with binary kinds is asked in version 2");
            let mut out = b"CHDR\x01".to_vec();
            if answer_ready {
                out.push(1);
                out.extend_from_slice(&16u32.to_le_bytes());
                out.extend_from_slice(&1u64.to_le_bytes());
                out.extend_from_slice(&100u64.to_le_bytes());
            } else {
                let reason = b"malformed request from party party-0: unsupported dealer protocol version 2";
                out.push(4);
                out.extend_from_slice(&(1 + reason.len() as u32).to_le_bytes());
                out.push(1);
                out.extend_from_slice(reason);
            }
            s.write_all(&out).await.unwrap();
            s.flush().await.unwrap();
            let _ = s.shutdown().await;
        }
    });
    let ep = DealerEndpoint { principal: DEALER.to_string(), addr };
    let plan = MaterialPlan { layers: vec![Demand { bit_triple_words: 2, ..Default::default() }] };
    let refused = draw(&fed.parties[0], &ep, JobId::random(), &fed.names, &plan, &options()).await;
    let m = message(&refused);
    assert!(m.contains("unsupported dealer protocol version 2") && m.contains("party party-0"), "{m}");
    let garbled = draw(&fed.parties[0], &ep, JobId::random(), &fed.names, &plan, &options()).await;
    assert!(matches!(garbled, Err(PreprocessingError::Malformed(_))), "{}", message(&garbled));
    assert!(message(&garbled).contains("answered in protocol version 1, asked in 2"));
    old_dealer.await.unwrap();
}
