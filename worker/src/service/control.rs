//! The control API: HTTP/1.1 with JSON bodies (see [`super::api`]) over
//! mutual TLS 1.3. The server accepts exactly one client principal, the
//! configured controller (`controller/<name>`, trusted through its own CA);
//! [`ControlClient`] is that controller's side (used by `cohort run` and the
//! operator).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::info;

use super::api::{ApiError, FillRequest, FillStatus, Health, JobRequest, JobStatus, PoolStatus};
use super::jobs::{Jobs, SubmitError};
use super::listen::ConnectionCap;
use crate::transport::tls::ReportSlot;
use crate::transport::{SharedIdentity, TlsIdentity, TransportError, TransportErrorKind};

/// Time a client has to finish its TLS handshake (after its first byte,
/// which must come within [`super::listen::FIRST_BYTE_TIMEOUT`]), and then
/// to send its request's headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on one control connection (one request: no keep-alive).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(300);
/// Request bodies read at once: with `limits.maxRequestBytes` this bounds
/// the memory the API spends on bodies.
const BODIES_AT_ONCE: usize = 4;

type Body = Full<Bytes>;

/// What the control server needs.
pub(crate) struct ControlServer {
    pub(crate) identity: SharedIdentity,
    pub(crate) controller: String,
    pub(crate) jobs: Arc<Jobs>,
    pub(crate) max_request_bytes: usize,
    pub(crate) health: Arc<dyn Fn() -> Health + Send + Sync>,
    /// `limits.maxControlConnections`.
    pub(crate) connections: Arc<ConnectionCap>,
    /// Request bodies being read, at most [`BODIES_AT_ONCE`].
    pub(crate) bodies: Arc<tokio::sync::Semaphore>,
}

impl ControlServer {
    /// The semaphore of [`ControlServer::bodies`].
    pub(crate) fn body_readers() -> Arc<tokio::sync::Semaphore> {
        Arc::new(tokio::sync::Semaphore::new(BODIES_AT_ONCE))
    }

    /// Serve the control API on `listener` until the task is dropped.
    pub(crate) async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((tcp, peer)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let Some(permit) = self.connections.admit() else { continue };
            let server = self.clone();
            tokio::spawn(async move {
                let _permit = permit;
                if !super::listen::first_byte(&tcp, super::listen::FIRST_BYTE_TIMEOUT).await {
                    return;
                }
                let _ = tcp.set_nodelay(true);
                let report = ReportSlot::default();
                let config = match server
                    .identity
                    .current()
                    .server_config(std::slice::from_ref(&server.controller), report.clone())
                {
                    Ok(c) => c,
                    Err(e) => return info!(error = %e, "control API: TLS setup failed"),
                };
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(config).accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        let why = report.lock().ok().and_then(|mut r| r.failure.take());
                        return match why {
                            Some(f) => info!(%peer, reason = %f, "control API: refused a client"),
                            None => info!(%peer, error = %e, "control API: TLS handshake failed"),
                        };
                    }
                    Err(_) => return info!(%peer, "control API: TLS handshake timed out"),
                };
                let service = hyper::service::service_fn(move |req| {
                    let server = server.clone();
                    async move { Ok::<_, std::convert::Infallible>(server.handle(req).await) }
                });
                // One request per connection (the client opens one per
                // call): an idle keep-alive connection would hold a slot.
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HANDSHAKE_TIMEOUT)
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(tls), service);
                let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
            });
        }
    }

    /// A request's body, bounded by `limits.maxRequestBytes`.
    async fn body(&self, req: Request<hyper::body::Incoming>) -> Result<Bytes, Response<Body>> {
        let Ok(_reading) = self.bodies.acquire().await else {
            return Err(error(StatusCode::SERVICE_UNAVAILABLE, "the worker is stopping".into()));
        };
        match Limited::new(req.into_body(), self.max_request_bytes).collect().await {
            Ok(b) => Ok(b.to_bytes()),
            Err(_) => Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is unreadable or larger than {} bytes", self.max_request_bytes),
            )),
        }
    }

    async fn handle(&self, req: Request<hyper::body::Incoming>) -> Response<Body> {
        // The controller's trace context (bounded, validated; else none).
        let parent = crate::telemetry::remote_parent(req.headers());
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (&method, segments.as_slice()) {
            (&Method::POST, ["v1", "jobs"]) => {
                let body = match self.body(req).await {
                    Ok(b) => b,
                    Err(response) => return response,
                };
                // serde_json's messages can quote the offending value (an
                // input): report only its position and category.
                let request: JobRequest = match serde_json::from_slice(&body) {
                    Ok(r) => r,
                    Err(e) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            format!("invalid job request: {}", super::api::redacted_json_error(&e)),
                        );
                    }
                };
                admitted(self.jobs.submit(request, parent))
            }
            (&Method::POST, ["v1", "pool", "fills"]) => {
                let body = match self.body(req).await {
                    Ok(b) => b,
                    Err(response) => return response,
                };
                // A fill request holds no secret; the error may quote it.
                match serde_json::from_slice::<FillRequest>(&body) {
                    Ok(request) => admitted(self.jobs.submit_fill(request)),
                    Err(e) => error(StatusCode::BAD_REQUEST, format!("invalid fill request: {e}")),
                }
            }
            (&Method::GET, ["v1", "pool", "fills", id]) => match self.jobs.pool().and_then(|p| p.fill_status(id)) {
                Some(status) => json(StatusCode::OK, &status),
                None => error(StatusCode::NOT_FOUND, format!("no fill {id}")),
            },
            (&Method::GET, ["v1", "pool"]) => match self.jobs.pool() {
                Some(pool) => json(StatusCode::OK, &pool.status()),
                None => error(StatusCode::NOT_FOUND, "this worker has no pool configured".into()),
            },
            (&Method::GET, ["v1", "jobs", id]) => match self.jobs.status(id) {
                Some(status) => json(StatusCode::OK, &status),
                None => error(StatusCode::NOT_FOUND, format!("no job {id}")),
            },
            (&Method::DELETE, ["v1", "jobs", id]) => match self.jobs.cancel(id) {
                Some(status) => json(StatusCode::OK, &status),
                None => error(StatusCode::NOT_FOUND, format!("no job {id}")),
            },
            (&Method::GET, ["v1", "health"]) => json(StatusCode::OK, &(self.health)()),
            (&Method::POST, ["v1", "drain"]) => {
                self.jobs.drain();
                info!("draining: no new jobs are admitted");
                json(StatusCode::OK, &(self.health)())
            }
            _ => error(StatusCode::NOT_FOUND, format!("no endpoint {method} {path}")),
        }
    }
}

/// Serialize `value` as the reply.
fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => reply(status, body),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the reply: {e}")),
    }
}

/// The answer to a submission: 201 when new, 200 when it existed.
fn admitted<T: Serialize>(result: Result<(T, bool), SubmitError>) -> Response<Body> {
    match result {
        Ok((status, true)) => json(StatusCode::CREATED, &status),
        Ok((status, false)) => json(StatusCode::OK, &status),
        Err(e @ SubmitError::Invalid(_)) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e @ SubmitError::Conflict(_)) => error(StatusCode::CONFLICT, e.to_string()),
        Err(e @ SubmitError::Draining) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e @ (SubmitError::Busy(_) | SubmitError::FillRunning(_))) => {
            error(StatusCode::TOO_MANY_REQUESTS, e.to_string())
        }
        Err(e @ SubmitError::Storage(_)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn error(status: StatusCode, message: String) -> Response<Body> {
    let body = serde_json::to_vec(&ApiError { error: message }).unwrap_or_default();
    reply(status, body)
}

fn reply(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    response
}

/// The health document of a worker.
pub(crate) fn health(
    identity: &TlsIdentity,
    protocol: crate::protocol::ProtocolName,
    versions: (u32, u32),
    jobs: &Jobs,
    expires_in: f64,
    peers: Vec<super::api::PeerHealth>,
) -> Health {
    let (draining, active_jobs) = jobs.load();
    Health {
        party: identity.party().to_string(),
        federation: identity.federation().to_string(),
        status: if draining { "draining" } else { "ok" }.into(),
        draining,
        active_jobs,
        protocol: protocol.as_str().into(),
        min_version: versions.0,
        max_version: versions.1,
        certificate_expires_in_seconds: expires_in,
        peers,
    }
}

/// A control API call that failed: which worker, and why.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("worker of {worker} at {endpoint}: {reason}")]
    Connect { worker: String, endpoint: String, reason: String },
    #[error("worker of {worker}: {source}")]
    Tls { worker: String, source: TransportError },
    #[error("worker of {worker} answered {status}: {message}")]
    Api { worker: String, status: u16, message: String },
    #[error("worker of {worker}: {reason}")]
    Protocol { worker: String, reason: String },
}

impl ControlError {
    /// The HTTP status of an API refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            ControlError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the connection failed before any request was sent (refused,
    /// or closed by the worker before or during the TLS handshake, as at
    /// its connection cap); not a refused certificate.
    fn is_connection_closed(&self) -> bool {
        match self {
            ControlError::Connect { .. } => true,
            ControlError::Tls { source, .. } => {
                matches!(source.kind, TransportErrorKind::Disconnected | TransportErrorKind::Io(_))
            }
            _ => false,
        }
    }

    /// Whether the worker refused for capacity (429): resubmit the same
    /// request later.
    pub fn is_busy(&self) -> bool {
        self.status() == Some(429)
    }
}

/// Attempts of one control call whose connection is closed before the
/// request (see [`ControlError::is_connection_closed`]).
const CONNECT_ATTEMPTS: usize = 6;

/// The first pause of the retry path, and its cap.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Sleep a random time of up to `backoff` (full jitter: controllers that
/// were refused together do not come back together), and return the next
/// backoff.
async fn retry_pause(backoff: Duration) -> Duration {
    let mut bytes = [0u8; 4];
    let fraction = match getrandom::fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX),
        Err(_) => 0.5,
    };
    tokio::time::sleep(backoff.mul_f64(fraction.max(0.1))).await;
    (backoff * 2).min(RETRY_MAX)
}

/// The controller's client for one worker.
#[derive(Clone)]
pub struct ControlClient {
    identity: SharedIdentity,
    endpoint: String,
    party: String,
    timeout: Duration,
}

impl ControlClient {
    /// A client of the worker of `party` at `endpoint` (`host:port`),
    /// authenticating as `identity` (a controller principal) and accepting
    /// only a certificate for `party`. A [`SharedIdentity`] may be replaced
    /// (renewed certificate, new trust) between calls.
    pub fn new(
        identity: impl Into<SharedIdentity>,
        endpoint: impl Into<String>,
        party: impl Into<String>,
    ) -> ControlClient {
        ControlClient {
            identity: identity.into(),
            endpoint: endpoint.into(),
            party: party.into(),
            timeout: Duration::from_secs(30),
        }
    }

    /// Submit a job (idempotent for the same id, program and parties).
    pub async fn submit(&self, request: &JobRequest) -> Result<JobStatus, ControlError> {
        let body = serde_json::to_vec(request).map_err(|e| self.protocol(format!("cannot encode the request: {e}")))?;
        self.call(Method::POST, "/v1/jobs", Some(body)).await
    }

    pub async fn status(&self, id: &str) -> Result<JobStatus, ControlError> {
        self.call(Method::GET, &format!("/v1/jobs/{id}"), None).await
    }

    pub async fn cancel(&self, id: &str) -> Result<JobStatus, ControlError> {
        self.call(Method::DELETE, &format!("/v1/jobs/{id}"), None).await
    }

    pub async fn health(&self) -> Result<Health, ControlError> {
        self.call(Method::GET, "/v1/health", None).await
    }

    pub async fn drain(&self) -> Result<Health, ControlError> {
        self.call(Method::POST, "/v1/drain", None).await
    }

    /// Start a fill of the worker's pool (idempotent for the same request).
    pub async fn fill(&self, request: &FillRequest) -> Result<FillStatus, ControlError> {
        let body = serde_json::to_vec(request).map_err(|e| self.protocol(format!("cannot encode the request: {e}")))?;
        self.call(Method::POST, "/v1/pool/fills", Some(body)).await
    }

    pub async fn fill_status(&self, id: &str) -> Result<FillStatus, ControlError> {
        self.call(Method::GET, &format!("/v1/pool/fills/{id}"), None).await
    }

    /// What the worker's pool holds.
    pub async fn pool(&self) -> Result<PoolStatus, ControlError> {
        self.call(Method::GET, "/v1/pool", None).await
    }

    /// Submit `request` and follow it to its end through the documented
    /// retry path (`docs/worker.md`, "Admission and retries"): a
    /// submission refused for capacity (429), or a job that failed
    /// [retryable](JobStatus::is_retryable) because some party had no free
    /// slot, is resubmitted under the same id after a growing, jittered
    /// backoff, until `until`. Polls every `every`. The final status, or
    /// the last refusal once `until` has passed.
    pub async fn run_retrying(
        &self,
        request: &JobRequest,
        every: Duration,
        until: std::time::Instant,
    ) -> Result<JobStatus, ControlError> {
        let mut backoff = RETRY_FIRST;
        loop {
            let status = match self.submit(request).await {
                Ok(status) if status.phase.is_final() => status,
                Ok(_) => self.wait(&request.id, every).await?,
                Err(e) if e.is_busy() && std::time::Instant::now() < until => {
                    backoff = retry_pause(backoff).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if !status.is_retryable() || std::time::Instant::now() >= until {
                return Ok(status);
            }
            backoff = retry_pause(backoff).await;
        }
    }

    /// Poll a job every `every` until it has finished.
    pub async fn wait(&self, id: &str, every: Duration) -> Result<JobStatus, ControlError> {
        loop {
            let status = self.status(id).await?;
            if status.phase.is_final() {
                return Ok(status);
            }
            tokio::time::sleep(every).await;
        }
    }

    fn protocol(&self, reason: String) -> ControlError {
        ControlError::Protocol { worker: self.party.clone(), reason }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ControlError> {
        let attempts = async {
            // A worker at its connection cap closes new connections at
            // once: try again shortly (every call is idempotent).
            let mut backoff = RETRY_FIRST;
            for _ in 1..CONNECT_ATTEMPTS {
                match self.call_inner(method.clone(), path, body.clone()).await {
                    Err(e) if e.is_connection_closed() => backoff = retry_pause(backoff).await,
                    result => return result,
                }
            }
            self.call_inner(method, path, body).await
        };
        match tokio::time::timeout(self.timeout, attempts).await {
            Ok(result) => result,
            Err(_) => Err(self.protocol(format!("no answer within {:?}", self.timeout))),
        }
    }

    async fn call_inner<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ControlError> {
        let connect = |reason: String| ControlError::Connect {
            worker: self.party.clone(),
            endpoint: self.endpoint.clone(),
            reason,
        };
        let tcp = TcpStream::connect(&self.endpoint).await.map_err(|e| connect(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let report = ReportSlot::default();
        let tls_err = |source: TransportError| ControlError::Tls { worker: self.party.clone(), source };
        let config = self.identity.current().client_config(&self.party, report.clone()).map_err(tls_err)?;
        let server_name =
            rustls::pki_types::ServerName::IpAddress(tcp.peer_addr().map_err(|e| connect(e.to_string()))?.ip().into());
        let tls = TlsConnector::from(config).connect(server_name, tcp).await.map_err(|e| {
            let failure = report.lock().ok().and_then(|mut r| r.failure.take());
            let kind = match failure {
                Some(f) => TransportErrorKind::Tls(f),
                None => TransportErrorKind::from_io(e),
            };
            tls_err(TransportError::new(Some(&self.party), crate::transport::Step::Handshake, kind))
        })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| self.protocol(format!("HTTP handshake failed: {e}")))?;
        let driver = tokio::spawn(conn);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, self.party.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| self.protocol(format!("cannot build the request: {e}")))?;
        // The caller's span (e.g. the operator's dispatch) becomes the
        // parent of the worker's job span.
        crate::telemetry::inject_traceparent(request.headers_mut());
        let response = sender.send_request(request).await.map_err(|e| {
            // A refused client certificate shows up as a failed request.
            self.protocol(format!("request failed (is this client the worker's configured controller?): {e}"))
        })?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| self.protocol(format!("reading the reply failed: {e}")))?
            .to_bytes();
        driver.abort();
        if !status.is_success() {
            let message = serde_json::from_slice::<ApiError>(&bytes)
                .map(|e| e.error)
                // Never echo an unparseable body: it is not ours to quote.
                .unwrap_or_else(|_| format!("an error reply that is not the control API's ({} bytes)", bytes.len()));
            return Err(ControlError::Api { worker: self.party.clone(), status: status.as_u16(), message });
        }
        // serde's message can quote a value (an output): report the position only.
        serde_json::from_slice(&bytes)
            .map_err(|e| self.protocol(format!("malformed reply: {}", super::api::redacted_json_error(&e))))
    }
}
