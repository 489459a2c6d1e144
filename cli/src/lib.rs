//! The `cohort` command line and what it is built from.
//!
//! - [`runfile`]: the run file of `cohort run FILE` (`docs/run-file.md`);
//! - [`launch`]: a local federation of real `cohort-worker` and
//!   `cohort-dealer` processes with ephemeral certificates;
//! - [`run`]: `cohort run` itself: load, launch, submit, report;
//! - [`check`]: `cohort check FILE`, what a party reviews before it
//!   consents to a program (hash, inputs, outputs, rounds, material);
//! - [`diagnostic`]: compile errors shown with their source line and a caret;
//! - [`bench`]: the deployed figure of `cohort bench` (real processes).

pub mod bench;
pub mod check;
pub mod diagnostic;
pub mod launch;
pub mod run;
pub mod runfile;
