//! rst-tracer's kernel program.
//!
//! Design decisions:
//! - Hooks: XDP on ingress (physical NICs), TC (tcx) on ingress for virtual devices where native
//!   XDP would cost GRO, and TC (tcx) on egress. Every entry point is one line into the same
//!   path: parse ([`parse`]) -> flow update ([`flow`]) -> events only when something worth telling
//!   happens ([`emit`]).
//! - The program only observes: it always passes the packet on (`XDP_PASS`, `TC_ACT_UNSPEC`,
//!   which tcx treats as "next program").
//! - Time is `bpf_ktime_get_ns()`, except for frames replayed from a capture, which carry their
//!   capture timestamp in XDP metadata marked with `REPLAY_MAGIC` (see `rst_tracer_common::replay`).
//! - Malformed frames are counted by kind and passed untouched.
#![no_std]
#![no_main]

mod emit;
mod flow;
mod maps;
mod tracepoints;

use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_UNSPEC},
    helpers::bpf_ktime_get_ns,
    macros::{classifier, tracepoint, xdp},
    programs::{TcContext, TracePointContext, XdpContext},
};
use rst_tracer_common::{
    counter::Counter,
    event::{Hook, HDR_TS_CAPTURE},
    flow::FlowKey,
    replay::{ReplayMeta, REPLAY_MAGIC},
};

use rst_tracer_ebpf::parse::{self, parse_frame, Cursor, Segment};

use crate::maps::{count, keep_replayed_flow, RST_REPLAYED_FLOW, RST_SEGMENT};

/// The program context a packet came in, for helpers that need it.
#[derive(Clone, Copy)]
pub enum PacketCtx {
    /// An XDP program's `xdp_md`.
    Xdp(*mut aya_ebpf::bindings::xdp_md),
    /// A TC program's `__sk_buff`.
    Skb(*mut aya_ebpf::bindings::__sk_buff),
}

/// Where and when a packet was seen.
pub struct Observation {
    /// The program context (for copying payload bytes with a helper).
    pub ctx: PacketCtx,
    /// The hook that saw it (`Hook::Replay` for replayed capture records).
    pub hook: Hook,
    /// Interface index (0 in replay).
    pub ifindex: u32,
    /// Packet time in ns: the capture timestamp in replay; live, `bpf_ktime_get_ns()`, read only
    /// once the packet parsed as TCP (0 until then), so other packets do not pay for the clock.
    pub now_ns: u64,
    /// `HDR_*` flags every event of this packet carries.
    pub header_flags: u8,
}

/// XDP ingress (live).
#[xdp]
pub fn rst_xdp(ctx: XdpContext) -> u32 {
    observe_xdp(&ctx);
    xdp_action::XDP_PASS
}

/// Capture replay: the same path, run by BPF_PROG_TEST_RUN over frames that carry their capture
/// time as XDP metadata. A program of its own, so live XDP never looks for replay metadata, and
/// the verifier does not walk every path once per kind of frame (one program taking both cost
/// 327k verified instructions; apart, 162k for `rst_xdp` and 181k for this).
#[xdp]
pub fn rst_replay(ctx: XdpContext) -> u32 {
    observe_replay(&ctx);
    xdp_action::XDP_PASS
}

/// TC (tcx) ingress.
#[classifier]
pub fn rst_tc_in(ctx: TcContext) -> i32 {
    observe_tc(&ctx, Hook::TcIngress);
    TC_ACT_UNSPEC
}

/// TC (tcx) egress.
#[classifier]
pub fn rst_tc_eg(ctx: TcContext) -> i32 {
    observe_tc(&ctx, Hook::TcEgress);
    TC_ACT_UNSPEC
}

/// tcp:tcp_send_reset: this host's stack sends a reset.
#[tracepoint]
pub fn rst_tp_send(ctx: TracePointContext) -> u32 {
    tracepoints::sent_reset(&ctx);
    0
}

/// tcp:tcp_receive_reset: a socket of this host accepts a reset.
#[tracepoint]
pub fn rst_tp_recv(ctx: TracePointContext) -> u32 {
    tracepoints::accepted_reset(&ctx);
    0
}

/// tcp:tcp_retransmit_skb: the stack of this host retransmits a segment.
#[tracepoint]
pub fn rst_tp_retrans(ctx: TracePointContext) -> u32 {
    tracepoints::retransmit(&ctx);
    0
}

/// tcp:tcp_retransmit_synack: a listener of this host retransmits its SYN-ACK.
#[tracepoint]
pub fn rst_tp_synack(ctx: TracePointContext) -> u32 {
    tracepoints::synack_retransmit(&ctx);
    0
}

impl Observation {
    /// Live traffic seen by `hook`; its time is read once it parses as TCP.
    #[inline(always)]
    fn live(ctx: PacketCtx, hook: Hook, ifindex: u32) -> Observation {
        Observation {
            ctx,
            hook,
            ifindex,
            now_ns: 0,
            header_flags: 0,
        }
    }
}

/// The frame an XDP program sees.
#[inline(always)]
fn xdp_frame(ctx: &XdpContext) -> Cursor {
    Cursor {
        pos: ctx.data(),
        end: ctx.data_end(),
    }
}

#[inline(always)]
fn observe_xdp(ctx: &XdpContext) {
    // SAFETY: the program's context, valid for the whole run.
    let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    observe(
        xdp_frame(ctx),
        Observation::live(PacketCtx::Xdp(ctx.ctx), Hook::Xdp, ifindex),
    );
}

/// A replayed frame; one without replay metadata (never sent by `rst-tracer replay`) is not
/// observed, since it has no time.
#[inline(always)]
fn observe_replay(ctx: &XdpContext) {
    let meta = Cursor {
        pos: ctx.metadata(),
        end: ctx.data(),
    };
    let ts_ns = match meta.ptr_at::<ReplayMeta>(0) {
        // SAFETY: `ptr_at` checked that the metadata holds a whole `ReplayMeta`.
        Some(m) if unsafe { (*m).magic } == REPLAY_MAGIC => unsafe { (*m).ts_ns },
        _ => return,
    };
    count(Counter::ReplayFrames);
    let obs = Observation {
        ctx: PacketCtx::Xdp(ctx.ctx),
        hook: Hook::Replay,
        ifindex: 0,
        now_ns: ts_ns,
        header_flags: HDR_TS_CAPTURE,
    };
    let Some(seg) = start() else {
        return;
    };
    let parsed = parse_frame(xdp_frame(ctx), seg);
    // What userspace keeps a flow's packets by (`--pcap-out-context`): the parse it just had.
    if !keep_replayed_flow() {
        finish(parsed, seg, obs);
        return;
    }
    if let Some(seen) = RST_REPLAYED_FLOW.get_ptr_mut(0) {
        let (key, _) = FlowKey::canonical(seg.family, &seg.src, seg.sport, &seg.dst, seg.dport);
        // SAFETY: the map's one slot; replay runs one program at a time.
        unsafe {
            (*seen).key = key;
            (*seen).tcp_flags = seg.info.flags;
            (*seen).tcp = u16::from(parsed.is_ok());
        }
    }
    finish(parsed, seg, obs);
}

/// Headers beyond this many bytes are not needed; a non-linear skb is pulled up to it when its
/// headers are not all in its linear part.
const TC_PULL_LEN: u32 = 256;

/// The linear part of a TC program's skb.
#[inline(always)]
fn tc_frame(ctx: &TcContext) -> Cursor {
    Cursor {
        pos: ctx.data(),
        end: ctx.data_end(),
    }
}

/// A parse that ran out of bytes (as opposed to a frame that is not TCP, or malformed).
#[inline(always)]
fn truncated(reason: Counter) -> bool {
    matches!(
        reason,
        Counter::ErrEthTruncated
            | Counter::ErrVlanTruncated
            | Counter::ErrPppoeTruncated
            | Counter::ErrIpv4Truncated
            | Counter::ErrIpv6Truncated
            | Counter::ErrIpv6ExtTruncated
            | Counter::ErrTcpTruncated
    )
}

/// TC: the skb is parsed where it lies. Its headers are almost always in its linear part (GSO
/// segments and GRO'd skbs carry them there, the payload in page fragments), and pulling more
/// (`bpf_skb_pull_data` copies from the fragments and may reallocate the head) cost a few
/// hundred ns on every MTU frame when it was done unconditionally. Only a parse that ran out of
/// linear bytes while the skb holds more pulls the headers in and parses again.
#[inline(always)]
fn observe_tc(ctx: &TcContext, hook: Hook) {
    // SAFETY: the program's context, valid for the whole run.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let obs = Observation::live(PacketCtx::Skb(ctx.skb.skb), hook, ifindex);
    let Some(seg) = start() else {
        return;
    };
    let mut parsed = parse_frame(tc_frame(ctx), seg);
    if let Err(reason) = parsed {
        let skb_len = ctx.len();
        let linear = (ctx.data_end() - ctx.data()) as u32;
        if truncated(reason) && linear < skb_len {
            let want = if skb_len < TC_PULL_LEN {
                skb_len
            } else {
                TC_PULL_LEN
            };
            let _ = ctx.pull_data(want);
            parsed = parse_frame(tc_frame(ctx), seg);
        }
    }
    finish(parsed, seg, obs);
}

/// The one path every hook shares.
#[inline(always)]
fn observe(frame: Cursor, obs: Observation) {
    let Some(seg) = start() else {
        return;
    };
    let parsed = parse_frame(frame, seg);
    finish(parsed, seg, obs);
}

/// Counts the packet; returns the per-CPU segment the parser fills.
#[inline(always)]
fn start() -> Option<&'static mut Segment> {
    count(Counter::Packets);
    let seg = RST_SEGMENT.get_ptr_mut(0)?;
    // SAFETY: a per-CPU array slot, used by one program run at a time on this CPU (programs
    // do not preempt each other on one CPU).
    Some(unsafe { &mut *seg })
}

/// Judges a parsed segment, or counts why there was none.
#[inline(always)]
fn finish(parsed: Result<(), Counter>, seg: &mut Segment, mut obs: Observation) {
    match parsed {
        Ok(()) => {
            if obs.header_flags & HDR_TS_CAPTURE == 0 {
                // SAFETY: a BPF helper without arguments.
                obs.now_ns = unsafe { bpf_ktime_get_ns() };
            }
            flow::observe_segment(seg, &obs)
        }
        Err(reason) => count(reason),
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program in which this is reachable.
    loop {}
}
