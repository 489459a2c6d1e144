//! The `cohort` command line (later) and its file formats.
//!
//! - [`runfile`]: the run file of `cohort run FILE` (`docs/run-file.md`);
//! - [`data`]: party data files (CSV or one number per line).

pub mod data;
pub mod runfile;
