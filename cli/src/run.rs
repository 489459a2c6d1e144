//! `cohort run FILE`: load a run file, start the local federation of
//! processes, submit the job to every party's worker, and report.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use cohort_worker::service::api::{JobStatus, JobTimeouts, OutputValue, Phase};
use serde::Serialize;

use crate::launch::{Federation, LaunchError, Options};
use crate::runfile::{PartyInputs, Preprocessing, RunFile, RunFileError};

/// Why `cohort run` failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    RunFile(#[from] RunFileError),
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// The job ran and failed; one line per party that reported a failure.
    #[error("the job failed:\n{}", .0.join("\n"))]
    Job(Vec<String>),
}

/// What a run prints with `--format json`.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Every output, as the parties that receive it see it.
    pub outputs: BTreeMap<String, OutputValue>,
    pub stats: ReportStats,
}

#[derive(Debug, Serialize)]
pub struct ReportStats {
    pub rounds: u32,
    /// Bytes sent by all parties together.
    pub bytes_sent: u64,
    pub bytes_sent_per_party: BTreeMap<String, u64>,
    /// From submitting the job to the last party's result (process start-up
    /// excluded; see `startup_seconds`).
    pub wall_seconds: f64,
    pub startup_seconds: f64,
    pub protocol_version: u32,
    /// Which parties received each output.
    pub recipients: BTreeMap<String, Vec<String>>,
}

/// Run the job a run file describes. `progress` receives human-readable
/// progress lines (for stderr).
/// `preprocessing` overrides the run file's `preprocessing` key.
pub async fn run_file(
    path: &Path,
    options: &Options,
    preprocessing: Option<Preprocessing>,
    mut progress: impl FnMut(&str),
) -> Result<Report, RunError> {
    let (run, inputs) = RunFile::load(path)?;
    let names: Vec<String> = run.parties.iter().map(|p| p.name.clone()).collect();
    let mut options = options.clone();
    options.preprocessing = preprocessing.unwrap_or(run.preprocessing);
    progress(&match options.preprocessing {
        Preprocessing::Dealer => {
            format!("starting a trusted dealer and {} workers ({})", names.len(), names.join(", "))
        }
        Preprocessing::Ot | Preprocessing::Pool => format!(
            "starting {} workers ({}); they generate their material with oblivious transfer, no dealer",
            names.len(),
            names.join(", ")
        ),
    });
    let started = Instant::now();
    let federation = Federation::start(&names, &options).await?;
    let startup_seconds = started.elapsed().as_secs_f64();
    progress(&format!("workers ready in {startup_seconds:.2} s; submitting the job"));
    let requests = inputs.iter().map(request_inputs).collect();
    let timeouts = JobTimeouts {
        connect_seconds: Some(run.timeouts.connect.as_secs_f64()),
        round_seconds: Some(run.timeouts.round.as_secs_f64()),
        total_seconds: Some(run.timeouts.total.as_secs_f64()),
    };
    let submitted = Instant::now();
    let statuses = federation
        .run(&run.program_source, requests, timeouts, |waited| {
            progress(&format!("running ({:.0} s)", waited.as_secs_f64()));
        })
        .await?;
    let wall_seconds = submitted.elapsed().as_secs_f64();
    report(&run, &statuses, wall_seconds, startup_seconds)
}

/// A party's inputs as the control API takes them (integers stay exact).
fn request_inputs(party: &PartyInputs) -> BTreeMap<String, Vec<serde_json::Number>> {
    party.inputs.iter().map(|input| (input.name.clone(), input.values.to_json_numbers())).collect()
}

fn report(run: &RunFile, statuses: &[JobStatus], wall_seconds: f64, startup_seconds: f64) -> Result<Report, RunError> {
    let failures: Vec<String> = run
        .parties
        .iter()
        .zip(statuses)
        .filter(|(_, s)| s.phase != Phase::Succeeded)
        .map(|(p, s)| {
            let why = s.failure.as_ref().map(|f| f.message.clone()).unwrap_or_else(|| format!("{:?}", s.phase));
            format!("  at {}: {why}", p.name)
        })
        .collect();
    if !failures.is_empty() {
        return Err(RunError::Job(failures));
    }
    let mut outputs = BTreeMap::new();
    let mut recipients: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut bytes_sent_per_party = BTreeMap::new();
    let (mut rounds, mut protocol_version) = (0, 0);
    for (party, status) in run.parties.iter().zip(statuses) {
        for (name, value) in status.outputs.iter().flatten() {
            outputs.entry(name.clone()).or_insert_with(|| value.clone());
            recipients.entry(name.clone()).or_default().push(party.name.clone());
        }
        if let Some(stats) = &status.stats {
            bytes_sent_per_party.insert(party.name.clone(), stats.bytes_sent);
            rounds = rounds.max(stats.rounds);
            protocol_version = stats.protocol_version;
        }
    }
    let bytes_sent = bytes_sent_per_party.values().sum();
    Ok(Report {
        outputs,
        stats: ReportStats {
            rounds,
            bytes_sent,
            bytes_sent_per_party,
            wall_seconds,
            startup_seconds,
            protocol_version,
            recipients,
        },
    })
}

/// The report for a person.
pub fn render_text(report: &Report) -> String {
    let mut out = String::from("outputs\n");
    let width = report.outputs.keys().map(String::len).max().unwrap_or(0);
    for (name, value) in &report.outputs {
        let shown = match value {
            OutputValue::Scalar(x) => format!("{x}"),
            OutputValue::Vector(v) if v.len() <= 10 => {
                format!("[{}]", v.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
            }
            OutputValue::Vector(v) => {
                format!("[{} values: {}, {}, {}, ..., {}]", v.len(), v[0], v[1], v[2], v[v.len() - 1])
            }
        };
        let to = report.stats.recipients.get(name).map(|r| r.join(", ")).unwrap_or_default();
        out.push_str(&format!("  {name:<width$} = {shown}   (to {to})\n"));
    }
    let s = &report.stats;
    out.push_str("stats\n");
    out.push_str(&format!("  rounds      {}\n", s.rounds));
    let per: Vec<String> = s.bytes_sent_per_party.iter().map(|(p, b)| format!("{p} {b}")).collect();
    out.push_str(&format!("  bytes sent  {} in all ({})\n", s.bytes_sent, per.join(", ")));
    out.push_str(&format!(
        "  wall time   {:.3} s (+ {:.2} s to start the processes)\n",
        s.wall_seconds, s.startup_seconds
    ));
    out
}
