//! The run file of `cohort run FILE`: one YAML file that names the program,
//! the parties and each party's data files. Format: `docs/run-file.md`.
//!
//! Loading happens in two steps so that every mistake that does not need a
//! secret is found before any data file is opened:
//!
//! 1. [`RunFile::open`] reads the YAML (unknown keys are errors), checks
//!    the protocol against the parties and the preprocessing mode, reads and
//!    compiles the program for the listed parties, and matches each party's
//!    `inputs` against what the program expects of that party.
//! 2. [`RunFile::read_inputs`] reads one party's data files into
//!    [`PartyInputs`] (the secrets); [`RunFile::read_all_inputs`] reads
//!    every party's. [`RunFile::load`] does both steps.
//!
//! No error ever contains a value from a data file (see [`crate::data`]).

use cohort_worker::data::{self, DataError, DataErrorKind, DataFormat, Values};
use cohort_worker::executor::{JobError, OwnInputs};
use cohort_worker::fixed::FixedPoint;
use cohort_worker::program::ir::{Circuit, ElemType, InputShape, PartyIndex};
use cohort_worker::program::{self, CompileError};
pub use cohort_worker::protocol::ProtocolName;
use cohort_worker::transport;
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The parsed, checked run file: everything but the data.
#[derive(Clone, Debug)]
pub struct RunFile {
    /// The run file, as given to [`RunFile::open`].
    pub path: PathBuf,
    /// The program text, exactly as read (its SHA-256 is the consent hash).
    pub program_source: String,
    /// Where the program came from: its path, or `<run file> (programSource)`.
    pub program_origin: String,
    /// The compiled program; `circuit.parties` is the party list in order.
    pub circuit: Circuit,
    /// The parties, in run-file order (which defines the party indices).
    pub parties: Vec<PartyRun>,
    pub timeouts: Timeouts,
    /// The MPC protocol the parties run (`protocol:`, default
    /// `additive-semi-honest`).
    pub protocol: ProtocolName,
    /// Where the material comes from; `None` under a protocol that takes
    /// none (`replicated-3`).
    pub preprocessing: Option<Preprocessing>,
}

/// One party: its name and where its inputs come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartyRun {
    pub name: String,
    /// Exactly the inputs the program expects of this party, in the
    /// program's declaration order.
    pub inputs: Vec<InputSource>,
}

/// Where one input of one party comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputSource {
    /// The input's name in the program.
    pub name: String,
    /// Index into `circuit.inputs`.
    pub input: usize,
    pub elem: ElemType,
    pub shape: InputShape,
    /// The data file, resolved against the run file's directory.
    pub file: PathBuf,
    pub format: DataFormat,
}

/// One party's input values (secret).
#[derive(Debug)]
pub struct PartyInputs {
    pub party: String,
    /// In the order of [`PartyRun::inputs`].
    pub inputs: Vec<InputData>,
}

/// One input's values and where they were read from.
#[derive(Debug)]
pub struct InputData {
    pub name: String,
    /// The data file they were read from.
    pub origin: PathBuf,
    /// The values; `Debug` shows only their count.
    pub values: Values,
}

impl PartyInputs {
    /// The encoded inputs the executor takes (`cohort_worker::executor::execute`).
    /// Integers are encoded exactly (not through `f64`).
    pub fn own_inputs(&self, circuit: &Circuit) -> Result<OwnInputs, JobError> {
        let fp = FixedPoint::new(circuit.frac_bits).ok_or_else(|| JobError::Input {
            input: String::new(),
            reason: format!("unsupported fixed-point precision {}", circuit.frac_bits),
        })?;
        let mut own = OwnInputs::new();
        for input in &self.inputs {
            let encoded = input
                .values
                .encode(fp)
                .map_err(|e| JobError::Input { input: input.name.clone(), reason: e.to_string() })?;
            own.insert_encoded(circuit, &input.name, encoded)?;
        }
        Ok(own)
    }

    /// The length of each input, by name (public: lengths are announced to
    /// every party).
    pub fn lengths(&self) -> Vec<(String, usize)> {
        self.inputs.iter().map(|i| (i.name.clone(), i.values.len())).collect()
    }
}

/// The longest any timeout may be: a worker refuses a job whose limits
/// exceed a week (`timeouts` of its control API), so the run file check
/// refuses them first, with the file and line.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Time limits of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing the mesh between the parties (default 30 s).
    pub connect: Duration,
    /// Receiving one message (default 30 s).
    pub round: Duration,
    /// The whole job (default 10 min).
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { connect: Duration::from_secs(30), round: Duration::from_secs(30), total: Duration::from_secs(600) }
    }
}

impl Timeouts {
    /// The mesh's share of the limits.
    pub fn transport(&self) -> transport::Timeouts {
        transport::Timeouts { connect: self.connect, round: self.round }
    }
}

/// Where correlated randomness comes from: `dealer` (a trusted dealer, a
/// trusted third party that sees all the randomness it deals) or `ot` (the
/// parties generate it among themselves with oblivious transfer).
pub use cohort_worker::preprocessing::Mode as Preprocessing;

/// Why a run file cannot be used. No variant carries a data value.
#[derive(Debug, thiserror::Error)]
pub enum RunFileError {
    /// The run file itself cannot be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    /// Not valid YAML, or not the expected shape (unknown or missing key,
    /// wrong type). `message` comes from the YAML parser and gives the line.
    #[error("{}: {message}", path.display())]
    Yaml { path: PathBuf, line: Option<u64>, message: String },
    /// Valid YAML that breaks a rule of the format.
    #[error("{}{}: {kind}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid { path: PathBuf, line: Option<u64>, kind: Invalid },
    /// The program does not compile. `program` is its text, for showing
    /// the line ([`RunFileError::render`]).
    #[error("{origin}: line {}, column {}: {}", source.line, source.column, source.message)]
    Compile { origin: String, program: String, source: CompileError },
    /// A data file cannot be read or has a bad value.
    #[error("party {party}, input `{input}`: {source}")]
    Data { party: String, input: String, source: Box<DataError> },
}

impl RunFileError {
    /// The error for a person: a compile error as rustc shows one (the
    /// source line with a caret under the position; ANSI colour when
    /// `colour`), anything else as its one line.
    pub fn render(&self, colour: bool) -> String {
        match self {
            RunFileError::Compile { origin, program, source } => {
                crate::diagnostic::render(origin, program, source.line, source.column, &source.message, colour)
            }
            other => other.to_string(),
        }
    }
}

/// The rule a [`RunFileError::Invalid`] breaks.
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    #[error("give the program as `program: FILE` or as `programSource: TEXT`")]
    NoProgram,
    #[error("give the program either as `program` or as `programSource`, not both")]
    BothPrograms,
    #[error("program {}: cannot read: {source}", file.display())]
    ProgramFile { file: PathBuf, source: io::Error },
    #[error("{0}")]
    PartyName(String),
    #[error("party {0:?} is listed twice")]
    DuplicateParty(String),
    #[error("a run needs at least 2 parties, the file lists {0}")]
    TooFewParties(usize),
    #[error("party {party} gives no data for input `{input}`, which the program expects from it")]
    MissingInput { party: String, input: String },
    #[error("party {party} gives input `{input}`, but {reason}")]
    UnexpectedInput { party: String, input: String, reason: String },
    #[error("party {party}, input `{input}`: `{key}` must not be empty")]
    EmptyField { party: String, input: String, key: &'static str },
    #[error("timeouts.{key}: {reason}")]
    Duration { key: &'static str, reason: String },
    /// The protocol cannot run with this many parties.
    #[error("protocol: {0}")]
    ProtocolParties(String),
    /// The run file (or `--preprocessing`) names a preprocessing mode under a
    /// protocol that takes no material.
    #[error("preprocessing: {protocol} takes no preprocessing material; remove `preprocessing`")]
    NoPreprocessing { protocol: ProtocolName },
    #[error(
        "preprocessing: pool takes material from pools the parties filled ahead of time, and a local run starts \
         with none; use ot (the default) or dealer"
    )]
    PoolMode,
}

// ---- the YAML shape ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRunFile {
    #[serde(default)]
    program: Option<Spanned<String>>,
    #[serde(default)]
    program_source: Option<Spanned<String>>,
    parties: Spanned<Vec<RawParty>>,
    #[serde(default)]
    timeouts: Option<Spanned<RawTimeouts>>,
    #[serde(default)]
    preprocessing: Option<Spanned<Preprocessing>>,
    #[serde(default)]
    protocol: Option<Spanned<ProtocolName>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParty {
    name: Spanned<String>,
    #[serde(default)]
    inputs: BTreeMap<String, Spanned<RawInput>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    file: String,
    #[serde(default)]
    column: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    #[serde(default)]
    connect: Option<Spanned<String>>,
    #[serde(default)]
    round: Option<Spanned<String>>,
    #[serde(default)]
    total: Option<Spanned<String>>,
}

fn line_of<T>(s: &Spanned<T>) -> Option<u64> {
    Some(s.referenced.line()).filter(|&l| l > 0)
}

impl RunFile {
    /// Read and check a run file and its program; read no data file.
    pub fn open(path: &Path) -> Result<RunFile, RunFileError> {
        RunFile::open_as(path, None)
    }

    /// [`RunFile::open`], with `protocol` (when given) in place of the
    /// file's `protocol:` (`cohort run --protocol`); the file is checked
    /// against the protocol that will run.
    pub fn open_as(path: &Path, protocol: Option<ProtocolName>) -> Result<RunFile, RunFileError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| RunFileError::Read { path: path.to_path_buf(), source })?;
        let raw: RawRunFile = serde_saphyr::from_str(&text).map_err(|e| RunFileError::Yaml {
            path: path.to_path_buf(),
            line: e.location().map(|l| l.line()).filter(|&l| l > 0),
            message: {
                // One line: the parser's message with its position, no snippet.
                let plain = e.without_snippet().to_string();
                let plain = plain.strip_prefix("error: ").unwrap_or(&plain);
                plain.replace(", set DuplicateKeyPolicy in Options if acceptable", "")
            },
        })?;
        let invalid = |line: Option<u64>, kind| RunFileError::Invalid { path: path.to_path_buf(), line, kind };
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();

        // The program.
        let (program_source, program_origin) = match (raw.program, raw.program_source) {
            (None, None) => return Err(invalid(None, Invalid::NoProgram)),
            (Some(_), Some(inline)) => return Err(invalid(line_of(&inline), Invalid::BothPrograms)),
            (Some(file), None) => {
                let resolved = dir.join(&file.value);
                let source = std::fs::read_to_string(&resolved).map_err(|source| {
                    invalid(line_of(&file), Invalid::ProgramFile { file: resolved.clone(), source })
                })?;
                (source, resolved.display().to_string())
            }
            (None, Some(inline)) => (inline.value, format!("{} (programSource)", path.display())),
        };

        // The parties.
        let parties_line = line_of(&raw.parties);
        let raw_parties = raw.parties.value;
        let mut names: Vec<String> = Vec::with_capacity(raw_parties.len());
        for party in &raw_parties {
            let name = &party.name.value;
            transport::certs::validate_name("party", name)
                .map_err(|m| invalid(line_of(&party.name), Invalid::PartyName(m)))?;
            if names.contains(name) {
                return Err(invalid(line_of(&party.name), Invalid::DuplicateParty(name.clone())));
            }
            names.push(name.clone());
        }
        let protocol_line = raw.protocol.as_ref().and_then(line_of);
        let protocol = protocol.or(raw.protocol.map(|p| p.value)).unwrap_or_default();
        if protocol != ProtocolName::default() {
            protocol
                .check_parties(names.len())
                .map_err(|reason| invalid(protocol_line.or(parties_line), Invalid::ProtocolParties(reason)))?;
        }
        if names.len() < 2 {
            return Err(invalid(parties_line, Invalid::TooFewParties(names.len())));
        }

        let circuit = program::compile(&program_source, &names).map_err(|source| RunFileError::Compile {
            origin: program_origin.clone(),
            program: program_source.clone(),
            source,
        })?;

        // Each party's inputs against the program's.
        let mut parties = Vec::with_capacity(raw_parties.len());
        for (index, party) in raw_parties.into_iter().enumerate() {
            let name_line = line_of(&party.name);
            let name = party.name.value;
            for (input, given) in &party.inputs {
                if let Some(reason) = unexpected(&circuit, index, input) {
                    let kind = Invalid::UnexpectedInput { party: name.clone(), input: input.clone(), reason };
                    return Err(invalid(line_of(given), kind));
                }
                for (key, value) in [("file", Some(&given.value.file)), ("column", given.value.column.as_ref())] {
                    if value.is_some_and(|v| v.trim().is_empty()) {
                        let kind = Invalid::EmptyField { party: name.clone(), input: input.clone(), key };
                        return Err(invalid(line_of(given), kind));
                    }
                }
            }
            let mut inputs = Vec::new();
            for (i, decl) in circuit.inputs.iter().enumerate().filter(|(_, d)| d.is_owned_by(index)) {
                let Some(given) = party.inputs.get(&decl.name) else {
                    let kind = Invalid::MissingInput { party: name.clone(), input: decl.name.clone() };
                    return Err(invalid(name_line, kind));
                };
                let format = match &given.value.column {
                    Some(column) => DataFormat::Csv { column: column.trim().to_string() },
                    None => DataFormat::Lines,
                };
                inputs.push(InputSource {
                    name: decl.name.clone(),
                    input: i,
                    elem: decl.elem,
                    shape: decl.shape,
                    file: dir.join(&given.value.file),
                    format,
                });
            }
            parties.push(PartyRun { name, inputs });
        }

        // Timeouts.
        let mut timeouts = Timeouts::default();
        if let Some(raw) = raw.timeouts {
            let raw = raw.value;
            for (key, value, slot) in [
                ("connect", raw.connect, &mut timeouts.connect),
                ("round", raw.round, &mut timeouts.round),
                ("total", raw.total, &mut timeouts.total),
            ] {
                if let Some(value) = value {
                    let duration = parse_duration(&value.value)
                        .map_err(|reason| invalid(line_of(&value), Invalid::Duration { key, reason }))?;
                    if duration > MAX_TIMEOUT {
                        let reason =
                            format!("{} is longer than a week (168h), the longest a worker accepts", value.value);
                        return Err(invalid(line_of(&value), Invalid::Duration { key, reason }));
                    }
                    *slot = duration;
                }
            }
        }

        let preprocessing = match raw.preprocessing {
            Some(p) if !protocol.uses_preprocessing() => {
                return Err(invalid(line_of(&p), Invalid::NoPreprocessing { protocol }));
            }
            Some(p) if p.value == Preprocessing::Pool => return Err(invalid(line_of(&p), Invalid::PoolMode)),
            Some(p) => Some(p.value),
            None if !protocol.uses_preprocessing() => None,
            // Without a dealer unless the run file asks for one: OT-based
            // generation runs the examples in well under a second.
            None => Some(Preprocessing::Ot),
        };

        Ok(RunFile {
            path: path.to_path_buf(),
            program_source,
            program_origin,
            circuit,
            parties,
            timeouts,
            protocol,
            preprocessing,
        })
    }

    /// [`RunFile::open`], then read every party's data.
    pub fn load(path: &Path) -> Result<(RunFile, Vec<PartyInputs>), RunFileError> {
        RunFile::load_as(path, None)
    }

    /// [`RunFile::open_as`], then read every party's data.
    pub fn load_as(path: &Path, protocol: Option<ProtocolName>) -> Result<(RunFile, Vec<PartyInputs>), RunFileError> {
        let run = RunFile::open_as(path, protocol)?;
        let inputs = run.read_all_inputs()?;
        Ok((run, inputs))
    }

    /// The index of the party called `name`.
    pub fn party_index(&self, name: &str) -> Option<PartyIndex> {
        self.parties.iter().position(|p| p.name == name)
    }

    /// Read party `party`'s data files (party indices follow
    /// [`RunFile::parties`]). Panics if `party` is out of range.
    pub fn read_inputs(&self, party: PartyIndex) -> Result<PartyInputs, RunFileError> {
        let run = &self.parties[party];
        let mut inputs = Vec::with_capacity(run.inputs.len());
        for source in &run.inputs {
            let data_err = |source_err: DataError| RunFileError::Data {
                party: run.name.clone(),
                input: source.name.clone(),
                source: Box::new(source_err),
            };
            let values = data::read_values(&source.file, &source.format, source.elem, self.circuit.frac_bits)
                .map_err(data_err)?;
            if source.shape == InputShape::Scalar && values.len() != 1 {
                return Err(data_err(DataError {
                    origin: source.file.display().to_string(),
                    line: None,
                    field: None,
                    kind: DataErrorKind::ScalarCount(values.len()),
                }));
            }
            inputs.push(InputData { name: source.name.clone(), origin: source.file.clone(), values });
        }
        Ok(PartyInputs { party: run.name.clone(), inputs })
    }

    /// Read every party's data files, in party order.
    pub fn read_all_inputs(&self) -> Result<Vec<PartyInputs>, RunFileError> {
        (0..self.parties.len()).map(|p| self.read_inputs(p)).collect()
    }
}

/// Why party `party` may not give input `name`, or `None` if it must.
fn unexpected(circuit: &Circuit, party: PartyIndex, name: &str) -> Option<String> {
    match circuit.inputs.iter().find(|d| d.name == name) {
        Some(decl) if decl.is_owned_by(party) => None,
        Some(decl) => {
            let owner = match decl.owners {
                program::ir::Owners::Party(p) => circuit.parties[p].as_str(),
                program::ir::Owners::Each => unreachable!("every party owns a `from each` input"),
            };
            Some(format!("the program expects it from {owner} only"))
        }
        None if circuit.inputs.is_empty() => Some("the program declares no inputs".into()),
        None => {
            let declared: Vec<String> = circuit.inputs.iter().map(|d| format!("`{}`", d.name)).collect();
            Some(format!("the program declares no such input (it declares {})", declared.join(", ")))
        }
    }
}

/// Durations are written as in the worker's configuration (`500ms`,
/// `30s`, `10m`, `1h30m`).
pub use cohort_worker::service::config::parse_duration;
