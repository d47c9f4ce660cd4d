//! The packets of a flow before each of its resets, for `--pcap-out-context N` in replay, where
//! every packet passes through userspace (live, the kernel keeps none of them).
//!
//! The replay source shows [`ResetContext`] every frame before it runs it; at a reset it sets aside
//! the flow's last N packets since its previous reset, and the pcapng sink takes them when it
//! writes that reset, just before it. A flow is its addresses and ports, read with etherparse
//! from the Ethernet frame replay made (VLAN tags and PPPoE session headers skipped). This is for
//! people reading the file only: no verdict ever looks at it.
//!
//! Bounded: at most [`CONTEXT_FLOWS`] flows with their packets (the least recently seen go
//! first) and at most [`CONTEXT_PENDING`] sets of packets set aside for resets not yet written
//! (the oldest go first), each of at most [`MAX_CONTEXT_PACKETS`] packets of at most
//! [`RST_FRAME_MAX`] bytes; what goes is counted in [`ResetContext::evicted`].

use std::{
    collections::VecDeque,
    net::IpAddr,
    num::NonZeroUsize,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};
use lru::LruCache;
use rst_tracer_common::event::RST_FRAME_MAX;

use crate::pipeline::record::FlowView;

/// The most packets of context a reset can have (`--pcap-out-context`).
pub const MAX_CONTEXT_PACKETS: usize = 16;
/// Flows whose recent packets are kept.
pub const CONTEXT_FLOWS: usize = 8192;
/// Resets whose packets are set aside and not yet written.
pub const CONTEXT_PENDING: usize = 1024;

/// PPPoE session frames' EtherType.
const ETHERTYPE_PPPOE_SESSION: u16 = 0x8864;
/// PPP protocol numbers of IPv4 and IPv6.
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;

/// A flow: its two endpoints, the lower first.
type Endpoints = ((IpAddr, u16), (IpAddr, u16));

fn endpoints(a: (IpAddr, u16), b: (IpAddr, u16)) -> Endpoints {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

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
    recent: LruCache<Endpoints, VecDeque<Packet>>,
    pending: LruCache<(Endpoints, u64), Vec<Packet>>,
    evicted: u64,
}

/// A [`ResetContext`] shared by the replay source, which fills it, and the pcapng sink, which takes
/// from it.
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

    /// Notes an Ethernet frame captured at `ts_ns`. A TCP reset sets its flow's packets aside
    /// for it (each reset gets those since the flow's previous one); any other TCP packet joins
    /// them. Frames that are not TCP are left out.
    pub fn note(&mut self, frame: &[u8], ts_ns: u64) {
        let Some((flow, rst)) = tcp_flow(frame) else {
            return;
        };
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

    /// The packets set aside for the reset of `flow` (oriented either way) at `ts_ns`, oldest
    /// first; empty when there were none or they were forgotten.
    pub fn take(&mut self, flow: &FlowView, ts_ns: u64) -> Vec<Packet> {
        let key = endpoints((flow.src, flow.sport), (flow.dst, flow.dport));
        self.pending.pop(&(key, ts_ns)).unwrap_or_default()
    }

    /// Packets forgotten to make room: flows' recent ones, and those set aside for resets that
    /// more recent resets pushed out before they were written.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

/// The flow of a TCP frame and whether it is a reset; None for anything else. Lax: a frame the
/// capture cut short (its snap length) still counts while its TCP header is whole.
fn tcp_flow(frame: &[u8]) -> Option<(Endpoints, bool)> {
    let packet = match LaxSlicedPacket::from_ethernet(frame) {
        Ok(p) if p.net.is_some() => p,
        _ => LaxSlicedPacket::from_ip(pppoe_payload(frame)?).ok()?,
    };
    let (src, dst): (IpAddr, IpAddr) = match packet.net? {
        LaxNetSlice::Ipv4(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        LaxNetSlice::Ipv6(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        LaxNetSlice::Arp(_) => return None,
    };
    let TransportSlice::Tcp(tcp) = packet.transport? else {
        return None;
    };
    Some((
        endpoints((src, tcp.source_port()), (dst, tcp.destination_port())),
        tcp.rst(),
    ))
}

/// The IP packet inside a PPPoE session frame (Ethernet, any VLAN tags, the PPPoE header, the
/// PPP protocol), if it is one carrying IPv4 or IPv6.
fn pppoe_payload(frame: &[u8]) -> Option<&[u8]> {
    let word = |at: usize| Some(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]));
    let mut at = 12;
    while matches!(word(at)?, 0x8100 | 0x88a8 | 0x9100) {
        at += 4;
    }
    if word(at)? != ETHERTYPE_PPPOE_SESSION || !matches!(word(at + 8)?, PPP_IPV4 | PPP_IPV6) {
        return None;
    }
    frame.get(at + 10..)
}

#[cfg(test)]
mod tests {
    use etherparse::PacketBuilder;

    use super::*;

    const A: [u8; 4] = [10, 0, 0, 1];
    const B: [u8; 4] = [10, 0, 0, 2];

    /// An Ethernet frame of the TCP flow A:`a_port` - B:`b_port`, from A or from B, a reset or
    /// not, with `seq`.
    fn tcp(from_a: bool, a_port: u16, b_port: u16, seq: u32, rst: bool) -> Vec<u8> {
        let ((src, sport), (dst, dport)) = if from_a {
            ((A, a_port), (B, b_port))
        } else {
            ((B, b_port), (A, a_port))
        };
        let mut builder = PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4(src, dst, 64)
            .tcp(sport, dport, seq, 1000);
        if rst {
            builder = builder.rst();
        }
        let mut out = Vec::new();
        builder.write(&mut out, &[]).unwrap();
        out
    }

    fn flow(sport: u16, dport: u16) -> FlowView {
        FlowView {
            src: A.into(),
            sport,
            dst: B.into(),
            dport,
        }
    }

    fn seqs(packets: &[Packet]) -> Vec<u32> {
        packets
            .iter()
            .map(|p| {
                let s = LaxSlicedPacket::from_ethernet(&p.data).unwrap();
                match s.transport {
                    Some(TransportSlice::Tcp(t)) => t.sequence_number(),
                    _ => panic!("not TCP"),
                }
            })
            .collect()
    }

    #[test]
    fn a_reset_gets_its_flows_last_packets_since_the_previous_reset_both_ways() {
        let mut c = ResetContext::new(3);
        for seq in 1..=5 {
            c.note(&tcp(seq % 2 == 0, 1000, 80, seq, false), u64::from(seq));
            // Another flow between them, which no reset of the first may show.
            c.note(&tcp(true, 2000, 80, 100 + seq, false), u64::from(seq));
        }
        c.note(&tcp(false, 1000, 80, 6, true), 6);
        assert_eq!(seqs(&c.take(&flow(1000, 80), 6)), [3, 4, 5]);
        assert!(c.take(&flow(1000, 80), 6).is_empty(), "taken once");
        // The next reset of the flow gets only what came after the first.
        c.note(&tcp(true, 1000, 80, 7, false), 7);
        c.note(&tcp(true, 1000, 80, 8, true), 8);
        assert_eq!(seqs(&c.take(&flow(1000, 80), 8)), [7]);
        c.note(&tcp(true, 2000, 80, 200, true), 9);
        assert_eq!(seqs(&c.take(&flow(2000, 80), 9)), [103, 104, 105]);
    }

    #[test]
    fn frames_that_are_not_tcp_are_left_out_and_pppoe_is_looked_into() {
        let mut c = ResetContext::new(4);
        c.note(&[0u8; 10], 1);
        let mut arp = tcp(true, 1000, 80, 1, false);
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        c.note(&arp, 2);
        // The same TCP segment inside a PPPoE session behind a VLAN tag: Ethernet, the tag,
        // PPPoE (6 bytes), PPP (2).
        let plain = tcp(true, 1000, 80, 3, false);
        let mut pppoe = plain[..12].to_vec();
        pppoe.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        pppoe.extend_from_slice(&ETHERTYPE_PPPOE_SESSION.to_be_bytes());
        pppoe.extend_from_slice(&[0x11, 0, 0, 1, 0, 0]);
        pppoe.extend_from_slice(&PPP_IPV4.to_be_bytes());
        pppoe.extend_from_slice(&plain[14..]);
        c.note(&pppoe, 3);
        assert_eq!(c.recent.len(), 1, "the PPPoE frame is the flow's");
        c.note(&tcp(false, 1000, 80, 9, true), 4);
        let packets = c.take(&flow(1000, 80), 4);
        assert_eq!(packets.len(), 1, "{packets:?}");
        assert_eq!(packets[0].data, pppoe);
    }

    #[test]
    fn the_table_is_bounded_and_counts_what_it_forgot() {
        let mut c = ResetContext::new(MAX_CONTEXT_PACKETS + 10);
        for i in 0..CONTEXT_FLOWS as u32 + 5 {
            let port = 1 + (i % 60_000) as u16;
            let sport = if i < 60_000 { 1000 } else { 1001 };
            for seq in 0..20 {
                c.note(&tcp(true, sport, port, seq, false), 1);
            }
        }
        assert_eq!(c.evicted(), 5);
        assert!(c.recent.iter().all(|(_, p)| p.len() == MAX_CONTEXT_PACKETS));
        // A long frame keeps its first bytes and its length; one the capture cut after the TCP
        // header (its IP length says more) still counts.
        let mut cut = tcp(true, 3000, 80, 0, false);
        cut[16..18].copy_from_slice(&1500u16.to_be_bytes());
        c.note(&cut, 2);
        let mut long = tcp(true, 3000, 80, 1, false);
        long.resize(1514, 0);
        c.note(&long, 2);
        c.note(&tcp(true, 3000, 80, 2, true), 3);
        let packets = c.take(&flow(3000, 80), 3);
        assert_eq!(seqs(&packets[..1]), [0], "the cut frame");
        let p = &packets[1];
        assert_eq!((p.data.len(), p.len), (RST_FRAME_MAX, 1514));
    }

    #[test]
    fn packets_set_aside_for_resets_never_written_are_bounded_too() {
        let mut c = ResetContext::new(2);
        for port in 0..CONTEXT_PENDING as u16 + 3 {
            c.note(&tcp(true, 1000, port, 1, false), 1);
            c.note(&tcp(false, 1000, port, 2, true), 2);
        }
        assert_eq!(c.evicted(), 3);
        assert!(
            c.take(&flow(1000, 0), 2).is_empty(),
            "the oldest went first"
        );
        assert_eq!(c.take(&flow(1000, CONTEXT_PENDING as u16 + 2), 2).len(), 1);
    }
}
