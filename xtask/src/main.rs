//! `cargo xtask`: the only entry points a user needs.
//!
//! - `build`: install what is missing (nightly rust-src, bpf-linker 0.10), build the eBPF object
//!   and the userspace binary that embeds it;
//! - `run [-- ARGS]`: build, then run the tracer (default: the default-route interface);
//! - `test`: build, then the whole test suite (unit, kernel and lab tests; needs root);
//! - `bench`: build, then the benchmarks, each beside its baseline;
//! - `lab [--report]`: build, then the namespace lab (demo, or every scenario scored);
//! - `eval [--scale N]`: build, then the labelled lab corpus, verdicts counted per class;
//! - `fuzz [--seconds N] [--target T]`: each fuzz target for a bounded time (cargo-fuzz);
//! - `soak [--minutes N]`: build, then the tracer under continuous lab load, memory over time.

mod bench;
mod build;
mod eval;
mod exec;
mod fuzz;
mod lab;
mod run;
mod soak;
mod test;
mod toolchain;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, run, test and benchmark rst-tracer"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install missing tools, build the eBPF object and the userspace binary.
    Build(build::Options),
    /// Build, then run the tracer with the given arguments (as root).
    Run(run::Options),
    /// Build, then run every test (unit, kernel, lab). Needs root.
    Test(test::Options),
    /// Build, then run the benchmarks and print ratios to their baselines. Needs root.
    Bench(bench::Options),
    /// Build, then run the namespace lab: the demo, or every scenario with --report. Needs root.
    Lab(lab::Options),
    /// Build, then score the verdicts on a labelled lab corpus (docs/eval.md). Needs root.
    Eval(eval::Options),
    /// Run each fuzz target (capture reader, link layer, ring decoder) for a bounded time.
    Fuzz(fuzz::Options),
    /// Build, then run the tracer under continuous lab load with churn. Needs root.
    Soak(soak::Options),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Build(o) => build::run(&o).map(|_| ()),
        Command::Run(o) => run::run(&o),
        Command::Test(o) => test::run(&o),
        Command::Bench(o) => bench::run(&o),
        Command::Lab(o) => lab::run(&o),
        Command::Eval(o) => eval::run(&o),
        Command::Fuzz(o) => fuzz::run(&o),
        Command::Soak(o) => soak::run(&o),
    };
    if let Err(e) = result {
        eprintln!("xtask: {e:#}");
        std::process::exit(1);
    }
}
