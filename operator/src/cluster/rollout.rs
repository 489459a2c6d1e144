//! The partitioned rollout of the worker StatefulSet, decided purely.
//!
//! A StatefulSet with `updateStrategy: RollingUpdate` replaces only the
//! pods whose ordinal is at least `partition`. The operator owns the
//! partition: when the desired pod template changes (a new image, protocol
//! version or configuration), it applies the template with the partition
//! at the shard count — nothing moves — and then walks the shards from the
//! highest ordinal down, one at a time:
//!
//! 1. **Draining**: `POST /v1/drain` on the shard's control API, then wait
//!    until its health says `draining` with no active job, or until
//!    `spec.rollout.drainTimeout` passes (in-flight jobs then end as at
//!    their own timeout). A shard whose control API does not answer has
//!    nothing to protect and is replaced at once (that is how a broken
//!    shard is rolled back).
//! 2. **Updating**: lower the partition to the shard; the StatefulSet
//!    controller replaces its pod. Wait until the StatefulSet has observed
//!    the template, counts the shard as updated, every shard is ready, and
//!    the shard's control API answers, not draining, running the expected
//!    protocol (`spec.protocol.name`) and offering the expected version. Past `spec.rollout.shardTimeout` the rollout is
//!    **Paused**: the partition stays, no other shard is touched; it
//!    resumes if the shard recovers, and a reverted spec rolls back.
//! 3. The next shard, until the lowest one that does not already run the
//!    target; then **Complete**, partition 0.
//!
//! Rolling back is the same walk toward the old template: the shards that
//! still run it (the low ordinals, counted when the rollout starts as
//! `alreadyUpdated`) are left alone, the others are drained and replaced
//! from the highest down.
//!
//! [`step`] is a function of the spec-derived [`Target`], the observed
//! StatefulSet, the observed health of the shard in question, the prior
//! [`RolloutStatus`] and the time. The controller probes
//! ([`shard_to_probe`]), steps, performs the one side effect the decision
//! asks for (a drain), and applies the StatefulSet with its partition.

use std::time::Duration;

use cohort_crds::cluster::{RolloutPhase, RolloutStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// What the rollout moves toward, from the spec and the desired objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target<'a> {
    /// SHA-256 of the desired pod template.
    pub hash: &'a str,
    /// `spec.shards`.
    pub shards: i32,
    /// `spec.protocol.name`: a replaced shard must report it as the
    /// protocol it runs (a change of protocol rolls like a version).
    pub protocol: &'a str,
    /// `spec.protocol.version`: a replaced shard must offer it as its
    /// highest version.
    pub protocol_version: u32,
    pub shard_timeout: Duration,
    pub drain_timeout: Duration,
}

/// The StatefulSet as stored before this reconcile's apply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedSet {
    /// Its `cohort.dev/template-hash` annotation: the template in its spec.
    pub template_hash: Option<String>,
    pub generation: Option<i64>,
    /// `status.observedGeneration`.
    pub observed_generation: Option<i64>,
    /// `status.readyReplicas`.
    pub ready_replicas: i32,
    /// `status.updatedReplicas`: pods at the update revision.
    pub updated_replicas: i32,
}

impl ObservedSet {
    /// Whether the StatefulSet controller has seen the stored spec (so its
    /// counts describe the stored template).
    fn observed(&self) -> bool {
        self.generation.is_some() && self.observed_generation >= self.generation
    }
}

/// One shard's control API, as probed this reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardHealth {
    /// Not asked this reconcile.
    NotProbed,
    /// No answer (connection refused, TLS failure, timeout): the reason.
    Unreachable(String),
    /// `GET /v1/health` answered. `protocol` is the name it runs.
    Up { draining: bool, active_jobs: usize, protocol: String, min_version: u32, max_version: u32 },
}

/// An event to record about the rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// What to do this reconcile.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// `spec.updateStrategy.rollingUpdate.partition` to apply.
    pub partition: i32,
    /// The rollout status to record.
    pub rollout: RolloutStatus,
    /// Ask this shard to drain (`POST /v1/drain`; idempotent).
    pub drain: Option<usize>,
    /// An event worth recording (a transition).
    pub note: Option<Note>,
}

impl Decision {
    /// Whether the rollout still has work to do (requeue soon).
    pub fn in_progress(&self) -> bool {
        self.rollout.phase != RolloutPhase::Complete
    }
}

/// The shard whose health [`step`] needs this reconcile, if any.
pub fn shard_to_probe(target: &Target<'_>, prior: Option<&RolloutStatus>) -> Option<usize> {
    let prior = prior.filter(|r| r.target_hash == target.hash)?;
    match prior.phase {
        RolloutPhase::Draining | RolloutPhase::Updating | RolloutPhase::Paused => {
            prior.current_shard.and_then(|s| usize::try_from(s).ok())
        }
        RolloutPhase::Starting | RolloutPhase::Complete => None,
    }
}

fn elapsed(since: Option<&Time>, now: &Time) -> Duration {
    let secs = since.map_or(0, |t| now.0.as_second().saturating_sub(t.0.as_second()));
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 60, s % 60) {
        (0, s) => format!("{s}s"),
        (m, 0) => format!("{m}m"),
        (m, s) => format!("{m}m{s}s"),
    }
}

/// Decide the next step of the rollout. Pure: the clock is `now`.
pub fn step(
    target: &Target<'_>,
    observed: Option<&ObservedSet>,
    health: &ShardHealth,
    prior: Option<&RolloutStatus>,
    now: &Time,
) -> Decision {
    let n = target.shards.max(1);
    let complete = |prior: Option<&RolloutStatus>, message: &str| RolloutStatus {
        phase: RolloutPhase::Complete,
        target_hash: target.hash.to_string(),
        current_shard: None,
        shards_updated: prior.map_or(0, |p| p.shards_updated),
        already_updated: prior.map_or(0, |p| p.already_updated),
        started_at: prior.and_then(|p| p.started_at.clone()),
        step_started_at: None,
        message: Some(message.to_string()),
    };
    // A StatefulSet about to be created starts every pod from the target.
    let Some(set) = observed else {
        return Decision {
            partition: 0,
            rollout: complete(None, "every shard was created from the current template"),
            drain: None,
            note: None,
        };
    };
    let prior = prior.filter(|p| p.target_hash == target.hash);
    let Some(prior) = prior else {
        // No record of this template: a StatefulSet that already carries it
        // with no rollout recorded (created by this operator before it
        // recorded rollouts) is at rest; anything else starts a rollout.
        return Decision {
            partition: n,
            rollout: RolloutStatus {
                phase: RolloutPhase::Starting,
                target_hash: target.hash.to_string(),
                current_shard: None,
                shards_updated: 0,
                already_updated: 0,
                started_at: Some(now.clone()),
                step_started_at: Some(now.clone()),
                message: Some("waiting for the StatefulSet controller to see the new template".into()),
            },
            drain: None,
            note: Some(Note {
                warning: false,
                reason: "RolloutStarted",
                message: format!("rolling a new worker pod template over {n} shards, highest first"),
            }),
        };
    };
    let mut next = prior.clone();
    let current = prior.current_shard.unwrap_or(n - 1).clamp(0, n - 1);
    match prior.phase {
        RolloutPhase::Complete => Decision { partition: 0, rollout: prior.clone(), drain: None, note: None },
        RolloutPhase::Starting => {
            if set.template_hash.as_deref() != Some(target.hash) || !set.observed() {
                return Decision { partition: n, rollout: next, drain: None, note: None };
            }
            // The low ordinals that already run the target stay as they are.
            let already = set.updated_replicas.clamp(0, n);
            next.already_updated = already;
            if already >= n {
                let rollout = complete(Some(&next), "every shard already runs the current template");
                return Decision { partition: 0, rollout, drain: None, note: None };
            }
            enter_draining(next, n - 1, now)
        }
        RolloutPhase::Draining => {
            let waited = elapsed(prior.step_started_at.as_ref(), now);
            let proceed = match health {
                ShardHealth::Up { draining: true, active_jobs: 0, .. } => Some(format!("shard {current} drained")),
                ShardHealth::Unreachable(why) => {
                    Some(format!("shard {current} does not answer ({why}): nothing to drain"))
                }
                ShardHealth::Up { draining, active_jobs, .. } if waited >= target.drain_timeout => Some(format!(
                    "shard {current}: drain deadline ({}) passed with {active_jobs} job(s) in flight{}",
                    human(target.drain_timeout),
                    if *draining { "" } else { ", not yet draining" }
                )),
                _ => None,
            };
            match proceed {
                Some(why) => {
                    next.phase = RolloutPhase::Updating;
                    next.step_started_at = Some(now.clone());
                    next.message = Some(format!("{why}; replacing it"));
                    Decision { partition: current, rollout: next, drain: None, note: None }
                }
                None => {
                    next.message = Some(match health {
                        ShardHealth::Up { active_jobs, .. } => format!(
                            "draining shard {current}: {active_jobs} job(s) in flight (replaced at the latest {} after \
                             the drain began)",
                            human(target.drain_timeout)
                        ),
                        _ => format!("draining shard {current}"),
                    });
                    Decision { partition: current + 1, rollout: next, drain: Some(current as usize), note: None }
                }
            }
        }
        RolloutPhase::Updating | RolloutPhase::Paused => {
            let paused = prior.phase == RolloutPhase::Paused;
            match shard_verdict(target, set, health, current, prior.already_updated) {
                Ok(()) => {
                    next.shards_updated = prior.shards_updated.saturating_add(1);
                    let note = paused.then(|| Note {
                        warning: false,
                        reason: "RolloutResumed",
                        message: format!("shard {current} became healthy; the rollout continues"),
                    });
                    if current <= prior.already_updated {
                        let rollout = complete(Some(&next), "every shard runs the current template");
                        let note = Some(Note {
                            warning: false,
                            reason: "RolloutComplete",
                            message: format!(
                                "every shard runs the current template ({} replaced)",
                                next.shards_updated
                            ),
                        });
                        return Decision { partition: 0, rollout, drain: None, note };
                    }
                    let mut d = enter_draining(next, current - 1, now);
                    d.note = note.or(d.note);
                    d
                }
                Err(waiting) => {
                    let waited = elapsed(prior.step_started_at.as_ref(), now);
                    if !paused && waited >= target.shard_timeout {
                        next.phase = RolloutPhase::Paused;
                        let message = format!(
                            "shard {current} did not become healthy within {}: {waiting}",
                            human(target.shard_timeout)
                        );
                        next.message = Some(message.clone());
                        let note = Some(Note { warning: true, reason: "ShardUnhealthy", message });
                        return Decision { partition: current, rollout: next, drain: None, note };
                    }
                    next.message = Some(if paused {
                        format!(
                            "paused: shard {current} did not become healthy within {}: {waiting}",
                            human(target.shard_timeout)
                        )
                    } else {
                        format!("replacing shard {current}: {waiting}")
                    });
                    Decision { partition: current, rollout: next, drain: None, note: None }
                }
            }
        }
    }
}

fn enter_draining(mut next: RolloutStatus, shard: i32, now: &Time) -> Decision {
    next.phase = RolloutPhase::Draining;
    next.current_shard = Some(shard);
    next.step_started_at = Some(now.clone());
    next.message = Some(format!("draining shard {shard}"));
    Decision { partition: shard + 1, rollout: next, drain: Some(shard as usize), note: None }
}

/// Whether shard `shard` is replaced and healthy: `Err` says what is
/// still missing.
fn shard_verdict(
    target: &Target<'_>,
    set: &ObservedSet,
    health: &ShardHealth,
    shard: i32,
    already: i32,
) -> Result<(), String> {
    let n = target.shards.max(1);
    if set.template_hash.as_deref() != Some(target.hash) || !set.observed() {
        return Err("the StatefulSet controller has not seen the template yet".into());
    }
    // Shards >= `shard` were replaced in this rollout, and the low
    // `already` ordinals ran the target from the start.
    let want_updated = n - shard + already;
    if set.updated_replicas < want_updated {
        return Err(format!("{}/{want_updated} pods updated", set.updated_replicas));
    }
    if set.ready_replicas < n {
        return Err(format!("{}/{n} pods ready", set.ready_replicas));
    }
    match health {
        ShardHealth::NotProbed => Err("its control API was not asked yet".into()),
        ShardHealth::Unreachable(why) => Err(format!("its control API does not answer ({why})")),
        ShardHealth::Up { draining: true, .. } => Err("it still reports draining (the old pod?)".into()),
        ShardHealth::Up { protocol, .. } if protocol != target.protocol => Err(format!(
            "it runs protocol {}, expected {} (the old pod?)",
            cohort_crds::common::truncate(protocol, 63),
            target.protocol
        )),
        ShardHealth::Up { min_version, max_version, .. } if *max_version != target.protocol_version => Err(format!(
            "it offers protocol versions {min_version}..={max_version}, expected up to {}",
            target.protocol_version
        )),
        ShardHealth::Up { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "old-template";
    const NEW: &str = "new-template";

    fn at(s: i64) -> Time {
        Time(jiff::Timestamp::from_second(1_800_000_000 + s).expect("time"))
    }

    fn target(hash: &str, shards: i32) -> Target<'_> {
        Target {
            hash,
            shards,
            protocol: "additive-semi-honest",
            protocol_version: 2,
            shard_timeout: Duration::from_secs(600),
            drain_timeout: Duration::from_secs(300),
        }
    }

    fn set(hash: &str, updated: i32, ready: i32) -> ObservedSet {
        ObservedSet {
            template_hash: Some(hash.into()),
            generation: Some(4),
            observed_generation: Some(4),
            ready_replicas: ready,
            updated_replicas: updated,
        }
    }

    const ADDITIVE: &str = "additive-semi-honest";

    fn up(draining: bool, active_jobs: usize, protocol: &str, max_version: u32) -> ShardHealth {
        ShardHealth::Up { draining, active_jobs, protocol: protocol.into(), min_version: 1, max_version }
    }

    fn healthy() -> ShardHealth {
        up(false, 0, ADDITIVE, 2)
    }

    fn drained() -> ShardHealth {
        up(true, 0, ADDITIVE, 1)
    }

    fn busy(jobs: usize) -> ShardHealth {
        up(true, jobs, ADDITIVE, 1)
    }

    fn complete(hash: &str) -> RolloutStatus {
        RolloutStatus { phase: RolloutPhase::Complete, target_hash: hash.into(), ..RolloutStatus::default() }
    }

    /// Drive a whole rollout of `shards` shards from `prior`, simulating a
    /// StatefulSet controller that replaces pods at once and a healthy new
    /// worker; returns the shards in the order they were drained and
    /// replaced, with the partition at each replacement.
    fn drive(shards: i32, start_updated: i32) -> (Vec<usize>, Vec<i32>, RolloutStatus) {
        let t = target(NEW, shards);
        let mut updated = start_updated;
        let mut observed = set(OLD, updated, shards);
        let mut prior = Some(complete(OLD));
        let (mut drained_order, mut partitions) = (vec![], vec![]);
        let mut draining: Option<usize> = None;
        for tick in 0..100 {
            let now = at(tick);
            let health = match shard_to_probe(&t, prior.as_ref()) {
                None => ShardHealth::NotProbed,
                Some(s) if draining == Some(s) => drained(),
                Some(_) => healthy(),
            };
            let d = step(&t, Some(&observed), &health, prior.as_ref(), &now);
            if let Some(s) = d.drain {
                if draining != Some(s) {
                    drained_order.push(s);
                }
                draining = Some(s);
            }
            // The apply, then the StatefulSet controller.
            observed.template_hash = Some(NEW.into());
            let want = shards - d.partition + d.rollout.already_updated.min(d.partition);
            if want > updated && d.rollout.phase == RolloutPhase::Updating {
                updated = want;
                partitions.push(d.partition);
                draining = None;
            }
            observed.updated_replicas = updated;
            prior = Some(d.rollout.clone());
            if d.rollout.phase == RolloutPhase::Complete {
                assert_eq!(d.partition, 0);
                return (drained_order, partitions, d.rollout);
            }
        }
        panic!("the rollout did not complete: {prior:?}");
    }

    #[test]
    fn a_new_stateful_set_needs_no_rollout() {
        let d = step(&target(NEW, 3), None, &ShardHealth::NotProbed, None, &at(0));
        assert_eq!(d.partition, 0);
        assert_eq!(d.rollout.phase, RolloutPhase::Complete);
        assert_eq!(d.rollout.target_hash, NEW);
        assert!(d.drain.is_none() && !d.in_progress());
    }

    #[test]
    fn a_changed_template_starts_with_the_partition_at_the_shard_count() {
        let t = target(NEW, 3);
        let d = step(&t, Some(&set(OLD, 3, 3)), &ShardHealth::NotProbed, Some(&complete(OLD)), &at(0));
        assert_eq!(d.partition, 3, "no pod may move before the drain");
        assert_eq!(d.rollout.phase, RolloutPhase::Starting);
        assert_eq!(d.rollout.started_at, Some(at(0)));
        assert_eq!(d.note.as_ref().map(|n| n.reason), Some("RolloutStarted"));
        assert!(d.drain.is_none());
        // Until the StatefulSet controller has observed the new template,
        // nothing happens.
        let mut unobserved = set(NEW, 0, 3);
        unobserved.observed_generation = Some(3);
        let d2 = step(&t, Some(&unobserved), &ShardHealth::NotProbed, Some(&d.rollout), &at(1));
        assert_eq!((d2.partition, d2.rollout.phase, d2.drain), (3, RolloutPhase::Starting, None));
        // Then the highest shard drains.
        let d3 = step(&t, Some(&set(NEW, 0, 3)), &ShardHealth::NotProbed, Some(&d.rollout), &at(2));
        assert_eq!((d3.partition, d3.rollout.phase, d3.drain), (3, RolloutPhase::Draining, Some(2)));
        assert_eq!(d3.rollout.current_shard, Some(2));
        assert_eq!(d3.rollout.step_started_at, Some(at(2)));
    }

    #[test]
    fn no_prior_status_and_a_set_already_at_the_template_completes_without_replacing_anything() {
        let t = target(NEW, 2);
        let d = step(&t, Some(&set(NEW, 2, 2)), &ShardHealth::NotProbed, None, &at(0));
        assert_eq!(d.rollout.phase, RolloutPhase::Starting);
        let d = step(&t, Some(&set(NEW, 2, 2)), &ShardHealth::NotProbed, Some(&d.rollout), &at(1));
        assert_eq!((d.partition, d.rollout.phase, d.drain), (0, RolloutPhase::Complete, None));
    }

    #[test]
    fn the_partition_drops_only_once_the_shard_is_drained() {
        let t = target(NEW, 3);
        let draining = RolloutStatus {
            phase: RolloutPhase::Draining,
            target_hash: NEW.into(),
            current_shard: Some(2),
            step_started_at: Some(at(0)),
            ..RolloutStatus::default()
        };
        let s = set(NEW, 0, 3);
        for h in [ShardHealth::NotProbed, healthy(), busy(2)] {
            let d = step(&t, Some(&s), &h, Some(&draining), &at(10));
            assert_eq!((d.partition, d.rollout.phase), (3, RolloutPhase::Draining), "{h:?}");
            assert_eq!(d.drain, Some(2), "the drain is asked again until it shows: {h:?}");
        }
        let busy_msg = step(&t, Some(&s), &busy(2), Some(&draining), &at(10)).rollout.message.expect("message");
        assert!(busy_msg.contains("2 job(s) in flight"), "{busy_msg}");
        let d = step(&t, Some(&s), &drained(), Some(&draining), &at(10));
        assert_eq!((d.partition, d.rollout.phase, d.drain), (2, RolloutPhase::Updating, None));
        assert_eq!(d.rollout.step_started_at, Some(at(10)), "the shard deadline counts from the replacement");
    }

    #[test]
    fn the_drain_deadline_replaces_a_busy_shard_and_an_unreachable_one_goes_at_once() {
        let t = target(NEW, 2);
        let draining = RolloutStatus {
            phase: RolloutPhase::Draining,
            target_hash: NEW.into(),
            current_shard: Some(1),
            step_started_at: Some(at(0)),
            ..RolloutStatus::default()
        };
        let s = set(NEW, 0, 2);
        let d = step(&t, Some(&s), &busy(1), Some(&draining), &at(299));
        assert_eq!(d.rollout.phase, RolloutPhase::Draining);
        let d = step(&t, Some(&s), &busy(1), Some(&draining), &at(300));
        assert_eq!((d.partition, d.rollout.phase), (1, RolloutPhase::Updating));
        assert!(d.rollout.message.expect("message").contains("drain deadline (5m) passed with 1 job(s)"));
        let d = step(&t, Some(&s), &ShardHealth::Unreachable("refused".into()), Some(&draining), &at(1));
        assert_eq!((d.partition, d.rollout.phase), (1, RolloutPhase::Updating));
        assert!(d.rollout.message.expect("message").contains("nothing to drain"));
    }

    #[test]
    fn a_replaced_shard_must_be_updated_ready_and_healthy_at_the_expected_version() {
        let t = target(NEW, 3);
        let updating = RolloutStatus {
            phase: RolloutPhase::Updating,
            target_hash: NEW.into(),
            current_shard: Some(2),
            step_started_at: Some(at(0)),
            ..RolloutStatus::default()
        };
        let cases: Vec<(ObservedSet, ShardHealth, &str)> = vec![
            (set(NEW, 0, 3), healthy(), "0/1 pods updated"),
            (set(NEW, 1, 2), healthy(), "2/3 pods ready"),
            (set(NEW, 1, 3), ShardHealth::NotProbed, "not asked"),
            (set(NEW, 1, 3), ShardHealth::Unreachable("refused".into()), "does not answer (refused)"),
            (set(NEW, 1, 3), drained(), "still reports draining"),
            (set(NEW, 1, 3), up(false, 0, ADDITIVE, 1), "offers protocol versions 1..=1, expected up to 2"),
            (
                set(NEW, 1, 3),
                up(false, 0, "replicated-3", 2),
                "runs protocol replicated-3, expected additive-semi-honest",
            ),
            ({ ObservedSet { observed_generation: Some(3), ..set(NEW, 1, 3) } }, healthy(), "has not seen"),
        ];
        for (s, h, want) in cases {
            let d = step(&t, Some(&s), &h, Some(&updating), &at(5));
            assert_eq!((d.partition, d.rollout.phase), (2, RolloutPhase::Updating), "{want}");
            let message = d.rollout.message.expect("message");
            assert!(message.contains(want), "{message} should say {want}");
        }
        let d = step(&t, Some(&set(NEW, 1, 3)), &healthy(), Some(&updating), &at(5));
        assert_eq!((d.partition, d.rollout.phase, d.drain), (2, RolloutPhase::Draining, Some(1)));
        assert_eq!((d.rollout.current_shard, d.rollout.shards_updated), (Some(1), 1));
    }

    #[test]
    fn an_unhealthy_shard_pauses_the_rollout_where_it_is_and_a_recovery_resumes_it() {
        let t = target(NEW, 3);
        let updating = RolloutStatus {
            phase: RolloutPhase::Updating,
            target_hash: NEW.into(),
            current_shard: Some(2),
            step_started_at: Some(at(0)),
            ..RolloutStatus::default()
        };
        let stuck = set(NEW, 1, 2);
        let d = step(&t, Some(&stuck), &ShardHealth::Unreachable("refused".into()), Some(&updating), &at(599));
        assert_eq!(d.rollout.phase, RolloutPhase::Updating);
        let d = step(&t, Some(&stuck), &ShardHealth::Unreachable("refused".into()), Some(&updating), &at(600));
        assert_eq!((d.partition, d.rollout.phase, d.drain), (2, RolloutPhase::Paused, None));
        let note = d.note.expect("a warning");
        assert!(note.warning && note.reason == "ShardUnhealthy" && note.message.contains("shard 2"), "{note:?}");
        // Paused: nothing moves, no second warning.
        let again = step(&t, Some(&stuck), &ShardHealth::Unreachable("refused".into()), Some(&d.rollout), &at(900));
        assert_eq!((again.partition, again.rollout.phase, again.drain), (2, RolloutPhase::Paused, None));
        assert!(again.note.is_none());
        assert!(again.rollout.message.clone().expect("message").starts_with("paused: shard 2"));
        // The shard recovers (say, its image became pullable): resume.
        let resumed = step(&t, Some(&set(NEW, 1, 3)), &healthy(), Some(&again.rollout), &at(901));
        assert_eq!((resumed.partition, resumed.rollout.phase, resumed.drain), (2, RolloutPhase::Draining, Some(1)));
        assert_eq!(resumed.note.map(|n| n.reason), Some("RolloutResumed"));
    }

    #[test]
    fn reverting_the_spec_rolls_back_only_the_replaced_shards_highest_first() {
        // Paused at shard 2 of 3 with the new template; the user reverts.
        let paused = RolloutStatus {
            phase: RolloutPhase::Paused,
            target_hash: NEW.into(),
            current_shard: Some(2),
            step_started_at: Some(at(0)),
            ..RolloutStatus::default()
        };
        let t = target(OLD, 3);
        assert_eq!(shard_to_probe(&t, Some(&paused)), None, "the old rollout's shard is not probed");
        let d = step(&t, Some(&set(NEW, 1, 2)), &ShardHealth::NotProbed, Some(&paused), &at(10));
        assert_eq!((d.partition, d.rollout.phase), (3, RolloutPhase::Starting), "a new rollout clears the pause");
        assert_eq!(d.rollout.target_hash, OLD);
        // Shards 0 and 1 still run the old template.
        let d = step(&t, Some(&set(OLD, 2, 2)), &ShardHealth::NotProbed, Some(&d.rollout), &at(11));
        assert_eq!((d.partition, d.rollout.already_updated, d.drain), (3, 2, Some(2)));
        let d =
            step(&t, Some(&set(OLD, 2, 2)), &ShardHealth::Unreachable("crash loop".into()), Some(&d.rollout), &at(12));
        assert_eq!((d.partition, d.rollout.phase), (2, RolloutPhase::Updating), "a broken shard is replaced at once");
        let d = step(&t, Some(&set(OLD, 2, 3)), &healthy(), Some(&d.rollout), &at(13));
        assert_eq!(d.rollout.phase, RolloutPhase::Updating, "2/3 updated is not yet the rolled-back shard");
        let d = step(&t, Some(&set(OLD, 3, 3)), &healthy(), Some(&d.rollout), &at(14));
        assert_eq!((d.partition, d.rollout.phase, d.drain), (0, RolloutPhase::Complete, None));
        assert_eq!(d.rollout.shards_updated, 1);
        assert_eq!(d.note.map(|n| n.reason), Some("RolloutComplete"));
    }

    #[test]
    fn a_whole_rollout_goes_highest_first_one_shard_at_a_time() {
        let (drained, partitions, done) = drive(4, 0);
        assert_eq!(drained, [3, 2, 1, 0]);
        assert_eq!(partitions, [3, 2, 1, 0]);
        assert_eq!((done.shards_updated, done.already_updated), (4, 0));
        let (drained, partitions, done) = drive(1, 0);
        assert_eq!((drained, partitions, done.shards_updated), (vec![0], vec![0], 1));
    }

    #[test]
    fn a_settled_rollout_keeps_the_partition_at_zero_and_asks_for_nothing() {
        let t = target(NEW, 3);
        let done = complete(NEW);
        let d = step(&t, Some(&set(NEW, 3, 3)), &ShardHealth::NotProbed, Some(&done), &at(0));
        assert_eq!((d.partition, d.drain, d.note.is_none()), (0, None, true));
        assert_eq!(d.rollout, done, "the status is unchanged, so nothing is written");
        assert_eq!(shard_to_probe(&t, Some(&done)), None);
    }

    #[test]
    fn the_rollout_state_survives_an_operator_restart() {
        // Every input is in the status and the observed objects: stepping
        // the same inputs twice gives the same decision.
        let t = target(NEW, 2);
        let draining = RolloutStatus {
            phase: RolloutPhase::Draining,
            target_hash: NEW.into(),
            current_shard: Some(1),
            step_started_at: Some(at(0)),
            ..RolloutStatus::default()
        };
        let a = step(&t, Some(&set(NEW, 0, 2)), &busy(1), Some(&draining), &at(5));
        let b = step(&t, Some(&set(NEW, 0, 2)), &busy(1), Some(&draining), &at(5));
        assert_eq!(a, b);
    }
}
