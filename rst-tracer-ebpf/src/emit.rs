//! Writing events to the ring buffers: reserve, fill every byte, submit; count what was written
//! and what was lost to a full ring.

use core::{mem::size_of, ptr::copy_nonoverlapping};

use aya_ebpf::{
    cty::c_void,
    helpers::{bpf_skb_load_bytes, bpf_xdp_load_bytes},
    programs::XdpContext,
};
use rst_tracer_common::{
    counter::Counter,
    event::{
        EventHeader, EventKind, RstEvent, SampleEvent, EVENT_VERSION, RST_FRAME_MAX,
        RST_PAYLOAD_MAX,
    },
    flow::{DroppedReset, FlowKey, FlowState, Side, SideState, SYN_SIDE_UNKNOWN},
};

use crate::{
    maps::{count, ring_of, RST_DROPPED, RST_RING},
    parse::Segment,
    Observation, PacketCtx,
};

/// The packet an event is about: the segment, where it was seen, its flow and its sender.
pub struct Subject<'a> {
    /// The parsed segment.
    pub seg: &'a Segment,
    /// Hook, interface and time.
    pub obs: &'a Observation,
    /// Canonical flow key.
    pub key: &'a FlowKey,
    /// The side that sent the segment.
    pub side: Side,
}

/// Fills the header every event starts with, in place (no stack copy).
///
/// # Safety
/// `h` points at the header of a ring entry this program reserved and has not submitted.
#[inline(always)]
unsafe fn fill_header(
    h: *mut EventHeader,
    kind: EventKind,
    len: usize,
    subject: &Subject,
    flags: u8,
) {
    let obs = subject.obs;
    (*h).version = EVENT_VERSION;
    (*h).kind = kind as u8;
    (*h).len = len as u16;
    (*h).ifindex = obs.ifindex;
    (*h).ts_ns = obs.now_ns;
    copy_nonoverlapping(subject.key, &mut (*h).key, 1);
    (*h).hook = obs.hook as u8;
    (*h).direction = obs.hook.direction() as u8;
    (*h).side = subject.side as u8;
    (*h).flags = obs.header_flags | flags;
    (*h)._pad = [0; 4];
}

/// Writes a reset event: the RST's headers, its first payload bytes, the first bytes of its
/// frame and the flow state from before it.
// A separate BPF function: keeps its stack frame apart from the parser's.
#[inline(never)]
pub fn rst(subject: &Subject, flow: &FlowState, flags: u8) {
    let seg = subject.seg;
    let Some(mut entry) = RST_RING.reserve::<RstEvent>(0) else {
        count(Counter::RstDropped);
        tally_dropped(subject, flow);
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` is the ring entry just reserved for a `RstEvent`, this program's until it
    // submits it.
    unsafe {
        fill_header(
            &mut (*ev).header,
            EventKind::Rst,
            size_of::<RstEvent>(),
            subject,
            flags,
        );
        copy_nonoverlapping(&seg.info, &mut (*ev).rst, 1);
        copy_nonoverlapping(flow, &mut (*ev).flow, 1);
        (*ev)._pad = 0;
        (*ev).payload = [0; RST_PAYLOAD_MAX];
        (*ev).payload_captured = copy_payload(subject, &mut (*ev).payload);
        (*ev).frame = [0; RST_FRAME_MAX];
        let (captured, len) = copy_frame(subject.obs, &mut (*ev).frame);
        (*ev).frame_captured = captured;
        (*ev).frame_len = len;
    }
    entry.submit(0);
    count(Counter::RstWritten);
}

/// Counts a reset lost to the full ring in its flow's entry of `RST_DROPPED`, so that the
/// summaries count it by remote and port all the same.
#[inline(always)]
fn tally_dropped(subject: &Subject, flow: &FlowState) {
    let key = DroppedReset {
        key: *subject.key,
        side: subject.side as u8,
        hook: subject.obs.hook as u8,
        syn_side: if flow.syn_ns != 0 {
            flow.syn_side
        } else {
            SYN_SIDE_UNKNOWN
        },
        _pad: 0,
    };
    match RST_DROPPED.get_ptr_mut(key) {
        // SAFETY: this CPU's slot of a per-CPU map value; no other program writes it now.
        Some(n) => unsafe { *n += 1 },
        None => {
            if RST_DROPPED.insert(key, 1, 0).is_ok() {
                count(Counter::RstDroppedFlows);
            }
        }
    }
}

/// Copies the first payload bytes with one helper call (a byte loop would multiply the
/// verifier's work by every parse path); returns how many were copied.
#[inline(always)]
fn copy_payload(subject: &Subject, dst: &mut [u8; RST_PAYLOAD_MAX]) -> u8 {
    // An skb's payload may lie in its page fragments, past the linear part the parser saw;
    // bpf_skb_load_bytes reads those too.
    let available = match subject.obs.ctx {
        PacketCtx::Xdp(_) => subject.seg.payload_available,
        // SAFETY: the program's context, valid for the whole run.
        PacketCtx::Skb(skb) => unsafe { (*skb).len }.saturating_sub(subject.seg.payload_offset),
    } as usize;
    let mut len = subject.seg.info.payload_len as usize;
    if len > available {
        len = available;
    }
    if len > RST_PAYLOAD_MAX {
        len = RST_PAYLOAD_MAX;
    }
    if len == 0 {
        return 0;
    }
    let offset = subject.seg.payload_offset;
    let to = dst.as_mut_ptr() as *mut c_void;
    // SAFETY: the helpers copy `len` <= RST_PAYLOAD_MAX bytes into `dst`, which holds
    // RST_PAYLOAD_MAX, from the program's own context; they check the packet's bounds.
    let rc = unsafe {
        match subject.obs.ctx {
            PacketCtx::Xdp(ctx) => bpf_xdp_load_bytes(ctx, offset, to, len as u32),
            PacketCtx::Skb(skb) => bpf_skb_load_bytes(skb as *const c_void, offset, to, len as u32),
        }
    };
    if rc == 0 {
        len as u8
    } else {
        0
    }
}

/// Copies the frame's first bytes, from its first (Ethernet) byte, with one helper call, like the
/// payload; returns how many were copied and the frame's whole length.
#[inline(always)]
fn copy_frame(obs: &Observation, dst: &mut [u8; RST_FRAME_MAX]) -> (u16, u32) {
    let frame_len = match obs.ctx {
        PacketCtx::Xdp(ctx) => {
            let ctx = XdpContext::new(ctx);
            (ctx.data_end() - ctx.data()) as u32
        }
        // SAFETY: the program's context, valid for the whole run. `len` counts the page
        // fragments too, which bpf_skb_load_bytes reads.
        PacketCtx::Skb(skb) => unsafe { (*skb).len },
    };
    let mut len = frame_len as usize;
    if len > RST_FRAME_MAX {
        len = RST_FRAME_MAX;
    }
    if len == 0 {
        return (0, frame_len);
    }
    let to = dst.as_mut_ptr() as *mut c_void;
    // SAFETY: the helpers copy `len` <= RST_FRAME_MAX bytes into `dst`, which holds
    // RST_FRAME_MAX, from offset 0 of the program's own context; they check the packet's bounds.
    let rc = unsafe {
        match obs.ctx {
            PacketCtx::Xdp(ctx) => bpf_xdp_load_bytes(ctx, 0, to, len as u32),
            PacketCtx::Skb(skb) => bpf_skb_load_bytes(skb as *const c_void, 0, to, len as u32),
        }
    };
    if rc == 0 {
        (len as u16, frame_len)
    } else {
        (0, frame_len)
    }
}

/// Writes a sample event with the sender's side state from before the packet.
// A separate BPF function: keeps its stack frame apart from the parser's.
#[inline(never)]
pub fn sample(kind: EventKind, subject: &Subject, sender: &SideState) {
    let (written, dropped) = match kind {
        EventKind::AfterRst => (Counter::AfterRstWritten, Counter::AfterRstDropped),
        EventKind::Retransmit => (Counter::RetransmitWritten, Counter::RetransmitDropped),
        _ => (Counter::TtlChangeWritten, Counter::TtlChangeDropped),
    };
    let Some(mut entry) = ring_of(kind).reserve::<SampleEvent>(0) else {
        count(dropped);
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` is the ring entry just reserved for a `SampleEvent`, this program's until it
    // submits it.
    unsafe {
        fill_header(
            &mut (*ev).header,
            kind,
            size_of::<SampleEvent>(),
            subject,
            0,
        );
        copy_nonoverlapping(&subject.seg.info, &mut (*ev).packet, 1);
        copy_nonoverlapping(sender, &mut (*ev).sender, 1);
    }
    entry.submit(0);
    count(written);
}
