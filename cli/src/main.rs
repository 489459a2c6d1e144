//! `cohort`: run a program among local parties (`cohort run`) and measure
//! the engine (`cohort bench`). See `docs/run-file.md` and
//! `docs/benchmarks.md`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use cohort_cli::launch::Options;
use cohort_cli::run::{render_text, run_file};
use cohort_worker::bench::ot::{OtBenchOptions, OtBenchReport};
use cohort_worker::bench::{BenchOptions, BenchReport};
use cohort_worker::preprocessing::Mode;

#[derive(Parser, Debug)]
#[command(name = "cohort", version, about = "Secure multiparty computation between organizations")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a run file's job: one cohort-worker process per party (and a
    /// trusted dealer with `preprocessing: dealer`), on loopback with
    /// ephemeral certificates.
    Run {
        /// The run file (YAML; see docs/run-file.md).
        file: PathBuf,
        /// Output format on stdout.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Write each process's log to DIR/<name>.log instead of stderr.
        #[arg(long, value_name = "DIR")]
        log_dir: Option<PathBuf>,
        /// Where the material comes from, overriding the run file's
        /// `preprocessing`: `dealer` (a trusted dealer process) or `ot` (the
        /// parties generate it with oblivious transfer; no third party).
        #[arg(long, value_enum)]
        preprocessing: Option<Preprocessing>,
    },
    /// Measure the engine among local parties over real loopback mTLS. With
    /// `--preprocessing ot` (the default): dealer-free generation of Beaver
    /// triples by OT extension (triples per second, bytes per triple). With
    /// `--preprocessing dealer`: one layer of secret multiplications, online
    /// (material prefetched) and end to end (trusted dealer during the job),
    /// the dealer's rate and bytes per multiplication. Both report the
    /// loopback TLS bound. See docs/benchmarks.md.
    Bench {
        /// Number of parties.
        #[arg(long, default_value_t = 3)]
        parties: usize,
        /// Multiplications in the layer.
        #[arg(long, default_value_t = 1_000_000)]
        mults: usize,
        /// Runs of each variant (figures are medians).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// MiB sent per stream when measuring loopback TLS (0 skips it).
        #[arg(long, default_value_t = 256)]
        tls_mib: usize,
        /// What to measure: `dealer` measures the online phase with a
        /// trusted dealer's material; `ot` measures dealer-free generation
        /// of Beaver triples with OT extension (triples per second, bytes
        /// per triple).
        #[arg(long, value_enum, default_value_t = Preprocessing::Ot)]
        preprocessing: Preprocessing,
        /// Triples generated per run with `--preprocessing ot`.
        #[arg(long, default_value_t = 1_000_000)]
        triples: usize,
        /// Output format on stdout.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

/// Where preprocessing material comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Preprocessing {
    /// A trusted dealer (a trusted third party).
    Dealer,
    /// The parties themselves, with oblivious transfer.
    Ot,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench { parties, repeats, tls_mib, format, preprocessing: Preprocessing::Ot, triples, .. } => {
            let options = OtBenchOptions { parties, triples, repeats, tls_bytes_per_stream: tls_mib << 20 };
            eprintln!("cohort bench: {parties} parties, {triples} Beaver triples by OT extension, {repeats} runs");
            match cohort_worker::bench::ot::run(&options).await {
                Ok(report) => print_report("cohort bench", format, &report, ot_bench_text),
                Err(e) => {
                    eprintln!("cohort bench: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Bench { parties, mults, repeats, tls_mib, format, preprocessing: Preprocessing::Dealer, .. } => {
            let options = BenchOptions { parties, mults, repeats, tls_bytes_per_stream: tls_mib << 20 };
            eprintln!("cohort bench: {parties} parties, {mults} multiplications, {repeats} runs of each variant");
            match cohort_worker::bench::run(&options).await {
                Ok(report) => print_report("cohort bench", format, &report, bench_text),
                Err(e) => {
                    eprintln!("cohort bench: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { file, format, log_dir, preprocessing } => {
            let mut options = Options::beside_current_exe();
            if let Some(dir) = log_dir {
                if let Err(e) = std::fs::create_dir_all(&dir) {
                    eprintln!("cohort run: cannot create {}: {e}", dir.display());
                    return ExitCode::FAILURE;
                }
                options.log_dir = Some(dir);
            }
            let preprocessing = preprocessing.map(|p| match p {
                Preprocessing::Dealer => Mode::Dealer,
                Preprocessing::Ot => Mode::Ot,
            });
            match run_file(&file, &options, preprocessing, |line| eprintln!("cohort run: {line}")).await {
                Ok(report) => print_report("cohort run", format, &report, render_text),
                Err(e) => {
                    eprintln!("cohort run: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The benchmark report for a person.
fn bench_text(r: &BenchReport) -> String {
    let m = |x: f64| x / 1e6;
    format!(
        "{} parties, {} multiplications in one layer, {} rounds, {}\n\
         online      {:>8.2} M mults/s  ({:.1} ms, material prefetched)\n\
         end to end  {:>8.2} M mults/s  ({:.1} ms, trusted dealer during the job)\n\
         dealer      {:>8.2} M triples/s delivered and expanded ({:.2} M/s generation alone)\n\
         bytes       {:>8.2} per mult per party (protocol: {:.0})\n\
         TLS         {:>8.2} GB/s loopback, mesh-shaped -> bound {:.2} M mults/s; online is {:.0} % of it\n",
        r.parties,
        r.mults,
        r.rounds,
        r.cipher_suite,
        m(r.online_mults_per_second),
        r.online_seconds * 1e3,
        m(r.end_to_end_mults_per_second),
        r.end_to_end_seconds * 1e3,
        m(r.dealer_triples_per_second),
        m(r.dealer_generation_triples_per_second),
        r.bytes_per_mult_per_party,
        r.protocol_bytes_per_mult_per_party,
        r.tls_loopback_bytes_per_second / 1e9,
        m(r.online_bound_mults_per_second),
        r.online_fraction_of_bound * 100.0,
    )
}

/// The OT generation report for a person.
fn ot_bench_text(r: &OtBenchReport) -> String {
    format!(
        "{} parties, {} Beaver triples (Z_2^64) by OT extension, {}\n\
         generation  {:>8.3} M triples/s  ({:.1} ms; base OTs took {:.1} ms once)\n\
         bytes       {:>8.1} per triple, all parties (construction: {:.0})\n\
         TLS         {:>8.2} GB/s loopback, mesh-shaped -> bound {:.3} M triples/s; generation is {:.0} % of it\n",
        r.parties,
        r.triples,
        r.cipher_suite,
        r.triples_per_second / 1e6,
        r.seconds * 1e3,
        r.base_ot_seconds * 1e3,
        r.bytes_per_triple,
        r.protocol_bytes_per_triple,
        r.tls_loopback_bytes_per_second / 1e9,
        r.bound_triples_per_second / 1e6,
        r.fraction_of_bound * 100.0,
    )
}

/// Print `report` on stdout: one JSON document, or the text for a person.
fn print_report<T: serde::Serialize>(command: &str, format: Format, report: &T, text: fn(&T) -> String) -> ExitCode {
    match format {
        Format::Json => match serde_json::to_string(report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("{command}: cannot encode the report: {e}");
                return ExitCode::FAILURE;
            }
        },
        Format::Text => print!("{}", text(report)),
    }
    ExitCode::SUCCESS
}
