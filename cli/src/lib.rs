//! The `cohort` command line and what it is built from.
//!
//! - [`runfile`]: the run file of `cohort run FILE` (`docs/run-file.md`);
//! - [`launch`]: a local federation of real `cohort-worker` and
//!   `cohort-dealer` processes with ephemeral certificates;
//! - [`run`]: `cohort run` itself: load, launch, submit, report;
//! - [`bench`]: the deployed figure of `cohort bench` (real processes).

pub mod bench;
pub mod launch;
pub mod run;
pub mod runfile;
