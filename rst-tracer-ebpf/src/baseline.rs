//! The benchmarks' baseline and floors.
//!
//! - `rst_baseline` does nothing but pass the packet. Every kernel cost rst-tracer reports is
//!   measured beside it in the same run.
//! - `rst_empty_in` and `rst_empty_eg` are the same at tc (tcx) ingress and egress: the in-place
//!   benchmark attaches them where the tracer attaches, on the same traffic, to measure what
//!   any tc program costs there.
//! - The floors are the least any per-flow design pays: reading the clock, and one look-up of the
//!   canonical flow key in an LRU hash of the tracer's layout. The look-ups parse only Ethernet +
//!   IPv4 + TCP at fixed offsets and keep nothing else, so the benchmark can say how much of the
//!   tracer's cost is the floor and how much its own work.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_UNSPEC},
    helpers::bpf_ktime_get_ns,
    macros::{classifier, map, xdp},
    maps::LruHashMap,
    programs::{TcContext, XdpContext},
};
use rst_tracer_common::{
    flow::{FlowKey, FlowState, FAMILY_IPV4},
    names::DEFAULT_FLOW_TABLE_SIZE,
};

/// The floors' flow table: the tracer's key and entry; the benchmark sizes and fills it.
#[map]
static RST_FLOOR_FLOWS: LruHashMap<FlowKey, FlowState> =
    LruHashMap::with_max_entries(DEFAULT_FLOW_TABLE_SIZE, 0);

/// Passes every packet.
#[xdp]
pub fn rst_baseline(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Does nothing at tc ingress, and returns what the tracer's tc programs return (tcx: "next").
#[classifier]
pub fn rst_empty_in(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

/// Does nothing at tc egress (see `rst_empty_in`).
#[classifier]
pub fn rst_empty_eg(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

/// Reads the clock, as the tracer does once per TCP segment.
#[xdp]
pub fn rst_floor_clock(_ctx: XdpContext) -> u32 {
    // A use of the time, so the call is not an unused result.
    match unsafe { bpf_ktime_get_ns() } {
        0 => xdp_action::XDP_ABORTED,
        _ => xdp_action::XDP_PASS,
    }
}

/// Finds the flow's entry and counts the packet in it.
#[xdp]
pub fn rst_floor_lookup(ctx: XdpContext) -> u32 {
    if let Some((state, side)) = flow_entry(&ctx) {
        unsafe { (*state).sides[side].packets += 1 };
    }
    xdp_action::XDP_PASS
}

/// Finds the flow's entry and stamps the packet's time in it.
#[xdp]
pub fn rst_floor_lookup_clock(ctx: XdpContext) -> u32 {
    if let Some((state, side)) = flow_entry(&ctx) {
        unsafe { (*state).sides[side].last_ns = bpf_ktime_get_ns() };
    }
    xdp_action::XDP_PASS
}

/// Ethernet + IPv4 (no options) + TCP at fixed offsets: the flow's entry and the sender's side.
#[inline(always)]
#[allow(
    clippy::needless_borrows_for_generic_args,
    reason = "as the tracer passes it (flow::observe_segment)"
)]
fn flow_entry(ctx: &XdpContext) -> Option<(*mut FlowState, usize)> {
    const HEADERS: usize = 14 + 20 + 20;
    if ctx.data() + HEADERS > ctx.data_end() {
        return None;
    }
    let h = unsafe { &*(ctx.data() as *const [u8; HEADERS]) };
    if h[12..14] != [0x08, 0x00] || h[14] != 0x45 || h[23] != 6 {
        return None;
    }
    let addr = |at: usize| {
        [
            u32::from_ne_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]),
            0,
            0,
            0,
        ]
    };
    let port = |at: usize| u16::from_be_bytes([h[at], h[at + 1]]);
    let (key, side) = FlowKey::canonical(FAMILY_IPV4, &addr(26), port(34), &addr(30), port(36));
    let state = RST_FLOOR_FLOWS.get_ptr_mut(&key)?;
    Some((state, side.index()))
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
