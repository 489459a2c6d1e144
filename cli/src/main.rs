//! `cohort`: run a program among local parties (`cohort run`), review one
//! before consenting to it (`cohort check`) and measure the engine
//! (`cohort bench`). See `docs/run-file.md` and `docs/benchmarks.md`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use cohort_cli::bench::{DeployedReport, Op};
use cohort_cli::launch::Options;
use cohort_cli::run::{Interrupts, Overrides, render_text, run_file};
use cohort_worker::bench::compare::{CompareBenchOptions, CompareBenchReport};
use cohort_worker::bench::ot::{OtBenchOptions, OtBenchReport};
use cohort_worker::bench::sort::ProgramOp;
use cohort_worker::bench::{BenchOptions, BenchReport, CpuInfo};
use cohort_worker::preprocessing::Mode;
use cohort_worker::protocol::ProtocolName;

// jemalloc, keeping freed large blocks for reuse (cohort_worker::memory).
cohort_worker::global_allocator!();

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
        /// The MPC protocol, overriding the run file's `protocol`:
        /// `additive-semi-honest` (any number of parties, dishonest
        /// majority, preprocessing material) or `replicated-3` (exactly 3
        /// parties, honest majority, no preprocessing).
        #[arg(long, value_name = "NAME")]
        protocol: Option<ProtocolName>,
    },
    /// Compile a program without running it and show what a party reviews
    /// before it consents: the program hash, each input with its owners
    /// and type, each output with its recipients and type, and the rounds
    /// and material a job takes as functions of the input lengths (per
    /// preprocessing mode where they differ). See docs/run-file.md.
    Check {
        /// A program file, or a run file (YAML), which names the parties
        /// and the program.
        file: PathBuf,
        /// The job's parties in order (needed for a program file; a run
        /// file names them).
        #[arg(long, value_delimiter = ',', value_name = "A,B,...")]
        parties: Option<Vec<String>>,
        /// Exact figures for these input lengths: `NAME=N,...`, where NAME
        /// is a vector input, or `input@party` for one party's part of a
        /// `from each` input.
        #[arg(long, value_name = "NAME=N,...")]
        lengths: Option<String>,
        /// Output format on stdout.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// The protocol to review the costs under (default: a run file's
        /// `protocol:`, else additive-semi-honest).
        #[arg(long, value_name = "NAME")]
        protocol: Option<ProtocolName>,
    },
    /// Measure the engine among local parties over real loopback mTLS. With
    /// `--preprocessing ot` (the default): dealer-free generation of Beaver
    /// triples by OT extension (triples per second, bytes per triple). With
    /// `--preprocessing dealer`: one layer of secret multiplications, online
    /// (material prefetched) and with an in-process dealer (a thread, in
    /// one process), the dealer's rate and bytes per multiplication, and
    /// the same job deployed: cohort-worker processes and a cohort-dealer
    /// process over mutual TLS. Both modes report the loopback TLS bound
    /// and the CPU. See docs/benchmarks.md.
    Bench {
        /// Number of parties.
        #[arg(long, default_value_t = 3)]
        parties: usize,
        /// Multiplications in the layer (`--preprocessing dealer` only;
        /// default 1000000).
        #[arg(long)]
        mults: Option<usize>,
        /// Runs of each variant (figures are medians).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// MiB sent per stream when measuring loopback TLS (0 skips it;
        /// default 256; not with `--op compare`).
        #[arg(long)]
        tls_mib: Option<usize>,
        /// The operation measured: `mul` (the default: multiplications, or
        /// triple generation with `--preprocessing ot`), `compare`
        /// (`count(x < y)` over `--comparisons` secret integers, with the
        /// material dealt or generated during the job, and deployed), or
        /// one job of a program over `--n` elements in process (below).
        #[arg(long, value_enum, default_value_t = BenchOp::Mul)]
        op: BenchOp,
        /// Comparisons in the job (`--op compare` only; default 1000000
        /// with a dealer, 100000 with OT).
        #[arg(long)]
        comparisons: Option<usize>,
        /// Keys sorted (`--op sort` only; default 100000).
        #[arg(long)]
        n: Option<usize>,
        /// What to measure: `dealer` measures the online phase with a
        /// trusted dealer's material; `ot` (the default) measures dealer-free
        /// generation of Beaver triples with OT extension (triples per
        /// second, bytes per triple). Refused with `--protocol replicated-3`,
        /// which takes no material.
        #[arg(long, value_enum)]
        preprocessing: Option<Preprocessing>,
        /// The protocol measured: `additive-semi-honest` (the default) or
        /// `replicated-3` (3 parties, no material: `--op mul` measures the
        /// layer of multiplications, `--op compare` the comparisons, each
        /// in process and deployed).
        #[arg(long, value_name = "NAME", default_value_t = ProtocolName::AdditiveSemiHonest)]
        protocol: ProtocolName,
        /// Triples generated per run (`--preprocessing ot` only; default
        /// 1000000).
        #[arg(long)]
        triples: Option<usize>,
        /// With `--preprocessing dealer`: skip the deployed measurement
        /// (worker and dealer processes).
        #[arg(long)]
        no_deployed: bool,
        /// Output format on stdout.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

/// What `cohort bench` measures: a layer of multiplications, comparisons,
/// or one of the programs of `bench::sort` (`sort(x + y)`, `median`,
/// `rank`, `join-sum`, `group-sum`, `divide`, `sigmoid`, `exp`, `log`,
/// `sqrt`: one job over `--n` elements in process, named as
/// [`ProgramOp`] names them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BenchOp {
    Mul,
    Compare,
    Program(ProgramOp),
}

impl ValueEnum for BenchOp {
    fn value_variants<'a>() -> &'a [Self] {
        static ALL: std::sync::LazyLock<Vec<BenchOp>> = std::sync::LazyLock::new(|| {
            [BenchOp::Mul, BenchOp::Compare]
                .into_iter()
                .chain(ProgramOp::value_variants().iter().map(|p| BenchOp::Program(*p)))
                .collect()
        });
        &ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        match self {
            BenchOp::Mul => Some(clap::builder::PossibleValue::new("mul")),
            BenchOp::Compare => Some(clap::builder::PossibleValue::new("compare")),
            BenchOp::Program(p) => p.to_possible_value(),
        }
    }
}

impl BenchOp {
    /// The program `bench::sort` runs for this operation, if it is one.
    fn program(self) -> Option<ProgramOp> {
        match self {
            BenchOp::Program(p) => Some(p),
            BenchOp::Mul | BenchOp::Compare => None,
        }
    }
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
        Command::Bench { op, n: Some(_), .. } if op.program().is_none() => refuse(
            "--n sets the elements of --op sort, median, rank, join-sum, group-sum, divide, sigmoid, exp, log and sqrt",
        ),
        Command::Bench { op, mults, comparisons, triples, tls_mib, .. }
            if op.program().is_some()
                && (mults.is_some() || comparisons.is_some() || triples.is_some() || tls_mib.is_some()) =>
        {
            refuse(
                "--op sort (median, rank, join-sum, group-sum, divide, sigmoid, exp, log, sqrt) takes --n N (not --mults, \
                 --comparisons, --triples or --tls-mib)",
            )
        }
        Command::Bench { op, protocol, parties, .. }
            if op.program().is_some() && protocol.check_parties(parties).is_err() =>
        {
            refuse(&protocol.check_parties(parties).err().unwrap_or_default())
        }
        Command::Bench { op, protocol, preprocessing: Some(_), .. }
            if op.program().is_some() && !protocol.uses_preprocessing() =>
        {
            refuse(&format!("--preprocessing: {protocol} takes no preprocessing material; drop the flag"))
        }
        Command::Bench { op, parties, repeats, format, preprocessing, n, protocol, .. }
            if let Some(program) = op.program() =>
        {
            let mode = match preprocessing {
                Some(Preprocessing::Ot) => Mode::Ot,
                Some(Preprocessing::Dealer) | None => Mode::Dealer,
            };
            let n = n.unwrap_or(DEFAULT_COUNT / 10);
            let options =
                cohort_worker::bench::sort::SortBenchOptions { op: program, parties, n, repeats, mode, protocol };
            let what = if protocol.uses_preprocessing() { format!("{mode} material") } else { protocol.to_string() };
            eprintln!("cohort bench: {parties} parties, {program:?} of {n} elements, {what}, {repeats} runs");
            match cohort_worker::bench::sort::run(&options).await {
                Ok(report) => print_report("cohort bench", format, &report, sort_text),
                Err(e) => {
                    eprintln!("cohort bench: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Bench { op: BenchOp::Mul, comparisons: Some(_), .. } => {
            refuse("--comparisons sets the comparisons of --op compare")
        }
        Command::Bench { op: BenchOp::Compare, mults: Some(_), .. } => {
            refuse("--mults applies to --op mul; --op compare takes --comparisons N")
        }
        Command::Bench { op: BenchOp::Compare, triples: Some(_), .. } => {
            refuse("--triples applies to --op mul --preprocessing ot; --op compare takes --comparisons N")
        }
        Command::Bench { op: BenchOp::Compare, tls_mib: Some(_), .. } => {
            refuse("--tls-mib applies to --op mul (the comparison benchmark measures no TLS bound)")
        }
        Command::Bench { protocol, preprocessing: Some(_), .. } if !protocol.uses_preprocessing() => {
            refuse(&format!("--preprocessing: {protocol} takes no preprocessing material; drop the flag"))
        }
        Command::Bench { protocol, triples: Some(_), .. } if !protocol.uses_preprocessing() => {
            refuse(&format!("--triples measures triple generation, and {protocol} takes no material; give --mults N"))
        }
        Command::Bench { protocol, parties, .. } if protocol.check_parties(parties).is_err() => {
            refuse(&protocol.check_parties(parties).err().unwrap_or_default())
        }
        Command::Bench {
            op: BenchOp::Compare,
            parties,
            repeats,
            format,
            preprocessing,
            comparisons,
            no_deployed,
            protocol,
            ..
        } => {
            let mode = match preprocessing {
                Some(Preprocessing::Dealer) => Mode::Dealer,
                Some(Preprocessing::Ot) | None => Mode::Ot,
            };
            let material = protocol.uses_preprocessing();
            let default = if material && mode == Mode::Dealer { DEFAULT_COUNT } else { DEFAULT_COUNT / 10 };
            let comparisons = comparisons.unwrap_or(default);
            let options = CompareBenchOptions { parties, comparisons, repeats, mode, protocol };
            let what = if material { format!("{mode} material") } else { format!("{protocol}, no material") };
            eprintln!("cohort bench: {parties} parties, {comparisons} comparisons, {what}, {repeats} runs");
            let engine = match cohort_worker::bench::compare::run(&options).await {
                Ok(report) => report,
                Err(e) => {
                    eprintln!("cohort bench: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let deployed = match deployed(no_deployed, parties, protocol, Op::Compare, mode, comparisons, repeats).await
            {
                Ok(report) => report,
                Err(code) => return code,
            };
            let deployed = deployed.map(CompareDeployed::from);
            print_report("cohort bench", format, &CompareBench { engine, deployed }, compare_text)
        }
        Command::Bench {
            protocol: ProtocolName::AdditiveSemiHonest,
            preprocessing: None | Some(Preprocessing::Ot),
            mults: Some(_),
            ..
        } => refuse(
            "--mults sets the multiplications of --preprocessing dealer; --preprocessing ot (the default) measures \
             triple generation: give --triples N, or add --preprocessing dealer",
        ),
        Command::Bench {
            protocol: ProtocolName::AdditiveSemiHonest,
            preprocessing: None | Some(Preprocessing::Ot),
            no_deployed: true,
            ..
        } => refuse("--no-deployed applies to --preprocessing dealer only"),
        Command::Bench { preprocessing: Some(Preprocessing::Dealer), triples: Some(_), .. } => refuse(
            "--triples sets the triples of --preprocessing ot; --preprocessing dealer measures a layer of \
             multiplications: give --mults N",
        ),
        Command::Bench {
            parties,
            repeats,
            tls_mib,
            format,
            protocol: ProtocolName::AdditiveSemiHonest,
            preprocessing: None | Some(Preprocessing::Ot),
            triples,
            ..
        } => {
            let triples = triples.unwrap_or(DEFAULT_COUNT);
            let tls_mib = tls_mib.unwrap_or(DEFAULT_TLS_MIB);
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
        Command::Bench { parties, mults, repeats, tls_mib, format, no_deployed, protocol, .. } => {
            // The additive protocol with a dealer's material, or a protocol
            // without material.
            let mults = mults.unwrap_or(DEFAULT_COUNT);
            let tls_mib = tls_mib.unwrap_or(DEFAULT_TLS_MIB);
            let options = BenchOptions { parties, mults, repeats, tls_bytes_per_stream: tls_mib << 20, protocol };
            eprintln!(
                "cohort bench: {protocol}, {parties} parties, {mults} multiplications, {repeats} runs of each variant"
            );
            let engine = match cohort_worker::bench::run(&options).await {
                Ok(report) => report,
                Err(e) => {
                    eprintln!("cohort bench: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let deployed = match deployed(no_deployed, parties, protocol, Op::Mul, Mode::Dealer, mults, repeats).await {
                Ok(report) => report,
                Err(code) => return code,
            };
            print_report("cohort bench", format, &DealerBench { engine, deployed }, bench_text)
        }
        Command::Check { file, parties, lengths, format, protocol } => {
            match cohort_cli::check::check(&file, parties.as_deref(), lengths.as_deref(), protocol) {
                Ok(review) => print_report("cohort check", format, &review, cohort_cli::check::render_text),
                Err(e) if e.is_diagnostic() => {
                    eprintln!("{}", e.render(cohort_cli::diagnostic::colour()));
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("cohort check: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { file, format, log_dir, preprocessing, protocol } => {
            // From here on a signal stops the run cleanly instead of leaving
            // its processes and keys behind.
            let mut interrupts = match Interrupts::install() {
                Ok(i) => i,
                Err(e) => {
                    eprintln!("cohort run: cannot catch signals: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let mut options = Options::beside_current_exe();
            if let Some(dir) = log_dir {
                if let Err(e) = std::fs::create_dir_all(&dir) {
                    eprintln!("cohort run: cannot create {}: {e}", dir.display());
                    return ExitCode::FAILURE;
                }
                options.log_dir = Some(dir);
            } else if std::env::var_os("RUST_LOG").is_none() {
                // The processes share this terminal, and `cohort run` prints
                // a failure once with the parties that reported it: their
                // own "job failed" lines would repeat it once per process.
                options.log = QUIET_JOB_LOGS.into();
            }
            let preprocessing = preprocessing.map(|p| match p {
                Preprocessing::Dealer => Mode::Dealer,
                Preprocessing::Ot => Mode::Ot,
            });
            let progress = |line: &str| eprintln!("cohort run: {line}");
            let overrides = Overrides { protocol, preprocessing };
            match run_file(&file, &options, overrides, progress, &mut interrupts).await {
                Ok(report) => print_report("cohort run", format, &report, render_text),
                Err(e) if e.is_diagnostic() => {
                    eprintln!("{}", e.render(cohort_cli::diagnostic::colour()));
                    ExitCode::from(e.exit_code())
                }
                Err(e) => {
                    eprintln!("cohort run: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
    }
}

/// The processes' log filter when they share `cohort run`'s stderr: warnings,
/// except each worker's and the dealer's own report of a job's failure.
const QUIET_JOB_LOGS: &str =
    "warn,cohort_worker::service::jobs=error,cohort_worker::preprocessing::dealer::service=error";

/// Multiplications (dealer mode), triples (OT mode) or comparisons (dealer
/// mode; a tenth with OT) when not given.
const DEFAULT_COUNT: usize = 1_000_000;

/// MiB per stream of the TLS measurement when not given.
const DEFAULT_TLS_MIB: usize = 256;

/// `cohort bench --op compare`'s report: the engine's figures and the
/// deployed path's beside them (one flat JSON object).
#[derive(serde::Serialize)]
struct CompareBench {
    #[serde(flatten)]
    engine: CompareBenchReport,
    #[serde(flatten)]
    deployed: Option<CompareDeployed>,
}

/// The deployed figures of the comparison benchmark, named for it.
#[derive(serde::Serialize)]
struct CompareDeployed {
    deployed_seconds: f64,
    deployed_comparisons_per_second: f64,
    deployed_party_seconds: f64,
    deployed_startup_seconds: f64,
    deployed_samples: Vec<f64>,
}

impl From<DeployedReport> for CompareDeployed {
    fn from(d: DeployedReport) -> Self {
        CompareDeployed {
            deployed_seconds: d.deployed_seconds,
            deployed_comparisons_per_second: d.deployed_per_second,
            deployed_party_seconds: d.deployed_party_seconds,
            deployed_startup_seconds: d.deployed_startup_seconds,
            deployed_samples: d.deployed_samples,
        }
    }
}

/// The comparison benchmark for a person.
fn compare_text(report: &CompareBench) -> String {
    let r = &report.engine;
    let k = |x: f64| x / 1e3;
    let material = match r.preprocessing {
        None => "no material",
        Some(Mode::Dealer) => "material from an in-process dealer thread during the job",
        Some(_) => "material generated by the parties with OT during the job",
    };
    let online = if r.online_seconds > 0.0 && r.preprocessing.is_some() {
        format!(
            "online      {:>10.1} k comparisons/s  ({:.1} ms, material prefetched)\n",
            k(r.online_comparisons_per_second),
            r.online_seconds * 1e3
        )
    } else {
        String::new()
    };
    let deployed = match &report.deployed {
        Some(d) => format!(
            "deployed    {:>10.1} k comparisons/s  ({:.1} ms submission to every result; worker processes{})\n",
            k(d.deployed_comparisons_per_second),
            d.deployed_seconds * 1e3,
            match r.preprocessing {
                None => "",
                Some(Mode::Dealer) => " and a dealer process over mTLS",
                Some(_) => ", OT in the job",
            },
        ),
        None => String::new(),
    };
    format!(
        "{} parties, {} comparisons (count(x < y)), {}, {} rounds\n\
         {online}\
         job         {:>10.1} k comparisons/s  ({:.1} ms, {material})\n\
         {deployed}\
         material    {:.0} bit triples, {:.0} edaBit, {:.0} daBit per comparison\n\
         bytes       {:>10.1} per comparison per party (online construction: {:.1})\n\
         CPU         {}\n",
        r.parties,
        r.comparisons,
        match r.preprocessing {
            Some(mode) => format!("{} {mode} mode", r.protocol),
            None => r.protocol.to_string(),
        },
        r.rounds,
        k(r.comparisons_per_second),
        r.seconds * 1e3,
        r.bit_triples_per_comparison,
        r.edabits_per_comparison,
        r.dabits_per_comparison,
        r.bytes_per_comparison_per_party,
        r.online_protocol_bytes_per_comparison_per_party,
        cpu_text(&r.cpu),
    )
}

/// The deployed figure of a benchmark, unless `skip`: worker processes
/// (and a dealer process in dealer mode) started beside this executable.
async fn deployed(
    skip: bool,
    parties: usize,
    protocol: ProtocolName,
    op: Op,
    mode: Mode,
    count: usize,
    repeats: usize,
) -> Result<Option<DeployedReport>, ExitCode> {
    if skip {
        return Ok(None);
    }
    let dealer = if protocol.uses_preprocessing() && mode == Mode::Dealer { " and a cohort-dealer" } else { "" };
    eprintln!("cohort bench: the same job deployed: {parties} cohort-worker processes{dealer}");
    let options = Options { protocol, ..Options::beside_current_exe() };
    match cohort_cli::bench::deployed(&options, parties, op, mode, count, repeats).await {
        Ok(report) => Ok(Some(report)),
        Err(e) => {
            eprintln!("cohort bench: deployed: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// A flag that does not apply: say why, exit as clap does for a usage error.
fn refuse(why: &str) -> ExitCode {
    eprintln!("cohort bench: {why}");
    ExitCode::from(2)
}

/// `cohort bench --preprocessing dealer`'s report: the engine's figures and
/// the deployed path's beside them (one flat JSON object).
#[derive(serde::Serialize)]
struct DealerBench {
    #[serde(flatten)]
    engine: BenchReport,
    #[serde(flatten)]
    deployed: Option<DeployedReport>,
}

/// The benchmark report for a person.
fn bench_text(report: &DealerBench) -> String {
    let r = &report.engine;
    let m = |x: f64| x / 1e6;
    let material = r.protocol.uses_preprocessing();
    let deployed = match &report.deployed {
        Some(d) => format!(
            "deployed    {:>8.2} M mults/s  ({:.1} ms submission to every result; slowest party's own {:.1} ms; \
             {})\n",
            m(d.deployed_per_second),
            d.deployed_seconds * 1e3,
            d.deployed_party_seconds * 1e3,
            if material { "worker and dealer processes, dealer over mTLS" } else { "worker processes over mTLS" },
        ),
        None => String::new(),
    };
    let (online, dealer) = if material {
        (
            format!(
                "online      {:>8.2} M mults/s  ({:.1} ms, material prefetched)\n",
                m(r.online_mults_per_second),
                r.online_seconds * 1e3
            ),
            format!(
                "in-process  {:>8.2} M mults/s  ({:.1} ms, dealer a thread of the bench, material handed over in memory)\n\
                 {deployed}\
                 dealer      {:>8.2} M triples/s delivered and expanded ({:.2} M/s generation alone)\n",
                m(r.in_process_dealer_mults_per_second),
                r.in_process_dealer_seconds * 1e3,
                m(r.dealer_triples_per_second),
                m(r.dealer_generation_triples_per_second),
            ),
        )
    } else {
        let online = format!(
            "online      {:>8.2} M mults/s  ({:.1} ms, the whole job in process: no material)\n",
            m(r.online_mults_per_second),
            r.online_seconds * 1e3
        );
        (online, deployed)
    };
    format!(
        "{}, {} parties, {} multiplications in one layer, {} rounds, {}\n\
         {online}\
         {dealer}\
         bytes       {:>8.2} per mult per party (protocol: {:.0})\n\
         TLS         {:>8.2} GB/s loopback, mesh-shaped -> bound {:.2} M mults/s; online is {:.0} % of it\n\
         CPU         {}\n",
        r.protocol,
        r.parties,
        r.mults,
        r.rounds,
        r.cipher_suite,
        r.bytes_per_mult_per_party,
        r.protocol_bytes_per_mult_per_party,
        r.tls_loopback_bytes_per_second / 1e9,
        m(r.online_bound_mults_per_second),
        r.online_fraction_of_bound * 100.0,
        cpu_text(&r.cpu),
    )
}

fn cpu_text(cpu: &CpuInfo) -> String {
    format!("{} ({} logical CPUs; {})", cpu.model, cpu.logical_cpus, cpu.features.join(" "))
}

/// The OT generation report for a person.
fn ot_bench_text(r: &OtBenchReport) -> String {
    format!(
        "{} parties, {} Beaver triples (Z_2^64) by OT extension, {}\n\
         generation  {:>8.3} M triples/s  ({:.1} ms; base OTs took {:.1} ms once)\n\
         bytes       {:>8.1} per triple, all parties (construction: {:.0})\n\
         TLS         {:>8.2} GB/s loopback, mesh-shaped -> bound {:.3} M triples/s; generation is {:.0} % of it\n\
         binary      {:>8.2} M bit triples/s, {:.1} k edaBits/s, {:.2} M daBits/s (comparisons' material)\n\
         CPU         {}\n",
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
        r.bit_triples_per_second / 1e6,
        r.edabits_per_second / 1e3,
        r.dabits_per_second / 1e6,
        cpu_text(&r.cpu),
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

/// The sort benchmark as text.
fn sort_text(r: &cohort_worker::bench::sort::SortBenchReport) -> String {
    let material = r.preprocessing.map_or(String::from("no material"), |m| format!("{m} material"));
    format!(
        "{:?} of {} elements, {} parties, {}, {material}\n  job: {:.3} s ({:.0} elements/s), online {:.3} s, {} \
         rounds\n  {:.1} bytes per element per party, peak RSS {:.1} MiB ({:.1} MiB per party)\n  material: {} \
         triples, {} edaBits, {} bit triples, {} permutation elements\n  cpu: {}\n",
        r.op,
        r.n,
        r.parties,
        r.protocol,
        r.seconds,
        r.keys_per_second,
        r.online_seconds,
        r.rounds,
        r.bytes_per_key_per_party,
        r.peak_rss_bytes as f64 / 1048576.0,
        r.peak_rss_bytes_per_party as f64 / 1048576.0,
        r.triples,
        r.edabits,
        r.bit_triples,
        r.permutation_elements,
        r.cpu.model
    )
}
