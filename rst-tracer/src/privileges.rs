//! Checks the capabilities loading and attaching need, so the error says what to do instead of
//! surfacing as EPERM from deep inside a syscall.

use std::fs;

use anyhow::{bail, Result};

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Names of the capabilities missing from an effective set (`CapEff` of /proc/self/status).
pub fn missing(cap_eff: u64) -> Vec<&'static str> {
    let has = |cap: u32| cap_eff & (1u64 << cap) != 0;
    let mut out = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        out.push("CAP_BPF");
    }
    if !has(CAP_NET_ADMIN) {
        out.push("CAP_NET_ADMIN");
    }
    // bpf_probe_read_kernel (the TCP option copy) and ring buffers for tracing need it.
    if !has(CAP_PERFMON) && !has(CAP_SYS_ADMIN) {
        out.push("CAP_PERFMON");
    }
    out
}

/// Fails with advice when the process cannot load and attach eBPF programs.
///
/// # Errors
/// When a needed capability is missing.
pub fn check() -> Result<()> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let missing = missing(cap_eff);
    if !missing.is_empty() {
        bail!(
            "missing {}: run as root (sudo rst-tracer ...) or grant the binary \
             `setcap cap_bpf,cap_net_admin,cap_perfmon+ep`",
            missing.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_what_is_missing() {
        let all = (1 << CAP_BPF) | (1 << CAP_NET_ADMIN) | (1 << CAP_PERFMON);
        assert_eq!(missing(0), vec!["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"]);
        assert_eq!(missing(all), Vec::<&str>::new());
        assert_eq!(
            missing((1 << CAP_SYS_ADMIN) | (1 << CAP_NET_ADMIN)),
            Vec::<&str>::new()
        );
        assert_eq!(missing(1 << CAP_SYS_ADMIN), vec!["CAP_NET_ADMIN"]);
        assert_eq!(
            missing((1 << CAP_BPF) | (1 << CAP_NET_ADMIN)),
            vec!["CAP_PERFMON"]
        );
    }
}
