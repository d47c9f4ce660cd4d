//! The path every source shares: decoded events -> flow table -> settle window -> forensics'
//! verdict -> records -> sink, plus the interval summaries. Live tracing and capture replay feed
//! the same pipeline. The records ([`record`], [`summary`]) are what it hands the sinks; a sink
//! is anything that takes them ([`Sink`]).

pub mod record;
pub mod settle;
pub mod summary;

use std::{io, net::IpAddr};

use ipnet::IpNet;
use rst_tracer_common::{
    event::{Direction, Hook, IP_V6, REASON_UNKNOWN},
    flow::{AddrWords, DroppedReset, FlowKey, FlowState, Side, FAMILY_IPV6, SYN_SIDE_UNKNOWN},
    ttl::INITIAL_TTLS,
};

use crate::{
    counters::CounterSnapshot,
    event::{self, decode, Clock, Event, KernelAct, KernelNote, Reset, Seen},
    flows::{FlowTable, PacketMap, TtlShift},
    forensics::{
        self,
        ipid::IpIdShare,
        kernel::KernelFacts,
        silence::{self, Silence},
        ttl, Case,
    },
    tracepoints::{self, Tracepoints},
};
use record::{AfterResetRecord, ResetRecord, SampleRecord, SilenceRecord};
use settle::{IpIdRegistry, Pending, SettleQueue};
use summary::{ReplayStats, StatsRecord, SummaryRecord, SummaryWindow};

/// [`crate::flows::FlowRecord::first_retransmit_ns`] of a side already reported silent.
const REPORTED: u64 = u64::MAX;

/// Flows the userspace table holds at most.
pub const USER_FLOW_CAPACITY: usize = 100_000;
/// Flows with no event for this long are forgotten (ns).
pub const USER_FLOW_IDLE_NS: u64 = 300_000_000_000;

/// Receives every record the pipeline produces. Every sink takes the resets; the other records
/// are left out by default, for sinks that only want some of them (the pcapng of the resets).
pub trait Sink {
    /// A reset.
    fn reset(&mut self, r: &ResetRecord) -> io::Result<()>;
    /// The first packet from a side after a reset.
    fn after_reset(&mut self, _r: &AfterResetRecord) -> io::Result<()> {
        Ok(())
    }
    /// A retransmission or TTL-change sample.
    fn sample(&mut self, _r: &SampleRecord) -> io::Result<()> {
        Ok(())
    }
    /// A flow that fell silent one way.
    fn silence(&mut self, _r: &SilenceRecord) -> io::Result<()> {
        Ok(())
    }
    /// An interval summary with the counters at its end.
    fn summary(&mut self, _s: &SummaryRecord, _stats: &StatsRecord) -> io::Result<()> {
        Ok(())
    }
    /// Hands everything written so far to the output. Sinks buffer; the caller flushes once
    /// per batch of events (live: at every wake-up), so a reader still sees each reset as soon
    /// as its batch is done, without one write per line.
    fn flush(&mut self) -> io::Result<()>;
}

/// Joins events per flow and hands records to a sink.
pub struct Pipeline {
    sink: Box<dyn Sink + Send>,
    clock: Clock,
    flows: FlowTable,
    window: SummaryWindow,
    iface_names: IfaceNames,
    kernel_flow_capacity: u32,
    decode_errors: u64,
    local_networks: Vec<IpNet>,
    host_addrs: Vec<IpAddr>,
    replay: Option<ReplayStats>,
    settle: SettleQueue,
    ip_ids: IpIdRegistry,
    /// Kernel notes left out as another namespace's (see `is_traced_namespaces`).
    kernel_notes_elsewhere: u64,
    /// The kernel's cumulative dropped-reset counts at the last summary.
    dropped_seen: PacketMap<DroppedReset, u64>,
    /// The tracepoints attached (live tracing), for joining their notes with resets.
    tracepoints: Option<Tracepoints>,
}

/// Interface names by index, each looked up once ("" for 0, replay's).
#[derive(Default)]
struct IfaceNames {
    names: PacketMap<u32, Box<str>>,
    /// How the source names an interface (live: the host's interfaces); without it, or when it
    /// knows no name, interface 7 is `if7`.
    lookup: Option<fn(u32) -> Option<String>>,
}

impl IfaceNames {
    /// The name of interface `ifindex`.
    fn name(&mut self, ifindex: u32) -> &str {
        let lookup = self.lookup;
        self.names.entry(ifindex).or_insert_with(|| {
            if ifindex == 0 {
                Box::from("")
            } else {
                lookup
                    .and_then(|name_of| name_of(ifindex))
                    .unwrap_or_else(|| format!("if{ifindex}"))
                    .into()
            }
        })
    }
}

impl Pipeline {
    /// A pipeline writing to `sink`; `clock` converts kernel time; `kernel_flow_capacity` is shown
    /// beside the kernel flow-table counters.
    pub fn new(
        sink: Box<dyn Sink + Send>,
        clock: Clock,
        kernel_flow_capacity: u32,
        now_ns: u64,
    ) -> Pipeline {
        Pipeline {
            sink,
            clock,
            flows: FlowTable::new(USER_FLOW_CAPACITY, USER_FLOW_IDLE_NS),
            window: SummaryWindow::new(now_ns),
            iface_names: IfaceNames::default(),
            kernel_flow_capacity,
            decode_errors: 0,
            local_networks: Vec::new(),
            host_addrs: Vec::new(),
            kernel_notes_elsewhere: 0,
            replay: None,
            settle: SettleQueue::default(),
            ip_ids: IpIdRegistry::default(),
            dropped_seen: PacketMap::default(),
            tracepoints: None,
        }
    }

    /// Turns on the join with the kernel's tracepoint notes (live tracing): `tracepoints` says
    /// which are attached.
    pub fn set_tracepoints(&mut self, tracepoints: Tracepoints) {
        self.tracepoints = Some(tracepoints);
    }

    /// How interface indexes become the names records show (live tracing: the names of the host's
    /// interfaces).
    pub fn set_iface_names(&mut self, lookup: fn(u32) -> Option<String>) {
        self.iface_names.lookup = Some(lookup);
    }

    /// This host's addresses (live tracing, in the traced network namespace): a reset from one of
    /// them is this host's own (`local`), a reset to one of them had a socket here to accept it,
    /// or not. Packets between other addresses are forwarded, and judged like any other.
    pub fn set_host_addresses(&mut self, addrs: Vec<IpAddr>) {
        self.host_addrs = addrs;
    }

    /// Networks of the traced host. Replayed packets have no hook direction; with these, a
    /// packet from a local address is `egress` and one to a local address `ingress`.
    pub fn set_local_networks(&mut self, nets: Vec<IpNet>) {
        self.local_networks = nets;
    }

    /// Replay's own counts, shown with the kernel counters.
    pub fn set_replay_stats(&mut self, stats: ReplayStats) {
        self.replay = Some(stats);
    }

    /// Starts the current summary window at `now_ns` (replay: the first record's time).
    pub fn begin(&mut self, now_ns: u64) {
        self.window = SummaryWindow::new(now_ns);
    }

    /// Direction of a replayed packet from the local networks.
    fn replay_direction(&self, seen: &mut Seen) {
        if seen.hook != Hook::Replay || self.local_networks.is_empty() {
            return;
        }
        let local = |addr: IpAddr| self.local_networks.iter().any(|n| n.contains(&addr));
        seen.direction = if local(seen.sender().0) {
            Direction::Egress
        } else if local(seen.receiver().0) {
            Direction::Ingress
        } else {
            Direction::Unknown
        };
    }

    /// Decodes one ring record and handles it. Undecodable records are counted (and the first
    /// one is reported on stderr), never guessed at.
    pub fn record(&mut self, record: &[u8]) -> io::Result<()> {
        match decode(record, &self.clock) {
            Ok(ev) => self.event(ev),
            Err(e) => {
                if self.decode_errors == 0 {
                    eprintln!(
                        "rst-tracer: undecodable ring record ({e}); further ones are only counted"
                    );
                }
                self.decode_errors += 1;
                Ok(())
            }
        }
    }

    /// Handles one decoded event. Resets wait in the settle window; everything else is written
    /// at once. Events also advance the settle clock.
    pub fn event(&mut self, mut ev: Event) -> io::Result<()> {
        let seen = match &mut ev {
            Event::Kernel(note) => return self.kernel_note(*note),
            Event::Reset(r) => &mut r.seen,
            Event::AfterReset(s) | Event::Retransmit(s) | Event::TtlChange(s) => &mut s.seen,
        };
        self.replay_direction(seen);
        self.advance(seen.kernel_ts_ns)?;
        match ev {
            Event::Reset(r) => {
                let ipv4 = r.rst.ip_flags & IP_V6 == 0;
                if ipv4 && r.rst.ip_id != 0 {
                    self.ip_ids
                        .note(r.rst.ip_id, &r.seen.key, r.seen.kernel_ts_ns);
                }
                let listener = self.take_listener_note(&r);
                let neighbour = forensics::neighbour(&r, self.sent_by_this_host(&r));
                let rec = self.flows.touch(&r.seen.key, r.seen.kernel_ts_ns);
                rec.resets += 1;
                rec.last_reset = Some((r.seen.side, r.seen.kernel_ts_ns));
                rec.remember(self.settle.next_id(), neighbour);
                if let Some(note) = listener {
                    rec.note(note);
                }
                match self.settle.hold(r) {
                    Some(p) => self.verdict(p),
                    None => Ok(()),
                }
            }
            Event::AfterReset(s) => {
                self.settle.after(&s);
                let rec = self.flows.touch(&s.seen.key, s.seen.kernel_ts_ns);
                rec.after_reset[s.seen.side.index()] += 1;
                let last_reset = rec.last_reset;
                self.window.after_reset();
                let iface = self.iface_names.name(s.seen.ifindex);
                self.sink
                    .after_reset(&AfterResetRecord::of(&s, iface, last_reset))
            }
            Event::Retransmit(s) => {
                self.settle.retransmit(&s);
                let rec = self.flows.touch(&s.seen.key, s.seen.kernel_ts_ns);
                let i = s.seen.side.index();
                rec.retransmits[i] = s.sender.retransmits + 1;
                if rec.first_retransmit_ns[i] == 0 {
                    rec.first_retransmit_ns[i] = s.seen.kernel_ts_ns;
                }
                self.window.retransmit();
                let iface = self.iface_names.name(s.seen.ifindex);
                self.sink.sample(&SampleRecord::of("retransmit", &s, iface))
            }
            Event::TtlChange(s) => {
                let rec = self.flows.touch(&s.seen.key, s.seen.kernel_ts_ns);
                rec.ttl_changes += 1;
                rec.ttl_shifts[s.seen.side.index()] = Some(TtlShift::of(&s));
                self.window.ttl_change();
                let iface = self.iface_names.name(s.seen.ifindex);
                self.sink.sample(&SampleRecord::of("ttl_change", &s, iface))
            }
            Event::Kernel(note) => self.kernel_note(note),
        }
    }

    /// Keeps what the stack said with its flow, for the verdicts of the flow's resets; a note
    /// from another network namespace is only counted.
    fn kernel_note(&mut self, note: KernelNote) -> io::Result<()> {
        self.advance(note.kernel_ts_ns)?;
        if !self.is_traced_namespaces(&note) {
            self.kernel_notes_elsewhere += 1;
            return Ok(());
        }
        self.flows.touch(&note.key, note.kernel_ts_ns).note(note);
        Ok(())
    }

    /// False for a note whose local endpoint (the sender of a sent reset or retransmission,
    /// the receiver of an accepted reset) is none of the traced namespace's addresses: the TCP
    /// tracepoints fire in every namespace, and without this a busy node's pods would fill the
    /// flow table with flows no hook here sees. A listener's wildcard address, and any note
    /// while the addresses are unknown, count as local. (Loopback addresses are in every
    /// namespace: their notes always count as local.)
    fn is_traced_namespaces(&self, note: &KernelNote) -> bool {
        let local = match note.act {
            KernelAct::AcceptedReset => note.side.other(),
            KernelAct::SentReset | KernelAct::Retransmitted | KernelAct::RetransmittedSynAck => {
                note.side
            }
        };
        let (addr, _) = event::endpoint(&note.key, local);
        self.host_addrs.is_empty() || addr.is_unspecified() || self.host_addrs.contains(&addr)
    }

    /// The tcp_send_reset note of egress reset `r` when a listening socket sent it, re-keyed to
    /// `r`'s flow. The tracepoint takes its addresses from the socket when there is one, and a
    /// listener's are its own: its bound address (often the wildcard) and port, and no peer
    /// (0.0.0.0:0 or [::]:0). So its note lands on that pseudo-flow, never on the reset's. A
    /// listener answers segments for connections it does not have (TCP_FLAGS), e.g. after a
    /// reset killed the connection's socket. The note comes just before the reset in the reset
    /// ring (same CPU, just before the egress hook), so the latest note of the listener on the
    /// reset's source port, bound to its address, to any, or dual-stack to any IPv6 address, is
    /// the reset's own, unless the flow has a note of its own (an established socket's reset).
    /// A note joins one reset only: it is taken from the listener's record.
    fn take_listener_note(&mut self, r: &Reset) -> Option<KernelNote> {
        if self.tracepoints.is_none() || r.seen.direction != Direction::Egress {
            return None;
        }
        let t = r.seen.kernel_ts_ns;
        if self
            .flows
            .get(&r.seen.key)
            .and_then(|f| f.sent_note(r))
            .is_some()
        {
            return None;
        }
        let (addr, port) = r.seen.key.endpoint(r.seen.side);
        let any: AddrWords = [0; 4];
        let family = r.seen.key.family;
        let (key, side, _) = [(family, *addr), (family, any), (FAMILY_IPV6, any)]
            .iter()
            .filter_map(|(family, local)| {
                let (key, side) = FlowKey::canonical(*family, local, port, &any, 0);
                let n = self.flows.get(&key)?.sent_note_by(side, t)?;
                Some((key, side, n.kernel_ts_ns))
            })
            .max_by_key(|(_, _, ts)| *ts)?;
        let note = self.flows.get_mut(&key)?.take_sent_note_by(side, t)?;
        Some(KernelNote {
            key: r.seen.key,
            side: r.seen.side,
            ..note
        })
    }

    /// Moves the settle clock to `now_kernel_ns` (the events' clock) and writes the verdicts of
    /// the resets whose window closed.
    pub fn advance(&mut self, now_kernel_ns: u64) -> io::Result<()> {
        for p in self.settle.due(now_kernel_ns) {
            self.verdict(p)?;
        }
        Ok(())
    }

    /// Flows whose retransmissions no answer has cleared yet: the caller looks up their kernel
    /// flow entries and passes them to [`Pipeline::check_silence`].
    pub fn silence_candidates(&self) -> Vec<FlowKey> {
        self.flows.retransmitting()
    }

    /// Checks a retransmitting flow against its kernel flow entry at `now_kernel_ns`, and writes
    /// a `silence` record for a side that kept sending into silence (once per flow side).
    pub fn check_silence(
        &mut self,
        key: &FlowKey,
        state: &FlowState,
        now_kernel_ns: u64,
    ) -> io::Result<()> {
        for side in [Side::Lo, Side::Hi] {
            let Some(rec) = self.flows.get_mut(key) else {
                return Ok(());
            };
            let first = rec.first_retransmit_ns[side.index()];
            if first == 0 || first == REPORTED {
                continue;
            }
            match silence::check(state, side, first, now_kernel_ns) {
                Silence::Answered => rec.first_retransmit_ns[side.index()] = 0,
                Silence::Waiting => {}
                Silence::Silent(finding) => {
                    rec.first_retransmit_ns[side.index()] = REPORTED;
                    self.window.silence();
                    let epoch = self.clock.epoch_of_kernel(now_kernel_ns);
                    let retransmits = state.side(side).retransmits;
                    self.sink.silence(&SilenceRecord::of(
                        key,
                        side,
                        retransmits,
                        finding,
                        epoch,
                    ))?;
                }
            }
        }
        Ok(())
    }

    /// Writes the verdicts of every waiting reset (end of input).
    pub fn settle_all(&mut self) -> io::Result<()> {
        for p in self.settle.drain() {
            self.verdict(p)?;
        }
        Ok(())
    }

    /// Hands the records written so far to the output (see [`Sink::flush`]).
    pub fn flush(&mut self) -> io::Result<()> {
        self.sink.flush()
    }

    /// What the stack said about reset `r`: the kernel's reason when this host sent it
    /// (`sent_here`; the tracepoint fires just before the egress hook sees the packet), whether a
    /// socket accepted it when it was addressed to this host (the tracepoint fires after
    /// ingress), and what the stack retransmitted in the flow.
    fn kernel_facts(&self, r: &Reset, sent_here: bool) -> KernelFacts {
        let Some(tracepoints) = &self.tracepoints else {
            return KernelFacts::default();
        };
        let flow = self.flows.get(&r.seen.key);
        let sent = flow.filter(|_| sent_here).and_then(|f| f.sent_note(r));
        let took = flow.is_some_and(|f| f.was_accepted(r, forensics::sequence::is_exact(r)));
        let to_here = r.seen.direction == Direction::Ingress
            && self.host_addrs.contains(&r.seen.receiver().0);
        KernelFacts {
            kernel_reason: sent.filter(|n| n.reason != REASON_UNKNOWN).map(|n| {
                tracepoints
                    .reason_name(n.reason)
                    .unwrap_or_else(|| format!("reason {}", n.reason))
            }),
            socket_state: sent
                .and_then(|n| tracepoints::state_name(n.state))
                .map(str::to_string),
            accepted: if took && to_here {
                Some(true)
            } else if to_here && tracepoints.receive {
                Some(false)
            } else {
                None
            },
            retransmits: flow.map(|f| f.kernel_retransmits).unwrap_or_default(),
            synacks_after_handshake: flow
                .map(|f| f.synacks_after_handshake(r))
                .unwrap_or_default(),
        }
    }

    /// Whether this host sent reset `r`. Live: its source is one of the host's addresses and it
    /// carries an initial TTL (64, 128, 255) exactly, as a packet this host built does; a reset
    /// merely forwarded (a router, a Kubernetes node, a bridge) is not, whatever its direction,
    /// and neither is one forwarded and then source-NATed to this host's address (masquerade),
    /// since forwarding took a hop off its TTL. (The stack's tcp_send_reset cannot vouch alone:
    /// tracepoints fire for every network namespace on the kernel, and a forwarded reset's
    /// sender may be one of them.)
    /// Replay: its source is in `--local`, or, without `--local`, the capture host sent it (see
    /// [`ttl::sent_by_capture_host`]).
    fn sent_by_this_host(&self, r: &Reset) -> bool {
        match r.seen.hook {
            Hook::Replay if self.local_networks.is_empty() => ttl::sent_by_capture_host(r),
            Hook::Replay => r.seen.direction == Direction::Egress,
            _ => INITIAL_TTLS.contains(&r.rst.ttl) && self.host_addrs.contains(&r.seen.sender().0),
        }
    }

    /// Judges a settled reset and writes it.
    fn verdict(&mut self, p: Pending) -> io::Result<()> {
        let r = &p.reset;
        let flow = self.flows.get(&r.seen.key);
        let window = settle::window_ns(&r.flow);
        let neighbours = flow
            .map(|f| f.neighbours(p.id, r, window))
            .unwrap_or_default();
        let ttl_shift = flow.and_then(|f| f.ttl_shifts[r.seen.side.index()]);
        let ipid_share = if r.rst.ip_flags & IP_V6 == 0 && r.rst.ip_id != 0 {
            self.ip_ids
                .share(r.rst.ip_id, &r.seen.key, r.seen.kernel_ts_ns)
        } else {
            IpIdShare::default()
        };
        let sent_locally = self.sent_by_this_host(r);
        let kernel = self.kernel_facts(r, sent_locally);
        let case = Case {
            reset: r,
            sent_locally,
            after: &p.after,
            neighbours: &neighbours,
            ipid_share,
            retransmits_after: p.retransmits_after,
            kernel,
            ttl_shift,
        };
        let verdict = forensics::judge(&case);
        self.window.reset(r, &verdict, &case.kernel);
        let iface = self.iface_names.name(r.seen.ifindex);
        let record = ResetRecord::of(r, iface, verdict, case.kernel);
        self.sink.reset(&record)
    }

    /// Writes a summary of the window ending at `now_ns` (epoch) with the kernel counters in
    /// `snap`; `now_kernel_ns` is the same instant on the kernel's clock (for flow expiry).
    pub fn summary(
        &mut self,
        now_ns: u64,
        now_kernel_ns: u64,
        snap: &CounterSnapshot,
    ) -> io::Result<()> {
        self.flows.expire(now_kernel_ns);
        self.count_dropped(now_ns, now_kernel_ns, &snap.dropped_resets);
        let summary = self.window.take(now_ns, self.flows.stats());
        let mut stats =
            StatsRecord::of(now_ns, snap, self.kernel_flow_capacity, self.decode_errors);
        stats.replay = self.replay.clone();
        stats.resets_waiting = self.settle.len();
        stats.settled_early = self.settle.settled_early();
        stats.ipid_forgotten_early = self.ip_ids.forgotten_early();
        stats.kernel_notes_elsewhere = self.kernel_notes_elsewhere;
        self.sink.summary(&summary, &stats)
    }

    /// Adds to the window the resets the kernel dropped since the last summary: `dropped` is its
    /// cumulative count per flow, sender and hook, and the pipeline keeps the last one it saw
    /// (only for the entries the kernel still holds: the map is bounded, so is this).
    fn count_dropped(&mut self, now_ns: u64, now_kernel_ns: u64, dropped: &[(DroppedReset, u64)]) {
        let mut seen_now = PacketMap::default();
        for (d, total) in dropped {
            let before = self.dropped_seen.get(d).copied().unwrap_or(0);
            // Evicted and entered again: the kernel's count started over.
            let new = if *total >= before {
                total - before
            } else {
                *total
            };
            seen_now.insert(*d, *total);
            let Some(hook) = Hook::from_u8(d.hook) else {
                continue;
            };
            if new == 0 {
                continue;
            }
            let side = Side::from_u8(d.side);
            let mut seen = Seen {
                ts_ns: now_ns,
                ifindex: 0,
                hook,
                direction: hook.direction(),
                key: d.key,
                side,
                new_flow: false,
                kernel_ts_ns: now_kernel_ns,
            };
            self.replay_direction(&mut seen);
            let syn_side = (d.syn_side != SYN_SIDE_UNKNOWN).then(|| Side::from_u8(d.syn_side));
            self.window.dropped(&seen, syn_side, new);
        }
        self.dropped_seen = seen_now;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::{
        forensics::testing::{reset, MS, T},
        pipeline::settle::MIN_WINDOW_NS,
        wire::json::WriteJson,
    };

    /// What the pipeline handed its sink, each record as the JSON it writes of itself: the
    /// JSON Lines sink's own encodings, without the sink (a layer above the pipeline).
    #[derive(Clone, Default)]
    struct Output(Arc<Mutex<Vec<serde_json::Value>>>);

    impl Output {
        fn keep(&self, json: &[u8]) {
            let value = serde_json::from_slice(json).unwrap();
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push(value);
        }

        fn write(&self, r: &impl WriteJson) -> io::Result<()> {
            let mut json = Vec::new();
            r.write_json(&mut json);
            self.keep(&json);
            Ok(())
        }

        /// The records written so far of `kind` (`reset`, `summary`, ...).
        fn records(&self, kind: &str) -> Vec<serde_json::Value> {
            let records = self.0.lock().unwrap_or_else(|p| p.into_inner());
            records
                .iter()
                .filter(|r| r["type"] == kind)
                .cloned()
                .collect()
        }
    }

    impl Sink for Output {
        fn reset(&mut self, r: &ResetRecord) -> io::Result<()> {
            self.write(r)
        }
        fn after_reset(&mut self, r: &AfterResetRecord) -> io::Result<()> {
            self.write(r)
        }
        fn sample(&mut self, r: &SampleRecord) -> io::Result<()> {
            self.write(r)
        }
        fn silence(&mut self, r: &SilenceRecord) -> io::Result<()> {
            self.write(r)
        }
        fn summary(&mut self, s: &SummaryRecord, stats: &StatsRecord) -> io::Result<()> {
            self.keep(&serde_json::to_vec(s)?);
            self.keep(&serde_json::to_vec(stats)?);
            Ok(())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A pipeline writing to an `Output`, clocks at zero offset (as in replay).
    fn pipeline() -> (Pipeline, Output) {
        let out = Output::default();
        let p = Pipeline::new(
            Box::new(out.clone()),
            Clock {
                monotonic_to_epoch_ns: 0,
            },
            65_536,
            0,
        );
        (p, out)
    }

    #[test]
    fn a_reset_waits_for_its_settle_window_and_then_gets_its_verdict() {
        let (mut p, out) = pipeline();
        p.event(Event::Reset(Box::new(reset()))).unwrap();
        p.advance(T + MIN_WINDOW_NS / 2).unwrap();
        p.flush().unwrap();
        assert!(out.records("reset").is_empty(), "judged before its window");
        p.advance(T + settle::MAX_WINDOW_NS + MS).unwrap();
        p.flush().unwrap();
        let resets = out.records("reset");
        assert_eq!(resets.len(), 1);
        let r = &resets[0];
        // The reset's own headers, from the event.
        assert_eq!(
            (r["rst"]["seq"].as_u64(), r["rst"]["ttl"].as_u64()),
            (Some(1000), Some(62))
        );
        // At the sender's next sequence number, with its TTL: nothing contradicts the sender.
        assert_eq!(r["suspicious"], false, "{r}");
    }

    #[test]
    fn a_reset_at_another_ttl_than_its_sender_is_suspicious() {
        let (mut p, out) = pipeline();
        let mut forged = reset();
        forged.rst.ttl = 70;
        p.event(Event::Reset(Box::new(forged))).unwrap();
        p.settle_all().unwrap();
        p.flush().unwrap();
        let r = &out.records("reset")[0];
        assert_eq!(r["suspicious"], true, "{r}");
        let codes: Vec<&str> = r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f["code"].as_str())
            .collect();
        assert!(
            codes.contains(&crate::forensics::codes::TTL_MISMATCH),
            "{codes:?}"
        );
    }

    #[test]
    fn the_summary_counts_the_judged_resets_and_the_suspicious_ones() {
        let (mut p, out) = pipeline();
        let mut forged = reset();
        forged.rst.ttl = 70;
        forged.seen.key.port_hi = 443;
        p.event(Event::Reset(Box::new(reset()))).unwrap();
        p.event(Event::Reset(Box::new(forged))).unwrap();
        p.settle_all().unwrap();
        p.summary(T + 5_000 * MS, T + 5_000 * MS, &CounterSnapshot::default())
            .unwrap();
        p.flush().unwrap();
        let s = &out.records("summary")[0];
        assert_eq!(
            (s["resets"].as_u64(), s["suspicious"].as_u64()),
            (Some(2), Some(1)),
            "{s}"
        );
        assert_eq!(
            out.records("stats").len(),
            1,
            "a stats record follows each summary"
        );
    }

    #[test]
    fn an_undecodable_record_is_counted_not_guessed_at() {
        let (mut p, out) = pipeline();
        p.record(&[0xff; 7]).unwrap();
        p.summary(T, T, &CounterSnapshot::default()).unwrap();
        p.flush().unwrap();
        assert_eq!(out.records("stats")[0]["decode_errors"], 1);
        assert!(out.records("reset").is_empty());
    }
}
