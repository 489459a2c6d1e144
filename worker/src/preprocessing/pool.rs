//! The two ways a party's [`Store`] meets its peers: [`fill`] stores
//! material the parties generate together ([`super::ot`]) ahead of jobs,
//! and [`take`] agrees on, consumes and assembles a job's material.
//!
//! # Filling
//!
//! A generation session is one mesh among all parties of the federation
//! (its job id is the session id) and one [`OtGenerator`]. Every party
//! calls [`fill`] with the same arguments at the same point of the session;
//! batch `k` of the session gets the id `(session, first_seq + k)` at every
//! party, so the ids are agreed without a message, and each party stores
//! its own shares under that id with the same [`BatchMeta::digest`].
//!
//! # Taking
//!
//! Every party of a job must use the same batches, each exactly once, even
//! when a party crashes halfway through. [`take`] is led by the job's first
//! party and costs three messages; its doc gives the rules.

use super::ot::{OtError, OtGenerator};
use super::store::{
    BatchMeta, Store, StoreError, StoredKind, StoredMaterial, describe, id_text, on_store, parse_id, unix_now,
};
use super::{
    BatchId, BitTripleShares, DaBitShares, DivPairShares, EdaBitShares, LayerMaterial, MaterialPlan, MaterialTag,
    Prefetched, TripleShares,
};
use crate::gf2::Bits;
use crate::program::{hex, unhex};
use crate::sharing::Share;
use crate::transport::{JobId, Mesh, Step};
use std::collections::{BTreeMap, BTreeSet};
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
    /// The generation session itself failed: the parties did not connect,
    /// a plan was refused, the deadline passed (the message says which).
    #[error("{0}")]
    Session(String),
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
/// this party's shares of each, durably, before generating the next
/// (`on_stored` hears of each). The ids of the stored batches, in order.
pub async fn fill(
    generator: &mut OtGenerator,
    mesh: &Mesh,
    store: &Arc<Mutex<Store>>,
    federation: &str,
    request: FillRequest,
    mut on_stored: impl FnMut(&BatchMeta) + Send,
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
            StoredKind::BitTriples => StoredMaterial::BitTriples(generator.bit_triples(mesh, request.per_batch).await?),
            StoredKind::EdaBits => StoredMaterial::EdaBits(generator.edabits(mesh, request.per_batch).await?),
            StoredKind::DaBits => StoredMaterial::DaBits(generator.dabits(mesh, request.per_batch).await?),
        };
        let meta: BatchMeta = describe(id, request.kind, request.per_batch, federation, &parties, mesh.self_index());
        let meta = on_store(store, move |store| store.put(meta.clone(), &material).map(|()| meta))
            .await
            .map_err(FillError::Unavailable)??;
        on_stored(&meta);
        ids.push(id);
    }
    Ok(ids)
}

// ---------------------------------------------------------------------------
// Taking a job's material.
// ---------------------------------------------------------------------------

/// How long a batch may be missing at some party before it is discarded
/// everywhere. The parties store batch `k` of a fill within moments of each
/// other, so a batch still missing after this was lost: a party crashed in
/// the middle of a fill. Such a batch can never be used; without this rule
/// it would stay until the `ttl`, counted as available where it exists.
pub const ABSENT_GRACE: std::time::Duration = std::time::Duration::from_secs(120);

/// How many batches the leader offers, and a peer lists unoffered, in one
/// agreement (bounds the messages at about 100 bytes a batch).
pub const LIST_LIMIT: usize = 4096;

/// What a job needs of one kind, in items.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    pub kind: StoredKind,
    pub items: usize,
}

/// The kinds and amounts `plan` consumes: triples, then division pairs by
/// ascending divisor, then bit triples (in 64-triple words), edaBits and
/// daBits (the same at every party, as the plan is).
pub fn needs(plan: &MaterialPlan) -> Vec<Need> {
    let mut needs = Vec::new();
    if plan.total_triples() > 0 {
        needs.push(Need { kind: StoredKind::Triples, items: plan.total_triples() });
    }
    let mut divisors: BTreeMap<u64, usize> = BTreeMap::new();
    for (divisor, count) in plan.layers.iter().flat_map(|l| &l.div_pairs) {
        *divisors.entry(*divisor).or_default() += count;
    }
    needs.extend(divisors.into_iter().map(|(divisor, items)| Need { kind: StoredKind::DivPairs { divisor }, items }));
    let binary = [
        (StoredKind::BitTriples, plan.layers.iter().map(|l| l.bit_triple_words).sum::<usize>()),
        (StoredKind::EdaBits, plan.total_edabits()),
        (StoredKind::DaBits, plan.total_dabits()),
    ];
    needs.extend(binary.into_iter().filter(|(_, items)| *items > 0).map(|(kind, items)| Need { kind, items }));
    needs
}

/// Check that the pool (with OT for what it does not stock) can serve
/// `plan`: every divisor is in range.
pub fn check_plan(plan: &MaterialPlan) -> Result<(), super::PreprocessingError> {
    super::ot::check_plan(plan)
}

/// Whether a pool job generates the pairs for `divisor` during the job
/// (with OT) instead of taking them from the pool: divisors that are not
/// powers of two (a job's divisor, such as a length, is not known when the
/// pool fills) and the correction round's divisor. A function of the
/// divisor alone, so every party splits a plan the same way, whatever its
/// `pool.divisors`.
pub fn generated_in_job(divisor: u64) -> bool {
    !divisor.is_power_of_two() || divisor == crate::protocol::additive::division::CORRECTION_DIVISOR
}

/// Split a pool job's plan into what the pool serves (triples, stocked
/// divisors, and the binary kinds: bit triples, edaBits, daBits) and what
/// the job generates (divisors [`generated_in_job`]), layer by layer.
pub fn split_plan(plan: &MaterialPlan) -> (MaterialPlan, MaterialPlan) {
    let mut stocked = MaterialPlan::default();
    let mut generated = MaterialPlan::default();
    for demand in &plan.layers {
        let (g, s): (Vec<_>, Vec<_>) = demand.div_pairs.iter().partition(|(d, _)| generated_in_job(*d));
        stocked.layers.push(super::Demand { div_pairs: s, ..demand.clone() });
        generated.layers.push(super::Demand { div_pairs: g, ..Default::default() });
    }
    (stocked, generated)
}

/// A kind as errors and statuses name it.
pub fn kind_name(kind: StoredKind) -> String {
    match kind {
        StoredKind::Triples => "triples".into(),
        StoredKind::DivPairs { divisor } => format!("division pairs for {divisor}"),
        StoredKind::BitTriples => "bit triples (in words of 64)".into(),
        StoredKind::EdaBits => "edaBits".into(),
        StoredKind::DaBits => "daBits".into(),
    }
}

/// Message 1, leader to every peer: the leader's usable batches of the
/// kinds the job needs, oldest first, as `(id, digest)` in text and hex.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Offer {
    batches: Vec<(String, String)>,
}

/// How a peer holds one offered batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum Held {
    /// Usable, with the leader's digest.
    Usable,
    /// Used or discarded here: to be discarded everywhere.
    Spent,
    /// Not here (its generation may still be storing it): left alone.
    Absent,
    /// Here with another description: an error, never a wrong answer.
    Differs,
}

/// Message 2, every peer to the leader.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Reply {
    /// One entry per offered batch, in the offer's order.
    held: Vec<Held>,
    /// This party's usable batches of the needed kinds that the offer left
    /// out, with when this party stored them (Unix seconds); the leader has
    /// them discarded if it has spent them, or if it does not hold them and
    /// they are older than [`ABSENT_GRACE`].
    unoffered: Vec<(String, u64)>,
}

/// Message 3, leader to every peer: what every party does now.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    /// Spent somewhere or held differently somewhere: discarded by all.
    discard: Vec<String>,
    /// The batches the job uses, in order; empty unless `Ready`.
    selected: Vec<String>,
    outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
enum Outcome {
    Ready,
    /// Not enough material of `kind` usable at every party yet; `last`
    /// when the leader stops waiting (its deadline).
    Short {
        kind: String,
        need: usize,
        have: usize,
        last: bool,
    },
    /// `batch` is held differently at `party` (the first peer to say so).
    Differs {
        batch: String,
        party: String,
    },
}

/// The result of one agreement.
#[derive(Debug)]
pub enum Taken {
    /// The job's material, per layer, and the batches it came from (public
    /// ids, in order).
    Ready(Prefetched, Vec<BatchId>),
    /// Too little usable material of `kind` at every party: nothing was
    /// consumed (batches spent elsewhere were discarded). `last` when the
    /// leader gives up waiting: every party then fails the job.
    Short { kind: String, need: usize, have: usize, last: bool },
}

/// Why taking material failed. Public: ids, kinds, parties, never shares.
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    #[error(transparent)]
    Transport(#[from] crate::transport::TransportError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("malformed preprocessing agreement message from party {party}: {reason}")]
    Malformed { party: String, reason: String },
    #[error(
        "batch {batch} is held differently by party {party} (digest mismatch); every party discarded it, and the \
         job stops rather than compute with it"
    )]
    Differs { batch: String, party: String },
    #[error("the preprocessing store is unavailable: {0}")]
    Unavailable(String),
}

fn encode<T: serde::Serialize>(message: &T) -> Vec<u8> {
    // Plain structs of strings, numbers and enums always serialize.
    serde_json::to_vec(message).unwrap_or_default()
}

fn malformed(mesh: &Mesh, peer: usize, reason: impl Into<String>) -> TakeError {
    TakeError::Malformed { party: mesh.party_name(peer).to_string(), reason: reason.into() }
}

async fn receive<T: serde::de::DeserializeOwned>(mesh: &Mesh, peer: usize, step: Step) -> Result<T, TakeError> {
    let bytes = mesh.recv(peer, step).await?;
    serde_json::from_slice(&bytes).map_err(|e| malformed(mesh, peer, e.to_string()))
}

fn parse_one(mesh: &Mesh, peer: usize, text: &str) -> Result<BatchId, TakeError> {
    parse_id(text).ok_or_else(|| malformed(mesh, peer, format!("{text:?} is not a batch id")))
}

fn parse_ids(mesh: &Mesh, peer: usize, texts: &[String]) -> Result<Vec<BatchId>, TakeError> {
    texts.iter().map(|t| parse_one(mesh, peer, t)).collect()
}

/// Run `f` on the store off the async threads ([`on_store`]).
async fn with_store<T: Send + 'static>(
    store: &Arc<Mutex<Store>>,
    f: impl FnOnce(&mut Store) -> Result<T, TakeError> + Send + 'static,
) -> Result<T, TakeError> {
    on_store(store, f).await.map_err(TakeError::Unavailable)?
}

/// Who the job is, as the store sees it.
#[derive(Clone)]
struct JobParties {
    federation: String,
    /// The job's parties, sorted by name.
    parties: Vec<String>,
    me: String,
    kinds: Vec<StoredKind>,
}

impl JobParties {
    /// Whether `meta` can serve this job: the same federation, the same
    /// parties (in any order: additive shares do not depend on it), this
    /// party's shares, a needed kind.
    fn serves(&self, meta: &BatchMeta) -> bool {
        // Party names are unique in a batch and a job: the same count and
        // every name found is the same set.
        meta.federation == self.federation
            && meta.parties.len() == self.parties.len()
            && meta.parties.iter().all(|p| self.parties.binary_search(p).is_ok())
            && meta.parties.get(meta.party) == Some(&self.me)
            && self.kinds.contains(&meta.kind)
    }

    /// This party's usable batches for the job, oldest first.
    fn usable(&self, store: &Store) -> Vec<BatchMeta> {
        let mut metas: Vec<BatchMeta> = store.batches().filter(|m| self.serves(m)).cloned().collect();
        metas.sort_by_key(|m| (m.created, m.id));
        metas.truncate(LIST_LIMIT);
        metas
    }
}

/// What one party ends an agreement with.
struct Agreed {
    decision: Decision,
    selected: Vec<BatchId>,
    /// This party's shares of the selected batches, in order.
    materials: Vec<StoredMaterial>,
}

/// Agree with the job's parties on the batches `plan` uses, consume them
/// (durably, before use) and assemble the job's layers; or learn that the
/// material is short. `last` (the leader's) ends the waiting: the leader
/// decides when a short pool fails the job, so every party stops together.
///
/// The job's party first by name leads, in three messages (`Step::Preprocess(r)`
/// for `r` = `round`, `round + 1`, `round + 2`; `round` advances by 3 so a
/// job can try again):
///
/// 1. the leader offers its usable batches of the needed kinds, oldest
///    first;
/// 2. each peer says how it holds each (usable with the same digest,
///    spent, absent, different) and lists its usable batches the offer
///    left out;
/// 3. the leader decides. Batches spent anywhere (among them the peers'
///    unoffered batches that the leader has spent) are discarded
///    everywhere, and so are batches missing at some party for longer than
///    [`ABSENT_GRACE`] (lost in a fill a crash interrupted). From the batches usable everywhere, and still usable now,
///    the oldest that cover every need are selected, and the leader
///    **consumes them before it sends the decision**; each peer then
///    discards and consumes the same.
///
/// Only the leader selects, under its store's lock, so concurrent jobs of
/// the same parties never pick the same batch. A party that crashed before
/// its own consume keeps the batch usable until the next agreement, which
/// discards it (step 2 reports it unoffered or spent). A batch is used
/// whole or not at all: the leftover items of the last batch of a kind are
/// discarded with it.
pub async fn take(
    mesh: &Mesh,
    store: &Arc<Mutex<Store>>,
    federation: &str,
    plan: &MaterialPlan,
    round: &mut u32,
    last: bool,
) -> Result<Taken, TakeError> {
    let needs = needs(plan);
    let mut parties: Vec<String> = (0..mesh.party_count()).map(|i| mesh.party_name(i).to_string()).collect();
    parties.sort();
    // The party first by name leads, whatever order the job lists them in,
    // so every job that could use a batch has the same leader.
    let leader = (0..mesh.party_count()).min_by_key(|&i| mesh.party_name(i)).unwrap_or(0);
    let job = JobParties {
        federation: federation.to_string(),
        parties,
        me: mesh.party_name(mesh.self_index()).to_string(),
        kinds: needs.iter().map(|n| n.kind).collect(),
    };
    let steps = [Step::Preprocess(*round), Step::Preprocess(*round + 1), Step::Preprocess(*round + 2)];
    *round += 3;
    let agreed = if mesh.self_index() == leader {
        lead(mesh, store, job, &needs, steps, last).await?
    } else {
        follow(mesh, store, job, leader, steps).await?
    };
    match agreed.decision.outcome {
        Outcome::Short { kind, need, have, last } => Ok(Taken::Short { kind, need, have, last }),
        Outcome::Differs { batch, party } => Err(TakeError::Differs { batch, party }),
        Outcome::Ready => {
            let layers = assemble(mesh.job(), plan, &agreed.selected, agreed.materials)
                .map_err(|reason| malformed(mesh, leader, reason))?;
            Ok(Taken::Ready(layers, agreed.selected))
        }
    }
}

/// The leader's side of [`take`].
async fn lead(
    mesh: &Mesh,
    store: &Arc<Mutex<Store>>,
    job: JobParties,
    needs: &[Need],
    steps: [Step; 3],
    last: bool,
) -> Result<Agreed, TakeError> {
    let offered = {
        let job = job.clone();
        with_store(store, move |store| Ok(job.usable(store))).await?
    };
    let offer = Offer { batches: offered.iter().map(|m| (id_text(m.id), hex(&m.digest()))).collect() };
    let offer = Arc::new(encode(&offer));
    let peers: Vec<usize> = (0..mesh.party_count()).filter(|&p| p != mesh.self_index()).collect();
    for &peer in &peers {
        mesh.send_shared(peer, steps[0], offer.clone()).await?;
    }
    // Fold the replies: what every peer holds usable, what must go.
    let mut usable_everywhere = vec![true; offered.len()];
    let mut discard = BTreeSet::new();
    let mut differs = None;
    let mut unoffered = BTreeSet::new();
    // Offered batches some peer does not hold (by index in the offer).
    let mut absent = BTreeSet::new();
    for &peer in &peers {
        let reply: Reply = receive(mesh, peer, steps[1]).await?;
        if reply.held.len() != offered.len() {
            let reason = format!("{} answers for {} offered batches", reply.held.len(), offered.len());
            return Err(malformed(mesh, peer, reason));
        }
        if reply.unoffered.len() > LIST_LIMIT {
            return Err(malformed(mesh, peer, format!("more than {LIST_LIMIT} unoffered batches")));
        }
        for (i, held) in reply.held.iter().enumerate() {
            usable_everywhere[i] &= *held == Held::Usable;
            match held {
                Held::Spent => {
                    discard.insert(offered[i].id);
                }
                Held::Differs => {
                    discard.insert(offered[i].id);
                    differs.get_or_insert_with(|| (id_text(offered[i].id), mesh.party_name(peer).to_string()));
                }
                Held::Absent => {
                    absent.insert(i);
                }
                Held::Usable => {}
            }
        }
        for (id, created) in &reply.unoffered {
            let id = parse_one(mesh, peer, id)?;
            unoffered.insert((id, *created));
        }
    }
    // Decide and consume under one hold of the store: a concurrent job's
    // agreement sees these batches gone.
    let needs = needs.to_vec();
    let (decision, selected, materials) = with_store(store, move |store| {
        let now = unix_now();
        let lost = |created: u64| now.saturating_sub(created) > ABSENT_GRACE.as_secs();
        // Spent here, or lost in a crashed fill (held by some, not here).
        discard.extend(
            unoffered
                .into_iter()
                .filter(|(id, created)| store.is_spent(*id) || (store.get(*id).is_none() && lost(*created)))
                .map(|(id, _)| id),
        );
        discard.extend(absent.into_iter().filter(|i| lost(offered[*i].created)).map(|i| offered[i].id));
        let mut selected = Vec::new();
        let outcome = match differs {
            Some((batch, party)) => Outcome::Differs { batch, party },
            None => select(store, &offered, &usable_everywhere, &discard, &needs, &mut selected, last),
        };
        for id in &discard {
            store.discard(*id)?;
        }
        let mut materials = Vec::with_capacity(selected.len());
        let chosen: BTreeSet<BatchId> = selected.iter().copied().collect();
        for meta in offered.iter().filter(|m| chosen.contains(&m.id)) {
            materials.push(store.consume(meta.id, &meta.digest())?);
        }
        let decision = Decision {
            discard: discard.iter().map(|id| id_text(*id)).collect(),
            selected: selected.iter().map(|id| id_text(*id)).collect(),
            outcome,
        };
        Ok((decision, selected, materials))
    })
    .await?;
    let message = Arc::new(encode(&decision));
    for &peer in &peers {
        mesh.send_shared(peer, steps[2], message.clone()).await?;
    }
    Ok(Agreed { decision, selected, materials })
}

/// The leader's choice: for each need in order, the oldest offered batches
/// of its kind usable everywhere (and still here, not discarded) until
/// they cover it. Appends to `selected` only when every need is covered.
fn select(
    store: &Store,
    offered: &[BatchMeta],
    usable_everywhere: &[bool],
    discard: &BTreeSet<BatchId>,
    needs: &[Need],
    selected: &mut Vec<BatchId>,
    last: bool,
) -> Outcome {
    let mut chosen = BTreeSet::new();
    for need in needs {
        let mut have = 0;
        for (meta, _) in offered.iter().zip(usable_everywhere).filter(|(m, usable)| {
            **usable && m.kind == need.kind && !discard.contains(&m.id) && store.get(m.id).is_some()
        }) {
            if have >= need.items {
                break;
            }
            have += meta.count;
            chosen.insert(meta.id);
        }
        if have < need.items {
            return Outcome::Short { kind: kind_name(need.kind), need: need.items, have, last };
        }
    }
    // In offer order, which is the order every party assembles in.
    selected.extend(offered.iter().map(|m| m.id).filter(|id| chosen.contains(id)));
    Outcome::Ready
}

/// A peer's side of [`take`].
async fn follow(
    mesh: &Mesh,
    store: &Arc<Mutex<Store>>,
    job: JobParties,
    leader: usize,
    steps: [Step; 3],
) -> Result<Agreed, TakeError> {
    let offer: Offer = receive(mesh, leader, steps[0]).await?;
    if offer.batches.len() > LIST_LIMIT {
        return Err(malformed(mesh, leader, format!("more than {LIST_LIMIT} offered batches")));
    }
    let mut offered = Vec::with_capacity(offer.batches.len());
    for (id, digest) in &offer.batches {
        let id = parse_one(mesh, leader, id)?;
        let digest =
            unhex::<32>(digest).ok_or_else(|| malformed(mesh, leader, format!("{digest:?} is not a digest")))?;
        offered.push((id, digest));
    }
    let reply = {
        let (job, offered) = (job.clone(), offered.clone());
        with_store(store, move |store| {
            let held = offered
                .iter()
                .map(|(id, digest)| match store.get(*id) {
                    Some(meta) if job.serves(meta) && meta.digest() == *digest => Held::Usable,
                    Some(_) => Held::Differs,
                    None if store.is_spent(*id) => Held::Spent,
                    None => Held::Absent,
                })
                .collect();
            let listed: BTreeSet<BatchId> = offered.iter().map(|(id, _)| *id).collect();
            let unoffered = job
                .usable(store)
                .iter()
                .filter(|m| !listed.contains(&m.id))
                .map(|m| (id_text(m.id), m.created))
                .collect();
            Ok(Reply { held, unoffered })
        })
        .await?
    };
    mesh.send(leader, steps[1], encode(&reply)).await?;
    let decision: Decision = receive(mesh, leader, steps[2]).await?;
    let discard = parse_ids(mesh, leader, &decision.discard)?;
    let selected = parse_ids(mesh, leader, &decision.selected)?;
    let digests: BTreeMap<BatchId, [u8; 32]> = offered.into_iter().collect();
    if let Some(id) = selected.iter().find(|id| !digests.contains_key(id)) {
        return Err(malformed(mesh, leader, format!("selected batch {id} was not offered")));
    }
    if decision.outcome != Outcome::Ready && !selected.is_empty() {
        return Err(malformed(mesh, leader, "batches selected for a job that does not run"));
    }
    let materials = {
        let selected = selected.clone();
        with_store(store, move |store| {
            for id in &discard {
                store.discard(*id)?;
            }
            selected.iter().map(|id| Ok(store.consume(*id, &digests[id])?)).collect()
        })
        .await?
    };
    Ok(Agreed { decision, selected, materials })
}

/// The tag of a layer assembled from stored batches: the first 8 bytes of
/// `SHA-256("cohort/pool/layer-tag/v1" || job || layer || batch ids)`.
fn layer_tag(job: JobId, layer: usize, batches: &[BatchId]) -> MaterialTag {
    let mut ctx = ::ring::digest::Context::new(&::ring::digest::SHA256);
    ctx.update(b"cohort/pool/layer-tag/v1");
    ctx.update(&job.0);
    ctx.update(&(layer as u64).to_le_bytes());
    for id in batches {
        ctx.update(&id.session);
        ctx.update(&id.seq.to_le_bytes());
    }
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&ctx.finish().as_ref()[..8]);
    MaterialTag(u64::from_le_bytes(tag))
}

/// One kind's items from consecutive batches, handed out in order: `N`
/// parts of one word per item each.
struct Stream<const N: usize> {
    parts: [Vec<u64>; N],
    next: usize,
}

impl<const N: usize> Default for Stream<N> {
    fn default() -> Self {
        Stream { parts: std::array::from_fn(|_| Vec::new()), next: 0 }
    }
}

impl<const N: usize> Stream<N> {
    fn push(&mut self, parts: [&[u64]; N]) {
        for (into, from) in self.parts.iter_mut().zip(parts) {
            into.extend_from_slice(from);
        }
    }

    fn take(&mut self, n: usize) -> Result<[Vec<u64>; N], String> {
        let end = self.next + n;
        let held = self.parts.first().map_or(0, Vec::len);
        if end > held {
            return Err(format!("the selected batches hold {held} items, the plan needs more"));
        }
        let out = self.parts.each_ref().map(|p| p[self.next..end].to_vec());
        self.next = end;
        Ok(out)
    }

    fn shares(&mut self, n: usize) -> Result<[Share; N], String> {
        Ok(self.take(n)?.map(Share::new))
    }
}

/// A bundle kind's elements (edaBits' bit bundles, daBits' bits) from
/// consecutive batches, handed out in order.
#[derive(Default)]
struct BundleStream {
    parts: Vec<Bits>,
    all: Option<Bits>,
    next: usize,
}

impl BundleStream {
    fn take(&mut self, n: usize) -> Result<Bits, String> {
        if self.all.is_none() {
            let parts: Vec<&Bits> = self.parts.iter().collect();
            self.all = Some(Bits::concat_elements(&parts));
            self.parts.clear();
        }
        let all = self.all.as_ref().ok_or("no bundle")?;
        let end = self.next + n;
        if end > all.len() {
            return Err(format!("the selected batches hold {} bundled items, the plan needs more", all.len()));
        }
        let out = all.slice(self.next..end);
        self.next = end;
        Ok(out)
    }
}

impl<const N: usize> Drop for Stream<N> {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.parts.iter_mut().for_each(Zeroize::zeroize);
    }
}

/// Cut the consumed batches (in selection order) into the plan's layers.
fn assemble(
    job: JobId,
    plan: &MaterialPlan,
    selected: &[BatchId],
    materials: Vec<StoredMaterial>,
) -> Result<Prefetched, String> {
    let mut triples = Stream::<3>::default();
    let mut pairs: BTreeMap<u64, Stream<3>> = BTreeMap::new();
    // Bit triples by word; edaBits' and daBits' ring shares by item, their
    // bundles apart.
    let mut bit_triples = Stream::<3>::default();
    let (mut eda_r, mut eda_bits) = (Stream::<1>::default(), BundleStream::default());
    let (mut da_arith, mut da_bits) = (Stream::<1>::default(), BundleStream::default());
    for material in materials {
        match material {
            StoredMaterial::Triples(t) => triples.push([t.a.expose(), t.b.expose(), t.c.expose()]),
            StoredMaterial::DivPairs(d) => {
                pairs.entry(d.divisor).or_default().push([d.r.expose(), d.msb.expose(), d.q.expose()])
            }
            StoredMaterial::BitTriples(t) => bit_triples.push([t.a.words(), t.b.words(), t.c.words()]),
            StoredMaterial::EdaBits(e) => {
                eda_r.push([e.r.expose()]);
                eda_bits.parts.push(e.bits);
            }
            StoredMaterial::DaBits(d) => {
                da_arith.push([d.arith.expose()]);
                da_bits.parts.push(d.bits);
            }
        }
    }
    let plane = |words: Vec<u64>, n: usize| {
        Bits::from_words(1, 64 * n, words).ok_or_else(|| "a bit-triple plane of the wrong size".to_string())
    };
    let mut layers = Vec::with_capacity(plan.layers.len());
    for (index, demand) in plan.layers.iter().enumerate() {
        let [a, b, c] = triples.shares(demand.triples)?;
        let mut div_pairs = Vec::with_capacity(demand.div_pairs.len());
        for &(divisor, count) in &demand.div_pairs {
            let stream = pairs.get_mut(&divisor).ok_or_else(|| format!("no division pairs for {divisor} selected"))?;
            let [r, msb, q] = stream.shares(count)?;
            div_pairs.push(DivPairShares { divisor, r, msb, q, g: Share::new(Vec::new()) });
        }
        let tag = layer_tag(job, index, selected);
        let mut layer = LayerMaterial::arithmetic(tag, TripleShares { a, b, c }, div_pairs);
        let (w, e, d) = (demand.bit_triple_words, demand.edabits, demand.dabits);
        if w > 0 {
            let [a, b, c] = bit_triples.take(w)?;
            layer.bit_triples = BitTripleShares { a: plane(a, w)?, b: plane(b, w)?, c: plane(c, w)? };
        }
        if e > 0 {
            let [r] = eda_r.shares(e)?;
            layer.edabits = EdaBitShares { r, bits: eda_bits.take(e)? };
        }
        if d > 0 {
            let [arith] = da_arith.shares(d)?;
            layer.dabits = DaBitShares { arith, bits: da_bits.take(d)? };
        }
        layers.push((index, layer));
    }
    Ok(Prefetched::from_layers(layers))
}
