//! The settle window: each reset waits here a few round trips for the evidence that only comes
//! after it (the claimed sender still talking, the other end's answer, retransmissions into the
//! void, more resets), then goes to the verdict. Time is the events' own clock (kernel time
//! live, capture time in replay), so live tracing and replay settle alike.

use std::{
    cmp::{Ordering, Reverse},
    collections::{hash_map::Entry, BinaryHeap, VecDeque},
};

use rst_tracer_common::flow::{FlowKey, FlowState};

use crate::{
    event::{Reset, Sample},
    flows::PacketMap,
    forensics::ipid::{IpIdShare, SHARE_WINDOW_NS},
};

/// Settle window when the flow's round trip is unknown (ns).
pub const DEFAULT_WINDOW_NS: u64 = 2_000_000_000;
/// Shortest settle window (ns): long enough for a sender's next segment on a fast path.
pub const MIN_WINDOW_NS: u64 = 500_000_000;
/// Longest settle window (ns).
pub const MAX_WINDOW_NS: u64 = 3_000_000_000;
/// Round trips a reset waits.
const ROUND_TRIPS: u64 = 4;
/// Resets held at most; beyond it the oldest is settled early (and counted).
pub const MAX_PENDING: usize = 100_000;

/// How long a reset of this flow waits: a few handshake round trips, bounded.
pub fn window_ns(flow: &FlowState) -> u64 {
    match flow.handshake_rtt_ns() {
        Some(rtt) => (rtt * ROUND_TRIPS).clamp(MIN_WINDOW_NS, MAX_WINDOW_NS),
        None => DEFAULT_WINDOW_NS,
    }
}

/// A reset waiting for its verdict, with what arrived after it.
#[derive(Debug)]
pub struct Pending {
    /// Identifies the reset among the flow's recent resets.
    pub id: u64,
    /// The reset.
    pub reset: Box<Reset>,
    /// The first packet from each side after it.
    pub after: Vec<Sample>,
    /// Retransmission samples per side after it.
    pub retransmits_after: [u32; 2],
    /// When its window closes (event clock).
    pub deadline_ns: u64,
}

/// Resets waiting for their windows to close, in deadline order.
#[derive(Debug, Default)]
pub struct SettleQueue {
    /// Per flow, its pending resets in the order they were held: what follows a reset finds
    /// them with one look-up of its flow.
    by_flow: PacketMap<FlowKey, Vec<Pending>>,
    /// Every pending reset's deadline, earliest first.
    order: BinaryHeap<Reverse<Deadline>>,
    pending: usize,
    next_id: u64,
    settled_early: u64,
}

/// When a pending reset's window closes, and where it waits.
#[derive(Debug, PartialEq, Eq)]
struct Deadline {
    ns: u64,
    id: u64,
    key: FlowKey,
}

impl Ord for Deadline {
    /// By time, then by id (the order held): `id` alone tells two resets apart.
    fn cmp(&self, other: &Self) -> Ordering {
        (self.ns, self.id).cmp(&(other.ns, other.id))
    }
}

impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl SettleQueue {
    /// The id the next reset held gets.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Holds a reset until `now + window` under [`SettleQueue::next_id`]; returns, when the
    /// queue was full, the oldest pending reset, which must be settled now.
    pub fn hold(&mut self, reset: Box<Reset>) -> Option<Pending> {
        let id = self.next_id;
        self.next_id += 1;
        let deadline_ns = reset.seen.kernel_ts_ns + window_ns(&reset.flow);
        let key = reset.seen.key;
        self.order.push(Reverse(Deadline {
            ns: deadline_ns,
            id,
            key,
        }));
        self.by_flow.entry(key).or_default().push(Pending {
            id,
            reset,
            after: Vec::new(),
            retransmits_after: [0, 0],
            deadline_ns,
        });
        self.pending += 1;
        if self.pending > MAX_PENDING {
            self.settled_early += 1;
            self.pop_next()
        } else {
            None
        }
    }

    /// Adds an after-reset packet to the resets of its flow.
    pub fn after(&mut self, s: &Sample) {
        for p in self.by_flow.get_mut(&s.seen.key).into_iter().flatten() {
            if p.after.iter().all(|a| a.seen.side != s.seen.side) {
                // One per side at most: no room for more.
                p.after.reserve_exact(1);
                p.after.push(s.clone());
            }
        }
    }

    /// Counts a retransmission for the resets of its flow.
    pub fn retransmit(&mut self, s: &Sample) {
        for p in self.by_flow.get_mut(&s.seen.key).into_iter().flatten() {
            p.retransmits_after[s.seen.side.index()] += 1;
        }
    }

    /// The resets whose window closed by `now_ns`, earliest first.
    pub fn due(&mut self, now_ns: u64) -> Vec<Pending> {
        let mut out = Vec::new();
        while self.order.peek().is_some_and(|Reverse(d)| d.ns <= now_ns) {
            out.extend(self.pop_next());
        }
        out
    }

    /// Every pending reset, earliest first (end of input).
    pub fn drain(&mut self) -> Vec<Pending> {
        self.due(u64::MAX)
    }

    fn pop_next(&mut self) -> Option<Pending> {
        let Reverse(next) = self.order.pop()?;
        let Entry::Occupied(mut flow) = self.by_flow.entry(next.key) else {
            unreachable!("every deadline has its reset in by_flow");
        };
        let resets = flow.get_mut();
        let i = resets
            .iter()
            .position(|p| p.id == next.id)
            .expect("every deadline has its reset in by_flow");
        let p = resets.remove(i);
        if resets.is_empty() {
            flow.remove();
        }
        self.pending -= 1;
        Some(p)
    }

    /// Resets waiting now.
    pub fn len(&self) -> usize {
        self.pending
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Resets settled before their window closed because too many were waiting.
    pub fn settled_early(&self) -> u64 {
        self.settled_early
    }
}

/// Notes held at most; beyond it the oldest are forgotten early (and counted).
pub const IPID_MAX_NOTES: usize = 100_000;
/// Distinct flows a share counts up to: more say nothing new (the chance of eight flows on one
/// ID is already below 1e-20 among 100,000 notes), and a device stamping one ID on thousands
/// of resets must not make every verdict walk all of them.
const IPID_SHARE_FLOWS_MAX: usize = 8;

/// Which flows' resets carried each IPv4 ID recently: a device that stamps one fixed ID on
/// every reset it forges shows up across flows. Notes older than [`SHARE_WINDOW_NS`] are
/// forgotten, and at most [`IPID_MAX_NOTES`] are held.
#[derive(Debug, Default)]
pub struct IpIdRegistry {
    /// Per ID, its notes oldest first (the order they were noted in).
    by_id: PacketMap<u16, VecDeque<(FlowKey, u64)>>,
    order: VecDeque<(u64, u16)>,
    forgotten_early: u64,
}

impl IpIdRegistry {
    /// Notes that a reset of `key` seen at `ts_ns` (event clock) carried `id`.
    pub fn note(&mut self, id: u16, key: &FlowKey, ts_ns: u64) {
        self.forget_before(ts_ns.saturating_sub(SHARE_WINDOW_NS));
        if self.order.len() >= IPID_MAX_NOTES {
            self.forgotten_early += 1;
            self.forget_oldest();
        }
        self.by_id.entry(id).or_default().push_back((*key, ts_ns));
        self.order.push_back((ts_ns, id));
    }

    /// How many flows' resets carried `id` within the window around `ts_ns`, `key`'s included.
    pub fn share(&self, id: u16, key: &FlowKey, ts_ns: u64) -> IpIdShare {
        let mut flows = [key; IPID_SHARE_FLOWS_MAX];
        let mut counted = 1;
        for (k, t) in self.by_id.get(&id).into_iter().flatten().rev() {
            if counted == IPID_SHARE_FLOWS_MAX {
                break;
            }
            if t.abs_diff(ts_ns) <= SHARE_WINDOW_NS && !flows[..counted].contains(&k) {
                flows[counted] = k;
                counted += 1;
            }
        }
        IpIdShare {
            flows: counted,
            noted: self.order.len().max(1),
        }
    }

    /// Notes forgotten before their window ended because the registry was full.
    pub fn forgotten_early(&self) -> u64 {
        self.forgotten_early
    }

    fn forget_before(&mut self, cutoff_ns: u64) {
        while self.order.front().is_some_and(|(t, _)| *t < cutoff_ns) {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        let Some((_, id)) = self.order.pop_front() else {
            return;
        };
        if let Some(notes) = self.by_id.get_mut(&id) {
            // The registry's oldest note is its ID's oldest: both keep the order noted in.
            notes.pop_front();
            if notes.is_empty() {
                self.by_id.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forensics::testing::{after, reset, MS, T};
    use rst_tracer_common::{event::PacketInfo, flow::Side};

    #[test]
    fn window_follows_the_round_trip_within_bounds() {
        let mut f = reset().flow;
        assert_eq!(
            window_ns(&f),
            MIN_WINDOW_NS,
            "4 x 20 ms is below the minimum"
        );
        f.ack_ns = f.syn_ns + 500 * MS;
        assert_eq!(window_ns(&f), 2_000 * MS);
        f.flags = 0;
        assert_eq!(window_ns(&f), DEFAULT_WINDOW_NS);
    }

    #[test]
    fn resets_wait_for_their_window_and_collect_what_follows() {
        let mut q = SettleQueue::default();
        let id = q.next_id();
        assert!(q.hold(Box::new(reset())).is_none());
        q.after(&after(Side::Lo, 5, PacketInfo::default()));
        q.after(&after(Side::Lo, 6, PacketInfo::default())); // only the first per side
        q.retransmit(&after(Side::Hi, 7, PacketInfo::default()));
        assert!(q.due(T + 400 * MS).is_empty());
        let done = q.due(T + MIN_WINDOW_NS);
        assert_eq!(done.len(), 1);
        assert_eq!(
            (done[0].id, done[0].after.len(), done[0].retransmits_after),
            (id, 1, [0, 1])
        );
        assert!(q.is_empty());
    }

    #[test]
    fn ip_ids_are_counted_per_flow_within_the_window() {
        let mut reg = IpIdRegistry::default();
        let a = FlowKey {
            port_lo: 1,
            ..Default::default()
        };
        let b = FlowKey {
            port_lo: 2,
            ..Default::default()
        };
        reg.note(242, &a, T);
        reg.note(242, &a, T + MS);
        assert_eq!(reg.share(242, &a, T).flows, 1);
        reg.note(242, &b, T + 2 * MS);
        reg.note(7, &b, T + 3 * MS);
        assert_eq!(reg.share(242, &a, T), IpIdShare { flows: 2, noted: 4 });
        assert_eq!(reg.share(7, &b, T).flows, 1);
        // Long after, the old notes are forgotten: a new reset with 242 is alone.
        let later = T + SHARE_WINDOW_NS + 10 * MS;
        reg.note(242, &a, later);
        assert_eq!(reg.share(242, &a, later), IpIdShare { flows: 1, noted: 1 });
    }

    #[test]
    fn a_share_counts_flows_up_to_its_cap() {
        // One ID on 50,000 flows' resets: the share stops counting at the cap.
        let mut reg = IpIdRegistry::default();
        for port in 0..50_000u16 {
            let k = FlowKey {
                port_lo: port,
                ..Default::default()
            };
            reg.note(242, &k, T);
        }
        let share = reg.share(242, &FlowKey::default(), T);
        assert_eq!(share.flows, IPID_SHARE_FLOWS_MAX);
        assert_eq!(share.noted, 50_000);
    }

    #[test]
    fn the_registry_is_bounded_and_counts_what_it_forgot() {
        let mut reg = IpIdRegistry::default();
        let k = FlowKey::default();
        for i in 0..IPID_MAX_NOTES + 5 {
            reg.note(i as u16, &k, T);
        }
        assert_eq!(reg.order.len(), IPID_MAX_NOTES);
        assert_eq!(reg.forgotten_early(), 5);
        assert_eq!(
            reg.by_id.values().map(VecDeque::len).sum::<usize>(),
            IPID_MAX_NOTES
        );
    }
}
