//! The eBPF object embedded at build time (see `build.rs`).

use anyhow::{bail, Result};

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rst-tracer-ebpf.o"));

/// The embedded kernel object.
///
/// # Errors
/// When this binary was built without it (plain `cargo build` before `cargo xtask build`).
pub fn embedded() -> Result<&'static [u8]> {
    if OBJECT.is_empty() {
        bail!(
            "this rst-tracer binary was built without its eBPF object; build with `cargo xtask build` \
             (it compiles the kernel program with nightly and bpf-linker, then this binary)"
        );
    }
    Ok(OBJECT)
}
