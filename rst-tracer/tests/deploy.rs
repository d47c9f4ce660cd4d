//! The deployment files of `deploy/`: the systemd unit verifies and runs under a real systemd,
//! the DaemonSet validates, and the command lines of the unit, the DaemonSet and the image are
//! ones the tracer accepts.

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

/// The DaemonSet against the Kubernetes 1.37 schemas (kubernetes-validate, strict: no field the
/// schema lacks) and yamllint's relaxed rules (warnings allowed, errors not). Both are PyPI
/// packages `cargo xtask test` installs.
#[test]
fn the_daemonset_passes_kubernetes_validate_and_yamllint() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/daemonset.yaml");
    for (module, args) in [
        ("kubernetes_validate", &["--strict", "-k", "1.37"][..]),
        ("yamllint", &["-d", "relaxed"][..]),
    ] {
        let Ok(out) = Command::new("python3")
            .args(["-m", module])
            .args(args)
            .arg(&manifest)
            .output()
        else {
            rst_tracer_lab::skip("it needs python3");
            return;
        };
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if said.contains("No module named") {
            rst_tracer_lab::skip(&format!(
                "it needs the Python module {module} (`cargo xtask test` installs it)"
            ));
            return;
        }
        assert!(out.status.success(), "{module}: {said}");
        if module == "kubernetes_validate" {
            assert_eq!(said.matches("passed for resource").count(), 2, "{said}");
        }
    }
}

/// The unit as a real systemd runs it: deploy/rst-tracer.service, unchanged, in a Debian tree
/// booted with systemd-nspawn in the lab's server namespace. It attaches to the default-route
/// interface, keeps only CAP_BPF (effective and bounding set) once attached, writes JSON to the
/// journal, serves metrics on loopback, reports the reset of a refused connect with the kernel's
/// reason, and stops cleanly. The first run makes the Debian tree (debootstrap, about 30 s).
#[test]
fn under_systemd_the_unit_traces_with_cap_bpf_alone_and_stops_cleanly() {
    use rst_tracer_lab::{lab, metrics, nspawn};
    use std::time::Duration;
    rst_tracer_lab::require_privileges!();
    if let Some(tool) = nspawn::missing_tool() {
        rst_tracer_lab::skip(&format!("it needs {tool} (`cargo xtask test` installs it)"));
        return;
    }
    let root = nspawn::debian_tree(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("systemd-root"));
    let bin = root.join("usr/local/bin/rst-tracer");
    std::fs::copy(env!("CARGO_BIN_EXE_rst-tracer"), &bin).unwrap();
    let units = root.join("etc/systemd/system");
    std::fs::write(
        units.join("rst-tracer.service"),
        deploy("rst-tracer.service"),
    )
    .unwrap();
    let wants = units.join("multi-user.target.wants/rst-tracer.service");
    let _ = std::fs::remove_file(&wants);
    std::os::unix::fs::symlink("/etc/systemd/system/rst-tracer.service", &wants).unwrap();

    let lab = lab::Lab::new(env!("CARGO_BIN_EXE_rst-tracer"));
    let log = tempfile::NamedTempFile::new().unwrap();
    let c = nspawn::Container::boot(&root, &lab.server, log.path());
    let journal = || {
        c.says(&[
            "journalctl",
            "-b",
            "0",
            "-u",
            "rst-tracer",
            "-o",
            "cat",
            "--no-pager",
        ])
    };
    // Said once attached and down to CAP_BPF.
    c.wait_for(Duration::from_secs(30), "the unit never attached", || {
        journal()
            .contains(&format!("tracing {}", lab::SERVER_IF))
            .then_some(())
    });
    let main_pid = c.says(&[
        "systemctl",
        "show",
        "-p",
        "MainPID",
        "--value",
        "rst-tracer",
    ]);
    let status = c.says(&["cat", &format!("/proc/{main_pid}/status")]);
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} in {status}"))
            .to_string()
    };
    // CAP_BPF is capability 39.
    assert_eq!(field("CapEff:"), "0000008000000000", "{status}");
    assert_eq!(field("CapBnd:"), "0000008000000000", "{status}");
    assert_eq!(field("NoNewPrivs:"), "1", "{status}");

    // A refused connect: the server's kernel answers the SYN with a reset (NO_SOCKET).
    let refused = lab.connect(9).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let reset = c.wait_for(
        Duration::from_secs(30),
        "no reset record in the journal",
        || {
            journal()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|r| r["type"] == "reset" && r["flow"]["sport"] == 9)
        },
    );
    assert_eq!(reset["origin"], "local", "{reset:#}");
    assert_eq!(reset["kernel_reason"], "NO_SOCKET", "{reset:#}");
    let local_egress =
        "rst_tracer_resets_total{origin=\"local\",suspicious=\"false\",direction=\"egress\"}";
    let served = c.wait_for(Duration::from_secs(30), "no reset in the metrics", || {
        let text = lab::in_ns(&lab.server, || {
            metrics::fetch("127.0.0.1:9464".parse().unwrap())
        });
        (metrics::parse(&text).get(local_egress) >= Some(&1.0)).then_some(text)
    });
    assert!(served.contains("rst_tracer_build_info"), "{served}");

    let stop = c.run(&["systemctl", "stop", "rst-tracer"]);
    assert!(stop.status.success(), "{stop:?}");
    let result = c.says(&["systemctl", "show", "-p", "Result", "--value", "rst-tracer"]);
    assert_eq!(result, "success", "{}", journal());
    drop(c);
}
