//! Per-flow state update: the work done for every TCP segment.
//!
//! Design decisions:
//! - The common case (an established flow's ACK or data segment) is one LRU look-up and a few
//!   stores into the entry; nothing leaves the kernel.
//! - Events are written *before* the packet is applied, so each carries the state it must be
//!   judged against. A RST never updates its side's baselines (TTL, IP ID, sequence): it is the
//!   packet under suspicion.
//! - New flows are built in a per-CPU scratch entry (the state is larger than is sensible on the
//!   512-byte stack), inserted with BPF_NOEXIST, and then handled like any other flow.

use aya_ebpf::bindings::BPF_NOEXIST;
use rst_tracer_common::{
    counter::Counter,
    event::{
        EventKind, HDR_NEW_FLOW, OPT_TIMESTAMPS, OPT_WSCALE, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN,
    },
    flow::{
        FlowKey, FlowState, Side, FLOW_HANDSHAKE, FLOW_HANDSHAKE_UNTIMED, FLOW_MIDSTREAM, SIDE_FIN,
        SIDE_RST, SIDE_SEEN, SIDE_SYN, SIDE_TIMESTAMPS, WSCALE_UNKNOWN,
    },
    seq::{seq_before, seq_before_eq, seq_len},
};

use crate::{
    emit::{self, Subject},
    maps::{count, sample_gap_ns, RST_FLOWS, RST_SCRATCH},
    parse::Segment,
    Observation,
};

/// Updates the flow of `seg` and writes whatever events it calls for.
// A separate BPF function: keeps its stack frame apart from the parser's.
#[inline(never)]
#[allow(
    clippy::needless_borrows_for_generic_args,
    reason = "by value would copy the key onto the stack"
)]
pub fn observe_segment(seg: &Segment, obs: &Observation) {
    count(Counter::Tcp);
    let (key, side) = FlowKey::canonical(seg.family, &seg.src, seg.sport, &seg.dst, seg.dport);
    let (state, new_flow) = match RST_FLOWS.get_ptr_mut(&key) {
        Some(p) => (p, false),
        None => match insert_flow(&key, seg, obs) {
            Some(p) => (p, true),
            None => return,
        },
    };
    // SAFETY: a pointer into the flow map's value from the look-up or the insert, valid for the
    // run; another CPU updating the same flow races on its fields, never on the memory.
    let state = unsafe { &mut *state };
    let subject = Subject {
        seg,
        obs,
        key: &key,
        side,
    };
    if seg.info.flags & TCP_RST != 0 {
        count(Counter::Rst);
        emit::rst(&subject, state, if new_flow { HDR_NEW_FLOW } else { 0 });
        record_rst(state, side, obs.now_ns);
    } else {
        emit_samples(state, &subject);
        apply(state, seg, side, obs.now_ns);
    }
}

/// Inserts a fresh entry for the flow of `seg`; returns a pointer to the entry in the map.
#[inline(always)]
#[allow(
    clippy::needless_borrows_for_generic_args,
    reason = "by value would copy 200 bytes onto the stack"
)]
fn insert_flow(key: &FlowKey, seg: &Segment, obs: &Observation) -> Option<*mut FlowState> {
    let scratch = RST_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: the per-CPU scratch slot, valid for the run and this CPU's alone.
    unsafe { core::ptr::write_bytes(scratch, 0, 1) };
    // SAFETY: the per-CPU scratch slot, valid for the run and this CPU's alone.
    let fresh = unsafe { &mut *scratch };
    fresh.first_ns = obs.now_ns;
    fresh.sides[0].wscale = WSCALE_UNKNOWN;
    fresh.sides[1].wscale = WSCALE_UNKNOWN;
    if seg.info.flags & (TCP_SYN | TCP_ACK | TCP_RST) != TCP_SYN {
        fresh.flags = FLOW_MIDSTREAM;
    }
    match RST_FLOWS.insert(key, &*fresh, BPF_NOEXIST as u64) {
        Ok(()) => count(Counter::FlowInserts),
        // Another CPU inserted the same flow first; use theirs.
        Err(_) => count(Counter::FlowInsertFailed),
    }
    RST_FLOWS.get_ptr_mut(key)
}

/// A RST: remember when and from which side; baselines stay as they were.
#[inline(always)]
fn record_rst(state: &mut FlowState, side: Side, now_ns: u64) {
    state.rst_count += 1;
    state.last_rst_ns = now_ns;
    state.last_rst_side = side as u8;
    state.after_rst = [0, 0];
    state.sides[side.index()].flags |= SIDE_RST;
}

/// The first packet from each side after a RST goes to the reset ring; retransmissions and TTL
/// changes are sampled (at most one sample per flow per `SAMPLE_GAP_NS`) to the sample ring.
#[inline(always)]
fn emit_samples(state: &mut FlowState, subject: &Subject) {
    let (seg, obs, side) = (subject.seg, subject.obs, subject.side);
    let s = side.index();
    if state.rst_count > 0 {
        state.after_rst[s] += 1;
        if state.after_rst[s] == 1 {
            emit::sample(EventKind::AfterRst, subject, &state.sides[s]);
        }
    }
    let sender = &state.sides[s];
    if sender.flags & SIDE_SEEN == 0 {
        return;
    }
    let info = &seg.info;
    let len = seq_len(
        info.payload_len,
        info.flags & TCP_SYN != 0,
        info.flags & TCP_FIN != 0,
    );
    let retransmit = len > 0 && seq_before_eq(info.seq.wrapping_add(len), sender.seq_next);
    let kind = if retransmit {
        EventKind::Retransmit
    } else if info.ttl != sender.ttl_last {
        EventKind::TtlChange
    } else {
        return;
    };
    if obs.now_ns.wrapping_sub(state.last_sample_ns) < sample_gap_ns() && state.last_sample_ns != 0
    {
        count(Counter::SamplesRateLimited);
    } else {
        state.last_sample_ns = obs.now_ns;
        emit::sample(kind, subject, &state.sides[s]);
    }
    // Counted after the sample, which carries the state from before this packet. A
    // retransmitted segment's ACK is ambiguous (Karn): stop timing it.
    if retransmit {
        state.sides[s].retransmits += 1;
        state.sides[s].probe_ns = 0;
    }
}

/// Folds a non-RST segment into its side's state and the flow's handshake timing.
#[inline(always)]
fn apply(state: &mut FlowState, seg: &Segment, side: Side, now_ns: u64) {
    let info = &seg.info;
    let syn = info.flags & TCP_SYN != 0;
    let ack = info.flags & TCP_ACK != 0;
    let fin = info.flags & TCP_FIN != 0;
    let end = info.seq.wrapping_add(seq_len(info.payload_len, syn, fin));
    let sd = &mut state.sides[side.index()];
    let seen = sd.flags & SIDE_SEEN != 0;
    sd.last_ns = now_ns;
    sd.packets += 1;
    sd.bytes += info.payload_len as u64;
    if !seen || seq_before(sd.seq_next, end) {
        sd.seq_next = end;
        // New data: time it until the other side acknowledges it (one segment at a time).
        if info.payload_len > 0 && sd.probe_ns == 0 {
            sd.probe_ns = now_ns;
            sd.probe_end = end;
        }
    }
    sd.last_seq = info.seq;
    if ack {
        sd.last_ack = info.ack;
    }
    sd.last_len = info.payload_len;
    sd.ipid_run = if seen && info.ip_id == sd.last_ip_id.wrapping_add(1) {
        sd.ipid_run.saturating_add(1)
    } else {
        0
    };
    sd.last_ip_id = info.ip_id;
    sd.window = info.window;
    sd.last_flags = info.flags;
    if sd.ttl_samples == 0 {
        sd.ttl_min = info.ttl;
        sd.ttl_max = info.ttl;
    } else if info.ttl < sd.ttl_min {
        sd.ttl_min = info.ttl;
    } else if info.ttl > sd.ttl_max {
        sd.ttl_max = info.ttl;
    }
    sd.ttl_samples += 1;
    sd.ttl_last = info.ttl;
    let mut flags = sd.flags | SIDE_SEEN;
    if info.tcp_options & OPT_TIMESTAMPS != 0 {
        flags |= SIDE_TIMESTAMPS;
        sd.ts_val = info.ts_val;
        sd.ts_ecr = info.ts_ecr;
    }
    if fin {
        flags |= SIDE_FIN;
    }
    if syn {
        flags |= SIDE_SYN;
        if info.tcp_options & OPT_WSCALE != 0 {
            sd.wscale = info.wscale;
        }
    }
    sd.flags = flags;

    // The other side's segment this ACK covers gives the round trip to this side.
    let (me, other) = (side.index(), side.other().index());
    if ack
        && state.sides[other].probe_ns != 0
        && seq_before_eq(state.sides[other].probe_end, info.ack)
    {
        let leg = now_ns.saturating_sub(state.sides[other].probe_ns);
        let leg = if leg > u32::MAX as u64 {
            u32::MAX
        } else {
            leg as u32
        };
        if state.sides[me].leg_min_ns == 0 || leg < state.sides[me].leg_min_ns {
            state.sides[me].leg_min_ns = leg;
        }
        state.sides[other].probe_ns = 0;
    }

    // A second SYN or SYN-ACK before the handshake completed: which copy was answered is
    // ambiguous (Karn), so the handshake's times are marked as no measure of the round trip.
    if syn && state.ack_ns == 0 && ((!ack && state.syn_ns != 0) || (ack && state.synack_ns != 0)) {
        state.flags |= FLOW_HANDSHAKE_UNTIMED;
    }
    // The last SYN before the SYN-ACK and the last SYN-ACK before the completing ACK.
    if syn && !ack && state.synack_ns == 0 {
        state.syn_ns = now_ns;
        state.syn_side = side as u8;
    } else if syn && ack && state.syn_ns != 0 && state.ack_ns == 0 && side as u8 != state.syn_side {
        state.synack_ns = now_ns;
    } else if !syn
        && ack
        && state.synack_ns != 0
        && state.ack_ns == 0
        && side as u8 == state.syn_side
    {
        state.ack_ns = now_ns;
        state.flags |= FLOW_HANDSHAKE;
        // Stacks ACK the SYN-ACK on its own: data in its place says that ACK was lost.
        if info.payload_len > 0 || fin {
            state.flags |= FLOW_HANDSHAKE_UNTIMED;
        }
    }
}
