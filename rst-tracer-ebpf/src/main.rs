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
mod parse;
mod stack;

use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_UNSPEC},
    helpers::bpf_ktime_get_ns,
    macros::{classifier, tracepoint, xdp},
    programs::{TcContext, TracePointContext, XdpContext},
};
use rst_tracer_common::{
    counter::Counter,
    event::{Hook, HDR_TS_CAPTURE},
    replay::{ReplayMeta, REPLAY_MAGIC},
};

use crate::{
    maps::{count, RST_SEGMENT},
    parse::{parse_frame, Cursor},
};

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
    stack::sent_reset(&ctx);
    0
}

/// tcp:tcp_receive_reset: a socket of this host accepts a reset.
#[tracepoint]
pub fn rst_tp_recv(ctx: TracePointContext) -> u32 {
    stack::accepted_reset(&ctx);
    0
}

/// tcp:tcp_retransmit_skb: the stack of this host retransmits a segment.
#[tracepoint]
pub fn rst_tp_retrans(ctx: TracePointContext) -> u32 {
    stack::retransmit(&ctx);
    0
}

/// tcp:tcp_retransmit_synack: a listener of this host retransmits its SYN-ACK.
#[tracepoint]
pub fn rst_tp_synack(ctx: TracePointContext) -> u32 {
    stack::synack_retransmit(&ctx);
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
    observe(xdp_frame(ctx), obs);
}

/// Headers beyond this many bytes are not needed; a non-linear skb is pulled up to it.
const TC_PULL_LEN: u32 = 256;

#[inline(always)]
fn observe_tc(ctx: &TcContext, hook: Hook) {
    let skb_len = ctx.len();
    let linear = (ctx.data_end() - ctx.data()) as u32;
    if linear < skb_len && linear < TC_PULL_LEN {
        let want = if skb_len < TC_PULL_LEN {
            skb_len
        } else {
            TC_PULL_LEN
        };
        let _ = ctx.pull_data(want);
    }
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    observe(
        Cursor {
            pos: ctx.data(),
            end: ctx.data_end(),
        },
        Observation::live(PacketCtx::Skb(ctx.skb.skb), hook, ifindex),
    );
}

/// The one path every hook shares.
#[inline(always)]
fn observe(frame: Cursor, mut obs: Observation) {
    count(Counter::Packets);
    let Some(seg) = RST_SEGMENT.get_ptr_mut(0) else {
        return;
    };
    let seg = unsafe { &mut *seg };
    match parse_frame(frame, seg) {
        Ok(()) => {
            if obs.header_flags & HDR_TS_CAPTURE == 0 {
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
