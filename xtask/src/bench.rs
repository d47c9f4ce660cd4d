//! `cargo xtask bench`: benchmarks, each measured beside its baseline in the same run. Prints a
//! table and writes `target/bench/summary.json`. Needs root.

use std::process::Command;

use anyhow::{bail, Result};

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

/// Builds, then runs every benchmark: kernel, replay, stack, userspace, flood, veth.
///
/// # Errors
/// Not root, a failed build, or a failed benchmark.
pub fn run(opts: &Options) -> Result<()> {
    if !is_root() {
        bail!("the benchmarks load eBPF programs: run `sudo -E cargo xtask bench`");
    }
    let dir = build::build_ebpf()?;
    toolchain::ensure_bench_tools()?;
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
                "stack",
                "--bench",
                "userspace",
                "--bench",
                "flood",
                "--bench",
                "veth",
            ])
            .env("RST_TRACER_EBPF_OBJECT", dir.join("rst-tracer-ebpf"))
            .env(
                "RST_TRACER_BASELINE_OBJECT",
                dir.join("rst-tracer-baseline"),
            )
            .env("RST_TRACER_BENCH_REPEAT", opts.repeat.to_string())
            .env("RST_TRACER_BENCH_ROUNDS", opts.rounds.to_string())
            .env(
                "RST_TRACER_BENCH_OUT",
                workspace_root().join("target/bench"),
            ),
    )
}
