//! Run files and data files, loaded from real files in a temporary
//! directory.

use cohort_cli::runfile::{Invalid, PartyInputs, Preprocessing, ProtocolName, RunFile, RunFileError, Timeouts};
use cohort_worker::data::{DataErrorKind, DataFormat, Values};
use cohort_worker::program::ir::ElemType;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;

struct Dir(TempDir);

impl Dir {
    fn new() -> Dir {
        Dir(tempfile::tempdir().unwrap())
    }
    fn write(&self, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
}

const PROGRAM: &str = "input salaries: fixed[] from each\n\
                       input bonus: int from bob\n\
                       let all = concat(salaries)\n\
                       output mean = mean(all)\n\
                       output b = bonus to bob\n";

/// A good three-party setup; `run` is the run file text.
fn setup(run: &str) -> Dir {
    let dir = Dir::new();
    dir.write("salary.cohort", PROGRAM);
    dir.write("alice.csv", "id,salary,dept\n1,100.5,a\n2, 200 ,b\n");
    dir.write("data/bob.txt", "# bob's salaries\n300\n\n-4.25\n");
    dir.write("data/bonus.txt", "4611686018427387903\n");
    dir.write("carol.csv", "salary\r\n\"1e3\"\r\n\r\n7\r\n");
    dir.write("run.yaml", run);
    dir
}

const GOOD: &str = "\
# the example
program: salary.cohort
parties:
  - name: alice
    inputs:
      salaries: {file: alice.csv, column: salary}
  - name: bob
    inputs:
      salaries: {file: data/bob.txt}
      bonus: {file: data/bonus.txt}
  - name: carol
    inputs:
      salaries: {file: carol.csv, column: salary}
timeouts: {connect: 5s, total: 1h30m}
preprocessing: dealer
";

fn fixed(v: &Values) -> Vec<f64> {
    match v {
        Values::Fixed(v) => v.clone(),
        _ => panic!("expected fixed values"),
    }
}

fn load(dir: &Dir) -> Result<(RunFile, Vec<PartyInputs>), RunFileError> {
    RunFile::load(&dir.path().join("run.yaml"))
}

fn err(dir: &Dir) -> String {
    let e = load(dir).expect_err("the run file should be refused");
    e.to_string()
}

/// The run file text with `from` replaced by `to`.
fn with(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "{from}");
    GOOD.replace(from, to)
}

#[test]
fn good_three_party_file_loads() {
    let dir = setup(GOOD);
    let (run, inputs) = load(&dir).unwrap();
    assert_eq!(run.circuit.parties, ["alice", "bob", "carol"]);
    assert_eq!(run.program_source, PROGRAM);
    assert!(run.program_origin.ends_with("salary.cohort"));
    assert_eq!(run.parties.len(), 3);
    assert_eq!(run.parties[0].inputs.len(), 1);
    assert_eq!(run.parties[1].inputs.len(), 2);
    assert_eq!(run.parties[0].inputs[0].format, DataFormat::Csv { column: "salary".into() });
    assert_eq!(run.parties[1].inputs[0].format, DataFormat::Lines);
    assert_eq!(run.parties[1].inputs[0].file, dir.path().join("data/bob.txt"));
    assert_eq!(
        run.timeouts,
        Timeouts { connect: Duration::from_secs(5), round: Duration::from_secs(30), total: Duration::from_secs(5400) }
    );
    assert_eq!(run.preprocessing, Some(Preprocessing::Dealer));
    assert_eq!(run.protocol, ProtocolName::AdditiveSemiHonest);
    assert_eq!(run.party_index("carol"), Some(2));
    // Without the key the parties generate their own material.
    let (run, _) = load(&setup(&with("preprocessing: dealer\n", ""))).unwrap();
    assert_eq!(run.preprocessing, Some(Preprocessing::Ot));
    let (run, _) = load(&setup(&with("preprocessing: dealer", "preprocessing: ot"))).unwrap();
    assert_eq!(run.preprocessing, Some(Preprocessing::Ot));

    assert_eq!(inputs[0].party, "alice");
    assert_eq!(fixed(&inputs[0].inputs[0].values), [100.5, 200.0]);
    assert_eq!(fixed(&inputs[1].inputs[0].values), [300.0, -4.25]);
    assert_eq!(inputs[1].inputs[1].name, "bonus");
    assert_eq!(inputs[1].inputs[1].values, Values::Int(vec![(1 << 62) - 1]));
    assert_eq!(inputs[1].inputs[1].values.elem(), ElemType::Int);
    assert_eq!(fixed(&inputs[2].inputs[0].values), [1000.0, 7.0]);
    assert_eq!(inputs[1].lengths(), [("salaries".to_string(), 2), ("bonus".to_string(), 1)]);
    // Encodes for the executor; the integer stays exact.
    let own = inputs[1].own_inputs(&run.circuit).unwrap();
    assert!(format!("{own:?}").contains("redacted"));
    // Debug of the loaded data shows counts, not values.
    let shown = format!("{inputs:?}");
    assert!(!shown.contains("100.5") && !shown.contains("4611686018427387903"), "{shown}");

    // Defaults and an inline program.
    let inline = "programSource: |\n  input x: int[] from each\n  output s = sum(concat(x))\n\
                  parties:\n  - name: a\n    inputs: {x: {file: a.txt}}\n  - name: b\n    inputs: {x: {file: b.txt}}\n";
    dir.write("a.txt", "1\n2\n");
    dir.write("b.txt", "");
    dir.write("run.yaml", inline);
    let (run, inputs) = load(&dir).unwrap();
    assert_eq!(run.timeouts, Timeouts::default());
    assert!(run.program_origin.contains("programSource"));
    assert_eq!(inputs[0].inputs[0].values, Values::Int(vec![1, 2]));
    // An empty file is an empty vector.
    assert!(inputs[1].inputs[0].values.is_empty());
}

#[test]
fn open_reads_no_data() {
    let dir = setup(GOOD);
    std::fs::remove_file(dir.path().join("alice.csv")).unwrap();
    let run = RunFile::open(&dir.path().join("run.yaml")).unwrap();
    assert!(run.read_inputs(1).is_ok());
    let e = run.read_inputs(0).unwrap_err().to_string();
    assert!(e.starts_with("party alice, input `salaries`: ") && e.contains("alice.csv: cannot read"), "{e}");
}

#[test]
fn malformed_yaml_names_file_and_line() {
    let dir = setup("program: salary.cohort\nparties:\n  - name: alice\n   inputs: [\n");
    let e = load(&dir).unwrap_err();
    let shown = e.to_string();
    assert!(shown.contains("run.yaml"), "{shown}");
    match e {
        RunFileError::Yaml { line: Some(line), .. } => assert!((3..=5).contains(&line), "{shown}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn run_file_rules() {
    let cases: Vec<(String, &[&str])> = vec![
        (with("preprocessing: dealer", "preprocesing: dealer"), &["preprocesing"]),
        (with("column: salary}", "column: salary, format: csv}"), &["format"]),
        (with("preprocessing: dealer", "preprocessing: silent-ot"), &["silent-ot", "dealer", "ot"]),
        (with("program: salary.cohort\n", ""), &["run.yaml", "`program: FILE`", "`programSource: TEXT`"]),
        (
            with("program: salary.cohort\n", "program: salary.cohort\nprogramSource: output x = 1\n"),
            &["run.yaml:3", "not both"],
        ),
        (with("program: salary.cohort", "program: nothere.cohort"), &["run.yaml:2", "nothere.cohort: cannot read"]),
        (with("name: bob", "name: -bob"), &["run.yaml:7", "invalid party name"]),
        (with("name: carol", "name: alice"), &["run.yaml:11", "\"alice\" is listed twice"]),
        (
            with("      bonus: {file: data/bonus.txt}", "      bonus: {file: data/bonus.txt}\n      bonus: {file: x}"),
            &["run.yaml: duplicate mapping key: bonus at line 11"],
        ),
        (
            "program: salary.cohort\nparties:\n  - name: alice\n    inputs: {salaries: {file: alice.csv}}\n".into(),
            &["run.yaml:3", "at least 2 parties, the file lists 1"],
        ),
        (
            with("      bonus: {file: data/bonus.txt}\n", ""),
            &["run.yaml:7", "party bob gives no data for input `bonus`"],
        ),
        (
            with(
                "salaries: {file: carol.csv, column: salary}",
                "salaries: {file: carol.csv, column: salary}\n      bonus: {file: x}",
            ),
            &["run.yaml:", "party carol gives input `bonus`", "from bob only"],
        ),
        (
            with(
                "      salaries: {file: alice.csv, column: salary}",
                "      salaries: {file: alice.csv, column: salary}\n      wages: {file: x}",
            ),
            &["party alice gives input `wages`", "declares no such input", "`salaries`, `bonus`"],
        ),
        (
            with("{file: alice.csv, column: salary}", "{file: alice.csv, column: \" \"}"),
            &["`column` must not be empty"],
        ),
        (with("connect: 5s", "connect: 5"), &["run.yaml:14", "timeouts.connect", "500ms"]),
        (with("connect: 5s", "connect: 0s"), &["timeouts.connect: must be longer than zero"]),
        // A worker refuses limits over a week; the check says so first.
        (with("total: 1h30m", "total: 200h"), &["run.yaml:14", "timeouts.total", "200h", "longer than a week (168h)"]),
        (with("connect: 5s", "connect: 168h1ms"), &["run.yaml:14", "timeouts.connect", "a week"]),
    ];
    for (text, wanted) in cases {
        let dir = setup(&text);
        let shown = err(&dir);
        for w in wanted {
            assert!(shown.contains(w), "{w:?} not in {shown:?}\nfor\n{text}");
        }
    }
}

/// `protocol:` names the protocol; replicated-3 takes exactly three parties
/// and no preprocessing, and an unknown name is refused with its line and
/// column. `--protocol` (`open_as`) is checked the same way.
#[test]
fn protocol_key() {
    let rep3 = with("preprocessing: dealer\n", "protocol: replicated-3\n");
    let (run, _) = load(&setup(&rep3)).unwrap();
    assert_eq!(run.protocol, ProtocolName::Replicated3);
    assert_eq!(run.preprocessing, None, "replicated-3 takes no material");
    let (run, _) = load(&setup(&with("preprocessing: dealer\n", "protocol: additive-semi-honest\n"))).unwrap();
    assert_eq!((run.protocol, run.preprocessing), (ProtocolName::AdditiveSemiHonest, Some(Preprocessing::Ot)));

    let cases: Vec<(String, &[&str])> = vec![
        (
            with("preprocessing: dealer\n", "protocol: replicated-4\n"),
            &["run.yaml", "replicated-4", "additive-semi-honest, replicated-3", "line 15, column 11"],
        ),
        (
            with("preprocessing: dealer\n", "preprocessing: dealer\nprotocol: replicated-3\n"),
            &["run.yaml:15: preprocessing: replicated-3 takes no preprocessing material"],
        ),
        (
            format!("{}protocol: replicated-3\n", with("preprocessing: dealer\n", "preprocessing: ot\n")),
            &["run.yaml:15: preprocessing: replicated-3 takes no preprocessing material"],
        ),
    ];
    for (text, wanted) in cases {
        let shown = err(&setup(&text));
        for w in wanted {
            assert!(shown.contains(w), "{w:?} not in {shown:?}\nfor\n{text}");
        }
    }
    // Two parties: the program and data of a two-party file.
    let dir = Dir::new();
    dir.write("a.txt", "1\n");
    dir.write("b.txt", "2\n");
    let two = "programSource: |\n  input x: int[] from each\n  output s = sum(concat(x))\n\
               parties:\n  - name: a\n    inputs: {x: {file: a.txt}}\n  - name: b\n    inputs: {x: {file: b.txt}}\n\
               protocol: replicated-3\n";
    let path = dir.write("run.yaml", two);
    let shown = RunFile::open(&path).unwrap_err().to_string();
    assert!(shown.contains("run.yaml:9: protocol: replicated-3 needs exactly 3 parties, got 2"), "{shown}");
    // The flag's protocol is checked against the file: its parties, its
    // `preprocessing`.
    let path = dir.write("run.yaml", two.replace("protocol: replicated-3\n", ""));
    assert!(RunFile::open(&path).is_ok());
    let shown = RunFile::open_as(&path, Some(ProtocolName::Replicated3)).unwrap_err().to_string();
    assert!(shown.contains("run.yaml:5: protocol: replicated-3 needs exactly 3 parties, got 2"), "{shown}");
    let good = setup(GOOD);
    let shown =
        RunFile::open_as(&good.path().join("run.yaml"), Some(ProtocolName::Replicated3)).unwrap_err().to_string();
    assert!(shown.contains("run.yaml:15: preprocessing: replicated-3 takes no preprocessing material"), "{shown}");
    let run = RunFile::open_as(&setup(&rep3).path().join("run.yaml"), Some(ProtocolName::AdditiveSemiHonest)).unwrap();
    assert_eq!((run.protocol, run.preprocessing), (ProtocolName::AdditiveSemiHonest, Some(Preprocessing::Ot)));
}

#[test]
fn a_week_is_the_longest_timeout() {
    let dir = setup(&with("total: 1h30m", "total: 168h"));
    let (run, _) = load(&dir).expect("a week is allowed");
    assert_eq!(run.timeouts.total, cohort_cli::runfile::MAX_TIMEOUT);
}

#[test]
fn compile_errors_name_the_program() {
    let dir = setup(GOOD);
    dir.write("salary.cohort", "input x: int from alice\noutput y = x +\n");
    let shown = err(&dir);
    assert!(shown.contains("salary.cohort: line 3, column 1: "), "{shown}");
    let inline = with("program: salary.cohort\n", "programSource: |\n  output y = z\n");
    let dir = setup(&inline);
    let shown = err(&dir);
    assert!(shown.contains("run.yaml (programSource): line 1, column 12:"), "{shown}");
}

#[test]
fn scalar_needs_one_value() {
    let dir = setup(GOOD);
    dir.write("data/bonus.txt", "1\n2\n");
    let shown = err(&dir);
    assert!(shown.contains("party bob, input `bonus`: "), "{shown}");
    assert!(shown.contains("bonus.txt: the input is a scalar and needs exactly one value, the file has 2"), "{shown}");
    dir.write("data/bonus.txt", "# nothing\n");
    assert!(err(&dir).contains("the file has 0"));
}

/// The error for alice's CSV file `text` (read as fixed).
fn alice_csv(text: &str) -> String {
    let dir = setup(GOOD);
    dir.write("alice.csv", text);
    err(&dir)
}

#[test]
fn csv_files() {
    let e = alice_csv("id,wage,dept\n1,2,3\n");
    assert!(
        e.contains("alice.csv:1: no column \"salary\" in the header; the columns are \"id\", \"wage\", \"dept\""),
        "{e}"
    );
    let e = alice_csv("id,salary\n1,2\n\n2,abc\n");
    assert!(e.contains("alice.csv:4: column \"salary\": not a number"), "{e}");
    let e = alice_csv("id,salary\n1,2\n2,3,4\n");
    assert!(e.contains("alice.csv:3: the row has 3 fields but the header has 2"), "{e}");
    let e = alice_csv("id,salary\n1,\n");
    assert!(e.contains("alice.csv:2: column \"salary\": empty"), "{e}");
    let e = alice_csv("");
    assert!(e.contains("alice.csv: the file is empty"), "{e}");
    let e = alice_csv("1.5,2\n3,4\n");
    assert!(e.contains("alice.csv:1: no column \"salary\": the first row does not look like a header"), "{e}");
    let e = alice_csv("salary,salary\n1,2\n");
    assert!(e.contains("appears more than once"), "{e}");

    // Quotes (with commas, doubled quotes and line breaks in other fields),
    // CRLF, blank lines, whitespace, a byte-order mark.
    let dir = setup(GOOD);
    dir.write(
        "alice.csv",
        "\u{feff}\"name, full\" , salary ,note\r\n\r\n\"Doe, J\",\" 1.5 \",\"say \"\"hi\"\"\"\r\n  x , \"2\",\"two\r\nlines\"\r\ny, -3 ,\r\n\r\nz,4,\"\"\r\n",
    );
    let (_, inputs) = load(&dir).unwrap();
    assert_eq!(fixed(&inputs[0].inputs[0].values), [1.5, 2.0, -3.0, 4.0]);
    // Line numbers count physical lines, including those inside quotes.
    dir.write("alice.csv", "salary,note\n1,\"a\nb\"\nbad,c\n");
    let e = err(&dir);
    assert!(e.contains("alice.csv:4: column \"salary\": not a number"), "{e}");
    // Data files that are not UTF-8.
    dir.write("alice.csv", b"salary\n1\n\xff\n");
    assert!(err(&dir).contains("alice.csv:3: not valid UTF-8"));
}

#[test]
fn plain_files() {
    let dir = setup(GOOD);
    dir.write("data/bob.txt", "# header comment\n  1.25  \r\n\n   # indented comment\n2\n");
    let (_, inputs) = load(&dir).unwrap();
    assert_eq!(fixed(&inputs[1].inputs[0].values), [1.25, 2.0]);
    dir.write("data/bob.txt", "1\n2\nthree\n");
    let e = err(&dir);
    assert!(e.contains("bob.txt:3: value: not a number"), "{e}");
    // A CSV file given without a column gets a hint.
    dir.write("run.yaml", with("{file: alice.csv, column: salary}", "{file: alice.csv}"));
    let e = err(&dir);
    assert!(e.contains("alice.csv:1: value: not a number (is this a CSV file? give the input a `column`)"), "{e}");
}

#[test]
fn values_are_checked() {
    let fixed_cases = [
        ("nan", "not a finite number"),
        ("-inf", "not a finite number"),
        ("Infinity", "not a finite number"),
        ("70368744177664", "out of range for fixed point with 16 fractional bits (|x| must be below 2^46)"),
        ("1,5", "not a number"),
    ];
    for (value, reason) in fixed_cases {
        let dir = setup(GOOD);
        dir.write("data/bob.txt", format!("1\n{value}\n"));
        let e = err(&dir);
        assert!(e.contains(&format!("bob.txt:2: value: {reason}")), "{value}: {e}");
    }
    let int_cases = [
        ("2.5", "not an integer"),
        ("1e3", "not an integer"),
        ("4611686018427387904", "out of range for int (|x| must be below 2^62)"),
        ("-4611686018427387904", "out of range for int"),
        ("18446744073709551616", "out of range for int"),
        ("ten", "not a number"),
    ];
    for (value, reason) in int_cases {
        let dir = setup(GOOD);
        dir.write("data/bonus.txt", format!("\n{value}\n"));
        let e = err(&dir);
        assert!(e.contains(&format!("bonus.txt:2: value: {reason}")), "{value}: {e}");
    }
    // The fixed-point range follows the program's precision.
    let dir = setup(GOOD);
    dir.write("salary.cohort", format!("fixed_point 30\n{PROGRAM}"));
    dir.write("data/bob.txt", "5000000000\n");
    let e = err(&dir);
    assert!(e.contains("out of range for fixed point with 30 fractional bits (|x| must be below 2^32)"), "{e}");
    // Integral `int` values written with a zero fraction are accepted.
    dir.write("data/bob.txt", "1\n");
    dir.write("data/bonus.txt", "-12.00\n");
    let (_, inputs) = load(&dir).unwrap();
    assert_eq!(inputs[1].inputs[1].values, Values::Int(vec![-12]));
}

#[test]
fn data_error_kinds_are_typed() {
    let dir = setup(GOOD);
    dir.write("data/bob.txt", "nan\n");
    match load(&dir).unwrap_err() {
        RunFileError::Data { party, input, source } => {
            assert_eq!((party.as_str(), input.as_str()), ("bob", "salaries"));
            assert_eq!(source.line, Some(1));
            assert_eq!(source.field.as_deref(), Some("value"));
            assert!(matches!(source.kind, DataErrorKind::NotFinite));
        }
        other => panic!("{other:?}"),
    }
    let dir = setup(&with("name: carol", "name: alice"));
    assert!(matches!(load(&dir).unwrap_err(), RunFileError::Invalid { kind: Invalid::DuplicateParty(_), .. }));
}

/// Sentinel values, malformed or out of range in many ways, must never
/// appear in an error's `Display` or `Debug`.
#[test]
fn canary_errors_never_echo_values() {
    const SENTINELS: [&str; 3] = ["987654321", "777", "31337"];
    // (file, text) pairs; each makes the load fail at a sentinel value.
    let cases: &[(&str, &[u8])] = &[
        ("data/bonus.txt", b"987654321.123456\n"),
        ("data/bonus.txt", b"98765432198765432198765432\n"),
        ("data/bonus.txt", b"-9876543219876543210\n"),
        ("data/bonus.txt", b"987654321e5\n"),
        ("data/bonus.txt", b"987654321abc\n"),
        ("data/bonus.txt", b"987654321\n987654321\n"),
        ("data/bob.txt", b"7.77e30\n"),
        ("data/bob.txt", b"-7.77e300\n"),
        ("data/bob.txt", b"7.77e3000\n"),
        ("data/bob.txt", b"31337,5\n"),
        ("data/bob.txt", b"0x31337\n"),
        ("data/bob.txt", b"31337 31337\n"),
        ("data/bob.txt", b"nan31337\n"),
        ("alice.csv", b"id,salary\n31337,7.77e30\n"),
        ("alice.csv", b"id,salary\n31337,\"987654321 x\"\n"),
        ("alice.csv", b"id,salary\n31337,987654321,777\n"),
        ("alice.csv", b"id,salary\n31337\n"),
        ("alice.csv", b"id,salary\n\"31337,987654321\n"),
        ("alice.csv", b"id,salary\n31337,\xff987654321\n"),
        ("alice.csv", b"31337,987654321\n777,1\n"),
        ("alice.csv", b"id,,987654321\n777,1,2\n"),
    ];
    for (file, text) in cases {
        let dir = setup(GOOD);
        dir.write(file, text);
        let e = load(&dir).expect_err(&String::from_utf8_lossy(text));
        let shown = format!("{e}\n{e:?}");
        for s in SENTINELS {
            // Paths are random temp names; only check the text around them.
            let scrubbed = shown.replace(&dir.path().display().to_string(), "DIR");
            assert!(!scrubbed.contains(s), "sentinel {s} leaked for {:?}: {scrubbed}", String::from_utf8_lossy(text));
        }
    }
    // Values that load fine stay out of Debug as well.
    let dir = setup(GOOD);
    dir.write("alice.csv", "salary\n987654321.5\n");
    let loaded = load(&dir).unwrap();
    let shown = format!("{loaded:?}");
    assert!(!shown.contains("987654321"), "{shown}");
}

/// The example in `examples/salary-stats` (and `docs/run-file.md`) loads.
#[test]
fn shipped_example_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/salary-stats/run.yaml");
    let (run, inputs) = RunFile::load(&path).unwrap();
    assert_eq!(run.circuit.parties, ["alice", "bob", "carol"]);
    assert_eq!(run.timeouts.total, Duration::from_secs(600));
    let counts: Vec<usize> = inputs.iter().map(|p| p.inputs[0].values.len()).collect();
    assert_eq!(counts, [3, 3, 2]);
    assert_eq!(fixed(&inputs[0].inputs[0].values), [52000.5, 61000.0, 48500.0]);
}

/// `bool` inputs read `true`/`false` (any case) or `1`/`0` from CSV and
/// plain files, become JSON booleans for the control API, and a bad value
/// is named by file, line and column, never echoed.
#[test]
fn bool_data_files() {
    let dir = Dir::new();
    dir.write(
        "flags.cohort",
        "input flags: bool[] from alice\ninput x: int[] from bob\noutput n = count(flags)\noutput f = flags to alice\n",
    );
    dir.write("flags.csv", "id,flag\n1,TRUE\n2,false\n3,1\n4,0\n");
    dir.write("x.txt", "5\n");
    let run = "program: flags.cohort\nparties:\n  - name: alice\n    inputs: {flags: {file: flags.csv, column: flag}}\n  \
               - name: bob\n    inputs: {x: {file: x.txt}}\n";
    dir.write("run.yaml", run);
    let (run, inputs) = load(&dir).expect("loads");
    assert_eq!(run.parties[0].inputs[0].elem, ElemType::Bool);
    assert_eq!(inputs[0].inputs[0].values, Values::Bool(vec![true, false, true, false]));
    assert_eq!(serde_json::to_string(&inputs[0].inputs[0].values.to_json()).unwrap(), "[true,false,true,false]");

    dir.write("flags.csv", "id,flag\n1,true\n2,maybe42\n");
    let shown = err(&dir);
    assert!(shown.ends_with("flags.csv:3: column \"flag\": not a bool (write true or false, or 1 or 0)"), "{shown}");
    assert!(shown.starts_with("party alice, input `flags`: "), "{shown}");
    assert!(!shown.contains("maybe42"), "{shown}");
}
