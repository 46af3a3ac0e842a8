//! Detector throughput: [`classify`] over the fixture mix (every record in
//! `core/tests/fixtures`, flagged or not) with the watch list of
//! `glasswatch.toml`, on records parsed beforehand, on one thread.
//!
//! `cargo bench -p glasswatch-core --bench detect`; `cargo xtask bench
//! --only detector` runs it and reads criterion's estimate (records/s
//! against the 500,000 target).

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use glasswatch_core::input::for_each_record;
use glasswatch_core::{Config, Record, WatchList, classify};

/// The benchmark's id: criterion writes its estimates under
/// `criterion/detector/classify_fixture_mix/`.
const GROUP: &str = "detector";
const FUNCTION: &str = "classify_fixture_mix";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("core lives inside the workspace")
        .to_path_buf()
}

/// The watch list of `glasswatch.toml` and every readable fixture record.
fn fixture_mix() -> (WatchList, Vec<Record>) {
    let root = workspace_root();
    let text = std::fs::read_to_string(root.join("glasswatch.toml"))
        .expect("glasswatch.toml is part of the repository");
    let watch = Config::parse(&text, "glasswatch.toml")
        .expect("glasswatch.toml is valid")
        .watch_list()
        .expect("glasswatch.toml has a valid watch list");
    let dir = root.join("core/tests/fixtures");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the fixture directory is part of the repository")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json" || e == "jsonl"))
        .collect();
    files.sort();
    let mut records = Vec::new();
    for file in files {
        let reader = std::fs::File::open(&file).expect("a fixture file opens");
        for_each_record(reader, |(_, parsed)| records.extend(parsed.ok()))
            .expect("a fixture file reads");
    }
    assert!(!records.is_empty(), "no fixture record parsed");
    (watch, records)
}

fn detector(c: &mut Criterion) {
    let (watch, records) = fixture_mix();
    let flagged = records
        .iter()
        .filter(|r| !classify(&watch, r).is_empty())
        .count();
    eprintln!("fixture mix: {} records, {flagged} flagged", records.len());
    let mut group = c.benchmark_group(GROUP);
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function(FUNCTION, |b| {
        b.iter(|| {
            for record in &records {
                black_box(classify(black_box(&watch), black_box(record)));
            }
        });
    });
    group.finish();
}

criterion_group!(benches, detector);
criterion_main!(benches);
