//! The deployment files of `deploy/`: the systemd unit verifies, and the command lines of the
//! unit, the DaemonSet and the image are ones the tracer accepts.

use std::{path::Path, process::Command};

use clap::Parser;
use rst_tracer::cli::{Cli, Command as Sub};

/// A file of `deploy/`.
fn deploy(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The unit's ExecStart, split into words.
fn exec_start(unit: &str) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    line.split_whitespace().map(str::to_string).collect()
}

#[test]
fn the_unit_runs_live_with_json_and_metrics_on_loopback() {
    let words = exec_start(&deploy("rst-tracer.service"));
    let cli = Cli::try_parse_from(&words).unwrap();
    let Some(Sub::Live(live)) = cli.command else {
        panic!("the unit must run live: {words:?}")
    };
    let o = live.resolve();
    assert_eq!(o.format, rst_tracer::report::Format::Json);
    let listen = o.metrics.listen.expect("metrics served");
    assert!(listen.ip().is_loopback(), "{listen}");
}

#[test]
fn the_daemonset_and_the_image_run_command_lines_the_tracer_takes() {
    let manifest = deploy("daemonset.yaml");
    let args = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("args: "))
        .expect("the container's args");
    let dockerfile = deploy("Dockerfile");
    let cmd = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("CMD "))
        .expect("the image's CMD");
    for list in [args, cmd] {
        let words: Vec<String> = serde_json::from_str(list).unwrap();
        let cli = Cli::try_parse_from(std::iter::once("rst-tracer".to_string()).chain(words));
        assert!(cli.is_ok(), "{list}: {:?}", cli.err());
    }
    assert!(manifest.contains("containerPort: 9464"));
    assert!(!manifest.contains("privileged: true"));
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        rst_tracer_lab::skip("it needs systemd-analyze (Debian package systemd)");
        return;
    }
    // verify checks that ExecStart's program exists: the one this test suite built.
    let unit = deploy("rst-tracer.service").replace(
        "/usr/local/bin/rst-tracer",
        env!("CARGO_BIN_EXE_rst-tracer"),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rst-tracer.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}
