//! The party side of the `cohort-dealer` service: [`draw`] dials the dealer
//! (a TRUSTED THIRD PARTY), authenticates it as the expected `dealer/<name>`
//! principal, asks for this party's stream of one job, and returns a
//! [`DealerSource`] fed by a reader task. Protocol: see [`super::service`].

use super::service::{FRAME_HEADER, FailureCode, MAX_REASON_BYTES, RESPONSE_MAGIC, Reader, Request, kind};
use super::{DealerBatch, DealerSource, MAX_BATCH_ITEMS, MAX_DIVISOR_GROUPS, WIRE_HEADER_BYTES};
use crate::preprocessing::{MaterialPlan, PreprocessingError};
use crate::prg::SEED_BYTES;
use crate::transport::tls::ReportSlot;
use crate::transport::{JobId, TlsIdentity, describe};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout, timeout_at};
use tokio_rustls::TlsConnector;
use tracing::{debug, info};
use zeroize::Zeroizing;

/// Where the dealer is and who it must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DealerEndpoint {
    /// The dealer's principal, `dealer/<name>`: its certificate must name
    /// exactly this.
    pub principal: String,
    pub addr: SocketAddr,
}

/// How a party draws its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrawOptions {
    /// Keep retrying refused connections until this long has passed
    /// (default 30 s).
    pub connect: Duration,
    /// How long to wait for the other parties' requests, i.e. for the
    /// dealer's go (default 90 s; keep it above the dealer's gather
    /// timeout so the dealer's reason arrives first).
    pub ready: Duration,
    /// Longest the stream may go silent while this party waits for a batch
    /// (default 150 s; keep it above the dealer's stall timeout).
    pub idle: Duration,
    /// Largest batch this party accepts, in items (default 65536); bounds
    /// the size of every frame it reads.
    pub max_batch_items: usize,
    /// Batches buffered ahead of the online phase (default 4).
    pub capacity: usize,
}

impl Default for DrawOptions {
    fn default() -> Self {
        DrawOptions {
            connect: Duration::from_secs(30),
            ready: Duration::from_secs(90),
            idle: Duration::from_secs(150),
            max_batch_items: 1 << 16,
            capacity: 4,
        }
    }
}

/// The largest batch frame for batches of at most `items` items and at most
/// `groups` divisor groups (the last party's batch, with corrections, and
/// the 24 bytes of binary counts of a version-2 batch).
pub fn max_batch_frame(items: usize, groups: usize) -> usize {
    WIRE_HEADER_BYTES + 16 * groups.min(MAX_DIVISOR_GROUPS) + 24 + SEED_BYTES + 16 * items.min(MAX_BATCH_ITEMS)
}

/// Names this party's failures: the dealer, the job and the party.
#[derive(Clone)]
struct Context {
    label: String,
}

impl Context {
    fn msg(&self, what: impl std::fmt::Display) -> String {
        format!("{}: {what}", self.label)
    }
    fn exhausted(&self, what: impl std::fmt::Display) -> PreprocessingError {
        PreprocessingError::Exhausted(self.msg(what))
    }
    fn malformed(&self, what: impl std::fmt::Display) -> PreprocessingError {
        PreprocessingError::Malformed(self.msg(what))
    }
    fn failure(&self, code: Option<FailureCode>, reason: &str) -> PreprocessingError {
        let text = self.msg(format!("the trusted dealer reports: {reason}"));
        match code {
            Some(FailureCode::Mismatch) => PreprocessingError::Mismatch(text),
            Some(FailureCode::Reused) => PreprocessingError::Reused(text),
            _ => PreprocessingError::Exhausted(text),
        }
    }
}

/// Draw this party's stream of material for `job` from the trusted dealer
/// (a TRUSTED THIRD PARTY that learns all the material it deals).
///
/// `identity` is this party's TLS identity (its principal is the party
/// name, which must be in `parties`, the job's ordered party list) and must
/// trust a CA for `dealer.principal`. `plan` is the job's material plan;
/// every party must present the same `parties` and `plan`, or the dealer
/// refuses the job for all of them.
///
/// Dials the dealer (retrying refusals until `options.connect`), checks
/// that its certificate names `dealer.principal`, sends the request, and
/// waits (up to `options.ready`) for the dealer's go, which comes once
/// every party has asked. Then returns a [`DealerSource`] fed by a reader
/// task; must be called within a Tokio runtime. Errors name the dealer, the
/// job and the party: a refusal carries the dealer's reason
/// ([`PreprocessingError::Mismatch`] when parties disagree,
/// [`PreprocessingError::Reused`] for a reused job id,
/// [`PreprocessingError::Exhausted`] otherwise). Errors after the go
/// (dealer failure, disconnect, malformed or oversized frame, silence
/// beyond `options.idle`) are delivered through the source.
pub async fn draw(
    identity: &TlsIdentity,
    dealer: &DealerEndpoint,
    job: JobId,
    parties: &[String],
    plan: &MaterialPlan,
    options: &DrawOptions,
) -> Result<DealerSource, PreprocessingError> {
    let party = identity.party().to_string();
    let cx = Context {
        label: format!("trusted dealer {} at {}, job {job}, party {party}", describe(&dealer.principal), dealer.addr),
    };
    let Some(index) = parties.iter().position(|p| *p == party) else {
        return Err(PreprocessingError::Mismatch(cx.msg("this party is not in the job's party list")));
    };
    let max_batch_items = options.max_batch_items.clamp(1, MAX_BATCH_ITEMS);
    let request = Request { job, party, parties: parties.to_vec(), max_batch_items, plan: plan.clone() };
    // The dealer answers in the version it was asked in.
    let version = request.version();
    let request =
        request.encode().map_err(|e| PreprocessingError::Mismatch(cx.msg(format!("invalid request: {e}"))))?;
    let max_groups = plan.layers.iter().map(|l| l.div_pairs.len()).max().unwrap_or(0);
    // A permutation step is one batch whatever the batch size: the
    // permuter's `Δ` (and 20 bytes of shape) for the plan's largest.
    let max_permutation = plan.layers.iter().filter_map(|l| l.permutation).map(|p| p.elements()).max().unwrap_or(0);
    let permutation_frame = WIRE_HEADER_BYTES + 20 + SEED_BYTES + 8 * max_permutation.min(MAX_BATCH_ITEMS);
    let max_frame = max_batch_frame(max_batch_items, max_groups).max(permutation_frame);

    let mut stream = connect(identity, dealer, &cx, options.connect).await?;
    match timeout(options.connect, stream.write_all(&request)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(cx.exhausted(format!("sending the request failed: {e}"))),
        Err(_) => return Err(cx.exhausted("sending the request timed out")),
    }
    let _ = stream.flush().await;

    let first = timeout(options.ready, async {
        let mut preamble = [0u8; 5];
        stream.read_exact(&mut preamble).await.map_err(|e| read_error(&cx, e))?;
        if preamble[..4] != RESPONSE_MAGIC {
            return Err(cx.malformed("the dealer's response has a bad magic"));
        }
        // An older dealer refuses a newer request in its own version: its
        // FAILURE frame (same layout in every version) carries the reason.
        let answered = preamble[4];
        let frame = read_frame(&mut stream, max_frame, &cx).await?;
        if answered != version && !matches!(frame, Incoming::Failure(..)) {
            return Err(cx.malformed(format!("the dealer answered in protocol version {answered}, asked in {version}")));
        }
        Ok(frame)
    })
    .await;
    let (batches, batch_items) = match first {
        Err(_) => {
            return Err(
                cx.exhausted(format!("no go from the dealer within {:?} (are all parties asking?)", options.ready))
            );
        }
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Incoming::Failure(code, reason))) => return Err(cx.failure(code, &reason)),
        Ok(Ok(Incoming::Ready { batches, batch_items })) => (batches, batch_items),
        Ok(Ok(_)) => return Err(cx.malformed("the dealer's first frame is not READY or FAILURE")),
    };
    if batch_items == 0 || batch_items > max_batch_items as u64 {
        return Err(
            cx.malformed(format!("the dealer announced batches of {batch_items} items, above our {max_batch_items}"))
        );
    }
    info!(job = %job, party = %parties[index], batches, batch_items, "drawing material from the trusted dealer");
    let (tx, source) = DealerSource::channel(index, parties.len(), options.capacity);
    let idle = options.idle;
    tokio::spawn(async move {
        if let Err(e) = read_stream(&mut stream, &tx, batches, max_frame, idle, &cx).await {
            debug!(job = %job, error = %e, "material stream from the trusted dealer stopped");
            let _ = tx.send(Err(e)).await;
        }
        let _ = timeout(Duration::from_secs(2), stream.shutdown()).await;
    });
    Ok(source)
}

type ClientStream = tokio_rustls::client::TlsStream<TcpStream>;

/// Dial until connected, or until a certificate problem or the deadline.
async fn connect(
    identity: &TlsIdentity,
    dealer: &DealerEndpoint,
    cx: &Context,
    limit: Duration,
) -> Result<ClientStream, PreprocessingError> {
    let deadline = Instant::now() + limit;
    let mut backoff = Duration::from_millis(20);
    let mut last = String::from("no attempt finished");
    loop {
        let report = ReportSlot::default();
        let config = identity
            .client_config(&dealer.principal, report.clone())
            .map_err(|e| cx.exhausted(format!("TLS setup: {e}")))?;
        let attempt = timeout_at(deadline, async {
            let tcp = TcpStream::connect(dealer.addr).await?;
            let _ = tcp.set_nodelay(true);
            TlsConnector::from(config)
                .connect(rustls::pki_types::ServerName::IpAddress(dealer.addr.ip().into()), tcp)
                .await
        })
        .await;
        match attempt {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => {
                let failure = report.lock().ok().and_then(|mut r| r.failure.take());
                if let Some(f) = failure {
                    return Err(cx.exhausted(format!("refused the dealer's certificate: {f}")));
                }
                if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) {
                    return Err(cx.exhausted(format!("TLS handshake failed: {e}")));
                }
                last = e.to_string();
                debug!(dealer = %dealer.addr, error = %e, "dial attempt failed; retrying");
            }
            Err(_) => {}
        }
        if Instant::now() + backoff >= deadline {
            return Err(cx.exhausted(format!("could not connect within {limit:?} (last error: {last})")));
        }
        sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

enum Incoming {
    Ready { batches: u64, batch_items: u64 },
    Batch(Zeroizing<Vec<u8>>),
    End(u64),
    Failure(Option<FailureCode>, String),
}

fn read_error(cx: &Context, e: std::io::Error) -> PreprocessingError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        cx.exhausted("the dealer closed the connection")
    } else {
        cx.exhausted(format!("reading from the dealer failed: {e}"))
    }
}

/// Read one frame; the length is checked against its kind's bound before
/// the body is allocated.
async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max_batch: usize,
    cx: &Context,
) -> Result<Incoming, PreprocessingError> {
    let mut header = [0u8; FRAME_HEADER];
    r.read_exact(&mut header).await.map_err(|e| read_error(cx, e))?;
    let k = header[0];
    let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]) as usize;
    let limit = match k {
        kind::READY => 16,
        kind::BATCH => max_batch,
        kind::END => 8,
        kind::FAILURE => 1 + MAX_REASON_BYTES,
        other => return Err(cx.malformed(format!("unknown frame kind {other}"))),
    };
    if len > limit {
        return Err(cx.malformed(format!("a frame of kind {k} claims {len} bytes, at most {limit} allowed")));
    }
    let mut body = Zeroizing::new(vec![0u8; len]);
    r.read_exact(&mut body).await.map_err(|e| read_error(cx, e))?;
    let mut rd = Reader { bytes: &body, pos: 0 };
    let bad = |what: &str| cx.malformed(format!("malformed frame: {what}"));
    Ok(match k {
        kind::READY if len == 16 => {
            Incoming::Ready { batches: rd.u64().map_err(|e| bad(&e))?, batch_items: rd.u64().map_err(|e| bad(&e))? }
        }
        kind::END if len == 8 => Incoming::End(rd.u64().map_err(|e| bad(&e))?),
        kind::FAILURE if len >= 1 => {
            let code = FailureCode::from_u8(body[0]);
            Incoming::Failure(code, String::from_utf8_lossy(&body[1..]).into_owned())
        }
        kind::BATCH => Incoming::Batch(body),
        _ => return Err(bad("wrong length for its kind")),
    })
}

/// Feed the source until the end marker, a failure, or the source is
/// dropped. `Err` is what the source should see.
async fn read_stream(
    stream: &mut ClientStream,
    tx: &super::BatchSender,
    announced: u64,
    max_frame: usize,
    idle: Duration,
    cx: &Context,
) -> Result<(), PreprocessingError> {
    let mut received = 0u64;
    loop {
        let frame = match timeout(idle, read_frame(stream, max_frame, cx)).await {
            Ok(f) => f?,
            Err(_) => return Err(cx.exhausted(format!("the dealer sent nothing for {idle:?}"))),
        };
        match frame {
            Incoming::Batch(bytes) => {
                if received == announced {
                    return Err(cx.malformed(format!("more batches than the {announced} announced")));
                }
                let batch = DealerBatch::from_bytes(&bytes)
                    .map_err(|e| cx.malformed(format!("batch {} of {announced}: {e}", received + 1)))?;
                drop(bytes);
                received += 1;
                if tx.send(Ok(batch)).await.is_err() {
                    // The party dropped its source: nothing more to do.
                    return Ok(());
                }
            }
            Incoming::End(n) => {
                if n != received || received != announced {
                    return Err(cx.malformed(format!(
                        "the stream ended after {received} of {announced} batches (the dealer counts {n})"
                    )));
                }
                return Ok(());
            }
            Incoming::Failure(code, reason) => return Err(cx.failure(code, &reason)),
            Incoming::Ready { .. } => return Err(cx.malformed("a second READY frame")),
        }
    }
}
