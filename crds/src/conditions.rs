//! Status conditions: the vocabulary the operator writes and a pure helper
//! that updates a condition list the way Kubernetes expects
//! (`lastTransitionTime` moves only when `status` changes).
//!
//! Every kind stores `status.conditions` as a list-map keyed by `type`
//! (`x-kubernetes-list-type: map`), so server-side apply merges conditions
//! by type and a type appears at most once.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The status of a condition: `True`, `False` or `Unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// The operator cannot tell (yet).
    Unknown,
}

impl ConditionStatus {
    /// The string stored in `Condition::status`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value { ConditionStatus::True } else { ConditionStatus::False }
    }
}

impl std::fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Condition types. Which kind uses which is documented in docs/operator.md.
pub mod types {
    /// All kinds: the resource does what it is for (cluster: every shard
    /// ready; pool: material above the low watermark and generators ready).
    pub const READY: &str = "Ready";
    /// All kinds: the operator is still converging (rolling pods, issuing
    /// certificates, a job running).
    pub const PROGRESSING: &str = "Progressing";
    /// All kinds: something needs attention; the reason says what.
    pub const DEGRADED: &str = "Degraded";
    /// MpcCluster: the CA, worker and operator certificates are valid and not
    /// due for renewal.
    pub const CERTIFICATES_READY: &str = "CertificatesReady";
    /// MpcCluster: every peer party answered on its endpoint.
    pub const PEERS_REACHABLE: &str = "PeersReachable";
    /// MpcCluster: a partitioned rollout of the worker pods is under way
    /// (reason `RollingOut`; `Complete` once every shard runs the template).
    pub const ROLLOUT_PROGRESSING: &str = "RolloutProgressing";
    /// MpcCluster: the rollout stopped at a shard that did not become
    /// healthy (reason `ShardUnhealthy`; the message names the shard).
    pub const ROLLOUT_PAUSED: &str = "RolloutPaused";
    /// PreprocessingPool: some material kind is below its low watermark.
    pub const BELOW_WATERMARK: &str = "BelowWatermark";
    /// MpcJob: the program compiled (False: the message names line and column).
    pub const PROGRAM_VALID: &str = "ProgramValid";
    /// MpcJob: every input was found in its Secret or ConfigMap.
    pub const INPUTS_RESOLVED: &str = "InputsResolved";
    /// MpcJob: the job finished and its result is stored.
    pub const COMPLETE: &str = "Complete";
    /// MpcJob: the job failed; the reason and `status.failure` say where.
    pub const FAILED: &str = "Failed";
}

/// Find the condition of type `type_`.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of type `type_` is present with status `True`.
pub fn is_condition_true(conditions: &[Condition], type_: &str) -> bool {
    find_condition(conditions, type_).is_some_and(|c| c.status == ConditionStatus::True.as_str())
}

/// Set the condition of type `type_` in `conditions`.
///
/// - A new type is appended with `lastTransitionTime = now`.
/// - An existing condition whose `status` changes gets `lastTransitionTime = now`.
/// - An existing condition whose `status` stays keeps its `lastTransitionTime`;
///   its reason, message and observedGeneration are updated.
///
/// Returns whether anything changed, so the caller can skip a status write
/// that would change nothing. Pure: the clock is a parameter.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
    now: &Time,
) -> bool {
    let status = status.as_str();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            let unchanged = c.status == status
                && c.reason == reason
                && c.message == message
                && c.observed_generation == observed_generation;
            if unchanged {
                return false;
            }
            if c.status != status {
                c.status = status.to_string();
                c.last_transition_time = now.clone();
            }
            c.reason = reason.to_string();
            c.message = message.to_string();
            c.observed_generation = observed_generation;
            true
        }
        None => {
            conditions.push(Condition {
                type_: type_.to_string(),
                status: status.to_string(),
                reason: reason.to_string(),
                message: message.to_string(),
                observed_generation,
                last_transition_time: now.clone(),
            });
            true
        }
    }
}

/// Remove the condition of type `type_`; returns whether one was removed.
pub fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    conditions.len() != before
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).expect("valid timestamp"))
    }

    #[test]
    fn a_new_condition_is_appended_with_now() {
        let mut cs = Vec::new();
        assert!(set_condition(&mut cs, "Ready", ConditionStatus::False, "Creating", "", Some(1), &at(10)));
        assert_eq!(cs.len(), 1);
        assert_eq!(cs[0].type_, "Ready");
        assert_eq!(cs[0].status, "False");
        assert_eq!(cs[0].reason, "Creating");
        assert_eq!(cs[0].observed_generation, Some(1));
        assert_eq!(cs[0].last_transition_time, at(10));
    }

    #[test]
    fn same_status_keeps_the_transition_time_and_updates_the_rest() {
        let mut cs = Vec::new();
        set_condition(&mut cs, "Ready", ConditionStatus::False, "Creating", "0/2 shards", Some(1), &at(10));
        assert!(set_condition(&mut cs, "Ready", ConditionStatus::False, "Rolling", "1/2 shards", Some(2), &at(20)));
        assert_eq!(cs[0].last_transition_time, at(10));
        assert_eq!(cs[0].reason, "Rolling");
        assert_eq!(cs[0].message, "1/2 shards");
        assert_eq!(cs[0].observed_generation, Some(2));
    }

    #[test]
    fn a_status_change_moves_the_transition_time() {
        let mut cs = Vec::new();
        set_condition(&mut cs, "Ready", ConditionStatus::False, "Creating", "", Some(1), &at(10));
        assert!(set_condition(&mut cs, "Ready", ConditionStatus::True, "AllShardsReady", "", Some(1), &at(30)));
        assert_eq!(cs[0].status, "True");
        assert_eq!(cs[0].last_transition_time, at(30));
    }

    #[test]
    fn an_identical_update_changes_nothing() {
        let mut cs = Vec::new();
        set_condition(&mut cs, "Ready", true.into(), "AllShardsReady", "ok", Some(3), &at(10));
        let before = cs.clone();
        assert!(!set_condition(&mut cs, "Ready", true.into(), "AllShardsReady", "ok", Some(3), &at(99)));
        assert_eq!(cs, before);
    }

    #[test]
    fn types_are_independent_and_unique() {
        let mut cs = Vec::new();
        set_condition(&mut cs, "Ready", ConditionStatus::Unknown, "Pending", "", None, &at(1));
        set_condition(&mut cs, "Degraded", ConditionStatus::False, "AsExpected", "", None, &at(2));
        set_condition(&mut cs, "Ready", ConditionStatus::True, "AllShardsReady", "", None, &at(3));
        assert_eq!(cs.len(), 2);
        assert!(is_condition_true(&cs, "Ready"));
        assert!(!is_condition_true(&cs, "Degraded"));
        assert!(!is_condition_true(&cs, "Missing"));
        assert_eq!(find_condition(&cs, "Degraded").map(|c| c.last_transition_time.clone()), Some(at(2)));
        assert!(remove_condition(&mut cs, "Degraded"));
        assert!(!remove_condition(&mut cs, "Degraded"));
        assert_eq!(cs.len(), 1);
    }
}
