//! Replacing the party CA's key in phases, decided purely.
//!
//! A new CA key changes what every peer must trust, and peers update their
//! copy of this party's CA bundle by hand. So the replacement overlaps the
//! two CAs, and each step waits at least `spec.tls.caRotation.minPhaseDuration`
//! (the kubelet projects changed Secrets and ConfigMaps into running pods
//! within a minute or two; the workers then reload them):
//!
//! | phase | the CA Secret `<name>-ca` | bundles (`ca.crt`, trust `<self>.pem`) | leaves |
//! |---|---|---|---|
//! | `TrustNewCa` | `tls.*` old (signing), `next.*` new | old + new | old CA |
//! | `ReissueLeaves` | `tls.*` new (signing), `previous.crt` old | old + new | reissued by the new CA |
//! | `RetireOldCa` | `tls.*` new | new | new CA |
//! | `Complete` | `tls.*` new | new | new CA |
//!
//! `ReissueLeaves` moves on only once every shard *serves* a certificate
//! of the new CA — observed by a control-API handshake that trusts the new
//! CA alone — and every peer answers on its endpoint. The replacement
//! starts when the MpcCluster's `cohort.dev/rotate-ca-key` annotation takes
//! a value not seen before (an annotation, not a spec field: it is a one-off
//! action, like `kubectl rollout restart`, and the spec keeps describing the
//! steady state). It applies to an operator-managed CA only.

use std::time::Duration;

use cohort_crds::cluster::{CaRotationPhase, CaRotationStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The annotation that asks for a new CA key: set it to any new value
/// (`kubectl annotate mpcc NAME cohort.dev/rotate-ca-key=$(date +%s) --overwrite`).
pub const ANNOTATION_ROTATE_CA_KEY: &str = "cohort.dev/rotate-ca-key";

/// What the controller observed for the step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed<'a> {
    /// The annotation's value.
    pub token: Option<&'a str>,
    /// Whether this party's CA is operator-managed (no `spec.tls.ca`).
    pub managed: bool,
    /// Whether the CA Secret holds the next CA (`next.crt`, `next.key`).
    pub has_next: bool,
    /// Whether every shard served a certificate of the signing CA at the
    /// probe (`None`: not probed).
    pub shards_on_signing_ca: Option<Result<(), String>>,
    /// Whether every peer answered on its endpoint.
    pub peers_reachable: bool,
}

/// What to do to the CA material this reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    None,
    /// Generate a new CA and store it as `next.*` (trusted, not signing).
    GenerateNext,
    /// The next CA signs from now on; the old one stays trusted.
    Promote,
    /// Stop trusting the old CA.
    Retire,
}

/// The step's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub status: Option<CaRotationStatus>,
    pub action: Action,
    /// Probe the shards with the signing CA alone (during `ReissueLeaves`).
    pub probe_shards: bool,
    /// An event: (reason, message).
    pub note: Option<(&'static str, String)>,
}

fn elapsed(since: Option<&Time>, now: &Time) -> Duration {
    let secs = since.map_or(0, |t| now.0.as_second().saturating_sub(t.0.as_second()));
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// The next step of a CA key replacement. Pure: the clock is `now`.
pub fn step(prior: Option<&CaRotationStatus>, observed: &Observed<'_>, dwell: Duration, now: &Time) -> Decision {
    let keep = |status: Option<&CaRotationStatus>| Decision {
        status: status.cloned(),
        action: Action::None,
        probe_shards: false,
        note: None,
    };
    let enter = |from: &CaRotationStatus, phase: CaRotationPhase, message: &str| CaRotationStatus {
        phase,
        phase_started_at: Some(now.clone()),
        message: Some(message.to_string()),
        ..from.clone()
    };
    let at_rest = prior.is_none_or(|p| p.phase == CaRotationPhase::Complete);
    if at_rest {
        let Some(token) = observed.token.filter(|t| prior.is_none_or(|p| p.token != *t)) else {
            return keep(prior);
        };
        if !observed.managed {
            // A provided CA is the user's to replace; say so once.
            let mut d = keep(prior);
            d.note = Some((
                "CaRotationRefused",
                "cohort.dev/rotate-ca-key applies to an operator-managed CA; spec.tls.ca names yours".into(),
            ));
            return d;
        }
        let status = CaRotationStatus {
            phase: CaRotationPhase::TrustNewCa,
            token: token.to_string(),
            started_at: Some(now.clone()),
            phase_started_at: Some(now.clone()),
            message: Some("a new CA is trusted beside the old one; give every peer the bundle ca.crt now".into()),
        };
        return Decision {
            status: Some(status),
            action: Action::GenerateNext,
            probe_shards: false,
            note: Some((
                "CaRotationStarted",
                "generated a new party CA key; publish the two-CA bundle (Secret key ca.crt) to every peer".into(),
            )),
        };
    }
    let Some(prior) = prior else { return keep(None) };
    let waited = elapsed(prior.phase_started_at.as_ref(), now);
    let dwelt = waited >= dwell;
    match prior.phase {
        CaRotationPhase::TrustNewCa if !observed.has_next => Decision {
            // The new CA was lost (the Secret edited by hand): make another
            // and start the overlap again.
            status: Some(enter(prior, CaRotationPhase::TrustNewCa, "the next CA was missing; generated another")),
            action: Action::GenerateNext,
            probe_shards: false,
            note: None,
        },
        CaRotationPhase::TrustNewCa if dwelt => Decision {
            status: Some(enter(prior, CaRotationPhase::ReissueLeaves, "reissuing every certificate from the new CA")),
            action: Action::Promote,
            probe_shards: false,
            note: Some(("CaRotationReissuing", "the new CA signs from now on; certificates are reissued".into())),
        },
        CaRotationPhase::ReissueLeaves => {
            let blocked = match (&observed.shards_on_signing_ca, observed.peers_reachable) {
                _ if !dwelt => Some("waiting for the reissued certificates to reach the pods".to_string()),
                (None, _) => Some("checking which CA the shards serve".to_string()),
                (Some(Err(why)), _) => Some(format!("not every shard serves a certificate of the new CA yet: {why}")),
                (Some(Ok(())), false) => Some("waiting for every peer to be reachable before retiring".to_string()),
                (Some(Ok(())), true) => None,
            };
            match blocked {
                Some(message) => {
                    let mut status = prior.clone();
                    status.message = Some(message);
                    Decision { status: Some(status), action: Action::None, probe_shards: dwelt, note: None }
                }
                None => Decision {
                    status: Some(enter(prior, CaRotationPhase::RetireOldCa, "the old CA left every bundle")),
                    action: Action::Retire,
                    probe_shards: false,
                    note: Some(("CaRotationRetiring", "every shard serves the new CA; the old CA is retired".into())),
                },
            }
        }
        CaRotationPhase::RetireOldCa if dwelt => Decision {
            status: Some(enter(prior, CaRotationPhase::Complete, "only the new CA remains")),
            action: Action::None,
            probe_shards: false,
            note: Some(("CaRotationComplete", "the CA key replacement is complete; publish ca.crt again".into())),
        },
        _ => keep(Some(prior)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DWELL: Duration = Duration::from_secs(120);

    fn at(s: i64) -> Time {
        Time(jiff::Timestamp::from_second(1_800_000_000 + s).expect("time"))
    }

    fn observed(token: Option<&str>) -> Observed<'_> {
        Observed { token, managed: true, has_next: true, shards_on_signing_ca: None, peers_reachable: true }
    }

    #[test]
    fn nothing_happens_without_a_new_token() {
        assert_eq!(step(None, &observed(None), DWELL, &at(0)), keep_none());
        let done = CaRotationStatus { phase: CaRotationPhase::Complete, token: "t1".into(), ..Default::default() };
        let d = step(Some(&done), &observed(Some("t1")), DWELL, &at(0));
        assert_eq!((d.action, d.status.as_ref()), (Action::None, Some(&done)));
    }

    fn keep_none() -> Decision {
        Decision { status: None, action: Action::None, probe_shards: false, note: None }
    }

    #[test]
    fn every_phase_in_order_with_dwell_and_observation() {
        let d = step(None, &observed(Some("t1")), DWELL, &at(0));
        assert_eq!(d.action, Action::GenerateNext);
        let s = d.status.expect("status");
        assert_eq!((s.phase, s.token.as_str(), s.started_at.clone()), (CaRotationPhase::TrustNewCa, "t1", Some(at(0))));
        assert_eq!(d.note.map(|n| n.0), Some("CaRotationStarted"));
        // Dwell in TrustNewCa.
        let d = step(Some(&s), &observed(Some("t1")), DWELL, &at(119));
        assert_eq!((d.action, d.status.as_ref().map(|s| s.phase)), (Action::None, Some(CaRotationPhase::TrustNewCa)));
        let d = step(Some(&s), &observed(Some("t1")), DWELL, &at(120));
        assert_eq!(d.action, Action::Promote);
        let s = d.status.expect("status");
        assert_eq!((s.phase, s.phase_started_at.clone()), (CaRotationPhase::ReissueLeaves, Some(at(120))));
        // ReissueLeaves: dwell, then probe; a shard on the old CA or an
        // unreachable peer holds it.
        let d = step(Some(&s), &observed(Some("t1")), DWELL, &at(130));
        assert!(!d.probe_shards && d.action == Action::None);
        let d = step(Some(&s), &observed(Some("t1")), DWELL, &at(240));
        assert!(d.probe_shards && d.action == Action::None);
        let old =
            Observed { shards_on_signing_ca: Some(Err("shard 1: unknown issuer".into())), ..observed(Some("t1")) };
        let d = step(Some(&s), &old, DWELL, &at(241));
        assert_eq!(d.action, Action::None);
        assert!(d.status.as_ref().and_then(|s| s.message.clone()).expect("message").contains("shard 1"));
        let lagging = Observed { shards_on_signing_ca: Some(Ok(())), peers_reachable: false, ..observed(Some("t1")) };
        assert_eq!(step(Some(&s), &lagging, DWELL, &at(242)).action, Action::None);
        let ready = Observed { shards_on_signing_ca: Some(Ok(())), ..observed(Some("t1")) };
        let d = step(Some(&s), &ready, DWELL, &at(243));
        assert_eq!(d.action, Action::Retire);
        let s = d.status.expect("status");
        assert_eq!(s.phase, CaRotationPhase::RetireOldCa);
        let d = step(Some(&s), &observed(Some("t1")), DWELL, &at(300));
        assert_eq!(d.status.as_ref().map(|s| s.phase), Some(CaRotationPhase::RetireOldCa));
        let d = step(Some(&s), &observed(Some("t1")), DWELL, &at(363));
        let s = d.status.expect("status");
        assert_eq!((s.phase, s.started_at.clone()), (CaRotationPhase::Complete, Some(at(0))));
        // A new token starts another replacement.
        let d = step(Some(&s), &observed(Some("t2")), DWELL, &at(400));
        assert_eq!(d.action, Action::GenerateNext);
    }

    #[test]
    fn a_new_token_mid_rotation_waits_and_a_lost_next_ca_is_regenerated() {
        let s = CaRotationStatus {
            phase: CaRotationPhase::TrustNewCa,
            token: "t1".into(),
            phase_started_at: Some(at(0)),
            ..Default::default()
        };
        let d = step(Some(&s), &observed(Some("t2")), DWELL, &at(10));
        assert_eq!((d.action, d.status.map(|s| s.token)), (Action::None, Some("t1".into())));
        let lost = Observed { has_next: false, ..observed(Some("t1")) };
        let d = step(Some(&s), &lost, DWELL, &at(500));
        assert_eq!(d.action, Action::GenerateNext);
        assert_eq!(d.status.and_then(|s| s.phase_started_at), Some(at(500)), "the overlap starts again");
    }

    #[test]
    fn a_provided_ca_is_not_rotated() {
        let provided = Observed { managed: false, ..observed(Some("t1")) };
        let d = step(None, &provided, DWELL, &at(0));
        assert_eq!((d.action, d.status), (Action::None, None));
        assert_eq!(d.note.map(|n| n.0), Some("CaRotationRefused"));
    }
}
