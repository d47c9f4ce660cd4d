//! Interval summaries and counter statistics: what happened since the last summary, and the
//! kernel's counters (drops and evictions included: nothing lost is hidden), with replay's own
//! counts.

use std::{collections::BTreeMap, net::IpAddr};

use rst_tracer_common::counter::Counter;
use serde::Serialize;

use crate::{
    counters::CounterSnapshot,
    event::{Reset, Seen},
    flows::{FlowTableStats, PacketMap},
    forensics::{kernel::KernelFacts, Strength, Verdict},
    tracepoints,
    wire::Rfc3339,
};
use rst_tracer_common::event::Direction;

/// How many entries the "top" tables list.
const TOP: usize = 5;
/// Most remote addresses, and (kernel reason, remote) pairs, one window tallies. Reaching it,
/// the half with the fewest resets is dropped and counted (`tally_evictions`): a key with more
/// than 2/`TALLY_CAP` of the window's resets is never dropped, so the top entries hold. Ports
/// need no bound: there are 65,536.
pub const TALLY_CAP: usize = 8_192;

/// Resets of one remote endpoint or port, and what was found in them.
#[derive(Debug, Default)]
struct Tally {
    resets: u64,
    suspicious: u64,
    findings: PacketMap<&'static str, u64>,
}

/// Counts of one summary window and of the whole run.
#[derive(Debug, Default)]
pub struct SummaryWindow {
    started_ns: u64,
    resets: u64,
    resets_total: u64,
    resets_dropped: u64,
    suspicious: u64,
    by_origin: BTreeMap<&'static str, u64>,
    after_reset: u64,
    retransmits: u64,
    ttl_changes: u64,
    silences: u64,
    by_remote: PacketMap<IpAddr, Tally>,
    by_port: PacketMap<u16, Tally>,
    by_kernel_reason: PacketMap<(String, IpAddr), u64>,
    not_accepted: u64,
    tally_evictions: u64,
}

/// Keeps `tallies` below [`TALLY_CAP`]: at the cap, drops the keys with the fewest resets
/// (those at or below the count of the `TALLY_CAP / 2`-th largest); returns how many it
/// dropped. Each call at the cap halves the map, so the cost per reset stays constant.
fn bound<K, V>(tallies: &mut PacketMap<K, V>, resets: impl Fn(&V) -> u64) -> u64 {
    if tallies.len() < TALLY_CAP {
        return 0;
    }
    let mut counts: Vec<u64> = tallies.values().map(&resets).collect();
    let (_, threshold, _) = counts.select_nth_unstable_by(TALLY_CAP / 2, |a, b| b.cmp(a));
    let threshold = *threshold;
    let before = tallies.len();
    tallies.retain(|_, v| resets(v) > threshold);
    (before - tallies.len()) as u64
}

/// Which endpoint of a packet is the remote one, and the flow's service port.
fn remote_and_port(seen: &Seen, syn_side: Option<rst_tracer_common::flow::Side>) -> (IpAddr, u16) {
    let (src, sport) = seen.sender();
    let (dst, dport) = seen.receiver();
    let remote = match seen.direction {
        Direction::Egress => dst,
        Direction::Ingress | Direction::Unknown => src,
    };
    // The service port is the one the SYN went to; without a handshake, the lower port.
    let port = match syn_side {
        Some(side) if side == seen.side => dport,
        Some(_) => sport,
        None => sport.min(dport),
    };
    (remote, port)
}

impl SummaryWindow {
    /// A window starting at `now_ns`.
    pub fn new(now_ns: u64) -> SummaryWindow {
        SummaryWindow {
            started_ns: now_ns,
            ..Default::default()
        }
    }

    /// Counts a judged reset and what the stack said about it.
    pub fn reset(&mut self, r: &Reset, verdict: &Verdict, kernel: &KernelFacts) {
        self.resets += 1;
        self.resets_total += 1;
        self.suspicious += verdict.suspicious as u64;
        *self.by_origin.entry(verdict.origin.name()).or_default() += 1;
        let syn_side =
            (r.flow.syn_ns != 0).then(|| rst_tracer_common::flow::Side::from_u8(r.flow.syn_side));
        let (remote, port) = remote_and_port(&r.seen, syn_side);
        if let Some(reason) = &kernel.kernel_reason {
            *self
                .by_kernel_reason
                .entry((reason.clone(), remote))
                .or_default() += 1;
        }
        self.not_accepted += (kernel.accepted == Some(false)) as u64;
        self.tally_evictions += bound(&mut self.by_kernel_reason, |n| *n);
        for tally in [
            self.by_remote.entry(remote).or_default(),
            self.by_port.entry(port).or_default(),
        ] {
            tally.resets += 1;
            tally.suspicious += verdict.suspicious as u64;
            for f in verdict
                .findings
                .iter()
                .filter(|f| f.strength > Strength::Info)
            {
                *tally.findings.entry(f.code).or_default() += 1;
            }
        }
        self.tally_evictions += bound(&mut self.by_remote, |t| t.resets);
    }

    /// Counts `n` resets whose events the kernel dropped on a full ring (seen as `seen`, in a
    /// flow opened by `syn_side`): they are in the per-remote and per-port tallies and in
    /// `resets_dropped`, never judged.
    pub fn dropped(
        &mut self,
        seen: &Seen,
        syn_side: Option<rst_tracer_common::flow::Side>,
        n: u64,
    ) {
        self.resets_dropped += n;
        let (remote, port) = remote_and_port(seen, syn_side);
        self.by_remote.entry(remote).or_default().resets += n;
        self.by_port.entry(port).or_default().resets += n;
        self.tally_evictions += bound(&mut self.by_remote, |t| t.resets);
    }

    /// Counts an after-reset packet.
    pub fn after_reset(&mut self) {
        self.after_reset += 1;
    }

    /// Counts a retransmission sample.
    pub fn retransmit(&mut self) {
        self.retransmits += 1;
    }

    /// Counts a TTL-change sample.
    pub fn ttl_change(&mut self) {
        self.ttl_changes += 1;
    }

    /// Counts a flow that fell silent.
    pub fn silence(&mut self) {
        self.silences += 1;
    }

    /// Closes the window at `now_ns` and starts the next one.
    pub fn take(&mut self, now_ns: u64, flows: FlowTableStats) -> SummaryRecord {
        let record = SummaryRecord {
            kind: "summary",
            ts: Rfc3339(now_ns),
            interval_s: now_ns.saturating_sub(self.started_ns) as f64 / 1e9,
            resets: self.resets,
            resets_total: self.resets_total,
            resets_dropped: self.resets_dropped,
            suspicious: self.suspicious,
            by_origin: self
                .by_origin
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            after_reset: self.after_reset,
            retransmit_samples: self.retransmits,
            ttl_change_samples: self.ttl_changes,
            silences: self.silences,
            top_remote: top(&self.by_remote)
                .into_iter()
                .map(|(addr, tally)| RemoteCount { addr, tally })
                .collect(),
            top_ports: top(&self.by_port)
                .into_iter()
                .map(|(port, tally)| PortCount { port, tally })
                .collect(),
            local_by_kernel_reason: self.top_kernel_reasons(),
            not_accepted: self.not_accepted,
            flows_tracked: flows.tracked,
            flow_evictions: flows.evictions,
            tally_evictions: self.tally_evictions,
        };
        *self = SummaryWindow {
            started_ns: now_ns,
            resets_total: self.resets_total,
            ..Default::default()
        };
        record
    }
}

impl SummaryWindow {
    /// The (reason, remote) pairs with the most local resets, most first.
    fn top_kernel_reasons(&self) -> Vec<ReasonCount> {
        let mut v: Vec<ReasonCount> = self
            .by_kernel_reason
            .iter()
            .map(|((reason, remote), n)| ReasonCount {
                reason: reason.clone(),
                remote: *remote,
                resets: *n,
                meaning: tracepoints::reason_meaning(reason),
            })
            .collect();
        v.sort_by(|a, b| {
            b.resets
                .cmp(&a.resets)
                .then_with(|| (&a.reason, a.remote).cmp(&(&b.reason, b.remote)))
        });
        v.truncate(TOP);
        v
    }
}

/// Local resets of one kernel reason to one remote endpoint.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ReasonCount {
    /// The kernel's reason (`NO_SOCKET`, ...).
    pub reason: String,
    /// Where the resets went.
    pub remote: IpAddr,
    /// How many.
    pub resets: u64,
    /// What the reason usually means, for the reasons that have a well-known reading.
    pub meaning: Option<&'static str>,
}

/// The keys with the most resets (ties broken by key, so the order is stable), as views.
fn top<K: Copy + Ord>(tallies: &PacketMap<K, Tally>) -> Vec<(K, TallyView)> {
    let mut v: Vec<(K, &Tally)> = tallies.iter().map(|(k, t)| (*k, t)).collect();
    v.sort_by(|a, b| b.1.resets.cmp(&a.1.resets).then(a.0.cmp(&b.0)));
    v.truncate(TOP);
    v.into_iter().map(|(k, t)| (k, TallyView::of(t))).collect()
}

/// How often a finding occurred.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct FindingCount {
    /// Finding code.
    pub code: &'static str,
    /// Resets it was found in.
    pub count: u64,
}

/// Resets of a remote endpoint or port and their most frequent findings.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TallyView {
    /// Resets.
    pub resets: u64,
    /// Of those, suspicious.
    pub suspicious: u64,
    /// The three most frequent findings that weigh (context-only findings left out).
    pub findings: Vec<FindingCount>,
}

impl TallyView {
    fn of(t: &Tally) -> TallyView {
        let mut findings: Vec<FindingCount> = t
            .findings
            .iter()
            .map(|(code, count)| FindingCount {
                code,
                count: *count,
            })
            .collect();
        findings.sort_by(|a, b| b.count.cmp(&a.count).then(a.code.cmp(b.code)));
        findings.truncate(3);
        TallyView {
            resets: t.resets,
            suspicious: t.suspicious,
            findings,
        }
    }
}

/// Resets per remote address.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct RemoteCount {
    /// Remote address.
    pub addr: IpAddr,
    /// Its resets.
    #[serde(flatten)]
    pub tally: TallyView,
}

/// Resets per service port.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct PortCount {
    /// Port.
    pub port: u16,
    /// Its resets.
    #[serde(flatten)]
    pub tally: TallyView,
}

/// A `"type": "summary"` record.
#[derive(Clone, Debug, Serialize)]
pub struct SummaryRecord {
    /// Always `"summary"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// End of the window.
    pub ts: Rfc3339,
    /// Window length in seconds.
    pub interval_s: f64,
    /// Resets judged in the window.
    pub resets: u64,
    /// Resets judged since the start.
    pub resets_total: u64,
    /// Resets in the window whose events the kernel dropped on a full ring (never judged, but
    /// in `top_remote` and `top_ports`, whose `resets` count them with the judged ones).
    pub resets_dropped: u64,
    /// Suspicious resets in the window.
    pub suspicious: u64,
    /// Resets in the window by origin.
    pub by_origin: BTreeMap<String, u64>,
    /// After-reset packets in the window.
    pub after_reset: u64,
    /// Retransmission samples in the window.
    pub retransmit_samples: u64,
    /// TTL-change samples in the window.
    pub ttl_change_samples: u64,
    /// Flows found silent one way in the window.
    pub silences: u64,
    /// Remote addresses with the most resets in the window.
    pub top_remote: Vec<RemoteCount>,
    /// Service ports with the most resets in the window.
    pub top_ports: Vec<PortCount>,
    /// Resets this host sent in the window, by the kernel's reason and remote endpoint (stack
    /// view), most first.
    pub local_by_kernel_reason: Vec<ReasonCount>,
    /// Resets addressed to this host in the window that no socket accepted (kernel notes).
    pub not_accepted: u64,
    /// Flows in the userspace table.
    pub flows_tracked: usize,
    /// Flows evicted from the userspace table since the start.
    pub flow_evictions: u64,
    /// Remote addresses and (kernel reason, remote) pairs with the fewest resets dropped from
    /// this window's tallies to keep them within `TALLY_CAP`: `top_remote` and
    /// `local_by_kernel_reason` stay right, but these keys' resets are no longer in them.
    pub tally_evictions: u64,
}

/// A `"type": "stats"` record: cumulative kernel counters.
#[derive(Clone, Debug, Serialize)]
pub struct StatsRecord {
    /// Always `"stats"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Time of the snapshot.
    pub ts: Rfc3339,
    /// Every kernel counter by name.
    pub counters: serde_json::Map<String, serde_json::Value>,
    /// The same counters, typed (see [`StatsRecord::counter`]); not in the JSON twice.
    #[serde(skip)]
    pub counter_values: Vec<u64>,
    /// Sum of the `err_*` counters: malformed or truncated packets.
    pub parse_errors: u64,
    /// Events lost to full rings (sum of the `*_dropped` counters).
    pub ring_drops: u64,
    /// Kernel flow table: entries now, inserts, and evictions (inserts minus entries).
    pub flow_table: KernelFlowTable,
    /// Ring records userspace could not decode.
    pub decode_errors: u64,
    /// Resets waiting in the settle window for their verdict.
    pub resets_waiting: usize,
    /// Resets judged before their window closed because too many were waiting.
    pub settled_early: u64,
    /// Reset IP IDs forgotten before their share window ended because the registry was full.
    pub ipid_forgotten_early: u64,
    /// Kernel notes (the TCP tracepoints fire in every network namespace) whose local endpoint
    /// is none of the traced namespace's addresses: left out, since no traced flow is theirs.
    #[serde(rename = "stack_notes_elsewhere")] // the JSON name predates "kernel notes"; kept
    pub kernel_notes_elsewhere: u64,
    /// Replay only: records read, run and skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplayStats>,
}

/// What capture replay did with the records it read, shown in the final `stats` record (the
/// replay source counts them: `crate::source::replay`).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ReplayStats {
    /// Records read from the files.
    pub records: u64,
    /// Records run through the kernel program.
    pub frames: u64,
    /// Records not run, by reason (`unsupported-<linktype>`, `short`, `not-ip-<linktype>`).
    pub skipped: BTreeMap<String, u64>,
    /// Capture time of the first record (ns since the epoch).
    pub first_ts_ns: u64,
    /// Capture time of the last record.
    pub last_ts_ns: u64,
    /// How long the replay took, wall-clock (ms), from the program's load to the last record.
    pub wall_ms: u64,
    /// How fast it went: records read per wall-clock second.
    pub records_per_s: u64,
    /// With `--pcap-out-context`: sets of packets forgotten to make room (a flow's recent ones,
    /// 8,192 flows being kept, or those set aside for a reset not yet written, 1,024 being
    /// kept): that reset has less context or none. 0 without the option.
    pub context_evicted: u64,
}

/// The kernel flow table's numbers.
#[derive(Clone, Debug, Serialize)]
pub struct KernelFlowTable {
    /// Configured capacity.
    pub capacity: u32,
    /// Entries now (null when not counted).
    pub entries: Option<u64>,
    /// Flows inserted since load.
    pub inserts: u64,
    /// Flows the LRU evicted to make room (inserts minus entries; null when not counted).
    pub evictions: Option<u64>,
}

impl StatsRecord {
    /// The value of kernel counter `c` in this snapshot.
    pub fn counter(&self, c: Counter) -> u64 {
        self.counter_values.get(c as usize).copied().unwrap_or(0)
    }

    /// Stats from a counter snapshot.
    pub fn of(
        now_ns: u64,
        snap: &CounterSnapshot,
        capacity: u32,
        decode_errors: u64,
    ) -> StatsRecord {
        let counters = Counter::ALL
            .iter()
            .map(|c| (c.name().to_string(), serde_json::Value::from(snap.get(*c))))
            .collect();
        let sum = |pred: fn(Counter) -> bool| {
            Counter::ALL
                .iter()
                .filter(|c| pred(**c))
                .map(|c| snap.get(*c))
                .sum()
        };
        let inserts = snap.get(Counter::FlowInserts);
        StatsRecord {
            kind: "stats",
            ts: Rfc3339(now_ns),
            counters,
            counter_values: snap.values.clone(),
            parse_errors: sum(Counter::is_parse_error),
            ring_drops: sum(Counter::is_drop),
            flow_table: KernelFlowTable {
                capacity,
                entries: snap.flow_entries,
                inserts,
                evictions: snap.flow_entries.map(|e| inserts.saturating_sub(e)),
            },
            decode_errors,
            resets_waiting: 0,
            settled_early: 0,
            ipid_forgotten_early: 0,
            kernel_notes_elsewhere: 0,
            replay: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rst_tracer_common::{
        event::Hook,
        flow::{addr_from_ipv4, FlowKey, FAMILY_IPV4},
    };

    /// A reset from `remote`:40000 to this host's `local`:`port`, seen at ingress.
    fn ingress_reset(remote: [u8; 4], local: [u8; 4], port: u16) -> Seen {
        let (key, side) = FlowKey::canonical(
            FAMILY_IPV4,
            &addr_from_ipv4(remote),
            40000,
            &addr_from_ipv4(local),
            port,
        );
        Seen {
            ts_ns: 0,
            ifindex: 0,
            hook: Hook::TcIngress,
            direction: Direction::Ingress,
            key,
            side,
            new_flow: false,
            kernel_ts_ns: 0,
        }
    }

    #[test]
    fn stats_sum_errors_and_drops_and_derive_evictions() {
        let mut values = vec![0u64; Counter::COUNT as usize];
        values[Counter::ErrTcpTruncated as usize] = 2;
        values[Counter::ErrVlanTooDeep as usize] = 1;
        values[Counter::RstDropped as usize] = 5;
        values[Counter::FlowInserts as usize] = 10;
        let snap = CounterSnapshot {
            values,
            flow_entries: Some(4),
            ..Default::default()
        };
        let s = StatsRecord::of(0, &snap, 8, 0);
        assert_eq!(s.parse_errors, 3);
        assert_eq!(s.ring_drops, 5);
        assert_eq!(s.flow_table.evictions, Some(6));
        assert_eq!(s.counters["rst_dropped"], 5);
    }

    #[test]
    fn dropped_resets_count_by_remote_and_port_unjudged() {
        // 7 resets from 192.0.2.1:40000 to this host's port 80 (the SYN went to 80), seen at
        // ingress, dropped on a full ring.
        let seen = ingress_reset([192, 0, 2, 1], [192, 0, 2, 2], 80);
        let side = seen.side;
        let mut w = SummaryWindow::new(0);
        w.dropped(&seen, Some(side), 7);
        let r = w.take(1, FlowTableStats::default());
        assert_eq!((r.resets, r.resets_dropped, r.suspicious), (0, 7, 0));
        assert_eq!(r.top_remote.len(), 1);
        assert_eq!(r.top_remote[0].addr.to_string(), "192.0.2.1");
        assert_eq!(r.top_remote[0].tally.resets, 7);
        assert_eq!(r.top_ports[0].port, 80);
        assert_eq!(r.top_ports[0].tally.resets, 7);
    }

    #[test]
    fn a_million_remotes_stay_within_the_cap_and_the_heavy_ones_stay_on_top() {
        // Resets from `remote` to this host's port 443, seen at ingress.
        let seen = |remote: u32| ingress_reset(remote.to_be_bytes(), [192, 0, 2, 2], 443);
        let (heavy, heavier) = (0x0a00_0002u32, 0x0a00_0001u32);
        let mut w = SummaryWindow::new(0);
        for i in 0..1_000_000u32 {
            w.dropped(&seen(0x0b00_0000 + i), None, 1);
            if i % 1_000 == 0 {
                w.dropped(&seen(heavier), None, 2);
                w.dropped(&seen(heavy), None, 1);
            }
            assert!(w.by_remote.len() < TALLY_CAP);
        }
        let left = w.by_remote.len() as u64;
        let r = w.take(1, FlowTableStats::default());
        assert_eq!(r.resets_dropped, 1_000_000 + 3_000);
        let top: Vec<(String, u64)> = r
            .top_remote
            .iter()
            .map(|t| (t.addr.to_string(), t.tally.resets))
            .collect();
        assert_eq!(
            top[..2],
            [
                ("10.0.0.1".to_string(), 2_000),
                ("10.0.0.2".to_string(), 1_000)
            ]
        );
        // Every remote is either still tallied or counted as evicted.
        assert_eq!(r.tally_evictions + left, 1_000_002);
        assert!(r.tally_evictions > 0);
    }

    #[test]
    fn top_is_sorted_by_count_then_key() {
        let tally = |resets| Tally {
            resets,
            ..Default::default()
        };
        let counts: PacketMap<u16, Tally> = [(443, tally(2)), (80, tally(5)), (22, tally(2))]
            .into_iter()
            .collect();
        let order: Vec<(u16, u64)> = top(&counts)
            .into_iter()
            .map(|(k, t)| (k, t.resets))
            .collect();
        assert_eq!(order, vec![(80, 5), (22, 2), (443, 2)]);
    }
}
