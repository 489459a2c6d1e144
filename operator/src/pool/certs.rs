//! The hosted dealer's certificate: planned purely, issued from this
//! party's CA.
//!
//! The dealer's leaf names the principal `dealer/<name>` (URI SAN
//! `spiffe://<federation>/dealer/<name>`) and the DNS names of
//! [`Pool::dealer_dns_names`]; it is issued by the cluster's party CA (the
//! CA in `<cluster>-ca`, or the user's `spec.tls.ca`), with the cluster's
//! `tls.certLifetime`, and renewed `tls.renewBefore` ahead of expiry —
//! the rules of [`crate::cluster::certs`], whose leaf check and issuance
//! this module reuses. The CA itself is never generated here: until the
//! MpcCluster's reconciler has one, there is nothing to issue from.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cohort_worker::transport::{CertifiedKey, PartyCa};

use super::{Error, Pool};
use crate::cluster::certs::{Reason, check_leaf_pem, issue_leaf};

/// What the dealer's certificate must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirements {
    pub federation: String,
    /// `dealer/<name>`.
    pub principal: String,
    /// The DNS names (and addresses) it covers.
    pub names: Vec<String>,
    /// The cluster's `spec.tls.certLifetime`.
    pub lifetime: Duration,
    /// The cluster's `spec.tls.renewBefore`.
    pub renew_before: Duration,
}

impl Requirements {
    /// The requirements of a hosting pool ([`Error::NotHosted`] otherwise).
    /// Errors name the cluster's `spec.tls` field.
    pub fn from_pool(pool: &Pool<'_>) -> Result<Requirements, Error> {
        let dealer = pool.hosted_dealer().ok_or(Error::NotHosted)?;
        let cluster = crate::cluster::certs::Requirements::from_cluster(&pool.cluster)?;
        Ok(Requirements {
            federation: cluster.federation,
            principal: dealer.principal(),
            names: pool.dealer_dns_names(),
            lifetime: cluster.lifetime,
            renew_before: cluster.renew_before,
        })
    }
}

/// Whether to issue the dealer's certificate, and when to look again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Issue a new certificate, and why; `None`: keep the stored one.
    pub issue: Option<Reason>,
    /// The kept certificate's expiry.
    pub not_after: Option<SystemTime>,
    /// When the kept certificate becomes due for renewal: requeue then.
    pub next_renewal: Option<SystemTime>,
}

/// Decide from the party CA's certificate (`ca_pem`, PEM) and the chain
/// stored in `<pool>-dealer-tls` (`tls.crt`, `None` when missing). Fails
/// when the CA cannot be read.
pub fn plan(req: &Requirements, ca_pem: &str, observed: Option<&str>, now: SystemTime) -> Result<Plan, Error> {
    let verdict = check_leaf_pem(&req.federation, req.renew_before, ca_pem, observed, &req.principal, &req.names, now)?;
    Ok(match verdict {
        Ok(expiry) => Plan {
            issue: None,
            not_after: Some(expiry),
            next_renewal: Some(expiry.checked_sub(req.renew_before).unwrap_or(UNIX_EPOCH)),
        },
        Err(reason) => Plan { issue: Some(reason), not_after: None, next_renewal: None },
    })
}

/// Issue the dealer's chain (leaf, then the CA) and key from `ca`, which
/// must be this federation's CA of the cluster's party.
pub fn issue(req: &Requirements, ca: &PartyCa, now: SystemTime) -> Result<CertifiedKey, Error> {
    if ca.federation() != req.federation {
        return Err(crate::cluster::Error::material(
            "the party CA",
            format!("belongs to the federation {}, not {}", ca.federation(), req.federation),
        )
        .into());
    }
    Ok(issue_leaf(ca, &req.principal, &req.names, req.lifetime, now, "the dealer's certificate")?)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;
    use cohort_worker::transport::TlsIdentity;
    use cohort_worker::transport::certs::{PartyIdentity, party_identity};

    fn requirements() -> Requirements {
        let (p, c) = (fixtures::hosted(), fixtures::cluster(1));
        let pool = Pool::from_resource(&p, &c).expect("valid");
        Requirements::from_pool(&pool).expect("hosted")
    }

    fn ca() -> PartyCa {
        PartyCa::generate("consortium", "bank-a", Duration::from_secs(10 * 86400 * 365)).expect("ca")
    }

    #[test]
    fn a_remote_pool_has_no_certificate() {
        let (p, c) = (fixtures::remote(), fixtures::cluster(1));
        let pool = Pool::from_resource(&p, &c).expect("valid");
        assert!(matches!(Requirements::from_pool(&pool), Err(Error::NotHosted)));
    }

    #[test]
    fn the_dealer_certificate_names_the_dealer_and_is_kept_until_renewal() {
        let req = requirements();
        assert_eq!(req.principal, "dealer/main");
        assert_eq!(req.lifetime, Duration::from_secs(720 * 3600));
        let ca = ca();
        let ca_pem = ca.cert_pem();
        let issued_at = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        let missing = plan(&req, &ca_pem, None, issued_at).expect("plan");
        assert_eq!(missing.issue, Some(Reason::Missing));
        let key = issue(&req, &ca, issued_at).expect("issue");
        assert_eq!(key.cert_pem.matches("BEGIN CERTIFICATE").count(), 2, "leaf, then the CA");
        let leaf = x509_parser::pem::parse_x509_pem(key.cert_pem.as_bytes()).expect("pem").1;
        assert_eq!(party_identity("consortium", &leaf.contents), Ok(PartyIdentity::Party("dealer/main".into())));

        let not_after = issued_at + req.lifetime;
        let due = not_after - req.renew_before;
        let kept = plan(&req, &ca_pem, Some(&key.cert_pem), due - Duration::from_secs(1)).expect("plan");
        assert_eq!(kept, Plan { issue: None, not_after: Some(not_after), next_renewal: Some(due) });
        let renew = plan(&req, &ca_pem, Some(&key.cert_pem), due).expect("plan");
        assert_eq!(renew.issue, Some(Reason::Renew { not_after }));

        // Another CA's certificate, or a worker's, is replaced.
        let other = PartyCa::generate("consortium", "bank-a", Duration::from_secs(86400)).expect("ca");
        let foreign = issue(&req, &other, issued_at).expect("issue");
        let p = plan(&req, &ca_pem, Some(&foreign.cert_pem), issued_at).expect("plan");
        assert_eq!(p.issue, Some(Reason::NotIssuedByCa));
        let worker = ca.issue_party_cert("bank-a", &req.names, issued_at, not_after).expect("leaf");
        let p = plan(&req, &ca_pem, Some(&worker.cert_pem), issued_at).expect("plan");
        assert!(matches!(p.issue, Some(Reason::WrongIdentity(_))), "{p:?}");
        // An unreadable CA is an error, not a plan.
        let e = plan(&req, "junk", None, issued_at).expect_err("bad CA");
        assert_eq!(e.reason(), "MaterialUnavailable");
    }

    #[test]
    fn the_dealer_identity_loads_in_the_worker_tls_stack() {
        let req = requirements();
        let ca = ca();
        let key = issue(&req, &ca, SystemTime::now()).expect("issue");
        let parties =
            vec![("bank-b".to_string(), fixtures::foreign_ca("bank-b")), ("bank-a".to_string(), ca.cert_pem())];
        TlsIdentity::from_pem_pinned("consortium", "dealer/main", &key.cert_pem, &key.key_pem, &parties)
            .expect("the dealer's identity");
        let wrong = PartyCa::generate("elsewhere", "bank-a", Duration::from_secs(86400)).expect("ca");
        assert!(issue(&req, &wrong, SystemTime::now()).is_err());
    }
}
