//! `cargo xtask build`: the eBPF object (nightly, bpfel, release, build-std=core), then the
//! userspace binary that embeds it.

use std::{path::PathBuf, process::Command};

use anyhow::{bail, Result};

use crate::{
    exec::{exec, nightly_cargo, workspace_root},
    toolchain,
};

/// Options of `cargo xtask build`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Build the userspace binary in debug mode (the eBPF object is always release: debug eBPF
    /// builds do not pass the verifier).
    #[arg(long)]
    pub debug: bool,
}

/// Builds the eBPF object only; returns the directory it is in.
///
/// # Errors
/// A missing tool that could not be installed, or a failed build.
pub fn build_ebpf() -> Result<PathBuf> {
    toolchain::ensure()?;
    let root = workspace_root();
    exec(nightly_cargo().current_dir(&root).args([
        "build",
        "-Z",
        "build-std=core",
        "--target",
        "bpfel-unknown-none",
        "--release",
        "-p",
        "rst-tracer-ebpf",
    ]))?;
    let dir = root.join("target/bpfel-unknown-none/release");
    for name in ["rst-tracer-ebpf", "rst-tracer-baseline"] {
        if !dir.join(name).is_file() {
            bail!(
                "the eBPF build finished but {} is missing",
                dir.join(name).display()
            );
        }
    }
    Ok(dir)
}

/// Builds everything; returns the tracer binary's path.
///
/// # Errors
/// As [`build_ebpf`], or a failed userspace build.
pub fn run(opts: &Options) -> Result<PathBuf> {
    let dir = build_ebpf()?;
    let object = dir.join("rst-tracer-ebpf");
    let root = workspace_root();
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&root)
        .args(["build", "-p", "rst-tracer"])
        .env("RST_TRACER_EBPF_OBJECT", &object);
    if !opts.debug {
        cmd.arg("--release");
    }
    exec(&mut cmd)?;
    let binary = root.join(if opts.debug {
        "target/debug/rst-tracer"
    } else {
        "target/release/rst-tracer"
    });
    eprintln!("xtask: built {} (eBPF object embedded)", binary.display());
    Ok(binary)
}
