//! Renders one template of a chart (tests/support/chart.rs: the subset of
//! Helm's templating the chart uses) and prints it, or with `--spec` the
//! `spec` of its single object: the rule file `promtool` reads from a
//! PrometheusRule. Used by `.ci/run`.
//!
//!   cargo run -q -p cohort-operator --example render_chart -- \
//!     charts/cohort templates/prometheusrule.yaml '{"prometheusRule":{"enabled":true}}' --spec

#[path = "../tests/support/chart.rs"]
mod chart;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let spec = args.iter().any(|a| a == "--spec");
    let args: Vec<&String> = args.iter().filter(|a| *a != "--spec").collect();
    let (Some(dir), Some(template)) = (args.first(), args.get(1)) else {
        eprintln!("usage: render_chart CHART_DIR TEMPLATE [VALUES_JSON] [--spec]");
        return ExitCode::from(2);
    };
    let overrides = match args.get(2).map(|j| serde_json::from_str(j)) {
        None => serde_json::Value::Null,
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            eprintln!("render_chart: the values are not JSON: {e}");
            return ExitCode::from(2);
        }
    };
    let rendered = chart::Chart::load(std::path::Path::new(dir.as_str())).and_then(|c| {
        if !spec {
            return c.render(template, "cohort", "cohort-system", overrides);
        }
        match c.objects(template, "cohort", "cohort-system", overrides)?.as_slice() {
            [one] => serde_saphyr::to_string(&one["spec"]).map_err(|e| e.to_string()),
            other => Err(format!("{template} renders {} objects, not one", other.len())),
        }
    });
    match rendered {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("render_chart: {e}");
            ExitCode::FAILURE
        }
    }
}
