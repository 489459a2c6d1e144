//! Joint salary statistics among three banks, none of which reveals its
//! payroll: each bank is a party with its own CA, the parties talk over
//! loopback TLS 1.3, and a trusted dealer supplies the preprocessing.
//!
//! ```sh
//! cargo run --release -p cohort-worker --example salary_stats
//! ```

use cohort_worker::executor::OwnInputs;
use cohort_worker::local::LocalFederation;
use cohort_worker::program::compile;
use std::error::Error;
use std::sync::Arc;
use std::time::Instant;

const PROGRAM: &str = "\
# Joint salary statistics: every bank contributes its payroll.
input salaries: fixed[] from each
let all = concat(salaries)
output count = len(all)
output mean = mean(all)
output variance = variance(all) to bank-a, bank-b
";

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let names: Vec<String> = ["bank-a", "bank-b", "bank-c"].map(String::from).to_vec();
    let payrolls: Vec<Vec<f64>> = vec![
        (0..1200).map(|i| 3000.0 + (i % 97) as f64 * 25.5).collect(),
        (0..800).map(|i| 4200.0 + (i % 61) as f64 * 40.25).collect(),
        (0..300).map(|i| 2500.0 + (i % 13) as f64 * 110.0).collect(),
    ];

    let circuit = Arc::new(compile(PROGRAM, &names)?);
    let federation = LocalFederation::new(names.clone()).await?;
    let mut inputs = Vec::new();
    for payroll in &payrolls {
        let mut own = OwnInputs::new();
        own.insert_values(&circuit, "salaries", payroll)?;
        inputs.push(own);
    }
    let started = Instant::now();
    let results = federation.run(circuit.clone(), federation.consent(PROGRAM), inputs).await?;
    let elapsed = started.elapsed();

    for (name, result) in names.iter().zip(results) {
        let output = result?;
        println!("{name}:");
        for value in &output.outputs {
            match value.decode(circuit.frac_bits) {
                Some(v) if value.is_vector => println!("  {} = {v:?}", value.name),
                Some(v) => println!("  {} = {}", value.name, v[0]),
                None => println!("  {} = (not a recipient)", value.name),
            }
        }
        let s = output.stats;
        println!("  rounds {}, layers {}, bytes sent {}", s.rounds, s.layers, s.bytes_sent);
    }
    let all: Vec<f64> = payrolls.concat();
    let mean = all.iter().sum::<f64>() / all.len() as f64;
    let variance = all.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / all.len() as f64;
    println!("plaintext check: count {} mean {mean} variance {variance}", all.len());
    println!("wall time {:.3} s", elapsed.as_secs_f64());
    Ok(())
}
