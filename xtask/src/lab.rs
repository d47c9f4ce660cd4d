//! `cargo xtask lab [--report]`: builds the tracer, then runs the namespace lab
//! (`rst-tracer-lab/src/bin/lab.rs`): the demo, or every scenario with the table written to
//! `docs/lab-report.md`. Needs root.

use std::{ffi::OsString, process::Command};

use anyhow::{bail, Result};

use crate::{
    build,
    exec::{exec, is_root, workspace_root},
};

/// Options of `cargo xtask lab`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Run every scenario and write the report table to docs/lab-report.md.
    #[arg(long)]
    pub report: bool,
}

/// Builds and runs the lab.
///
/// # Errors
/// Not root, a failed build, or a failed scenario.
pub fn run(opts: &Options) -> Result<()> {
    let mut args = Vec::new();
    if opts.report {
        args.push("--report".into());
        args.push(workspace_root().join("docs/lab-report.md").into_os_string());
    }
    run_lab_program("lab", &args)
}

/// Builds the tracer, then runs the lab program `program` (a binary of the rst-tracer-lab crate)
/// with `args`, telling it where the tracer binary and the eBPF object are. Needs root.
///
/// # Errors
/// Not root, a failed build, or a failed run.
pub fn run_lab_program(program: &str, args: &[OsString]) -> Result<()> {
    if !is_root() {
        bail!("the {program} makes network namespaces and loads eBPF programs: run `sudo -E cargo xtask {program}`");
    }
    let binary = build::run(&build::Options { debug: false })?;
    let root = workspace_root();
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&root)
        .args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "rst-tracer-lab",
            "--bin",
            program,
            "--",
        ])
        .args(args)
        .env("RST_TRACER_BIN", &binary)
        .env(
            "RST_TRACER_EBPF_OBJECT",
            root.join("target/bpfel-unknown-none/release/rst-tracer-ebpf"),
        );
    exec(&mut cmd)
}
