//! A whole federation inside one process, over real loopback TLS.
//!
//! Every party gets its own CA, certificate and listener, and talks to the
//! others through the same [`Mesh`] a deployed worker uses; material comes
//! from an in-process [trusted dealer](crate::preprocessing::dealer). This
//! is what examples, benchmarks and the engine's tests drive. (`cohort
//! run` goes one step further and runs each party as its own process.)

use crate::executor::{ExecuteOptions, JobError, JobOutput, OwnInputs, execute};
use crate::preprocessing::dealer::{DealerSource, spawn_local_dealer};
use crate::preprocessing::{MaterialPlan, PreprocessingError};
use crate::program::ir::Circuit;
use crate::program::{hex, program_hash};
use crate::protocol::{ProtocolName, SUPPORTED_VERSIONS};
use crate::transport::{
    JobId, Limits, Mesh, MeshConfig, PartyCa, PeerAddr, ProtocolOffer, Step, Timeouts, TlsIdentity, TransportError,
    TransportErrorKind,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tracing::Instrument;

/// The federation name local runs use in certificates.
pub const FEDERATION: &str = "local";

/// Parties of a local federation: per party, a bound loopback listener and
/// a TLS identity issued by that party's own CA.
pub struct LocalFederation {
    pub names: Vec<String>,
    pub listeners: Vec<Arc<TcpListener>>,
    pub identities: Vec<Arc<TlsIdentity>>,
    pub timeouts: Timeouts,
    pub limits: Limits,
    /// The protocol every party runs (`additive-semi-honest` unless set).
    pub protocol: ProtocolName,
}

impl LocalFederation {
    /// Parties named `names`, each with a fresh CA valid for a day.
    pub async fn new(names: Vec<String>) -> Result<LocalFederation, TransportError> {
        let mut listeners = Vec::new();
        for _ in &names {
            let listener = TcpListener::bind("127.0.0.1:0").await.map_err(local_io)?;
            listeners.push(Arc::new(listener));
        }
        let lifetime = Duration::from_secs(24 * 3600);
        let cas = names.iter().map(|n| PartyCa::generate(FEDERATION, n, lifetime)).collect::<Result<Vec<_>, _>>()?;
        // Each peer is trusted only through its own CA (pinned), as in a
        // federation where every party runs its own CA.
        let peer_cas: Vec<(String, String)> = names.iter().cloned().zip(cas.iter().map(PartyCa::cert_pem)).collect();
        let now = SystemTime::now();
        let mut identities = Vec::new();
        for (name, ca) in names.iter().zip(&cas) {
            let dns = ["localhost".to_string()];
            let leaf = ca.issue_party_cert(name, &dns, now - Duration::from_secs(60), now + lifetime)?;
            let chain = format!("{}\n{}", leaf.cert_pem, ca.cert_pem());
            let peers: Vec<(String, String)> = peer_cas.iter().filter(|(peer, _)| peer != name).cloned().collect();
            identities.push(Arc::new(TlsIdentity::from_pem_pinned(FEDERATION, name, &chain, &leaf.key_pem, &peers)?));
        }
        Ok(LocalFederation {
            names,
            listeners,
            identities,
            timeouts: Timeouts::default(),
            limits: Limits::default(),
            protocol: ProtocolName::default(),
        })
    }

    /// The same federation running `protocol`.
    pub fn with_protocol(mut self, protocol: ProtocolName) -> LocalFederation {
        self.protocol = protocol;
        self
    }

    /// `n` parties named `party-0` … `party-{n-1}`.
    pub async fn with_parties(n: usize) -> Result<LocalFederation, TransportError> {
        LocalFederation::new((0..n).map(|i| format!("party-{i}")).collect()).await
    }

    /// The mesh configuration of party `me`.
    pub fn config(&self, me: usize) -> Result<MeshConfig, TransportError> {
        let mut parties = Vec::new();
        for (name, listener) in self.names.iter().zip(&self.listeners) {
            parties.push(PeerAddr { name: name.clone(), addr: listener.local_addr().map_err(local_io)? });
        }
        Ok(MeshConfig {
            federation: FEDERATION.to_string(),
            self_index: me,
            parties,
            identity: self.identities[me].clone(),
            protocol: ProtocolOffer {
                name: self.protocol.as_str().to_string(),
                min_version: SUPPORTED_VERSIONS.0,
                max_version: SUPPORTED_VERSIONS.1,
            },
            limits: self.limits,
            timeouts: self.timeouts,
        })
    }

    /// Establish every party's mesh for `job`, concurrently.
    pub async fn meshes(&self, job: JobId) -> Result<Vec<Mesh>, TransportError> {
        let mut tasks = Vec::new();
        for me in 0..self.names.len() {
            let cfg = self.config(me)?;
            let listener = self.listeners[me].clone();
            tasks.push(tokio::spawn(async move { Mesh::establish(&cfg, &listener, job).await }));
        }
        let mut meshes = Vec::new();
        for task in tasks {
            meshes.push(task.await.expect("mesh task panicked")?);
        }
        Ok(meshes)
    }

    /// The consent digest of `source` for this federation's party list
    /// and protocol.
    pub fn consent(&self, source: &str) -> [u8; 32] {
        protocol_consent_digest(self.protocol, source, &self.names)
    }

    /// Run a compiled program once: every party with its own inputs, a
    /// fresh mesh, and a fresh in-process trusted dealer. Results are per
    /// party, in party order.
    pub async fn run(
        &self,
        circuit: Arc<Circuit>,
        consent: [u8; 32],
        inputs: Vec<OwnInputs>,
    ) -> Result<Vec<Result<JobOutput, JobError>>, TransportError> {
        let hub = DealerHub::new(self.names.len());
        let parties = inputs.into_iter().map(|inputs| PartyRun { consent, dealer: hub.clone(), inputs }).collect();
        self.run_parties(circuit, parties).await
    }

    /// Run a compiled program once, each party with its own consent digest
    /// and dealer (tests use this to make parties disagree).
    pub async fn run_parties(
        &self,
        circuit: Arc<Circuit>,
        parties: Vec<PartyRun>,
    ) -> Result<Vec<Result<JobOutput, JobError>>, TransportError> {
        let meshes = self.meshes(JobId::random()).await?;
        let protocol = self.protocol;
        let mut tasks = Vec::new();
        for (me, (mesh, party)) in meshes.into_iter().zip(parties).enumerate() {
            let circuit = circuit.clone();
            tasks.push(tokio::spawn(async move {
                let PartyRun { consent, dealer, inputs } = party;
                let options = ExecuteOptions { protocol, ..ExecuteOptions::new(consent) };
                let span = tracing::info_span!("job", job.id = %mesh.job(), party = mesh.party_name(me));
                let result = execute(&mesh, &circuit, &inputs, &options, |plan| async move { dealer.take(me, plan) })
                    .instrument(span)
                    .await;
                // Flush what was queued, so peers see this party's last
                // messages rather than a reset connection.
                mesh.close().await;
                result
            }));
        }
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.expect("party task panicked"));
        }
        Ok(results)
    }
}

/// One party's part in a local run.
pub struct PartyRun {
    /// The consent digest this party presents.
    pub consent: [u8; 32],
    /// Where this party draws its material.
    pub dealer: DealerHub,
    pub inputs: OwnInputs,
}

/// The digest parties compare before sharing inputs under the additive
/// protocol: SHA-256 over the program text, the party list and the
/// protocol name.
pub fn consent_digest(source: &str, parties: &[String]) -> [u8; 32] {
    protocol_consent_digest(ProtocolName::AdditiveSemiHonest, source, parties)
}

/// The digest parties compare before sharing inputs: SHA-256 over the
/// protocol name, the party list and the program text.
pub fn protocol_consent_digest(protocol: ProtocolName, source: &str, parties: &[String]) -> [u8; 32] {
    let mut text = String::from(protocol.as_str());
    for party in parties {
        text.push('\n');
        text.push_str(party);
    }
    text.push('\n');
    text.push_str(&hex(&program_hash(source)));
    program_hash(&text)
}

/// [`consent_digest`] bound to the job's preprocessing mode, so that
/// parties that would draw material differently refuse the job in the
/// setup step instead of failing mid-protocol. The dealer's digest is the
/// plain one (what workers computed before modes existed).
pub fn consent_digest_for(source: &str, parties: &[String], mode: crate::preprocessing::Mode) -> [u8; 32] {
    job_consent_digest(ProtocolName::AdditiveSemiHonest, source, parties, mode)
}

/// The consent digest of a job: bound to the protocol and, for a protocol
/// that takes material, to the preprocessing mode.
pub fn job_consent_digest(
    protocol: ProtocolName,
    source: &str,
    parties: &[String],
    mode: crate::preprocessing::Mode,
) -> [u8; 32] {
    let base = protocol_consent_digest(protocol, source, parties);
    match mode {
        _ if !protocol.uses_preprocessing() => base,
        crate::preprocessing::Mode::Dealer => base,
        other => program_hash(&format!("{}\npreprocessing {other}", hex(&base))),
    }
}

/// A socket problem on this side, before any peer is involved.
fn local_io(e: std::io::Error) -> TransportError {
    TransportError::new(None, Step::Handshake, TransportErrorKind::Io(e))
}

/// A plan and the per-party streams not yet taken.
type DealtPlan = (MaterialPlan, Vec<Option<DealerSource>>);

/// Hands each party its stream from one in-process trusted dealer, which
/// the first party to present the job's material plan starts. Every party
/// must present the same plan (it is derived from public information).
#[derive(Clone)]
pub struct DealerHub {
    inner: Arc<Mutex<Option<DealtPlan>>>,
    parties: usize,
    max_batch: usize,
}

impl DealerHub {
    pub fn new(parties: usize) -> DealerHub {
        DealerHub { inner: Arc::new(Mutex::new(None)), parties, max_batch: 1 << 16 }
    }

    /// Party `party`'s stream for `plan`.
    pub fn take(&self, party: usize, plan: MaterialPlan) -> Result<DealerSource, PreprocessingError> {
        let mut guard = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (existing, sources) = guard.get_or_insert_with(|| {
            let sources = spawn_local_dealer(plan.clone(), self.parties, self.max_batch);
            (plan.clone(), sources.into_iter().map(Some).collect())
        });
        if *existing != plan {
            return Err(PreprocessingError::Mismatch("parties presented different material plans".into()));
        }
        sources
            .get_mut(party)
            .and_then(Option::take)
            .ok_or_else(|| PreprocessingError::Exhausted(format!("the stream of party {party} was already taken")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocessing::Mode;

    #[test]
    fn the_consent_digest_binds_the_preprocessing_mode() {
        let parties = vec!["a".to_string(), "b".to_string()];
        let program = "input x: int from a\noutput y = x";
        let plain = consent_digest(program, &parties);
        // The dealer's digest is what workers computed before modes existed.
        assert_eq!(consent_digest_for(program, &parties, Mode::Dealer), plain);
        assert_ne!(consent_digest_for(program, &parties, Mode::Ot), plain);
        assert_ne!(consent_digest_for(program, &parties, Mode::Pool), plain);
        assert_ne!(consent_digest_for(program, &parties, Mode::Pool), consent_digest_for(program, &parties, Mode::Ot));
        assert_ne!(
            consent_digest_for(program, &parties, Mode::Ot),
            consent_digest_for(program, &["b".to_string(), "a".to_string()], Mode::Ot)
        );
        // The protocol is bound too; a protocol without material ignores the mode.
        let rep3 = job_consent_digest(ProtocolName::Replicated3, program, &parties, Mode::Dealer);
        assert_ne!(rep3, plain);
        assert_eq!(rep3, job_consent_digest(ProtocolName::Replicated3, program, &parties, Mode::Ot));
    }
}
