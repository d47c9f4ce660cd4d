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
