//! The detector's throughput for `cargo xtask bench`: runs the criterion
//! bench `core/benches/detect.rs` (`cargo bench`, the release profile)
//! and reads its estimate: the median time per pass over the fixture mix,
//! and the records in a pass (its `Throughput::Elements`).

use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::{Figure, Target};
use crate::python::{target_dir, workspace_root};
use crate::run_command;

/// Classification of parsed records must keep up with this many per
/// second on one thread.
pub const DETECTOR_TARGET: f64 = 500_000.0;
/// Where criterion writes the bench's estimates, under its home.
const BENCH_DIR: &str = "detector/classify_fixture_mix";

/// What criterion measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectorReport {
    /// Records per pass (the fixture mix).
    pub records: u64,
    /// Median time of a pass (ns).
    pub median_ns: f64,
    pub records_per_sec: f64,
}

#[derive(Deserialize)]
struct Estimate {
    point_estimate: f64,
}

#[derive(Deserialize)]
struct Estimates {
    median: Estimate,
}

/// The report from criterion's `estimates.json` and `benchmark.json`.
pub fn read_estimates(estimates: &str, benchmark: &str) -> Result<DetectorReport> {
    let estimates: Estimates =
        serde_json::from_str(estimates).context("criterion's estimates.json is not readable")?;
    let benchmark: serde_json::Value =
        serde_json::from_str(benchmark).context("criterion's benchmark.json is not readable")?;
    let records = benchmark
        .pointer("/throughput/Elements")
        .and_then(serde_json::Value::as_u64)
        .context("the detector bench does not count its records (Throughput::Elements)")?;
    let median_ns = estimates.median.point_estimate;
    if median_ns <= 0.0 || records == 0 {
        bail!("criterion measured nothing: {records} records in {median_ns} ns");
    }
    Ok(DetectorReport {
        records,
        median_ns,
        records_per_sec: records as f64 / (median_ns * 1e-9),
    })
}

/// Run the criterion bench (shorter with `quick`) and report.
pub fn figures(quick: bool) -> Result<(Vec<Figure>, DetectorReport)> {
    let home = target_dir().join("criterion");
    let dir = home.join(BENCH_DIR);
    // Old estimates must not pass for this run's.
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    eprintln!("==> cargo bench -p glasswatch-core --bench detect (criterion)");
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(workspace_root())
        .env("CRITERION_HOME", &home)
        .args(["bench", "-p", "glasswatch-core", "--bench", "detect", "--"]);
    if quick {
        cargo.args([
            "--warm-up-time",
            "1",
            "--measurement-time",
            "2",
            "--sample-size",
            "20",
        ]);
    }
    run_command(&mut cargo, "run the detector bench")?;
    let read = |name: &str| {
        let path = dir.join("new").join(name);
        std::fs::read_to_string(&path).with_context(|| {
            format!(
                "criterion wrote no {} (is the bench still `{BENCH_DIR}`?)",
                path.display()
            )
        })
    };
    let report = read_estimates(&read("estimates.json")?, &read("benchmark.json")?)?;
    let figures = vec![
        Figure::with_target(
            "detector throughput (classify, parsed fixture mix, 1 thread)",
            report.records_per_sec,
            "records/s",
            Target::AtLeast(DETECTOR_TARGET),
        ),
        Figure::info(
            "detector time per record",
            report.median_ns / report.records as f64,
            "ns",
        ),
    ];
    Ok((figures, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_per_second_come_from_the_median_and_the_element_count() {
        let estimates =
            r#"{"mean":{"point_estimate":130000.0},"median":{"point_estimate":100000.0}}"#;
        let report = read_estimates(estimates, r#"{"throughput":{"Elements":65}}"#).unwrap();
        assert_eq!(report.records, 65);
        assert!((report.records_per_sec - 650_000.0).abs() < 1e-6);
        assert!(read_estimates(estimates, r#"{"throughput":{"Bytes":65}}"#).is_err());
        assert!(read_estimates(estimates, r#"{"throughput":null}"#).is_err());
        let zero = r#"{"median":{"point_estimate":0.0}}"#;
        assert!(read_estimates(zero, r#"{"throughput":{"Elements":65}}"#).is_err());
    }
}
