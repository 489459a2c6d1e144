//! An in-process OTLP/HTTP trace receiver for tests: accepts
//! `POST /v1/traces` with protobuf bodies (what a Collector's `otlphttp`
//! receiver accepts), keeps every raw body, and decodes them with
//! `opentelemetry-proto`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::net::TcpListener;

/// A running receiver; stops when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    bodies: Arc<Mutex<Vec<Bytes>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One received span with the `service.name` of the process that sent it.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    pub service: String,
    pub span: Span,
}

impl ReceivedSpan {
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    pub fn parent_span_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    /// Attribute `key` as text (ints and bools in decimal).
    pub fn attr(&self, key: &str) -> Option<String> {
        self.span.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_ref()).map(text)
    }

    /// Attribute `key` as an integer.
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.span.attributes.iter().find(|kv| kv.key == key)?.value.as_ref()?.value.as_ref()? {
            any_value::Value::IntValue(i) => Some(*i),
            any_value::Value::StringValue(s) => s.parse().ok(),
            _ => None,
        }
    }

    /// Every text the span carries: its name, attribute keys and values,
    /// event names and their attributes, link attributes, status message.
    pub fn texts(&self) -> Vec<String> {
        let s = &self.span;
        let mut out = vec![s.name.clone(), s.trace_state.clone()];
        let mut kvs = |attrs: &[KeyValue]| {
            for kv in attrs {
                out.push(kv.key.clone());
                if let Some(v) = &kv.value {
                    out.push(text(v));
                }
            }
        };
        kvs(&s.attributes);
        for e in &s.events {
            kvs(&e.attributes);
        }
        for l in &s.links {
            kvs(&l.attributes);
        }
        for e in &s.events {
            out.push(e.name.clone());
        }
        if let Some(status) = &s.status {
            out.push(status.message.clone());
        }
        out
    }
}

fn text(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// Lower-case hex of `bytes` (trace and span ids as W3C writes them).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Receiver {
    /// Listen on a free loopback port.
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the OTLP receiver");
        let addr = listener.local_addr().expect("its address");
        let bodies: Arc<Mutex<Vec<Bytes>>> = Arc::default();
        let kept = bodies.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let kept = kept.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(req, &kept).await) }
                    });
                    let _ =
                        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
                });
            }
        });
        Receiver { addr, bodies, task }
    }

    /// The base URL, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request body received so far, raw.
    pub fn bodies(&self) -> Vec<Bytes> {
        self.bodies.lock().expect("receiver lock").clone()
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let mut out = Vec::new();
        for body in self.bodies() {
            let request = ExportTraceServiceRequest::decode(body).expect("a valid OTLP trace request");
            for rs in request.resource_spans {
                let service = rs
                    .resource
                    .as_ref()
                    .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
                    .and_then(|kv| kv.value.as_ref())
                    .map(text)
                    .unwrap_or_default();
                for ss in rs.scope_spans {
                    for span in ss.spans {
                        out.push(ReceivedSpan { service: service.clone(), span });
                    }
                }
            }
        }
        out
    }

    /// The spans received, by trace id.
    pub fn traces(&self) -> BTreeMap<String, Vec<ReceivedSpan>> {
        let mut traces: BTreeMap<String, Vec<ReceivedSpan>> = BTreeMap::new();
        for s in self.spans() {
            traces.entry(s.trace_id()).or_default().push(s);
        }
        traces
    }
}

async fn handle(req: Request<hyper::body::Incoming>, kept: &Mutex<Vec<Bytes>>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode| {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = status;
        r
    };
    if req.method() != hyper::Method::POST || req.uri().path() != "/v1/traces" {
        return reply(StatusCode::NOT_FOUND);
    }
    if req.headers().get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) != Some("application/x-protobuf") {
        return reply(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    let Ok(body) = req.into_body().collect().await else { return reply(StatusCode::BAD_REQUEST) };
    let body = body.to_bytes();
    if ExportTraceServiceRequest::decode(body.clone()).is_err() {
        return reply(StatusCode::BAD_REQUEST);
    }
    kept.lock().expect("receiver lock").push(body);
    // An empty ExportTraceServiceResponse: everything accepted.
    let mut r = reply(StatusCode::OK);
    r.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/x-protobuf"));
    r
}

/// The OS threads of process `pid` whose name starts with `prefix`
/// (Linux: `/proc/<pid>/task/*/comm`, names cut at 15 bytes).
pub fn threads_named(pid: u32, prefix: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .filter(|name| name.trim_end().starts_with(prefix))
        .count()
}

/// [`threads_named`] once it reaches `want`, or as it stands after 5 s. A
/// thread names itself after it starts, so a process that just started
/// may show its exporter thread a moment later (seen on a loaded machine).
pub async fn threads_named_settled(pid: u32, prefix: &str, want: usize) -> usize {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let n = threads_named(pid, prefix);
        if n == want || std::time::Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Send SIGTERM to `child` and wait for it to exit: a worker drains and
/// exports its queued spans before it exits.
pub async fn terminate(child: &mut tokio::process::Child) {
    let Some(pid) = child.id() else { return };
    let status = tokio::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
    assert!(status.is_ok_and(|s| s.success()), "kill -TERM {pid}");
    child.wait().await.expect("the process exits");
}
