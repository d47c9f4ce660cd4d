//! Userspace flow table: joins the events of one flow (a reset and the packets after it, the
//! retransmission samples) and keeps a bounded, recent history per flow.
//!
//! Memory is bounded by `capacity`; idle flows are expired, and when the table is still full the
//! least recently active tenth is evicted. Every eviction is counted and reported.

use std::collections::HashMap;

use rst_tracer_common::flow::{FlowKey, Side};

use crate::{event::Reset, report::summary::FlowTableStats};

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
    /// The flow's recent resets with their settle ids, newest last (the neighbours a verdict
    /// looks at).
    pub recent_resets: Vec<(u64, Reset)>,
    /// Kernel time of the first retransmission sample per side since the other side last
    /// answered (0: none pending); the silence check looks at these.
    pub first_retransmit_ns: [u64; 2],
}

/// Recent resets kept per flow.
const RECENT_RESETS: usize = 16;

impl FlowRecord {
    /// Remembers a reset, forgetting the oldest beyond [`RECENT_RESETS`].
    pub fn remember(&mut self, id: u64, reset: &Reset) {
        if self.recent_resets.len() == RECENT_RESETS {
            self.recent_resets.remove(0);
        }
        self.recent_resets.push((id, reset.clone()));
    }

    /// The flow's other resets within `window_ns` of `reset` (`id` is the reset's own).
    pub fn neighbours(&self, id: u64, reset: &Reset, window_ns: u64) -> Vec<Reset> {
        let t = reset.seen.kernel_ts_ns;
        self.recent_resets
            .iter()
            .filter(|(i, r)| *i != id && r.seen.kernel_ts_ns.abs_diff(t) <= window_ns)
            .map(|(_, r)| r.clone())
            .collect()
    }
}

/// Bounded map of flows to their records.
#[derive(Debug)]
pub struct FlowTable {
    flows: HashMap<FlowKey, FlowRecord>,
    capacity: usize,
    idle_ns: u64,
    evictions: u64,
}

impl FlowTable {
    /// A table holding at most `capacity` flows, forgetting flows idle for `idle_ns`.
    pub fn new(capacity: usize, idle_ns: u64) -> FlowTable {
        FlowTable {
            flows: HashMap::new(),
            capacity: capacity.max(1),
            idle_ns,
            evictions: 0,
        }
    }

    /// The record of `key`, created if new; marks it active at `now_ns`.
    pub fn touch(&mut self, key: &FlowKey, now_ns: u64) -> &mut FlowRecord {
        if !self.flows.contains_key(key) && self.flows.len() >= self.capacity {
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
}
