//! Certificate rotation without a restart: a process (worker, dealer)
//! re-reads its TLS files and switches new handshakes to them.
//!
//! Every interval the watcher reads the process's certificate chain and
//! key and the CAs it trusts, all at once ([`TlsMaterial`]). When their
//! digest changed, it builds a new
//! [`TlsIdentity`](crate::transport::TlsIdentity) from them and, if that
//! succeeds, puts it in the [`SharedIdentity`]: the next handshake — of a
//! new job's mesh, an inbound peer connection, a control API call — uses
//! it, while connections already established (a running job's mesh) finish
//! on the material they were made with. TLS never re-verifies an
//! established connection, so a job outlives the certificate it started
//! with.
//!
//! Material that does not load (a key that does not match the certificate,
//! a certificate naming another party, a half-written file) or whose
//! certificate is not valid now (notBefore in the future, notAfter past:
//! every peer would refuse it) is refused and
//! the previous identity stays in use; the watcher tries again when the
//! files change again. Kubernetes updates a mounted Secret by swapping a
//! symlink, so a reader sees either the old files or the new ones; a writer
//! that replaces files one by one passes through a refused state and then
//! converges. Nothing read is logged: the log names the files' owner and
//! the new certificate's expiry, never a key.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{error, info, warn};

use super::error::{TransportError, rfc3339};
use super::tls::{SharedIdentity, TlsMaterial};

/// The smallest interval accepted: polling is a few file reads, but not in
/// a busy loop.
pub const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// How a watcher reads the files (the error names the file, never its
/// contents).
pub type ReadMaterial = Box<dyn Fn() -> Result<TlsMaterial, String> + Send + Sync>;

/// Told `"applied"` or `"rejected"` for each change seen (a metric).
pub type OnChange = Box<dyn Fn(&'static str) + Send + Sync>;

/// Watches one process's TLS files.
pub struct TlsWatcher {
    federation: String,
    principal: String,
    read: ReadMaterial,
    identity: SharedIdentity,
    on_change: OnChange,
    /// Digest of the contents last acted on.
    seen: Option<[u8; 32]>,
}

/// What one look at the files found.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// Same contents as last time.
    Unchanged,
    /// New material, now in use.
    Applied,
    /// New contents that do not make a usable identity; the old one stays.
    Rejected,
}

impl TlsWatcher {
    /// Watch the files `read` reads for `identity`, which was built from
    /// files whose digest is `loaded` (so the first look finds them
    /// unchanged).
    ///
    /// A process starts with the certificate it has, even one that is not
    /// valid now (a clock a little off, or a renewal about to land: a
    /// refusal to start would only turn that into a crash loop); it logs an
    /// error saying so, once, and the watcher applies the renewed files.
    pub fn new(identity: SharedIdentity, loaded: [u8; 32], read: ReadMaterial, on_change: OnChange) -> TlsWatcher {
        let current = identity.current();
        if let Some(problem) = current.validity_problem(SystemTime::now()) {
            error!(
                principal = %super::certs::describe(current.party()),
                %problem,
                "THIS PARTY'S CERTIFICATE IS NOT VALID NOW: every peer will refuse it until it is renewed"
            );
        }
        TlsWatcher {
            federation: current.federation().to_string(),
            principal: current.party().to_string(),
            read,
            identity,
            on_change,
            seen: Some(loaded),
        }
    }

    /// Look every `interval`, forever (until the task is dropped).
    pub async fn run(mut self, interval: Duration) {
        let mut tick = tokio::time::interval(interval.max(MIN_INTERVAL));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            self.check();
        }
    }

    /// Look at the files once.
    pub fn check(&mut self) -> Check {
        let who = super::certs::describe(&self.principal);
        let material = match (self.read)() {
            Ok(m) => m,
            Err(e) => {
                // A file mid-replacement or removed: report once per state.
                let digest = error_digest(&e);
                if self.seen == Some(digest) {
                    return Check::Unchanged;
                }
                self.seen = Some(digest);
                (self.on_change)("rejected");
                warn!(principal = %who, error = %e, "TLS files unreadable; still using the previous certificate and trust");
                return Check::Rejected;
            }
        };
        let digest = material.digest();
        if self.seen == Some(digest) {
            return Check::Unchanged;
        }
        self.seen = Some(digest);
        let replaced = material.identity(&self.federation, &self.principal).and_then(|identity| {
            // Every peer refuses a certificate outside its validity period:
            // swapping one in would cut this party off from all of them.
            if let Some(problem) = identity.validity_problem(SystemTime::now()) {
                return Err(TransportError::certificate(problem));
            }
            self.identity.replace(identity)
        });
        match replaced {
            Ok(()) => {
                (self.on_change)("applied");
                let not_after = self.identity.current().cert_not_after();
                let expires = rfc3339(not_after.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
                info!(principal = %who, certificate_expires = %expires, "TLS files changed: new handshakes use the new certificate and trust");
                Check::Applied
            }
            Err(e) => {
                (self.on_change)("rejected");
                warn!(principal = %who, error = %e.kind, "TLS files changed but do not load; still using the previous certificate and trust");
                Check::Rejected
            }
        }
    }
}

/// A stand-in digest for "the files could not be read", distinct per error
/// so that a different failure is reported again.
fn error_digest(e: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, format!("unreadable: {e}").as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::service::config::WorkerConfig;
    use crate::transport::PartyCa;

    #[derive(Clone, Default)]
    struct Counts(Arc<Mutex<BTreeMap<&'static str, u32>>>);

    impl Counts {
        fn get(&self, result: &str) -> u32 {
            self.0.lock().expect("lock").get(result).copied().unwrap_or(0)
        }
    }

    const FED: &str = "fed";

    struct Files {
        dir: tempfile::TempDir,
        cas: Vec<PartyCa>,
    }

    impl Files {
        /// Two parties' CAs, a controller CA, and bank-a's worker files.
        fn new() -> Files {
            let dir = tempfile::tempdir().expect("tempdir");
            let day = Duration::from_secs(86_400);
            let cas = vec![
                PartyCa::generate(FED, "bank-a", day).expect("ca"),
                PartyCa::generate(FED, "bank-b", day).expect("ca"),
                PartyCa::generate(FED, "controller/op", day).expect("ca"),
            ];
            let files = Files { dir, cas };
            files.write("bank-b-ca.pem", &files.cas[1].cert_pem());
            files.write("controller-ca.pem", &files.cas[2].cert_pem());
            files.issue("bank-a", Duration::from_secs(3600), true);
            let config = "federation: fed\nparty: bank-a\n\
                 listen: {peer: '127.0.0.1:0', control: '127.0.0.1:0', metrics: '127.0.0.1:0'}\n\
                 tls: {cert: a.crt, key: a.key, peerCas: {bank-b: bank-b-ca.pem}, reloadInterval: 50ms}\n\
                 controller: {name: op, ca: controller-ca.pem}\n\
                 parties: [{name: bank-a, endpoint: '127.0.0.1:1'}, {name: bank-b, endpoint: '127.0.0.1:2'}]\n";
            files.write("worker.yaml", config);
            files
        }

        fn write(&self, name: &str, text: &str) {
            std::fs::write(self.dir.path().join(name), text).expect("write");
        }

        /// A leaf for `party` from bank-a's CA, living `life`; the key is
        /// written only when `with_key`.
        fn issue(&self, party: &str, life: Duration, with_key: bool) -> SystemTime {
            let now = SystemTime::now();
            self.issue_between(party, now - Duration::from_secs(5), now + life, with_key)
        }

        /// A leaf for `party` valid from `not_before` to `not_after`.
        fn issue_between(
            &self,
            party: &str,
            not_before: SystemTime,
            not_after: SystemTime,
            with_key: bool,
        ) -> SystemTime {
            let leaf = self.cas[0].issue_party_cert(party, &[], not_before, not_after).expect("leaf");
            self.write("a.crt", &leaf.cert_pem);
            if with_key {
                self.write("a.key", &leaf.key_pem);
            }
            not_after
        }

        /// A watcher of the worker's files, and its count of each result.
        fn watcher(&self) -> (TlsWatcher, Counts) {
            let path = self.dir.path().join("worker.yaml");
            let loaded = WorkerConfig::read(&path).and_then(|c| c.load(&path)).expect("loads");
            let counts = Counts::default();
            let (config, controller, dealer) =
                (loaded.config.clone(), loaded.controller.clone(), loaded.dealer.clone());
            let read: ReadMaterial =
                Box::new(move || config.read_tls(&controller, dealer.as_deref()).map_err(|e| e.to_string()));
            let on_change: OnChange = {
                let counts = counts.clone();
                Box::new(move |result| {
                    let mut c = counts.0.lock().expect("lock");
                    *c.entry(result).or_default() += 1;
                })
            };
            (TlsWatcher::new(loaded.identity.clone(), loaded.tls_digest, read, on_change), counts)
        }
    }

    fn secs(t: SystemTime) -> u64 {
        t.duration_since(SystemTime::UNIX_EPOCH).expect("after epoch").as_secs()
    }

    #[test]
    fn a_renewed_certificate_is_applied_once() {
        let files = Files::new();
        let (mut w, counts) = files.watcher();
        assert_eq!(w.check(), Check::Unchanged);
        let renewed = files.issue("bank-a", Duration::from_secs(7200), true);
        assert_eq!(w.check(), Check::Applied);
        assert_eq!(secs(w.identity.current().cert_not_after()), secs(renewed));
        assert_eq!(w.check(), Check::Unchanged);
        assert_eq!(counts.get("applied"), 1);
        assert_eq!(counts.get("rejected"), 0);
    }

    #[test]
    fn a_half_replaced_identity_is_refused_until_it_is_whole() {
        let files = Files::new();
        let (mut w, counts) = files.watcher();
        let before = secs(w.identity.current().cert_not_after());
        // The certificate arrives before its key: refused, the old pair stays.
        let renewed = files.issue("bank-a", Duration::from_secs(7200), false);
        assert_eq!(w.check(), Check::Rejected);
        assert_eq!(secs(w.identity.current().cert_not_after()), before);
        // Reported once, not at every poll.
        assert_eq!(w.check(), Check::Unchanged);
        assert_eq!(counts.get("rejected"), 1);
        // The whole pair: applied.
        files.issue("bank-a", Duration::from_secs(7200), true);
        assert_eq!(w.check(), Check::Applied);
        assert!(secs(w.identity.current().cert_not_after()) >= secs(renewed));
    }

    #[test]
    fn material_of_another_party_or_unreadable_files_are_refused() {
        let files = Files::new();
        let (mut w, counts) = files.watcher();
        files.issue("bank-b", Duration::from_secs(7200), true);
        assert_eq!(w.check(), Check::Rejected);
        assert_eq!(w.identity.current().party(), "bank-a");
        std::fs::remove_file(files.dir.path().join("bank-b-ca.pem")).expect("rm");
        assert_eq!(w.check(), Check::Rejected);
        // The same missing file is reported once.
        assert_eq!(w.check(), Check::Unchanged);
        assert_eq!(counts.get("rejected"), 2);
        assert_eq!(w.identity.current().party(), "bank-a");
    }

    #[test]
    fn a_new_trust_bundle_is_applied() {
        let files = Files::new();
        let (mut w, counts) = files.watcher();
        let next = PartyCa::generate(FED, "bank-b", Duration::from_secs(86_400)).expect("ca");
        files.write("bank-b-ca.pem", &format!("{}{}", files.cas[1].cert_pem(), next.cert_pem()));
        assert_eq!(w.check(), Check::Applied);
        assert_eq!(counts.get("applied"), 1);
    }

    /// A certificate outside its validity period would be refused by every
    /// peer: hot reload refuses it and keeps the identity in use.
    #[test]
    fn a_certificate_not_valid_now_is_refused_and_the_old_one_kept() {
        let files = Files::new();
        let (mut w, counts) = files.watcher();
        let before = secs(w.identity.current().cert_not_after());
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        // Expired an hour ago.
        files.issue_between("bank-a", now - 2 * hour, now - hour, true);
        assert_eq!(w.check(), Check::Rejected);
        assert_eq!(secs(w.identity.current().cert_not_after()), before);
        // Valid only from an hour on.
        files.issue_between("bank-a", now + hour, now + 3 * hour, true);
        assert_eq!(w.check(), Check::Rejected);
        assert_eq!(secs(w.identity.current().cert_not_after()), before);
        assert_eq!((counts.get("rejected"), counts.get("applied")), (2, 0));
        // A valid one is applied.
        let renewed = files.issue("bank-a", 2 * hour, true);
        assert_eq!(w.check(), Check::Applied);
        assert_eq!(secs(w.identity.current().cert_not_after()), secs(renewed));
    }

    #[test]
    fn validity_problem_names_the_bound() {
        let files = Files::new();
        let now = SystemTime::now();
        let hour = Duration::from_secs(3600);
        files.issue_between("bank-a", now - 2 * hour, now - hour, true);
        let path = files.dir.path().join("worker.yaml");
        let loaded = WorkerConfig::read(&path).and_then(|c| c.load(&path)).expect("an expired certificate loads");
        let problem = loaded.identity.current().validity_problem(now).expect("expired");
        assert!(problem.contains("expired at"), "{problem}");
        files.issue_between("bank-a", now + hour, now + 2 * hour, true);
        let loaded = WorkerConfig::read(&path).and_then(|c| c.load(&path)).expect("loads");
        let problem = loaded.identity.current().validity_problem(now).expect("not yet valid");
        assert!(problem.contains("not valid before"), "{problem}");
        assert_eq!(loaded.identity.current().validity_problem(now + hour + Duration::from_secs(60)), None);
    }
}
