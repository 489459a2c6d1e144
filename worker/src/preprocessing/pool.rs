//! Filling a party's [`Store`] ahead of jobs with material the parties
//! generate together ([`super::ot`]): what a `PreprocessingPool`'s
//! generators run.
//!
//! A generation session is one mesh among all parties of the federation
//! (its job id is the session id) and one [`OtGenerator`]. Every party
//! calls [`fill`] with the same arguments at the same point of the session;
//! batch `k` of the session gets the id `(session, first_seq + k)` at every
//! party, so the ids are agreed without a message, and each party stores
//! its own shares under that id with the same [`BatchMeta::digest`].

use super::ot::{OtError, OtGenerator};
use super::store::{BatchMeta, Store, StoreError, StoredKind, StoredMaterial, describe};
use super::{BatchId, DivPairShares};
use crate::transport::Mesh;
use std::sync::{Arc, Mutex};

/// Why filling the store stopped.
#[derive(Debug, thiserror::Error)]
pub enum FillError {
    #[error(transparent)]
    Generation(#[from] OtError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the preprocessing store is unavailable: {0}")]
    Unavailable(String),
}

/// What to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FillRequest {
    pub kind: StoredKind,
    /// Items per batch (at least 1).
    pub per_batch: usize,
    /// Batches to generate.
    pub batches: usize,
    /// The sequence number of the first batch in this session.
    pub first_seq: u64,
}

/// Generate `request.batches` batches with the peers on `mesh` and store
/// this party's shares of each, durably, before generating the next. The
/// ids of the stored batches, in order.
pub async fn fill(
    generator: &mut OtGenerator,
    mesh: &Mesh,
    store: &Arc<Mutex<Store>>,
    federation: &str,
    request: FillRequest,
) -> Result<Vec<BatchId>, FillError> {
    let parties: Vec<String> = (0..mesh.party_count()).map(|i| mesh.party_name(i).to_string()).collect();
    let mut ids = Vec::with_capacity(request.batches);
    for k in 0..request.batches as u64 {
        let id = BatchId { session: mesh.job().0, seq: request.first_seq + k };
        let material = match request.kind {
            StoredKind::Triples => StoredMaterial::Triples(generator.triples(mesh, request.per_batch).await?),
            StoredKind::DivPairs { divisor } => {
                let pairs: DivPairShares = generator.div_pairs(mesh, divisor, request.per_batch).await?;
                StoredMaterial::DivPairs(pairs)
            }
        };
        let meta: BatchMeta = describe(id, request.kind, request.per_batch, federation, &parties, mesh.self_index());
        let store = store.clone();
        tokio::task::spawn_blocking(move || {
            let mut store = store.lock().map_err(|_| FillError::Unavailable("a thread panicked holding it".into()))?;
            store.put(meta, &material).map_err(FillError::from)
        })
        .await
        .map_err(|e| FillError::Unavailable(e.to_string()))??;
        ids.push(id);
    }
    Ok(ids)
}
