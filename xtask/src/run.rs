//! `cargo xtask run [-- ARGS]`: build, then run the tracer.

use std::process::Command;

use anyhow::{bail, Result};

use crate::{
    build,
    exec::{exec, is_root},
};

/// Options of `cargo xtask run`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Arguments for rst-tracer (after `--`); none traces the default-route interface.
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// Builds and runs the tracer.
///
/// # Errors
/// Not root, or a failed build or run.
pub fn run(opts: &Options) -> Result<()> {
    let binary = build::run(&build::Options { debug: false })?;
    if !is_root() {
        bail!("the tracer loads eBPF programs: run as root (sudo -E cargo xtask run), or run {} with sudo", binary.display());
    }
    exec(Command::new(&binary).args(&opts.args))
}
