//! `range_check`: a secret intermediate that leaves the range fails the job
//! at the operation's position, under every protocol, exactly where
//! `program::plain` says it does; in range, the outputs are unchanged.

mod common;

use cohort_worker::program::compile;
use cohort_worker::program::plain::{in_range, product_fits, significant_bits};
use cohort_worker::ring::from_signed;
use common::backends::{BACKENDS, Backend, check_within, run};

fn enc(v: &[i64]) -> Vec<u64> {
    v.iter().map(|x| from_signed(*x)).collect()
}

#[test]
fn the_rules_on_their_edges() {
    assert_eq!(significant_bits(0), 0);
    assert_eq!(significant_bits(from_signed(-1)), 0);
    assert_eq!(significant_bits(1), 1);
    assert_eq!(significant_bits(from_signed(-2)), 1);
    assert_eq!(significant_bits(from_signed(i64::MAX)), 63);
    assert_eq!(significant_bits(from_signed(i64::MIN)), 63);
    let edge = 1i64 << 62;
    assert!(in_range(from_signed(edge - 1)) && in_range(from_signed(-edge)));
    assert!(!in_range(from_signed(edge)) && !in_range(from_signed(-edge - 1)));
    // Two secrets: the bit-length rule accepts below 2^60, refuses 2^62.
    assert!(product_fits(from_signed((1 << 30) - 1), from_signed((1 << 30) - 1), true));
    assert!(product_fits(from_signed(1 << 30), from_signed((1 << 30) - 1), true));
    assert!(!product_fits(from_signed(1 << 31), from_signed(1 << 30), true));
    // A public factor: exact.
    assert!(product_fits(from_signed((1 << 31) - 1), from_signed(1 << 31), false));
    assert!(!product_fits(from_signed(1 << 31), from_signed(1 << 31), false));
    assert!(product_fits(from_signed(-(1 << 31)), from_signed((1 << 31) - 1), false));
}

#[test]
fn the_directive_is_checked() {
    let p = vec!["a".to_string(), "b".to_string()];
    let twice = compile("range_check\nrange_check\noutput x = 1", &p).unwrap_err();
    assert!(twice.message.contains("already set at line 1"), "{twice}");
    let late = compile("output x = 1\nrange_check", &p).unwrap_err();
    assert!(late.message.contains("must come before"), "{late}");
    let c = compile("fixed_point 8\nrange_check\ninput x: fixed[] from a\noutput y = x * x", &p).expect("compiles");
    assert_eq!(c.checks.len(), 1);
    let none = compile("input x: fixed[] from a\noutput y = x * x", &p).expect("compiles");
    assert!(none.checks.is_empty(), "checks only with the directive");
    // `range_check` is reserved.
    assert!(compile("let range_check = 1\noutput x = 1", &p).is_err());
}

const SOURCE: &str = "range_check\n\
    input x: fixed[] from party-0\n\
    input y: fixed[] from party-1\n\
    input k: int from party-1\n\
    let p = x * y\n\
    let s = sum(x) + sum(y)\n\
    output p = p\n\
    output q = s / 3\n\
    output big = x < y\n\
    output scaled = x * 3\n\
    output mixed = x + k\n";

/// Where in `SOURCE` each check sits: the product `x * y`, the division
/// of the sum, the scaling by 3, and the promotion of `k` in `x + k`.
const PRODUCT: (u32, u32) = (5, 11);

async fn in_and_out_of_range(backend: Backend) {
    let f = 1i64 << 16;
    // In range: the outputs are plain's, checks and all.
    let x = enc(&[3 * f, -f / 2, 0, 1000 * f]);
    let y = enc(&[2 * f, 7 * f, -f, 1000 * f]);
    let inputs = vec![vec![("x", x)], vec![("y", y), ("k", enc(&[5]))], vec![]];
    // Truncations and divisions are exact to within one unit.
    check_within(backend, 3, SOURCE, inputs, |name| i64::from(matches!(name, "p" | "q"))).await;
    // A product of 2^31 and 2^31 (encoded) leaves the range: every party
    // fails at the product, as plain does, and nobody gets an output.
    let big = enc(&[3 * f, 1 << 31]);
    let run = run(backend, 3, SOURCE, vec![vec![("x", big.clone())], vec![("y", big), ("k", enc(&[5]))], vec![]]).await;
    let err = run.plain.expect_err("plain refuses");
    assert_eq!((err.span.line, err.span.column), PRODUCT, "{err}");
    for (party, result) in run.results.iter().enumerate() {
        let e = result.as_ref().expect_err("the job fails").to_string();
        assert!(e.contains("line 5, column 11") && e.contains("left the range"), "{backend:?} party {party}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_checks_under_every_protocol() {
    for backend in BACKENDS {
        in_and_out_of_range(backend).await;
    }
}

/// The MPC check agrees with plain's rule on products around its edges:
/// the job fails exactly when plain does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_product_rule_matches_plain_at_its_edges() {
    let source = "range_check\ninput x: int[] from party-0\ninput y: int[] from party-1\noutput p = x * y\n";
    let pairs: &[(i64, i64)] = &[
        ((1 << 30) - 1, (1 << 31) - 1),
        (1 << 30, 1 << 30),
        (1 << 30, 1 << 31),
        (-(1 << 31), 1 << 29),
        (-(1 << 31) - 1, 1 << 30),
        (1 << 61, 0),
        (1 << 61, 1),
        (1 << 61, 2),
        (-1, -(1 << 61)),
        (0, (1 << 62) - 1),
        (-1, (1 << 62) - 1),
        (-(1 << 31), -(1 << 31)),
    ];
    // And pairs of random magnitudes around the edge (bits 28 to 34).
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut pairs = pairs.to_vec();
    for _ in 0..12 {
        let mut draw = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let bits = 28 + state % 7;
            let v = (state >> 8) as i64 & ((1 << bits) - 1);
            if state & 1 == 1 { -v } else { v }
        };
        pairs.push((draw(), draw()));
    }
    for backend in [Backend::AdditiveDealer, Backend::Replicated] {
        for &(a, b) in &pairs {
            let run = run(backend, 3, source, vec![vec![("x", enc(&[a, 5]))], vec![("y", enc(&[b, 7]))], vec![]]).await;
            let plain_ok = run.plain.is_ok();
            for result in &run.results {
                assert_eq!(result.is_ok(), plain_ok, "{backend:?}: {a} * {b}: {:?}", result.as_ref().err());
            }
        }
    }
}

/// Range checks on the public scalings (an int promoted to fixed, a
/// product with a constant) are exact: the documented range passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_factors_are_checked_exactly() {
    let source = "range_check\ninput n: int[] from party-0\ninput x: fixed[] from party-1\noutput y = n + x\n";
    let limit = (1i64 << 46) - 1; // |n| < 2^(62 - f) at f = 16
    let ok =
        run(Backend::AdditiveDealer, 2, source, vec![vec![("n", enc(&[limit, -limit]))], vec![("x", enc(&[1, 2]))]])
            .await;
    assert!(ok.plain.is_ok() && ok.results.iter().all(Result::is_ok));
    let over =
        run(Backend::AdditiveDealer, 2, source, vec![vec![("n", enc(&[limit + 1, 0]))], vec![("x", enc(&[1, 2]))]])
            .await;
    assert!(over.plain.is_err() && over.results.iter().all(Result::is_err));
}
