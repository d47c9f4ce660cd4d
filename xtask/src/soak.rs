//! `cargo xtask soak [--minutes N]`: builds the tracer, then runs it under continuous lab load
//! with churn (`rst-tracer-lab/src/bin/soak.rs`), printing its resident memory over time; fails
//! when the memory leaves its bound or a reset the lab made is neither reported nor counted.
//! Needs root.

use anyhow::Result;

use crate::lab::run_lab_program;

/// Options of `cargo xtask soak`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Minutes to run.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
}

/// Builds and runs the soak.
///
/// # Errors
/// Not root, a failed build, or a failed soak.
pub fn run(opts: &Options) -> Result<()> {
    run_lab_program("soak", &[opts.minutes.to_string().into()])
}
