//! The audit trail: one JSON line per finished job, appended to the file
//! `auditLog` names (docs/worker.md, "Audit log").
//!
//! A record holds only what every party of the job already knows in
//! public: the job id, the program hash, the parties, the protocol
//! version, when it was admitted and finished, the outcome, rounds and
//! bytes, and for a failure the step and the party concerned. Never an
//! input, share, output, key, seed or a failure's message (messages are
//! public too, but free text has no place in an append-only record that
//! outlives every retention decision).
//!
//! The file is opened in append mode, created 0600, and every record is
//! one `write` of a whole line followed by `fsync`, so a crash leaves at
//! worst a torn last line, never a gap in what came before.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

/// How a job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Succeeded,
    Failed,
    Cancelled,
}

/// One line of the audit log.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// Format version of the record.
    pub v: u32,
    pub job_id: String,
    /// Hex SHA-256 of the program source.
    pub program_hash: String,
    pub parties: Vec<String>,
    /// This worker's party.
    pub party: String,
    /// The protocol version the job ran at (absent when it never ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<u32>,
    /// RFC 3339, UTC.
    pub admitted: String,
    pub finished: String,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rounds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_sent: Option<u64>,
    /// For a failure: the protocol step, and the party it concerns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_party: Option<String>,
}

/// The record format version.
pub const RECORD_VERSION: u32 = 1;

/// RFC 3339 (UTC, millisecond precision) of `t`.
pub fn timestamp(t: SystemTime) -> String {
    match jiff::Timestamp::try_from(t) {
        Ok(ts) => format!("{ts:.3}"),
        Err(_) => "1970-01-01T00:00:00Z".into(),
    }
}

/// Why the audit log cannot be opened or written.
#[derive(Debug, thiserror::Error)]
#[error("audit log {path}: {source}")]
pub struct AuditError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// An open, append-only audit log.
#[derive(Clone)]
pub struct AuditLog {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl AuditLog {
    /// Open (or create, mode 0600) the log at `path` for appending.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        let err = |source| AuditError { path: path.to_path_buf(), source };
        let mut options = OpenOptions::new();
        options.append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(path).map_err(err)?;
        Ok(AuditLog { path: path.to_path_buf(), file: Arc::new(Mutex::new(file)) })
    }

    /// Append `record` as one line and fsync. Blocking: call it off the
    /// async threads.
    pub fn append(&self, record: &Record) -> Result<(), AuditError> {
        let err = |source| AuditError { path: self.path.clone(), source };
        let mut line = serde_json::to_vec(record).map_err(|e| err(std::io::Error::other(e)))?;
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(&line).map_err(err)?;
        file.sync_data().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> Record {
        Record {
            v: RECORD_VERSION,
            job_id: id.into(),
            program_hash: "ab".repeat(32),
            parties: vec!["a".into(), "b".into()],
            party: "a".into(),
            protocol_version: Some(1),
            admitted: timestamp(SystemTime::UNIX_EPOCH),
            finished: timestamp(SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1500)),
            outcome: Outcome::Succeeded,
            rounds: Some(6),
            bytes_sent: Some(1024),
            failed_step: None,
            failed_party: None,
        }
    }

    #[test]
    fn records_append_as_json_lines_readable_only_by_the_owner() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path).expect("opens");
        log.append(&record("1")).expect("appends");
        // Reopening appends, never truncates.
        AuditLog::open(&path).expect("reopens").append(&record("2")).expect("appends");
        let text = std::fs::read_to_string(&path).expect("reads");
        let lines: Vec<serde_json::Value> =
            text.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["jobId"], "1");
        assert_eq!(lines[1]["jobId"], "2");
        assert_eq!(lines[0]["admitted"], "1970-01-01T00:00:00.000Z");
        assert_eq!(lines[0]["finished"], "1970-01-01T00:00:01.500Z");
        assert_eq!(lines[0]["outcome"], "succeeded");
        assert!(lines[0].get("failedStep").is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("metadata").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn an_unwritable_log_is_an_error_naming_the_file() {
        let err = AuditLog::open(Path::new("/nonexistent-dir/audit.jsonl")).err().expect("an error");
        assert!(err.to_string().starts_with("audit log /nonexistent-dir/audit.jsonl:"), "{err}");
    }
}
