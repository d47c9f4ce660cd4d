//! The program's maps and load-time globals. Their symbol names are the contract in
//! `rst_tracer_common::names`; userspace sizes the flow table at load time.

use crate::parse::Segment;
use aya_ebpf::{
    macros::map,
    maps::{Array, LruHashMap, LruPerCpuHashMap, PerCpuArray, RingBuf},
};
use rst_tracer_common::{
    counter::Counter,
    event::{EventKind, RetransmitTally, Ring, TracepointOffsets},
    flow::{DroppedReset, FlowKey, FlowState},
    names::{
        DEFAULT_FLOW_TABLE_SIZE, DEFAULT_SAMPLE_GAP_NS, DROPPED_RESET_FLOWS,
        RETRANSMIT_TALLY_FLOWS, RST_RING_BYTES, SAMPLE_RING_BYTES,
    },
    replay::ReplayedFlow,
};

/// The flow of the frame `rst_replay` ran last (one slot; replay runs one frame at a time).
#[map]
pub static RST_REPLAYED_FLOW: Array<ReplayedFlow> = Array::with_max_entries(1, 0);

/// Per-flow state, canonical key.
#[map]
pub static RST_FLOWS: LruHashMap<FlowKey, FlowState> =
    LruHashMap::with_max_entries(DEFAULT_FLOW_TABLE_SIZE, 0);

/// Reset evidence: resets and the first packets after them. Kept apart from the samples so a
/// retransmission storm can never crowd a reset out.
#[map]
pub static RST_RING: RingBuf = RingBuf::with_byte_size(RST_RING_BYTES, 0);

/// Rate-limited samples: retransmissions and TTL changes.
#[map]
pub static RST_SAMPLES: RingBuf = RingBuf::with_byte_size(SAMPLE_RING_BYTES, 0);

/// Resets dropped on a full reset ring, per flow, sender and hook, per CPU (see
/// `emit::tally_dropped`).
#[map]
pub static RST_DROPPED: LruPerCpuHashMap<DroppedReset, u64> =
    LruPerCpuHashMap::with_max_entries(DROPPED_RESET_FLOWS, 0);

/// Stack retransmissions per flow side not yet sent (see `tracepoints::retransmit`).
#[map]
pub static RST_RETX_TALLY: LruHashMap<FlowKey, RetransmitTally> =
    LruHashMap::with_max_entries(RETRANSMIT_TALLY_FLOWS, 0);

/// Counters, one `u64` per `Counter`, per CPU.
#[map]
pub static RST_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

/// Scratch space for building a new flow entry without using the 512-byte stack.
#[map]
pub static RST_SCRATCH: PerCpuArray<FlowState> = PerCpuArray::with_max_entries(1, 0);

/// Where the parser writes each packet's `Segment` (see `parse::Segment` for why not the stack).
#[map]
pub static RST_SEGMENT: PerCpuArray<Segment> = PerCpuArray::with_max_entries(1, 0);

/// Where the TCP tracepoints' fields are on this kernel. Set by userspace from tracefs.
#[no_mangle]
pub static TP_OFFSETS: TracepointOffsets = TracepointOffsets::LINUX_6_10;

/// Least time between two samples of one flow (ns). Set by userspace before load.
#[no_mangle]
pub static SAMPLE_GAP_NS: u64 = DEFAULT_SAMPLE_GAP_NS;

/// 1 when `rst_replay` should leave each frame's flow in `RST_REPLAYED_FLOW`. Set by userspace
/// before load; 0, the default, lets the verifier drop the writing altogether.
#[no_mangle]
pub static KEEP_REPLAYED_FLOW: u32 = 0;

/// Whether replay keeps each frame's flow for userspace (see [`KEEP_REPLAYED_FLOW`]).
#[inline(always)]
pub fn keep_replayed_flow() -> bool {
    // SAFETY: a plain-data global that userspace sets before load and nothing writes after.
    unsafe { core::ptr::read_volatile(&KEEP_REPLAYED_FLOW) != 0 }
}

/// The ring events of `kind` go to (see `EventKind::ring`).
#[inline(always)]
pub fn ring_of(kind: EventKind) -> &'static RingBuf {
    match kind.ring() {
        Ring::Resets => &RST_RING,
        Ring::Samples => &RST_SAMPLES,
    }
}

/// Adds one to a counter.
#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = RST_COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: a per-CPU array slot: valid for the run, and only this CPU's run uses it.
        unsafe { *slot += 1 };
    }
}

/// The configured sample gap.
#[inline(always)]
pub fn sample_gap_ns() -> u64 {
    // SAFETY: a plain-data global that userspace sets before load and nothing writes after.
    unsafe { core::ptr::read_volatile(&SAMPLE_GAP_NS) }
}
