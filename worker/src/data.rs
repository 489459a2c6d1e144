//! Party input data: the secret values a run file's data files hold, or
//! an MpcJob's Secret or ConfigMap key (the same formats for both).
//!
//! Two formats (documented in `docs/run-file.md`):
//!
//! - **CSV** ([`DataFormat::Csv`]): a header row, comma-separated fields,
//!   optional double quotes (RFC 4180), whitespace around fields trimmed,
//!   blank lines skipped, LF or CRLF line ends. One named column is read.
//! - **Lines** ([`DataFormat::Lines`]): one value per line; blank lines and
//!   lines whose first non-blank character is `#` are skipped.
//!
//! A `bool` input's values are `true` or `false` (any case) or `1` or `0`.
//!
//! Values are parsed for an [`ElemType`] and checked against the range the
//! engine can encode, so a file that loads is a file the executor accepts.
//!
//! The values are secrets. [`Values`] redacts `Debug` (only the count is
//! shown) and zeroizes on drop, and no [`DataError`] ever carries or prints
//! a value: errors name the file, the 1-based line (counting the header),
//! the field (`column "NAME"` or `value`) and the reason, nothing else.

use crate::fixed::{self, DecimalError, EncodeError, FixedPoint, SAFE_BOUND};
use crate::memory::Wiped;
use crate::program::ir::ElemType;
use crate::service::api::InputValue;
use crate::sharing::Secret;
use std::fmt;
use std::io;
use std::num::IntErrorKind;
use std::path::Path;
use zeroize::Zeroize;

/// Most values one data file may hold: the executor's default bound on a
/// declared input length (`ExecuteOptions::max_vector_len`).
pub const MAX_VALUES: usize = 1 << 27;

/// How a data file is laid out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataFormat {
    /// CSV with a header row; read the column with this (trimmed) name.
    Csv { column: String },
    /// Plain text, one number per line.
    Lines,
}

/// Parsed input values, ready to encode. Redacts `Debug`, zeroizes on drop.
#[derive(Clone, PartialEq)]
pub enum Values {
    /// `int` values, each with `|x| < 2^62`.
    Int(Vec<i64>),
    /// `fixed` values, each the grid point of the program's fixed-point
    /// format nearest the decimal read (see [`parse_fixed`]), so encoding
    /// them is exact.
    Fixed(Vec<f64>),
    /// `bool` values (see [`parse_bool`]).
    Bool(Vec<bool>),
}

impl Values {
    pub fn len(&self) -> usize {
        match self {
            Values::Int(v) => v.len(),
            Values::Fixed(v) => v.len(),
            Values::Bool(v) => v.len(),
        }
    }

    /// The values as the control API takes them: JSON numbers (`int`s
    /// exactly, as integers) or, for `bool`s, JSON booleans.
    pub fn to_json(&self) -> Vec<InputValue> {
        match self {
            Values::Int(v) => v.iter().map(|x| InputValue::Number((*x).into())).collect(),
            // Parsed values are finite, so none is dropped.
            Values::Fixed(v) => {
                v.iter().filter_map(|x| serde_json::Number::from_f64(*x)).map(InputValue::Number).collect()
            }
            Values::Bool(v) => v.iter().map(|b| InputValue::Bool(*b)).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn elem(&self) -> ElemType {
        match self {
            Values::Int(_) => ElemType::Int,
            Values::Fixed(_) => ElemType::Fixed,
            Values::Bool(_) => ElemType::Bool,
        }
    }

    /// Encode into the ring (`fp` applies to `fixed` values). Cannot fail
    /// for values produced by [`read_values`] with the same format; the
    /// error carries no value.
    pub fn encode(&self, fp: FixedPoint) -> Result<Secret, EncodeError> {
        let encoded = match self {
            Values::Int(v) => v.iter().map(|x| fixed::encode_int(*x)).collect::<Result<Vec<u64>, _>>()?,
            Values::Fixed(v) => v.iter().map(|x| fp.encode(*x)).collect::<Result<Vec<u64>, _>>()?,
            // In plaintext a bool is the ring element 0 or 1.
            Values::Bool(v) => v.iter().map(|b| u64::from(*b)).collect(),
        };
        Ok(Secret::new(encoded))
    }

    /// The values as reals (integers converted exactly below 2^53, bools as
    /// 0 and 1). For
    /// APIs that take `f64`; prefer [`Values::encode`], which keeps every
    /// integer exact.
    pub fn to_f64(&self) -> Wiped<f64> {
        Wiped(match self {
            Values::Int(v) => v.iter().map(|x| *x as f64).collect(),
            Values::Fixed(v) => v.clone(),
            Values::Bool(v) => v.iter().map(|b| f64::from(u8::from(*b))).collect(),
        })
    }
}

impl fmt::Debug for Values {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Values::Int(_) => "Int",
            Values::Fixed(_) => "Fixed",
            Values::Bool(_) => "Bool",
        };
        write!(f, "Values::{kind}(<{} redacted values>)", self.len())
    }
}

impl Zeroize for Values {
    fn zeroize(&mut self) {
        match self {
            // In bulk, the whole allocation (see `crate::memory`).
            Values::Int(v) => crate::memory::wipe_vec(v),
            Values::Fixed(v) => crate::memory::wipe_vec(v),
            Values::Bool(v) => crate::memory::wipe_vec(v),
        }
    }
}

impl Drop for Values {
    fn drop(&mut self) {
        self.zeroize();
    }
}

/// Why a data file cannot be read. Never carries a value from the file.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {}{}", origin, line.map(|l| format!(":{l}")).unwrap_or_default(), field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default(), kind)]
pub struct DataError {
    /// Where the data came from: the data file as resolved against the run
    /// file's directory, or a Secret or ConfigMap key.
    pub origin: String,
    /// 1-based line (the header is line 1), when the problem has one.
    pub line: Option<u64>,
    /// `column "NAME"` or `value`, when the problem is in one field.
    pub field: Option<String>,
    pub kind: DataErrorKind,
}

/// The reason part of a [`DataError`].
#[derive(Debug, thiserror::Error)]
pub enum DataErrorKind {
    #[error("cannot read: {0}")]
    Io(#[source] io::Error),
    #[error("not valid UTF-8")]
    NotUtf8,
    #[error("the file is empty: a CSV file needs a header row")]
    NoHeader,
    #[error("no column {column:?} in the header; the columns are {available}")]
    MissingColumn { column: String, available: String },
    #[error(
        "no column {column:?}: the first row does not look like a header (a CSV file needs a header row naming its columns)"
    )]
    HeaderLooksLikeData { column: String },
    #[error("column {column:?} appears more than once in the header")]
    DuplicateColumn { column: String },
    #[error("the row has {found} fields but the header has {expected}")]
    Ragged { found: u64, expected: u64 },
    #[error("malformed CSV")]
    Csv,
    /// A field opens a quote that nothing closes (the CSV reader would
    /// otherwise read the rest of the file into that field).
    #[error("unclosed quote: the quoted field starting on this line has no closing `\"`")]
    UnclosedQuote,
    #[error("empty")]
    Empty,
    #[error("not a number")]
    NotANumber,
    #[error("not a number (is this a CSV file? give the input a `column`)")]
    NotANumberMaybeCsv,
    #[error("not a bool (write true or false, or 1 or 0)")]
    NotABool,
    #[error("not a bool (is this a CSV file? give the input a `column`)")]
    NotABoolMaybeCsv,
    #[error("not a finite number")]
    NotFinite,
    #[error("not an integer")]
    NotAnInteger,
    #[error("out of range for int (|x| must be below 2^62)")]
    IntOutOfRange,
    #[error("out of range for fixed point with {frac_bits} fractional bits (|x| must be below 2^{limit_log2})")]
    FixedOutOfRange { frac_bits: u32, limit_log2: u32 },
    #[error("unsupported fixed-point precision of {0} fractional bits")]
    Precision(u32),
    #[error("more than {MAX_VALUES} values")]
    TooMany,
    /// A scalar input's file must hold exactly one value (counts are
    /// public: input lengths are announced to every party).
    #[error("the input is a scalar and needs exactly one value, the file has {0}")]
    ScalarCount(usize),
}

/// Read one input's values from `file`, parsed as `elem` (with
/// `frac_bits` fractional bits for `fixed`).
pub fn read_values(file: &Path, format: &DataFormat, elem: ElemType, frac_bits: u32) -> Result<Values, DataError> {
    let origin = file.display().to_string();
    // Wiped in bulk once parsed (a data file can be hundreds of MB).
    let bytes = Wiped(std::fs::read(file).map_err(|e| DataError {
        origin: origin.clone(),
        line: None,
        field: None,
        kind: DataErrorKind::Io(e),
    })?);
    let csv_like = file.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    parse_values(&origin, &bytes, format, elem, frac_bits, csv_like)
}

/// Parse one input's values from `bytes` (a file's or a Secret key's
/// content); `origin` names where they came from in errors. `csv_like`
/// says the source's name suggests CSV, so a header read as a number gets
/// a hint to name a column.
pub fn parse_values(
    origin: &str,
    bytes: &[u8],
    format: &DataFormat,
    elem: ElemType,
    frac_bits: u32,
    csv_like: bool,
) -> Result<Values, DataError> {
    let err =
        |line: Option<u64>, field: Option<String>, kind| DataError { origin: origin.to_string(), line, field, kind };
    let fp = FixedPoint::new(frac_bits).ok_or_else(|| err(None, None, DataErrorKind::Precision(frac_bits)))?;
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut parser = ValueParser { elem, fp, values: Values::empty(elem) };
    match format {
        DataFormat::Lines => {
            let text = std::str::from_utf8(body).map_err(|e| {
                let line = body[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
                err(Some(line), None, DataErrorKind::NotUtf8)
            })?;
            let mut first = true;
            for (i, raw) in text.lines().enumerate() {
                let field = raw.trim();
                if field.is_empty() || field.starts_with('#') {
                    continue;
                }
                let line = i as u64 + 1;
                parser.push(field).map_err(|kind| {
                    let kind = match kind {
                        DataErrorKind::NotANumber if first && csv_like => DataErrorKind::NotANumberMaybeCsv,
                        DataErrorKind::NotABool if first && csv_like => DataErrorKind::NotABoolMaybeCsv,
                        k => k,
                    };
                    err(Some(line), Some("value".into()), kind)
                })?;
                first = false;
            }
        }
        DataFormat::Csv { column } => {
            if let Some(line) = unclosed_quote(body) {
                return Err(err(Some(line), None, DataErrorKind::UnclosedQuote));
            }
            let mut reader =
                csv::ReaderBuilder::new().has_headers(false).trim(csv::Trim::All).flexible(false).from_reader(body);
            let mut record = csv::StringRecord::new();
            let csv_err = |e: csv::Error| {
                let line = e.position().map(|p| LineCounter::new(body).line_at(p.byte()));
                let kind = match e.kind() {
                    csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
                        DataErrorKind::Ragged { found: *len, expected: *expected_len }
                    }
                    csv::ErrorKind::Utf8 { .. } => DataErrorKind::NotUtf8,
                    _ => DataErrorKind::Csv,
                };
                // An I/O error cannot happen reading from memory.
                err(line, None, kind)
            };
            if !reader.read_record(&mut record).map_err(csv_err)? {
                return Err(err(None, None, DataErrorKind::NoHeader));
            }
            let header_line = record.position().map_or(1, |p| LineCounter::new(body).line_at(p.byte()));
            let matches: Vec<usize> = record.iter().enumerate().filter(|(_, h)| h == column).map(|(i, _)| i).collect();
            let index = match matches[..] {
                [i] => i,
                // A first row of numbers is data, not a header: say so
                // without echoing it.
                [] if record
                    .iter()
                    .any(|h| h.is_empty() || parse_real(unquote(h)).is_some() || parse_bool(unquote(h)).is_ok()) =>
                {
                    let kind = DataErrorKind::HeaderLooksLikeData { column: column.clone() };
                    return Err(err(Some(header_line), None, kind));
                }
                [] => {
                    let available = record.iter().map(|h| format!("{h:?}")).collect::<Vec<_>>().join(", ");
                    let kind = DataErrorKind::MissingColumn { column: column.clone(), available };
                    return Err(err(Some(header_line), None, kind));
                }
                _ => {
                    let kind = DataErrorKind::DuplicateColumn { column: column.clone() };
                    return Err(err(Some(header_line), None, kind));
                }
            };
            let field_name = format!("column {column:?}");
            // The reader counts lines by record ends, not by the line breaks
            // inside quoted fields: count physical lines from byte offsets.
            let mut lines = LineCounter::new(body);
            while reader.read_record(&mut record).map_err(csv_err)? {
                let line = record.position().map_or(0, |p| lines.line_at(p.byte()));
                let field = unquote(&record[index]);
                parser.push(field).map_err(|kind| err(Some(line), Some(field_name.clone()), kind))?;
            }
        }
    }
    Ok(parser.values)
}

/// The 1-based line of a quoted field that is never closed, by the CSV
/// reader's rules: a quote opens a field only as its first byte, `""`
/// inside is an escaped quote, and the next lone `"` closes it.
fn unclosed_quote(body: &[u8]) -> Option<u64> {
    let mut line = 1u64;
    let mut opened_at = None;
    let mut field_start = true;
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if opened_at.is_some() {
            if b == b'"' {
                if body.get(i + 1) == Some(&b'"') {
                    i += 1;
                } else {
                    opened_at = None;
                }
            }
        } else if b == b'"' && field_start {
            opened_at = Some(line);
        }
        field_start = opened_at.is_none() && matches!(b, b',' | b'\n' | b'\r');
        line += u64::from(b == b'\n');
        i += 1;
    }
    opened_at
}

/// 1-based physical line numbers of records, from their byte offsets
/// (which must not decrease).
struct LineCounter<'a> {
    body: &'a [u8],
    offset: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(body: &'a [u8]) -> Self {
        LineCounter { body, offset: 0, line: 1 }
    }

    fn line_at(&mut self, offset: u64) -> u64 {
        let end = usize::try_from(offset).unwrap_or(usize::MAX).min(self.body.len());
        if end > self.offset {
            self.line += self.body[self.offset..end].iter().filter(|&&b| b == b'\n').count() as u64;
            self.offset = end;
        }
        // A record's offset may be that of the blank lines before it.
        while let Some(&b) = self.body.get(self.offset).filter(|b| matches!(b, b'\r' | b'\n')) {
            self.line += u64::from(b == b'\n');
            self.offset += 1;
        }
        self.line
    }
}

/// A field written ` "1.5" ` (whitespace before the quote) is not quoted
/// by RFC 4180 rules, so the CSV reader keeps the quotes: drop one pair.
/// Numbers never contain quotes, so this changes nothing else.
fn unquote(field: &str) -> &str {
    match field.strip_prefix('"').and_then(|f| f.strip_suffix('"')) {
        Some(inner) => inner.trim(),
        None => field,
    }
}

impl Values {
    fn empty(elem: ElemType) -> Values {
        match elem {
            ElemType::Int => Values::Int(Vec::new()),
            ElemType::Fixed => Values::Fixed(Vec::new()),
            ElemType::Bool => Values::Bool(Vec::new()),
        }
    }
}

struct ValueParser {
    elem: ElemType,
    fp: FixedPoint,
    values: Values,
}

impl ValueParser {
    fn push(&mut self, field: &str) -> Result<(), DataErrorKind> {
        if self.values.len() >= MAX_VALUES {
            return Err(DataErrorKind::TooMany);
        }
        match &mut self.values {
            Values::Int(v) => v.push(parse_int(field)?),
            Values::Fixed(v) => v.push(parse_fixed(field, self.fp)?),
            Values::Bool(v) => v.push(parse_bool(field)?),
        }
        debug_assert_eq!(self.values.elem(), self.elem);
        Ok(())
    }
}

/// An `int` value: optional sign, decimal digits, optionally a fractional
/// part of zeros only (`12.0`). Parsed as an integer, never through `f64`.
pub fn parse_int(field: &str) -> Result<i64, DataErrorKind> {
    if field.is_empty() {
        return Err(DataErrorKind::Empty);
    }
    let digits = match field.split_once('.') {
        Some((whole, frac)) if !whole.is_empty() && frac.bytes().all(|b| b == b'0') => whole,
        _ => field,
    };
    match digits.parse::<i64>() {
        Ok(x) if x.unsigned_abs() < SAFE_BOUND => Ok(x),
        Ok(_) => Err(DataErrorKind::IntOutOfRange),
        Err(e) if matches!(e.kind(), IntErrorKind::PosOverflow | IntErrorKind::NegOverflow) => {
            Err(DataErrorKind::IntOutOfRange)
        }
        Err(_) => match parse_real(field) {
            Some(_) => Err(DataErrorKind::NotAnInteger),
            None => Err(DataErrorKind::NotANumber),
        },
    }
}

/// A `fixed` value: a decimal real (`-12.5`, `3`, `1e-3`), finite, and
/// encodable in `fp`; returned as its grid point (`round(x * 2^f) / 2^f`,
/// computed exactly from the decimal text, never through `f64`). The grid
/// point is exact as an `f64` below `2^(53-f)` in magnitude and rounded
/// toward zero above (see [`FixedPoint::to_f64_toward_zero`]).
pub fn parse_fixed(field: &str, fp: FixedPoint) -> Result<f64, DataErrorKind> {
    if field.is_empty() {
        return Err(DataErrorKind::Empty);
    }
    match fp.encode_decimal(field) {
        Ok(k) => Ok(fp.to_f64_toward_zero(k)),
        Err(DecimalError::OutOfRange) => {
            Err(DataErrorKind::FixedOutOfRange { frac_bits: fp.frac_bits(), limit_log2: 62 - fp.frac_bits() })
        }
        Err(DecimalError::Syntax) => match parse_real(field) {
            // `inf`, `nan`: numbers, but not finite ones.
            Some(_) => Err(DataErrorKind::NotFinite),
            None => Err(DataErrorKind::NotANumber),
        },
    }
}

/// A `bool` value: `true` or `false` in any case (what spreadsheets write),
/// or `1` or `0`.
pub fn parse_bool(field: &str) -> Result<bool, DataErrorKind> {
    match field {
        "" => Err(DataErrorKind::Empty),
        "1" => Ok(true),
        "0" => Ok(false),
        f if f.eq_ignore_ascii_case("true") => Ok(true),
        f if f.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(DataErrorKind::NotABool),
    }
}

/// Decimal real syntax: sign, digits with an optional point, optional
/// exponent; or `inf`/`infinity`/`nan` in any case (which parse, and are
/// then refused as not finite). Rejects Rust-only forms such as `1_000`
/// (`f64::from_str` already does) and hexadecimal.
fn parse_real(field: &str) -> Option<f64> {
    let ok_chars = field.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'));
    let word = field.trim_start_matches(['+', '-']).to_ascii_lowercase();
    let special = matches!(word.as_str(), "inf" | "infinity" | "nan");
    if !ok_chars && !special {
        return None;
    }
    field.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints() {
        assert_eq!(parse_int("42").unwrap(), 42);
        assert_eq!(parse_int("-7").unwrap(), -7);
        assert_eq!(parse_int("+7").unwrap(), 7);
        assert_eq!(parse_int("12.000").unwrap(), 12);
        assert_eq!(parse_int("4611686018427387903").unwrap(), (1 << 62) - 1);
        assert!(matches!(parse_int("4611686018427387904"), Err(DataErrorKind::IntOutOfRange)));
        assert!(matches!(parse_int("-4611686018427387904"), Err(DataErrorKind::IntOutOfRange)));
        assert!(matches!(parse_int("99999999999999999999999"), Err(DataErrorKind::IntOutOfRange)));
        assert!(matches!(parse_int("1.5"), Err(DataErrorKind::NotAnInteger)));
        assert!(matches!(parse_int("1e3"), Err(DataErrorKind::NotAnInteger)));
        assert!(matches!(parse_int(".0"), Err(DataErrorKind::NotAnInteger)));
        assert!(matches!(parse_int("abc"), Err(DataErrorKind::NotANumber)));
        assert!(matches!(parse_int("1_000"), Err(DataErrorKind::NotANumber)));
        assert!(matches!(parse_int(""), Err(DataErrorKind::Empty)));
    }

    #[test]
    fn fixeds() {
        let fp = FixedPoint::default();
        assert_eq!(parse_fixed("-12.5", fp).unwrap(), -12.5);
        // The grid point nearest 0.001: 66 / 2^16.
        assert_eq!(parse_fixed("1e-3", fp).unwrap(), 66.0 / 65536.0);
        assert_eq!(parse_fixed(".5", fp).unwrap(), 0.5);
        assert!(matches!(parse_fixed("NaN", fp), Err(DataErrorKind::NotFinite)));
        assert!(matches!(parse_fixed("-inf", fp), Err(DataErrorKind::NotFinite)));
        assert!(matches!(parse_fixed("1e400", fp), Err(DataErrorKind::FixedOutOfRange { .. })));
        assert!(matches!(parse_fixed("70368744177664", fp), Err(DataErrorKind::FixedOutOfRange { .. })));
        assert_eq!(parse_fixed("70368744177663", fp).unwrap(), 70368744177663.0);
        assert!(matches!(parse_fixed("0x10", fp), Err(DataErrorKind::NotANumber)));
        assert!(matches!(parse_fixed("1,5", fp), Err(DataErrorKind::NotANumber)));
    }

    #[test]
    fn fixeds_are_parsed_exactly() {
        let fp = FixedPoint::default();
        // Below 2^46 by 0.001, which f64 parsing rounds up to 2^46 (issue 15,
        // item 2): accepted, as the grid point below 2^46 read toward zero.
        let x = parse_fixed("70368744177663.999", fp).unwrap();
        assert!(x < 70368744177664.0);
        assert_eq!(fp.encode(x).unwrap(), fp.encode_decimal("70368744177663.9921875").unwrap());
        assert!(matches!(parse_fixed("70368744177663.999993", fp), Err(DataErrorKind::FixedOutOfRange { .. })));
        // Values are grid points: 243.4 is read as 15951462 / 2^16.
        assert_eq!(parse_fixed("243.4", fp).unwrap(), 15951462.0 / 65536.0);
        let values = parse_values("t", b"243.4\n-0.1\n", &DataFormat::Lines, ElemType::Fixed, 16, false).unwrap();
        let secret = values.encode(fp).unwrap();
        assert_eq!(secret.expose(), &[15951462, crate::ring::from_signed(-6554)]);
        assert_eq!(serde_json::to_string(&values.to_json()[0]).unwrap(), "243.39999389648438");
    }

    #[test]
    fn an_unclosed_quote_is_named() {
        let csv = DataFormat::Csv { column: "salary".into() };
        let parse = |text: &str| parse_values("d.csv", text.as_bytes(), &csv, ElemType::Fixed, 16, true);
        let e = parse("name,salary\nalice,1\nbob,\"2\ncarol,3\n").unwrap_err();
        assert!(matches!(e.kind, DataErrorKind::UnclosedQuote), "{e}");
        assert_eq!(e.line, Some(3));
        assert_eq!(
            e.to_string(),
            "d.csv:3: unclosed quote: the quoted field starting on this line has no closing `\"`"
        );
        let e = parse("\"name,salary\n1,2\n").unwrap_err();
        assert!(matches!(e.kind, DataErrorKind::UnclosedQuote), "{e}");
        assert_eq!(e.line, Some(1));
        // Closed quotes, escaped quotes, quotes inside unquoted fields and
        // line breaks inside quotes are fine.
        let ok = parse("name,salary\n\"a \"\"b\"\", c\",\"1\"\nx\"y,2\n\"multi\nline\",3\n").unwrap();
        assert_eq!(ok.len(), 3);
    }

    #[test]
    fn dropped_values_are_freed_wiped() {
        use crate::memory::tests::watch;
        let v = Values::Int(vec![-987_654_321; 500]);
        let Values::Int(inner) = &v else { unreachable!() };
        watch::start(inner.as_ptr().cast());
        drop(v);
        assert_eq!(watch::freed_zeroed(), Some(true));
    }

    #[test]
    fn values_debug_is_redacted() {
        let v = Values::Fixed(vec![123.456, 789.0]);
        let shown = format!("{v:?}");
        assert_eq!(shown, "Values::Fixed(<2 redacted values>)");
        let secret = Values::Int(vec![5, -6]).encode(FixedPoint::default()).unwrap();
        assert_eq!(secret.expose(), &[5, (-6i64) as u64]);
    }

    #[test]
    fn bools() {
        for (text, want) in [("true", true), ("FALSE", false), ("True", true), ("1", true), ("0", false)] {
            assert_eq!(parse_bool(text).unwrap(), want, "{text}");
        }
        for text in ["yes", "t", "2", "-1", "1.0", "truee"] {
            assert!(matches!(parse_bool(text), Err(DataErrorKind::NotABool)), "{text}");
        }
        assert!(matches!(parse_bool(""), Err(DataErrorKind::Empty)));
        let lines = parse_values("f.txt", b"# flags\ntrue\n0\nFalse\n", &DataFormat::Lines, ElemType::Bool, 16, false);
        let lines = lines.unwrap();
        assert_eq!(lines, Values::Bool(vec![true, false, false]));
        assert_eq!(lines.encode(FixedPoint::default()).unwrap().expose(), &[1, 0, 0]);
        assert_eq!(serde_json::to_string(&lines.to_json()).unwrap(), "[true,false,false]");
        assert_eq!(format!("{lines:?}"), "Values::Bool(<3 redacted values>)");
    }

    /// A bad bool names the file, the line and the column, never the value.
    #[test]
    fn bad_bools_are_located_and_not_echoed() {
        let csv = DataFormat::Csv { column: "flag".into() };
        let parse = |text: &str, format: &DataFormat, csv_like| {
            parse_values("d.csv", text.as_bytes(), format, ElemType::Bool, 16, csv_like)
        };
        let e = parse("id,flag\n1,true\n2,maybe-secret\n", &csv, true).unwrap_err();
        assert_eq!(e.to_string(), "d.csv:3: column \"flag\": not a bool (write true or false, or 1 or 0)");
        let e = parse("true\nsecretish\n", &DataFormat::Lines, false).unwrap_err();
        assert_eq!(e.to_string(), "d.csv:2: value: not a bool (write true or false, or 1 or 0)");
        // A CSV file read as lines: the header is the first value.
        let e = parse("flag\ntrue\n", &DataFormat::Lines, true).unwrap_err();
        assert!(matches!(e.kind, DataErrorKind::NotABoolMaybeCsv), "{e}");
        // A header-less CSV file of bools: not echoed as "the columns are".
        let e = parse("TRUE,false\n", &csv, true).unwrap_err();
        assert!(matches!(e.kind, DataErrorKind::HeaderLooksLikeData { .. }), "{e}");
        assert!(!e.to_string().contains("TRUE"), "{e}");
    }
}
