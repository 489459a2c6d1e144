//! The deployed figure of `cohort bench --preprocessing dealer`: the
//! benchmark's job (`output z = sum(x * y)`, one layer of `mults` secret
//! multiplications) run the way `cohort run` runs a job: one
//! `cohort-worker` process per party and a `cohort-dealer` process, the
//! material dealt over mutual TLS, inputs and results through each
//! worker's control API. It sits beside the engine's in-process figures
//! (`cohort_worker::bench`), which leave all of that out.

use std::collections::BTreeMap;
use std::time::Instant;

use cohort_worker::preprocessing::Mode;
use cohort_worker::service::api::{InputValue, JobStatus, JobTimeouts, Phase};

use crate::launch::{Federation, LaunchError, Options};
use crate::run::SHUTDOWN_GRACE;

/// The deployed path's figures. Times are seconds, rates per second.
#[derive(Clone, Debug, serde::Serialize)]
pub struct DeployedReport {
    /// Median time from submitting the job to every party's final status,
    /// as the controller (this process) sees it: the inputs' upload, the
    /// mesh's connections, the dealer's material over TLS, the job, the
    /// results.
    pub deployed_seconds: f64,
    pub deployed_mults_per_second: f64,
    /// Median of the slowest party's own job time (`stats.wallSeconds`:
    /// from its submission to the end of the job at that party).
    pub deployed_party_seconds: f64,
    /// Starting the processes (once, not in the figures).
    pub deployed_startup_seconds: f64,
    pub deployed_samples: Vec<f64>,
    pub deployed_party_samples: Vec<f64>,
}

/// Why the deployed measurement failed.
#[derive(Debug, thiserror::Error)]
pub enum DeployedError {
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error("the deployed job failed at {party}: {message}")]
    Job { party: String, message: String },
    #[error("the deployed job computed a wrong result at {party}")]
    WrongResult { party: String },
}

/// Party names of the deployed run.
fn names(parties: usize) -> Vec<String> {
    (1..=parties).map(|i| format!("party-{i}")).collect()
}

/// Small non-negative inputs, so that the product sum is exact in any
/// output encoding (at most 10^6 · 10^6 < 2^53 for 10^6 multiplications).
fn inputs(mults: usize) -> (Vec<u64>, Vec<u64>) {
    let x = (0..mults as u64).map(|i| i % 1000).collect();
    let y = (0..mults as u64).map(|i| (i * 7 + 3) % 1000).collect();
    (x, y)
}

/// Run the job `repeats` times (after one unreported warm-up) on
/// `parties` worker processes and a dealer process started from
/// `options`' binaries; stop them gracefully afterwards.
pub async fn deployed(
    options: &Options,
    parties: usize,
    mults: usize,
    repeats: usize,
) -> Result<DeployedReport, DeployedError> {
    let names = names(parties);
    let mut options = options.clone();
    options.preprocessing = Mode::Dealer;
    let program =
        format!("input x: int[] from {}\ninput y: int[] from {}\noutput z = sum(x * y)\n", names[0], names[1]);
    let (x, y) = inputs(mults);
    let expected = x.iter().zip(&y).map(|(a, b)| a * b).sum::<u64>() as f64;
    let number = |v: &Vec<u64>| v.iter().map(|&e| InputValue::Number(e.into())).collect::<Vec<_>>();
    let mut requests: Vec<BTreeMap<String, Vec<InputValue>>> = vec![BTreeMap::new(); parties];
    requests[0].insert("x".into(), number(&x));
    requests[1].insert("y".into(), number(&y));
    let timeouts = JobTimeouts { connect_seconds: Some(60.0), round_seconds: Some(120.0), total_seconds: Some(600.0) };

    let started = Instant::now();
    let federation = Federation::start(&names, &options).await?;
    let deployed_startup_seconds = started.elapsed().as_secs_f64();
    let job = Job { federation: &federation, names: &names, program: &program, requests: &requests, expected };
    let result = async {
        job.measure(timeouts).await?;
        let (mut samples, mut party_samples) = (Vec::new(), Vec::new());
        for _ in 0..repeats {
            let (seconds, party) = job.measure(timeouts).await?;
            samples.push(seconds);
            party_samples.push(party);
        }
        Ok::<_, DeployedError>((samples, party_samples))
    }
    .await;
    federation.shutdown(SHUTDOWN_GRACE, std::future::pending()).await;
    let (samples, party_samples) = result?;
    let seconds = median(&samples);
    Ok(DeployedReport {
        deployed_seconds: seconds,
        deployed_mults_per_second: mults as f64 / seconds,
        deployed_party_seconds: median(&party_samples),
        deployed_startup_seconds,
        deployed_samples: samples,
        deployed_party_samples: party_samples,
    })
}

/// One deployed job, ready to submit.
struct Job<'a> {
    federation: &'a Federation,
    names: &'a [String],
    program: &'a str,
    requests: &'a [BTreeMap<String, Vec<InputValue>>],
    expected: f64,
}

impl Job<'_> {
    /// Submit and wait: the controller's time and the slowest party's own.
    async fn measure(&self, timeouts: JobTimeouts) -> Result<(f64, f64), DeployedError> {
        let submitted = Instant::now();
        let statuses = self.federation.run(self.program, self.requests.to_vec(), timeouts, |_| {}).await?;
        let seconds = submitted.elapsed().as_secs_f64();
        Ok((seconds, check(self.names, &statuses, self.expected)?))
    }
}

/// Every party succeeded and received the right `z`: the slowest party's
/// own job time.
fn check(names: &[String], statuses: &[JobStatus], expected: f64) -> Result<f64, DeployedError> {
    let mut slowest: f64 = 0.0;
    for (party, status) in names.iter().zip(statuses) {
        if status.phase != Phase::Succeeded {
            let message =
                status.failure.as_ref().map(|f| f.message.clone()).unwrap_or_else(|| format!("{:?}", status.phase));
            return Err(DeployedError::Job { party: party.clone(), message });
        }
        let z = status.outputs.as_ref().and_then(|o| o.get("z")).and_then(|v| serde_json::to_value(v).ok());
        if z.and_then(|z| z.as_f64()) != Some(expected) {
            return Err(DeployedError::WrongResult { party: party.clone() });
        }
        slowest = slowest.max(status.stats.as_ref().map_or(0.0, |s| s.wall_seconds));
    }
    Ok(slowest)
}

fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}
