//! `cargo xtask eval [--scale N]`: builds the tracer, then runs the labelled lab corpus
//! (`rst-tracer-lab/src/bin/eval.rs`): honest resets behind a lossy router and forged resets, with
//! the tracer on the server and on the router, counted per class into `docs/eval.md`. Needs root.

use anyhow::Result;

use crate::{exec::workspace_root, lab::run_lab_program};

/// Options of `cargo xtask eval`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Connections of the largest honest class; the other classes run a fixed share of it.
    /// (The eval program checks the range.)
    #[arg(long, default_value_t = 1200)]
    pub scale: u32,
}

/// Builds and runs the evaluation.
///
/// # Errors
/// Not root, a failed build, or a failed run.
pub fn run(opts: &Options) -> Result<()> {
    let report = workspace_root().join("docs/eval.md");
    run_lab_program(
        "eval",
        &[
            "--scale".into(),
            opts.scale.to_string().into(),
            "--report".into(),
            report.into_os_string(),
        ],
    )
}
