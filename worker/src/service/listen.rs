//! Bounds on the plain and TLS HTTP listeners (the control API, the
//! metrics port, and the operator's metrics port through
//! [`super::metrics::serve_plain`]): a cap on the connections served at
//! once, and a short deadline for a connection's first byte, so idle
//! connections cost neither a task nor a descriptor for long.
//!
//! A connection beyond the cap is accepted and closed at once (so it never
//! waits in the kernel's backlog in front of real clients), and counted in
//! a log line at most every [`LOG_EVERY`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

/// Time an accepted connection has to send its first byte (a TLS
/// ClientHello, an HTTP request line).
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often a listener logs the connections it refused at its cap.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// The connections one listener serves at once.
pub struct ConnectionCap {
    what: &'static str,
    max: usize,
    permits: Arc<Semaphore>,
    refused: AtomicU64,
    last_log: Mutex<Option<Instant>>,
}

impl ConnectionCap {
    /// A cap of `max` connections (at least one) for the listener `what`.
    pub fn new(what: &'static str, max: usize) -> Arc<ConnectionCap> {
        let max = max.max(1);
        Arc::new(ConnectionCap {
            what,
            max,
            permits: Arc::new(Semaphore::new(max)),
            refused: AtomicU64::new(0),
            last_log: Mutex::new(None),
        })
    }

    /// A slot for one accepted connection, or `None` at the cap (the
    /// caller drops the connection).
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                self.log_refusals();
                None
            }
        }
    }

    /// Connections refused at the cap since the listener started.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn log_refusals(&self) {
        let now = Instant::now();
        let mut last = self.last_log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            return;
        }
        *last = Some(now);
        warn!(
            listener = self.what,
            max = self.max,
            refused_total = self.refused(),
            "connection cap reached: closed new connections at once (idle clients, or a flood)"
        );
    }
}

/// Wait until `tcp` has something to read (or was closed), at most
/// `within`; `false` when it stayed silent.
pub async fn first_byte(tcp: &TcpStream, within: Duration) -> bool {
    matches!(tokio::time::timeout(within, tcp.readable()).await, Ok(Ok(())))
}
