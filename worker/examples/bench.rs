//! Run `cohort_worker::bench::run` and print the report as JSON.
//!
//! ```sh
//! cargo run --release -p cohort-worker --example bench -- [parties] [mults] [repeats] [tls MiB per stream]
//! ```

use cohort_worker::bench::{BenchOptions, run};

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("numeric argument")).collect();
    let d = BenchOptions::default();
    let options = BenchOptions {
        parties: args.first().copied().unwrap_or(d.parties),
        mults: args.get(1).copied().unwrap_or(d.mults),
        repeats: args.get(2).copied().unwrap_or(d.repeats),
        tls_bytes_per_stream: args.get(3).map(|m| m << 20).unwrap_or(d.tls_bytes_per_stream),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let report = runtime.block_on(run(&options)).expect("benchmark");
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
}
