//! Shared by the privileged test binaries: the prerequisite check and frame builders.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

pub mod delay;
pub mod eval;
pub mod forge;
pub mod frames;
pub mod lab;
pub mod scenarios;

/// Fails the test with a plain message when it cannot run: privileged tests never pass silently.
pub fn require_root_and_object() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        panic!(
            "this test needs root (it loads eBPF programs and makes network namespaces); \
             run `cargo xtask test` as root"
        );
    }
    if let Err(e) = rst_tracer::object::embedded() {
        panic!("this test needs the built eBPF object: {e:#}");
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
        for set in ["CapEff:", "CapPrm:"] {
            let bits = status
                .lines()
                .find_map(|l| l.strip_prefix(set))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
            let Some(bits) = bits else {
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
