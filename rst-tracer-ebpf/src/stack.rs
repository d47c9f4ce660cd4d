//! The stack view: what the kernel's TCP stack says about resets, from two tracepoints.
//!
//! Design decisions:
//! - tcp:tcp_send_reset fires when this host sends a reset, with the kernel's reason (enum
//!   sk_rst_reason, Linux 6.10+) and the socket's state; tcp:tcp_receive_reset fires only when a
//!   socket accepts a reset. Userspace joins both with the packet events by flow and time.
//! - Field offsets are not compiled in: userspace reads them from tracefs
//!   (`events/tcp/<tracepoint>/format`) and sets the `TP_OFFSETS` global before load, because
//!   these layouts change between kernels. A field this kernel lacks has offset `FIELD_ABSENT`.
//! - Events go to the reset ring, so they reach userspace in order with the resets.

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::TracePointContext};
use rst_tracer_common::{
    counter::Counter,
    event::{
        EventKind, StackEvent, TracepointOffsets, EVENT_VERSION, FIELD_ABSENT, REASON_UNKNOWN,
    },
    flow::{AddrWords, FlowKey, Side, FAMILY_IPV4, FAMILY_IPV6},
};

use crate::maps::{count, RST_RING, TP_OFFSETS};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

fn offsets() -> TracepointOffsets {
    unsafe { core::ptr::read_volatile(&TP_OFFSETS) }
}

/// An address and port from a `struct sockaddr_in` / `sockaddr_in6` copied into a tracepoint.
fn sockaddr(ctx: &TracePointContext, off: u32) -> Option<(u16, AddrWords, u16)> {
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
    let o = offsets();
    let (Some((family, src, sport)), Some((_, dst, dport))) =
        (sockaddr(ctx, o.send_saddr), sockaddr(ctx, o.send_daddr))
    else {
        return;
    };
    let state: i32 = unsafe { ctx.read_at(o.send_state as usize) }.unwrap_or(0);
    let reason: u32 = if o.send_reason == FIELD_ABSENT {
        REASON_UNKNOWN
    } else {
        unsafe { ctx.read_at(o.send_reason as usize) }.unwrap_or(REASON_UNKNOWN)
    };
    let (key, side) = FlowKey::canonical(family, &src, sport, &dst, dport);
    write(EventKind::StackSentReset, &key, side, state as u32, reason);
}

/// tcp:tcp_receive_reset: a socket accepted a reset; `saddr` is the socket's own (the
/// receiver), `daddr` the reset's sender.
pub fn accepted_reset(ctx: &TracePointContext) {
    let o = offsets();
    let field = |off: u32| -> Option<u16> { unsafe { ctx.read_at::<u16>(off as usize) }.ok() };
    let (Some(family), Some(sport), Some(dport)) = (
        field(o.recv_family),
        field(o.recv_sport),
        field(o.recv_dport),
    ) else {
        return;
    };
    let addr = |v4: u32, v6: u32| -> Option<(u16, AddrWords)> {
        if family == AF_INET {
            let a: [u8; 4] = unsafe { ctx.read_at(v4 as usize) }.ok()?;
            Some((FAMILY_IPV4, [u32::from_ne_bytes(a), 0, 0, 0]))
        } else {
            let a: [u8; 16] = unsafe { ctx.read_at(v6 as usize) }.ok()?;
            let w = |i: usize| u32::from_ne_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]);
            Some((FAMILY_IPV6, [w(0), w(4), w(8), w(12)]))
        }
    };
    let (Some((fam, local)), Some((_, remote))) = (
        addr(o.recv_saddr, o.recv_saddr_v6),
        addr(o.recv_daddr, o.recv_daddr_v6),
    ) else {
        return;
    };
    // The reset came from the remote end.
    let (key, side) = FlowKey::canonical(fam, &remote, dport, &local, sport);
    write(EventKind::StackAcceptedReset, &key, side, 0, REASON_UNKNOWN);
}

fn write(kind: EventKind, key: &FlowKey, side: Side, state: u32, reason: u32) {
    let Some(mut entry) = RST_RING.reserve::<StackEvent>(0) else {
        count(Counter::StackDropped);
        return;
    };
    let ev = entry.as_mut_ptr();
    unsafe {
        (*ev).version = EVENT_VERSION;
        (*ev).kind = kind as u8;
        (*ev).len = core::mem::size_of::<StackEvent>() as u16;
        (*ev).state = state;
        (*ev).ts_ns = bpf_ktime_get_ns();
        core::ptr::copy_nonoverlapping(key, &mut (*ev).key, 1);
        (*ev).side = side as u8;
        (*ev)._pad = [0; 3];
        (*ev).reason = reason;
    }
    entry.submit(0);
    count(Counter::StackWritten);
}
