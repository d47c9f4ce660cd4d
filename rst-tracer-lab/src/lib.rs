//! The namespace lab the tests, the benchmarks and `cargo xtask lab | eval | soak` share: three
//! network namespaces with real TCP stacks (`lab`), traffic through them (`iperf`, `delay`),
//! resets forged on the path (`forge`), the scenarios and their scoring (`scenarios`), the
//! labelled evaluation corpus (`eval`), crafted frames for BPF_PROG_TEST_RUN (`frames`), the
//! checks of what the tracer wrote (`pcapng`: a `--pcap-out` file read back; `schema`: records
//! against `schema/`), a real systemd for the service unit (`nspawn`), and the check that a
//! privileged test can run here.
//!
//! The programs in `src/bin` are the lab's front ends: `lab` (the demo and the scenario report),
//! `eval` (the labelled corpus) and `soak` (a long run under churn).

pub mod delay;
pub mod eval;
pub mod forge;
pub mod frames;
pub mod iperf;
pub mod lab;
pub mod metrics;
pub mod nspawn;
pub mod pcapng;
pub mod scenarios;
pub mod schema;

/// Why this machine cannot run a privileged test (it loads eBPF programs and makes network
/// namespaces: root and the built eBPF object), if it cannot.
pub fn missing_privileges() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("it needs root (it loads eBPF programs and makes network namespaces)".into());
    }
    match rst_tracer::object::embedded() {
        Ok(_) => None,
        Err(e) => Some(format!("it needs the built eBPF object: {e:#}")),
    }
}

/// Reports that the running test cannot run here and why, on the terminal itself (past the test
/// harness's capture, so the line is seen even though the test passes), with how to run it.
/// Under `CI=true` a test that cannot run fails instead: CI must run everything.
pub fn skip(why: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} cannot run here, and CI=true: {why}");
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {why}; `cargo xtask test` (as root) runs it"
    );
}

/// True when a privileged test can run here; otherwise says so loudly (see [`skip`]).
pub fn privileged() -> bool {
    match missing_privileges() {
        None => true,
        Some(why) => {
            skip(&why);
            false
        }
    }
}

/// Returns from the test, after saying so loudly, when it cannot run here (see [`privileged`]).
#[macro_export]
macro_rules! require_privileges {
    () => {
        if !$crate::privileged() {
            return;
        }
    };
}

/// For the lab programs (`src/bin`), which cannot skip: fails with the reason they cannot run.
pub fn require_root_and_object() {
    if let Some(why) = missing_privileges() {
        panic!("this needs root and the built eBPF object: {why}; run it through `cargo xtask`");
    }
}

/// Capabilities that loading and attaching need and a running tracer must have given up:
/// CAP_NET_ADMIN (12) and CAP_SYS_ADMIN (21).
pub const GIVEN_UP_CAPS: [(u32, &str); 2] = [(12, "CAP_NET_ADMIN"), (21, "CAP_SYS_ADMIN")];

/// The given-up capabilities that some thread of process `pid` still has in its effective or
/// permitted set, as "thread: CapXxx CAP_NAME" lines (empty: none).
pub fn caps_still_held(pid: u32) -> Vec<String> {
    let mut held = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return vec![format!("process {pid} is gone")];
    };
    for task in tasks.flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
        for set in ["CapEff", "CapPrm"] {
            let Some(bits) = rst_tracer::privileges::capability_set(&status, set) else {
                held.push(format!("{:?}: no {set}", task.file_name()));
                continue;
            };
            for (cap, name) in GIVEN_UP_CAPS {
                if bits & (1 << cap) != 0 {
                    held.push(format!("{:?}: {set} {name}", task.file_name()));
                }
            }
        }
    }
    held
}
