//! Logs and traces of Cohort's processes (`cohort-worker`, `cohort-dealer`,
//! `cohort-operator`).
//!
//! Logs go to stderr through `tracing_subscriber`'s fmt layer (`RUST_LOG`),
//! coloured only when stderr is a terminal.
//! Traces are exported over OTLP only when the standard variables ask for
//! it: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`
//! set, and `OTEL_TRACES_EXPORTER` not `none` (nor `OTEL_SDK_DISABLED=true`).
//! Otherwise no exporter, no tracer provider and no background thread exist;
//! spans cost what `tracing` spans cost.
//!
//! **Transport.** OTLP over HTTP with protobuf bodies
//! (`OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`, the default), sent by a
//! small hyper client over rustls with the `ring` provider: no gRPC, no
//! reqwest, no OpenSSL or aws-lc. An `https` endpoint is trusted through
//! `OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE` or `OTEL_EXPORTER_OTLP_CERTIFICATE`
//! (a PEM CA bundle). Any other protocol is refused at start.
//!
//! **What is exported.** Only spans (never log events) from Cohort's own
//! crates at `info` or above, whatever `RUST_LOG` says. Their fields are
//! chosen to be public: ids, names, counts, sizes; never a value, share,
//! key or seed.
//!
//! **Context propagation.** A controller sends its current span's W3C
//! `traceparent` with control API requests ([`inject_traceparent`]); the
//! worker parents a job's root span on it ([`remote_parent`]).

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::HeaderMap;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::WithHttpConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tokio::net::TcpStream;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The longest `traceparent` accepted from a peer (version 00 is 55
/// characters; later versions may append fields).
pub const MAX_TRACEPARENT_LEN: usize = 256;
/// The longest `tracestate` accepted (the W3C limit is 512 characters);
/// a longer one is dropped, the `traceparent` still used.
pub const MAX_TRACESTATE_LEN: usize = 512;

/// Largest reply body read from a collector.
const MAX_REPLY_BYTES: usize = 1 << 20;
/// Bound on one export request (connect, TLS, request, reply).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why telemetry could not be set up. The process should not start: a
/// configuration that asks for traces and cannot get them is a mistake to
/// surface, not to ignore.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(
        "{var}={value:?}: this build exports OTLP traces over HTTP only; the supported protocol is http/protobuf (unset the variable or set it to http/protobuf)"
    )]
    UnsupportedProtocol { var: &'static str, value: String },
    #[error("OTEL_TRACES_EXPORTER={0:?}: supported values are otlp and none")]
    UnsupportedExporter(String),
    #[error("{var}={value:?}: {reason}")]
    Endpoint { var: &'static str, value: String, reason: String },
    #[error("{var}={path}: {reason}")]
    Certificate { var: &'static str, path: PathBuf, reason: String },
    #[error("cannot build the OTLP trace exporter: {0}")]
    Exporter(String),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInitialized,
}

/// What a process says about itself when it sets up telemetry.
#[derive(Clone, Debug)]
pub struct Options {
    /// `service.name` when `OTEL_SERVICE_NAME` (and `service.name` in
    /// `OTEL_RESOURCE_ATTRIBUTES`) are unset, e.g. `cohort-worker`.
    pub service_name: &'static str,
    /// The log filter when `RUST_LOG` is unset.
    pub default_log_filter: &'static str,
    /// Log lines as JSON objects.
    pub log_json: bool,
}

/// The OTLP exporter's settings, from the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpConfig {
    /// The endpoint variable that is set (the exporter resolves the URL).
    pub endpoint_var: &'static str,
    pub endpoint: String,
    /// The CA bundle for an `https` endpoint.
    pub certificate: Option<(&'static str, PathBuf)>,
}

impl OtlpConfig {
    /// Whether (and how) traces are exported, from the variables `env`
    /// returns. `Ok(None)`: tracing export is off.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Option<OtlpConfig>, TelemetryError> {
        let get = |var: &str| env(var).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        if get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        match get("OTEL_TRACES_EXPORTER").map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => return Err(TelemetryError::UnsupportedExporter(other.to_string())),
        }
        let endpoint = [
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", get("OTEL_EXPORTER_OTLP_ENDPOINT")),
        ]
        .into_iter()
        .find_map(|(var, value)| value.map(|v| (var, v)));
        let Some((endpoint_var, endpoint)) = endpoint else { return Ok(None) };
        for var in ["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"] {
            if let Some(value) = get(var) {
                if value != "http/protobuf" {
                    return Err(TelemetryError::UnsupportedProtocol { var, value });
                }
                break; // the per-signal variable wins
            }
        }
        let bad = |reason: &str| TelemetryError::Endpoint {
            var: endpoint_var,
            value: endpoint.clone(),
            reason: reason.to_string(),
        };
        let uri: hyper::Uri = endpoint.parse().map_err(|_| bad("not a URL"))?;
        if uri.host().is_none() {
            return Err(bad("the URL has no host"));
        }
        let certificate = ["OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE"]
            .into_iter()
            .find_map(|var| get(var).map(|v| (var, PathBuf::from(v))));
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") if certificate.is_some() => {}
            Some("https") => {
                return Err(bad(
                    "an https endpoint needs OTEL_EXPORTER_OTLP_CERTIFICATE (a PEM CA bundle): no system roots are trusted",
                ));
            }
            _ => return Err(bad("the URL must start with http:// or https://")),
        }
        Ok(Some(OtlpConfig { endpoint_var, endpoint, certificate }))
    }

    /// A tracer provider exporting to this endpoint through the batch span
    /// processor (its own thread; `OTEL_BSP_*` tune it).
    fn provider(&self, service_name: &'static str) -> Result<SdkTracerProvider, TelemetryError> {
        let tls = match &self.certificate {
            None => None,
            Some((var, path)) => Some(tls_connector(var, path)?),
        };
        let client = OtlpHttpClient::new(tls).map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        // The exporter reads the endpoint, headers, timeout and compression
        // from the same variables.
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        let mut resource = opentelemetry_sdk::Resource::builder();
        let named = std::env::var_os("OTEL_SERVICE_NAME").is_some_and(|v| !v.is_empty())
            || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
        if !named {
            resource = resource.with_service_name(service_name);
        }
        Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build())
    }
}

/// Keeps the tracer provider of [`init`]; dropping it (or [`Telemetry::shutdown`])
/// exports the spans still queued and stops the exporter thread. Drop it
/// only after the spans that matter have ended (e.g. after draining jobs).
#[must_use = "dropping the guard shuts the trace exporter down"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether traces are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Export what is queued and stop the exporter.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            // Logs still work: the subscriber outlives the provider.
            tracing::warn!(error = %e, "the trace exporter did not shut down cleanly");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Install the process's global subscriber: logs to stderr (`RUST_LOG`,
/// else `options.default_log_filter`) and, when the environment configures
/// OTLP, a trace exporter.
pub fn init(options: &Options) -> Result<Telemetry, TelemetryError> {
    let config = OtlpConfig::from_env(|var| std::env::var(var).ok())?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(options.default_log_filter));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(colours());
    let fmt = if options.log_json { fmt.json().with_filter(filter).boxed() } else { fmt.with_filter(filter).boxed() };
    let provider = config.map(|c| c.provider(options.service_name)).transpose()?;
    let traces = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(options.service_name))
            .with_threads(false)
            .with_filter(tracing_subscriber::filter::filter_fn(exported))
    });
    tracing_subscriber::registry().with(fmt).with(traces).try_init().map_err(|_| TelemetryError::AlreadyInitialized)?;
    Ok(Telemetry { provider })
}

/// Whether log lines carry ANSI colour codes: only when stderr is a
/// terminal (not a file, a pipe or a log collector) and `NO_COLOR` is unset
/// (<https://no-color.org>).
pub fn colours() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// What the trace exporter sees: spans (never events, whose messages are
/// for logs) of Cohort's crates at `info` or above, independent of the
/// log filter.
fn exported(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span() && *meta.level() <= tracing::Level::INFO && meta.target().starts_with("cohort")
}

/// Add the current span's W3C trace context (`traceparent`, `tracestate`)
/// to `headers`. Nothing is added when traces are off.
pub fn inject_traceparent(headers: &mut HeaderMap) {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return;
    }
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// The remote parent a peer sent in `headers`, if it sent a well-formed
/// one of bounded size. Anything else (absent, oversized, not ASCII,
/// malformed, all-zero ids) is ignored: the job starts a new trace.
pub fn remote_parent(headers: &HeaderMap) -> Option<opentelemetry::Context> {
    let traceparent = headers.get("traceparent")?.to_str().ok()?;
    if traceparent.len() > MAX_TRACEPARENT_LEN || !well_formed(traceparent) {
        return None;
    }
    let tracestate =
        headers.get("tracestate").and_then(|v| v.to_str().ok()).filter(|v| v.len() <= MAX_TRACESTATE_LEN).unwrap_or("");
    let carrier = Carrier { traceparent, tracestate };
    let cx = TraceContextPropagator::new().extract(&carrier);
    let valid = cx.span().span_context().is_valid() && cx.span().span_context().is_remote();
    valid.then_some(cx)
}

/// The W3C shape of a `traceparent`: `vv-<32 hex>-<16 hex>-ff`, lower-case
/// hex, exactly that for version 00, possibly more (after a `-`) for later
/// versions. The SDK's propagator is laxer (it takes short ids).
fn well_formed(traceparent: &str) -> bool {
    let b = traceparent.as_bytes();
    let hex = |r: std::ops::Range<usize>| b[r].iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    b.len() >= 55
        && hex(0..2)
        && b[2] == b'-'
        && hex(3..35)
        && b[35] == b'-'
        && hex(36..52)
        && b[52] == b'-'
        && hex(53..55)
        && match &b[..2] {
            b"00" => b.len() == 55,
            b"ff" => false,
            _ => b.len() == 55 || b[55] == b'-',
        }
}

/// Make `span` a child of `parent` (a remote context), if the trace layer
/// is installed and the span has not started; otherwise nothing happens.
pub fn set_remote_parent(span: &tracing::Span, parent: Option<opentelemetry::Context>) {
    if let Some(cx) = parent {
        let _ = span.set_parent(cx);
    }
}

/// The trace id of `span` (32 hex digits) when it is exported.
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

struct Carrier<'a> {
    traceparent: &'a str,
    tracestate: &'a str,
}

impl Extractor for Carrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => Some(self.traceparent),
            "tracestate" if !self.tracestate.is_empty() => Some(self.tracestate),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) =
            (hyper::header::HeaderName::from_bytes(key.as_bytes()), hyper::header::HeaderValue::from_str(&value))
        {
            self.0.insert(name, value);
        }
    }
}

/// A TLS connector trusting the PEM CA bundle at `path`.
fn tls_connector(var: &'static str, path: &std::path::Path) -> Result<tokio_rustls::TlsConnector, TelemetryError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let fail = |reason: String| TelemetryError::Certificate { var, path: path.to_path_buf(), reason };
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| fail(format!("not a PEM certificate bundle: {e}")))?;
        roots.add(cert).map_err(|e| fail(format!("unusable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(fail("no certificate in the file".into()));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The OTLP exporter's HTTP client: hyper over TCP (and rustls for
/// `https`), on a runtime of its own. The batch span processor exports
/// from its own thread, outside the process's tokio runtime, and must keep
/// working while that runtime shuts down.
struct OtlpHttpClient {
    runtime: tokio::runtime::Runtime,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl std::fmt::Debug for OtlpHttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpHttpClient").field("tls", &self.tls.is_some()).finish_non_exhaustive()
    }
}

impl OtlpHttpClient {
    fn new(tls: Option<tokio_rustls::TlsConnector>) -> std::io::Result<OtlpHttpClient> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
        Ok(OtlpHttpClient { runtime, tls })
    }

    async fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let uri = request.uri().clone();
        let host = uri.host().ok_or("the OTLP endpoint has no host")?.trim_matches(['[', ']']).to_string();
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = TcpStream::connect((host.as_str(), port)).await?;
        let _ = tcp.set_nodelay(true);
        let (parts, body) = request.into_parts();
        let mut request = Request::from_parts(parts, Full::new(body));
        // Origin-form target and a Host header, as HTTP/1.1 servers expect.
        *request.uri_mut() = uri.path_and_query().map_or("/", |p| p.as_str()).parse()?;
        let authority = uri.authority().map_or(host.clone(), |a| a.to_string());
        request.headers_mut().insert(hyper::header::HOST, authority.parse()?);
        let response = if https {
            let tls = self.tls.as_ref().ok_or("an https endpoint needs a CA bundle")?;
            let name = rustls_pki_types::ServerName::try_from(host)?;
            let stream = tls.connect(name, tcp).await?;
            exchange(TokioIo::new(stream), request).await?
        } else {
            exchange(TokioIo::new(tcp), request).await?
        };
        Ok(response)
    }
}

/// One request on a fresh HTTP/1.1 connection.
async fn exchange<I>(io: I, request: Request<Full<Bytes>>) -> Result<Response<Bytes>, HttpError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    let driver = tokio::spawn(conn);
    let response = sender.send_request(request).await?;
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_REPLY_BYTES).collect().await?.to_bytes();
    driver.abort();
    Ok(Response::from_parts(parts, body))
}

impl HttpClient for OtlpHttpClient {
    fn send_bytes<'a, 'b>(
        &'a self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            // Only the batch processor's thread may block on our runtime;
            // a tokio thread (a simple processor) gets an error, not a panic.
            if tokio::runtime::Handle::try_current().is_ok() {
                return Err("the OTLP client runs on the batch span processor's thread only".into());
            }
            // The timer must be created inside the runtime.
            match self.runtime.block_on(async { tokio::time::timeout(EXPORT_TIMEOUT, self.send(request)).await }) {
                Ok(result) => result,
                Err(_) => Err(format!("the collector did not answer within {EXPORT_TIMEOUT:?}").into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Option<OtlpConfig>, TelemetryError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        OtlpConfig::from_env(|k| vars.get(k).cloned())
    }

    #[test]
    fn off_unless_an_endpoint_is_set() {
        assert_eq!(config(&[]).unwrap(), None);
        assert_eq!(config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")]).unwrap(), None);
        assert_eq!(config(&[("OTEL_SERVICE_NAME", "x")]).unwrap(), None);
        let on = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")];
        assert!(config(&on).unwrap().is_some());
        assert_eq!(config(&[on[0], ("OTEL_TRACES_EXPORTER", "none")]).unwrap(), None);
        assert_eq!(config(&[on[0], ("OTEL_SDK_DISABLED", "true")]).unwrap(), None);
        let traces = config(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/v1/traces")]).unwrap().unwrap();
        assert_eq!(traces.endpoint_var, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    }

    #[test]
    fn unsupported_settings_fail_and_say_what_is_supported() {
        let on = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        let e = config(&[on, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap_err();
        assert!(e.to_string().contains("http/protobuf"), "{e}");
        assert!(e.to_string().contains("OTEL_EXPORTER_OTLP_PROTOCOL"), "{e}");
        // The per-signal protocol wins over the general one.
        let ok = config(&[
            on,
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
        ]);
        assert!(ok.unwrap().is_some());
        let e = config(&[on, ("OTEL_TRACES_EXPORTER", "zipkin")]).unwrap_err();
        assert!(e.to_string().contains("otlp and none"), "{e}");
        let e = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318")]).unwrap_err();
        assert!(e.to_string().contains("OTEL_EXPORTER_OTLP_CERTIFICATE"), "{e}");
        assert!(config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")]).is_err());
        assert!(config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url")]).is_err());
    }

    fn headers(traceparent: &[u8], tracestate: Option<&[u8]>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = hyper::header::HeaderValue::from_bytes(traceparent) {
            h.insert("traceparent", v);
        }
        if let Some(s) = tracestate.and_then(|s| hyper::header::HeaderValue::from_bytes(s).ok()) {
            h.insert("tracestate", s);
        }
        h
    }

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_well_formed_traceparent_is_the_remote_parent() {
        let cx = remote_parent(&headers(GOOD.as_bytes(), Some(b"vendor=abc"))).expect("parent");
        let sc = cx.span().span_context().clone();
        assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_remote() && sc.is_sampled());
        assert_eq!(sc.trace_state().get("vendor"), Some("abc"));
        // An oversized tracestate is dropped; the parent stays.
        let long = format!("k={}", "v".repeat(MAX_TRACESTATE_LEN));
        let cx = remote_parent(&headers(GOOD.as_bytes(), Some(long.as_bytes()))).expect("parent");
        assert_eq!(cx.span().span_context().trace_state().header(), "");
    }

    #[test]
    fn garbage_and_oversized_traceparents_are_ignored() {
        assert!(remote_parent(&HeaderMap::new()).is_none());
        let padded = format!("{GOOD}-{}", "0".repeat(MAX_TRACEPARENT_LEN));
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"garbage".to_vec(),
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01".to_vec(), // zero trace id
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01".to_vec(), // zero span id
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_vec(), // forbidden version
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01".to_vec(), // upper case
            b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01".to_vec(),  // short id
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra".to_vec(), // v00 takes no more
            padded.into_bytes(),
            "x".repeat(64 * 1024).into_bytes(),
            vec![0xff, 0xfe, b'0', b'0'], // not ASCII
        ];
        for case in cases {
            let h = headers(&case, None);
            assert!(remote_parent(&h).is_none(), "accepted {:?}", String::from_utf8_lossy(&case));
        }
    }

    #[test]
    fn nothing_is_injected_without_a_trace() {
        let mut h = HeaderMap::new();
        inject_traceparent(&mut h);
        assert!(h.is_empty());
    }
}
