//! Shared by the benchmarks: their settings from `cargo xtask bench`, the median of rounds, and
//! `summary.json`, where each writes its own section and keeps the others.
#![allow(
    dead_code,
    reason = "each benchmark uses a different part of this module"
)]

use std::{
    env, fs,
    path::{Path, PathBuf},
};

use anyhow::Result;
use serde_json::{json, Map, Value};

/// Sets `section` of `out_dir/summary.json` to `values`, keeping the other sections.
pub fn write_section(out_dir: &Path, section: &str, values: Map<String, Value>) -> Result<()> {
    fs::create_dir_all(out_dir)?;
    let path = out_dir.join("summary.json");
    let mut doc: Value = fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(json!({}));
    doc[section] = Value::Object(values);
    fs::write(&path, serde_json::to_vec_pretty(&doc)?)?;
    println!("wrote {}", path.display());
    Ok(())
}

/// Records a budget in a section's `values` (`budget`, `budget_met`) and prints its verdict.
/// Benchmarks never fail on a missed budget, so every section is measured; `cargo xtask bench`
/// reads the verdicts from `summary.json` at the end and fails when one was missed.
pub fn budget(values: &mut Map<String, Value>, what: &str, measured: &str, met: bool) {
    let verdict = if met { "met" } else { "MISSED" };
    println!("  budget: {what}: {measured}: {verdict}");
    values.insert("budget".into(), json!(what));
    values.insert("budget_met".into(), json!(met));
}

/// A numeric setting from the environment (`cargo xtask bench` sets them), or `default`.
pub fn env_u32(name: &str, default: u32) -> u32 {
    env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Rounds per measurement (`RST_TRACER_BENCH_ROUNDS`, at least 1).
pub fn rounds() -> u32 {
    env_u32("RST_TRACER_BENCH_ROUNDS", 5).max(1)
}

/// Where `summary.json` goes (`RST_TRACER_BENCH_OUT`, else `target/bench`).
pub fn out_dir() -> PathBuf {
    env::var_os("RST_TRACER_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| "target/bench".into())
}

/// The median of the rounds' values.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
