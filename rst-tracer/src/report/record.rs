//! The output records: what a reset, a sample, a summary and the counters look like to a reader.
//!
//! These are the JSON Lines wire types (one object per line, `"type"` first) and the numbers the
//! text format prints. Every field here is part of the documented schema (README, "JSON output");
//! add fields freely, never rename or remove one. Each type's [`WriteJson`] impl, beside it,
//! writes its fields in declaration order under their own names.

use std::{fmt, net::IpAddr};

use rst_tracer_common::{
    event::{
        PacketInfo, IP_DF, IP_V6, OPT_MALFORMED, OPT_MPTCP, OPT_MSS, OPT_OTHER, OPT_SACK,
        OPT_SACK_OK, OPT_TIMESTAMPS, OPT_WSCALE, TCP_ACK, TCP_CWR, TCP_ECE, TCP_FIN, TCP_PSH,
        TCP_RESERVED, TCP_RST, TCP_SYN, TCP_URG,
    },
    flow::{
        FlowKey, FlowState, Side, SideState, FLOW_HANDSHAKE, FLOW_MIDSTREAM, SIDE_SEEN,
        SIDE_TIMESTAMPS,
    },
};
use serde::Serialize;

use super::json::{json_object, Name, Object, WriteJson, HEX_DIGITS};
use crate::{
    event::{Reset, Sample, Seen},
    forensics::{stack::StackFacts, Finding, Origin, Verdict},
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

/// TCP flags as text, e.g. `RST|ACK`; reserved bits show as `RES(0x…)`, no flag as `none`.
/// Written straight into the output: no string is built per packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlagNames(pub u16);

impl FlagNames {
    /// The longest text: every flag and the reserved bits.
    const MAX_TEXT: usize = "SYN|FIN|RST|PSH|ACK|URG|ECE|CWR|RES(0xf)".len();

    /// The text, written into `buf`.
    fn text(self, buf: &mut [u8; Self::MAX_TEXT]) -> &str {
        const NAMES: [(u16, &str); 8] = [
            (TCP_SYN, "SYN"),
            (TCP_FIN, "FIN"),
            (TCP_RST, "RST"),
            (TCP_PSH, "PSH"),
            (TCP_ACK, "ACK"),
            (TCP_URG, "URG"),
            (TCP_ECE, "ECE"),
            (TCP_CWR, "CWR"),
        ];
        let flags = self.0;
        let mut len = 0;
        let mut put = |piece: &[u8]| {
            buf[len..len + piece.len()].copy_from_slice(piece);
            len += piece.len();
        };
        let mut sep: &[u8] = b"";
        for (bit, name) in NAMES {
            if flags & bit != 0 {
                put(sep);
                put(name.as_bytes());
                sep = b"|";
            }
        }
        if flags & TCP_RESERVED != 0 {
            put(sep);
            put(b"RES(0x");
            put(&[HEX_DIGITS[usize::from((flags & TCP_RESERVED) >> 8)], b')']);
        } else if sep.is_empty() {
            put(b"none");
        }
        std::str::from_utf8(&buf[..len]).expect("flag names are ASCII")
    }
}

impl fmt::Display for FlagNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text(&mut [0; Self::MAX_TEXT]))
    }
}

impl WriteJson for FlagNames {
    fn write_json(&self, out: &mut Vec<u8>) {
        Name(self.text(&mut [0; Self::MAX_TEXT])).write_json(out);
    }
}

/// TCP options present, as a list of names (`["mss", "sack_ok"]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionNames(pub u8);

impl OptionNames {
    /// The names of the options present, in option-bit order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        const NAMES: [(u8, &str); 8] = [
            (OPT_MSS, "mss"),
            (OPT_WSCALE, "wscale"),
            (OPT_SACK_OK, "sack_ok"),
            (OPT_SACK, "sack"),
            (OPT_TIMESTAMPS, "timestamps"),
            (OPT_MPTCP, "mptcp"),
            (OPT_OTHER, "other"),
            (OPT_MALFORMED, "malformed"),
        ];
        NAMES
            .into_iter()
            .filter(move |(bit, _)| self.0 & bit != 0)
            .map(|(_, n)| n)
    }
}

impl WriteJson for OptionNames {
    fn write_json(&self, out: &mut Vec<u8>) {
        if self.0 == 0 {
            // Most packets after the handshake carry none.
            out.extend_from_slice(b"[]");
            return;
        }
        out.push(b'[');
        for (i, name) in self.names().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            Name(name).write_json(out);
        }
        out.push(b']');
    }
}

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

/// Printable or hex view of a RST's payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayloadView {
    /// Bytes captured (at most 64).
    pub captured: usize,
    /// The captured bytes in hex.
    pub hex: String,
    /// The captured bytes as text, when they are printable.
    pub text: Option<String>,
}

impl PayloadView {
    /// View of payload bytes.
    pub fn of(bytes: &[u8]) -> PayloadView {
        let printable = !bytes.is_empty()
            && bytes
                .iter()
                .all(|b| b.is_ascii_graphic() || matches!(b, b' ' | b'\r' | b'\n' | b'\t'));
        PayloadView {
            captured: bytes.len(),
            hex: bytes.iter().map(|b| format!("{b:02x}")).collect(),
            text: printable.then(|| String::from_utf8_lossy(bytes).into_owned()),
        }
    }
}

json_object!(PayloadView {
    captured,
    hex,
    text
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
    pub stack: StackJoin,
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
            .field("kernel_reason", &self.stack.kernel_reason)
            .field("socket_state", &self.stack.socket_state)
            .field("accepted", &self.stack.accepted)
            .end();
    }
}

/// What this host's TCP stack said about a reset (tracepoints), where it could know: the JSON
/// view of [`StackFacts`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StackJoin {
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
    pub fn of(r: &Reset, iface: &'a str, verdict: Verdict, stack: StackFacts) -> ResetRecord<'a> {
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
            stack: StackJoin {
                kernel_reason: stack.kernel_reason,
                socket_state: stack.socket_state,
                accepted: stack.accepted,
            },
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

/// Microseconds from `earlier` to `later` (kernel ns), never negative.
pub fn us_between(earlier: u64, later: u64) -> f64 {
    later.saturating_sub(earlier) as f64 / 1000.0
}

/// A time as RFC 3339 with microseconds, UTC (`2026-11-22T13:03:44.049732Z`), from nanoseconds
/// since the epoch. Written straight into the output: no string is built per record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rfc3339(pub u64);

impl Rfc3339 {
    /// Length of the text: `YYYY-MM-DDTHH:MM:SS.ffffffZ` (a u64 of nanoseconds ends in 2554).
    const LEN: usize = 27;

    /// The text, as ASCII bytes.
    fn text(self) -> [u8; Self::LEN] {
        let secs = self.0 / 1_000_000_000;
        let (year, month, day) = civil_date(secs / 86_400);
        let time = secs % 86_400;
        let mut t = *b"0000-00-00T00:00:00.000000Z";
        put_digits(&mut t[0..4], year);
        put_digits(&mut t[5..7], month);
        put_digits(&mut t[8..10], day);
        put_digits(&mut t[11..13], time / 3_600);
        put_digits(&mut t[14..16], time % 3_600 / 60);
        put_digits(&mut t[17..19], time % 60);
        put_digits(&mut t[20..26], self.0 % 1_000_000_000 / 1_000);
        t
    }
}

/// Decimal digit pairs, `00` to `99`.
const DIGIT_PAIRS: [u8; 200] = {
    let mut pairs = [0; 200];
    let mut i = 0;
    while i < 100 {
        pairs[2 * i] = b'0' + (i / 10) as u8;
        pairs[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    pairs
};

/// Writes `v` in decimal into all of `digits`, two at a time, with leading zeros (digits that
/// do not fit are dropped).
fn put_digits(digits: &mut [u8], mut v: u64) {
    let mut end = digits.len();
    while end >= 2 {
        let pair = (v % 100) as usize * 2;
        v /= 100;
        digits[end - 2..end].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        end -= 2;
    }
    if end == 1 {
        digits[0] = b'0' + (v % 10) as u8;
    }
}

/// Year, month (1-12) and day (1-31) of the proleptic Gregorian calendar, `days` after
/// 1970-01-01 (Howard Hinnant's `civil_from_days`: eras of 400 years, years from March).
fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * march_month + 2) / 5 + 1;
    let month = if march_month < 10 {
        march_month + 3
    } else {
        march_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.text()).expect("digits and separators"))
    }
}

impl WriteJson for Rfc3339 {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'"');
        out.extend_from_slice(&self.text());
        out.push(b'"');
    }
}

impl Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_names_include_reserved_bits() {
        assert_eq!(FlagNames(TCP_RST | TCP_ACK).to_string(), "RST|ACK");
        assert_eq!(FlagNames(TCP_RST | 0x100).to_string(), "RST|RES(0x1)");
        assert_eq!(FlagNames(0x100).to_string(), "RES(0x1)");
        assert_eq!(FlagNames(0).to_string(), "none");
    }

    #[test]
    fn rfc3339_dates_across_leap_days_and_centuries() {
        for (ns, text) in [
            (0, "1970-01-01T00:00:00.000000Z"),
            (1_795_352_624_049_732_610, "2026-11-22T13:03:44.049732Z"),
            (1_795_352_624_000_001_999, "2026-11-22T13:03:44.000001Z"),
            (951_782_399_999_999_000, "2000-02-28T23:59:59.999999Z"),
            (951_782_400_000_000_000, "2000-02-29T00:00:00.000000Z"),
            (1_735_689_599_123_456_789, "2024-12-31T23:59:59.123456Z"),
            (4_107_542_400_000_000_000, "2100-03-01T00:00:00.000000Z"),
            (u64::MAX, "2554-07-21T23:34:33.709551Z"),
        ] {
            assert_eq!(Rfc3339(ns).to_string(), text, "{ns}");
        }
    }

    #[test]
    fn payload_text_only_when_printable() {
        let p = PayloadView::of(b"Access Denied");
        assert_eq!(p.text.as_deref(), Some("Access Denied"));
        assert_eq!(p.hex, "4163636573732044656e696564");
        assert_eq!(PayloadView::of(&[0, 1, 0xff]).text, None);
    }

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
