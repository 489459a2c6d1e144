//! The worker's configuration file (YAML) and what it loads: addresses,
//! the TLS identity and trust, the controller allowed on the control API,
//! the dealer, limits and default timeouts.
//!
//! ```yaml
//! federation: consortium
//! party: bank-a
//! listen: {peer: "0.0.0.0:7443", control: "0.0.0.0:7444", metrics: "0.0.0.0:9464"}
//! tls:
//!   cert: /etc/cohort/tls/tls.crt         # chain, leaf first
//!   key: /etc/cohort/tls/tls.key
//!   peerCas: {bank-b: /etc/cohort/trust/bank-b.pem, bank-c: /etc/cohort/trust/bank-c.pem}
//! controller: {name: operator, ca: /etc/cohort/trust/bank-a.pem}
//! parties:                                 # the federation, this party included
//!   - {name: bank-a, endpoint: "mpc.bank-a.example:7443"}
//!   - {name: bank-b, endpoint: "mpc.bank-b.example:7443"}
//!   - {name: bank-c, endpoint: "mpc.bank-c.example:7443"}
//! dealer: {name: main, endpoint: "dealer.example:7500", ca: /etc/cohort/trust/dealer.pem}   # optional
//! limits: {maxJobs: 4, maxVectorLen: 16777216}
//! timeouts: {connect: 30s, round: 30s, total: 10m}
//! resultsDir: /var/lib/cohort/results     # optional: results are written here before a job succeeds
//! ```
//!
//! Relative paths are relative to the configuration file. Every peer is
//! trusted only through its own CA (`peerCas`); the controller and the
//! dealer likewise through theirs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::transport::{Role, SharedIdentity, TlsMaterial, validate_principal};

/// The configuration as written in the file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkerConfig {
    pub federation: String,
    pub party: String,
    pub listen: Listen,
    pub tls: TlsFiles,
    pub controller: Controller,
    pub parties: Vec<PartyEndpoint>,
    #[serde(default)]
    pub dealer: Option<DealerEndpoint>,
    #[serde(default)]
    pub limits: ServiceLimits,
    #[serde(default)]
    pub timeouts: DefaultTimeouts,
    #[serde(default)]
    pub results_dir: Option<PathBuf>,
    /// Append one record per finished job here (docs/worker.md, "Audit log").
    #[serde(default)]
    pub audit_log: Option<PathBuf>,
    /// The protocol versions this worker offers its peers; by default every
    /// version the build implements. Narrowing it pins a federation to a
    /// version during a rolling upgrade (docs/upgrades.md).
    #[serde(default)]
    pub protocol: ProtocolVersions,
    /// How often each peer's worker is probed (docs/worker.md, "Peer
    /// probes").
    #[serde(default)]
    pub peer_probe: PeerProbe,
    /// The durable preprocessing pool (docs/preprocessing.md, "The
    /// store"): jobs with `preprocessing: pool` take their material here.
    #[serde(default)]
    pub pool: Option<PoolConfig>,
}

/// The worker's preprocessing pool.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PoolConfig {
    /// The store's directory (created private to the worker's user).
    pub dir: PathBuf,
    /// Batches older than this are overwritten and deleted.
    #[serde(default = "default_pool_ttl", deserialize_with = "de_duration")]
    pub ttl: Duration,
    /// Background generation: when a kind falls below `lowWatermark`
    /// items, the federation's fill leader (the last party by name) fills
    /// it to `target` with every party. A kind with `target: 0` (the
    /// default) is not generated in the background; with no positive
    /// target, fills come from the controller only.
    #[serde(default)]
    pub low_watermark: usize,
    #[serde(default)]
    pub target: usize,
    /// The division pairs' own watermarks (per divisor); by default the
    /// triples'.
    #[serde(default)]
    pub division_pairs: Option<Watermarks>,
    /// The binary kinds' watermarks (bit triples counted in words of 64,
    /// edaBits, daBits). A kind without them is not generated in the
    /// background: its batches come from the controller's fills.
    #[serde(default)]
    pub bit_triples: Option<Watermarks>,
    #[serde(default)]
    pub eda_bits: Option<Watermarks>,
    #[serde(default)]
    pub da_bits: Option<Watermarks>,
    /// Items per batch of the background fills.
    #[serde(default = "default_pool_per_batch")]
    pub per_batch: usize,
    /// Divisors (powers of two) whose division pairs are kept beside the
    /// triples: `2^f` for the programs' fixed-point precision `f`.
    #[serde(default = "default_pool_divisors")]
    pub divisors: Vec<u64>,
    /// How often the leader compares the pool with its watermarks.
    #[serde(default = "default_pool_check", deserialize_with = "de_duration")]
    pub check_interval: Duration,
}

/// A kind's low watermark and target, in items.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Watermarks {
    pub low_watermark: usize,
    pub target: usize,
}

impl PoolConfig {
    /// Whether the pool fills itself (some kind has a positive target).
    pub fn keeps_watermarks(&self) -> bool {
        self.target > 0
            || [self.division_pairs, self.bit_triples, self.eda_bits, self.da_bits]
                .iter()
                .any(|w| w.is_some_and(|w| w.target > 0))
    }

    /// The watermarks of `kind` (zero for a binary kind without its own).
    pub fn watermarks(&self, kind: crate::preprocessing::store::StoredKind) -> Watermarks {
        use crate::preprocessing::store::StoredKind;
        let none = Watermarks { low_watermark: 0, target: 0 };
        match kind {
            StoredKind::DivPairs { .. } if self.division_pairs.is_some() => self.division_pairs.unwrap_or(none),
            StoredKind::Triples | StoredKind::DivPairs { .. } => {
                Watermarks { low_watermark: self.low_watermark, target: self.target }
            }
            StoredKind::BitTriples => self.bit_triples.unwrap_or(none),
            StoredKind::EdaBits => self.eda_bits.unwrap_or(none),
            StoredKind::DaBits => self.da_bits.unwrap_or(none),
        }
    }
}

fn default_pool_per_batch() -> usize {
    16384
}

fn default_pool_divisors() -> Vec<u64> {
    vec![1 << crate::fixed::DEFAULT_FRAC_BITS]
}

fn default_pool_check() -> Duration {
    Duration::from_secs(5)
}

fn default_pool_ttl() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}

/// Peer probe settings.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerProbe {
    #[serde(default = "default_probe_interval", deserialize_with = "de_duration")]
    pub interval: Duration,
    #[serde(default = "default_probe_timeout", deserialize_with = "de_duration")]
    pub timeout: Duration,
}

fn default_probe_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_probe_timeout() -> Duration {
    Duration::from_secs(5)
}

impl Default for PeerProbe {
    fn default() -> Self {
        PeerProbe { interval: default_probe_interval(), timeout: default_probe_timeout() }
    }
}

/// An inclusive range of protocol versions; either end defaults to the
/// build's own ([`crate::protocol::SUPPORTED_VERSIONS`]).
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProtocolVersions {
    /// The protocol this party runs (`additive-semi-honest` by default);
    /// every party of the federation must run the same.
    #[serde(default)]
    pub name: crate::protocol::ProtocolName,
    #[serde(default)]
    pub min_version: Option<u32>,
    #[serde(default)]
    pub max_version: Option<u32>,
}

impl ProtocolVersions {
    /// The offered range, checked against what the build implements.
    pub fn resolve(self) -> Result<(u32, u32), String> {
        let (build_min, build_max) = crate::protocol::SUPPORTED_VERSIONS;
        let min = self.min_version.unwrap_or(build_min);
        let max = self.max_version.unwrap_or(build_max);
        if min > max {
            return Err(format!("minVersion {min} is above maxVersion {max}"));
        }
        if min < build_min || max > build_max {
            return Err(format!(
                "{min}..={max} is outside the versions this build implements ({build_min}..={build_max})"
            ));
        }
        Ok((min, max))
    }
}

/// Addresses to listen on (`host:port`; port 0 picks a free port, which
/// the worker prints on stdout once bound).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// The party-to-party protocol port (mutual TLS).
    pub peer: String,
    /// The control API (mutual TLS, controller only).
    pub control: String,
    /// `/metrics`, `/healthz`, `/readyz` (plain HTTP).
    pub metrics: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsFiles {
    /// This worker's certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// Each peer party's CA bundle (PEM).
    pub peer_cas: BTreeMap<String, PathBuf>,
    /// How often the worker re-reads these files (and the controller's and
    /// dealer's CAs) and, when they changed, switches new handshakes to
    /// them: certificates are renewed without a restart.
    #[serde(default = "default_reload_interval", deserialize_with = "de_duration")]
    pub reload_interval: Duration,
}

fn default_reload_interval() -> Duration {
    Duration::from_secs(10)
}

/// The only client the control API accepts: principal `controller/<name>`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Controller {
    pub name: String,
    /// CA bundle that issues the controller's certificate.
    pub ca: PathBuf,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartyEndpoint {
    pub name: String,
    /// `host:port` of the party's peer port.
    pub endpoint: String,
}

/// A trusted dealer (a TRUSTED THIRD PARTY) serving material.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DealerEndpoint {
    /// Principal `dealer/<name>`.
    pub name: String,
    pub endpoint: String,
    pub ca: PathBuf,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceLimits {
    /// Jobs running at once; more are refused (429).
    #[serde(default = "default_max_jobs")]
    pub max_jobs: usize,
    /// Largest input vector a party may declare.
    #[serde(default = "default_max_vector_len")]
    pub max_vector_len: usize,
    /// Largest control API request body. At most a few bodies are read at
    /// once (see `control`), so this bounds the API's memory too.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// Control API connections served at once; more are closed at once.
    #[serde(default = "default_max_control_connections")]
    pub max_control_connections: usize,
    /// Metrics port connections served at once; more are closed at once.
    #[serde(default = "default_max_metrics_connections")]
    pub max_metrics_connections: usize,
    /// Finished jobs remembered for status queries (oldest forgotten first).
    #[serde(default = "default_history")]
    pub history: usize,
    /// How long an admitted job id is remembered (durably with a results
    /// directory), so that it never runs twice.
    #[serde(default = "default_id_retention", deserialize_with = "de_duration")]
    pub id_retention: Duration,
    /// Job ids remembered at most (the oldest are forgotten first).
    #[serde(default = "default_max_remembered_ids")]
    pub max_remembered_ids: usize,
}

fn default_id_retention() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}
fn default_max_remembered_ids() -> usize {
    1_000_000
}

fn default_max_jobs() -> usize {
    4
}
fn default_max_vector_len() -> usize {
    1 << 24
}
fn default_max_request_bytes() -> usize {
    64 << 20
}
fn default_max_control_connections() -> usize {
    64
}
fn default_max_metrics_connections() -> usize {
    16
}
fn default_history() -> usize {
    1000
}

impl Default for ServiceLimits {
    fn default() -> Self {
        ServiceLimits {
            max_jobs: default_max_jobs(),
            max_vector_len: default_max_vector_len(),
            max_request_bytes: default_max_request_bytes(),
            max_control_connections: default_max_control_connections(),
            max_metrics_connections: default_max_metrics_connections(),
            history: default_history(),
            id_retention: default_id_retention(),
            max_remembered_ids: default_max_remembered_ids(),
        }
    }
}

/// Default time limits of jobs that do not set their own.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultTimeouts {
    #[serde(default = "default_connect", deserialize_with = "de_duration")]
    pub connect: Duration,
    #[serde(default = "default_round", deserialize_with = "de_duration")]
    pub round: Duration,
    #[serde(default = "default_total", deserialize_with = "de_duration")]
    pub total: Duration,
}

fn default_connect() -> Duration {
    Duration::from_secs(30)
}
fn default_round() -> Duration {
    Duration::from_secs(30)
}
fn default_total() -> Duration {
    Duration::from_secs(600)
}

impl Default for DefaultTimeouts {
    fn default() -> Self {
        DefaultTimeouts { connect: default_connect(), round: default_round(), total: default_total() }
    }
}

fn de_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

/// A duration: one or more `<integer><unit>` parts, units `ms`, `s`, `m`,
/// `h` (`500ms`, `30s`, `10m`, `1h30m`). Must be positive.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const SYNTAX: &str = "expected a duration such as 500ms, 30s, 10m or 1h30m";
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(SYNTAX.into());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let units = rest[digits..].bytes().take_while(u8::is_ascii_alphabetic).count();
        if digits == 0 || units == 0 {
            return Err(SYNTAX.into());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| "too long".to_string())?;
        let part = match &rest[digits..digits + units] {
            "ms" => Some(Duration::from_millis(n)),
            "s" => Some(Duration::from_secs(n)),
            "m" => n.checked_mul(60).map(Duration::from_secs),
            "h" => n.checked_mul(3600).map(Duration::from_secs),
            _ => return Err(format!("{SYNTAX} (units: ms, s, m, h)")),
        };
        total = part.and_then(|p| total.checked_add(p)).ok_or_else(|| "too long".to_string())?;
        rest = &rest[digits + units..];
    }
    if total.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(total)
}

/// A configuration problem: which file or field, and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("{path}: {field}: {reason}")]
    Invalid { path: PathBuf, field: String, reason: String },
    /// A listen address could not be bound (taken, or not this host's).
    #[error("listen.{what}: cannot listen on {addr}: {source}")]
    Listen { what: &'static str, addr: String, source: std::io::Error },
}

impl ConfigError {
    /// Whether this is a listen address another socket holds: a launcher
    /// that picked the port itself may pick another and start again.
    pub fn is_address_in_use(&self) -> bool {
        matches!(self, ConfigError::Listen { source, .. } if source.kind() == std::io::ErrorKind::AddrInUse)
    }
}

/// A loaded configuration: the file's settings and the TLS identity built
/// from the files it names.
pub struct Loaded {
    pub config: WorkerConfig,
    /// Replaced in place when the files change ([`super::reload`]).
    pub identity: SharedIdentity,
    /// Digest of the TLS files `identity` was built from.
    pub(crate) tls_digest: [u8; 32],
    /// The controller principal (`controller/<name>`).
    pub controller: String,
    /// The dealer principal (`dealer/<name>`), when a dealer is configured.
    pub dealer: Option<String>,
    /// The open audit log, when `auditLog` is set.
    pub audit: Option<super::audit::AuditLog>,
    /// The open preprocessing store, when `pool` is set (taken by
    /// [`super::pool::Pool`] at start).
    pub store: Option<crate::preprocessing::store::Store>,
    /// The protocol versions offered to peers (inclusive).
    pub versions: (u32, u32),
    /// The protocol this party runs (`protocol.name`).
    pub protocol: crate::protocol::ProtocolName,
}

impl WorkerConfig {
    /// Read every TLS file: this worker's chain and key, each peer's CA,
    /// the controller's CA and the dealer's.
    pub fn read_tls(&self, controller: &str, dealer: Option<&str>) -> Result<TlsMaterial, ConfigError> {
        let read = |p: &Path| std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.into(), source });
        let cert = read(&self.tls.cert)?;
        let key = read(&self.tls.key)?;
        let mut trusted = Vec::new();
        for (name, ca) in &self.tls.peer_cas {
            trusted.push((name.clone(), read(ca)?));
        }
        trusted.push((controller.to_string(), read(&self.controller.ca)?));
        if let (Some(d), Some(principal)) = (&self.dealer, dealer) {
            trusted.push((principal.to_string(), read(&d.ca)?));
        }
        Ok(TlsMaterial::pinned(cert, key, trusted))
    }

    /// Read and check the file at `path`.
    pub fn read(path: &Path) -> Result<WorkerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let mut config: WorkerConfig = serde_saphyr::from_str(&text)
            .map_err(|e| ConfigError::Parse { path: path.into(), reason: e.to_string() })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.tls.cert);
        fix(&mut self.tls.key);
        self.tls.peer_cas.values_mut().for_each(fix);
        fix(&mut self.controller.ca);
        if let Some(d) = &mut self.dealer {
            fix(&mut d.ca);
        }
        if let Some(r) = &mut self.results_dir {
            fix(r);
        }
        if let Some(a) = &mut self.audit_log {
            fix(a);
        }
        if let Some(p) = &mut self.pool {
            fix(&mut p.dir);
        }
    }

    /// Check the settings and load the TLS identity. `path` names the file
    /// in errors.
    pub fn load(self, path: &Path) -> Result<Loaded, ConfigError> {
        let invalid =
            |field: &str, reason: String| ConfigError::Invalid { path: path.into(), field: field.into(), reason };
        crate::transport::certs::validate_name("federation", &self.federation).map_err(|r| invalid("federation", r))?;
        crate::transport::certs::validate_name("party", &self.party).map_err(|r| invalid("party", r))?;
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.parties {
            crate::transport::certs::validate_name("party", &p.name).map_err(|r| invalid("parties", r))?;
            if !seen.insert(p.name.as_str()) {
                return Err(invalid("parties", format!("party {} is listed twice", p.name)));
            }
        }
        if !seen.contains(self.party.as_str()) {
            return Err(invalid("parties", format!("this party ({}) is not listed", self.party)));
        }
        for p in &self.parties {
            if p.name != self.party && !self.tls.peer_cas.contains_key(&p.name) {
                return Err(invalid("tls.peerCas", format!("no CA is given for party {}", p.name)));
            }
        }
        for name in self.tls.peer_cas.keys() {
            if !seen.contains(name.as_str()) || *name == self.party {
                return Err(invalid("tls.peerCas", format!("{name} is not a peer party of this federation")));
            }
        }
        if self.tls.reload_interval < crate::transport::reload::MIN_INTERVAL {
            return Err(invalid(
                "tls.reloadInterval",
                format!("must be at least {:?}", crate::transport::reload::MIN_INTERVAL),
            ));
        }
        if self.peer_probe.interval < Duration::from_millis(100) {
            return Err(invalid("peerProbe.interval", "must be at least 100ms".into()));
        }
        if self.limits.max_jobs == 0 {
            return Err(invalid("limits.maxJobs", "must be at least 1".into()));
        }
        if self.limits.max_control_connections == 0 {
            return Err(invalid("limits.maxControlConnections", "must be at least 1".into()));
        }
        if self.limits.max_metrics_connections == 0 {
            return Err(invalid("limits.maxMetricsConnections", "must be at least 1".into()));
        }
        let versions = self.protocol.resolve().map_err(|r| invalid("protocol", r))?;
        let protocol = self.protocol.name;
        protocol.check_parties(self.parties.len()).map_err(|r| invalid("protocol.name", r))?;
        if self.pool.is_some() && !self.protocol.name.uses_preprocessing() {
            return Err(invalid(
                "pool",
                format!("{} takes no preprocessing material; remove the pool", self.protocol.name),
            ));
        }
        let controller = Role::Controller.principal(&self.controller.name);
        validate_principal(&controller).map_err(|r| invalid("controller.name", r))?;
        let dealer = match &self.dealer {
            Some(d) => {
                let principal = Role::Dealer.principal(&d.name);
                validate_principal(&principal).map_err(|r| invalid("dealer.name", r))?;
                Some(principal)
            }
            None => None,
        };
        let material = self.read_tls(&controller, dealer.as_deref())?;
        let identity =
            material.identity(&self.federation, &self.party).map_err(|e| invalid("tls", e.kind.to_string()))?;
        let tls_digest = material.digest();
        let audit = match &self.audit_log {
            Some(p) => Some(super::audit::AuditLog::open(p).map_err(|e| invalid("auditLog", e.source.to_string()))?),
            None => None,
        };
        if let Some(p) = &self.pool
            && let Some((field, w)) = [("bitTriples", p.bit_triples), ("edaBits", p.eda_bits), ("daBits", p.da_bits)]
                .into_iter()
                .find_map(|(f, w)| w.filter(|w| w.low_watermark > w.target).map(|w| (f, w)))
        {
            let field = format!("pool.{field}.lowWatermark");
            return Err(invalid(&field, format!("must not exceed target ({})", w.target)));
        }
        let store = match &self.pool {
            Some(p) if p.ttl.is_zero() => return Err(invalid("pool.ttl", "must be positive".into())),
            Some(p) if p.low_watermark > p.target => {
                return Err(invalid("pool.lowWatermark", format!("must not exceed target ({})", p.target)));
            }
            Some(PoolConfig { division_pairs: Some(w), .. }) if w.low_watermark > w.target => {
                return Err(invalid(
                    "pool.divisionPairs.lowWatermark",
                    format!("must not exceed target ({})", w.target),
                ));
            }

            Some(p) if p.per_batch == 0 || p.per_batch > crate::preprocessing::ot::session::MAX_ITEMS_PER_CALL => {
                return Err(invalid(
                    "pool.perBatch",
                    format!("must be between 1 and {}", crate::preprocessing::ot::session::MAX_ITEMS_PER_CALL),
                ));
            }
            Some(p) if p.divisors.iter().any(|d| !d.is_power_of_two()) => {
                return Err(invalid("pool.divisors", "OT-based generation serves powers of two only".into()));
            }
            Some(p) if p.check_interval < Duration::from_millis(100) => {
                return Err(invalid("pool.checkInterval", "must be at least 100ms".into()));
            }
            Some(p) => {
                Some(crate::preprocessing::store::Store::open(&p.dir).map_err(|e| invalid("pool.dir", e.to_string()))?)
            }
            None => None,
        };
        Ok(Loaded {
            config: self,
            identity: SharedIdentity::new(identity),
            tls_digest,
            controller,
            dealer,
            audit,
            store,
            versions,
            protocol,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        for bad in ["", "s", "10", "0s", "1.5s", "10 m", "-1s", "10d", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pool_settings_default_sensibly_and_division_pairs_may_keep_their_own_watermarks() {
        use crate::preprocessing::store::StoredKind;
        let p: PoolConfig = serde_saphyr::from_str("dir: /pool\nlowWatermark: 10\ntarget: 40\n").expect("parses");
        assert_eq!(
            (p.ttl, p.per_batch, p.check_interval),
            (Duration::from_secs(7 * 86400), 16384, Duration::from_secs(5))
        );
        assert_eq!(p.divisors, [1 << 16]);
        let triples = Watermarks { low_watermark: 10, target: 40 };
        assert_eq!(p.watermarks(StoredKind::DivPairs { divisor: 1 << 16 }), triples, "the triples' by default");
        let own = "dir: /pool\nlowWatermark: 10\ntarget: 40\ndivisionPairs: {lowWatermark: 1, target: 2}\n";
        let p: PoolConfig = serde_saphyr::from_str(own).expect("parses");
        assert_eq!(p.watermarks(StoredKind::Triples), triples);
        assert_eq!(p.watermarks(StoredKind::DivPairs { divisor: 4 }), Watermarks { low_watermark: 1, target: 2 });
        assert!(serde_saphyr::from_str::<PoolConfig>("dir: /pool\nwatermark: 3\n").is_err(), "unknown keys");
        // The binary kinds keep their own watermarks, or none.
        assert_eq!(p.watermarks(StoredKind::EdaBits), Watermarks { low_watermark: 0, target: 0 });
        let binary = "dir: /pool\nbitTriples: {lowWatermark: 5, target: 9}\nedaBits: {lowWatermark: 6, target: 7}\n\
                      daBits: {lowWatermark: 1, target: 3}\n";
        let p: PoolConfig = serde_saphyr::from_str(binary).expect("parses");
        assert!(p.keeps_watermarks());
        assert_eq!(p.watermarks(StoredKind::BitTriples), Watermarks { low_watermark: 5, target: 9 });
        assert_eq!(p.watermarks(StoredKind::EdaBits), Watermarks { low_watermark: 6, target: 7 });
        assert_eq!(p.watermarks(StoredKind::DaBits), Watermarks { low_watermark: 1, target: 3 });
        assert_eq!(p.watermarks(StoredKind::Triples), Watermarks { low_watermark: 0, target: 0 });
    }

    #[test]
    fn protocol_versions_default_to_the_build_and_stay_inside_it() {
        let (lo, hi) = crate::protocol::SUPPORTED_VERSIONS;
        assert_eq!(ProtocolVersions::default().resolve(), Ok((lo, hi)));
        let pinned = ProtocolVersions { min_version: None, max_version: Some(lo), ..Default::default() };
        assert_eq!(pinned.resolve(), Ok((lo, lo)));
        let above = ProtocolVersions { min_version: None, max_version: Some(hi + 1), ..Default::default() };
        assert!(above.resolve().unwrap_err().contains("outside the versions this build implements"));
        let below = ProtocolVersions { min_version: Some(0), max_version: None, ..Default::default() };
        assert!(below.resolve().is_err());
        let empty =
            ProtocolVersions { min_version: Some(hi), max_version: Some(lo.saturating_sub(1)), ..Default::default() };
        assert!(empty.resolve().is_err());
    }
}
