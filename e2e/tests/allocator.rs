//! The binaries that run jobs allocate through jemalloc with the options
//! of `cohort_worker::memory::MALLOC_CONF` (docs/worker.md, "Memory"):
//! without them, freed large vectors would be unmapped at once and faulted
//! in afresh on their next use (docs/benchmarks.md, issue 17).
//!
//! jemalloc prints its effective options at exit when its environment
//! variable asks for `stats_print`; glibc's malloc ignores the variable
//! and prints nothing.

#![cfg(not(target_env = "msvc"))]

use std::process::Command;

use cohort_e2e::bin;

/// `BINARY --version` with jemalloc's statistics printed at exit: its
/// stderr.
fn allocator_report(binary: &str) -> String {
    let out = Command::new(bin(binary))
        .arg("--version")
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .output()
        .expect("the binary runs");
    assert!(out.status.success(), "{binary} --version: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn cohort_worker_dealer_and_cli_use_jemalloc_keeping_large_blocks_for_a_bounded_time() {
    for binary in ["cohort-worker", "cohort-dealer", "cohort"] {
        let report = allocator_report(binary);
        for option in [
            // No separate, eagerly purged arena for blocks over 8 MiB.
            "opt.oversize_threshold: 0\n",
            // Freed memory returned to the OS on time, also when idle ...
            "opt.background_thread: true",
            // ... after jemalloc's default decay time.
            "opt.dirty_decay_ms: 10000",
        ] {
            assert!(
                report.contains(option),
                "{binary}: jemalloc option {option:?} not in effect; its report:\n{report}"
            );
        }
    }
}
