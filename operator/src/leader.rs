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

use kube::Client;
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
    let manager = LeaseManagerBuilder::new(client, &lease.name)
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
        let watch_term = async move {
            tokio::select! {
                _ = term.wait_for(|l| !*l) => tracing::warn!("lost the Lease: stopping reconciles"),
                _ = quit.wait_for(|s| *s) => {}
            }
            let _ = stop_tx.send(true);
        };
        tokio::join!(work(stop_rx), watch_term);
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

/// Resolves when `stop` turns true (or its sender is gone). Its future is
/// `Send + Sync + 'static`, the shape kube-runtime's graceful shutdown takes.
pub async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
