//! The output records: what a reset, a sample, a summary and the counters look like to a reader.
//!
//! These are the JSON Lines wire types (one object per line, `"type"` first) and the numbers the
//! text format prints. Every field here is part of the documented schema (README, "JSON output",
//! and `schema/`); add fields freely, never rename or remove one. (The one field the JSON leaves
//! out is a reset's frame, which the pcapng sink writes.) Each type's [`WriteJson`] impl, beside it,
//! writes its fields in declaration order under their own names.

use std::net::IpAddr;

use crate::{
    event::{Frame, Reset, Sample, Seen},
    forensics::{kernel::KernelFacts, Finding, Origin, Verdict},
    wire::{
        json::{json_object, Name, Object, WriteJson},
        us_between, FlagNames, OptionNames, PayloadView, Rfc3339,
    },
};
use rst_tracer_common::{
    event::{PacketInfo, IP_DF, IP_V6, OPT_TIMESTAMPS, TCP_ACK},
    flow::{
        FlowKey, FlowState, Side, SideState, FLOW_HANDSHAKE, FLOW_MIDSTREAM, SIDE_SEEN,
        SIDE_TIMESTAMPS,
    },
};

/// A flow as sender -> receiver of the packet a record is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowView {
    /// The packet's source address (for a reset: the endpoint it claims to come from).
    pub src: IpAddr,
    /// Source port.
    pub sport: u16,
    /// Destination address.
    pub dst: IpAddr,
    /// Destination port.
    pub dport: u16,
}

impl FlowView {
    /// The flow of a seen packet, oriented sender -> receiver.
    pub fn of(seen: &Seen) -> FlowView {
        let (src, sport) = seen.sender();
        let (dst, dport) = seen.receiver();
        FlowView {
            src,
            sport,
            dst,
            dport,
        }
    }
}

json_object!(FlowView {
    src,
    sport,
    dst,
    dport
});

/// Where and when a record's packet was seen: the fields every packet record starts with.
#[derive(Clone, Debug)]
pub struct SeenView<'a> {
    /// RFC 3339 time, microseconds, UTC.
    pub ts: Rfc3339,
    /// Nanoseconds since the epoch.
    pub ts_ns: u64,
    /// Interface name (empty in replay).
    pub iface: &'a str,
    /// `xdp`, `tc-ingress`, `tc-egress` or `replay`.
    pub hook: &'static str,
    /// `ingress`, `egress` or `unknown`.
    pub direction: &'static str,
    /// Sender -> receiver of the packet (for a reset: the endpoint it claims to come from).
    pub flow: FlowView,
}

impl<'a> SeenView<'a> {
    /// The view of a seen packet on `iface`.
    pub fn of(seen: &Seen, iface: &'a str) -> SeenView<'a> {
        SeenView {
            ts: Rfc3339(seen.ts_ns),
            ts_ns: seen.ts_ns,
            iface,
            hook: seen.hook.name(),
            direction: seen.direction.name(),
            flow: FlowView::of(seen),
        }
    }

    /// Opens the object of a packet record of type `kind` in `out`: its `type`, then these
    /// fields.
    fn begin_record<'o>(&self, kind: &'static str, out: &'o mut Vec<u8>) -> Object<'o> {
        let mut o = Object::begin(out);
        o.field("type", &Name(kind))
            .field("ts", &self.ts)
            .field("ts_ns", &self.ts_ns)
            .field("iface", self.iface)
            .field("hook", &Name(self.hook))
            .field("direction", &Name(self.direction))
            .field("flow", &self.flow);
        o
    }
}

/// One TCP segment's headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketView {
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (null without ACK).
    pub ack: Option<u32>,
    /// Flags as text, e.g. `"RST|ACK"`; reserved bits show as `RES(0x…)`.
    pub flags: FlagNames,
    /// Flags as a number (low 12 bits of the TCP offset/flags word).
    pub flags_raw: u16,
    /// Raw window field.
    pub window: u16,
    /// TTL or hop limit.
    pub ttl: u8,
    /// IPv4 identification; null for IPv6 (it has none).
    pub ip_id: Option<u16>,
    /// IPv4 Don't Fragment.
    pub df: bool,
    /// TCP payload length.
    pub payload_len: u16,
    /// TCP options present, by name.
    pub options: OptionNames,
    /// TSval when the timestamps option is present.
    pub ts_val: Option<u32>,
}

impl PacketView {
    /// View of a packet's headers.
    pub fn of(p: &PacketInfo) -> PacketView {
        let ts = p.tcp_options & OPT_TIMESTAMPS != 0;
        PacketView {
            seq: p.seq,
            ack: (p.flags & TCP_ACK != 0).then_some(p.ack),
            flags: FlagNames(p.flags),
            flags_raw: p.flags,
            window: p.window,
            ttl: p.ttl,
            ip_id: (p.ip_flags & IP_V6 == 0).then_some(p.ip_id),
            df: p.ip_flags & IP_DF != 0,
            payload_len: p.payload_len,
            options: OptionNames(p.tcp_options),
            ts_val: ts.then_some(p.ts_val),
        }
    }
}

json_object!(PacketView {
    seq,
    ack,
    flags,
    flags_raw,
    window,
    ttl,
    ip_id,
    df,
    payload_len,
    options,
    ts_val,
});

/// TTL baseline of one side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TtlBaseline {
    /// Last TTL.
    pub last: u8,
    /// Smallest.
    pub min: u8,
    /// Largest.
    pub max: u8,
    /// Samples.
    pub n: u32,
}

json_object!(TtlBaseline { last, min, max, n });

/// What one endpoint had sent before the packet a record is about.
#[derive(Clone, Debug, PartialEq)]
pub struct SideView {
    /// Any packet seen from this side.
    pub seen: bool,
    /// Packets (RSTs not included).
    pub packets: u32,
    /// Payload bytes.
    pub bytes: u64,
    /// Retransmitted segments.
    pub retransmits: u32,
    /// TTL baseline (null when nothing was seen).
    pub ttl: Option<TtlBaseline>,
    /// IP ID of its last packet (null for IPv6 or nothing seen).
    pub last_ip_id: Option<u16>,
    /// Where its stream is: highest sequence number sent plus length.
    pub seq_next: Option<u32>,
    /// Its last acknowledgement number.
    pub last_ack: Option<u32>,
    /// Raw window of its last packet.
    pub window: Option<u16>,
    /// It uses TCP timestamps.
    pub timestamps: bool,
    /// TSval of its last timestamped packet.
    pub ts_val: Option<u32>,
    /// Time from its last packet to the reported packet, in microseconds.
    pub last_seen_us_ago: Option<f64>,
    /// Shortest round trip from the observer to this side, from data/ACK pairs (µs).
    pub leg_rtt_us: Option<f64>,
}

impl SideView {
    /// View of a side, relative to a packet seen at kernel time `now_kernel_ns`.
    pub fn of(s: &SideState, ipv6: bool, now_kernel_ns: u64) -> SideView {
        let seen = s.flags & SIDE_SEEN != 0;
        let ts = s.flags & SIDE_TIMESTAMPS != 0;
        SideView {
            seen,
            packets: s.packets,
            bytes: s.bytes,
            retransmits: s.retransmits,
            ttl: (s.ttl_samples > 0).then_some(TtlBaseline {
                last: s.ttl_last,
                min: s.ttl_min,
                max: s.ttl_max,
                n: s.ttl_samples,
            }),
            last_ip_id: (seen && !ipv6).then_some(s.last_ip_id),
            seq_next: seen.then_some(s.seq_next),
            last_ack: (seen && s.last_flags & TCP_ACK != 0).then_some(s.last_ack),
            window: seen.then_some(s.window),
            timestamps: ts,
            ts_val: ts.then_some(s.ts_val),
            last_seen_us_ago: seen.then(|| us_between(s.last_ns, now_kernel_ns)),
            leg_rtt_us: (s.leg_min_ns > 0).then(|| s.leg_min_ns as f64 / 1000.0),
        }
    }
}

json_object!(SideView {
    seen,
    packets,
    bytes,
    retransmits,
    ttl,
    last_ip_id,
    seq_next,
    last_ack,
    window,
    timestamps,
    ts_val,
    last_seen_us_ago,
    leg_rtt_us,
});

/// The last packet the reset's receiver sent: the candidate trigger of the reset.
#[derive(Clone, Debug, PartialEq)]
pub struct TriggerView {
    /// Microseconds from it to the reset.
    pub us_before: f64,
    /// Its sequence number.
    pub seq: u32,
    /// Its acknowledgement number (null without ACK).
    pub ack: Option<u32>,
    /// Its payload length.
    pub len: u16,
    /// Its flags.
    pub flags: FlagNames,
    /// Its IP ID (null for IPv6).
    pub ip_id: Option<u16>,
}

json_object!(TriggerView {
    us_before,
    seq,
    ack,
    len,
    flags,
    ip_id
});

/// What the flow had seen before the reset.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryView {
    /// The reset is the first packet seen of this flow.
    pub new_flow: bool,
    /// The flow was picked up mid-stream (its first packet was not a SYN).
    pub midstream: bool,
    /// SYN, SYN-ACK and the completing ACK were seen.
    pub handshake: bool,
    /// SYN to completing ACK as the observer saw it, in microseconds.
    pub handshake_rtt_us: Option<f64>,
    /// Resets seen earlier in this flow.
    pub resets_before: u32,
    /// Flow age at the reset, in microseconds.
    pub age_us: f64,
}

json_object!(HistoryView {
    new_flow,
    midstream,
    handshake,
    handshake_rtt_us,
    resets_before,
    age_us,
});

/// The reset's sequence and acknowledgement numbers against the streams.
#[derive(Clone, Debug, PartialEq)]
pub struct SeqCheck {
    /// Where the claimed sender's stream is (its highest seq + len); null when it sent nothing.
    pub expected: Option<u32>,
    /// RST seq minus `expected` (0: exactly where the sender's stream is).
    pub delta: Option<i64>,
    /// The receiver's stream position the RST's ACK should match.
    pub receiver_seq_next: Option<u32>,
    /// RST ack minus `receiver_seq_next` (null without ACK or receiver history).
    pub ack_delta: Option<i64>,
}

json_object!(SeqCheck {
    expected,
    delta,
    receiver_seq_next,
    ack_delta
});

/// A `"type": "reset"` record.
#[derive(Clone, Debug)]
pub struct ResetRecord<'a> {
    /// Always `"reset"`.
    pub kind: &'static str,
    /// Where and when.
    pub seen: SeenView<'a>,
    /// The RST's headers.
    pub rst: PacketView,
    /// The RST's payload, when it has one.
    pub payload: Option<PayloadView>,
    /// The claimed sender's history in this flow.
    pub sender: SideView,
    /// The receiver's history in this flow.
    pub receiver: SideView,
    /// The receiver's last packet before the reset.
    pub trigger: Option<TriggerView>,
    /// Flow history.
    pub history: HistoryView,
    /// Sequence checks.
    pub seq_check: SeqCheck,
    /// Who sent it: `peer`, `local`, `on-path`, `duplicate` or `unknown`.
    pub origin: Origin,
    /// For `on-path`: hops between the reset's sender and the claimed sender, positive when the
    /// reset's sender is closer to the observer; null when the TTLs do not allow an estimate.
    pub hops_closer: Option<i32>,
    /// The reset was not sent by the endpoint it claims to come from.
    pub suspicious: bool,
    /// The evidence, strongest first: `{code, detail}`.
    pub findings: Vec<Finding>,
    /// The honest mechanism that explains the reset (`abort`, `no_socket`, `refused`, ...);
    /// null when none does, and always for suspicious resets.
    pub explanation: Option<&'static str>,
    /// The evidence for the explanation, in numbers; null with it.
    pub explanation_detail: Option<String>,
    /// What this host's TCP stack said about it.
    pub kernel: KernelWord,
    /// The first bytes of the reset's frame. Not part of the JSON: the pcapng sink
    /// (`--pcap-out`) writes them.
    pub frame: Frame,
    /// The reset's flow, canonical. Not part of the JSON: the pcapng sink finds the packets
    /// before the reset by it (`--pcap-out-context`).
    pub key: FlowKey,
}

impl WriteJson for ResetRecord<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        self.seen
            .begin_record(self.kind, out)
            .field("rst", &self.rst)
            .field("payload", &self.payload)
            .field("sender", &self.sender)
            .field("receiver", &self.receiver)
            .field("trigger", &self.trigger)
            .field("history", &self.history)
            .field("seq_check", &self.seq_check)
            .field("origin", &Name(self.origin.name()))
            .field("hops_closer", &self.hops_closer)
            .field("suspicious", &self.suspicious)
            .field("findings", &self.findings)
            .field("explanation", &self.explanation.map(Name))
            .field("explanation_detail", &self.explanation_detail)
            .field("kernel_reason", &self.kernel.kernel_reason)
            .field("socket_state", &self.kernel.socket_state)
            .field("accepted", &self.kernel.accepted)
            .end();
    }
}

/// What this host's TCP stack said about a reset (tracepoints), where it could know: the JSON
/// view of [`KernelFacts`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelWord {
    /// Why this host sent it, in the kernel's words (`NO_SOCKET`, `TCP_ABORT_ON_CLOSE`, ...);
    /// null for resets this host did not send, or without the tracepoint.
    pub kernel_reason: Option<String>,
    /// The sending socket's state (`TCP_ESTABLISHED`, ...), when the kernel gave one.
    pub socket_state: Option<String>,
    /// For a reset addressed to this host: true when a socket accepted it, false when none did
    /// (out of window, a challenge ACK, no such connection); null when not knowable.
    pub accepted: Option<bool>,
}

impl<'a> ResetRecord<'a> {
    /// Builds the record of a decoded reset seen on `iface`.
    pub fn of(r: &Reset, iface: &'a str, verdict: Verdict, kernel: KernelFacts) -> ResetRecord<'a> {
        let seen = &r.seen;
        let ipv6 = r.rst.ip_flags & IP_V6 != 0;
        let now = seen.kernel_ts_ns;
        let sender_state = r.flow.side(seen.side);
        let receiver_state = r.flow.side(seen.side.other());
        let sender = SideView::of(sender_state, ipv6, now);
        let receiver = SideView::of(receiver_state, ipv6, now);
        let trigger = receiver.seen.then(|| TriggerView {
            us_before: us_between(receiver_state.last_ns, now),
            seq: receiver_state.last_seq,
            ack: (receiver_state.last_flags & TCP_ACK != 0).then_some(receiver_state.last_ack),
            len: receiver_state.last_len,
            flags: FlagNames(receiver_state.last_flags),
            ip_id: (!ipv6).then_some(receiver_state.last_ip_id),
        });
        let has_ack = r.rst.flags & TCP_ACK != 0;
        let seq_check = SeqCheck {
            expected: sender.seq_next,
            delta: sender
                .seq_next
                .map(|e| r.rst.seq.wrapping_sub(e) as i32 as i64),
            receiver_seq_next: receiver.seq_next,
            ack_delta: receiver
                .seq_next
                .filter(|_| has_ack)
                .map(|e| r.rst.ack.wrapping_sub(e) as i32 as i64),
        };
        ResetRecord {
            kind: "reset",
            seen: SeenView::of(seen, iface),
            rst: PacketView::of(&r.rst),
            payload: (!r.payload.is_empty()).then(|| PayloadView::of(&r.payload)),
            sender,
            receiver,
            trigger,
            history: history(&r.flow, seen),
            seq_check,
            origin: verdict.origin,
            hops_closer: verdict.hops_closer,
            suspicious: verdict.suspicious,
            findings: verdict.findings,
            explanation: verdict.explanation.as_ref().map(|e| e.mechanism.code()),
            explanation_detail: verdict.explanation.map(|e| e.detail),
            kernel: KernelWord {
                kernel_reason: kernel.kernel_reason,
                socket_state: kernel.socket_state,
                accepted: kernel.accepted,
            },
            frame: r.frame.clone(),
            key: r.seen.key,
        }
    }
}

fn history(flow: &FlowState, seen: &Seen) -> HistoryView {
    HistoryView {
        new_flow: seen.new_flow,
        midstream: flow.flags & FLOW_MIDSTREAM != 0,
        handshake: flow.flags & FLOW_HANDSHAKE != 0,
        handshake_rtt_us: flow.handshake_rtt_ns().map(|ns| ns as f64 / 1000.0),
        resets_before: flow.rst_count,
        age_us: if seen.new_flow {
            0.0
        } else {
            us_between(flow.first_ns, seen.kernel_ts_ns)
        },
    }
}

/// A `"type": "after_reset"` record: the first packet from a side after a reset in its flow.
#[derive(Clone, Debug)]
pub struct AfterResetRecord<'a> {
    /// Always `"after_reset"`.
    pub kind: &'static str,
    /// Where and when.
    pub seen: SeenView<'a>,
    /// The packet.
    pub packet: PacketView,
    /// True when this packet's sender is the side the reset claimed to come from.
    pub from_reset_sender: bool,
    /// Microseconds since the reset, when the reset was seen by this tracer run.
    pub us_after_reset: Option<f64>,
}

impl WriteJson for AfterResetRecord<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        self.seen
            .begin_record(self.kind, out)
            .field("packet", &self.packet)
            .field("from_reset_sender", &self.from_reset_sender)
            .field("us_after_reset", &self.us_after_reset)
            .end();
    }
}

/// A `"type": "retransmit"` or `"type": "ttl_change"` record (a rate-limited sample).
#[derive(Clone, Debug)]
pub struct SampleRecord<'a> {
    /// `"retransmit"` or `"ttl_change"`.
    pub kind: &'static str,
    /// Where and when.
    pub seen: SeenView<'a>,
    /// The packet.
    pub packet: PacketView,
    /// The sender's history before this packet (retransmit count, TTL baseline).
    pub sender: SideView,
}

impl WriteJson for SampleRecord<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        self.seen
            .begin_record(self.kind, out)
            .field("packet", &self.packet)
            .field("sender", &self.sender)
            .end();
    }
}

impl<'a> SampleRecord<'a> {
    /// Record of a sample of `kind` (`"retransmit"` or `"ttl_change"`).
    pub fn of(kind: &'static str, s: &Sample, iface: &'a str) -> SampleRecord<'a> {
        let ipv6 = s.packet.ip_flags & IP_V6 != 0;
        SampleRecord {
            kind,
            seen: SeenView::of(&s.seen, iface),
            packet: PacketView::of(&s.packet),
            sender: SideView::of(&s.sender, ipv6, s.seen.kernel_ts_ns),
        }
    }
}

impl<'a> AfterResetRecord<'a> {
    /// Record of an after-reset sample; `reset` is the side and kernel time of the flow's last
    /// reset, when this run saw it.
    pub fn of(s: &Sample, iface: &'a str, reset: Option<(Side, u64)>) -> AfterResetRecord<'a> {
        AfterResetRecord {
            kind: "after_reset",
            seen: SeenView::of(&s.seen, iface),
            packet: PacketView::of(&s.packet),
            from_reset_sender: reset.is_some_and(|(side, _)| side == s.seen.side),
            us_after_reset: reset.map(|(_, t)| us_between(t, s.seen.kernel_ts_ns)),
        }
    }
}

/// A `"type": "silence"` record: a flow that fell silent one way, with no reset to explain it.
#[derive(Clone, Debug)]
pub struct SilenceRecord {
    /// Always `"silence"`.
    pub kind: &'static str,
    /// RFC 3339 time of the check.
    pub ts: Rfc3339,
    /// Nanoseconds since the epoch.
    pub ts_ns: u64,
    /// The side that kept sending -> the side that fell silent.
    pub flow: FlowView,
    /// Retransmissions of the side that kept sending.
    pub retransmits: u32,
    /// The evidence (`oneway_silence`).
    pub findings: Vec<Finding>,
}

impl WriteJson for SilenceRecord {
    fn write_json(&self, out: &mut Vec<u8>) {
        Object::begin(out)
            .field("type", &Name(self.kind))
            .field("ts", &self.ts)
            .field("ts_ns", &self.ts_ns)
            .field("flow", &self.flow)
            .field("retransmits", &self.retransmits)
            .field("findings", &self.findings)
            .end();
    }
}

impl WriteJson for Finding {
    fn write_json(&self, out: &mut Vec<u8>) {
        Object::begin(out)
            .field("code", &Name(self.code))
            .field("detail", &self.detail)
            .end();
    }
}

impl SilenceRecord {
    /// The record of a silent flow, `side` being the one that kept sending.
    pub fn of(
        key: &FlowKey,
        side: Side,
        retransmits: u32,
        finding: Finding,
        epoch_ns: u64,
    ) -> SilenceRecord {
        let (src, sport) = crate::event::endpoint(key, side);
        let (dst, dport) = crate::event::endpoint(key, side.other());
        SilenceRecord {
            kind: "silence",
            ts: Rfc3339(epoch_ns),
            ts_ns: epoch_ns,
            flow: FlowView {
                src,
                sport,
                dst,
                dport,
            },
            retransmits,
            findings: vec![finding],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_packets_have_no_ip_id() {
        let p = PacketInfo {
            ip_flags: IP_V6,
            ip_id: 0,
            ..Default::default()
        };
        assert_eq!(PacketView::of(&p).ip_id, None);
        let p = PacketInfo {
            ip_flags: IP_DF,
            ip_id: 7,
            ..Default::default()
        };
        assert_eq!(PacketView::of(&p).ip_id, Some(7));
    }
}
