//! The kernel notes: what the kernel's TCP stack says about resets and retransmissions, from four
//! tracepoints.
//!
//! Design decisions:
//! - tcp:tcp_send_reset fires when this host sends a reset, with the kernel's reason (enum
//!   sk_rst_reason, Linux 6.10+) and the socket's state; tcp:tcp_receive_reset fires only when a
//!   socket accepts a reset; tcp:tcp_retransmit_skb and tcp:tcp_retransmit_synack fire when
//!   the stack retransmits. Userspace joins them with the packet events by flow and time.
//! - Field offsets are not compiled in: userspace reads them from tracefs
//!   (`events/tcp/<tracepoint>/format`) and sets the `TP_OFFSETS` global before load, because
//!   these layouts change between kernels. A field this kernel lacks has offset `FIELD_ABSENT`.
//! - Reset events go to the reset ring, so they reach userspace in order with the resets;
//!   retransmissions go to the sample ring, so a retransmission storm cannot crowd out resets.
//! - Retransmissions are rate-limited like the packet samples: at most one event per flow side
//!   per sample gap, carrying how many it stands for; the ones in between are held in
//!   `RST_RETX_TALLY` and ride on the next event, or are flushed when the flow resets, so the
//!   count a reset's verdict sees is exact.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::TracePointContext};
use rst_tracer_common::{
    counter::Counter,
    event::{
        EventKind, KernelNoteEvent, RetransmitTally, SocketFields, EVENT_VERSION, FIELD_ABSENT,
        REASON_UNKNOWN,
    },
    flow::{AddrWords, FlowKey, Side, FAMILY_IPV4, FAMILY_IPV6},
};

use crate::maps::{count, ring_of, sample_gap_ns, RST_RETX_TALLY, TP_OFFSETS};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// The send tracepoint's field offsets: state, reason, saddr, daddr.
fn send_offsets() -> [u32; 4] {
    let o = &TP_OFFSETS;
    // SAFETY: TP_OFFSETS is a plain-data global that userspace sets before load and nothing
    // writes after; the volatile reads keep the compiler from folding in the default. Only
    // the fields needed are read: a copy of the whole table would cost 112 bytes of the
    // verifier's 512-byte stack budget.
    unsafe {
        [
            core::ptr::read_volatile(&o.send_state),
            core::ptr::read_volatile(&o.send_reason),
            core::ptr::read_volatile(&o.send_saddr),
            core::ptr::read_volatile(&o.send_daddr),
        ]
    }
}

/// The socket fields of one of the socket tracepoints (a field of `TP_OFFSETS`), read alone
/// (see [`send_offsets`]).
fn socket_offsets(fields: &SocketFields) -> SocketFields {
    // SAFETY: `fields` points into TP_OFFSETS, valid and unchanging for the program's life
    // (see `send_offsets`).
    unsafe { core::ptr::read_volatile(fields) }
}

/// An address and port from a `struct sockaddr_in` / `sockaddr_in6` copied into a tracepoint.
fn sockaddr(ctx: &TracePointContext, off: u32) -> Option<(u16, AddrWords, u16)> {
    // SAFETY: bpf_probe_read of the tracepoint's record at an offset from its format file: a
    // bad offset fails or reads other bytes of the record, it cannot fault.
    let raw: [u8; 28] = unsafe { ctx.read_at(off as usize) }.ok()?;
    let family = u16::from_ne_bytes([raw[0], raw[1]]);
    let port = u16::from_be_bytes([raw[2], raw[3]]);
    let w = |i: usize| u32::from_ne_bytes([raw[i], raw[i + 1], raw[i + 2], raw[i + 3]]);
    match family {
        AF_INET => Some((FAMILY_IPV4, [w(4), 0, 0, 0], port)),
        AF_INET6 => Some((FAMILY_IPV6, [w(8), w(12), w(16), w(20)], port)),
        _ => None,
    }
}

/// tcp:tcp_send_reset: this host sends a reset; `saddr` is its sender (this host).
pub fn sent_reset(ctx: &TracePointContext) {
    let [state_at, reason_at, saddr_at, daddr_at] = send_offsets();
    let (Some((family, src, sport)), Some((_, dst, dport))) =
        (sockaddr(ctx, saddr_at), sockaddr(ctx, daddr_at))
    else {
        return;
    };
    // SAFETY: bpf_probe_read of the tracepoint's record at an offset from its format file: a
    // bad offset fails or reads other bytes of the record, it cannot fault.
    let state: i32 = unsafe { ctx.read_at(state_at as usize) }.unwrap_or(0);
    let reason: u32 = if reason_at == FIELD_ABSENT {
        REASON_UNKNOWN
    } else {
        // SAFETY: bpf_probe_read of the tracepoint's record at an offset from its format file: a
        // bad offset fails or reads other bytes of the record, it cannot fault.
        unsafe { ctx.read_at(reason_at as usize) }.unwrap_or(REASON_UNKNOWN)
    };
    let (key, side) = FlowKey::canonical(family, &src, sport, &dst, dport);
    flush_retransmits(&key);
    write(
        EventKind::KernelSentReset,
        &key,
        side,
        state as u32,
        reason,
        1,
    );
}

/// tcp:tcp_receive_reset: a socket accepted a reset from its peer.
pub fn accepted_reset(ctx: &TracePointContext) {
    if let Some((key, side, state)) = socket(ctx, &socket_offsets(&TP_OFFSETS.receive), true) {
        flush_retransmits(&key);
        write(
            EventKind::KernelAcceptedReset,
            &key,
            side,
            state,
            REASON_UNKNOWN,
            1,
        );
    }
}

/// tcp:tcp_retransmit_skb: the stack retransmitted a segment. The first retransmission of a
/// flow side after a sample gap writes an event carrying itself and those held since; the
/// others are held in the tally.
#[allow(
    clippy::needless_borrows_for_generic_args,
    reason = "by value would copy the key and tally onto the stack"
)]
pub fn retransmit(ctx: &TracePointContext) {
    let Some((key, side, state)) = socket(ctx, &socket_offsets(&TP_OFFSETS.retransmit), false)
    else {
        return;
    };
    // SAFETY: a BPF helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let s = side as usize;
    let count_now = match RST_RETX_TALLY.get_ptr_mut(&key) {
        // SAFETY: a pointer into the tally map's value from the look-up, valid for the run.
        Some(t) => unsafe {
            let last = (*t).last_ns[s];
            if last != 0 && now.wrapping_sub(last) < sample_gap_ns() {
                // One socket's retransmissions are serialised by its lock: no other CPU
                // updates this side at the same time.
                (*t).held[s] += 1;
                count(Counter::RetransmitsFolded);
                return;
            }
            let n = (*t).held[s] + 1;
            (*t).held[s] = 0;
            (*t).last_ns[s] = now;
            n
        },
        None => {
            let mut t = RetransmitTally::default();
            t.last_ns[s] = now;
            let _ = RST_RETX_TALLY.insert(&key, &t, 0);
            1
        }
    };
    write(
        EventKind::KernelRetransmit,
        &key,
        side,
        state,
        REASON_UNKNOWN,
        count_now,
    );
}

/// Sends the retransmissions a flow has held, before its reset is reported.
fn flush_retransmits(key: &FlowKey) {
    let Some(t) = RST_RETX_TALLY.get_ptr_mut(key) else {
        return;
    };
    for side in [Side::Lo, Side::Hi] {
        let s = side as usize;
        // SAFETY (both): a pointer into the tally map's value from the look-up, valid for the
        // run.
        let held = unsafe { (*t).held[s] };
        if held > 0 {
            unsafe { (*t).held[s] = 0 };
            write(
                EventKind::KernelRetransmit,
                key,
                side,
                0,
                REASON_UNKNOWN,
                held,
            );
        }
    }
}

/// tcp:tcp_retransmit_synack: a listener retransmitted its SYN-ACK.
pub fn synack_retransmit(ctx: &TracePointContext) {
    if let Some((key, side, state)) = socket(ctx, &socket_offsets(&TP_OFFSETS.synack), false) {
        write(
            EventKind::KernelSynAckRetransmit,
            &key,
            side,
            state,
            REASON_UNKNOWN,
            1,
        );
    }
}

/// The flow, side and socket state of a tracepoint with the shared socket fields: `saddr`/`sport`
/// are the socket's own, `daddr`/`dport` its peer's. The side is the one that sent what the
/// tracepoint reports: the peer for a reset the socket `accepted`, else this host.
fn socket(
    ctx: &TracePointContext,
    f: &SocketFields,
    accepted: bool,
) -> Option<(FlowKey, Side, u32)> {
    // SAFETY: bpf_probe_read of the tracepoint's record at an offset from its format file: a
    // bad offset fails or reads other bytes of the record, it cannot fault.
    let field = |off: u32| -> Option<u16> { unsafe { ctx.read_at::<u16>(off as usize) }.ok() };
    let (Some(family), Some(sport), Some(dport)) =
        (field(f.family), field(f.sport), field(f.dport))
    else {
        return None;
    };
    let addr = |v4: u32, v6: u32| -> Option<(u16, AddrWords)> {
        if family == AF_INET {
            // SAFETY: bpf_probe_read of the tracepoint's record at an offset from its format file: a
            // bad offset fails or reads other bytes of the record, it cannot fault.
            let a: [u8; 4] = unsafe { ctx.read_at(v4 as usize) }.ok()?;
            Some((FAMILY_IPV4, [u32::from_ne_bytes(a), 0, 0, 0]))
        } else {
            // SAFETY: bpf_probe_read of the tracepoint's record at an offset from its format file: a
            // bad offset fails or reads other bytes of the record, it cannot fault.
            let a: [u8; 16] = unsafe { ctx.read_at(v6 as usize) }.ok()?;
            let w = |i: usize| u32::from_ne_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]);
            Some((FAMILY_IPV6, [w(0), w(4), w(8), w(12)]))
        }
    };
    let (Some((fam, local)), Some((_, remote))) =
        (addr(f.saddr, f.saddr_v6), addr(f.daddr, f.daddr_v6))
    else {
        return None;
    };
    let (key, side) = if accepted {
        FlowKey::canonical(fam, &remote, dport, &local, sport)
    } else {
        FlowKey::canonical(fam, &local, sport, &remote, dport)
    };
    let state: i32 = if f.state == FIELD_ABSENT {
        0
    } else {
        // SAFETY: bpf_probe_read of the tracepoint's record at an offset from its format file: a
        // bad offset fails or reads other bytes of the record, it cannot fault.
        unsafe { ctx.read_at(f.state as usize) }.unwrap_or(0)
    };
    Some((key, side, state as u32))
}

/// Writes one stack event standing for `acts` acts (see `KernelNoteEvent::count`).
fn write(kind: EventKind, key: &FlowKey, side: Side, state: u32, reason: u32, acts: u32) {
    let Some(mut entry) = ring_of(kind).reserve::<KernelNoteEvent>(0) else {
        count(Counter::NotesDropped);
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` is the ring entry just reserved for a `KernelNoteEvent`, this program's until it
    // submits it.
    unsafe {
        (*ev).version = EVENT_VERSION;
        (*ev).kind = kind as u8;
        (*ev).len = core::mem::size_of::<KernelNoteEvent>() as u16;
        (*ev).state = state;
        (*ev).ts_ns = bpf_ktime_get_ns();
        core::ptr::copy_nonoverlapping(key, &mut (*ev).key, 1);
        (*ev).side = side as u8;
        (*ev)._pad = [0; 3];
        (*ev).reason = reason;
        (*ev).count = acts;
        (*ev)._pad2 = 0;
    }
    entry.submit(0);
    count(Counter::NotesWritten);
}
