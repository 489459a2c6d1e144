//! The dealer's durable record of the jobs it has dealt.
//!
//! Material dealt twice breaks Beaver multiplication (a triple used for two
//! products reveals the difference of the masked values), so a dealer must
//! never deal the same job id twice — not even across a restart. With a
//! state directory (`cohort-dealer --state-dir DIR`), the dealer appends
//! each job id to the journal `DIR/`[`JOURNAL_FILE`] and fsyncs it
//! **before** it deals the first batch, and on start it reloads every
//! recorded id and refuses them for ever. A crash after the record but
//! before (or while) dealing burns the id, which is safe; a crash before the
//! record deals nothing.
//!
//! # Format
//!
//! UTF-8 text, one record per line, each line ending in `\n`:
//!
//! ```text
//! cohort-dealer-journal 1
//! <job id: 32 lowercase hex digits> <SHA-256 of the party list and plan: 64 lowercase hex digits>
//! ...
//! ```
//!
//! The digest is there for forensics (which job, with which parties and
//! shapes, was dealt); it commits to public data only — the party names
//! and the material plan, never material. The journal holds no secret.
//!
//! # Crashes and corruption
//!
//! Records are appended with one write and made durable with `fsync`, so a
//! crash can leave at most a *torn last line*: bytes after the last `\n`.
//! Such a tail is dropped with a warning (the file is truncated to its last
//! complete line), because the record it was writing had not been
//! acknowledged and nothing of that job was dealt. Anything else — an
//! unknown header, a complete line that is not a record — is corruption:
//! opening fails with an error naming the file and the line, and the
//! dealer refuses to start rather than forget which ids it served.
//!
//! The file is created with mode 0600 and, when the dealer creates it, the
//! directory with mode 0700. An existing directory keeps its mode (in a
//! pod, the volume's root belongs to the kubelet's `fsGroup` handling).

use crate::preprocessing::durable::{IoError, LineLog, LogError};
use crate::program::unhex;
use crate::transport::JobId;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use tracing::{info, warn};

/// The journal's file name inside the state directory.
pub const JOURNAL_FILE: &str = "served-jobs.journal";
/// The first line of every journal.
pub const JOURNAL_HEADER: &str = "cohort-dealer-journal 1";

/// Why the journal could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file-system operation failed.
    #[error("the dealer journal {}: cannot {}: {}", .0.path.display(), .0.op, .0.source)]
    Io(#[from] IoError),
    /// A complete line is not what the journal holds. The dealer must not
    /// start: it would forget which job ids it served.
    #[error(
        "the dealer journal {}, line {line}: {reason}; the dealer refuses to start rather than forget which job ids \
         it served (restore the file or investigate; never delete it while any party may reuse a job id)",
        path.display()
    )]
    Corrupt { path: PathBuf, line: usize, reason: String },
}

impl From<LogError> for JournalError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Io(e) => JournalError::Io(e),
            LogError::Corrupt { path, line, reason } => JournalError::Corrupt { path, line, reason },
        }
    }
}

/// An open journal: the ids recorded so far and the log to append to.
#[derive(Debug)]
pub struct Journal {
    log: LineLog,
    served: HashSet<JobId>,
    dropped_tail: usize,
}

impl Journal {
    /// Open (or create) the journal in `dir`, creating `dir` (mode 0700)
    /// if needed, and load every recorded job id. A torn last line is
    /// dropped with a warning; any other malformed content is
    /// [`JournalError::Corrupt`].
    pub fn open(dir: &Path) -> Result<Journal, JournalError> {
        let path = dir.join(JOURNAL_FILE);
        let opened = LineLog::open(&path, JOURNAL_HEADER)?;
        let mut served = HashSet::new();
        for (line, text) in &opened.records {
            let job = parse_record(text).map_err(|r| JournalError::Corrupt {
                path: path.clone(),
                line: *line,
                reason: r.into(),
            })?;
            if !served.insert(job) {
                // Not fatal: the id stays refused either way.
                warn!(path = %path.display(), line, job = %job, "the dealer journal records a job id twice");
            }
        }
        if opened.dropped_tail > 0 {
            warn!(
                path = %path.display(),
                bytes = opened.dropped_tail,
                "the dealer journal ends in a torn record (a crash while writing it); dropping it: \
                 that record was never acknowledged, so its job was not dealt"
            );
        }
        info!(
            path = %path.display(),
            served = served.len(),
            created = opened.created,
            "the dealer journal is open: recorded job ids are refused"
        );
        Ok(Journal { log: opened.log, served, dropped_tail: opened.dropped_tail })
    }

    /// Whether `job` is recorded.
    pub fn contains(&self, job: &JobId) -> bool {
        self.served.contains(job)
    }

    /// The recorded job ids.
    pub fn served(&self) -> &HashSet<JobId> {
        &self.served
    }

    /// Bytes of a torn last line dropped when the journal was opened.
    pub fn dropped_tail(&self) -> usize {
        self.dropped_tail
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        self.log.path()
    }

    /// Record `job` (with the digest of its party list and plan) and make
    /// the record durable. Returns only once the record is on stable
    /// storage; deal nothing of `job` unless this returned `Ok`.
    pub fn record(&mut self, job: JobId, digest: &[u8; 32]) -> Result<(), JournalError> {
        self.log.append(&format!("{job} {}", crate::program::hex(digest)))?;
        self.served.insert(job);
        Ok(())
    }
}

/// `<32 hex> <64 hex>` → the job id.
fn parse_record(text: &str) -> Result<JobId, &'static str> {
    let (job, digest) = text.split_once(' ').ok_or("expected `<job id> <digest>`")?;
    let job = unhex::<16>(job).ok_or("the job id is not 32 lowercase hex digits")?;
    unhex::<32>(digest).ok_or("the digest is not 64 lowercase hex digits")?;
    Ok(JobId(job))
}

/// SHA-256 over a job's party list and material plan (length-prefixed, so
/// no two inputs share an encoding): the digest a journal record carries.
pub fn plan_digest(parties: &[String], plan: &crate::preprocessing::MaterialPlan) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"cohort-dealer job\0");
    ctx.update(&(parties.len() as u64).to_le_bytes());
    for p in parties {
        ctx.update(&(p.len() as u64).to_le_bytes());
        ctx.update(p.as_bytes());
    }
    ctx.update(&(plan.layers.len() as u64).to_le_bytes());
    for layer in &plan.layers {
        ctx.update(&(layer.triples as u64).to_le_bytes());
        ctx.update(&(layer.div_pairs.len() as u64).to_le_bytes());
        for &(d, n) in &layer.div_pairs {
            ctx.update(&d.to_le_bytes());
            ctx.update(&(n as u64).to_le_bytes());
        }
        // Only layers with binary kinds hash them, so the digests of plans
        // without them are those journals already hold.
        if layer.has_binary() {
            ctx.update(b"binary");
            for n in [layer.bit_triple_words, layer.edabits, layer.dabits] {
                ctx.update(&(n as u64).to_le_bytes());
            }
        }
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocessing::{Demand, MaterialPlan};
    use std::fs::OpenOptions;
    use std::io::Write;

    fn digest() -> [u8; 32] {
        plan_digest(
            &["a".into(), "b".into()],
            &MaterialPlan { layers: vec![Demand { triples: 3, div_pairs: vec![(2, 1)], ..Default::default() }] },
        )
    }

    #[test]
    fn records_survive_a_reopen_and_the_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let (a, b) = (JobId([1; 16]), JobId([0xab; 16]));
        {
            let mut j = Journal::open(&state).unwrap();
            assert!(j.served().is_empty());
            j.record(a, &digest()).unwrap();
            j.record(b, &digest()).unwrap();
            assert!(j.contains(&a) && j.contains(&b));
        }
        let j = Journal::open(&state).unwrap();
        assert_eq!(j.served(), &HashSet::from([a, b]));
        assert_eq!(j.dropped_tail(), 0);
        let text = std::fs::read_to_string(j.path()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], JOURNAL_HEADER);
        assert_eq!(lines[1], format!("{a} {}", crate::program::hex(&digest())));
        assert_eq!(lines.len(), 3);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(j.path()), 0o600);
            assert_eq!(mode(&state), 0o700);
        }
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_the_journal_stays_usable() {
        let dir = tempfile::tempdir().unwrap();
        let a = JobId([2; 16]);
        let path = {
            let mut j = Journal::open(dir.path()).unwrap();
            j.record(a, &digest()).unwrap();
            j.path().to_path_buf()
        };
        let complete = std::fs::metadata(&path).unwrap().len();
        // A crash in the middle of the next record.
        OpenOptions::new().append(true).open(&path).unwrap().write_all(b"0303030303030303").unwrap();
        let mut j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.dropped_tail(), 16);
        assert_eq!(j.served(), &HashSet::from([a]));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), complete, "the torn tail is truncated");
        let b = JobId([3; 16]);
        j.record(b, &digest()).unwrap();
        drop(j);
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.served(), &HashSet::from([a, b]));
        assert_eq!(j.dropped_tail(), 0);
    }

    #[test]
    fn a_torn_header_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(JOURNAL_FILE), b"cohort-dea").unwrap();
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.dropped_tail(), 10);
        drop(j);
        let text = std::fs::read_to_string(dir.path().join(JOURNAL_FILE)).unwrap();
        assert_eq!(text, format!("{JOURNAL_HEADER}\n"));
    }

    #[test]
    fn corruption_names_the_file_and_the_line() {
        let good = format!("{} {}", JobId([4; 16]), crate::program::hex(&digest()));
        let cases = [
            (format!("something else\n{good}\n"), 1, "header"),
            (format!("{JOURNAL_HEADER}\n{good}\nnot-a-record\n"), 3, "<job id> <digest>"),
            (format!("{JOURNAL_HEADER}\n{good}\nXYZ {}\n", crate::program::hex(&digest())), 3, "job id"),
            (format!("{JOURNAL_HEADER}\n{} 00\n{good}\n", JobId([5; 16])), 2, "digest"),
            (format!("{JOURNAL_HEADER}\n{}\n", good.to_uppercase()), 2, "job id"),
            (format!("{JOURNAL_HEADER}\n\n{good}\n"), 2, "<job id> <digest>"),
        ];
        for (text, line, what) in cases {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(JOURNAL_FILE), &text).unwrap();
            let err = Journal::open(dir.path()).expect_err(&text);
            let msg = err.to_string();
            assert!(matches!(err, JournalError::Corrupt { line: l, .. } if l == line), "{msg}");
            assert!(msg.contains(JOURNAL_FILE) && msg.contains(&format!("line {line}")), "{msg}");
            assert!(msg.contains(what), "{msg}");
            // The file is left as it was for investigation.
            assert_eq!(std::fs::read_to_string(dir.path().join(JOURNAL_FILE)).unwrap(), text);
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(JOURNAL_FILE), [JOURNAL_HEADER.as_bytes(), b"\n\xff\xfe\n"].concat()).unwrap();
        assert!(Journal::open(dir.path()).unwrap_err().to_string().contains("line 2: not UTF-8"));
    }

    #[test]
    fn a_duplicate_record_is_tolerated_and_stays_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = format!("{} {}", JobId([6; 16]), crate::program::hex(&digest()));
        std::fs::write(dir.path().join(JOURNAL_FILE), format!("{JOURNAL_HEADER}\n{good}\n{good}\n")).unwrap();
        let j = Journal::open(dir.path()).unwrap();
        assert!(j.contains(&JobId([6; 16])));
    }

    #[test]
    fn an_unusable_directory_is_an_io_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        let err = Journal::open(&file.join("sub")).unwrap_err();
        assert!(matches!(err, JournalError::Io { .. }), "{err}");
        assert!(err.to_string().contains(JOURNAL_FILE), "{err}");
    }

    #[test]
    fn digests_commit_to_parties_and_plan() {
        let plan = MaterialPlan { layers: vec![Demand { triples: 3, div_pairs: vec![], ..Default::default() }] };
        let other = MaterialPlan { layers: vec![Demand { triples: 4, div_pairs: vec![], ..Default::default() }] };
        let p = vec!["a".to_string(), "b".to_string()];
        let q = vec!["ab".to_string(), String::new()];
        assert_ne!(plan_digest(&p, &plan), plan_digest(&p, &other));
        assert_ne!(plan_digest(&p, &plan), plan_digest(&q, &plan));
        assert_eq!(plan_digest(&p, &plan), plan_digest(&p.clone(), &plan.clone()));
    }
}
