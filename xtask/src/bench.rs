//! `cargo xtask bench`: benchmarks, each measured beside its baseline in the same run. Prints a
//! table and writes `target/bench/summary.json`, then lists every budget's verdict and fails
//! when one was missed. Needs root.

use std::{fs, path::Path, process::Command};

use anyhow::{bail, Context, Result};

use crate::{
    build,
    exec::{exec, is_root, workspace_root},
    toolchain,
};

/// Options of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Test runs per measurement (BPF_PROG_TEST_RUN repeat).
    #[arg(long, default_value_t = 1_000_000)]
    pub repeat: u32,
    /// Rounds per case; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
}

/// Every section `summary.json` must hold after a run; a missing one fails the bench.
const SECTIONS: [&str; 8] = [
    "kernel",
    "replay",
    "tracepoints",
    "userspace",
    "flood",
    "veth",
    "insitu",
    "veth_mtu",
];

/// Builds, then runs every benchmark: kernel, replay, tracepoints, userspace, flood, veth, insitu
/// (which writes the insitu and veth_mtu sections).
///
/// # Errors
/// Not root, a failed build, a failed benchmark, or a missed budget.
pub fn run(opts: &Options) -> Result<()> {
    if !is_root() {
        bail!("the benchmarks load eBPF programs: run `sudo -E cargo xtask bench`");
    }
    let dir = build::build_ebpf()?;
    toolchain::ensure_bench_tools()?;
    let out = workspace_root().join("target/bench");
    // Each benchmark adds its section: start from none, so no verdict is left from a past run.
    let _ = fs::remove_file(out.join("summary.json"));
    exec(
        Command::new("cargo")
            .current_dir(workspace_root())
            .args([
                "bench",
                "-p",
                "rst-tracer",
                "--bench",
                "kernel",
                "--bench",
                "replay",
                "--bench",
                "tracepoints",
                "--bench",
                "userspace",
                "--bench",
                "flood",
                "--bench",
                "veth",
                "--bench",
                "insitu",
            ])
            .env("RST_TRACER_EBPF_OBJECT", dir.join("rst-tracer-ebpf"))
            .env(
                "RST_TRACER_BASELINE_OBJECT",
                dir.join("rst-tracer-baseline"),
            )
            .env("RST_TRACER_BENCH_REPEAT", opts.repeat.to_string())
            .env("RST_TRACER_BENCH_ROUNDS", opts.rounds.to_string())
            .env("RST_TRACER_BENCH_OUT", &out),
    )?;
    verdicts(&out.join("summary.json"))
}

/// Prints every section's budget verdict from `summary`; fails when one was missed.
fn verdicts(summary: &Path) -> Result<()> {
    let text =
        fs::read_to_string(summary).with_context(|| format!("reading {}", summary.display()))?;
    let doc: serde_json::Value = serde_json::from_str(&text)?;
    let sections = doc.as_object().context("summary.json is not an object")?;
    let absent: Vec<&str> = SECTIONS
        .into_iter()
        .filter(|s| !sections.contains_key(*s))
        .collect();
    if !absent.is_empty() {
        bail!("summary.json lacks the sections {}", absent.join(", "));
    }
    let mut missed = Vec::new();
    println!("budgets ({}):", summary.display());
    for (section, values) in sections {
        let (Some(what), Some(met)) = (values["budget"].as_str(), values["budget_met"].as_bool())
        else {
            continue;
        };
        println!(
            "  {section:<10} {:<7} {what}",
            if met { "met" } else { "MISSED" }
        );
        if !met {
            missed.push(section.as_str());
        }
    }
    if !missed.is_empty() {
        bail!("budget missed in: {}", missed.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::verdicts;

    #[test]
    fn a_missed_budget_fails_and_is_named() {
        let dir = std::env::temp_dir().join(format!("xtask-verdicts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("summary.json");
        let write = |text: &str| std::fs::write(&path, text).unwrap();
        let all = |kernel_met: bool| {
            let mut doc = serde_json::Map::new();
            for s in super::SECTIONS {
                doc.insert(
                    s.into(),
                    serde_json::json!({"budget": s, "budget_met": true}),
                );
            }
            doc["kernel"]["budget_met"] = kernel_met.into();
            doc["replay"] = serde_json::json!({"records_per_s": 1.0});
            serde_json::Value::Object(doc).to_string()
        };
        write(&all(false));
        let err = verdicts(&path).unwrap_err().to_string();
        assert!(err.contains("kernel") && !err.contains("veth"), "{err}");
        write(&all(true));
        assert!(verdicts(&path).is_ok());
        write(r#"{"veth": {"budget": "gbps", "budget_met": true}}"#);
        let err = verdicts(&path).unwrap_err().to_string();
        assert!(err.contains("lacks") && err.contains("insitu"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
