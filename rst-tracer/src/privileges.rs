//! Checks the capabilities loading and attaching need, so the error says what to do instead of
//! surfacing as EPERM from deep inside a syscall; and gives them up once they are used.

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

/// A capability set (`CapEff`, `CapPrm`, ...) of a `/proc/PID/status` text, as bits.
pub fn capability_set(status: &str, set: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(set)?.strip_prefix(':'))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// Fails with advice when the process cannot load and attach eBPF programs.
///
/// # Errors
/// When a needed capability is missing.
pub fn check() -> Result<()> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let cap_eff = capability_set(&status, "CapEff").unwrap_or(0);
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

/// What the process keeps once its programs are loaded and attached: `CAP_BPF`, for map
/// look-ups on the descriptors it holds (kernels before 6.5 refuse every bpf() command without
/// it while unprivileged BPF is disabled; later ones need nothing). Reading ring buffers,
/// closing links and everything else the tracer does from then on needs no capability.
pub const KEPT_AFTER_LOAD: &[caps::Capability] = &[caps::Capability::CAP_BPF];
/// What live tracing keeps with `--reattach`: also CAP_NET_ADMIN, to attach to an interface that
/// comes back.
pub const KEPT_FOR_REATTACH: &[caps::Capability] =
    &[caps::Capability::CAP_BPF, caps::Capability::CAP_NET_ADMIN];

/// Gives up every capability but those of `keep` the process has: from the effective,
/// permitted, inheritable and ambient sets and, where the process may (`CAP_SETPCAP`), the
/// bounding set; and sets no_new_privs, so nothing it executes regains them. Capabilities are
/// per thread: call it before starting threads.
///
/// # Errors
/// When the kernel refuses the new sets.
pub fn keep_only(keep: &[caps::Capability]) -> Result<()> {
    use caps::{CapSet, CapsHashSet};
    let permitted = caps::read(None, CapSet::Permitted)?;
    let kept: CapsHashSet = keep
        .iter()
        .copied()
        .filter(|c| permitted.contains(c))
        .collect();
    for cap in caps::all().difference(&kept) {
        // Needs CAP_SETPCAP (root has it; a binary with file capabilities does not): without
        // it the bounding set stays, and the permitted set below is what holds.
        let _ = caps::drop(None, CapSet::Bounding, *cap);
    }
    caps::clear(None, CapSet::Ambient)?;
    caps::clear(None, CapSet::Inheritable)?;
    caps::set(None, CapSet::Effective, &kept)?;
    caps::set(None, CapSet::Permitted, &kept)?;
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        bail!("setting no_new_privs: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_capability_set_from_proc_status() {
        let status = "Name:\trst-tracer\nCapPrm:\t0000008000000000\nCapEff:\t0000000000001000\n";
        assert_eq!(capability_set(status, "CapEff"), Some(1 << CAP_NET_ADMIN));
        assert_eq!(capability_set(status, "CapPrm"), Some(1 << CAP_BPF));
        assert_eq!(capability_set(status, "CapBnd"), None);
    }

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
