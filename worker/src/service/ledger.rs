//! The job ids this worker has admitted, so that an id never runs twice:
//! not after its status fell out of `limits.history`, and not after a
//! restart, whatever the job's outcome.
//!
//! One compact record per id (id, the job's fingerprint, when it was
//! recorded, and its state: admitted, succeeded, failed, cancelled, or
//! released — a job that failed only for lack of a slot at some party,
//! whose id may run when resubmitted). With a results directory the
//! records are appended to `<resultsDir>/job-ids` and flushed to disk
//! before the worker answers (fsync); the file is rewritten without
//! superseded and expired records at start-up and whenever it has grown to
//! twice the live records. Records are kept for `limits.idRetention` and
//! at most `limits.maxRememberedIds` of them (the oldest go first); an id
//! resubmitted after that is a new job (`docs/worker.md`, "Job ids").

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::warn;

/// The ledger file's name inside the results directory.
pub const FILE_NAME: &str = "job-ids";

/// What the ledger knows of an id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Admitted; no outcome recorded (it ran, or the worker stopped while
    /// it ran).
    Admitted,
    Succeeded,
    Failed,
    Cancelled,
    /// It never started (capacity): the id is free again.
    Released,
}

impl State {
    fn code(self) -> char {
        match self {
            State::Admitted => 'A',
            State::Succeeded => 'S',
            State::Failed => 'F',
            State::Cancelled => 'C',
            State::Released => 'R',
        }
    }

    fn parse(code: &str) -> Option<State> {
        Some(match code {
            "A" => State::Admitted,
            "S" => State::Succeeded,
            "F" => State::Failed,
            "C" => State::Cancelled,
            "R" => State::Released,
            _ => return None,
        })
    }
}

/// One id's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) fingerprint: String,
    /// Unix seconds when this state was recorded.
    pub(crate) at: u64,
    pub(crate) state: State,
}

/// The ledger (see the module docs).
pub(crate) struct Ledger {
    path: Option<PathBuf>,
    file: Option<File>,
    records: HashMap<String, Record>,
    /// Ids in the order first recorded, for the count bound.
    order: VecDeque<String>,
    lines: usize,
    retention: Duration,
    max: usize,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Ledger {
    /// The ledger in `dir` (created if absent), or kept in memory only
    /// without a directory.
    pub(crate) fn open(dir: Option<&Path>, retention: Duration, max: usize) -> std::io::Result<Ledger> {
        let mut ledger = Ledger {
            path: dir.map(|d| d.join(FILE_NAME)),
            file: None,
            records: HashMap::new(),
            order: VecDeque::new(),
            lines: 0,
            retention,
            max: max.max(1),
        };
        let Some(path) = ledger.path.clone() else { return Ok(ledger) };
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir)?;
        }
        match File::open(&path) {
            Ok(file) => {
                for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
                    let line = line?;
                    match parse_line(&line) {
                        Some((id, record)) => ledger.insert(id, record),
                        None => {
                            warn!(file = %path.display(), line = n + 1, "skipped a malformed line of the job id ledger")
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        ledger.compact()?;
        Ok(ledger)
    }

    /// The record of `id`, unless expired or released.
    pub(crate) fn get(&self, id: &str) -> Option<&Record> {
        let horizon = now().saturating_sub(self.retention.as_secs());
        self.records.get(id).filter(|r| r.at >= horizon && r.state != State::Released)
    }

    /// Record `id` in `state`, durably (when the ledger has a file) before
    /// returning.
    pub(crate) fn record(&mut self, id: &str, fingerprint: &str, state: State) -> std::io::Result<()> {
        let record = Record { fingerprint: fingerprint.to_string(), at: now(), state };
        if let Some(file) = &mut self.file {
            file.write_all(format_line(id, &record).as_bytes())?;
            file.sync_data()?;
            self.lines += 1;
        }
        self.insert(id.to_string(), record);
        if self.file.is_some() && self.lines > 2 * self.records.len() + 1024 {
            self.compact()?;
        }
        Ok(())
    }

    fn insert(&mut self, id: String, record: Record) {
        if record.state == State::Released {
            self.records.remove(&id);
            return;
        }
        if self.records.insert(id.clone(), record).is_none() {
            self.order.push_back(id);
        }
        while self.records.len() > self.max {
            match self.order.pop_front() {
                Some(old) => {
                    self.records.remove(&old);
                }
                None => break,
            }
        }
        // `order` may hold ids released meanwhile: keep it proportionate.
        if self.order.len() > 2 * self.records.len() + 1024 {
            let records = &self.records;
            self.order.retain(|id| records.contains_key(id));
        }
    }

    /// Rewrite the file with the live records only (temporary file, fsync,
    /// rename, fsync of the directory), and append to it from now on.
    fn compact(&mut self) -> std::io::Result<()> {
        let Some(path) = self.path.clone() else { return Ok(()) };
        let horizon = now().saturating_sub(self.retention.as_secs());
        self.records.retain(|_, r| r.at >= horizon);
        let records = &self.records;
        self.order.retain(|id| records.contains_key(id));
        let tmp = path.with_extension("tmp");
        let mut text = String::with_capacity(self.records.len() * 112);
        for id in &self.order {
            if let Some(r) = self.records.get(id) {
                text.push_str(&format_line(id, r));
            }
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        self.file = Some(std::fs::OpenOptions::new().append(true).open(&path)?);
        self.lines = self.records.len();
        Ok(())
    }
}

fn format_line(id: &str, r: &Record) -> String {
    format!("{id} {} {} {}\n", r.fingerprint, r.at, r.state.code())
}

fn parse_line(line: &str) -> Option<(String, Record)> {
    let mut parts = line.split(' ');
    let id = parts.next()?;
    let fingerprint = parts.next()?;
    let at = parts.next()?.parse().ok()?;
    let state = State::parse(parts.next()?)?;
    if parts.next().is_some() || id.is_empty() || fingerprint.is_empty() {
        return None;
    }
    Some((id.to_string(), Record { fingerprint: fingerprint.to_string(), at, state }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cohort-ledger-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn records_survive_reopening_and_released_ids_are_free() {
        let dir = temp_dir("reopen");
        let day = Duration::from_secs(86400);
        let mut ledger = Ledger::open(Some(&dir), day, 100).expect("open");
        ledger.record("a", "fa", State::Admitted).expect("record");
        ledger.record("a", "fa", State::Failed).expect("record");
        ledger.record("b", "fb", State::Admitted).expect("record");
        ledger.record("c", "fc", State::Admitted).expect("record");
        ledger.record("c", "fc", State::Released).expect("record");
        drop(ledger);
        let ledger = Ledger::open(Some(&dir), day, 100).expect("reopen");
        assert_eq!(ledger.get("a").map(|r| r.state), Some(State::Failed));
        assert_eq!(ledger.get("b").map(|r| r.state), Some(State::Admitted));
        assert_eq!(ledger.get("c"), None);
        // Compacted at start-up: one line per live id.
        let text = std::fs::read_to_string(dir.join(FILE_NAME)).expect("read");
        assert_eq!(text.lines().count(), 2, "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_count_bound_forgets_the_oldest_and_malformed_lines_are_skipped() {
        let dir = temp_dir("bound");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join(FILE_NAME), "garbage\n").expect("write");
        let mut ledger = Ledger::open(Some(&dir), Duration::from_secs(86400), 2).expect("open");
        for id in ["a", "b", "c"] {
            ledger.record(id, "f", State::Succeeded).expect("record");
        }
        assert_eq!(ledger.get("a"), None);
        assert!(ledger.get("b").is_some() && ledger.get("c").is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn expired_records_are_ignored() {
        let mut ledger = Ledger::open(None, Duration::from_secs(60), 10).expect("open");
        ledger.insert("old".into(), Record { fingerprint: "f".into(), at: now() - 3600, state: State::Failed });
        assert_eq!(ledger.get("old"), None);
    }
}
