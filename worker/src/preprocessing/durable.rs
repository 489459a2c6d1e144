//! Durable, private files for preprocessing state: the dealer's journal of
//! served jobs and the preprocessing store's batches and ledger.
//!
//! What this module owns:
//!
//! - [`LineLog`]: an append-only text log whose every record is one line,
//!   made durable (`fsync`) before `append` returns. A crash can leave at
//!   most a *torn last line* (bytes after the last `\n`), which
//!   [`LineLog::open`] drops with a warning: the record it was writing was
//!   never acknowledged. The first line is a header naming the format.
//! - [`write_private`]: a file written whole, or not at all (temporary
//!   file, `fsync`, rename, `fsync` of the directory), readable only by
//!   its owner.
//! - [`overwrite_and_remove`]: zeroes a file's bytes, syncs, then unlinks
//!   it. On a log-structured or copy-on-write file system (and on SSDs
//!   behind the file system) the old blocks may survive; the overwrite
//!   makes recovery harder, encrypted volumes make it impossible.
//!
//! Files are created with mode 0600 and directories with mode 0700; an
//! existing directory keeps its mode (in a pod, the volume's root belongs to
//! the kubelet's `fsGroup` handling).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A file-system operation on a durable file failed.
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot {op}: {source}", path.display())]
pub struct IoError {
    pub path: PathBuf,
    pub op: &'static str,
    #[source]
    pub source: std::io::Error,
}

/// The context-adding error constructor for operations on `path`.
pub fn io(path: &Path, op: &'static str) -> impl FnOnce(std::io::Error) -> IoError + use<> {
    let path = path.to_path_buf();
    move |source| IoError { path, op, source }
}

/// Create `dir` and its parents, the new ones with mode 0700.
pub fn create_private_dir(dir: &Path) -> Result<(), IoError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(io(dir, "create the directory"))
}

/// Make `dir`'s entries (new, renamed or removed files) durable.
pub fn sync_dir(dir: &Path) -> Result<(), IoError> {
    #[cfg(unix)]
    {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir, "sync the directory"))
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Write `bytes` to `path` whole or not at all, mode 0600: a temporary file
/// beside it, `fsync`, rename over `path`, `fsync` of the directory.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = private_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(io(&tmp, "create a temporary file"))?;
    file.write_all(bytes).map_err(io(&tmp, "write"))?;
    file.sync_all().map_err(io(&tmp, "sync"))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io(path, "rename the temporary file into place"))?;
    sync_dir(dir)
}

/// Overwrite `path` with zeros, sync it, then remove it and sync its
/// directory. A file that is already gone is not an error.
pub fn overwrite_and_remove(path: &Path) -> Result<(), IoError> {
    let mut file = match OpenOptions::new().write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(path, "open for overwriting")(e)),
    };
    let len = file.metadata().map_err(io(path, "read the size"))?.len();
    let zeros = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n]).map_err(io(path, "overwrite"))?;
        left -= n as u64;
    }
    file.sync_all().map_err(io(path, "sync the overwrite"))?;
    drop(file);
    std::fs::remove_file(path).map_err(io(path, "remove"))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// An append-only log of one-line records, durable record by record.
#[derive(Debug)]
pub struct LineLog {
    path: PathBuf,
    file: File,
}

/// What [`LineLog::open`] found.
#[derive(Debug)]
pub struct Opened {
    pub log: LineLog,
    /// The complete records after the header: (line number, text).
    pub records: Vec<(usize, String)>,
    /// Bytes of a torn last line that were dropped.
    pub dropped_tail: usize,
    /// Whether the file was created.
    pub created: bool,
}

/// A complete line that is not what the log holds.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error("{}, line {line}: {reason}", path.display())]
    Corrupt { path: PathBuf, line: usize, reason: String },
}

impl LineLog {
    /// Open (or create, with `header` as its first line) the log `path`,
    /// creating its directory (0700) if needed. A torn last line is
    /// truncated away (and reported in [`Opened::dropped_tail`]); a first
    /// line other than `header`, or a line that is not UTF-8, is
    /// [`LogError::Corrupt`].
    pub fn open(path: &Path, header: &str) -> Result<Opened, LogError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        create_private_dir(dir).map_err(|e| IoError {
            path: path.to_path_buf(),
            op: "create its directory",
            source: e.source,
        })?;
        let mut file = private_options().read(true).append(true).create(true).open(path).map_err(io(path, "open"))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io(path, "read"))?;
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let dropped_tail = bytes.len() - complete;
        let corrupt = |line: usize, reason: String| LogError::Corrupt { path: path.to_path_buf(), line, reason };
        let mut records = Vec::new();
        if complete > 0 {
            for (i, raw) in bytes[..complete - 1].split(|&b| b == b'\n').enumerate() {
                let text = std::str::from_utf8(raw).map_err(|_| corrupt(i + 1, "not UTF-8 text".into()))?;
                if i == 0 {
                    if text != header {
                        return Err(corrupt(1, format!("expected the header {header:?}")));
                    }
                } else {
                    records.push((i + 1, text.to_string()));
                }
            }
        }
        if dropped_tail > 0 {
            file.set_len(complete as u64).map_err(io(path, "truncate its torn last line"))?;
            file.sync_all().map_err(io(path, "sync"))?;
        }
        let created = complete == 0;
        let mut log = LineLog { path: path.to_path_buf(), file };
        if created {
            log.append(header)?;
            sync_dir(dir)?;
        }
        Ok(Opened { log, records, dropped_tail, created })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append `record` (one line, without its `\n`) and make it durable:
    /// when this returns `Ok`, the record survives a crash.
    pub fn append(&mut self, record: &str) -> Result<(), IoError> {
        debug_assert!(!record.contains('\n'));
        let path = self.path.clone();
        // Appends go to the end whatever the position; seeking only keeps
        // the position meaningful for a reader of `file`.
        self.file.seek(SeekFrom::End(0)).map_err(io(&path, "seek"))?;
        let mut line = Vec::with_capacity(record.len() + 1);
        line.extend_from_slice(record.as_bytes());
        line.push(b'\n');
        self.file.write_all(&line).map_err(io(&path, "append a record"))?;
        self.file.sync_data().map_err(io(&path, "sync"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_log_keeps_its_records_drops_a_torn_tail_and_refuses_a_foreign_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/log");
        {
            let mut opened = LineLog::open(&path, "test-log 1").unwrap();
            assert!(opened.created && opened.records.is_empty());
            opened.log.append("one").unwrap();
            opened.log.append("two").unwrap();
        }
        #[cfg(unix)]
        assert_eq!((mode(&path), mode(path.parent().unwrap())), (0o600, 0o700));
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"thr").unwrap();
        let opened = LineLog::open(&path, "test-log 1").unwrap();
        assert_eq!(opened.records, vec![(2, "one".to_string()), (3, "two".to_string())]);
        assert_eq!((opened.dropped_tail, opened.created), (3, false));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "test-log 1\none\ntwo\n");
        let err = LineLog::open(&path, "other-log 1").unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("other-log 1"), "{err}");
    }

    #[test]
    fn private_files_are_written_whole_and_overwritten_before_removal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        write_private(&path, b"first").unwrap();
        write_private(&path, b"second version").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second version");
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file is left");
        // Keep a second handle: after the overwrite it reads zeros, so the
        // bytes were overwritten in place before the name was removed.
        let mut other = std::fs::File::open(&path).unwrap();
        overwrite_and_remove(&path).unwrap();
        assert!(!path.exists());
        let mut left = Vec::new();
        other.read_to_end(&mut left).unwrap();
        assert_eq!(left, vec![0u8; 14]);
        overwrite_and_remove(&path).unwrap(); // already gone: fine
    }
}
