//! A PreprocessingPool's status, computed purely from the validation
//! outcome, the observed dealer StatefulSet and the time.
//!
//! Honest about what a dealer pool is: a trusted dealer generates material
//! **on demand, per job**, so there is no stock to count.
//! `status.available` and `status.generationRate` stay empty and
//! `BelowWatermark` is `False` with reason `OnDemand`. In mode `ot` the
//! worker shards keep the stock: `available` and `generationRate` are
//! their sums, `readyReplicas` the shards that answered.
//!
//! | condition | status, reason | when |
//! |---|---|---|
//! | `Ready` | `True`, `DealerReady` | the hosted dealer's pod is ready |
//! | | `True`, `RemoteDealer` | a remote dealer, consistent with the MpcCluster's `spec.dealer` (reachability is the workers' to find out when they draw) |
//! | | `False`, `Creating` | the dealer StatefulSet does not exist yet |
//! | | `False`, `DealerNotReady` | its pod is not ready (starting, or failing: see the pod) |
//! | | `True`, `PartiesGenerate` | mode `ot`: every worker shard reported its pool |
//! | | `False`, `WorkersUnreachable` | mode `ot`: a worker shard's control API did not answer (the message names it) |
//! | | `False`, an [`Error::reason`] | the pool cannot run: `InvalidSpec`, `DealerMismatch`, `ClusterInvalid`, `MaterialUnavailable`, `IssueFailed`; the message names the field |
//! | `Progressing` | `True`, `Creating` / `Rolling` | the StatefulSet is being created or rolled |
//! | | `False`, `AsExpected` | converged (always for a remote dealer) |
//! | | `False`, an error reason | nothing is done until the spec is fixed |
//! | `Degraded` | `True`, an error reason | the pool cannot run |
//! | | `False`, `AsExpected` | otherwise |
//! | `BelowWatermark` | `False`, `OnDemand` | dealer mode: material is dealt per job, nothing is stocked |
//! | | `True`, `Filling` | mode `ot`: a shard holds less than a low watermark (the message names it) |
//! | | `False`, `Stocked` | mode `ot`: every shard is at or above its low watermarks |
//! | | `Unknown`, an error reason | the pool cannot run |

use cohort_crds::PreprocessingPool;
use cohort_crds::conditions::{ConditionStatus, set_condition, types};
use cohort_crds::pool::PreprocessingPoolStatus;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use std::collections::BTreeMap;

use cohort_crds::pool::MaterialKind;
use cohort_worker::service::api::{MaterialKind as WorkerKind, PoolStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::{Dealer, Error, Pool};

/// Condition reasons of a pool that runs (errors use [`Error::reason`]).
pub mod reasons {
    pub const DEALER_READY: &str = "DealerReady";
    pub const REMOTE_DEALER: &str = "RemoteDealer";
    pub const CREATING: &str = "Creating";
    pub const ROLLING: &str = "Rolling";
    pub const DEALER_NOT_READY: &str = "DealerNotReady";
    pub const AS_EXPECTED: &str = "AsExpected";
    pub const ON_DEMAND: &str = "OnDemand";
    /// Mode `ot`: every worker shard reported its pool.
    pub const PARTIES_GENERATE: &str = "PartiesGenerate";
    /// Mode `ot`: a worker shard's control API did not answer.
    pub const WORKERS_UNREACHABLE: &str = "WorkersUnreachable";
    /// Mode `ot`: a shard is below a low watermark (being filled).
    pub const FILLING: &str = "Filling";
    /// Mode `ot`: every shard is at or above its low watermarks.
    pub const STOCKED: &str = "Stocked";
}

/// The message of `BelowWatermark` in dealer mode.
pub const ON_DEMAND_MESSAGE: &str = "a trusted dealer deals material on demand for each job, so no stock is kept \
                                     and none is counted (status.available stays empty); stored material and \
                                     watermarks arrive with the OT mode's material store";

/// What the controller observed of the hosted dealer's StatefulSet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DealerObserved {
    /// `status.readyReplicas`.
    pub ready_replicas: i32,
    /// The StatefulSet controller has seen the latest spec and every
    /// replica runs the current revision.
    pub up_to_date: bool,
}

impl DealerObserved {
    /// Read a StatefulSet as found.
    pub fn from_stateful_set(sts: &StatefulSet) -> DealerObserved {
        let desired = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let Some(status) = sts.status.as_ref() else { return DealerObserved::default() };
        let seen = match (status.observed_generation, sts.metadata.generation) {
            (Some(observed), Some(generation)) => observed >= generation,
            (_, None) => true,
            (None, Some(_)) => false,
        };
        let revision = match (&status.current_revision, &status.update_revision) {
            (Some(current), Some(update)) => current == update,
            _ => true,
        };
        DealerObserved {
            ready_replicas: status.ready_replicas.unwrap_or(0),
            up_to_date: seen && revision && status.updated_replicas.unwrap_or(0) >= desired,
        }
    }
}

/// What the controller read of each worker shard's pool (`GET /v1/pool`)
/// in mode `ot`, in shard order; `Err` says why a shard did not answer.
pub type WorkersObserved = Vec<Result<PoolStatus, String>>;

/// The pool's status: `checked` is what [`Pool::from_resource`] (or a
/// later step: certificates, [`super::desired::build`]) returned,
/// `dealer` the hosted dealer's StatefulSet as observed (`None`: not
/// found; ignored for a remote dealer), `workers` the worker shards' pools
/// in mode `ot`. Conditions start from the stored ones, so
/// `lastTransitionTime` moves only when a status changes.
pub fn status(
    pool: &PreprocessingPool,
    checked: Result<&Pool<'_>, &Error>,
    dealer: Option<DealerObserved>,
    workers: &WorkersObserved,
    now: &Time,
) -> PreprocessingPoolStatus {
    let generation = pool.metadata.generation;
    let mut conditions = pool.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let mut set = |type_: &str, status: ConditionStatus, reason: &str, message: &str| {
        set_condition(&mut conditions, type_, status, reason, message, generation, now);
    };
    let mut ready_replicas = None;
    match checked {
        Err(e) => {
            let (reason, message) = (e.reason(), e.to_string());
            set(types::READY, ConditionStatus::False, reason, &message);
            set(types::PROGRESSING, ConditionStatus::False, reason, "nothing is done until the spec is fixed");
            set(types::DEGRADED, ConditionStatus::True, reason, &message);
            set(types::BELOW_WATERMARK, ConditionStatus::Unknown, reason, "the pool cannot run");
        }
        Ok(p) if p.dealer.is_none() => {
            let stock = Stock::of(p, workers);
            return PreprocessingPoolStatus {
                conditions: ot_conditions(conditions, p, &stock, generation, now),
                observed_generation: generation,
                available: stock.available,
                generation_rate: stock.rate,
                ready_replicas: Some(stock.answered),
            };
        }
        Ok(p) => {
            match &p.dealer {
                // Handled above: mode ot.
                None => {}
                Some(Dealer::Remote { name, endpoint }) => {
                    let message = format!(
                        "material is dealt on demand by the remote trusted dealer {name} at {endpoint}, the \
                         MpcCluster's spec.dealer; the workers check it when they draw"
                    );
                    set(types::READY, ConditionStatus::True, reasons::REMOTE_DEALER, &message);
                    set(types::PROGRESSING, ConditionStatus::False, reasons::AS_EXPECTED, "");
                }
                Some(Dealer::Hosted { name, .. }) => {
                    let parties = p.cluster.spec.parties.len();
                    let ready = dealer.map_or(0, |d| d.ready_replicas);
                    ready_replicas = Some(ready);
                    match dealer {
                        None => {
                            let m = format!("creating the dealer {name}'s StatefulSet {}", p.names().stateful_set());
                            set(types::READY, ConditionStatus::False, reasons::CREATING, &m);
                            set(types::PROGRESSING, ConditionStatus::True, reasons::CREATING, &m);
                        }
                        Some(d) => {
                            if d.ready_replicas >= 1 {
                                let m = format!(
                                    "the hosted trusted dealer {name} serves the {parties} parties of the \
                                     federation; material is dealt on demand per job"
                                );
                                set(types::READY, ConditionStatus::True, reasons::DEALER_READY, &m);
                            } else {
                                let m = format!("the dealer pod {} is not ready", p.names().pod());
                                set(types::READY, ConditionStatus::False, reasons::DEALER_NOT_READY, &m);
                            }
                            if d.up_to_date {
                                set(types::PROGRESSING, ConditionStatus::False, reasons::AS_EXPECTED, "");
                            } else {
                                let m = format!("rolling the dealer pod {}", p.names().pod());
                                set(types::PROGRESSING, ConditionStatus::True, reasons::ROLLING, &m);
                            }
                        }
                    }
                }
            }
            set(types::DEGRADED, ConditionStatus::False, reasons::AS_EXPECTED, "");
            set(types::BELOW_WATERMARK, ConditionStatus::False, reasons::ON_DEMAND, ON_DEMAND_MESSAGE);
        }
    }
    PreprocessingPoolStatus {
        conditions,
        observed_generation: generation,
        available: Default::default(),
        generation_rate: Default::default(),
        ready_replicas,
    }
}

/// An `ot` pool's stock, summed over the worker shards.
struct Stock {
    /// Items per CRD kind (`beaver-triple`, `division-pair`).
    available: BTreeMap<String, i64>,
    rate: BTreeMap<String, i64>,
    answered: i32,
    /// The first shard that did not answer, and why.
    unreachable: Option<(usize, String)>,
    /// The first shard below a low watermark: (shard, kind, items, low).
    below: Option<(usize, &'static str, i64, i64)>,
}

impl Stock {
    fn of(p: &Pool<'_>, workers: &WorkersObserved) -> Stock {
        let mut stock =
            Stock { available: BTreeMap::new(), rate: BTreeMap::new(), answered: 0, unreachable: None, below: None };
        let mut rates: BTreeMap<String, f64> = BTreeMap::new();
        for (shard, observed) in workers.iter().enumerate() {
            let pool = match observed {
                Ok(pool) => pool,
                Err(e) => {
                    stock.unreachable.get_or_insert((shard, e.clone()));
                    continue;
                }
            };
            stock.answered += 1;
            for target in &p.spec.material {
                // The workers count bit triples in words of 64; the pool
                // in triples.
                let (kind, per_item) = match target.kind {
                    MaterialKind::BeaverTriple => (WorkerKind::Triples, 1),
                    MaterialKind::DivisionPair => (WorkerKind::DivPairs, 1),
                    MaterialKind::BitTriple => (WorkerKind::BitTriples, 64),
                    MaterialKind::EdaBit => (WorkerKind::EdaBits, 1),
                    MaterialKind::DaBit => (WorkerKind::DaBits, 1),
                };
                let held = pool.kinds.iter().filter(|k| k.kind == kind);
                let items: i64 = held
                    .clone()
                    .map(|k| i64::try_from(k.items).unwrap_or(i64::MAX).saturating_mul(per_item))
                    .fold(0, i64::saturating_add);
                *stock.available.entry(target.kind.as_str().to_string()).or_default() += items;
                *rates.entry(target.kind.as_str().to_string()).or_default() +=
                    held.map(|k| k.generated_per_second).sum::<f64>() * per_item as f64;
                if items < target.low_watermark {
                    stock.below.get_or_insert((shard, target.kind.as_str(), items, target.low_watermark));
                }
            }
        }
        stock.rate = rates.into_iter().map(|(k, r)| (k, r.round() as i64)).collect();
        stock
    }
}

/// The conditions of an `ot` pool: the worker shards generate and keep the
/// material (each with its peers' same shard).
fn ot_conditions(
    mut conditions: Vec<Condition>,
    p: &Pool<'_>,
    stock: &Stock,
    generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut set = |type_: &str, status: ConditionStatus, reason: &str, message: &str| {
        set_condition(&mut conditions, type_, status, reason, message, generation, now);
    };
    let shards = p.cluster.shards;
    match &stock.unreachable {
        Some((shard, e)) => {
            let m = format!("worker shard {shard} did not report its pool: {e}");
            set(types::READY, ConditionStatus::False, reasons::WORKERS_UNREACHABLE, &m);
            set(types::BELOW_WATERMARK, ConditionStatus::Unknown, reasons::WORKERS_UNREACHABLE, &m);
        }
        None => {
            let m = format!(
                "the parties generate the material with oblivious transfer, no trusted party; each of the {shards} \
                 worker shards keeps its own pool"
            );
            set(types::READY, ConditionStatus::True, reasons::PARTIES_GENERATE, &m);
            match stock.below {
                Some((shard, kind, items, low)) => {
                    let m = format!(
                        "worker shard {shard} holds {items} {kind} items, below the low watermark {low}; the \
                         federation's fill leader is filling it"
                    );
                    set(types::BELOW_WATERMARK, ConditionStatus::True, reasons::FILLING, &m);
                }
                None => set(types::BELOW_WATERMARK, ConditionStatus::False, reasons::STOCKED, ""),
            }
        }
    }
    set(types::PROGRESSING, ConditionStatus::False, reasons::AS_EXPECTED, "");
    set(types::DEGRADED, ConditionStatus::False, reasons::AS_EXPECTED, "");
    conditions
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;
    use cohort_crds::conditions::find_condition;
    use cohort_crds::pool::GeneratorMode;
    use k8s_openapi::api::apps::v1::{StatefulSetSpec, StatefulSetStatus};
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).expect("valid timestamp"))
    }

    fn cond(s: &PreprocessingPoolStatus, t: &str) -> (String, String) {
        let c = find_condition(&s.conditions, t).unwrap_or_else(|| panic!("{t} missing"));
        (c.status.clone(), c.reason.clone())
    }

    fn pair(status: &str, reason: &str) -> (String, String) {
        (status.to_string(), reason.to_string())
    }

    #[test]
    fn a_hosted_dealer_is_ready_when_its_pod_is_and_counts_no_stock() {
        let (p, c) = (fixtures::hosted(), fixtures::cluster(1));
        let pool = Pool::from_resource(&p, &c).expect("valid");
        let creating = status(&p, Ok(&pool), None, &vec![], &at(10));
        assert_eq!(cond(&creating, "Ready"), pair("False", "Creating"));
        assert_eq!(cond(&creating, "Progressing"), pair("True", "Creating"));
        assert_eq!(cond(&creating, "Degraded"), pair("False", "AsExpected"));
        assert_eq!(cond(&creating, "BelowWatermark"), pair("False", "OnDemand"));
        assert_eq!(creating.ready_replicas, Some(0));
        assert_eq!(creating.observed_generation, Some(2));

        let starting = DealerObserved { ready_replicas: 0, up_to_date: true };
        let s = status(&p, Ok(&pool), Some(starting), &vec![], &at(20));
        assert_eq!(cond(&s, "Ready"), pair("False", "DealerNotReady"));
        assert!(find_condition(&s.conditions, "Ready").expect("ready").message.contains("default-dealer-0"));

        let mut stored = p.clone();
        stored.status = Some(s);
        let ready = DealerObserved { ready_replicas: 1, up_to_date: true };
        let s = status(&stored, Ok(&pool), Some(ready), &vec![], &at(30));
        assert_eq!(cond(&s, "Ready"), pair("True", "DealerReady"));
        assert_eq!(cond(&s, "Progressing"), pair("False", "AsExpected"));
        assert_eq!(s.ready_replicas, Some(1));
        assert!(s.available.is_empty() && s.generation_rate.is_empty(), "no invented stock");
        let below = find_condition(&s.conditions, "BelowWatermark").expect("below");
        assert!(below.message.contains("on demand") && below.message.contains("OT mode"), "{}", below.message);
        // Unchanged statuses keep their transition time.
        assert_eq!(below.last_transition_time, at(20));
        assert_eq!(find_condition(&s.conditions, "Ready").expect("ready").last_transition_time, at(30));

        let rolling = DealerObserved { ready_replicas: 1, up_to_date: false };
        let s = status(&p, Ok(&pool), Some(rolling), &vec![], &at(40));
        assert_eq!(cond(&s, "Ready"), pair("True", "DealerReady"));
        assert_eq!(cond(&s, "Progressing"), pair("True", "Rolling"));
    }

    #[test]
    fn a_remote_dealer_is_ready_when_consistent() {
        let (p, c) = (fixtures::remote(), fixtures::cluster(1));
        let pool = Pool::from_resource(&p, &c).expect("valid");
        let s = status(&p, Ok(&pool), Some(DealerObserved::default()), &vec![], &at(1));
        assert_eq!(cond(&s, "Ready"), pair("True", "RemoteDealer"));
        assert!(find_condition(&s.conditions, "Ready").expect("r").message.contains("dealer.neutral.example:7500"));
        assert_eq!(cond(&s, "Progressing"), pair("False", "AsExpected"));
        assert_eq!(cond(&s, "Degraded"), pair("False", "AsExpected"));
        assert_eq!(cond(&s, "BelowWatermark"), pair("False", "OnDemand"));
        assert_eq!(s.ready_replicas, None, "no local generator");
    }

    #[test]
    fn an_ot_pool_reports_what_the_worker_shards_hold() {
        use cohort_worker::service::api::{MaterialKind as WorkerKind, PoolKind, PoolStatus};
        let c = fixtures::cluster(2);
        let mut ot = fixtures::remote();
        ot.spec.generator.mode = GeneratorMode::Ot;
        ot.spec.generator.dealer = None;
        ot.spec.material.push(cohort_crds::pool::MaterialTarget {
            kind: MaterialKind::BitTriple,
            target: 6400,
            low_watermark: 640,
        });
        let pool = Pool::from_resource(&ot, &c).expect("valid");
        let low = ot.spec.material[0].low_watermark;
        let shard = |items: usize| PoolStatus {
            kinds: vec![
                PoolKind { kind: WorkerKind::Triples, divisor: None, batches: 1, items, generated_per_second: 1000.4 },
                // Words of 64 bit triples at the worker: 20 words, 1280.
                PoolKind {
                    kind: WorkerKind::BitTriples,
                    divisor: None,
                    batches: 1,
                    items: 20,
                    generated_per_second: 2.0,
                },
            ],
            oldest_age_seconds: Some(3.0),
            filling: None,
        };
        let stocked = status(&ot, Ok(&pool), None, &vec![Ok(shard(low as usize)), Ok(shard(low as usize + 5))], &at(1));
        assert_eq!(cond(&stocked, "Ready"), pair("True", "PartiesGenerate"));
        assert_eq!(cond(&stocked, "BelowWatermark"), pair("False", "Stocked"));
        assert_eq!(stocked.available["beaver-triple"], 2 * low + 5, "summed over the shards");
        assert_eq!(stocked.generation_rate["beaver-triple"], 2001);
        assert_eq!(stocked.available["bit-triple"], 2 * 1280, "bit triples counted in triples");
        assert_eq!(stocked.generation_rate["bit-triple"], 2 * 128);
        assert_eq!(stocked.ready_replicas, Some(2));

        let below = status(&ot, Ok(&pool), None, &vec![Ok(shard(low as usize)), Ok(shard(0))], &at(2));
        assert_eq!(cond(&below, "BelowWatermark"), pair("True", "Filling"));
        let message = &find_condition(&below.conditions, "BelowWatermark").expect("b").message;
        assert!(message.starts_with("worker shard 1 holds 0 beaver-triple items"), "{message}");

        let lost = status(&ot, Ok(&pool), None, &vec![Ok(shard(0)), Err("connection refused".into())], &at(3));
        assert_eq!(cond(&lost, "Ready"), pair("False", "WorkersUnreachable"));
        assert_eq!(cond(&lost, "BelowWatermark"), pair("Unknown", "WorkersUnreachable"));
        let message = &find_condition(&lost.conditions, "Ready").expect("r").message;
        assert_eq!(message, "worker shard 1 did not report its pool: connection refused");
        assert_eq!(lost.ready_replicas, Some(1));
    }

    #[test]
    fn errors_surface_with_their_reason_and_field() {
        let c = fixtures::cluster(1);
        let mut mismatch = fixtures::remote();
        mismatch.spec.generator.dealer.as_mut().expect("d").name = Some("other".into());
        let e = Pool::from_resource(&mismatch, &c).expect_err("mismatch");
        let s = status(&mismatch, Err(&e), None, &vec![], &at(1));
        assert_eq!(cond(&s, "Ready"), pair("False", "DealerMismatch"));
        assert!(
            find_condition(&s.conditions, "Degraded").expect("d").message.starts_with("spec.generator.dealer.name")
        );
        assert_eq!(s.ready_replicas, None);
    }

    #[test]
    fn observed_stateful_sets_are_read_conservatively() {
        let mut sts = StatefulSet {
            spec: Some(StatefulSetSpec { replicas: Some(1), ..Default::default() }),
            ..Default::default()
        };
        sts.metadata.generation = Some(3);
        assert_eq!(DealerObserved::from_stateful_set(&sts), DealerObserved::default());
        sts.status = Some(StatefulSetStatus {
            observed_generation: Some(2),
            ready_replicas: Some(1),
            updated_replicas: Some(1),
            current_revision: Some("r1".into()),
            update_revision: Some("r1".into()),
            ..Default::default()
        });
        assert_eq!(
            DealerObserved::from_stateful_set(&sts),
            DealerObserved { ready_replicas: 1, up_to_date: false },
            "the controller has not seen generation 3"
        );
        sts.status.as_mut().expect("s").observed_generation = Some(3);
        assert!(DealerObserved::from_stateful_set(&sts).up_to_date);
        sts.status.as_mut().expect("s").update_revision = Some("r2".into());
        assert!(!DealerObserved::from_stateful_set(&sts).up_to_date, "a revision is rolling");
    }
}
