//! XDP metadata that marks a frame as replayed from a capture and carries its timestamp.
//!
//! Replay runs the XDP program with BPF_PROG_TEST_RUN, `data_in` = this metadata followed by the
//! frame, and a `struct xdp_md` context whose `data` is the metadata length. The program reads the
//! metadata between `ctx.metadata()` and `ctx.data()`; live traffic never carries the magic word,
//! so it is never mistaken for replay.

use core::mem::size_of;

use crate::flow::FlowKey;

/// Magic word at the start of [`ReplayMeta`] ("RSTR").
pub const REPLAY_MAGIC: u32 = 0x5253_5452;

/// Replay metadata placed in front of the frame (16 bytes: a multiple of 4, at most 32).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayMeta {
    /// [`REPLAY_MAGIC`].
    pub magic: u32,
    /// Padding, always zero.
    pub _pad: u32,
    /// Capture timestamp in ns since the Unix epoch.
    pub ts_ns: u64,
}
const _: () = assert!(size_of::<ReplayMeta>() == 16);

impl ReplayMeta {
    /// Metadata for a record captured at `ts_ns`.
    pub const fn new(ts_ns: u64) -> Self {
        ReplayMeta {
            magic: REPLAY_MAGIC,
            _pad: 0,
            ts_ns,
        }
    }

    /// The bytes to put in front of a frame (host byte order, as the program reads them).
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..4].copy_from_slice(&self.magic.to_ne_bytes());
        out[8..].copy_from_slice(&self.ts_ns.to_ne_bytes());
        out
    }
}

/// What the replay program saw of the frame it ran last (the one slot of
/// [`crate::names::MAP_REPLAYED_FLOW`]): its flow and TCP flags, so that userspace can keep a
/// flow's packets (`--pcap-out-context`) without parsing frames a second way. Written by
/// `rst_replay` only, never by the live programs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayedFlow {
    /// The frame's flow, canonical (valid when `tcp` is 1).
    pub key: FlowKey,
    /// Its TCP flags (`TCP_*`).
    pub tcp_flags: u16,
    /// 1 when the frame parsed as a TCP segment, else 0 (and `key` is stale).
    pub tcp: u16,
    /// Padding, always zero.
    pub _pad: u32,
}
const _: () = assert!(size_of::<ReplayedFlow>() == 48);
