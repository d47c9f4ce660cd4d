//! Installing what the eBPF build needs and a fresh machine lacks: the nightly toolchain's
//! `rust-src` component and bpf-linker 0.10.x (0.11+ needs a system LLVM 21 that Debian 12 lacks).

use std::process::Command;

use anyhow::{Context, Result};

use crate::exec::{exec, output};

/// The bpf-linker versions that work here.
const BPF_LINKER_VERSION: &str = "~0.10";

/// Programs the test suite drives, and the Debian packages that provide them: tshark reads back
/// the pcapng that `--pcap-out` writes; promtool checks the metrics exposition. Debian ships
/// promtool only in `prometheus`, which brings the server too: on a host where systemd runs, the
/// package's own scripts enable and start it (port 9090); in CI and in the development VM
/// systemd is not running and nothing starts. debootstrap and systemd-nspawn boot a Debian tree
/// with a real systemd for the service unit's test (systemd-container brings systemd onto the
/// host as a package; the host's PID 1 stays what it was).
const TEST_TOOLS: [(&str, &str); 6] = [
    ("tcpdump", "tcpdump"),
    ("nft", "nftables"),
    ("tshark", "tshark"),
    ("promtool", "prometheus"),
    ("debootstrap", "debootstrap"),
    ("systemd-nspawn", "systemd-container"),
];
/// Programs the benchmarks drive or compare against: tshark, capinfos to count records, iperf3
/// for throughput, tcpdump, ethtool to turn offloads off.
const BENCH_TOOLS: [(&str, &str); 5] = [
    ("tshark", "tshark"),
    ("capinfos", "tshark"),
    ("iperf3", "iperf3"),
    ("tcpdump", "tcpdump"),
    ("ethtool", "ethtool"),
];

/// Python modules the tests run (`python3 -m MODULE`), and the PyPI requirement that provides
/// each: the DaemonSet's validators.
const TEST_PYTHON_TOOLS: [(&str, &str); 2] = [
    ("kubernetes_validate", "kubernetes-validate==1.37.0"),
    ("yamllint", "yamllint==1.38.0"),
];

/// Installs the programs the tests drive (Debian packages, PyPI modules) when they are missing.
/// A Python module that pip cannot install (no pip, or a system Python that refuses it, PEP 668)
/// is only warned about: the tests that need it say so, and fail under CI=true.
///
/// # Errors
/// When a missing Debian package cannot be installed.
pub fn ensure_test_tools() -> Result<()> {
    ensure_packages(&TEST_TOOLS)?;
    if let Err(e) = ensure_python_modules(&TEST_PYTHON_TOOLS) {
        eprintln!("xtask: warning: {e:#}; the DaemonSet validation test cannot run");
    }
    Ok(())
}

fn ensure_python_modules(modules: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = modules
        .iter()
        .filter(|(module, _)| {
            Command::new("python3")
                .args(["-m", module, "--version"])
                .output()
                .map(|o| !o.status.success())
                .unwrap_or(true)
        })
        .map(|(_, requirement)| *requirement)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "xtask: installing {} (PyPI packages the tests use)",
        missing.join(" ")
    );
    exec(
        Command::new("python3")
            .args(["-m", "pip", "install", "--quiet"])
            .args(&missing),
    )
}

/// Installs the programs the benchmarks compare against when they are missing.
///
/// # Errors
/// When a missing package cannot be installed.
pub fn ensure_bench_tools() -> Result<()> {
    ensure_packages(&BENCH_TOOLS)
}

fn ensure_packages(tools: &[(&str, &str)]) -> Result<()> {
    let mut missing: Vec<&str> = tools
        .iter()
        .filter(|(cmd, _)| {
            Command::new(cmd)
                .arg("--version")
                .output()
                .map(|o| !o.status.success())
                .unwrap_or(true)
        })
        .map(|(_, pkg)| *pkg)
        .collect();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "xtask: installing {} (Debian packages the tests use)",
        missing.join(" ")
    );
    exec(Command::new("apt-get").arg("update").arg("-qq"))?;
    exec(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// Makes sure nightly with rust-src and bpf-linker 0.10 are installed.
///
/// # Errors
/// When an install step fails (the message names the command).
pub fn ensure() -> Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is needed to build the eBPF program")?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        eprintln!("xtask: installing the nightly toolchain (for the eBPF build)");
        exec(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))?;
    }
    let components = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if !components.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("xtask: adding rust-src to nightly (for -Z build-std=core)");
        exec(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    let linker_ok = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains(" 0.10."))
        .unwrap_or(false);
    if !linker_ok {
        cargo_install("bpf-linker", BPF_LINKER_VERSION, "about a minute")?;
    }
    Ok(())
}

/// Installs `krate` at `version` from crates.io (`cargo install --locked --force`), saying how
/// long it takes.
///
/// # Errors
/// When the install fails (the message names the command).
pub fn cargo_install(krate: &str, version: &str, takes: &str) -> Result<()> {
    eprintln!("xtask: installing {krate} {version} ({takes})");
    exec(Command::new("cargo").args([
        "install",
        krate,
        "--version",
        version,
        "--locked",
        "--force",
    ]))
}
