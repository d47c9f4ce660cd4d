//! `summary.json`, shared by the benchmarks: each writes its own section and keeps the others.

use std::{fs, path::Path};

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
