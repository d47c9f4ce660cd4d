//! Embeds the eBPF object in the binary, so `target/release/rst-tracer` is the one file an
//! operator copies to a node.
//!
//! The object is built by `cargo xtask build` (nightly, bpfel target). Where it is missing (a plain
//! `cargo build` or `cargo test` on stable) an empty placeholder is embedded and the tracer says,
//! when started, how to build the real one; nothing pretends to work without it.

use std::{env, fs, path::PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=RST_TRACER_EBPF_OBJECT");
    let object = env::var_os("RST_TRACER_EBPF_OBJECT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap())
                .join("../target/bpfel-unknown-none/release/rst-tracer-ebpf")
        });
    println!("cargo:rerun-if-changed={}", object.display());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("rst-tracer-ebpf.o");
    let bytes = fs::read(&object).unwrap_or_default();
    fs::write(&out, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}
