//! The party-to-party transport: a full mesh of mutually authenticated
//! TLS 1.3 connections, one per pair of parties and job.
//!
//! - [`certs`]: each party's own CA ([`PartyCa`]) and the worker leaf
//!   certificates carrying the party identity as a URI SAN
//!   ([`party_uri`]: `spiffe://<federation>/party/<party>`);
//! - [`tls`]: a party's [`TlsIdentity`] (its chain, key and trusted CAs) and
//!   the rustls configurations that check a peer's chain *and* identity;
//! - [`frame`]: the wire framing, [`JobId`] and [`Step`];
//! - `hello`: the version hello that follows the TLS handshake;
//! - [`mesh`]: establishing the mesh ([`Mesh::establish`]) and sending and
//!   receiving framed messages with bounded queues and timeouts;
//! - [`reload`]: [`TlsWatcher`](reload::TlsWatcher), which swaps renewed
//!   certificates and trust into a running process's [`SharedIdentity`];
//! - [`router`]: one peer port serving many jobs ([`Router`]), routing
//!   authenticated connections by the job their hello names;
//! - [`error`]: [`TransportError`], which always names the peer and step.
//!
//! Faults (a peer that disconnects, stalls, or sends garbage; a certificate
//! that is untrusted, expired or for the wrong party) end the job with an
//! error within the configured timeouts and never panic the process; the
//! same listener then serves the next job.

pub mod certs;
pub mod error;
pub mod frame;
mod hello;
pub mod mesh;
pub mod reload;
pub mod router;
pub mod tls;

pub use certs::{CertifiedKey, PartyCa, Role, describe, party_uri, validate_principal};
pub use error::{TlsFailure, TransportError, TransportErrorKind};
pub use frame::{JobId, Step};
pub use mesh::{Accepted, InboundSource, Limits, Mesh, MeshConfig, PeerAddr, ProtocolOffer, Routed, Timeouts};
pub use router::{Registration, Router, RouterLimits};
pub use tls::{SharedIdentity, TlsIdentity, TlsMaterial};
