//! Ring-buffer events: the only data the kernel sends to userspace.
//!
//! Ordinary packets never produce an event. Each event starts with an [`EventHeader`] whose
//! `version` and `kind` say how to read the rest; userspace rejects versions it does not know.
//!
//! | kind | struct | ring |
//! |---|---|---|
//! | [`EventKind::Rst`] | [`RstEvent`] | reset ring |
//! | [`EventKind::AfterRst`] | [`SampleEvent`] | reset ring |
//! | [`EventKind::Retransmit`] | [`SampleEvent`] | sample ring |
//! | [`EventKind::TtlChange`] | [`SampleEvent`] | sample ring |
//! | [`EventKind::KernelSentReset`] | [`KernelNoteEvent`] | reset ring |
//! | [`EventKind::KernelAcceptedReset`] | [`KernelNoteEvent`] | reset ring |
//! | [`EventKind::KernelRetransmit`] | [`KernelNoteEvent`] | sample ring |
//! | [`EventKind::KernelSynAckRetransmit`] | [`KernelNoteEvent`] | sample ring |
//!
//! The ring is [`EventKind::ring`], which the kernel writes by; a test checks this table against
//! the code.

use core::mem::size_of;

use crate::flow::{FlowKey, FlowState, SideState};

/// Version of the event layout. Bump on any incompatible change.
pub const EVENT_VERSION: u8 = 4;

/// What an event reports.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A TCP segment with RST set, with the flow snapshot from before it.
    Rst = 1,
    /// The first packet from a side after a RST in its flow.
    AfterRst = 2,
    /// A retransmitted segment (rate-limited sample).
    Retransmit = 3,
    /// A packet whose TTL differs from its side's previous one (rate-limited sample).
    TtlChange = 4,
    /// This host's stack sent a reset (tracepoint tcp:tcp_send_reset).
    KernelSentReset = 5,
    /// A socket of this host accepted a reset (tracepoint tcp:tcp_receive_reset).
    KernelAcceptedReset = 6,
    /// This host's stack retransmitted a segment (tracepoint tcp:tcp_retransmit_skb).
    KernelRetransmit = 7,
    /// A listener of this host retransmitted its SYN-ACK (tracepoint tcp:tcp_retransmit_synack).
    KernelSynAckRetransmit = 8,
}

/// The two ring buffers. Resets and what joins them go to the reset ring, samples to the sample
/// ring, so a storm of samples can never crowd out a reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ring {
    /// `RST_RING` (`names::MAP_RST_RING`).
    Resets,
    /// `RST_SAMPLES` (`names::MAP_SAMPLE_RING`).
    Samples,
}

impl EventKind {
    /// Every kind, in wire order.
    pub const ALL: [EventKind; 8] = [
        EventKind::Rst,
        EventKind::AfterRst,
        EventKind::Retransmit,
        EventKind::TtlChange,
        EventKind::KernelSentReset,
        EventKind::KernelAcceptedReset,
        EventKind::KernelRetransmit,
        EventKind::KernelSynAckRetransmit,
    ];

    /// The ring events of this kind are written to.
    pub const fn ring(self) -> Ring {
        match self {
            EventKind::Rst
            | EventKind::AfterRst
            | EventKind::KernelSentReset
            | EventKind::KernelAcceptedReset => Ring::Resets,
            EventKind::Retransmit
            | EventKind::TtlChange
            | EventKind::KernelRetransmit
            | EventKind::KernelSynAckRetransmit => Ring::Samples,
        }
    }

    /// Kind from its wire byte.
    pub const fn from_u8(v: u8) -> Option<EventKind> {
        match v {
            1 => Some(EventKind::Rst),
            2 => Some(EventKind::AfterRst),
            3 => Some(EventKind::Retransmit),
            4 => Some(EventKind::TtlChange),
            5 => Some(EventKind::KernelSentReset),
            6 => Some(EventKind::KernelAcceptedReset),
            7 => Some(EventKind::KernelRetransmit),
            8 => Some(EventKind::KernelSynAckRetransmit),
            _ => None,
        }
    }

    /// Size of the struct this kind is carried in.
    pub const fn wire_size(self) -> usize {
        match self {
            EventKind::Rst => size_of::<RstEvent>(),
            EventKind::KernelSentReset
            | EventKind::KernelAcceptedReset
            | EventKind::KernelRetransmit
            | EventKind::KernelSynAckRetransmit => size_of::<KernelNoteEvent>(),
            _ => size_of::<SampleEvent>(),
        }
    }
}

/// Where in the stack a packet was seen.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// XDP on ingress.
    Xdp = 1,
    /// TC (tcx) ingress.
    TcIngress = 2,
    /// TC (tcx) egress.
    TcEgress = 3,
    /// The XDP program run over a capture record (BPF_PROG_TEST_RUN with replay metadata).
    Replay = 4,
}

impl Hook {
    /// Hook from its wire byte.
    pub const fn from_u8(v: u8) -> Option<Hook> {
        match v {
            1 => Some(Hook::Xdp),
            2 => Some(Hook::TcIngress),
            3 => Some(Hook::TcEgress),
            4 => Some(Hook::Replay),
            _ => None,
        }
    }

    /// Stable name for output.
    pub const fn name(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp",
            Hook::TcIngress => "tc-ingress",
            Hook::TcEgress => "tc-egress",
            Hook::Replay => "replay",
        }
    }

    /// Direction of traffic at this hook.
    pub const fn direction(self) -> Direction {
        match self {
            Hook::Xdp | Hook::TcIngress => Direction::Ingress,
            Hook::TcEgress => Direction::Egress,
            Hook::Replay => Direction::Unknown,
        }
    }
}

/// Direction of a packet relative to the traced host.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Not known (capture replay without local networks).
    Unknown = 0,
    /// Arriving at the host.
    Ingress = 1,
    /// Leaving the host.
    Egress = 2,
}

impl Direction {
    /// Stable name for output.
    pub const fn name(self) -> &'static str {
        match self {
            Direction::Unknown => "unknown",
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// [`EventHeader::flags`]: `ts_ns` is a capture timestamp (ns since the Unix epoch), not
/// `bpf_ktime_get_ns()`.
pub const HDR_TS_CAPTURE: u8 = 1 << 0;
/// [`EventHeader::flags`]: this packet created the flow entry (no history before it).
pub const HDR_NEW_FLOW: u8 = 1 << 1;

/// Common header of every event (64 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// [`EVENT_VERSION`].
    pub version: u8,
    /// [`EventKind`] as `u8`.
    pub kind: u8,
    /// Size of the whole event in bytes.
    pub len: u16,
    /// Interface index the packet was seen on (0 in replay).
    pub ifindex: u32,
    /// Packet time: `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) live, or the capture timestamp in ns
    /// since the epoch when `flags` has [`HDR_TS_CAPTURE`].
    pub ts_ns: u64,
    /// The flow.
    pub key: FlowKey,
    /// [`Hook`] as `u8`.
    pub hook: u8,
    /// [`Direction`] as `u8`.
    pub direction: u8,
    /// [`crate::flow::Side`] of the packet's sender.
    pub side: u8,
    /// `HDR_*` bits.
    pub flags: u8,
    /// Padding, always zero.
    pub _pad: [u8; 4],
}
const _: () = assert!(size_of::<EventHeader>() == 64);

/// TCP flag bits as they sit in the low 12 bits of the TCP header's offset/flags word:
/// FIN.
pub const TCP_FIN: u16 = 0x001;
/// SYN.
pub const TCP_SYN: u16 = 0x002;
/// RST.
pub const TCP_RST: u16 = 0x004;
/// PSH.
pub const TCP_PSH: u16 = 0x008;
/// ACK.
pub const TCP_ACK: u16 = 0x010;
/// URG.
pub const TCP_URG: u16 = 0x020;
/// ECE.
pub const TCP_ECE: u16 = 0x040;
/// CWR.
pub const TCP_CWR: u16 = 0x080;
/// The four reserved bits (AE/NS is the lowest of them).
pub const TCP_RESERVED: u16 = 0xf00;

/// [`PacketInfo::ip_flags`]: IPv4 Don't Fragment.
pub const IP_DF: u8 = 1 << 0;
/// [`PacketInfo::ip_flags`]: IPv4 More Fragments (a first fragment).
pub const IP_MF: u8 = 1 << 1;
/// [`PacketInfo::ip_flags`]: the packet is IPv6 (no IP ID).
pub const IP_V6: u8 = 1 << 2;

/// [`PacketInfo::tcp_options`]: MSS option present.
pub const OPT_MSS: u8 = 1 << 0;
/// Window scale option present.
pub const OPT_WSCALE: u8 = 1 << 1;
/// SACK-permitted option present.
pub const OPT_SACK_OK: u8 = 1 << 2;
/// SACK blocks present.
pub const OPT_SACK: u8 = 1 << 3;
/// Timestamps option present.
pub const OPT_TIMESTAMPS: u8 = 1 << 4;
/// MPTCP option present (kind 30).
pub const OPT_MPTCP: u8 = 1 << 5;
/// Another option kind present.
pub const OPT_OTHER: u8 = 1 << 6;
/// The option list was malformed (a length that runs past the header); parsing stopped there.
pub const OPT_MALFORMED: u8 = 1 << 7;
/// Options the kernel walks only on SYN and RST segments; others use the timestamp fast path.
pub const OPT_FULL_WALK: u8 = OPT_MSS | OPT_WSCALE | OPT_SACK_OK | OPT_SACK | OPT_OTHER;

/// The headers of one TCP segment (32 bytes; 8-byte aligned so the kernel can clear it with four
/// word stores instead of a byte-wise `memset`).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketInfo {
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (meaningful when `flags` has [`TCP_ACK`]).
    pub ack: u32,
    /// TSval when `tcp_options` has [`OPT_TIMESTAMPS`].
    pub ts_val: u32,
    /// TSecr when `tcp_options` has [`OPT_TIMESTAMPS`].
    pub ts_ecr: u32,
    /// IPv4 identification (0 for IPv6).
    pub ip_id: u16,
    /// Raw window field.
    pub window: u16,
    /// TCP flags, reserved bits included (`TCP_*`).
    pub flags: u16,
    /// TCP payload length from the IP length fields.
    pub payload_len: u16,
    /// TTL or hop limit.
    pub ttl: u8,
    /// `IP_*` bits.
    pub ip_flags: u8,
    /// `OPT_*` bits.
    pub tcp_options: u8,
    /// TCP data offset in 32-bit words.
    pub data_offset: u8,
    /// Window-scale shift when `tcp_options` has [`OPT_WSCALE`].
    pub wscale: u8,
    /// Padding, always zero.
    pub _pad: [u8; 3],
}
const _: () = assert!(size_of::<PacketInfo>() == 32);

/// How many payload bytes a [`RstEvent`] carries.
pub const RST_PAYLOAD_MAX: usize = 64;

/// How many bytes of the reset's frame a [`RstEvent`] carries, from its first byte (the
/// Ethernet header). 256 bytes hold the longest header stack the parser reads with room for a
/// payload: Ethernet, two VLAN tags and PPPoE (30 bytes), then IPv4 with every option (60) and
/// TCP with every option (60), which leaves 106 payload bytes; or IPv6 (40) behind a usual
/// extension chain (hop-by-hop, routing, fragment, destination: 48) and TCP with options, 78.
/// It is also what the TC programs pull into the linear part when the headers are not there
/// (`TC_PULL_LEN`). The copy is one helper call on the reset path only.
pub const RST_FRAME_MAX: usize = 256;

/// A TCP reset and everything the kernel knew about its flow just before it (656 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RstEvent {
    /// Common header; `side` is the side the RST claims to come from.
    pub header: EventHeader,
    /// The RST's own headers.
    pub rst: PacketInfo,
    /// The flow state before this RST was applied (all zero when `header.flags` has
    /// [`HDR_NEW_FLOW`]). The other side's `last_*` fields describe the trigger candidate: the
    /// last packet the RST's receiver sent.
    pub flow: FlowState,
    /// Number of valid bytes in `payload` (at most [`RST_PAYLOAD_MAX`]; fewer when the packet
    /// was shorter than its IP length said, e.g. a capture's snap length).
    pub payload_captured: u8,
    /// Padding, always zero.
    pub _pad: u8,
    /// Number of valid bytes in `frame`: the frame's first `min(frame_len, RST_FRAME_MAX)`
    /// bytes, or 0 when the copy failed.
    pub frame_captured: u16,
    /// The frame's whole length as the hook saw it: the XDP buffer, or the skb's `len` at TC
    /// (in replay, the capture record's bytes).
    pub frame_len: u32,
    /// The first payload bytes.
    pub payload: [u8; RST_PAYLOAD_MAX],
    /// The frame's first bytes, from its Ethernet header on, as the kernel saw them.
    pub frame: [u8; RST_FRAME_MAX],
}
const _: () = assert!(size_of::<RstEvent>() == 64 + 32 + 232 + 8 + 64 + 256);

/// A sampled packet with the state of its sender's side (176 bytes). Used for
/// [`EventKind::AfterRst`], [`EventKind::Retransmit`] and [`EventKind::TtlChange`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleEvent {
    /// Common header; `side` is the sender.
    pub header: EventHeader,
    /// The packet's headers.
    pub packet: PacketInfo,
    /// The sender's side state before this packet was applied.
    pub sender: SideState,
}
const _: () = assert!(size_of::<SampleEvent>() == 176);

/// What the TCP stack itself said (72 bytes): which flow, which side sent the reset or the
/// retransmission, and for sent resets the kernel's reason and the socket's state.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelNoteEvent {
    /// [`EVENT_VERSION`].
    pub version: u8,
    /// One of the `EventKind::Stack*` kinds.
    pub kind: u8,
    /// Size of the event in bytes.
    pub len: u16,
    /// Socket state (TCP_ESTABLISHED = 1 ...) for sent resets and retransmissions; 0 when unknown.
    pub state: u32,
    /// `bpf_ktime_get_ns()` when the tracepoint fired.
    pub ts_ns: u64,
    /// The flow.
    pub key: FlowKey,
    /// [`crate::flow::Side`] of the reset's or retransmission's sender.
    pub side: u8,
    /// Padding, always zero.
    pub _pad: [u8; 3],
    /// `enum sk_rst_reason` for sent resets ([`REASON_UNKNOWN`] when the kernel has none).
    pub reason: u32,
    /// How many acts this event stands for: 1, except for stack retransmissions, where the
    /// kernel sends at most one event per flow side per sample gap and folds the others into
    /// the next one (or into a flush when the flow resets).
    pub count: u32,
    /// Padding, always zero.
    pub _pad2: u32,
}
const _: () = assert!(size_of::<KernelNoteEvent>() == 72);

/// The kernel's tally of a flow's stack retransmissions, for folding them into fewer events.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetransmitTally {
    /// Per side: when its last retransmission event was written (`bpf_ktime_get_ns()`).
    pub last_ns: [u64; 2],
    /// Per side: retransmissions since that event, not yet sent.
    pub held: [u32; 2],
}
const _: () = assert!(size_of::<RetransmitTally>() == 24);

/// [`KernelNoteEvent::reason`] when the kernel's tracepoint has no `reason` field.
pub const REASON_UNKNOWN: u32 = u32::MAX;

/// Where the fields of the TCP tracepoints are, read from tracefs at load time (a load-time
/// global): the layouts change between kernels. An offset of [`FIELD_ABSENT`] means the field
/// does not exist on this kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TracepointOffsets {
    /// tcp_send_reset: `int state`.
    pub send_state: u32,
    /// tcp_send_reset: `enum sk_rst_reason reason`.
    pub send_reason: u32,
    /// tcp_send_reset: `__u8 saddr[28]` (a sockaddr: the reset's sender).
    pub send_saddr: u32,
    /// tcp_send_reset: `__u8 daddr[28]`.
    pub send_daddr: u32,
    /// tcp:tcp_receive_reset (a socket accepted a reset).
    pub receive: SocketFields,
    /// tcp:tcp_retransmit_skb (the stack retransmits a segment).
    pub retransmit: SocketFields,
    /// tcp:tcp_retransmit_synack (a listener retransmits its SYN-ACK).
    pub synack: SocketFields,
}

/// The socket fields several tcp tracepoints share (`TP_STORE_ADDR_PORTS`): the socket's own
/// address and port are `saddr`/`sport`, its peer's `daddr`/`dport`, ports in host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketFields {
    /// `int state` ([`FIELD_ABSENT`] on tracepoints without it).
    pub state: u32,
    /// `__u16 sport`.
    pub sport: u32,
    /// `__u16 dport`.
    pub dport: u32,
    /// `__u16 family`.
    pub family: u32,
    /// `__u8 saddr[4]`.
    pub saddr: u32,
    /// `__u8 daddr[4]`.
    pub daddr: u32,
    /// `__u8 saddr_v6[16]`.
    pub saddr_v6: u32,
    /// `__u8 daddr_v6[16]`.
    pub daddr_v6: u32,
}

impl SocketFields {
    /// The fields following a `__u16 sport` at `sport` (their layout since Linux 4.16).
    const fn from_sport(state: u32, sport: u32) -> SocketFields {
        SocketFields {
            state,
            sport,
            dport: sport + 2,
            family: sport + 4,
            saddr: sport + 6,
            daddr: sport + 10,
            saddr_v6: sport + 14,
            daddr_v6: sport + 30,
        }
    }
}

/// A [`TracepointOffsets`] field the kernel does not have.
pub const FIELD_ABSENT: u32 = u32::MAX;

impl TracepointOffsets {
    /// The layout of Linux 6.10 and later (checked on 6.18).
    pub const LINUX_6_10: TracepointOffsets = TracepointOffsets {
        send_state: 24,
        send_reason: 28,
        send_saddr: 32,
        send_daddr: 60,
        receive: SocketFields::from_sport(FIELD_ABSENT, 16),
        retransmit: SocketFields::from_sport(24, 28),
        synack: SocketFields::from_sport(FIELD_ABSENT, 24),
    };
}

/// The largest event.
pub const EVENT_MAX_SIZE: usize = size_of::<RstEvent>();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_module_table_lists_every_kind_with_its_struct_and_ring() {
        let rows: [(&str, &str, &str); 8] = {
            let source = include_str!("event.rs");
            let mut rows = [("", "", ""); 8];
            let mut n = 0;
            for line in source
                .lines()
                .filter(|l| l.starts_with("//! | [`EventKind::"))
            {
                let cells: [&str; 3] = {
                    let mut it = line.trim_start_matches("//! |").split('|').map(str::trim);
                    [
                        it.next().unwrap_or(""),
                        it.next().unwrap_or(""),
                        it.next().unwrap_or(""),
                    ]
                };
                assert!(n < rows.len(), "more rows than kinds: {line}");
                rows[n] = (cells[0], cells[1], cells[2]);
                n += 1;
            }
            assert_eq!(n, EventKind::ALL.len(), "a kind is missing from the table");
            rows
        };
        for (kind, (name, strukt, ring)) in EventKind::ALL.iter().zip(rows) {
            assert_eq!(
                name.trim_start_matches("[`EventKind::")
                    .trim_end_matches("`]"),
                match kind {
                    EventKind::Rst => "Rst",
                    EventKind::AfterRst => "AfterRst",
                    EventKind::Retransmit => "Retransmit",
                    EventKind::TtlChange => "TtlChange",
                    EventKind::KernelSentReset => "KernelSentReset",
                    EventKind::KernelAcceptedReset => "KernelAcceptedReset",
                    EventKind::KernelRetransmit => "KernelRetransmit",
                    EventKind::KernelSynAckRetransmit => "KernelSynAckRetransmit",
                },
                "table order"
            );
            let size = match strukt {
                "[`RstEvent`]" => size_of::<RstEvent>(),
                "[`SampleEvent`]" => size_of::<SampleEvent>(),
                "[`KernelNoteEvent`]" => size_of::<KernelNoteEvent>(),
                other => panic!("unknown struct {other} for {kind:?}"),
            };
            assert_eq!(size, kind.wire_size(), "{kind:?} travels in {strukt}");
            let expected = match kind.ring() {
                Ring::Resets => "reset ring",
                Ring::Samples => "sample ring",
            };
            assert_eq!(ring, expected, "{kind:?}");
            assert_eq!(EventKind::from_u8(*kind as u8), Some(*kind));
        }
    }
}
