//! `cohort check FILE`: compile a program without running it and show what
//! a party reviews before it consents to it: the program hash its worker
//! compares, each input with its owners and type, each output with its
//! recipients and type, and what a job costs (rounds, and material per
//! kind) as a function of the input lengths.
//!
//! FILE is a program (`.cohort`, compiled for `--parties`) or a run file
//! (`.yaml`/`.yml`, or any YAML mapping with a `parties` key), which names
//! the parties and the program.
//!
//! Costs come from the planner (`executor::Instance`), the same pure
//! function of the circuit and the lengths every party derives. Each
//! quantity is summarized as an affine formula in the lengths when it is
//! one (fitted from plans at a few length assignments and verified on
//! others), and as a table at sample lengths otherwise (a reduction such
//! as `min(v)` makes the rounds grow with log2 of a length). Dealer mode
//! and the modes whose material the parties generate (`ot`, `pool`) are
//! planned separately: a division by a divisor that is not a power of two
//! takes one more round in the latter.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use cohort_worker::executor::{InputLengths, Instance, Lowering, PlanError, Quotients};
use cohort_worker::local::job_consent_digest;
use cohort_worker::preprocessing::{MaterialTotals, Mode};
use cohort_worker::program::ir::{Circuit, ElemType, InputShape, Op, Owners};
use cohort_worker::program::{self, CompileError, hex, program_hash};
use cohort_worker::protocol::ProtocolName;
use serde::Serialize;

use crate::runfile::{RunFile, RunFileError};

/// Why `cohort check` cannot review the file.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error(transparent)]
    RunFile(#[from] RunFileError),
    /// The program does not compile (`program` is its text).
    #[error("{origin}: line {}, column {}: {}", source.line, source.column, source.message)]
    Compile { origin: String, program: String, source: CompileError },
    /// The program cannot be planned for the lengths given (or for any
    /// lengths `cohort check` tries).
    #[error("{origin}: {error}{context}")]
    Plan { origin: String, program: String, error: PlanError, context: String },
    /// A flag is missing, malformed or does not apply.
    #[error("{0}")]
    Usage(String),
}

impl CheckError {
    /// The error for a person: compile and plan errors with their source
    /// line and a caret (ANSI colour when `colour`), others as one line.
    pub fn render(&self, colour: bool) -> String {
        match self {
            CheckError::RunFile(e) => e.render(colour),
            CheckError::Compile { origin, program, source } => {
                crate::diagnostic::render(origin, program, source.line, source.column, &source.message, colour)
            }
            CheckError::Plan { origin, program, error, context } => {
                let message = format!("{}{context}", error.reason);
                crate::diagnostic::render(origin, program, error.span.line, error.span.column, &message, colour)
            }
            other => other.to_string(),
        }
    }

    /// Whether [`CheckError::render`] is a whole diagnostic (`error: …`).
    pub fn is_diagnostic(&self) -> bool {
        matches!(
            self,
            CheckError::Compile { .. } | CheckError::Plan { .. } | CheckError::RunFile(RunFileError::Compile { .. })
        )
    }
}

/// What `cohort check` prints (`--format json`: this, as JSON).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Review {
    /// `program` or `run file`.
    pub file_kind: &'static str,
    /// Where the program text came from.
    pub program: String,
    /// SHA-256 of the program text, hex: what every party's worker compares.
    pub program_hash: String,
    /// The protocol the review is for (`cohort check --protocol`, or the
    /// run file's `protocol:`).
    pub protocol: &'static str,
    /// The digest the workers of a job compare in setup (program, party
    /// list, protocol, preprocessing mode), hex, per preprocessing mode
    /// (one entry, under the protocol's name, for a protocol without
    /// material).
    pub consent_digests: BTreeMap<&'static str, String>,
    pub parties: Vec<String>,
    pub frac_bits: u32,
    pub inputs: Vec<InputReview>,
    pub outputs: Vec<OutputReview>,
    pub lengths: LengthModel,
    /// Rounds and material as functions of the lengths, per group of
    /// preprocessing modes that plan alike.
    pub cost: Vec<ModeCost>,
    /// Exact figures for `--lengths`, per group of modes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exact: Vec<ExactCost>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InputReview {
    pub name: String,
    /// `int`, `fixed`, `bool`, with `[]` for a vector.
    #[serde(rename = "type")]
    pub type_: String,
    /// The parties that provide it.
    pub owners: Vec<String>,
    /// `from each`: every party gives its own value (a per-party list).
    pub each: bool,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputReview {
    pub name: String,
    /// `int`, `fixed`, `bool`, with `[]` for a vector.
    #[serde(rename = "type")]
    pub type_: String,
    /// The parties that learn it.
    pub recipients: Vec<String>,
}

/// The lengths the cost formulas are in.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LengthModel {
    /// `independent`: one variable per vector input and owner, named in
    /// `names`; `equal`: the program needs its vectors to be of one
    /// length, the variable `n`.
    pub model: &'static str,
    /// The variables: `name` for an input with one owner, `name@party`
    /// for each party's part of a `from each` input.
    pub names: Vec<String>,
}

/// One quantity as a function of the lengths.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Cost {
    /// `constant + Σ perLength[v]·scale(v)`, exact at every length
    /// assignment checked; `scale` is `length`, or `ceil(length/64)` for
    /// material packed 64 to a word (bit-sliced bit triples).
    #[serde(rename_all = "camelCase")]
    Affine { formula: String, scale: &'static str, constant: i64, per_length: BTreeMap<String, i64> },
    /// Not affine: the value with every vector of length `n`.
    Table { samples: Vec<Sample> },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Sample {
    pub n: u64,
    /// `None` where the program is not defined for that length (e.g. a
    /// division by `len(v) - 1` at length 1).
    pub value: Option<u64>,
}

/// The names of the material kinds, as `MaterialTotals` serializes them.
pub const KINDS: [&str; 6] = ["triples", "divPairs", "bitTriples", "edabits", "dabits", "permutations"];

fn kind_count(t: &MaterialTotals, kind: usize) -> u64 {
    [t.triples, t.div_pairs, t.bit_triples, t.edabits, t.dabits, t.permutations][kind]
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModeCost {
    pub preprocessing: Vec<Mode>,
    /// The job's rounds: 3 (setup, inputs, outputs) + its online layers.
    pub rounds: Cost,
    /// Per kind (see [`KINDS`]).
    pub material: BTreeMap<&'static str, Cost>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExactCost {
    pub preprocessing: Vec<Mode>,
    pub lengths: BTreeMap<String, usize>,
    pub rounds: usize,
    pub online_layers: usize,
    pub material: MaterialTotals,
}

/// Review `file` (a program or a run file) for `parties` (required for a
/// program, checked against a run file's) and, when given, the exact
/// `lengths` (`name=N,...`).
/// `protocol` overrides a run file's and is checked against its parties
/// (the default for a program: `additive-semi-honest`).
pub fn check(
    file: &Path,
    parties: Option<&[String]>,
    lengths: Option<&str>,
    protocol: Option<ProtocolName>,
) -> Result<Review, CheckError> {
    let text = std::fs::read_to_string(file).map_err(|source| CheckError::Read { path: file.into(), source })?;
    let (file_kind, origin, source, circuit, protocol) = if is_run_file(file, &text) {
        let run = RunFile::open_as(file, protocol)?;
        if let Some(given) = parties
            && given != run.circuit.parties.as_slice()
        {
            return Err(CheckError::Usage(format!(
                "{}: the run file names the parties ({}); --parties ({}) is for a program file",
                file.display(),
                run.circuit.parties.join(", "),
                given.join(", ")
            )));
        }
        let protocol = run.protocol;
        ("run file", run.program_origin, run.program_source, run.circuit, protocol)
    } else {
        let Some(parties) = parties else {
            return Err(CheckError::Usage(format!(
                "{}: a program needs the job's parties, in order: --parties a,b,c (a run file names them)",
                file.display()
            )));
        };
        let origin = file.display().to_string();
        let circuit = program::compile(&text, parties).map_err(|source| CheckError::Compile {
            origin: origin.clone(),
            program: text.clone(),
            source,
        })?;
        let protocol = protocol.unwrap_or_default();
        protocol.check_parties(parties.len()).map_err(|reason| CheckError::Usage(format!("--protocol: {reason}")))?;
        ("program", origin, text, circuit, protocol)
    };
    review(file_kind, &origin, &source, &circuit, lengths, protocol)
}

/// A run file is YAML: by its extension, or a mapping with `parties`.
fn is_run_file(path: &Path, text: &str) -> bool {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("yaml" | "yml") => true,
        Some("cohort") => false,
        _ => serde_saphyr::from_str::<serde_json::Value>(text)
            .is_ok_and(|v| v.as_object().is_some_and(|m| m.contains_key("parties"))),
    }
}

/// One length variable: input `input`'s part from party `party`.
struct Var {
    name: String,
    input: usize,
    party: usize,
}

fn variables(circuit: &Circuit) -> Vec<Var> {
    let mut vars = Vec::new();
    for (input, decl) in circuit.inputs.iter().enumerate().filter(|(_, d)| d.shape == InputShape::Vector) {
        match decl.owners {
            Owners::Party(party) => vars.push(Var { name: decl.name.clone(), input, party }),
            Owners::Each => {
                for (party, p) in circuit.parties.iter().enumerate() {
                    vars.push(Var { name: format!("{}@{p}", decl.name), input, party });
                }
            }
        }
    }
    vars
}

/// The modes that plan alike, with their kind of division pairs; one group
/// with no mode for a protocol without material.
fn groups(protocol: ProtocolName) -> Vec<(Quotients, &'static [Mode])> {
    if protocol.uses_preprocessing() {
        vec![(Quotients::Exact, &[Mode::Dealer]), (Quotients::Linear, &[Mode::Ot, Mode::Pool])]
    } else {
        vec![(Quotients::Exact, &[])]
    }
}

/// Planning the circuit at length assignments.
struct Planner<'a> {
    circuit: &'a Circuit,
    vars: Vec<Var>,
    protocol: ProtocolName,
}

/// What a plan costs: rounds, then each kind's count.
type Point = [u64; 1 + KINDS.len()];

impl Planner<'_> {
    fn lengths(&self, values: &[usize]) -> InputLengths {
        let n = self.circuit.parties.len();
        let mut lengths: Vec<Vec<Option<usize>>> =
            self.circuit.inputs.iter().map(|d| (0..n).map(|p| d.owners.includes(p).then_some(1)).collect()).collect();
        for (var, value) in self.vars.iter().zip(values) {
            lengths[var.input][var.party] = Some(*value);
        }
        InputLengths(lengths)
    }

    fn instance(&self, q: Quotients, values: &[usize]) -> Result<Instance, PlanError> {
        Instance::plan(self.circuit, &self.lengths(values), Lowering { protocol: self.protocol, quotients: q })
    }

    fn point(&self, q: Quotients, values: &[usize]) -> Result<Point, PlanError> {
        let instance = self.instance(q, values)?;
        let totals = instance.plan.totals();
        let mut point = [instance.job_rounds() as u64; 1 + KINDS.len()];
        for (k, slot) in point[1..].iter_mut().enumerate() {
            *slot = kind_count(&totals, k);
        }
        Ok(point)
    }
}

/// Length assignments for fitting: every variable at BASE, then one at a
/// time at BASE + STEP. Away from the small lengths where reductions and
/// bit-slicing have their edge cases, which the checks then cover.
const BASE: usize = 60;
const STEP: usize = 40;
/// Lengths the fitted formulas are checked at (combined across variables).
const CHECKS: [usize; 10] = [1, 2, 3, 5, 63, 64, 65, 100, 1000, 4097];
/// Lengths of the table of a quantity that is not affine.
const TABLE: [u64; 7] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000];

/// What a formula counts per length: elements, words of 64 (material
/// packed 64 to a machine word, such as bit-sliced bit triples), or the
/// levels of a balanced tree over the elements (the rounds of `max(v)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scale {
    Elements,
    Words,
    Levels,
}

impl Scale {
    fn of(self, n: usize) -> i128 {
        match self {
            Scale::Elements => n as i128,
            Scale::Words => n.div_ceil(64) as i128,
            // ceil(log2 n), 0 for n <= 1.
            Scale::Levels => i128::from(usize::BITS - n.saturating_sub(1).leading_zeros()),
        }
    }

    fn term(self, name: &str) -> String {
        match self {
            Scale::Elements => name.to_string(),
            Scale::Words => format!("ceil({name}/64)"),
            Scale::Levels => format!("ceil(log2 {name})"),
        }
    }
}

/// A fitted affine function: constant and one coefficient per variable,
/// of the variables measured in `scale`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Affine {
    scale: Scale,
    constant: i128,
    per: Vec<i128>,
}

impl Affine {
    fn at(&self, values: &[usize]) -> i128 {
        self.constant + self.per.iter().zip(values).map(|(c, v)| c * self.scale.of(*v)).sum::<i128>()
    }
}

/// Fit each quantity as affine in `scale`, from its value at `base` (every
/// variable at BASE) and `moved` (variable `i`, or all when one, at BASE +
/// STEP); `None` where a difference is not a whole multiple.
fn fit(base: &Point, moved: &[Point], scale: Scale) -> Vec<Option<Affine>> {
    let step = scale.of(BASE + STEP) - scale.of(BASE);
    (0..base.len())
        .map(|q| {
            let mut per = Vec::with_capacity(moved.len());
            for m in moved {
                let diff = i128::from(m[q]) - i128::from(base[q]);
                if diff % step != 0 {
                    return None;
                }
                per.push(diff / step);
            }
            let constant = i128::from(base[q]) - per.iter().sum::<i128>() * scale.of(BASE);
            Some(Affine { scale, constant, per })
        })
        .collect()
}

fn formula(affine: &Affine, names: &[String]) -> String {
    let mut terms: Vec<String> = Vec::new();
    for (c, name) in affine.per.iter().zip(names) {
        let term = affine.scale.term(name);
        match c {
            0 => {}
            1 => terms.push(term),
            c => terms.push(format!("{c}*{term}")),
        }
    }
    if affine.constant != 0 || terms.is_empty() {
        terms.push(affine.constant.to_string());
    }
    terms.join(" + ").replace("+ -", "- ")
}

/// Rounds and material for one group of modes, as functions of the
/// variables (`equal`: all set to one `n`).
fn summarize(
    planner: &Planner<'_>,
    q: Quotients,
    equal: bool,
    names: &[String],
) -> Result<(Cost, BTreeMap<&'static str, Cost>), PlanError> {
    let k = planner.vars.len();
    let assign = |per_var: &dyn Fn(usize) -> usize| -> Vec<usize> { (0..k).map(per_var).collect() };
    let base = planner.point(q, &assign(&|_| BASE))?;
    let moved: Vec<Point> = if equal {
        vec![planner.point(q, &assign(&|_| BASE + STEP))?]
    } else {
        (0..k)
            .map(|i| planner.point(q, &assign(&|j| if i == j { BASE + STEP } else { BASE })))
            .collect::<Result<_, _>>()?
    };
    // Per quantity, the first scale whose fit holds at every check.
    let mut candidates: Vec<Vec<Affine>> = vec![Vec::new(); base.len()];
    for scale in [Scale::Elements, Scale::Words, Scale::Levels] {
        for (slot, fit) in fit(&base, &moved, scale).into_iter().enumerate() {
            candidates[slot].extend(fit);
        }
    }
    // Check the fits elsewhere: each variable at a different check length.
    for c in 0..CHECKS.len() {
        let values = if equal { vec![CHECKS[c]; k] } else { assign(&|i| CHECKS[(c + 3 * i) % CHECKS.len()]) };
        // A length the program is not defined at (e.g. `variance` of one
        // value) checks nothing.
        let Ok(point) = planner.point(q, &values) else { continue };
        let vars: Vec<usize> = if equal { vec![values.first().copied().unwrap_or(0)] } else { values };
        for (slot, fits) in candidates.iter_mut().enumerate() {
            fits.retain(|f| f.at(&vars) == i128::from(point[slot]));
        }
    }
    let names: Vec<String> = if equal { vec!["n".to_string()] } else { names.to_vec() };
    let cost = |slot: usize| -> Cost {
        match candidates[slot].first() {
            Some(f) => Cost::Affine {
                formula: formula(f, &names),
                scale: match f.scale {
                    Scale::Elements => "length",
                    Scale::Words => "ceil(length/64)",
                    Scale::Levels => "ceil(log2 length)",
                },
                constant: f.constant as i64,
                per_length: names
                    .iter()
                    .zip(&f.per)
                    .filter(|(_, c)| **c != 0)
                    .map(|(n, c)| (n.clone(), *c as i64))
                    .collect(),
            },
            None => Cost::Table {
                samples: TABLE
                    .iter()
                    .map(|&n| Sample { n, value: planner.point(q, &vec![n as usize; k]).ok().map(|p| p[slot]) })
                    .collect(),
            },
        }
    };
    let material = KINDS.iter().enumerate().map(|(i, kind)| (*kind, cost(1 + i))).collect();
    Ok((cost(0), material))
}

/// Per node: whether its value is a vector (whatever the lengths).
fn vector_nodes(circuit: &Circuit) -> Vec<bool> {
    let mut vector: Vec<bool> = Vec::with_capacity(circuit.nodes.len());
    for node in &circuit.nodes {
        let v = match &node.op {
            Op::Input { input, .. } => circuit.inputs.get(*input).is_some_and(|d| d.shape == InputShape::Vector),
            Op::Concat(_) => true,
            Op::Const(_)
            | Op::Bool(_)
            | Op::Len(_)
            | Op::Sum(_)
            | Op::Min(_)
            | Op::Max(_)
            | Op::ArgMin(_)
            | Op::ArgMax(_) => false,
            // Elementwise: a vector if any operand is.
            op => op.operands().iter().any(|&a| vector.get(a).copied().unwrap_or(false)),
        };
        vector.push(v);
    }
    vector
}

fn type_name(elem: ElemType, vector: bool) -> String {
    let base = match elem {
        ElemType::Int => "int",
        ElemType::Fixed => "fixed",
        ElemType::Bool => "bool",
    };
    format!("{base}{}", if vector { "[]" } else { "" })
}

fn review(
    file_kind: &'static str,
    origin: &str,
    source: &str,
    circuit: &Circuit,
    lengths: Option<&str>,
    protocol: ProtocolName,
) -> Result<Review, CheckError> {
    let planner = Planner { circuit, vars: variables(circuit), protocol };
    let names: Vec<String> = planner.vars.iter().map(|v| v.name.clone()).collect();
    // Independent lengths when the program allows them, else one length.
    let (cost, equal) = match costs(&planner, false, &names) {
        Ok(cost) => (cost, false),
        Err(_) => match costs(&planner, true, &names) {
            Ok(cost) => (cost, true),
            Err(error) => {
                return Err(CheckError::Plan {
                    origin: origin.to_string(),
                    program: source.to_string(),
                    error,
                    context: format!(
                        " (with every vector of length {BASE} or {}: cohort check cannot summarize this \
                         program's costs; give --lengths)",
                        BASE + STEP
                    ),
                });
            }
        },
    };
    finish(file_kind, origin, source, lengths, &planner, &names, equal, cost)
}

/// Rounds and material of every group of modes.
fn costs(planner: &Planner<'_>, equal: bool, names: &[String]) -> Result<Vec<ModeCost>, PlanError> {
    let mut cost = Vec::new();
    for (q, modes) in groups(planner.protocol) {
        let (rounds, material) = summarize(planner, q, equal, names)?;
        push_group(&mut cost, modes, rounds, material);
    }
    Ok(cost)
}

/// Add a group's costs, merged into the previous group's when equal.
fn push_group(cost: &mut Vec<ModeCost>, modes: &[Mode], rounds: Cost, material: BTreeMap<&'static str, Cost>) {
    match cost.last_mut() {
        Some(last) if last.rounds == rounds && last.material == material => last.preprocessing.extend(modes),
        _ => cost.push(ModeCost { preprocessing: modes.to_vec(), rounds, material }),
    }
}

#[allow(clippy::too_many_arguments)]
fn finish(
    file_kind: &'static str,
    origin: &str,
    source: &str,
    lengths: Option<&str>,
    planner: &Planner<'_>,
    names: &[String],
    equal: bool,
    cost: Vec<ModeCost>,
) -> Result<Review, CheckError> {
    let circuit = planner.circuit;
    let parties = &circuit.parties;
    let vector = vector_nodes(circuit);
    let outputs = circuit
        .outputs
        .iter()
        .map(|o| OutputReview {
            name: o.name.clone(),
            type_: type_name(o.elem, vector.get(o.value).copied().unwrap_or(false)),
            recipients: o.recipients.iter().map(|&p| parties[p].clone()).collect(),
        })
        .collect();
    let inputs = circuit
        .inputs
        .iter()
        .map(|d| InputReview {
            name: d.name.clone(),
            type_: type_name(d.elem, d.shape == InputShape::Vector),
            owners: (0..parties.len()).filter(|&p| d.owners.includes(p)).map(|p| parties[p].clone()).collect(),
            each: d.owners == Owners::Each,
        })
        .collect();
    let exact = match lengths {
        None => Vec::new(),
        Some(given) => {
            let values = parse_lengths(given, planner)?;
            let shown: BTreeMap<String, usize> = names.iter().cloned().zip(values.iter().copied()).collect();
            let mut exact: Vec<ExactCost> = Vec::new();
            for (q, modes) in groups(planner.protocol) {
                let instance = planner.instance(q, &values).map_err(|error| CheckError::Plan {
                    origin: origin.to_string(),
                    program: source.to_string(),
                    error,
                    context: format!(" (with --lengths {given})"),
                })?;
                let (layers, material) = (instance.depth(), instance.plan.totals());
                match exact.last_mut() {
                    Some(last) if last.online_layers == layers && last.material == material => {
                        last.preprocessing.extend(modes)
                    }
                    _ => exact.push(ExactCost {
                        preprocessing: modes.to_vec(),
                        lengths: shown.clone(),
                        rounds: instance.job_rounds(),
                        online_layers: layers,
                        material,
                    }),
                }
            }
            exact
        }
    };
    Ok(Review {
        file_kind,
        program: origin.to_string(),
        program_hash: hex(&program_hash(source)),
        protocol: planner.protocol.as_str(),
        consent_digests: if planner.protocol.uses_preprocessing() {
            [Mode::Dealer, Mode::Ot, Mode::Pool]
                .into_iter()
                .map(|m| (m.as_str(), hex(&job_consent_digest(planner.protocol, source, parties, m))))
                .collect()
        } else {
            let digest = job_consent_digest(planner.protocol, source, parties, Mode::default());
            BTreeMap::from([(planner.protocol.as_str(), hex(&digest))])
        },
        parties: parties.to_vec(),
        frac_bits: circuit.frac_bits,
        inputs,
        outputs,
        lengths: LengthModel {
            model: if equal { "equal" } else { "independent" },
            names: if equal && !names.is_empty() { vec!["n".into()] } else { names.to_vec() },
        },
        cost,
        exact,
    })
}

/// `--lengths name=N,...`: a variable's name (`x`, `x@party`), or a `from
/// each` input's name for every party's part. Every vector input needs one.
fn parse_lengths(given: &str, planner: &Planner<'_>) -> Result<Vec<usize>, CheckError> {
    let circuit = planner.circuit;
    let usage = |m: String| CheckError::Usage(format!("--lengths: {m}"));
    let mut values: Vec<Option<usize>> = vec![None; planner.vars.len()];
    for item in given.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((name, n)) = item.split_once('=') else {
            return Err(usage(format!("`{item}` is not NAME=LENGTH")));
        };
        let name = name.trim();
        let n: usize = n.trim().parse().map_err(|_| usage(format!("`{item}`: the length must be a whole number")))?;
        let mut matched = false;
        for (var, slot) in planner.vars.iter().zip(values.iter_mut()) {
            if var.name == name || circuit.inputs[var.input].name == name {
                *slot = Some(n);
                matched = true;
            }
        }
        if !matched {
            let scalar = circuit.inputs.iter().any(|d| d.name == name);
            return Err(usage(if scalar {
                format!("`{name}` is a scalar input (its length is 1)")
            } else {
                let known: Vec<&str> = planner.vars.iter().map(|v| v.name.as_str()).collect();
                format!("the program has no vector input `{name}` (its lengths: {})", known.join(", "))
            }));
        }
    }
    let missing: Vec<&str> =
        planner.vars.iter().zip(&values).filter(|(_, v)| v.is_none()).map(|(v, _)| v.name.as_str()).collect();
    if !missing.is_empty() {
        return Err(usage(format!("give a length for {}", missing.join(", "))));
    }
    Ok(values.into_iter().flatten().collect())
}

fn modes_text(modes: &[Mode]) -> String {
    modes.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
}

fn cost_text(cost: &Cost) -> String {
    match cost {
        Cost::Affine { formula, .. } => formula.clone(),
        Cost::Table { samples } => {
            let cells: Vec<String> = samples
                .iter()
                .map(|s| format!("n={}: {}", s.n, s.value.map_or("-".to_string(), |v| v.to_string())))
                .collect();
            // On its own line, under the formulas' column (4 + the widest kind, "permutations", + 2).
            format!("not affine; with every vector of length n:\n{:18}{}", "", cells.join(", "))
        }
    }
}

/// The review for a person.
pub fn render_text(r: &Review) -> String {
    let mut out = String::new();
    out.push_str(&format!("program  {}\n", r.program));
    out.push_str(&format!("hash     {}  (SHA-256 of the program text: what every worker compares)\n", r.program_hash));
    out.push_str(&format!("parties  {}\n", r.parties.join(", ")));
    out.push_str(&format!("protocol {}\n", r.protocol));
    let width = r.inputs.iter().map(|i| i.name.len()).chain(r.outputs.iter().map(|o| o.name.len())).max().unwrap_or(0);
    let twidth =
        r.inputs.iter().map(|i| i.type_.len()).chain(r.outputs.iter().map(|o| o.type_.len())).max().unwrap_or(0);
    out.push_str("\ninputs (secret; their lengths are public)\n");
    if r.inputs.is_empty() {
        out.push_str("  none\n");
    }
    for i in &r.inputs {
        let from = if i.each {
            format!("from each party ({})", i.owners.join(", "))
        } else {
            format!("from {}", i.owners.join(", "))
        };
        out.push_str(&format!("  {:<width$}  {:<twidth$}  {from}\n", i.name, i.type_));
    }
    out.push_str("outputs (revealed to their recipients only)\n");
    for o in &r.outputs {
        out.push_str(&format!("  {:<width$}  {:<twidth$}  to {}\n", o.name, o.type_, o.recipients.join(", ")));
    }
    out.push('\n');
    match (r.lengths.model, r.lengths.names.is_empty()) {
        (_, true) => out.push_str("cost (the program has no vector inputs)\n"),
        ("equal", _) => {
            out.push_str("cost, with every vector input of length n (the program needs them of one length)\n")
        }
        _ => out.push_str(&format!(
            "cost, by input length ({}; name@party: that party's part of a `from each` input)\n",
            r.lengths.names.join(", ")
        )),
    }
    let kwidth = KINDS.iter().map(|k| k.len()).max().unwrap_or(0).max("rounds".len());
    for group in &r.cost {
        let modes = if group.preprocessing.is_empty() {
            format!("{} (no preprocessing)", r.protocol)
        } else if group.preprocessing.len() == 3 {
            "every preprocessing mode".to_string()
        } else {
            format!("preprocessing {}", modes_text(&group.preprocessing))
        };
        out.push_str(&format!("  in {modes}\n"));
        let layers = match &group.rounds {
            _ if group.preprocessing.is_empty() => "setup, inputs, daBits if any, online layers, outputs".to_string(),
            Cost::Affine { constant, per_length, .. } if per_length.is_empty() => {
                format!("3 + {} online layers", constant - 3)
            }
            _ => "3 + online layers".to_string(),
        };
        out.push_str(&format!("    {:<kwidth$}  {}  ({layers})\n", "rounds", cost_text(&group.rounds)));
        for kind in KINDS {
            out.push_str(&format!("    {kind:<kwidth$}  {}\n", cost_text(&group.material[kind])));
        }
    }
    for e in &r.exact {
        let lengths: Vec<String> = e.lengths.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let modes = if e.preprocessing.is_empty() {
            "no preprocessing".to_string()
        } else {
            format!("preprocessing {}", modes_text(&e.preprocessing))
        };
        out.push_str(&format!(
            "exact, with {} ({modes})\n",
            if lengths.is_empty() { "no vector inputs".to_string() } else { lengths.join(", ") },
        ));
        out.push_str(&format!("    {:<kwidth$}  {} ({} online layers)\n", "rounds", e.rounds, e.online_layers));
        for (i, kind) in KINDS.iter().enumerate() {
            out.push_str(&format!("    {kind:<kwidth$}  {}\n", kind_count(&e.material, i)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parties(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn review_of(source: &str, names: &[&str], lengths: Option<&str>) -> Review {
        let circuit = program::compile(source, &parties(names)).expect("compiles");
        review("program", "p.cohort", source, &circuit, lengths, ProtocolName::default()).expect("reviews")
    }

    #[test]
    fn a_dot_product_costs_one_triple_per_element_and_one_truncation() {
        let r = review_of(
            "input w: fixed[] from a\ninput f: fixed[] from b\noutput s = dot(w, f) to b\n",
            &["a", "b"],
            Some("w=10,f=10"),
        );
        assert_eq!(r.lengths.model, "equal", "dot needs equal lengths");
        assert_eq!(r.cost.len(), 1, "no division by a non-power of two: every mode alike");
        let all = &r.cost[0];
        assert!(matches!(&all.rounds, Cost::Affine { constant: 5, .. }), "{:?}", all.rounds);
        assert_eq!(
            all.material["triples"],
            Cost::Affine {
                formula: "n".into(),
                scale: "length",
                constant: 0,
                per_length: BTreeMap::from([("n".into(), 1)])
            }
        );
        assert_eq!(r.exact[0].material.triples, 10);
        assert_eq!(r.outputs[0].type_, "fixed");
        assert_eq!(r.outputs[0].recipients, ["b"]);
    }

    #[test]
    fn independent_lengths_get_a_coefficient_each() {
        let r = review_of(
            "input x: int[] from each\ninput y: int[] from a\noutput s = sum(concat(x) * 3) + sum(y) * len(y)\n\
             output m = mean(concat(x))\n",
            &["a", "b", "c"],
            None,
        );
        assert_eq!(r.lengths.model, "independent");
        assert_eq!(r.lengths.names, ["x@a", "x@b", "x@c", "y"]);
        // mean divides by the total length: exact pairs with the dealer, a
        // correction round when the parties generate their own.
        assert_eq!(r.cost.len(), 2, "{:#?}", r.cost);
        assert_eq!(r.cost[0].preprocessing, [Mode::Dealer]);
        assert_eq!(r.cost[1].preprocessing, [Mode::Ot, Mode::Pool]);
        let Cost::Affine { constant: dealer_rounds, .. } = r.cost[0].rounds else { panic!("constant rounds") };
        let Cost::Affine { constant: ot_rounds, .. } = r.cost[1].rounds else { panic!("constant rounds") };
        assert_eq!(dealer_rounds, 4);
        assert!(ot_rounds > dealer_rounds);
        let text = render_text(&r);
        assert!(text.contains("  x  int[]  from each party (a, b, c)"), "{text}");
        assert!(text.contains("  in preprocessing dealer\n"), "{text}");
    }

    #[test]
    fn lengths_are_checked() {
        let source = "input x: int[] from each\ninput t: int from a\noutput s = sum(concat(x)) + t\n";
        let circuit = program::compile(source, &parties(&["a", "b"])).expect("compiles");
        let err = |lengths: &str| {
            review("program", "p", source, &circuit, Some(lengths), ProtocolName::default()).unwrap_err().to_string()
        };
        assert_eq!(err("x@a=3"), "--lengths: give a length for x@b");
        assert_eq!(err("x=3,t=1"), "--lengths: `t` is a scalar input (its length is 1)");
        assert_eq!(err("x=3,z=1"), "--lengths: the program has no vector input `z` (its lengths: x@a, x@b)");
        assert_eq!(err("x=three"), "--lengths: `x=three`: the length must be a whole number");
        let ok =
            review("program", "p", source, &circuit, Some("x=3, x@b=5"), ProtocolName::default()).expect("reviews");
        assert_eq!(ok.exact[0].lengths, BTreeMap::from([("x@a".to_string(), 3), ("x@b".to_string(), 5)]));
    }

    #[test]
    fn affine_fits_read_back() {
        let f = Affine { scale: Scale::Elements, constant: -2, per: vec![1, 0, 3] };
        assert_eq!(formula(&f, &parties(&["x", "y", "z"])), "x + 3*z - 2");
        assert_eq!(f.at(&[10, 99, 1]), 11);
        assert_eq!(formula(&Affine { scale: Scale::Elements, constant: 0, per: vec![0] }, &parties(&["x"])), "0");
        let words = Affine { scale: Scale::Words, constant: 0, per: vec![478] };
        assert_eq!(formula(&words, &parties(&["n"])), "478*ceil(n/64)");
        assert_eq!((words.at(&[1]), words.at(&[64]), words.at(&[65])), (478, 478, 956));
        let levels = Affine { scale: Scale::Levels, constant: 3, per: vec![8] };
        assert_eq!(formula(&levels, &parties(&["n"])), "8*ceil(log2 n) + 3");
        let at: Vec<i128> = [1, 2, 3, 4, 5, 1024, 1025].iter().map(|n| levels.at(&[*n])).collect();
        assert_eq!(at, [3, 11, 19, 19, 27, 83, 91]);
    }

    /// The rounds of a maximum grow with the levels of its tree: a formula
    /// in ceil(log2 n) that the planner confirms.
    #[test]
    fn the_rounds_of_a_maximum_are_a_formula_in_log2_of_the_length() {
        let source = "input x: int[] from a\noutput m = max(x)\n";
        let r = review_of(source, &["a", "b"], None);
        let Cost::Affine { scale, per_length, formula, .. } = &r.cost[0].rounds else {
            panic!("{:?}", r.cost[0].rounds)
        };
        assert_eq!(*scale, "ceil(log2 length)", "{formula}");
        assert!(per_length["x"] > 0, "{formula}");
        let circuit = program::compile(source, &parties(&["a", "b"])).unwrap();
        let planner = Planner { circuit: &circuit, vars: variables(&circuit), protocol: ProtocolName::default() };
        let Cost::Affine { constant, .. } = r.cost[0].rounds else { unreachable!() };
        for n in [1usize, 2, 7, 8, 9, 100_000] {
            let levels = i64::from(usize::BITS - n.saturating_sub(1).leading_zeros());
            let want = planner.point(Quotients::Exact, &[n]).unwrap()[0] as i64;
            assert_eq!(constant + per_length["x"] * levels, want, "n = {n}");
        }
    }

    /// Under replicated-3: no material, the protocol's rounds (a
    /// comparison is 8 layers; a selection adds one and the daBit round),
    /// one consent digest, the one a replicated worker computes.
    #[test]
    fn a_replicated_review_has_no_material_and_its_own_rounds() {
        let names = parties(&["a", "b", "c"]);
        let source = "input x: int[] from a\ninput y: int[] from b\noutput lt = x < y\n";
        let circuit = program::compile(source, &names).unwrap();
        let r = review("program", "p", source, &circuit, Some("x=10, y=10"), ProtocolName::Replicated3).unwrap();
        assert_eq!(r.protocol, "replicated-3");
        assert_eq!(r.cost.len(), 1);
        assert!(r.cost[0].preprocessing.is_empty());
        assert_eq!(r.exact[0].rounds, 3 + 8);
        assert_eq!(r.exact[0].material, MaterialTotals::default());
        let digest = job_consent_digest(ProtocolName::Replicated3, source, &names, Mode::Dealer);
        assert_eq!(r.consent_digests, BTreeMap::from([("replicated-3", hex(&digest))]));
        let source = "input x: int[] from a\ninput y: int[] from b\noutput m = min(x, y)\n";
        let circuit = program::compile(source, &names).unwrap();
        let r = review("program", "p", source, &circuit, Some("x=10, y=10"), ProtocolName::Replicated3).unwrap();
        assert_eq!(r.exact[0].rounds, 3 + 1 + 9, "with the daBit round");
        assert!(render_text(&r).contains("replicated-3 (no preprocessing)"));
    }
}
