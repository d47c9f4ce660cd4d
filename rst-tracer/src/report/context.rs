//! The packets of a flow before each of its resets, for `--pcap-out-context N` in replay, where
//! every packet passes through userspace (live, the kernel keeps none of them).
//!
//! The replay source shows [`ResetContext`] every frame it ran, with the flow and TCP flags the
//! kernel program parsed out of it (`rst_replay` leaves them in `RST_REPLAYED_FLOW`: one
//! parser for live and replay, none here). At a reset it sets aside the flow's last N packets
//! since its previous reset, and the pcapng sink takes them when it writes that reset, just
//! before it. For people reading the file only: no verdict ever looks at it.
//!
//! Bounded: at most [`CONTEXT_FLOWS`] flows with their packets (the least recently seen go
//! first) and at most [`CONTEXT_PENDING`] sets of packets set aside for resets not yet written
//! (the oldest go first), each of at most [`MAX_CONTEXT_PACKETS`] packets of at most
//! [`RST_FRAME_MAX`] bytes; what goes is counted in [`ResetContext::evicted`].

use std::{
    collections::VecDeque,
    num::NonZeroUsize,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use lru::LruCache;
use rst_tracer_common::{event::RST_FRAME_MAX, flow::FlowKey};

/// The most packets of context a reset can have (`--pcap-out-context`).
pub const MAX_CONTEXT_PACKETS: usize = 16;
/// Flows whose recent packets are kept.
pub const CONTEXT_FLOWS: usize = 8192;
/// Resets whose packets are set aside and not yet written.
pub const CONTEXT_PENDING: usize = 1024;

/// One packet of context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Capture time, ns since the epoch.
    pub ts_ns: u64,
    /// Its first [`RST_FRAME_MAX`] bytes.
    pub data: Bytes,
    /// Its length as replayed (the record's captured bytes, as Ethernet).
    pub len: u32,
}

/// The recent packets of recent flows, and those set aside for resets.
pub struct ResetContext {
    per_reset: usize,
    recent: LruCache<FlowKey, VecDeque<Packet>>,
    pending: LruCache<(FlowKey, u64), Vec<Packet>>,
    evicted: u64,
}

/// A [`ResetContext`] shared by the replay source, which fills it, and the pcapng sink, which
/// takes from it.
pub type SharedContext = Arc<Mutex<ResetContext>>;

impl ResetContext {
    /// Keeps up to `per_reset` packets (at most [`MAX_CONTEXT_PACKETS`]) before each reset.
    pub fn new(per_reset: usize) -> ResetContext {
        let cap = |n: usize| NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN);
        ResetContext {
            per_reset: per_reset.clamp(1, MAX_CONTEXT_PACKETS),
            recent: LruCache::new(cap(CONTEXT_FLOWS)),
            pending: LruCache::new(cap(CONTEXT_PENDING)),
            evicted: 0,
        }
    }

    /// Notes a TCP segment of `flow` captured at `ts_ns` (its Ethernet frame as replayed). A
    /// reset (`rst`) sets its flow's packets aside for it (each reset gets those since the
    /// flow's previous one); any other segment joins them.
    pub fn note(&mut self, flow: FlowKey, rst: bool, frame: &[u8], ts_ns: u64) {
        if rst {
            let before: Vec<Packet> = self.recent.pop(&flow).map(Vec::from).unwrap_or_default();
            // The first of several resets with one time keeps what came before them.
            if !self.pending.contains(&(flow, ts_ns)) {
                if let Some((_, forgotten)) = self.pending.push((flow, ts_ns), before) {
                    self.evicted += u64::from(!forgotten.is_empty());
                }
            }
            return;
        }
        let packet = Packet {
            ts_ns,
            data: Bytes::copy_from_slice(&frame[..frame.len().min(RST_FRAME_MAX)]),
            len: frame.len() as u32,
        };
        if !self.recent.contains(&flow) && self.recent.len() == self.recent.cap().get() {
            self.evicted += 1;
        }
        let packets = self.recent.get_or_insert_mut(flow, VecDeque::new);
        if packets.len() == self.per_reset {
            packets.pop_front();
        }
        packets.push_back(packet);
    }

    /// The packets set aside for the reset of `flow` at `ts_ns`, oldest first; empty when there
    /// were none or they were forgotten.
    pub fn take(&mut self, flow: &FlowKey, ts_ns: u64) -> Vec<Packet> {
        self.pending.pop(&(*flow, ts_ns)).unwrap_or_default()
    }

    /// Packets forgotten to make room: flows' recent ones, and those set aside for resets that
    /// more recent resets pushed out before they were written.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flow of client port `port`.
    fn flow(port: u16) -> FlowKey {
        FlowKey {
            port_lo: port,
            port_hi: 80,
            ..FlowKey::default()
        }
    }

    /// A frame that says which packet it is.
    fn frame(n: u8) -> Vec<u8> {
        vec![n; 60]
    }

    fn ids(packets: &[Packet]) -> Vec<u8> {
        packets.iter().map(|p| p.data[0]).collect()
    }

    #[test]
    fn a_reset_gets_its_flows_last_packets_since_the_previous_reset() {
        let mut c = ResetContext::new(3);
        for n in 1..=5 {
            c.note(flow(1000), false, &frame(n), u64::from(n));
            // Another flow between them, which no reset of the first may show.
            c.note(flow(2000), false, &frame(100 + n), u64::from(n));
        }
        c.note(flow(1000), true, &frame(6), 6);
        assert_eq!(ids(&c.take(&flow(1000), 6)), [3, 4, 5]);
        assert!(c.take(&flow(1000), 6).is_empty(), "taken once");
        // The next reset of the flow gets only what came after the first.
        c.note(flow(1000), false, &frame(7), 7);
        c.note(flow(1000), true, &frame(8), 8);
        assert_eq!(ids(&c.take(&flow(1000), 8)), [7]);
        c.note(flow(2000), true, &frame(200), 9);
        assert_eq!(ids(&c.take(&flow(2000), 9)), [103, 104, 105]);
        // A second reset at the same time (a duplicate) finds nothing left.
        c.note(flow(3000), false, &frame(1), 10);
        c.note(flow(3000), true, &frame(2), 11);
        c.note(flow(3000), true, &frame(2), 11);
        assert_eq!(ids(&c.take(&flow(3000), 11)), [1]);
    }

    #[test]
    fn the_table_is_bounded_and_counts_what_it_forgot() {
        let mut c = ResetContext::new(MAX_CONTEXT_PACKETS + 10);
        for port in 0..CONTEXT_FLOWS as u16 + 5 {
            for n in 0..20 {
                c.note(flow(port), false, &frame(n), 1);
            }
        }
        assert_eq!(c.evicted(), 5);
        assert!(c.recent.iter().all(|(_, p)| p.len() == MAX_CONTEXT_PACKETS));
        // A long frame keeps its first bytes and its length.
        c.note(flow(60_000), false, &vec![7; 1514], 2);
        c.note(flow(60_000), true, &frame(0), 3);
        let p = &c.take(&flow(60_000), 3)[0];
        assert_eq!((p.data.len(), p.len), (RST_FRAME_MAX, 1514));
    }

    #[test]
    fn packets_set_aside_for_resets_never_written_are_bounded_too() {
        let mut c = ResetContext::new(2);
        for port in 0..CONTEXT_PENDING as u16 + 3 {
            c.note(flow(port), false, &frame(1), 1);
            c.note(flow(port), true, &frame(2), 2);
        }
        assert_eq!(c.evicted(), 3);
        assert!(c.take(&flow(0), 2).is_empty(), "the oldest went first");
        assert_eq!(c.take(&flow(CONTEXT_PENDING as u16 + 2), 2).len(), 1);
    }
}
