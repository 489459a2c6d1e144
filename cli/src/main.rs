//! `cohort`: run a program among local parties (`cohort run`) and measure
//! the engine (`cohort bench`). See `docs/run-file.md` and
//! `docs/benchmarks.md`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use cohort_cli::launch::Options;
use cohort_cli::run::{render_text, run_file};

#[derive(Parser, Debug)]
#[command(name = "cohort", version, about = "Secure multiparty computation between organizations")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a run file's job: one cohort-worker process per party and a
    /// trusted dealer, on loopback with ephemeral certificates.
    Run {
        /// The run file (YAML; see docs/run-file.md).
        file: PathBuf,
        /// Output format on stdout.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Write each process's log to DIR/<name>.log instead of stderr.
        #[arg(long, value_name = "DIR")]
        log_dir: Option<PathBuf>,
    },
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
        Command::Run { file, format, log_dir } => {
            let mut options = Options::beside_current_exe();
            if let Some(dir) = log_dir {
                if let Err(e) = std::fs::create_dir_all(&dir) {
                    eprintln!("cohort run: cannot create {}: {e}", dir.display());
                    return ExitCode::FAILURE;
                }
                options.log_dir = Some(dir);
            }
            match run_file(&file, &options, |line| eprintln!("cohort run: {line}")).await {
                Ok(report) => {
                    match format {
                        Format::Json => match serde_json::to_string(&report) {
                            Ok(json) => println!("{json}"),
                            Err(e) => {
                                eprintln!("cohort run: cannot encode the report: {e}");
                                return ExitCode::FAILURE;
                            }
                        },
                        Format::Text => print!("{}", render_text(&report)),
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("cohort run: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
