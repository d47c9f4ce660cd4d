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

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Map, Value};

/// Sets `section` of `out_dir/summary.json` to `values`, keeping the other sections.
pub fn write_section(out_dir: &Path, section: &str, values: Map<String, Value>) -> Result<()> {
    fs::create_dir_all(out_dir)?;
    let path = out_dir.join("summary.json");
    // A missing file starts a new document; a damaged one is an error, never silently
    // replaced (it would drop the sections earlier benches of the run wrote).
    let mut doc: Value = match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| anyhow!("{} is not JSON: {e}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => json!({}),
        Err(e) => return Err(anyhow!("reading {}: {e}", path.display())),
    };
    let Some(sections) = doc.as_object_mut() else {
        bail!("{} is not a JSON object", path.display());
    };
    sections.insert(section.to_string(), Value::Object(values));
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
