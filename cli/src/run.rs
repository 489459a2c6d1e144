//! `cohort run FILE`: load a run file, start the local federation of
//! processes, submit the job to every party's worker, and report.
//!
//! However the run ends (the job's result, an error, or SIGTERM, SIGINT or
//! SIGHUP, which [`Interrupts`] catches), the processes are stopped
//! gracefully and the working directory with the parties' private keys is
//! removed before `run_file` returns ([`Federation::shutdown`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use cohort_worker::service::api::{InputValue, JobStatus, JobTimeouts, OutputValue, Phase};
use serde::Serialize;

use crate::launch::{Federation, LaunchError, Options, Shutdown};
use crate::runfile::{PartyInputs, Preprocessing, ProtocolName, RunFile, RunFileError};

/// Why `cohort run` failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    RunFile(#[from] RunFileError),
    #[error(transparent)]
    Launch(#[from] LaunchError),
    /// A command-line flag that does not apply to this run.
    #[error("{0}")]
    Flag(String),
    /// The job ran and failed: each distinct reason once, with the parties
    /// that reported it.
    #[error("the job failed: {}", render_failures(.0))]
    Job(Vec<JobFailure>),
    /// A signal ended the run; its processes were stopped and its directory
    /// removed.
    #[error("interrupted by {signal}; stopped the workers{}", if *.killed { " (some had to be killed)" } else { "" })]
    Interrupted { signal: &'static str, killed: bool },
}

impl RunError {
    /// The process's exit status: 128 + the signal's number after a signal
    /// (what a shell reports for a process the signal killed), else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Interrupted { signal: "SIGHUP", .. } => 129,
            RunError::Interrupted { signal: "SIGINT", .. } => 130,
            RunError::Interrupted { .. } => 143,
            _ => 1,
        }
    }
}

impl RunError {
    /// The error for a person: a compile error with its source line and a
    /// caret ([`RunFileError::render`]), anything else as its one line.
    pub fn render(&self, colour: bool) -> String {
        match self {
            RunError::RunFile(e) => e.render(colour),
            other => other.to_string(),
        }
    }

    /// Whether [`RunError::render`] is a whole diagnostic (starting
    /// `error:`) rather than one line to prefix with the command.
    pub fn is_diagnostic(&self) -> bool {
        matches!(self, RunError::RunFile(RunFileError::Compile { .. }))
    }
}

/// One reason a job failed, and the parties that reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFailure {
    pub message: String,
    pub parties: Vec<String>,
}

fn render_failures(failures: &[JobFailure]) -> String {
    let line = |f: &JobFailure| format!("{} (reported by {})", f.message, f.parties.join(", "));
    match failures {
        [one] => line(one),
        many => many.iter().map(|f| format!("\n  {}", line(f))).collect(),
    }
}

/// How long stopped processes get to drain and export their spans before
/// they are killed (a collector that does not answer holds an export for
/// up to 10 s).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);
/// How long a worker waits for a running job once told to stop: a local run
/// that is interrupted should stop promptly, not finish its job.
pub const WORKER_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The signals that end a run early, caught so that the run can stop its
/// processes and remove its keys before exiting.
pub struct Interrupts {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Interrupts {
    /// Catch SIGTERM, SIGINT and SIGHUP from now on (instead of dying).
    pub fn install() -> std::io::Result<Interrupts> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Interrupts {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
                hup: signal(SignalKind::hangup())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Interrupts {})
    }

    /// The name of the next signal received.
    pub async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
                _ = self.hup.recv() => "SIGHUP",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "ctrl-c"
        }
    }
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
    /// The protocol the parties ran (`additive-semi-honest`, `replicated-3`).
    pub protocol: ProtocolName,
    pub protocol_version: u32,
    /// Which parties received each output.
    pub recipients: BTreeMap<String, Vec<String>>,
}

/// What `cohort run`'s flags override in the run file.
#[derive(Clone, Copy, Debug, Default)]
pub struct Overrides {
    /// `--protocol`: in place of the file's `protocol`.
    pub protocol: Option<ProtocolName>,
    /// `--preprocessing`: in place of the file's `preprocessing` (refused
    /// under a protocol that takes no material).
    pub preprocessing: Option<Preprocessing>,
}

/// Run the job a run file describes. `progress` receives human-readable
/// progress lines (for stderr).
/// `overrides` replace the run file's `protocol` and `preprocessing`. A
/// signal from `interrupts` ends the run early (after stopping its processes).
pub async fn run_file(
    path: &Path,
    options: &Options,
    overrides: Overrides,
    mut progress: impl FnMut(&str),
    interrupts: &mut Interrupts,
) -> Result<Report, RunError> {
    let run = RunFile::open_as(path, overrides.protocol)?;
    let preprocessing = match (run.preprocessing, overrides.preprocessing) {
        (None, Some(_)) => {
            return Err(RunError::Flag(format!(
                "--preprocessing: {} takes no preprocessing material; drop the flag",
                run.protocol
            )));
        }
        (file, flag) => flag.or(file),
    };
    let inputs = run.read_all_inputs()?;
    let names: Vec<String> = run.parties.iter().map(|p| p.name.clone()).collect();
    let mut options = options.clone();
    options.protocol = run.protocol;
    options.worker_shutdown_grace.get_or_insert(WORKER_SHUTDOWN_GRACE);
    let workers = format!("{} workers ({})", names.len(), names.join(", "));
    progress(&match preprocessing {
        None => format!("starting {workers}; {} takes no preprocessing material, no dealer", run.protocol),
        Some(Preprocessing::Dealer) => format!("starting a trusted dealer and {workers}"),
        Some(Preprocessing::Ot | Preprocessing::Pool) => {
            format!("starting {workers}; they generate their material with oblivious transfer, no dealer")
        }
    });
    if let Some(mode) = preprocessing {
        options.preprocessing = mode;
    }
    let started = Instant::now();
    // Interrupted while starting: dropping the half-started federation kills
    // what started and removes the directory.
    let federation = tokio::select! {
        federation = Federation::start(&names, &options) => federation?,
        signal = interrupts.recv() => return Err(RunError::Interrupted { signal, killed: false }),
    };
    let startup_seconds = started.elapsed().as_secs_f64();
    progress(&format!("workers ready in {startup_seconds:.2} s; submitting the job"));
    let requests = inputs.iter().map(request_inputs).collect();
    let timeouts = JobTimeouts {
        connect_seconds: Some(run.timeouts.connect.as_secs_f64()),
        round_seconds: Some(run.timeouts.round.as_secs_f64()),
        total_seconds: Some(run.timeouts.total.as_secs_f64()),
    };
    let submitted = Instant::now();
    // A line after 10 s, then every 30 s: a sign of life, not a ticker.
    let mut next_note = Duration::from_secs(10);
    let outcome = tokio::select! {
        statuses = federation.run(&run.program_source, requests, timeouts, |waited| {
            if waited >= next_note {
                progress(&format!("still running after {:.0} s", waited.as_secs_f64()));
                next_note = waited + Duration::from_secs(30);
            }
        }) => Ok(statuses),
        signal = interrupts.recv() => Err(signal),
    };
    let wall_seconds = submitted.elapsed().as_secs_f64();
    if let Err(signal) = outcome {
        progress(&format!("{signal}: stopping the workers (again to kill them at once)"));
    }
    let stopped = stop(federation, interrupts, &mut progress).await;
    match outcome {
        Err(signal) => Err(RunError::Interrupted { signal, killed: !stopped.killed.is_empty() }),
        Ok(statuses) => report(&run, &statuses?, wall_seconds, startup_seconds),
    }
}

/// Stop the federation's processes (a second signal kills them at once)
/// and say what did not go as planned.
async fn stop(federation: Federation, interrupts: &mut Interrupts, progress: &mut impl FnMut(&str)) -> Shutdown {
    let stopped = federation
        .shutdown(SHUTDOWN_GRACE, async {
            interrupts.recv().await;
        })
        .await;
    if !stopped.killed.is_empty() {
        progress(&format!("killed {} (still running when told to stop)", stopped.killed.join(", ")));
    }
    if let Some(dir) = &stopped.kept_dir {
        progress(&format!("kept {} (COHORT_KEEP_DIR): it holds private keys; delete it when done", dir.display()));
    }
    stopped
}

/// A party's inputs as the control API takes them (integers stay exact,
/// bools are JSON booleans).
fn request_inputs(party: &PartyInputs) -> BTreeMap<String, Vec<InputValue>> {
    party.inputs.iter().map(|input| (input.name.clone(), input.values.to_json())).collect()
}

/// Each distinct failure reason once, in the order first reported, with the
/// parties that reported it.
fn failures(parties: &[String], statuses: &[JobStatus]) -> Vec<JobFailure> {
    let mut failures: Vec<JobFailure> = Vec::new();
    for (party, s) in parties.iter().zip(statuses).filter(|(_, s)| s.phase != Phase::Succeeded) {
        let why = s.failure.as_ref().map(|f| f.message.clone()).unwrap_or_else(|| format!("{:?}", s.phase));
        match failures.iter_mut().find(|f| f.message == why) {
            Some(f) => f.parties.push(party.clone()),
            None => failures.push(JobFailure { message: why, parties: vec![party.clone()] }),
        }
    }
    failures
}

fn report(run: &RunFile, statuses: &[JobStatus], wall_seconds: f64, startup_seconds: f64) -> Result<Report, RunError> {
    let names: Vec<String> = run.parties.iter().map(|p| p.name.clone()).collect();
    let failures = failures(&names, statuses);
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
            protocol: run.protocol,
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
        // Numbers as in the JSON (ints exact), bools as true/false.
        let v = value.elements();
        let shown = match v.len() {
            _ if !value.is_vector() => v.join(", "),
            0..=10 => format!("[{}]", v.join(", ")),
            n => format!("[{n} values: {}, {}, {}, ..., {}]", v[0], v[1], v[2], v[n - 1]),
        };
        let to = report.stats.recipients.get(name).map(|r| r.join(", ")).unwrap_or_default();
        out.push_str(&format!("  {name:<width$} = {shown}   (to {to})\n"));
    }
    let s = &report.stats;
    out.push_str("stats\n");
    out.push_str(&format!("  protocol    {}\n", s.protocol));
    out.push_str(&format!("  rounds      {}\n", s.rounds));
    let per: Vec<String> = s.bytes_sent_per_party.iter().map(|(p, b)| format!("{p} {b}")).collect();
    out.push_str(&format!("  bytes sent  {} in all ({})\n", s.bytes_sent, per.join(", ")));
    out.push_str(&format!(
        "  wall time   {:.3} s (+ {:.2} s to start the processes)\n",
        s.wall_seconds, s.startup_seconds
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A status as a worker reports it (built from JSON, as the API sends it).
    fn status(phase: Phase, message: Option<&str>) -> JobStatus {
        let failure = message.map(|m| serde_json::json!({"message": m}));
        let json = serde_json::json!({"id": "job", "phase": phase, "programHash": "", "failure": failure});
        serde_json::from_value(json).expect("a job status")
    }

    #[test]
    fn a_failure_is_printed_once_with_the_parties_that_reported_it() {
        let parties: Vec<String> = (1..=30).map(|i| format!("p{i}")).collect();
        let mut statuses: Vec<JobStatus> =
            (0..30).map(|_| status(Phase::Failed, Some("program: division by zero"))).collect();
        statuses[3] = status(Phase::Succeeded, None);
        statuses[7] = status(Phase::Failed, Some("party p1: peer closed the connection"));
        let failures = failures(&parties, &statuses);
        assert_eq!(failures.len(), 2);
        assert_eq!(failures[0].parties.len(), 28);
        assert_eq!(failures[1].parties, ["p8"]);
        let shown = RunError::Job(failures).to_string();
        assert_eq!(shown.matches("division by zero").count(), 1, "{shown}");
        assert!(shown.contains("(reported by p1, p2, p3, p5,"), "{shown}");
        assert_eq!(shown.lines().count(), 3, "a header and one line per reason: {shown}");

        let one =
            RunError::Job(vec![JobFailure { message: "timed out".into(), parties: vec!["a".into(), "b".into()] }]);
        assert_eq!(one.to_string(), "the job failed: timed out (reported by a, b)");
    }

    /// Bool outputs print as true/false in the text form and are JSON
    /// booleans with `--format json`; ints stay exact.
    #[test]
    fn bool_outputs_print_as_true_and_false() {
        let outputs: BTreeMap<String, OutputValue> = serde_json::from_str(
            r#"{"flagged": true, "flags": [false, true], "many": [true,true,true,true,true,true,true,true,true,true,false],
                "n": 9007199254740993}"#,
        )
        .expect("outputs");
        let report = Report {
            outputs,
            stats: ReportStats {
                rounds: 9,
                bytes_sent: 0,
                bytes_sent_per_party: BTreeMap::new(),
                wall_seconds: 0.0,
                startup_seconds: 0.0,
                protocol: ProtocolName::default(),
                protocol_version: 2,
                recipients: BTreeMap::new(),
            },
        };
        let text = render_text(&report);
        assert!(text.contains("flagged = true   (to )"), "{text}");
        assert!(text.contains("flags   = [false, true]"), "{text}");
        assert!(text.contains("many    = [11 values: true, true, true, ..., false]"), "{text}");
        assert!(text.contains("n       = 9007199254740993"), "{text}");
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["outputs"]["flagged"], serde_json::json!(true));
        assert_eq!(json["outputs"]["flags"], serde_json::json!([false, true]));
        assert_eq!(json["outputs"]["n"].to_string(), "9007199254740993");
    }
}
