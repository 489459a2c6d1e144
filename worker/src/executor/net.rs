//! One job's view of the mesh: rounds with a deadline, and errors that name
//! the party and the step.
//!
//! Every protocol ([`crate::protocol`]) talks through this, so that round
//! counting, the job's time limit and the shape of a peer's error are the
//! same whichever protocol runs the job.

use super::run::JobError;
use crate::program::ir::PartyIndex;
use crate::transport::{Mesh, Step, TransportError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The network of one job at one party.
pub struct Net<'a> {
    pub mesh: &'a Mesh,
    pub me: PartyIndex,
    pub n: usize,
    /// Rounds so far (setup and output included).
    pub rounds: u32,
    deadline: Instant,
    limit: Duration,
}

impl<'a> Net<'a> {
    pub fn new(mesh: &'a Mesh, limit: Duration) -> Net<'a> {
        Net { mesh, me: mesh.self_index(), n: mesh.party_count(), rounds: 0, deadline: Instant::now() + limit, limit }
    }

    /// Every party but this one, in order.
    pub fn peers(&self) -> impl Iterator<Item = usize> + use<> {
        let me = self.me;
        (0..self.n).filter(move |p| *p != me)
    }

    /// A peer's message that is well-formed but wrong.
    pub fn protocol_error(&self, party: usize, step: Step, reason: impl Into<String>) -> JobError {
        JobError::Protocol { party: self.mesh.party_name(party).to_string(), step, reason: reason.into() }
    }

    /// The same message for every peer (shared, never copied per peer).
    pub fn to_every_peer(&self, message: Arc<Vec<u8>>) -> Vec<Arc<Vec<u8>>> {
        vec![message; self.n]
    }

    /// One message per peer (`messages[p]` for peer `p`).
    pub fn per_peer(messages: Vec<Vec<u8>>) -> Vec<Arc<Vec<u8>>> {
        messages.into_iter().map(Arc::new).collect()
    }

    /// Hand back messages that held shares, seeds or keys (an input round's,
    /// an output round's, a replicated layer's): each is wiped once, in
    /// bulk, by the transport's pool. A sent message the transport still
    /// holds is left to it.
    pub fn wipe(&self, received: Vec<Vec<u8>>, sent: Vec<Arc<Vec<u8>>>) {
        self.hand_back(received, sent, true);
    }

    /// Hand back a round's message buffers to the transport's pool, so that
    /// the next large message reuses their pages instead of faulting in
    /// fresh ones: wiped if they held shares (`secret`), as they are if
    /// they held only public openings.
    pub fn hand_back(&self, received: Vec<Vec<u8>>, sent: Vec<Arc<Vec<u8>>>, secret: bool) {
        let give = |message: Vec<u8>| {
            if secret { self.mesh.recycle_secret(message) } else { self.mesh.recycle(message) }
        };
        received.into_iter().for_each(give);
        sent.into_iter().filter_map(|m| Arc::try_unwrap(m).ok()).for_each(give);
    }

    /// One round with every peer: send `messages[p]` to every peer `p` and
    /// receive one message from each. See [`Net::round`].
    pub async fn exchange(&mut self, step: Step, messages: Vec<Arc<Vec<u8>>>) -> Result<Vec<Vec<u8>>, JobError> {
        let peers: Vec<usize> = self.peers().collect();
        let sends: Vec<(usize, Arc<Vec<u8>>)> = peers.iter().map(|p| (*p, messages[*p].clone())).collect();
        self.round(step, sends, &peers).await
    }

    /// One round: send each `(peer, message)` and receive one message from
    /// each peer in `from` (indexed by party in the result; empty for the
    /// others), concurrently so that large messages cannot deadlock, all
    /// within the job's deadline. Protocols whose rounds are not
    /// all-to-all (replicated sharing sends to one neighbour) use this
    /// directly.
    pub async fn round(
        &mut self,
        step: Step,
        sends: Vec<(usize, Arc<Vec<u8>>)>,
        from: &[usize],
    ) -> Result<Vec<Vec<u8>>, JobError> {
        self.rounds += 1;
        let mesh = self.mesh;
        let send_all = async {
            for (p, message) in sends {
                mesh.send_shared(p, step, message).await?;
            }
            Ok::<(), TransportError>(())
        };
        let recv_all = async {
            let mut received = vec![Vec::new(); self.n];
            for p in from {
                received[*p] = mesh.recv(*p, step).await?;
            }
            Ok::<Vec<Vec<u8>>, TransportError>(received)
        };
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, async { tokio::join!(send_all, recv_all) }).await {
            Err(_) => Err(JobError::Deadline { limit: self.limit, step }),
            Ok((sent, received)) => {
                sent?;
                Ok(received?)
            }
        }
    }
}
