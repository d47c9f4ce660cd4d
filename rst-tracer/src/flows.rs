//! Userspace flow table: joins the events of one flow (a reset and the packets after it, the
//! retransmission samples) and keeps a bounded, recent history per flow.
//!
//! Memory is bounded by `capacity`; idle flows are expired, and when the table is still full the
//! least recently active tenth is evicted. Every eviction is counted and reported.

use std::collections::HashMap;

/// A hash map keyed by values a packet's sender chooses (flow keys, IP IDs, reset ids): ahash
/// with keys drawn at random per process, several times faster than std's SipHash on these
/// small keys and still resistant to crafted collisions.
pub type PacketMap<K, V> = HashMap<K, V, ahash::RandomState>;

use rst_tracer_common::{
    event::{Direction, PacketInfo},
    flow::{FlowKey, Side},
};

use crate::event::{KernelAct, KernelNote, Reset, Sample, Seen};

/// What the verdict of a reset needs of the flow's other resets, its neighbours: where and when
/// each was seen, its headers, and whether it bore its sender's own abort. A flow keeps these,
/// not whole resets: the flow state from before a reset is two thirds of it.
#[derive(Clone, Debug)]
pub struct Neighbour {
    /// Where and when.
    pub seen: Seen,
    /// The RST's headers.
    pub rst: PacketInfo,
    /// It bore every mark of its sender's own abort, judged from the flow state before it
    /// (`forensics::explain::is_own_abort`).
    pub own_abort: bool,
    /// It was seen leaving this host, sent by it (`forensics::left_this_host`).
    pub left_this_host: bool,
    /// Its sequence number was the one its receiver expected next
    /// (`forensics::sequence::is_exact`): of a burst, the one a Linux socket accepts.
    pub exact: bool,
}

impl Neighbour {
    /// What the flow keeps of `r`, with what the judges said of it: whether it bore its
    /// sender's own abort, was seen leaving this host, was at exactly RCV.NXT.
    pub fn of(r: &Reset, own_abort: bool, left_this_host: bool, exact: bool) -> Neighbour {
        Neighbour {
            seen: r.seen.clone(),
            rst: r.rst,
            own_abort,
            left_this_host,
            exact,
        }
    }
}

/// A sampled change in one side's TTL: the packet's TTL against that side's baseline before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TtlShift {
    /// When the packet was seen (event clock).
    pub ts_ns: u64,
    /// The side's TTL range before it (min, max).
    pub before: (u8, u8),
    /// The packet's TTL.
    pub ttl: u8,
    /// The packet's payload length.
    pub payload_len: u16,
}

impl TtlShift {
    /// The shift a `ttl_change` sample records.
    pub fn of(s: &Sample) -> TtlShift {
        TtlShift {
            ts_ns: s.seen.kernel_ts_ns,
            before: (s.sender.ttl_min, s.sender.ttl_max),
            ttl: s.packet.ttl,
            payload_len: s.packet.payload_len,
        }
    }
}

/// Size and evictions of the userspace flow table.
#[derive(Clone, Copy, Debug, Default)]
pub struct FlowTableStats {
    /// Flows tracked now.
    pub tracked: usize,
    /// Flows evicted so far to keep the table bounded.
    pub evictions: u64,
}

/// What this run has seen of one flow.
#[derive(Clone, Debug, Default)]
pub struct FlowRecord {
    /// Kernel time of the flow's last event.
    pub last_event_ns: u64,
    /// Resets seen.
    pub resets: u32,
    /// Side and kernel time of the last reset.
    pub last_reset: Option<(Side, u64)>,
    /// After-reset packets reported, per side.
    pub after_reset: [u32; 2],
    /// Latest retransmission count reported per side (the kernel's running total).
    pub retransmits: [u32; 2],
    /// TTL-change samples.
    pub ttl_changes: u32,
    /// The latest sampled TTL change per side.
    pub ttl_shifts: [Option<TtlShift>; 2],
    /// The flow's recent resets with their settle ids, newest last (the neighbours a verdict
    /// looks at).
    pub recent_resets: Vec<(u64, Neighbour)>,
    /// Kernel time of the first retransmission sample per side since the other side last
    /// answered (0: none pending); the silence check looks at these.
    pub first_retransmit_ns: [u64; 2],
    /// The stack's recent words on the flow's resets (tracepoints), newest last.
    pub kernel_notes: Vec<KernelNote>,
    /// Segments this host's stack retransmitted, per sending side (tcp_retransmit_skb).
    pub kernel_retransmits: [u32; 2],
    /// Kernel times of this host's recent SYN-ACK retransmissions (tcp_retransmit_synack).
    pub synack_retransmits_ns: Vec<u64>,
}

/// Recent resets kept per flow.
const RECENT_RESETS: usize = 16;
/// A tcp_send_reset note belongs to a reset seen this long after it at most (ns).
const SENT_BEFORE_NS: u64 = 10_000_000;
/// Clock slack between a tracepoint and a packet hook on another CPU (ns).
const JOIN_SLACK_NS: u64 = 1_000_000;

/// Whether `n` is a tcp_send_reset note from `side` that fired shortly before a reset seen at `t`.
fn sent_before(n: &KernelNote, side: Side, t: u64) -> bool {
    n.act == KernelAct::SentReset
        && n.side == side
        && n.kernel_ts_ns <= t + JOIN_SLACK_NS
        && t.saturating_sub(n.kernel_ts_ns) <= SENT_BEFORE_NS
}

impl FlowRecord {
    /// Remembers a reset (what a neighbour's verdict needs of it), forgetting the oldest beyond
    /// [`RECENT_RESETS`].
    pub fn remember(&mut self, id: u64, reset: Neighbour) {
        if self.recent_resets.len() == RECENT_RESETS {
            self.recent_resets.remove(0);
        }
        // Most flows see one or two resets: room for exactly those (a first push makes room
        // for four).
        self.recent_resets.reserve_exact(1);
        self.recent_resets.push((id, reset));
    }

    /// Remembers what the stack said: retransmissions are counted, reset notes kept (the
    /// oldest forgotten beyond [`RECENT_RESETS`]).
    pub fn note(&mut self, note: KernelNote) {
        match note.act {
            KernelAct::Retransmitted => {
                let n = &mut self.kernel_retransmits[note.side.index()];
                *n = n.saturating_add(note.count);
                return;
            }
            KernelAct::RetransmittedSynAck => {
                if self.synack_retransmits_ns.len() == RECENT_RESETS {
                    self.synack_retransmits_ns.remove(0);
                }
                self.synack_retransmits_ns.push(note.kernel_ts_ns);
                return;
            }
            KernelAct::SentReset | KernelAct::AcceptedReset => {}
        }
        if self.kernel_notes.len() == RECENT_RESETS {
            self.kernel_notes.remove(0);
        }
        self.kernel_notes.push(note);
    }

    /// The flow's other resets within `window_ns` of `reset` (`id` is the reset's own).
    pub fn neighbours(&self, id: u64, reset: &Reset, window_ns: u64) -> Vec<Neighbour> {
        let t = reset.seen.kernel_ts_ns;
        self.recent_resets
            .iter()
            .filter(|(i, r)| *i != id && r.seen.kernel_ts_ns.abs_diff(t) <= window_ns)
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// The tcp_send_reset note of `reset` when this host sent it: the latest on the same side
    /// that fired shortly before the egress hook saw the packet.
    pub fn sent_note(&self, reset: &Reset) -> Option<&KernelNote> {
        if reset.seen.direction != Direction::Egress {
            return None;
        }
        self.sent_note_by(reset.seen.side, reset.seen.kernel_ts_ns)
    }

    /// The latest tcp_send_reset note of `side` that fired shortly before an egress hook saw a
    /// reset at kernel time `t`.
    pub fn sent_note_by(&self, side: Side, t: u64) -> Option<&KernelNote> {
        self.kernel_notes.iter().rfind(|n| sent_before(n, side, t))
    }

    /// As [`FlowRecord::sent_note_by`], and forgets the note: it has joined its reset.
    pub fn take_sent_note_by(&mut self, side: Side, t: u64) -> Option<KernelNote> {
        let i = self
            .kernel_notes
            .iter()
            .rposition(|n| sent_before(n, side, t))?;
        Some(self.kernel_notes.remove(i))
    }

    /// This host's SYN-ACK retransmissions before `reset` that came after the packet view saw
    /// the handshake's ACK: the client believed the connection open, the server's stack did not.
    pub fn synacks_after_handshake(&self, reset: &Reset) -> u32 {
        let ack_ns = reset.flow.ack_ns;
        self.synack_retransmits_ns
            .iter()
            .filter(|&&t| ack_ns != 0 && t > ack_ns && t <= reset.seen.kernel_ts_ns)
            .count() as u32
    }

    /// Whether a socket accepted ingress reset `reset` (`exact`: at exactly RCV.NXT). The
    /// tcp_receive_reset tracepoint fires after the ingress hooks, but not always before the next
    /// packet's: under load a driver runs XDP over a batch of packets before the stack sees the
    /// first. So a note belongs to one of the ingress resets from that side since the side's
    /// previous note: the first exact one, which is the one a socket takes (a socket takes one
    /// reset, then is gone), or, when none is known to be exact, the last.
    pub fn was_accepted(&self, reset: &Reset, exact: bool) -> bool {
        if reset.seen.direction != Direction::Ingress {
            return false;
        }
        let (t, side) = (reset.seen.kernel_ts_ns, reset.seen.side);
        let mut resets: Vec<(u64, bool)> = self
            .recent_resets
            .iter()
            .map(|(_, r)| r)
            .filter(|r| r.seen.direction == Direction::Ingress && r.seen.side == side)
            .map(|r| (r.seen.kernel_ts_ns, r.exact))
            .collect();
        if !resets.iter().any(|(ts, _)| *ts == t) {
            resets.push((t, exact));
        }
        resets.sort_unstable();
        let mut notes: Vec<u64> = self
            .kernel_notes
            .iter()
            .filter(|n| n.act == KernelAct::AcceptedReset && n.side == side)
            .map(|n| n.kernel_ts_ns)
            .collect();
        notes.sort_unstable();
        let mut after = None;
        for note in notes {
            let batch: Vec<&(u64, bool)> = resets
                .iter()
                .filter(|(ts, _)| after.is_none_or(|a| *ts > a) && *ts <= note)
                .collect();
            let owner = batch.iter().find(|(_, e)| *e).or(batch.last());
            if owner.is_some_and(|(ts, _)| *ts == t) {
                return true;
            }
            after = Some(note);
        }
        false
    }
}

/// Bounded map of flows to their records.
#[derive(Debug)]
pub struct FlowTable {
    flows: PacketMap<FlowKey, FlowRecord>,
    capacity: usize,
    idle_ns: u64,
    evictions: u64,
}

impl FlowTable {
    /// A table holding at most `capacity` flows, forgetting flows idle for `idle_ns`.
    pub fn new(capacity: usize, idle_ns: u64) -> FlowTable {
        FlowTable {
            flows: PacketMap::default(),
            capacity: capacity.max(1),
            idle_ns,
            evictions: 0,
        }
    }

    /// The record of `key`, created if new; marks it active at `now_ns`.
    pub fn touch(&mut self, key: &FlowKey, now_ns: u64) -> &mut FlowRecord {
        if self.flows.len() >= self.capacity && !self.flows.contains_key(key) {
            self.make_room(now_ns);
        }
        let rec = self.flows.entry(*key).or_default();
        rec.last_event_ns = rec.last_event_ns.max(now_ns);
        rec
    }

    /// The record of `key`, if tracked.
    pub fn get(&self, key: &FlowKey) -> Option<&FlowRecord> {
        self.flows.get(key)
    }

    /// Forgets flows idle since before `now_ns - idle`.
    pub fn expire(&mut self, now_ns: u64) {
        let idle = self.idle_ns;
        let before = self.flows.len();
        self.flows
            .retain(|_, r| now_ns.saturating_sub(r.last_event_ns) < idle);
        self.evictions += (before - self.flows.len()) as u64;
    }

    fn make_room(&mut self, now_ns: u64) {
        self.expire(now_ns);
        if self.flows.len() < self.capacity {
            return;
        }
        let mut ages: Vec<u64> = self.flows.values().map(|r| r.last_event_ns).collect();
        let cut = (self.capacity / 10).max(1);
        let (_, threshold, _) = ages.select_nth_unstable(cut - 1);
        let threshold = *threshold;
        let before = self.flows.len();
        let mut budget = cut;
        self.flows.retain(|_, r| {
            if budget > 0 && r.last_event_ns <= threshold {
                budget -= 1;
                false
            } else {
                true
            }
        });
        self.evictions += (before - self.flows.len()) as u64;
    }

    /// Flows with retransmissions that no answer has cleared yet.
    pub fn retransmitting(&self) -> Vec<FlowKey> {
        self.flows
            .iter()
            .filter(|(_, r)| r.first_retransmit_ns.iter().any(|t| *t != 0))
            .map(|(k, _)| *k)
            .collect()
    }

    /// The record of `key`, if tracked, for changing.
    pub fn get_mut(&mut self, key: &FlowKey) -> Option<&mut FlowRecord> {
        self.flows.get_mut(key)
    }

    /// Size and evictions so far.
    pub fn stats(&self) -> FlowTableStats {
        FlowTableStats {
            tracked: self.flows.len(),
            evictions: self.evictions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::testing::{self, MS};

    fn key(port: u16) -> FlowKey {
        FlowKey {
            port_lo: port,
            family: 4,
            ..Default::default()
        }
    }

    #[test]
    fn stays_within_capacity_and_counts_evictions() {
        let mut t = FlowTable::new(10, u64::MAX);
        for i in 0..25u16 {
            t.touch(&key(i), i as u64 + 1);
        }
        let s = t.stats();
        assert!(s.tracked <= 10, "{} tracked", s.tracked);
        assert_eq!(s.tracked as u64 + s.evictions, 25);
        // The newest flow survives, the oldest went first.
        assert!(t.get(&key(24)).is_some());
        assert!(t.get(&key(0)).is_none());
    }

    #[test]
    fn idle_flows_expire() {
        let mut t = FlowTable::new(10, 100);
        t.touch(&key(1), 1_000);
        t.touch(&key(2), 1_050);
        t.expire(1_120);
        assert!(t.get(&key(1)).is_none());
        assert!(t.get(&key(2)).is_some());
        assert_eq!(t.stats().evictions, 1);
    }

    fn reset_at(direction: Direction, ts: u64) -> Reset {
        let mut r = testing::reset();
        r.seen.direction = direction;
        r.seen.kernel_ts_ns = ts;
        r
    }

    fn note(sent: bool, side: Side, ts: u64) -> KernelNote {
        KernelNote {
            act: if sent {
                KernelAct::SentReset
            } else {
                KernelAct::AcceptedReset
            },
            kernel_ts_ns: ts,
            key: key(0),
            side,
            state: 0,
            reason: 2,
            count: 1,
        }
    }

    #[test]
    fn folded_retransmissions_count_as_many_as_they_stand_for() {
        let mut f = FlowRecord::default();
        let folded = |count| KernelNote {
            act: KernelAct::Retransmitted,
            count,
            ..note(true, Side::Hi, MS)
        };
        f.note(folded(1));
        f.note(folded(7));
        assert_eq!(f.kernel_retransmits, [0, 8]);
    }

    #[test]
    fn an_accept_belongs_to_the_last_ingress_reset_before_it() {
        // A blind reset at 100, the exact one at 200, a socket accepts at 201.
        let (blind, exact) = (
            reset_at(Direction::Ingress, 100),
            reset_at(Direction::Ingress, 200),
        );
        let mut f = FlowRecord::default();
        f.remember(1, Neighbour::of(&blind, false, false, false));
        f.remember(2, Neighbour::of(&exact, false, false, true));
        f.note(note(true, Side::Lo, 150));
        f.note(note(false, Side::Hi, 190));
        f.note(note(false, Side::Lo, 201));
        assert!(!f.was_accepted(&blind, false));
        assert!(f.was_accepted(&exact, true));
        // An egress reset is never "accepted" here, whatever the notes say.
        assert!(!f.was_accepted(&reset_at(Direction::Egress, 100), true));
    }

    #[test]
    fn in_a_batch_the_accept_belongs_to_the_first_exact_reset() {
        // A burst: exact at 100, two more at 110 and 120, all through XDP before the stack saw
        // the first; the socket took the first at 130 and was gone for the others.
        let burst: Vec<Reset> = [100, 110, 120]
            .iter()
            .map(|t| reset_at(Direction::Ingress, *t))
            .collect();
        let mut f = FlowRecord::default();
        for (i, r) in burst.iter().enumerate() {
            f.remember(i as u64, Neighbour::of(r, false, false, i == 0));
        }
        f.note(note(false, Side::Lo, 130));
        let took: Vec<bool> = burst
            .iter()
            .enumerate()
            .map(|(i, r)| f.was_accepted(r, i == 0))
            .collect();
        assert_eq!(took, [true, false, false]);
        // Nothing known to be exact (a flow seen mid-stream): the last before the note.
        let mut f = FlowRecord::default();
        for (i, r) in burst.iter().enumerate() {
            f.remember(i as u64, Neighbour::of(r, false, false, false));
        }
        f.note(note(false, Side::Lo, 130));
        let took: Vec<bool> = burst.iter().map(|r| f.was_accepted(r, false)).collect();
        assert_eq!(took, [false, false, true]);
        // A second accept (the connection came back on the same ports) looks only after the
        // first.
        let late = reset_at(Direction::Ingress, 200);
        f.remember(3, Neighbour::of(&late, false, false, false));
        f.note(note(false, Side::Lo, 201));
        assert!(f.was_accepted(&late, false));
        assert!(!f.was_accepted(&burst[0], false));
    }

    #[test]
    fn a_send_note_explains_only_the_egress_reset_just_after_it() {
        let mut f = FlowRecord::default();
        f.note(note(true, Side::Lo, MS));
        let out = reset_at(Direction::Egress, MS + 50_000);
        assert_eq!(f.sent_note(&out).map(|n| n.kernel_ts_ns), Some(MS));
        assert!(f
            .sent_note(&reset_at(Direction::Ingress, MS + 50_000))
            .is_none());
        assert!(f
            .sent_note(&reset_at(Direction::Egress, MS + SENT_BEFORE_NS + MS))
            .is_none());
        let mut other = out.clone();
        other.seen.side = Side::Hi;
        assert!(f.sent_note(&other).is_none());
    }
}
