//! Leader election: only the holder of a `coordination.k8s.io/v1` Lease
//! reconciles, so two operator replicas never write the same objects.
//!
//! Kubernetes has no built-in election for clients; `kube-lease-manager`
//! holds the Lease with server-side apply (a second contender's apply
//! conflicts) and renews it before `duration` runs out. A replica that
//! stops renewing (crashed, partitioned) loses the Lease once it expires,
//! and a standby takes over within `duration` plus the grace period.
//!
//! [`lead`] runs `work` for each term of leadership and stops it (through
//! the `stop` channel it passes) as soon as the Lease is lost or shutdown
//! is requested; on shutdown the Lease is released so a standby takes over
//! at once instead of waiting for expiry.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// Which Lease to hold, and as whom.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    /// This replica's identity in `holderIdentity` (its pod name).
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub duration: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("leader election on Lease {namespace}/{name}: {source}")]
    Lease {
        name: String,
        namespace: String,
        #[source]
        source: kube_lease_manager::LeaseManagerError,
    },
    #[error("leader election on Lease {namespace}/{name} stopped unexpectedly")]
    Stopped { name: String, namespace: String },
}

/// Run `work(stop)` during every term in which this replica holds the
/// Lease, until `shutdown` turns true. `stop` turns true when the term
/// ends; `work` must return soon after.
pub async fn lead<F, Fut>(
    client: Client,
    lease: &LeaseConfig,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
    mut work: F,
) -> Result<(), LeaderError>
where
    F: FnMut(watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()>,
{
    let secs = lease.duration.as_secs().max(2);
    let err = |source| LeaderError::Lease { name: lease.name.clone(), namespace: lease.namespace.clone(), source };
    let manager = LeaseManagerBuilder::new(client.clone(), &lease.name)
        .with_namespace(&lease.namespace)
        .with_identity(&lease.identity)
        .with_duration(secs)
        // Renew a third of the way before expiry.
        .with_grace((secs / 3).max(1))
        .build()
        .await
        .map_err(err)?;
    let (mut leader, task) = manager.watch().await;
    loop {
        // Wait for a term (or shutdown).
        while !*leader.borrow_and_update() {
            tokio::select! {
                changed = leader.changed() => if changed.is_err() {
                    return Err(LeaderError::Stopped { name: lease.name.clone(), namespace: lease.namespace.clone() });
                },
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
        if *shutdown.borrow() {
            break;
        }
        tracing::info!(lease = %lease.name, identity = %lease.identity, "leading: reconciling");
        metrics.set_leader(true);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut term = leader.clone();
        let mut quit = shutdown.clone();
        let leases: Api<Lease> = Api::namespaced(client.clone(), &lease.namespace);
        let watch_term = async move {
            tokio::select! {
                _ = term.wait_for(|l| !*l) => tracing::warn!("lost the Lease: stopping reconciles"),
                _ = quit.wait_for(|s| *s) => {}
                why = lease_lapses(&leases, lease) => tracing::warn!(reason = %why, "the Lease is no longer ours: stopping reconciles"),
            }
            let _ = stop_tx.send(true);
        };
        // Reconciles in flight get a bounded time to finish once the term
        // ends; then they are dropped, so terms never overlap for long.
        let mut ended = stop_rx.clone();
        let term_work = work(stop_rx);
        let bounded_work = async move {
            let drain = async {
                let _ = ended.wait_for(|s| *s).await;
                tokio::time::sleep(DRAIN).await;
            };
            tokio::select! {
                _ = term_work => {}
                _ = drain => tracing::warn!("reconciles did not stop within {DRAIN:?}; abandoning them"),
            }
        };
        tokio::join!(bounded_work, watch_term);
        metrics.set_leader(false);
        if *shutdown.borrow() {
            break;
        }
    }
    // Closing the channel makes the manager release the Lease.
    drop(leader);
    match task.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(err(e)),
        Err(_) => Err(LeaderError::Stopped { name: lease.name.clone(), namespace: lease.namespace.clone() }),
    }
}

/// How long reconciles may run on after a term ends.
pub const DRAIN: Duration = Duration::from_secs(10);

/// Resolves when this replica can no longer be sure it holds `lease`: the
/// Lease names another holder, has expired by its own clock, or could not
/// be read for longer than a third of its duration. kube-lease-manager
/// keeps reporting leadership while its renewals fail (it retries), so the
/// holder checks for itself and steps down before a standby can take over.
async fn lease_lapses(leases: &Api<Lease>, lease: &LeaseConfig) -> String {
    let check = (lease.duration / 6).max(Duration::from_millis(500));
    let tolerance = lease.duration / 3;
    let mut last_read = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(check).await;
        match leases.get_opt(&lease.name).await {
            Ok(Some(l)) => {
                last_read = tokio::time::Instant::now();
                let spec = l.spec.unwrap_or_default();
                if spec.holder_identity.as_deref() != Some(lease.identity.as_str()) {
                    return format!("held by {}", spec.holder_identity.unwrap_or_else(|| "nobody".into()));
                }
                let valid_for = i64::from(spec.lease_duration_seconds.unwrap_or(0));
                let renewed = spec.renew_time.map(|t| t.0.as_second()).unwrap_or(0);
                // A third of the duration early: the standby waits the full
                // duration from the same renewal before it takes over.
                let margin = i64::try_from(tolerance.as_secs()).unwrap_or(0);
                if renewed + valid_for - margin <= jiff::Timestamp::now().as_second() {
                    return "not renewed in time".into();
                }
            }
            Ok(None) => return "the Lease was deleted".into(),
            Err(e) if last_read.elapsed() > tolerance => return format!("cannot be read ({e})"),
            Err(_) => {}
        }
    }
}

/// Resolves when `stop` turns true (or its sender is gone). Its future is
/// `Send + Sync + 'static`, the shape kube-runtime's graceful shutdown takes.
pub async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
