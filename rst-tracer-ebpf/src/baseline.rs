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
//!   tracer's cost is the floor and how much its own work. `rst_tc_lookup` and
//!   `rst_tc_look_clk` (names within the kernel's 15 characters) are the same at tc for the
//!   in-place benchmark; they insert the flows they meet, as the tracer does. `rst_tc_slot_clk`
//!   does the same in a direct-mapped array instead of the LRU hash: the floor of that design.
//!   `rst_tc_parse` runs the tracer's own parser and nothing after it (no clock, no flow
//!   table): what reading the headers costs, before any per-flow work.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{xdp_action, BPF_NOEXIST, TC_ACT_UNSPEC},
    helpers::bpf_ktime_get_ns,
    macros::{classifier, map, xdp},
    maps::{Array, LruHashMap, PerCpuArray},
    programs::{TcContext, XdpContext},
};
use rst_tracer_common::{
    flow::{FlowKey, FlowState, Side, FAMILY_IPV4},
    names::DEFAULT_FLOW_TABLE_SIZE,
};
use rst_tracer_ebpf::parse::{parse_frame, Cursor, Segment};

/// The floors' flow table: the tracer's key and entry; the benchmark sizes and fills it.
#[map]
static RST_FLOOR_FLOWS: LruHashMap<FlowKey, FlowState> =
    LruHashMap::with_max_entries(DEFAULT_FLOW_TABLE_SIZE, 0);

/// An entry nothing writes (all zeroes), inserted for flows the tc floors meet first.
#[map]
static RST_FLOOR_EMPTY: PerCpuArray<FlowState> = PerCpuArray::with_max_entries(1, 0);

/// Slots of the direct-mapped floor (a power of two).
const FLOOR_SLOTS: u32 = 65_536;

/// One slot of the direct-mapped floor: the flow it holds and its state.
#[repr(C)]
pub struct FloorSlot {
    /// The flow the slot holds.
    pub key: FlowKey,
    /// Its state, in the tracer's layout.
    pub state: FlowState,
}

/// The direct-mapped floor's table.
#[map]
static RST_FLOOR_SLOTS: Array<FloorSlot> = Array::with_max_entries(FLOOR_SLOTS, 0);

/// Where the parse floor's parser writes each packet (as the tracer's `RST_SEGMENT`).
#[map]
static RST_FLOOR_SEGMENT: PerCpuArray<Segment> = PerCpuArray::with_max_entries(1, 0);

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
    // SAFETY: a BPF helper without arguments.
    match unsafe { bpf_ktime_get_ns() } {
        0 => xdp_action::XDP_ABORTED,
        _ => xdp_action::XDP_PASS,
    }
}

/// Finds the flow's entry and counts the packet in it.
#[xdp]
pub fn rst_floor_lookup(ctx: XdpContext) -> u32 {
    count_packet(flow_entry(headers(ctx.data(), ctx.data_end()), false));
    xdp_action::XDP_PASS
}

/// Finds the flow's entry and stamps the packet's time in it.
#[xdp]
pub fn rst_floor_lookup_clock(ctx: XdpContext) -> u32 {
    stamp_time(flow_entry(headers(ctx.data(), ctx.data_end()), false));
    xdp_action::XDP_PASS
}

/// In place, at tc (both hooks): finds the flow's entry, inserting it on a miss, and counts
/// the packet in it: the least a per-flow tracer pays where packets really flow.
#[classifier]
pub fn rst_tc_lookup(ctx: TcContext) -> i32 {
    count_packet(flow_entry(headers(ctx.data(), ctx.data_end()), true));
    TC_ACT_UNSPEC
}

/// In place, at tc (both hooks): as `rst_tc_lookup`, and stamps the packet's time in the
/// entry: the least a per-flow tracer that times every packet pays.
#[classifier]
pub fn rst_tc_look_clk(ctx: TcContext) -> i32 {
    stamp_time(flow_entry(headers(ctx.data(), ctx.data_end()), true));
    TC_ACT_UNSPEC
}

/// Counts a packet in the sender's side of a flow entry found by [`flow_entry`].
#[inline(always)]
fn count_packet(entry: Option<(*mut FlowState, usize)>) {
    if let Some((state, side)) = entry {
        // SAFETY: a pointer into the map's value returned by the look-up: valid for the run.
        unsafe { (*state).sides[side].packets += 1 };
    }
}

/// Stamps the clock into the sender's side of a flow entry found by [`flow_entry`].
#[inline(always)]
fn stamp_time(entry: Option<(*mut FlowState, usize)>) {
    if let Some((state, side)) = entry {
        // SAFETY: a pointer into the map's value returned by the look-up (valid for the run),
        // and a BPF helper without arguments.
        unsafe { (*state).sides[side].last_ns = bpf_ktime_get_ns() };
    }
}

/// In place, at tc (both hooks): the flow's slot in a direct-mapped array (the index a hash of
/// the canonical key; a slot holding another flow is taken over), and the packet's time stamped
/// in it. An array look-up is inlined by the verifier, with no helper call and no bucket walk:
/// this measures what a flow table of that shape would pay instead of the LRU hash's look-up.
#[classifier]
pub fn rst_tc_slot_clk(ctx: TcContext) -> i32 {
    if let Some((key, side)) = flow_key(headers(ctx.data(), ctx.data_end())) {
        let words = [
            key.addr_lo[0],
            key.addr_hi[0],
            (u32::from(key.port_lo) << 16) | u32::from(key.port_hi),
        ];
        let hash = words.iter().fold(0x9e37_79b9u32, |h, w| {
            (h ^ w).wrapping_mul(0x85eb_ca6b).rotate_left(13)
        });
        if let Some(slot) = RST_FLOOR_SLOTS.get_ptr_mut(hash & (FLOOR_SLOTS - 1)) {
            // SAFETY: an array slot, valid for the program's run.
            let slot = unsafe { &mut *slot };
            if slot.key != key {
                slot.key = key;
            }
            // SAFETY: a BPF helper without arguments.
            slot.state.sides[side.index()].last_ns = unsafe { bpf_ktime_get_ns() };
        }
    }
    TC_ACT_UNSPEC
}

/// In place, at tc (both hooks): the tracer's parser over the skb's linear part, as the tracer
/// runs it first, and nothing else.
#[classifier]
pub fn rst_tc_parse(ctx: TcContext) -> i32 {
    if let Some(seg) = RST_FLOOR_SEGMENT.get_ptr_mut(0) {
        let frame = Cursor {
            pos: ctx.data(),
            end: ctx.data_end(),
        };
        // SAFETY: a per-CPU array slot, used by one program run at a time on this CPU. The
        // parse writes its result there, so it is not optimised away.
        let _ = parse_frame(frame, unsafe { &mut *seg });
    }
    TC_ACT_UNSPEC
}

/// Ethernet + IPv4 (no options) + TCP: the bytes the look-up floors parse.
const HEADERS: usize = 14 + 20 + 20;

/// The floors' headers at `data`, when the packet (ending at `data_end`) holds them.
#[inline(always)]
fn headers(data: usize, data_end: usize) -> Option<&'static [u8; HEADERS]> {
    if data + HEADERS > data_end {
        return None;
    }
    // SAFETY: the bounds check above covers HEADERS bytes from data, which the program's
    // context keeps valid for the whole run.
    Some(unsafe { &*(data as *const [u8; HEADERS]) })
}

/// IPv4 + TCP at fixed offsets: the canonical key of the packet's flow and its sender's side.
#[inline(always)]
fn flow_key(h: Option<&[u8; HEADERS]>) -> Option<(FlowKey, Side)> {
    let h = h?;
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
    Some(FlowKey::canonical(
        FAMILY_IPV4,
        &addr(26),
        port(34),
        &addr(30),
        port(36),
    ))
}

/// The flow's entry (inserted empty on a miss when `insert`) and the sender's side.
#[inline(always)]
#[allow(
    clippy::needless_borrows_for_generic_args,
    reason = "as the tracer passes it (flow::observe_segment)"
)]
fn flow_entry(h: Option<&[u8; HEADERS]>, insert: bool) -> Option<(*mut FlowState, usize)> {
    let (key, side) = flow_key(h)?;
    let state = match RST_FLOOR_FLOWS.get_ptr_mut(&key) {
        Some(state) => state,
        None if insert => {
            // SAFETY: a per-CPU slot nothing writes: always an empty entry.
            let empty = unsafe { &*RST_FLOOR_EMPTY.get_ptr(0)? };
            let _ = RST_FLOOR_FLOWS.insert(&key, empty, BPF_NOEXIST as u64);
            RST_FLOOR_FLOWS.get_ptr_mut(&key)?
        }
        None => return None,
    };
    Some((state, side.index()))
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
