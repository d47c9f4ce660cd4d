//! Loading the kernel object and attaching its hooks.
//!
//! Every hook is attached as a bpf link owned by this process (XDP link, tcx link): when the
//! process ends, however it ends, the kernel detaches them. An attach that would not be a link
//! (the legacy netlink fallback) is refused rather than left behind.

use std::io;

use anyhow::{anyhow, bail, Context, Result};
use aya::{
    programs::{
        links::FdLink, tc::TcAttachOptions, LinkOrder, ProgramError, SchedClassifier, TcAttachType,
        TracePoint, Xdp, XdpMode,
    },
    Ebpf, EbpfLoader,
};
use rst_tracer_common::{
    event::TracepointOffsets,
    names::{
        DEFAULT_SAMPLE_GAP_NS, GLOBAL_KEEP_REPLAYED_FLOW, GLOBAL_SAMPLE_GAP_NS, GLOBAL_TP_OFFSETS,
        MAP_FLOWS, PROG_REPLAY, PROG_TC_EGRESS, PROG_TC_INGRESS, PROG_XDP, TRACEPOINT_PROGRAMS,
    },
};

use crate::iface;

/// Which hook sees ingress traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum IngressMode {
    /// TC for virtual devices (veth, bridges: native XDP costs them GRO), XDP for physical NICs.
    Auto,
    /// XDP: driver mode, falling back to generic mode.
    Xdp,
    /// TC (tcx) ingress.
    Tc,
}

/// Load-time settings of the kernel program.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Flow-table capacity (LRU).
    pub flow_table_size: u32,
    /// Least time between two samples of one flow.
    pub sample_gap_ns: u64,
    /// Where the TCP tracepoints' fields are on this kernel.
    pub tracepoints: TracepointOffsets,
    /// Replay leaves each frame's flow for [`crate::source::prog_run::ProgRun::replayed_flow`]
    /// (`--pcap-out-context`); without it, replay does not pay for that.
    pub keep_replayed_flow: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            flow_table_size: rst_tracer_common::names::DEFAULT_FLOW_TABLE_SIZE,
            sample_gap_ns: DEFAULT_SAMPLE_GAP_NS,
            tracepoints: TracepointOffsets::LINUX_6_10,
            keep_replayed_flow: false,
        }
    }
}

/// Creates the object's maps; loads no program yet (see [`load_program`]).
///
/// # Errors
/// When the object cannot be parsed or the kernel refuses a map.
pub fn open(object: &[u8], opts: &LoadOptions) -> Result<Ebpf> {
    EbpfLoader::new()
        .map_max_entries(MAP_FLOWS, opts.flow_table_size)
        .override_global(GLOBAL_SAMPLE_GAP_NS, &opts.sample_gap_ns, true)
        .override_global(GLOBAL_TP_OFFSETS, &opts.tracepoints, true)
        .override_global(
            GLOBAL_KEEP_REPLAYED_FLOW,
            &u32::from(opts.keep_replayed_flow),
            true,
        )
        .load(object)
        .context("loading the eBPF object (maps and relocations)")
}

/// Loads one of the packet programs into the kernel (the verifier runs here).
///
/// # Errors
/// When the kernel refuses it; the verifier's last lines are in the message.
pub fn load_program(ebpf: &mut Ebpf, name: &str) -> Result<()> {
    let prog = program(ebpf, name)?;
    let result = if name == PROG_XDP || name == PROG_REPLAY {
        <&mut Xdp>::try_from(prog)?.load()
    } else {
        <&mut SchedClassifier>::try_from(prog)?.load()
    };
    result.map_err(|e| verifier_error(name, e))
}

/// Packet program `name`, loaded into the kernel first if it is not yet (the verifier runs
/// then), so each run verifies only the programs it uses.
///
/// # Errors
/// A program missing from the object, or one the kernel refuses (see [`load_program`]).
pub fn loaded<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::programs::Program> {
    if program(ebpf, name)?.fd().is_err() {
        load_program(ebpf, name)?;
    }
    program(ebpf, name)
}

/// Instructions the verifier processed for each loaded packet program (its cost of proving the
/// program safe; the kernel refuses a program past 1,000,000). Programs not loaded are left out.
///
/// # Errors
/// When the kernel's program info cannot be read.
pub fn verifier_cost(ebpf: &Ebpf) -> Result<Vec<(String, u32)>> {
    let mut out = Vec::new();
    for name in rst_tracer_common::names::PACKET_PROGRAMS {
        let prog = ebpf
            .program(name)
            .ok_or_else(|| anyhow!("program {name} missing"))?;
        if prog.fd().is_err() {
            continue;
        }
        let info = prog
            .info()
            .with_context(|| format!("reading info of {name}"))?;
        out.push((
            name.to_string(),
            info.verified_instruction_count().unwrap_or(0),
        ));
    }
    Ok(out)
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut aya::programs::Program> {
    ebpf.program_mut(name)
        .ok_or_else(|| anyhow!("program {name} missing from the eBPF object"))
}

/// Lines of the verifier log shown when a program is refused.
const VERIFIER_TAIL: usize = 25;

fn verifier_error(name: &str, e: ProgramError) -> anyhow::Error {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(VERIFIER_TAIL)..].join("\n");
            anyhow!("the kernel refused program {name} ({io_error}); last lines of the verifier log:\n{tail}")
        }
        other => anyhow::Error::new(other).context(format!("loading program {name}")),
    }
}

/// Loads and attaches the kernel-note tracepoints `view` says this kernel has. They stay attached
/// as long as `ebpf` lives (perf links: a killed tracer leaves nothing behind). Returns notes on
/// what could not be attached; the tracer runs on without it.
pub fn attach_tracepoints(ebpf: &mut Ebpf, view: &crate::tracepoints::Tracepoints) -> Vec<String> {
    let mut notes = Vec::new();
    let wanted = [view.send, view.receive, view.retransmit, view.synack];
    for (wanted, (name, tp)) in wanted.into_iter().zip(TRACEPOINT_PROGRAMS) {
        if !wanted {
            continue;
        }
        let result = program(ebpf, name).and_then(|p| {
            let tp_prog: &mut TracePoint = p.try_into()?;
            tp_prog.load().map_err(|e| verifier_error(name, e))?;
            tp_prog
                .attach("tcp", tp)
                .with_context(|| format!("attaching to tcp:{tp}"))?;
            Ok(())
        });
        if let Err(e) = result {
            notes.push(format!("tcp:{tp} not attached: {e:#}"));
        }
    }
    notes
}

/// The hooks attached to one interface. Dropping it detaches them.
pub struct Attachment {
    /// Interface name.
    pub iface: String,
    /// Its index when the hooks were attached: the hooks belong to that device.
    pub ifindex: u32,
    /// What sees ingress traffic, e.g. `xdp (driver)`, `xdp (generic)`, `tc`.
    pub ingress: &'static str,
    /// The bpf links, held only to be dropped: closing them detaches the hooks.
    _links: Vec<FdLink>,
}

impl Attachment {
    /// True while the device the hooks were attached to still exists in this namespace. A
    /// device deleted (a pod's veth), unplugged or moved to another namespace takes its hooks
    /// with it; a renamed one keeps them.
    pub fn present(&self) -> bool {
        iface::name_of(self.ifindex).is_some()
    }
}

/// Attaches ingress (XDP or TC per `mode`) and TC egress to `iface`.
///
/// # Errors
/// Unknown interface, another XDP program already attached (suggests `--ingress tc`), or a
/// kernel without bpf links for these hooks.
pub fn attach(ebpf: &mut Ebpf, iface_name: &str, mode: IngressMode) -> Result<Attachment> {
    let Some(ifindex) = iface::index_of(iface_name) else {
        bail!("unknown interface {iface_name:?}");
    };
    let use_xdp = match mode {
        IngressMode::Xdp => true,
        IngressMode::Tc => false,
        IngressMode::Auto => !iface::is_virtual(iface_name),
    };
    let mut links = Vec::new();
    let ingress = if use_xdp {
        let (link, how) = attach_xdp(ebpf, iface_name)?;
        links.push(link);
        how
    } else {
        links.push(attach_tc(
            ebpf,
            PROG_TC_INGRESS,
            iface_name,
            TcAttachType::Ingress,
        )?);
        "tc"
    };
    links.push(attach_tc(
        ebpf,
        PROG_TC_EGRESS,
        iface_name,
        TcAttachType::Egress,
    )?);
    Ok(Attachment {
        iface: iface_name.to_string(),
        ifindex,
        ingress,
        _links: links,
    })
}

fn attach_xdp(ebpf: &mut Ebpf, iface_name: &str) -> Result<(FdLink, &'static str)> {
    let prog: &mut Xdp = loaded(ebpf, PROG_XDP)?.try_into()?;
    let (id, how) = match prog.attach(iface_name, XdpMode::Driver) {
        Ok(id) => (id, "xdp (driver)"),
        Err(e) if another_program(&e) => return Err(another_xdp(iface_name, e)),
        Err(_) => match prog.attach(iface_name, XdpMode::Skb) {
            Ok(id) => (id, "xdp (generic)"),
            Err(e) if another_program(&e) => return Err(another_xdp(iface_name, e)),
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "attaching XDP to {iface_name} (driver and generic mode); try --ingress tc"
                )))
            }
        },
    };
    let link = prog.take_link(id)?;
    let link = FdLink::try_from(link).map_err(|_| {
        anyhow!("the kernel attached XDP on {iface_name} without a bpf link (it would outlive this process); use --ingress tc")
    })?;
    Ok((link, how))
}

fn attach_tc(ebpf: &mut Ebpf, name: &str, iface_name: &str, kind: TcAttachType) -> Result<FdLink> {
    let prog: &mut SchedClassifier = loaded(ebpf, name)?.try_into()?;
    let id = prog
        .attach_with_options(
            iface_name,
            kind,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )
        .with_context(|| {
            format!("attaching {name} to {iface_name} as a tcx link (needs Linux 6.6+)")
        })?;
    let link = prog.take_link(id)?;
    FdLink::try_from(link).map_err(|_| anyhow!("tc attach on {iface_name} did not give a bpf link"))
}

fn another_program(e: &ProgramError) -> bool {
    let code = match e {
        ProgramError::SyscallError(s) => s.io_error.raw_os_error(),
        _ => std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<io::Error>())
            .and_then(io::Error::raw_os_error),
    };
    matches!(code, Some(libc::EBUSY) | Some(libc::EEXIST))
}

fn another_xdp(iface_name: &str, e: ProgramError) -> anyhow::Error {
    anyhow::Error::new(e).context(format!(
        "another XDP program is already attached to {iface_name}; leave it in place and trace with \
         --ingress tc (tcx hooks run beside it)"
    ))
}
