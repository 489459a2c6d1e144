//! Which certificates to (re)issue, decided purely, and issuing them.
//!
//! [`plan`] looks at the certificates found in the owned Secrets (the CA
//! in `<name>-ca` or the user's `tls.ca` Secret, each shard's
//! `<name>-worker-<i>`, the operator's `<name>-operator-client`), the spec
//! ([`Requirements`]) and the time, and lists every leaf that is missing,
//! unreadable, not issued by the current CA, carries the wrong identity or
//! names, or expires within `renewBefore`. [`issue`] then draws keys and
//! signs exactly those, with the worker's `PartyCa` (so the identity rules
//! stay in one place, `cohort_worker::transport::certs`).
//!
//! The party CA itself is generated only when the operator manages it and
//! its Secret holds no readable CA: a new CA *key* means every peer must be
//! given the new CA out of band, so it is replaced only on request and in
//! phases ([`super::ca_rotation`]). An operator-managed CA certificate that
//! nears its end is **renewed with the same key** ([`renew_ca`]): the same
//! subject and key, a new validity period, so every leaf it issued stays
//! valid and peers that still hold the old certificate keep verifying them
//! (a trust anchor is its subject and key).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cohort_worker::transport::certs::{PartyIdentity, party_identity};
use cohort_worker::transport::{CertifiedKey, PartyCa, Role};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

use super::{CONTROLLER_NAME, Cluster, Error};

/// Lifetime of a CA the operator generates (ten years): the CA is
/// distributed to every peer by hand, so it is long-lived.
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Leaves are back-dated this much to tolerate clock skew between parties.
pub const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// An operator-managed CA certificate is renewed (same key) when less than
/// this fraction of its validity remains (one year of the ten).
pub const CA_RENEW_FRACTION: u32 = 10;

/// The principal of the operator's control-API client certificate.
pub fn operator_principal() -> String {
    Role::Controller.principal(CONTROLLER_NAME)
}

/// What every certificate must be, derived from the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirements {
    pub federation: String,
    /// This party: the principal of every worker certificate.
    pub party: String,
    /// Per shard, the DNS names (and IP addresses) its certificate covers.
    pub worker_names: Vec<Vec<String>>,
    /// `spec.tls.certLifetime`.
    pub lifetime: Duration,
    /// `spec.tls.renewBefore`.
    pub renew_before: Duration,
}

impl Requirements {
    /// The requirements of `cluster`. Errors name the `spec.tls` field.
    pub fn from_cluster(cluster: &Cluster<'_>) -> Result<Requirements, Error> {
        let tls = &cluster.spec.tls;
        let lifetime = tls.cert_lifetime.to_std().map_err(|r| Error::invalid("spec.tls.certLifetime", r))?;
        let renew_before = tls.renew_before.to_std().map_err(|r| Error::invalid("spec.tls.renewBefore", r))?;
        if renew_before >= lifetime {
            return Err(Error::invalid("spec.tls.renewBefore", "must be shorter than spec.tls.certLifetime"));
        }
        Ok(Requirements {
            federation: cluster.spec.federation.clone(),
            party: cluster.spec.self_.clone(),
            worker_names: (0..cluster.shards).map(|i| cluster.shard_dns_names(i)).collect(),
            lifetime,
            renew_before,
        })
    }
}

/// The CA as found.
#[derive(Clone, Copy, Debug)]
pub enum ObservedCa<'a> {
    /// The operator manages the CA: the certificate PEM from `<name>-ca`
    /// (`tls.crt`), or `None` when that Secret or key does not exist.
    Managed(Option<&'a str>),
    /// The user provides the CA (`spec.tls.ca`): its certificate PEM.
    Provided(&'a str),
}

/// The certificates found in the owned Secrets (`tls.crt` values: chains,
/// leaf first). `workers[i]` is shard i's; a shorter list means missing.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    pub ca: ObservedCa<'a>,
    pub workers: Vec<Option<&'a str>>,
    pub operator_client: Option<&'a str>,
}

/// A leaf certificate the operator issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Slot {
    Worker(usize),
    OperatorClient,
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Slot::Worker(i) => write!(f, "the certificate of worker shard {i}"),
            Slot::OperatorClient => f.write_str("the operator's control-API client certificate"),
        }
    }
}

/// Why a leaf is (re)issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// No certificate was found.
    Missing,
    /// The stored certificate cannot be read.
    Unreadable(String),
    /// A new CA is generated, so every leaf is reissued.
    NewCa,
    /// The certificate was not signed by the current CA.
    NotIssuedByCa,
    /// The certificate names another principal (or none).
    WrongIdentity(String),
    /// The DNS names or addresses differ from those required.
    WrongNames { missing: Vec<String>, unexpected: Vec<String> },
    /// It expires within `renewBefore` (or has expired).
    Renew { not_after: SystemTime },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Missing => f.write_str("missing"),
            Reason::Unreadable(why) => write!(f, "unreadable: {why}"),
            Reason::NewCa => f.write_str("a new CA was generated"),
            Reason::NotIssuedByCa => f.write_str("not issued by the current party CA"),
            Reason::WrongIdentity(found) => write!(f, "wrong identity ({found})"),
            Reason::WrongNames { missing, unexpected } => {
                write!(f, "names differ (missing: {missing:?}, unexpected: {unexpected:?})")
            }
            Reason::Renew { .. } => f.write_str("due for renewal"),
        }
    }
}

/// What to issue, and the expiry times for status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Generate a new party CA (operator-managed CA missing or unreadable).
    pub generate_ca: bool,
    /// Re-sign the operator-managed CA certificate with its own key for a
    /// new validity period ([`renew_ca`]): it nears its end.
    pub renew_ca: bool,
    /// Leaves to issue, in slot order, with the reason.
    pub issue: Vec<(Slot, Reason)>,
    /// When the current CA expires (`None` when one is generated).
    pub ca_not_after: Option<SystemTime>,
    /// The earliest expiry among worker certificates that are kept.
    pub worker_not_after: Option<SystemTime>,
    /// The operator certificate's expiry, when it is kept.
    pub operator_not_after: Option<SystemTime>,
    /// When the earliest kept leaf becomes due for renewal: requeue then.
    pub next_renewal: Option<SystemTime>,
}

impl Plan {
    /// Whether nothing needs issuing.
    pub fn is_empty(&self) -> bool {
        !self.generate_ca && !self.renew_ca && self.issue.is_empty()
    }
}

/// Decide what to issue. Fails only when a user-provided CA cannot be read
/// (the operator cannot issue anything then).
pub fn plan(req: &Requirements, observed: &Observed<'_>, now: SystemTime) -> Result<Plan, Error> {
    let ca_pem = match observed.ca {
        ObservedCa::Provided(pem) => {
            Some(first_cert(pem).map_err(|r| Error::material("the party CA in the Secret named by spec.tls.ca", r))?)
        }
        ObservedCa::Managed(Some(pem)) => first_cert(pem).ok(),
        ObservedCa::Managed(None) => None,
    };
    let ca = match &ca_pem {
        Some(pem) => Some(
            pem.parse_x509()
                .map_err(|e| Error::material("the party CA", format!("cannot parse the certificate: {e}")))?,
        ),
        None => None,
    };
    let renew_ca = match (&observed.ca, &ca) {
        (ObservedCa::Managed(Some(_)), Some(ca)) => ca_due(ca, req.renew_before, now),
        _ => false,
    };
    let mut plan = Plan {
        generate_ca: ca.is_none(),
        renew_ca,
        issue: Vec::new(),
        ca_not_after: ca.as_ref().map(not_after),
        worker_not_after: None,
        operator_not_after: None,
        next_renewal: None,
    };
    let mut slots: Vec<(Slot, Option<&str>, String, &[String])> = req
        .worker_names
        .iter()
        .enumerate()
        .map(|(i, names)| (Slot::Worker(i), observed.workers.get(i).copied().flatten(), req.party.clone(), &names[..]))
        .collect();
    slots.push((Slot::OperatorClient, observed.operator_client, operator_principal(), &[]));
    for (slot, pem, principal, names) in slots {
        let verdict = match &ca {
            None => Err(if pem.is_some() { Reason::NewCa } else { Reason::Missing }),
            Some(ca) => check_leaf(&req.federation, req.renew_before, ca, pem, &principal, names, now),
        };
        match verdict {
            Err(reason) => plan.issue.push((slot, reason)),
            Ok(expiry) => {
                let due = expiry.checked_sub(req.renew_before).unwrap_or(UNIX_EPOCH);
                plan.next_renewal = Some(plan.next_renewal.map_or(due, |t| t.min(due)));
                match slot {
                    Slot::Worker(_) => {
                        plan.worker_not_after = Some(plan.worker_not_after.map_or(expiry, |t| t.min(expiry)))
                    }
                    Slot::OperatorClient => plan.operator_not_after = Some(expiry),
                }
            }
        }
    }
    Ok(plan)
}

/// Whether a CA certificate is due for renewal: no more than a tenth of its
/// validity, or `renewBefore` if that is longer, is left.
fn ca_due(ca: &X509Certificate<'_>, renew_before: Duration, now: SystemTime) -> bool {
    let validity = ca.validity();
    let total = (validity.not_after.timestamp() - validity.not_before.timestamp()).max(0) as u64;
    let window = Duration::from_secs(total / u64::from(CA_RENEW_FRACTION)).max(renew_before);
    not_after(ca).duration_since(now).map_or(true, |left| left <= window)
}

/// Re-sign the CA certificate `cert_pem` with its own key `key_pem` for
/// `lifetime` from `now`: the same subject, key and subject key identifier,
/// a new serial and validity. Leaves the old certificate issued verify
/// against the new one (their issuer name and authority key identifier,
/// and the signing key, are unchanged).
pub fn renew_ca(
    federation: &str,
    party: &str,
    cert_pem: &str,
    key_pem: &str,
    lifetime: Duration,
    now: SystemTime,
) -> Result<PartyCa, Error> {
    use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let bad = |reason: String| Error::material("the party CA", reason);
    let pem = first_cert(cert_pem).map_err(bad)?;
    let old = pem.parse_x509().map_err(|e| bad(format!("cannot parse the certificate: {e}")))?;
    let key = KeyPair::from_pem(key_pem).map_err(|_| bad("the private key cannot be read".into()))?;
    let mut dn = DistinguishedName::new();
    for attr in old.subject().iter_attributes() {
        let value = attr.as_str().map_err(|_| bad("the subject holds a value that is not a string".into()))?;
        let oid = attr.attr_type();
        let kind = if *oid == x509_parser::oid_registry::OID_X509_COMMON_NAME {
            DnType::CommonName
        } else if *oid == x509_parser::oid_registry::OID_X509_ORGANIZATION_NAME {
            DnType::OrganizationName
        } else {
            let arcs: Option<Vec<u64>> = oid.iter().map(|a| a.collect());
            DnType::CustomDnType(arcs.ok_or_else(|| bad("the subject has an unusual attribute".into()))?)
        };
        dn.push(kind, value);
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    if let Some(ski) = old.iter_extensions().find_map(|e| match e.parsed_extension() {
        x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
        _ => None,
    }) {
        params.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(ski);
    }
    let mut serial = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial)
        .map_err(|_| bad("no randomness for a serial number".into()))?;
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from(serial.to_vec()));
    let since_epoch = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let not_before = now.checked_sub(CLOCK_SKEW).unwrap_or(now);
    let not_after = now.checked_add(lifetime).ok_or_else(|| bad("CA lifetime too long".into()))?;
    params.not_before = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(not_before);
    params.not_after = rcgen::date_time_ymd(1970, 1, 1) + since_epoch(not_after);
    let cert = params.self_signed(&key).map_err(|e| bad(format!("re-signing failed: {e}")))?;
    PartyCa::from_pem(federation, party, &cert.pem(), key_pem).map_err(|e| bad(e.to_string()))
}

/// Whether the leaf chain `leaf` (leaf first; `None` when missing) issued
/// by the CA certificate `ca_pem` can be kept for `principal` with exactly
/// `names`: `Ok(Ok(not_after))`, or `Ok(Err(why))` it must be (re)issued.
/// `Err` when the CA itself cannot be read (nothing can be issued then).
/// The same rules as [`plan`], for leaves other modules own (the hosted
/// dealer of a PreprocessingPool).
pub fn check_leaf_pem(
    federation: &str,
    renew_before: Duration,
    ca_pem: &str,
    leaf: Option<&str>,
    principal: &str,
    names: &[String],
    now: SystemTime,
) -> Result<Result<SystemTime, Reason>, Error> {
    let ca = first_cert(ca_pem).map_err(|r| Error::material("the party CA", r))?;
    let ca =
        ca.parse_x509().map_err(|e| Error::material("the party CA", format!("cannot parse the certificate: {e}")))?;
    Ok(check_leaf(federation, renew_before, &ca, leaf, principal, names, now))
}

/// Issue one leaf for `principal` with `names` from `ca`, valid from
/// [`CLOCK_SKEW`] before `now` for `lifetime`; the returned `cert_pem` is
/// the chain to store as `tls.crt` (leaf, then the CA). `what` names the
/// certificate in errors.
pub fn issue_leaf(
    ca: &PartyCa,
    principal: &str,
    names: &[String],
    lifetime: Duration,
    now: SystemTime,
    what: &str,
) -> Result<CertifiedKey, Error> {
    let not_before = now.checked_sub(CLOCK_SKEW).unwrap_or(now);
    let not_after = now.checked_add(lifetime).ok_or_else(|| Error::invalid("spec.tls.certLifetime", "too long"))?;
    let leaf = ca
        .issue_party_cert(principal, names, not_before, not_after)
        .map_err(|e| Error::Issue { what: what.to_string(), source: Box::new(e) })?;
    Ok(CertifiedKey { cert_pem: chain(&leaf.cert_pem, &ca.cert_pem()), key_pem: leaf.key_pem.clone() })
}

/// Whether the leaf in `pem` can be kept: `Ok(not_after)`, or why not.
fn check_leaf(
    federation: &str,
    renew_before: Duration,
    ca: &X509Certificate<'_>,
    pem: Option<&str>,
    principal: &str,
    names: &[String],
    now: SystemTime,
) -> Result<SystemTime, Reason> {
    let pem = first_cert(pem.ok_or(Reason::Missing)?).map_err(Reason::Unreadable)?;
    let leaf = pem.parse_x509().map_err(|e| Reason::Unreadable(format!("cannot parse the certificate: {e}")))?;
    if leaf.verify_signature(Some(ca.public_key())).is_err() {
        return Err(Reason::NotIssuedByCa);
    }
    match party_identity(federation, &pem.contents) {
        Ok(PartyIdentity::Party(p)) if p == principal => {}
        Ok(other) => return Err(Reason::WrongIdentity(other.to_string())),
        Err(why) => return Err(Reason::WrongIdentity(why)),
    }
    let want: BTreeSet<String> = names.iter().map(|n| normalize_name(n)).collect();
    let have = leaf_names(&leaf).map_err(Reason::Unreadable)?;
    if want != have {
        return Err(Reason::WrongNames {
            missing: want.difference(&have).cloned().collect(),
            unexpected: have.difference(&want).cloned().collect(),
        });
    }
    let expiry = not_after(&leaf);
    // Renew exactly when the remaining lifetime is at most renewBefore.
    if expiry.duration_since(now).map_or(true, |left| left <= renew_before) {
        return Err(Reason::Renew { not_after: expiry });
    }
    Ok(expiry)
}

/// The DNS names and IP addresses a certificate carries, normalized.
fn leaf_names(cert: &X509Certificate<'_>) -> Result<BTreeSet<String>, String> {
    let san = cert.subject_alternative_name().map_err(|_| "the subject alternative names are invalid".to_string())?;
    let mut names = BTreeSet::new();
    for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
        match name {
            GeneralName::DNSName(d) => {
                names.insert(d.to_ascii_lowercase());
            }
            GeneralName::IPAddress(bytes) => {
                let ip = match bytes.len() {
                    4 => <[u8; 4]>::try_from(*bytes).map(IpAddr::from).ok(),
                    16 => <[u8; 16]>::try_from(*bytes).map(IpAddr::from).ok(),
                    _ => None,
                };
                names.insert(ip.map_or_else(|| "<invalid address>".to_string(), |ip| ip.to_string()));
            }
            _ => {}
        }
    }
    Ok(names)
}

fn normalize_name(n: &str) -> String {
    match n.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => n.to_ascii_lowercase(),
    }
}

fn not_after(cert: &X509Certificate<'_>) -> SystemTime {
    let secs = cert.validity().not_after.timestamp();
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// The first certificate of a PEM bundle.
fn first_cert(pem: &str) -> Result<Pem, String> {
    for item in Pem::iter_from_buffer(pem.as_bytes()) {
        match item {
            Ok(p) if p.label == "CERTIFICATE" => return Ok(p),
            Ok(_) => continue,
            Err(_) => return Err("not a PEM certificate".into()),
        }
    }
    Err("no PEM certificate found".into())
}

/// Check that `pem` is a bundle of one or more readable X.509 certificates
/// (a peer's or the dealer's CA). `Err` says why not, without echoing it.
pub fn check_ca_bundle(pem: &str) -> Result<(), String> {
    let mut count = 0;
    for item in Pem::iter_from_buffer(pem.as_bytes()) {
        let p = item.map_err(|_| "not a PEM certificate bundle".to_string())?;
        if p.label != "CERTIFICATE" {
            return Err(format!("holds a {:?} block; expected only certificates", p.label));
        }
        p.parse_x509().map_err(|_| format!("certificate {} cannot be parsed", count + 1))?;
        count += 1;
    }
    if count == 0 {
        return Err("holds no PEM certificate".into());
    }
    Ok(())
}

/// Freshly issued material. Keys redact `Debug` and zeroize on drop.
#[derive(Debug)]
pub struct Issued {
    /// The new party CA, when the plan generated one: store it in
    /// `<name>-ca` before anything it signed is used.
    pub ca: Option<PartyCa>,
    /// New worker chains (leaf, then the CA) and keys, by shard.
    pub workers: BTreeMap<usize, CertifiedKey>,
    /// The new operator client chain and key.
    pub operator_client: Option<CertifiedKey>,
}

/// Issue what `plan` lists: generate the CA if asked (then `ca` is
/// ignored), otherwise sign with `ca`. Leaves are valid from
/// [`CLOCK_SKEW`] before `now` for `certLifetime`; each `cert_pem` is the
/// chain to store as `tls.crt` (leaf, then the CA).
pub fn issue(plan: &Plan, req: &Requirements, ca: Option<&PartyCa>, now: SystemTime) -> Result<Issued, Error> {
    let generated = if plan.generate_ca {
        Some(
            PartyCa::generate(&req.federation, &req.party, CA_LIFETIME)
                .map_err(|e| Error::Issue { what: "the party CA".into(), source: Box::new(e) })?,
        )
    } else {
        None
    };
    let signer = match (&generated, ca) {
        (Some(g), _) => g,
        (None, Some(ca)) => ca,
        (None, None) => return Err(Error::material("the party CA", "needed to issue certificates, but not loaded")),
    };
    if signer.federation() != req.federation || signer.party() != req.party {
        return Err(Error::material(
            "the party CA",
            format!(
                "belongs to {} of {}, not {} of {}",
                signer.party(),
                signer.federation(),
                req.party,
                req.federation
            ),
        ));
    }
    let not_before = now.checked_sub(CLOCK_SKEW).unwrap_or(now);
    let not_after = now.checked_add(req.lifetime).ok_or_else(|| Error::invalid("spec.tls.certLifetime", "too long"))?;
    let ca_pem = signer.cert_pem();
    let mut issued = Issued { ca: None, workers: BTreeMap::new(), operator_client: None };
    for (slot, _) in &plan.issue {
        let (principal, names) = match slot {
            Slot::Worker(i) => {
                let names = req.worker_names.get(*i).ok_or_else(|| {
                    Error::material(slot.to_string(), "the plan names a shard the spec does not have")
                })?;
                (req.party.clone(), names.as_slice())
            }
            Slot::OperatorClient => (operator_principal(), &[][..]),
        };
        let leaf = signer
            .issue_party_cert(&principal, names, not_before, not_after)
            .map_err(|e| Error::Issue { what: slot.to_string(), source: Box::new(e) })?;
        let chained = CertifiedKey { cert_pem: chain(&leaf.cert_pem, &ca_pem), key_pem: leaf.key_pem.clone() };
        match slot {
            Slot::Worker(i) => {
                issued.workers.insert(*i, chained);
            }
            Slot::OperatorClient => issued.operator_client = Some(chained),
        }
    }
    issued.ca = generated;
    Ok(issued)
}

fn chain(leaf: &str, ca: &str) -> String {
    let mut out = String::with_capacity(leaf.len() + ca.len() + 1);
    out.push_str(leaf.trim_end());
    out.push('\n');
    out.push_str(ca.trim_end());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;
    use cohort_worker::transport::TlsIdentity;

    fn requirements(shards: i32) -> Requirements {
        let c = fixtures::cluster(shards);
        let cluster = Cluster::from_resource(&c).expect("valid");
        Requirements::from_cluster(&cluster).expect("valid tls")
    }

    /// Issue everything from nothing; return the CA and the chains.
    fn bootstrap(req: &Requirements, now: SystemTime) -> (PartyCa, Vec<String>, String) {
        let observed = Observed { ca: ObservedCa::Managed(None), workers: vec![], operator_client: None };
        let plan = plan(req, &observed, now).expect("plan");
        assert!(plan.generate_ca);
        let issued = issue(&plan, req, None, now).expect("issue");
        let workers = issued.workers.values().map(|k| k.cert_pem.clone()).collect();
        let op = issued.operator_client.as_ref().expect("operator").cert_pem.clone();
        (issued.ca.expect("a CA"), workers, op)
    }

    #[test]
    fn requirements_cover_pod_service_and_endpoint_names() {
        let req = requirements(2);
        assert_eq!(req.lifetime, Duration::from_secs(720 * 3600));
        assert_eq!(req.renew_before, Duration::from_secs(240 * 3600));
        for (i, names) in req.worker_names.iter().enumerate() {
            for want in [
                format!("consortium-{i}.consortium-workers.bank-a.svc"),
                format!("consortium-{i}.consortium-workers.bank-a.svc.cluster.local"),
                format!("consortium-peer-{i}.bank-a.svc"),
                "mpc.bank-a.example".to_string(),
            ] {
                assert!(names.contains(&want), "shard {i} lacks {want}: {names:?}");
            }
        }
    }

    #[test]
    fn nothing_found_means_a_new_ca_and_every_leaf() {
        let req = requirements(2);
        let observed = Observed { ca: ObservedCa::Managed(None), workers: vec![], operator_client: None };
        let plan = plan(&req, &observed, fixtures::now()).expect("plan");
        assert!(plan.generate_ca);
        assert_eq!(
            plan.issue,
            vec![
                (Slot::Worker(0), Reason::Missing),
                (Slot::Worker(1), Reason::Missing),
                (Slot::OperatorClient, Reason::Missing)
            ]
        );
    }

    #[test]
    fn issued_certificates_carry_identity_and_names_and_then_plan_nothing() {
        let req = requirements(2);
        let now = fixtures::now();
        let (ca, workers, op) = bootstrap(&req, now);
        // The SANs cover exactly the required names, the identity is the party's.
        for (i, chain) in workers.iter().enumerate() {
            let pem = first_cert(chain).expect("pem");
            let leaf = pem.parse_x509().expect("x509");
            let want: BTreeSet<String> = req.worker_names[i].iter().cloned().collect();
            assert_eq!(leaf_names(&leaf).expect("names"), want);
            assert_eq!(party_identity("consortium", &pem.contents), Ok(PartyIdentity::Party("bank-a".into())));
            // The worker's TLS stack accepts the chain (leaf first) with the CA.
            assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
        }
        let pem = first_cert(&op).expect("pem");
        assert_eq!(party_identity("consortium", &pem.contents), Ok(PartyIdentity::Party("controller/operator".into())));
        let ca_pem = ca.cert_pem();
        let observed = Observed {
            ca: ObservedCa::Managed(Some(&ca_pem)),
            workers: workers.iter().map(|w| Some(w.as_str())).collect(),
            operator_client: Some(&op),
        };
        let plan = plan(&req, &observed, now).expect("plan");
        assert!(plan.is_empty(), "{plan:?}");
        let expiry = plan.worker_not_after.expect("kept");
        let lifetime = expiry.duration_since(now).expect("future").as_secs();
        assert!((720 * 3600 - 5..=720 * 3600).contains(&lifetime), "{lifetime}");
        assert_eq!(plan.next_renewal, Some(expiry - req.renew_before));
        assert!(plan.ca_not_after.expect("ca") > expiry);
    }

    #[test]
    fn renewal_is_planned_exactly_within_renew_before() {
        let req = requirements(1);
        let issued_at = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        let (ca, workers, op) = bootstrap(&req, issued_at);
        let ca_pem = ca.cert_pem();
        let observed = Observed {
            ca: ObservedCa::Managed(Some(&ca_pem)),
            workers: vec![Some(&workers[0])],
            operator_client: Some(&op),
        };
        let not_after = issued_at + req.lifetime;
        let due = not_after - req.renew_before;
        let before = plan(&req, &observed, due - Duration::from_secs(1)).expect("plan");
        assert!(before.is_empty(), "{before:?}");
        assert_eq!(before.next_renewal, Some(due));
        let at = plan(&req, &observed, due).expect("plan");
        assert_eq!(
            at.issue,
            vec![(Slot::Worker(0), Reason::Renew { not_after }), (Slot::OperatorClient, Reason::Renew { not_after })]
        );
        let expired = plan(&req, &observed, not_after + Duration::from_secs(10)).expect("plan");
        assert_eq!(expired.issue.len(), 2);
    }

    #[test]
    fn wrong_names_wrong_identity_wrong_issuer_and_garbage_are_reissued() {
        let req = requirements(3);
        let now = fixtures::now();
        let (ca, workers, _) = bootstrap(&req, now);
        let ca_pem = ca.cert_pem();
        // Shard 0 presents shard 1's names; shard 1 the operator's identity;
        // shard 2 a certificate of another CA; the operator slot garbage.
        let other = PartyCa::generate("consortium", "bank-a", Duration::from_secs(86400)).expect("ca");
        let foreign = other.issue_party_cert("bank-a", &req.worker_names[2], now, now + req.lifetime).expect("leaf");
        let op_as_worker =
            ca.issue_party_cert("controller/operator", &req.worker_names[1], now, now + req.lifetime).expect("leaf");
        let observed = Observed {
            ca: ObservedCa::Provided(&ca_pem),
            workers: vec![Some(&workers[1]), Some(&op_as_worker.cert_pem), Some(&foreign.cert_pem)],
            operator_client: Some("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"),
        };
        let plan = plan(&req, &observed, now).expect("plan");
        assert!(!plan.generate_ca);
        let reasons: BTreeMap<Slot, &Reason> = plan.issue.iter().map(|(s, r)| (*s, r)).collect();
        assert!(matches!(reasons[&Slot::Worker(0)], Reason::WrongNames { missing, unexpected }
            if missing.iter().any(|n| n.starts_with("consortium-0.")) && unexpected.iter().any(|n| n.starts_with("consortium-1."))));
        assert!(matches!(reasons[&Slot::Worker(1)], Reason::WrongIdentity(_)));
        assert_eq!(reasons[&Slot::Worker(2)], &Reason::NotIssuedByCa);
        assert!(matches!(reasons[&Slot::OperatorClient], Reason::Unreadable(_)));
        // Reissuing with the provided CA fixes all four.
        let issued = issue(&plan, &req, Some(&ca), now).expect("issue");
        assert!(issued.ca.is_none());
        let chains: Vec<String> = (0..3).map(|i| issued.workers[&i].cert_pem.clone()).collect();
        let op = issued.operator_client.as_ref().expect("op").cert_pem.clone();
        let observed = Observed {
            ca: ObservedCa::Provided(&ca_pem),
            workers: chains.iter().map(|c| Some(c.as_str())).collect(),
            operator_client: Some(&op),
        };
        assert!(super::plan(&req, &observed, now).expect("plan").is_empty());
    }

    #[test]
    fn an_unreadable_provided_ca_is_an_error_and_a_managed_one_is_replaced() {
        let req = requirements(1);
        let err = plan(
            &req,
            &Observed { ca: ObservedCa::Provided("junk"), workers: vec![], operator_client: None },
            fixtures::now(),
        )
        .expect_err("unreadable user CA");
        assert!(err.to_string().contains("spec.tls.ca"), "{err}");
        let plan = plan(
            &req,
            &Observed { ca: ObservedCa::Managed(Some("junk")), workers: vec![Some("junk")], operator_client: None },
            fixtures::now(),
        )
        .expect("plan");
        assert!(plan.generate_ca);
        assert_eq!(plan.issue[0], (Slot::Worker(0), Reason::NewCa));
    }

    #[test]
    fn a_ca_of_another_party_is_refused() {
        let req = requirements(1);
        let now = fixtures::now();
        let observed = Observed { ca: ObservedCa::Managed(Some("x")), workers: vec![], operator_client: None };
        let mut plan = plan(&req, &observed, now).expect("plan");
        plan.generate_ca = false;
        let wrong = PartyCa::generate("consortium", "bank-b", Duration::from_secs(3600)).expect("ca");
        let err = issue(&plan, &req, Some(&wrong), now).expect_err("wrong CA");
        assert!(err.to_string().contains("bank-b"), "{err}");
        let err = issue(&plan, &req, None, now).expect_err("no CA");
        assert!(err.to_string().contains("party CA"), "{err}");
    }

    #[test]
    fn issued_worker_material_loads_in_the_worker_tls_stack() {
        let req = requirements(1);
        let now = fixtures::now();
        let observed = Observed { ca: ObservedCa::Managed(None), workers: vec![], operator_client: None };
        let plan = plan(&req, &observed, now).expect("plan");
        let issued = issue(&plan, &req, None, now).expect("issue");
        let ca = issued.ca.as_ref().expect("ca").cert_pem();
        let w = &issued.workers[&0];
        let peers = vec![("bank-b".to_string(), fixtures::foreign_ca("bank-b"))];
        TlsIdentity::from_pem_pinned("consortium", "bank-a", &w.cert_pem, &w.key_pem, &peers).expect("worker identity");
        let op = issued.operator_client.as_ref().expect("op");
        TlsIdentity::from_pem("consortium", "controller/operator", &op.cert_pem, &op.key_pem, &ca)
            .expect("operator identity");
    }

    #[test]
    fn a_managed_ca_nearing_its_end_is_planned_for_renewal_and_a_provided_one_never() {
        let req = requirements(1);
        let now = fixtures::now();
        let young = PartyCa::generate("consortium", "bank-a", Duration::from_secs(100 * 86400)).expect("ca");
        let old = PartyCa::generate("consortium", "bank-a", Duration::from_secs(5 * 86400)).expect("ca");
        let plan_for = |ca: ObservedCa<'_>| {
            plan(&req, &Observed { ca, workers: vec![], operator_client: None }, now).expect("plan").renew_ca
        };
        let (young_pem, old_pem) = (young.cert_pem(), old.cert_pem());
        assert!(!plan_for(ObservedCa::Managed(Some(&young_pem))));
        assert!(plan_for(ObservedCa::Managed(Some(&old_pem))), "5 days left is within renewBefore (10 days)");
        assert!(!plan_for(ObservedCa::Provided(&old_pem)), "a provided CA is the user's to renew");
    }

    /// A leaf issued under the old CA certificate is accepted, by a real
    /// worker's TLS stack, by a client that trusts only the renewed one.
    #[tokio::test]
    async fn a_renewed_ca_keeps_its_key_and_the_leaves_it_issued_stay_valid() {
        use cohort_worker::service::Worker;
        use cohort_worker::service::config::WorkerConfig;
        use cohort_worker::service::control::ControlClient;
        let req = requirements(1);
        let now = fixtures::now();
        let old = PartyCa::generate("consortium", "bank-a", Duration::from_secs(5 * 86400)).expect("ca");
        let leaf = issue_leaf(&old, "bank-a", &["localhost".into()], Duration::from_secs(20 * 86400), now, "leaf")
            .expect("leaf");
        let op = issue_leaf(&old, &operator_principal(), &[], Duration::from_secs(20 * 86400), now, "op").expect("op");
        let stored = old.to_pem();
        let renewed =
            renew_ca("consortium", "bank-a", &stored.cert_pem, &stored.key_pem, CA_LIFETIME, now).expect("renewed");
        assert_ne!(renewed.cert_pem(), old.cert_pem());
        assert_eq!(renewed.to_pem().key_pem, stored.key_pem, "the same key");
        let new_pem = renewed.cert_pem();
        let (_, new_x509) = x509_parser::pem::parse_x509_pem(new_pem.as_bytes()).expect("pem");
        let new_x509 = new_x509.parse_x509().expect("x509");
        let (_, old_x509) = x509_parser::pem::parse_x509_pem(old.cert_pem().as_bytes()).expect("pem");
        let old_x509 = old_x509.parse_x509().expect("x509");
        assert_eq!(new_x509.subject(), old_x509.subject());
        assert!(not_after(&new_x509) > not_after(&old_x509) + Duration::from_secs(365 * 86400));
        // Nothing to reissue: the leaves verify against the renewed CA.
        let observed = Observed {
            ca: ObservedCa::Managed(Some(&new_pem)),
            workers: vec![Some(&leaf.cert_pem)],
            operator_client: Some(&op.cert_pem),
        };
        let p =
            plan(&Requirements { worker_names: vec![vec!["localhost".into()]], ..req }, &observed, now).expect("plan");
        assert!(p.issue.is_empty() && !p.renew_ca, "{p:?}");

        // A worker serving the old leaf; the operator trusting only the
        // renewed CA certificate completes a handshake with it.
        let dir = tempfile::tempdir().expect("dir");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path
        };
        let config = serde_json::json!({
            "federation": "consortium", "party": "bank-a",
            "listen": {"peer": "127.0.0.1:0", "control": "127.0.0.1:0", "metrics": "127.0.0.1:0"},
            "tls": {"cert": write("leaf.crt", &leaf.cert_pem), "key": write("leaf.key", &leaf.key_pem),
                    "peerCas": {"bank-b": write("b.pem", &fixtures::foreign_ca("bank-b"))}},
            "controller": {"name": "operator", "ca": write("ca.pem", &new_pem)},
            "parties": [{"name": "bank-a", "endpoint": "127.0.0.1:1"}, {"name": "bank-b", "endpoint": "127.0.0.1:2"}],
        });
        let path = write("worker.yaml", &config.to_string());
        let loaded = WorkerConfig::read(&path).and_then(|c| c.load(&path)).expect("the worker loads");
        let worker = Worker::start(loaded).await.expect("the worker starts");
        let identity = TlsIdentity::from_pem_pinned(
            "consortium",
            &operator_principal(),
            &op.cert_pem,
            &op.key_pem,
            &[("bank-a".to_string(), new_pem.clone())],
        )
        .expect("identity");
        let client = ControlClient::new(std::sync::Arc::new(identity), worker.control_addr.to_string(), "bank-a");
        let health = client.health().await.expect("the old leaf verifies against the renewed CA");
        assert_eq!(health.party, "bank-a");
    }

    #[test]
    fn ca_bundles_are_checked_without_echoing_them() {
        assert!(check_ca_bundle(&fixtures::foreign_ca("bank-b")).is_ok());
        let two = format!("{}{}", fixtures::foreign_ca("bank-b"), fixtures::foreign_ca("bank-b"));
        assert!(check_ca_bundle(&two).is_ok());
        for bad in ["", "secret-looking text", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"] {
            let err = check_ca_bundle(bad).expect_err(bad);
            assert!(!err.contains("AAAA") && !err.contains("secret-looking"), "{err}");
        }
    }
}
