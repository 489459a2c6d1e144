//! Each shard's `cohort-worker` configuration file, in the format of
//! docs/worker.md (`cohort_worker::service::config::WorkerConfig`).
//!
//! Shard *i* of this party pairs with shard *i* of every peer, so its file
//! lists every party at its shard-*i* endpoint (the party's `endpoint` host,
//! port + *i*). The files are stored in one ConfigMap as `shard-<i>.yaml`;
//! the worker picks its own with `--config-dir` and its pod name.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{CONTROL_PORT, CONTROLLER_NAME, Cluster, Error, METRICS_PORT, PEER_PORT};

/// Where the pod mounts the configuration ConfigMap.
pub const CONFIG_DIR: &str = "/etc/cohort/config";
/// Where the pod mounts the worker Secrets: shard *i*'s chain and key are
/// `shard-<i>/tls.crt` and `shard-<i>/tls.key` below it.
pub const TLS_DIR: &str = "/etc/cohort/tls";
/// Where the pod mounts the trust ConfigMap.
pub const TRUST_DIR: &str = "/etc/cohort/trust";
/// The results volume (a PersistentVolumeClaim per pod): results survive a
/// pod restart.
pub const RESULTS_DIR: &str = "/var/lib/cohort/results";
/// The trust ConfigMap key of the dealer's CA. Party names start with a
/// letter or digit, so no party's key (`<party>.pem`) can collide with it.
pub const DEALER_TRUST_KEY: &str = "_dealer.pem";

/// The trust ConfigMap key of `party`'s CA.
pub fn trust_key(party: &str) -> String {
    format!("{party}.pem")
}

/// Where the workers keep an `ot` PreprocessingPool's material: on the
/// results volume, so adding a pool needs no new volume (a StatefulSet's
/// volume claims cannot change).
pub const POOL_DIR: &str = "/var/lib/cohort/results/pool";
/// Items per batch of the workers' background fills.
pub const POOL_PER_BATCH: usize = 16384;

/// The `pool:` section of every shard's configuration, from the MpcCluster's
/// PreprocessingPool in mode `ot` (each shard keeps its own pool, with its
/// peers' same shard).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    pub ttl_seconds: u64,
    /// (lowWatermark, target) of Beaver triples.
    pub triples: (i64, i64),
    /// (lowWatermark, target) of division pairs (for the default precision).
    pub division_pairs: (i64, i64),
    /// (lowWatermark, target) of bit triples, in words of 64 (the worker's
    /// unit); (0, 0): not kept. The same for edaBits and daBits.
    pub bit_triple_words: (i64, i64),
    pub eda_bits: (i64, i64),
    pub da_bits: (i64, i64),
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Pool {
    dir: &'static str,
    ttl: String,
    low_watermark: i64,
    target: i64,
    division_pairs: Watermarks,
    #[serde(skip_serializing_if = "Option::is_none")]
    bit_triples: Option<Watermarks>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eda_bits: Option<Watermarks>,
    #[serde(skip_serializing_if = "Option::is_none")]
    da_bits: Option<Watermarks>,
    per_batch: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Watermarks {
    low_watermark: i64,
    target: i64,
}

impl PoolSettings {
    fn render(&self) -> Pool {
        Pool {
            dir: POOL_DIR,
            ttl: format!("{}s", self.ttl_seconds.max(1)),
            low_watermark: self.triples.0,
            target: self.triples.1,
            division_pairs: Watermarks { low_watermark: self.division_pairs.0, target: self.division_pairs.1 },
            bit_triples: binary(self.bit_triple_words),
            eda_bits: binary(self.eda_bits),
            da_bits: binary(self.da_bits),
            per_batch: POOL_PER_BATCH,
        }
    }
}

/// A binary kind's watermarks; none when the pool does not keep it.
fn binary((low_watermark, target): (i64, i64)) -> Option<Watermarks> {
    (target > 0).then_some(Watermarks { low_watermark, target })
}

/// The ConfigMap key (and file name) of shard `shard`'s configuration.
pub fn config_key(shard: usize) -> String {
    format!("shard-{shard}.yaml")
}

/// The worker configuration, as written. Field order follows docs/worker.md.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct File<'a> {
    federation: &'a str,
    party: &'a str,
    listen: Listen,
    tls: Tls,
    controller: Controller,
    parties: Vec<PartyEndpoint<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dealer: Option<Dealer<'a>>,
    timeouts: Timeouts,
    results_dir: &'static str,
    audit_log: String,
    protocol: Protocol,
    #[serde(skip_serializing_if = "Option::is_none")]
    pool: Option<Pool>,
}

/// The protocol the worker runs (`spec.protocol.name`) and the versions it
/// offers its peers: up to `spec.protocol.version` (the lowest is the
/// build's own). A changed name or version changes the file, hence the pod
/// template, and rolls the shards.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Protocol {
    name: cohort_worker::protocol::ProtocolName,
    max_version: i32,
}

#[derive(Serialize)]
struct Listen {
    peer: String,
    control: String,
    metrics: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Tls {
    cert: String,
    key: String,
    peer_cas: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Controller {
    name: &'static str,
    ca: String,
}

#[derive(Serialize)]
struct PartyEndpoint<'a> {
    name: &'a str,
    endpoint: String,
}

#[derive(Serialize)]
struct Dealer<'a> {
    name: &'a str,
    endpoint: &'a str,
    ca: String,
}

#[derive(Serialize)]
struct Timeouts {
    connect: &'static str,
    round: &'static str,
    total: &'static str,
}

/// Shard `shard`'s configuration file.
///
/// The worker listens on `0.0.0.0` (IPv4; every pod has its own address,
/// so every shard uses the same container ports). Timeouts are the
/// worker's documented defaults, written out so the file says what runs.
pub fn render_shard(cluster: &Cluster<'_>, shard: usize) -> Result<String, Error> {
    let spec = cluster.spec;
    let parties = cluster
        .endpoints
        .iter()
        .enumerate()
        .map(|(k, (name, endpoint))| {
            let at = endpoint.shard(shard).ok_or_else(|| {
                Error::invalid(format!("spec.parties[{k}].endpoint"), format!("no port for shard {shard}"))
            })?;
            Ok(PartyEndpoint { name, endpoint: at.to_string() })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let file = File {
        federation: &spec.federation,
        party: &spec.self_,
        listen: Listen {
            peer: format!("0.0.0.0:{PEER_PORT}"),
            control: format!("0.0.0.0:{CONTROL_PORT}"),
            metrics: format!("0.0.0.0:{METRICS_PORT}"),
        },
        tls: Tls {
            cert: format!("{TLS_DIR}/shard-{shard}/tls.crt"),
            key: format!("{TLS_DIR}/shard-{shard}/tls.key"),
            peer_cas: spec.peers().map(|p| (p.name.clone(), format!("{TRUST_DIR}/{}", trust_key(&p.name)))).collect(),
        },
        // The operator's client certificate is issued by this party's CA.
        controller: Controller { name: CONTROLLER_NAME, ca: format!("{TRUST_DIR}/{}", trust_key(&spec.self_)) },
        parties,
        dealer: spec.dealer.as_ref().map(|d| Dealer {
            name: &d.name,
            endpoint: &d.endpoint,
            ca: format!("{TRUST_DIR}/{DEALER_TRUST_KEY}"),
        }),
        timeouts: Timeouts { connect: "30s", round: "30s", total: "10m" },
        results_dir: RESULTS_DIR,
        // On the results volume: the audit trail outlives the pod.
        audit_log: format!("{RESULTS_DIR}/audit.jsonl"),
        protocol: Protocol { name: super::worker_protocol(spec.protocol.name), max_version: spec.protocol.version },
        // A protocol without material has no pool (the worker refuses one);
        // the pool controller refuses such a pool too.
        pool: cluster.pool.as_ref().filter(|_| spec.protocol.name.uses_preprocessing()).map(PoolSettings::render),
    };
    serde_saphyr::to_string(&file).map_err(|e| Error::Render { what: config_key(shard), reason: e.to_string() })
}

/// Every shard's file, keyed `shard-<i>.yaml`.
pub fn render(cluster: &Cluster<'_>) -> Result<BTreeMap<String, String>, Error> {
    (0..cluster.shards).map(|i| Ok((config_key(i), render_shard(cluster, i)?))).collect()
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;
    use cohort_worker::service::config::WorkerConfig;
    use std::path::Path;

    #[test]
    fn an_ot_pool_puts_its_watermarks_and_ttl_in_every_shard_file() {
        let c = fixtures::cluster(2);
        let mut cluster = Cluster::from_resource(&c).expect("valid");
        let plain = render(&cluster).expect("renders");
        assert!(plain.values().all(|t| !t.contains("pool")), "no pool without an ot PreprocessingPool");
        cluster.pool = Some(PoolSettings {
            ttl_seconds: 3600,
            triples: (100, 400),
            division_pairs: (0, 0),
            bit_triple_words: (10, 20),
            eda_bits: (0, 0),
            da_bits: (300, 500),
        });
        for (i, text) in render(&cluster).expect("renders").values().enumerate() {
            let cfg: WorkerConfig = serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("shard {i}: {e}\n{text}"));
            let pool = cfg.pool.expect("pool");
            assert_eq!(pool.dir, Path::new(POOL_DIR));
            assert!(pool.dir.starts_with(RESULTS_DIR), "on the results volume");
            assert_eq!((pool.low_watermark, pool.target, pool.per_batch), (100, 400, POOL_PER_BATCH));
            assert_eq!(pool.ttl, std::time::Duration::from_secs(3600));
            assert!(pool.keeps_watermarks());
            use cohort_worker::preprocessing::store::StoredKind;
            use cohort_worker::service::config::Watermarks;
            let marks = |k| pool.watermarks(k);
            assert_eq!(marks(StoredKind::BitTriples), Watermarks { low_watermark: 10, target: 20 });
            assert_eq!(marks(StoredKind::EdaBits), Watermarks { low_watermark: 0, target: 0 }, "not kept");
            assert_eq!(marks(StoredKind::DaBits), Watermarks { low_watermark: 300, target: 500 });
        }
    }

    #[test]
    fn every_shard_file_parses_as_a_worker_config_with_its_shard_endpoints() {
        let c = fixtures::cluster(3);
        let cluster = Cluster::from_resource(&c).expect("valid");
        let files = render(&cluster).expect("renders");
        assert_eq!(files.keys().cloned().collect::<Vec<_>>(), ["shard-0.yaml", "shard-1.yaml", "shard-2.yaml"]);
        for (i, text) in files.values().enumerate() {
            let cfg: WorkerConfig = serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("shard {i}: {e}\n{text}"));
            assert_eq!(cfg.federation, "consortium");
            assert_eq!(cfg.party, "bank-a");
            assert_eq!(cfg.listen.peer, "0.0.0.0:7443");
            assert_eq!(cfg.listen.control, "0.0.0.0:7444");
            assert_eq!(cfg.listen.metrics, "0.0.0.0:9464");
            assert_eq!(cfg.tls.cert, Path::new(&format!("/etc/cohort/tls/shard-{i}/tls.crt")));
            assert_eq!(cfg.tls.key, Path::new(&format!("/etc/cohort/tls/shard-{i}/tls.key")));
            let peer_cas: Vec<_> = cfg.tls.peer_cas.iter().map(|(k, v)| (k.as_str(), v.to_str().unwrap())).collect();
            assert_eq!(
                peer_cas,
                [("bank-b", "/etc/cohort/trust/bank-b.pem"), ("bank-c", "/etc/cohort/trust/bank-c.pem")]
            );
            assert_eq!(cfg.controller.name, "operator");
            assert_eq!(cfg.controller.ca, Path::new("/etc/cohort/trust/bank-a.pem"));
            let parties: Vec<_> = cfg.parties.iter().map(|p| (p.name.as_str(), p.endpoint.clone())).collect();
            assert_eq!(
                parties,
                [
                    ("bank-a", format!("mpc.bank-a.example:{}", 7443 + i)),
                    ("bank-b", format!("mpc.bank-b.example:{}", 7443 + i)),
                    ("bank-c", format!("[2001:db8::7]:{}", 8443 + i)),
                ]
            );
            let dealer = cfg.dealer.expect("dealer");
            assert_eq!((dealer.name.as_str(), dealer.endpoint.as_str()), ("main", "dealer.neutral.example:7500"));
            assert_eq!(dealer.ca, Path::new("/etc/cohort/trust/_dealer.pem"));
            assert_eq!(cfg.results_dir.as_deref(), Some(Path::new(RESULTS_DIR)));
            assert_eq!(cfg.audit_log, Some(Path::new(RESULTS_DIR).join("audit.jsonl")));
            assert_eq!(cfg.timeouts.total, std::time::Duration::from_secs(600));
            assert_eq!((cfg.protocol.min_version, cfg.protocol.max_version), (None, Some(1)));
            assert_eq!(cfg.protocol.resolve(), Ok((1, 1)), "the build offers the spec's version");
        }
    }

    #[test]
    fn rendering_is_deterministic() {
        let c = fixtures::cluster(2);
        let cluster = Cluster::from_resource(&c).expect("valid");
        assert_eq!(render(&cluster).expect("renders"), render(&cluster).expect("renders"));
    }

    #[test]
    fn the_protocol_version_caps_the_offered_range() {
        let mut c = fixtures::cluster(1);
        c.spec.protocol.version = 3;
        let cluster = Cluster::from_resource(&c).expect("valid");
        let text = render_shard(&cluster, 0).expect("renders");
        let cfg: WorkerConfig = serde_saphyr::from_str(&text).expect("parses");
        assert_eq!(cfg.protocol.max_version, Some(3));
    }

    #[test]
    fn a_replicated_3_cluster_names_its_protocol_and_has_no_pool_or_dealer() {
        use cohort_crds::cluster::ProtocolName as Crd;
        use cohort_worker::protocol::ProtocolName;
        let mut c = fixtures::cluster(2);
        let additive = render_shard(&Cluster::from_resource(&c).expect("valid"), 0).expect("renders");
        let cfg: WorkerConfig = serde_saphyr::from_str(&additive).expect("parses");
        assert_eq!(cfg.protocol.name, ProtocolName::AdditiveSemiHonest, "the default, written out");
        assert!(additive.contains("name: additive-semi-honest"), "{additive}");

        c.spec.protocol.name = Crd::Replicated3;
        c.spec.dealer = None;
        let mut cluster = Cluster::from_resource(&c).expect("valid: three parties");
        // Even if a pool's settings reached it, a replicated-3 file has none.
        cluster.pool = Some(PoolSettings {
            ttl_seconds: 60,
            triples: (1, 2),
            division_pairs: (0, 0),
            bit_triple_words: (0, 0),
            eda_bits: (0, 0),
            da_bits: (0, 0),
        });
        for (i, text) in render(&cluster).expect("renders").values().enumerate() {
            let cfg: WorkerConfig = serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("shard {i}: {e}\n{text}"));
            assert_eq!(cfg.protocol.name, ProtocolName::Replicated3);
            assert_eq!(cfg.protocol.max_version, Some(1));
            assert!(cfg.pool.is_none() && cfg.dealer.is_none(), "shard {i}: {text}");
            assert!(!text.contains("pool") && !text.contains("dealer"), "shard {i}: {text}");
        }
        // Every name of the CRD maps to the worker's under the same name.
        for name in Crd::ALL {
            assert_eq!(crate::cluster::worker_protocol(name).as_str(), name.as_str());
        }
    }

    #[test]
    fn a_cluster_without_dealer_has_no_dealer_key() {
        let mut c = fixtures::cluster(1);
        c.spec.dealer = None;
        let cluster = Cluster::from_resource(&c).expect("valid");
        let text = render_shard(&cluster, 0).expect("renders");
        let cfg: WorkerConfig = serde_saphyr::from_str(&text).expect("parses");
        assert!(cfg.dealer.is_none());
        assert!(!text.contains("dealer"));
    }
}
