//! `cargo xtask bench --check`: the figures against the baseline recorded
//! in `BENCHMARKS.md`, whose first fenced `json` block is a [`Baseline`]
//! (`--json` writes one under `"baseline"`, ready to paste). A tracked
//! figure (one with a direction, see [`Better`]) regresses when it is more
//! than [`TOLERANCE`] worse than its recorded value; figures the baseline
//! does not have are new, not regressions.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::{Better, Figure, format_value};

/// Where the baseline lives, relative to the workspace root.
pub const BASELINE_FILE: &str = "BENCHMARKS.md";
/// How much worse than the baseline a figure may get: 20 %.
pub const TOLERANCE: f64 = 0.20;
/// The date the recorded baseline is of.
pub const RECORDED_ON: &str = "2026-11-21";

/// One recorded figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    pub value: f64,
    pub unit: String,
    pub better: Better,
}

/// The recorded figures and where they were measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub machine: String,
    pub date: String,
    pub figures: BTreeMap<String, Recorded>,
}

impl Baseline {
    /// The tracked figures of a run, as a baseline to record.
    pub fn of(figures: &[Figure], machine: &str) -> Self {
        Self {
            machine: machine.to_owned(),
            date: RECORDED_ON.to_owned(),
            figures: figures
                .iter()
                .filter_map(|f| {
                    let better = f.better?;
                    Some((
                        f.name.clone(),
                        Recorded {
                            value: f.value,
                            unit: f.unit.to_owned(),
                            better,
                        },
                    ))
                })
                .collect(),
        }
    }
}

/// The baseline in the first fenced `json` block of `markdown`.
pub fn parse(markdown: &str) -> Result<Baseline> {
    let start = markdown
        .find("```json")
        .context("no ```json block holding the baseline")?;
    let body = &markdown[start + "```json".len()..];
    let end = body
        .find("```")
        .context("the ```json block holding the baseline is not closed")?;
    let baseline: Baseline =
        serde_json::from_str(&body[..end]).context("the baseline block is not a baseline")?;
    if baseline.figures.is_empty() {
        bail!("the baseline records no figures");
    }
    Ok(baseline)
}

pub fn load(path: &Path) -> Result<Baseline> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the baseline {}", path.display()))?;
    parse(&text).with_context(|| format!("{}", path.display()))
}

/// A tracked figure more than [`TOLERANCE`] worse than recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Regression {
    pub name: String,
    pub recorded: f64,
    pub value: f64,
    pub unit: String,
}

/// Every tracked figure of `figures` that regressed against `baseline`.
pub fn regressions(figures: &[Figure], baseline: &Baseline) -> Vec<Regression> {
    figures
        .iter()
        .filter_map(|f| {
            let recorded = baseline.figures.get(&f.name)?;
            let worse = match f.better? {
                Better::Lower => f.value > recorded.value * (1.0 + TOLERANCE),
                Better::Higher => f.value < recorded.value * (1.0 - TOLERANCE),
            };
            worse.then(|| Regression {
                name: f.name.clone(),
                recorded: recorded.value,
                value: f.value,
                unit: f.unit.to_owned(),
            })
        })
        .collect()
}

/// What `--check` found, for people.
pub fn render(regressions: &[Regression], baseline: &Baseline) -> String {
    let mut out = format!(
        "--check against {BASELINE_FILE} ({}, {}): ",
        baseline.date, baseline.machine
    );
    if regressions.is_empty() {
        out += "no figure regressed by more than 20%";
        return out;
    }
    out += &format!("{} regressed by more than 20%", regressions.len());
    for r in regressions {
        out += &format!(
            "\n  {}: {} {} (recorded {} {})",
            r.name,
            format_value(r.value),
            r.unit,
            format_value(r.recorded),
            r.unit
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::Target;
    use super::*;

    fn figures(init: f64, rate: f64, p99: f64) -> Vec<Figure> {
        vec![
            Figure::with_target("init", init, "ms", Target::Below(25.0)),
            Figure::tracked("rate", rate, "records/s", Better::Higher),
            Figure::info("p99", p99, "ms"),
        ]
    }

    #[test]
    fn a_recorded_baseline_round_trips_through_markdown() {
        let baseline = Baseline::of(&figures(4.0, 1000.0, 9.0), "test machine");
        assert_eq!(baseline.figures.len(), 2, "p99 is not tracked");
        let markdown = format!(
            "# Benchmarks\n\ntext\n\n```json\n{}\n```\n\nmore ```json not this\n",
            serde_json::to_string_pretty(&baseline).unwrap()
        );
        assert_eq!(parse(&markdown).unwrap(), baseline);
        assert!(parse("# nothing").is_err());
        assert!(parse("```json\n{\"machine\":1}\n```").is_err());
        assert!(parse("```json\n{\"machine\":\"m\",\"date\":\"d\",\"figures\":{}}\n```").is_err());
    }

    #[test]
    fn only_tracked_figures_more_than_20_percent_worse_regress() {
        let baseline = Baseline::of(&figures(4.0, 1000.0, 9.0), "m");
        // Within 20 % either way, and better, is fine; p99 is not tracked.
        assert!(regressions(&figures(4.79, 801.0, 90.0), &baseline).is_empty());
        assert!(regressions(&figures(1.0, 5000.0, 9.0), &baseline).is_empty());
        let worse = regressions(&figures(4.81, 799.0, 9.0), &baseline);
        let names: Vec<&str> = worse.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["init", "rate"]);
        assert_eq!((worse[0].recorded, worse[0].value), (4.0, 4.81));
        let text = render(&worse, &baseline);
        assert!(
            text.contains("2 regressed") && text.contains("recorded 4.00 ms"),
            "{text}"
        );
        // A figure the baseline lacks is new, not a regression.
        let new = vec![Figure::tracked("new", 1.0, "x", Better::Lower)];
        assert!(regressions(&new, &baseline).is_empty());
    }
}
