//! `cargo xtask fuzz [--seconds N] [--target T]`: runs each fuzz target of `fuzz/` (cargo-fuzz,
//! libFuzzer, on nightly) for a bounded time, the capture target seeded with the shared corpus's
//! captures. A crash fails the command and names the input libFuzzer saved; copied into
//! `fuzz/regressions/<target>/`, it is replayed by the test suite from then on.

use std::{fs, path::Path, process::Command};

use anyhow::{bail, Context, Result};

use crate::{
    exec::{nightly_cargo, workspace_root},
    toolchain,
};

/// The fuzz targets (`fuzz/Cargo.toml`).
const TARGETS: [&str; 3] = ["capture", "link", "decode"];
/// cargo-fuzz, installed from crates.io when missing.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Options of `cargo xtask fuzz`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Seconds to run each target.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub seconds: u64,
    /// Run only this target (capture, link or decode).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    pub target: Option<String>,
}

/// Installs cargo-fuzz if needed and runs the targets.
///
/// # Errors
/// A failed install or build, or a crash (the message names the saved input).
pub fn run(opts: &Options) -> Result<()> {
    ensure_cargo_fuzz()?;
    let root = workspace_root();
    let fuzz = root.join("fuzz");
    for target in TARGETS
        .iter()
        .filter(|t| opts.target.as_deref().is_none_or(|only| only == **t))
    {
        // A scratch corpus under target/, so what the fuzzer learns stays out of the tree.
        let corpus = root.join("target/fuzz-corpus").join(target);
        fs::create_dir_all(&corpus)?;
        if *target == "capture" {
            seed_captures(&root.join("../shared/captures"), &corpus)?;
        }
        eprintln!("xtask: fuzzing {target} for {} s", opts.seconds);
        let status = nightly_cargo()
            .current_dir(&fuzz)
            .args(["fuzz", "run", target])
            .arg(&corpus)
            .arg("--")
            .arg(format!("-max_total_time={}", opts.seconds))
            .arg("-rss_limit_mb=2048")
            .status()
            .context("running cargo fuzz")?;
        if !status.success() {
            bail!(
                "fuzz target {target} failed ({status}): the crashing input is under {}; copy it \
                 into fuzz/regressions/{target}/ and fix the crash",
                fuzz.join("artifacts").join(target).display()
            );
        }
    }
    Ok(())
}

/// Copies every capture of the shared corpus into the capture target's corpus.
fn seed_captures(shared: &Path, corpus: &Path) -> Result<()> {
    let mut dirs = vec![shared.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = path.to_string_lossy();
            if path.is_dir() {
                dirs.push(path);
            } else if name.ends_with(".pcap") || name.ends_with(".pcapng") {
                let flat = path
                    .strip_prefix(shared)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('/', "_");
                fs::copy(&path, corpus.join(flat))?;
            }
        }
    }
    Ok(())
}

fn ensure_cargo_fuzz() -> Result<()> {
    let installed = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !installed {
        toolchain::cargo_install("cargo-fuzz", CARGO_FUZZ_VERSION, "a few minutes")?;
    }
    Ok(())
}
