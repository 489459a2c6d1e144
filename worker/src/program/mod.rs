//! The program language: source text in, a [`ir::Circuit`] out.
//!
//! The pipeline is [`lexer`] → [`parser`] (an [`ast::Program`]) → `lower`
//! (type checking, constant folding and lowering to the IR, in one pass).
//! Every error in that pipeline is a [`CompileError`] with a 1-based line
//! and column, reported before anything runs. [`plain`] is the plaintext
//! reference semantics of the IR, against which the MPC executor is tested.
//! The language itself is documented in `docs/language.md`.
//!
//! ```
//! use cohort_worker::program::{compile, interactive_depth};
//! let parties = vec!["bank-a".to_string(), "bank-b".to_string()];
//! let circuit = compile(
//!     "input salaries: fixed[] from each\n\
//!      let all = concat(salaries)\n\
//!      output mean = mean(all)\n\
//!      output var = variance(all) to bank-a",
//!     &parties,
//! )
//! .unwrap();
//! assert_eq!(circuit.outputs.len(), 2);
//! assert_eq!(interactive_depth(&circuit), 3);
//! ```

pub mod ast;
pub mod ir;
pub mod lexer;
mod lower;
pub mod parser;
pub mod plain;

/// Why a program does not compile: where (1-based line and column, columns
/// counting characters) and why. Displayed as `line L, column C: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct CompileError {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

/// Compile `source` for a job whose parties are `parties` (in order; the
/// order defines [`ir::PartyIndex`]). Party names in the program must be
/// names from this list.
pub fn compile(source: &str, parties: &[String]) -> Result<ir::Circuit, CompileError> {
    if parties.is_empty() {
        return Err(CompileError { line: 1, column: 1, message: "the job has no parties".into() });
    }
    for (i, p) in parties.iter().enumerate() {
        if parties[..i].contains(p) {
            return Err(CompileError {
                line: 1,
                column: 1,
                message: format!("party `{p}` is listed twice in the job"),
            });
        }
    }
    let program = parser::parse(source)?;
    lower::lower(&program, parties)
}

/// SHA-256 of the source text exactly as given (no normalization): the
/// hash every party's consent compares.
pub fn program_hash(source: &str) -> [u8; 32] {
    let digest = ::ring::digest::digest(&::ring::digest::SHA256, source.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Lowercase hex, the form in which program hashes and digests are shown.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The inverse of [`hex`] for a fixed size: exactly `2N` lowercase hex
/// digits → `N` bytes.
pub fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let b = text.as_bytes();
    if b.len() != 2 * N {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nibble(b[2 * i])? << 4) | nibble(b[2 * i + 1])?;
    }
    Some(out)
}

/// Which nodes are secret: inputs, and every node other than `Len`,
/// `Const` and `Bool` with a secret operand (lengths are public; so is a
/// comparison of public values).
///
/// Assumes the circuit is in topological order (operands precede users);
/// an out-of-order operand is treated as public.
pub fn secret_nodes(circuit: &ir::Circuit) -> Vec<bool> {
    let mut secret = vec![false; circuit.nodes.len()];
    for (i, node) in circuit.nodes.iter().enumerate() {
        secret[i] = match &node.op {
            ir::Op::Input { .. } => true,
            ir::Op::Len(_) | ir::Op::Const(_) | ir::Op::Bool(_) => false,
            op => op.operands().iter().any(|&a| a < i && secret[a]),
        };
    }
    secret
}

/// The interactive (multiplicative) depth of a circuit: the largest number
/// of interactive nodes on any path, where a node is interactive if it is a
/// `Mul` of two secret operands or a `DivPublic` of a secret dividend. This
/// is the number of communication rounds of the online phase, apart from
/// input sharing and output opening, for a circuit without comparisons.
///
/// It does **not** count the rounds of the comparison family (`Less`,
/// `Equal`, `And`, `Or`, `Select`, `ToRing`, `Min`/`Max`/`ArgMin`/`ArgMax`):
/// those depend on the protocol's constructions and, for `Min`/`Max`, on
/// the vector lengths, and the executor's planner counts them (see the cost
/// table in `docs/language.md`).
pub fn interactive_depth(circuit: &ir::Circuit) -> usize {
    let secret = secret_nodes(circuit);
    let mut depth = vec![0usize; circuit.nodes.len()];
    let mut max = 0;
    for (i, node) in circuit.nodes.iter().enumerate() {
        let ops = node.op.operands();
        let below = ops.iter().filter(|&&a| a < i).map(|&a| depth[a]).max().unwrap_or(0);
        let interactive = match node.op {
            ir::Op::Mul(a, b) => secret[a] && secret[b],
            ir::Op::DivPublic(a, _) => secret[a],
            _ => false,
        };
        depth[i] = below + usize::from(interactive);
        max = max.max(depth[i]);
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_sha256_of_exact_text() {
        let h = program_hash("");
        assert_eq!(h[..4], [0xe3, 0xb0, 0xc4, 0x42]);
        assert_ne!(program_hash("output x = 1"), program_hash("output x = 1\n"));
    }

    #[test]
    fn error_display() {
        let e = CompileError { line: 3, column: 7, message: "boom".into() };
        assert_eq!(e.to_string(), "line 3, column 7: boom");
    }

    #[test]
    fn job_party_list_is_validated() {
        assert!(compile("output x = 1", &[]).is_err());
        let dup = vec!["a".to_string(), "a".to_string()];
        assert!(compile("output x = 1", &dup).unwrap_err().message.contains("twice"));
    }
}
