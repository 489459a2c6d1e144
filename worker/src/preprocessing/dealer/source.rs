//! Streaming dealt material to a party: [`DealerSource`] assembles layers
//! from a bounded channel of [`DealerBatch`]es; [`spawn_local_dealer`] runs
//! a [`TrustedDealer`] (a TRUSTED THIRD PARTY) in-process and feeds one
//! source per party.

use super::{Assembly, BatchId, DealerBatch, TrustedDealer, split_demand, validate_demand};
use crate::preprocessing::{Demand, LayerMaterial, MaterialPlan, MaterialSource, MaterialTag, PreprocessingError};
use std::collections::HashSet;
use tokio::sync::mpsc;

/// The sending half of a party's batch stream. A dealer that fails sends
/// the error, so the party sees why material stopped.
pub type BatchSender = mpsc::Sender<Result<DealerBatch, PreprocessingError>>;
/// The receiving half of a party's batch stream.
pub type BatchReceiver = mpsc::Receiver<Result<DealerBatch, PreprocessingError>>;

/// Batches buffered per party by [`spawn_local_dealer`]: enough to keep
/// generation ahead of the online phase without unbounded memory.
const LOCAL_CHANNEL_CAPACITY: usize = 4;

/// One party's supply of material from a trusted dealer (a TRUSTED THIRD
/// PARTY that knows all the material it deals).
///
/// Layers are assembled from as many batches as they need, in arrival
/// order: triple shares concatenated, division pairs concatenated per
/// divisor in [`Demand`] order, and the binary kinds (bit triples, edaBits,
/// daBits) concatenated per kind. A layer with an empty demand consumes no
/// batch. Every batch is checked before use: addressed to this party, from
/// the same dealer session as the previous ones, never seen before
/// ([`PreprocessingError::Reused`]), and fitting what the layer still needs
/// ([`PreprocessingError::Mismatch`]). A closed stream is
/// [`PreprocessingError::Exhausted`]. After any error the source is
/// finished and returns an error for every later request.
#[derive(Debug)]
pub struct DealerSource {
    party: usize,
    parties: usize,
    rx: BatchReceiver,
    next_layer: usize,
    session: Option<[u8; 16]>,
    consumed: HashSet<BatchId>,
    failed: Option<String>,
}

impl DealerSource {
    /// A source for `party` of `parties` reading batches from `rx`.
    pub fn new(party: usize, parties: usize, rx: BatchReceiver) -> DealerSource {
        DealerSource { party, parties, rx, next_layer: 0, session: None, consumed: HashSet::new(), failed: None }
    }

    /// A source and the sender that feeds it, buffering at most `capacity`
    /// batches (at least 1).
    pub fn channel(party: usize, parties: usize, capacity: usize) -> (BatchSender, DealerSource) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (tx, DealerSource::new(party, parties, rx))
    }

    pub fn party(&self) -> usize {
        self.party
    }

    /// How many batches this source has consumed.
    pub fn consumed_batches(&self) -> usize {
        self.consumed.len()
    }

    async fn assemble(&mut self, layer: usize, demand: &Demand) -> Result<LayerMaterial, PreprocessingError> {
        let mut asm = Assembly::new(demand);
        let mut ids = Vec::new();
        while !asm.is_complete() {
            let batch = match self.rx.recv().await {
                Some(Ok(batch)) => batch,
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(PreprocessingError::Exhausted(format!(
                        "the trusted dealer's stream to party {} closed before layer {layer} was complete",
                        self.party
                    )));
                }
            };
            let id = batch.id();
            batch.check_recipient(self.party, self.parties)?;
            match self.session {
                None => self.session = Some(id.session),
                Some(s) if s != id.session => {
                    return Err(PreprocessingError::Mismatch(format!(
                        "batch {id} comes from a different dealer session than the earlier batches"
                    )));
                }
                Some(_) => {}
            }
            // Consumption is recorded before the batch is used.
            if !self.consumed.insert(id) {
                return Err(PreprocessingError::Reused(id.to_string()));
            }
            asm.check_fits(id, batch.shape())?;
            ids.push(id);
            batch.expand_into(&mut asm);
        }
        let super::Parts { triples, div_pairs, bit_triples, edabits, dabits, permutation } = asm.finish();
        Ok(LayerMaterial { tag: layer_tag(layer, &ids), triples, div_pairs, bit_triples, edabits, dabits, permutation })
    }
}

impl MaterialSource for DealerSource {
    async fn next_layer(&mut self, layer: usize, demand: &Demand) -> Result<LayerMaterial, PreprocessingError> {
        if let Some(reason) = &self.failed {
            return Err(PreprocessingError::Exhausted(format!("the material source stopped after an error: {reason}")));
        }
        let result = if layer != self.next_layer {
            Err(PreprocessingError::Mismatch(format!("layer {layer} requested, expected layer {}", self.next_layer)))
        } else {
            match validate_demand(demand) {
                Ok(_) => self.assemble(layer, demand).await,
                Err(e) => Err(e),
            }
        };
        match &result {
            Ok(_) => self.next_layer += 1,
            Err(e) => self.failed = Some(e.to_string()),
        }
        result
    }
}

/// The tag of a layer: the first 8 bytes (little-endian) of
/// `SHA-256("cohort/dealer/layer-tag/v1" || layer || #ids || (session || seq)*)`.
/// Equal at two parties exactly when they assembled the layer from the same
/// batches (up to hash collisions); an empty layer has a tag that depends on
/// its index only.
fn layer_tag(layer: usize, ids: &[BatchId]) -> MaterialTag {
    let mut ctx = ::ring::digest::Context::new(&::ring::digest::SHA256);
    ctx.update(b"cohort/dealer/layer-tag/v1");
    ctx.update(&(layer as u64).to_le_bytes());
    ctx.update(&(ids.len() as u64).to_le_bytes());
    for id in ids {
        ctx.update(&id.session);
        ctx.update(&id.seq.to_le_bytes());
    }
    let digest = ctx.finish();
    MaterialTag(u64::from_le_bytes(digest.as_ref()[..8].try_into().expect("SHA-256 is 32 bytes")))
}

/// Run a [`TrustedDealer`] (a TRUSTED THIRD PARTY that learns all the
/// material it deals) in this process for `plan`, and return one
/// [`DealerSource`] per party (index = party).
///
/// The dealer runs on Tokio's blocking pool (so this must be called from
/// within a Tokio runtime) and deals the plan layer by layer in batches of
/// at most `max_batch` items (see [`split_demand`]), skipping empty layers,
/// into a bounded channel per party: generation runs ahead of the online
/// phase by a few batches and then waits. The dealer hands each batch to
/// every party in turn, so the parties must consume concurrently (each in
/// its own task, as the executor does): a party that stops reading stalls
/// the others once its buffer is full. If the dealer fails, every party
/// receives the error; if a party drops its source, the dealer stops and
/// the others see their streams close.
pub fn spawn_local_dealer(plan: MaterialPlan, parties: usize, max_batch: usize) -> Vec<DealerSource> {
    let (senders, sources): (Vec<_>, Vec<_>) =
        (0..parties).map(|p| DealerSource::channel(p, parties, LOCAL_CHANNEL_CAPACITY)).unzip();
    tokio::task::spawn_blocking(move || run_dealer(&plan, parties, max_batch, &senders));
    sources
}

fn run_dealer(plan: &MaterialPlan, parties: usize, max_batch: usize, senders: &[BatchSender]) {
    let fail = |e: PreprocessingError| {
        tracing::warn!(error = %e, "trusted dealer stopped");
        for tx in senders {
            let _ = tx.blocking_send(Err(copy_error(&e)));
        }
    };
    let mut dealer = match TrustedDealer::new(parties) {
        Ok(d) => d,
        Err(e) => return fail(e),
    };
    for demand in plan.layers.iter().filter(|d| !d.is_empty()) {
        for piece in split_demand(demand, max_batch) {
            match dealer.deal(&piece) {
                Ok(batches) => {
                    for (tx, batch) in senders.iter().zip(batches) {
                        if tx.blocking_send(Ok(batch)).is_err() {
                            tracing::debug!("a party closed its material stream; the trusted dealer stops");
                            return;
                        }
                    }
                }
                Err(e) => return fail(e),
            }
        }
    }
}

/// The same error for another party (errors carry no secret).
fn copy_error(e: &PreprocessingError) -> PreprocessingError {
    match e {
        PreprocessingError::Exhausted(s) => PreprocessingError::Exhausted(s.clone()),
        PreprocessingError::Reused(s) => PreprocessingError::Reused(s.clone()),
        PreprocessingError::Mismatch(s) => PreprocessingError::Mismatch(s.clone()),
        PreprocessingError::Malformed(s) => PreprocessingError::Malformed(s.clone()),
        PreprocessingError::Entropy(e) => PreprocessingError::Exhausted(format!("trusted dealer failed: {e}")),
        PreprocessingError::Generation(s) => PreprocessingError::Generation(s.clone()),
        PreprocessingError::Pool(s) => PreprocessingError::Pool(s.clone()),
        PreprocessingError::Transport(t) => PreprocessingError::Transport(t.clone()),
    }
}
