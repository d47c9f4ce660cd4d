//! `cargo xtask test`: the whole suite. Builds the eBPF object, then runs every test of the
//! workspace; the kernel and lab tests need root and fail (never skip) without it.

use std::process::Command;

use anyhow::Result;

use crate::{
    build,
    exec::{exec, is_root, workspace_root},
};

/// Options of `cargo xtask test`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// Builds, then runs the tests.
///
/// # Errors
/// A failed build or a failed test.
pub fn run(opts: &Options) -> Result<()> {
    let dir = build::build_ebpf()?;
    if !is_root() {
        eprintln!(
            "xtask: not root: the kernel and lab tests will fail; run `sudo -E cargo xtask test`"
        );
    }
    exec(
        Command::new("cargo")
            .current_dir(workspace_root())
            .arg("test")
            .args(&opts.args)
            .env("RST_TRACER_EBPF_OBJECT", dir.join("rst-tracer-ebpf")),
    )
}
