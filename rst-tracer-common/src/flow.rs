//! Flow-table key and value: what the kernel remembers about each TCP connection.
//!
//! A flow is keyed canonically: the endpoint that sorts lower (address, then port) is stored first,
//! so both directions of a connection find the same entry. A packet's [`Side`] says which endpoint
//! sent it: [`Side::Lo`] for the lower endpoint, [`Side::Hi`] for the other.

use core::mem::size_of;

/// Address family of a flow.
pub const FAMILY_IPV4: u16 = 4;
/// Address family of a flow.
pub const FAMILY_IPV6: u16 = 6;

/// An IP address as four 32-bit words holding the address bytes in network order (the words are
/// the raw memory of the address, `u32::from_ne_bytes` of each 4 bytes). IPv4 uses word 0, the
/// rest are zero. Words rather than bytes: the kernel copies and compares them a word at a time.
pub type AddrWords = [u32; 4];

/// The words of an address given as 16 bytes (IPv4 in the first 4).
pub fn addr_from_bytes(b: &[u8; 16]) -> AddrWords {
    let w = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    [w(0), w(4), w(8), w(12)]
}

/// The words of an IPv4 address: its 4 bytes first, the rest zero.
pub fn addr_from_ipv4(octets: [u8; 4]) -> AddrWords {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&octets);
    addr_from_bytes(&b)
}

/// The 16 address bytes of `words`.
pub fn addr_to_bytes(words: &AddrWords) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (i, w) in words.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
    }
    out
}

/// Canonical flow key (40 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowKey {
    /// Lower endpoint's address (see [`AddrWords`]).
    pub addr_lo: AddrWords,
    /// Higher endpoint's address.
    pub addr_hi: AddrWords,
    /// Lower endpoint's port (host byte order).
    pub port_lo: u16,
    /// Higher endpoint's port (host byte order).
    pub port_hi: u16,
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`]. A `u16` so the key has no byte-sized padding: the
    /// kernel zeroes a `u16` with one store, three padding bytes with a `memset` call.
    pub family: u16,
    /// Padding, always zero.
    pub _pad: u16,
}
const _: () = assert!(size_of::<FlowKey>() == 40);

/// A reset the kernel could not write to the full reset ring: its flow, its sender, its hook,
/// and which side opened the flow. The kernel counts these per flow (`RST_DROPPED`), so the
/// summaries' per-remote and per-port tallies still count every reset of a flood whose events
/// were lost.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct DroppedReset {
    /// The reset's flow.
    pub key: FlowKey,
    /// The side that sent it (a [`Side`] as `u8`).
    pub side: u8,
    /// The hook that saw it (an `event::Hook` as `u8`).
    pub hook: u8,
    /// The side whose SYN opened the flow, or [`SYN_SIDE_UNKNOWN`] when no SYN was seen.
    pub syn_side: u8,
    /// Padding, always zero.
    pub _pad: u8,
}

const _: () = assert!(size_of::<DroppedReset>() == 44);

/// [`DroppedReset::syn_side`] of a flow whose SYN was not seen.
pub const SYN_SIDE_UNKNOWN: u8 = 0xff;

/// Hashes the key as five words rather than field by field: flow look-ups are the
/// userspace pipeline's most frequent operation.
impl core::hash::Hash for FlowKey {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        let a = &self.addr_lo;
        let b = &self.addr_hi;
        let pair = |x: u32, y: u32| (u64::from(x) << 32) | u64::from(y);
        let ports = (u64::from(self.port_lo) << 48)
            | (u64::from(self.port_hi) << 32)
            | (u64::from(self.family) << 16)
            | u64::from(self._pad);
        for word in [
            pair(a[0], a[1]),
            pair(a[2], a[3]),
            pair(b[0], b[1]),
            pair(b[2], b[3]),
            ports,
        ] {
            state.write_u64(word);
        }
    }
}

/// Which endpoint of a canonical flow sent a packet.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// The endpoint stored first in the key (`addr_lo`, `port_lo`).
    Lo = 0,
    /// The endpoint stored second.
    Hi = 1,
}

impl Side {
    /// The other endpoint.
    pub const fn other(self) -> Side {
        match self {
            Side::Lo => Side::Hi,
            Side::Hi => Side::Lo,
        }
    }

    /// Index into [`FlowState::sides`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Side from a wire byte (anything non-zero is `Hi`).
    pub const fn from_u8(v: u8) -> Side {
        if v == 0 {
            Side::Lo
        } else {
            Side::Hi
        }
    }
}

/// Sorts an endpoint pair: returns true when `(a, pa)` is the lower endpoint.
///
/// Addresses are compared as big-endian numbers (the same order as byte-wise), then ports.
#[inline(always)]
pub fn endpoint_is_lower(a: &AddrWords, pa: u16, b: &AddrWords, pb: u16) -> bool {
    let mut i = 0;
    while i < 4 {
        let (wa, wb) = (u32::from_be(a[i]), u32::from_be(b[i]));
        if wa != wb {
            return wa < wb;
        }
        i += 1;
    }
    pa <= pb
}

impl FlowKey {
    /// Builds the canonical key of a packet from `src:sport` to `dst:dport` and says which side
    /// sent it.
    #[inline(always)]
    pub fn canonical(
        family: u16,
        src: &AddrWords,
        sport: u16,
        dst: &AddrWords,
        dport: u16,
    ) -> (FlowKey, Side) {
        if endpoint_is_lower(src, sport, dst, dport) {
            let key = FlowKey {
                addr_lo: *src,
                addr_hi: *dst,
                port_lo: sport,
                port_hi: dport,
                family,
                _pad: 0,
            };
            (key, Side::Lo)
        } else {
            let key = FlowKey {
                addr_lo: *dst,
                addr_hi: *src,
                port_lo: dport,
                port_hi: sport,
                family,
                _pad: 0,
            };
            (key, Side::Hi)
        }
    }

    /// The address and port of the endpoint on `side`.
    pub fn endpoint(&self, side: Side) -> (&AddrWords, u16) {
        match side {
            Side::Lo => (&self.addr_lo, self.port_lo),
            Side::Hi => (&self.addr_hi, self.port_hi),
        }
    }
}

/// [`SideState::flags`]: at least one packet seen from this side.
pub const SIDE_SEEN: u8 = 1 << 0;
/// [`SideState::flags`]: this side sent a SYN.
pub const SIDE_SYN: u8 = 1 << 1;
/// [`SideState::flags`]: this side sent a FIN.
pub const SIDE_FIN: u8 = 1 << 2;
/// [`SideState::flags`]: this side uses the TCP timestamps option.
pub const SIDE_TIMESTAMPS: u8 = 1 << 3;
/// [`SideState::flags`]: this side sent a RST.
pub const SIDE_RST: u8 = 1 << 4;

/// What one endpoint of a flow has sent, as seen by the observer (80 bytes).
///
/// Reset packets do not update the TTL baseline, IP ID or sequence fields: they are the packets
/// under suspicion, and must be judged against what the endpoint sent before them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SideState {
    /// Time of the last packet from this side (ns; see `crate::event::EventHeader::ts_ns`).
    pub last_ns: u64,
    /// TCP payload bytes sent.
    pub bytes: u64,
    /// Packets sent.
    pub packets: u32,
    /// Segments whose payload (or SYN/FIN) lay entirely below `seq_next`: retransmissions.
    pub retransmits: u32,
    /// Highest sequence number sent plus its length (SYN and FIN count one): where this side's
    /// stream is, i.e. the other side's RCV.NXT once everything arrived.
    pub seq_next: u32,
    /// Sequence number of the last packet.
    pub last_seq: u32,
    /// Acknowledgement number of the last packet that had ACK set.
    pub last_ack: u32,
    /// TSval of the last packet that carried timestamps.
    pub ts_val: u32,
    /// TSecr of the last packet that carried timestamps.
    pub ts_ecr: u32,
    /// Number of TTL samples folded into `ttl_min`/`ttl_max`.
    pub ttl_samples: u32,
    /// Payload length of the last packet.
    pub last_len: u16,
    /// IPv4 identification of the last packet (0 for IPv6).
    pub last_ip_id: u16,
    /// Raw (unscaled) window of the last packet.
    pub window: u16,
    /// TCP flags of the last packet, reserved bits included (see `crate::event::TCP_*`).
    pub last_flags: u16,
    /// TTL / hop limit of the last packet.
    pub ttl_last: u8,
    /// Smallest TTL seen.
    pub ttl_min: u8,
    /// Largest TTL seen.
    pub ttl_max: u8,
    /// `SIDE_*` bits.
    pub flags: u8,
    /// Window-scale shift from this side's SYN, or [`WSCALE_UNKNOWN`].
    pub wscale: u8,
    /// How many of this side's latest packets in a row carried the IPv4 ID one above the
    /// packet before (saturating at 255; 0 after any other step): a run of them says its stack
    /// numbers this connection's packets with a counter of its own (Linux keeps one per
    /// connection); random IDs make a run of two once in four billion packets.
    pub ipid_run: u8,
    /// Padding, always zero.
    pub _pad: [u8; 2],
    /// When this side's data segment being timed was seen (0: none being timed).
    pub probe_ns: u64,
    /// Where that segment ends (seq + len): the other side's ACK covering it ends the timing.
    pub probe_end: u32,
    /// Smallest round trip from the observer to this side and back, from data/ACK pairs: the
    /// time from the other side's data to this side's ACK of it, in ns (0: none measured).
    pub leg_min_ns: u32,
}
const _: () = assert!(size_of::<SideState>() == 80);

/// [`SideState::wscale`] when no SYN with a window-scale option was seen.
pub const WSCALE_UNKNOWN: u8 = 0xff;

/// [`FlowState::flags`]: the first packet of the flow was not a SYN (picked up mid-stream).
pub const FLOW_MIDSTREAM: u32 = 1 << 0;
/// [`FlowState::flags`]: a SYN, SYN-ACK and completing ACK were all seen.
pub const FLOW_HANDSHAKE: u32 = 1 << 1;
/// [`FlowState::flags`]: the handshake's times are no measure of the round trip. Either a SYN
/// or SYN-ACK was sent again before the handshake completed, so which copy an answer belongs to
/// is ambiguous (Karn's rule); or a segment carrying data (or a FIN) completed it, so the
/// client's own ACK of the SYN-ACK was lost on the way and the data that stood in for it may
/// itself have been a retransmission, a timeout after the SYN-ACK.
pub const FLOW_HANDSHAKE_UNTIMED: u32 = 1 << 2;

/// Everything the kernel keeps per flow (232 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowState {
    /// Per side, indexed by [`Side::index`].
    pub sides: [SideState; 2],
    /// Time the flow entry was created.
    pub first_ns: u64,
    /// Time of the last SYN (without ACK) before a SYN-ACK, 0 if none.
    pub syn_ns: u64,
    /// Time of the last SYN-ACK before the completing ACK, 0 if none.
    pub synack_ns: u64,
    /// Time of the ACK that completed the handshake, 0 if none.
    pub ack_ns: u64,
    /// Time of the last RST in this flow, 0 if none.
    pub last_rst_ns: u64,
    /// Time of the last sample event of this flow (rate limit).
    pub last_sample_ns: u64,
    /// RSTs seen in this flow.
    pub rst_count: u32,
    /// Packets from each side since the last RST.
    pub after_rst: [u32; 2],
    /// `FLOW_*` bits.
    pub flags: u32,
    /// Side that sent the last RST (valid when `rst_count > 0`).
    pub last_rst_side: u8,
    /// Side that sent the first SYN (valid when `syn_ns != 0`).
    pub syn_side: u8,
    /// Padding, always zero.
    pub _pad: [u8; 6],
}
const _: () = assert!(size_of::<FlowState>() == 232);

impl FlowState {
    /// The state of one side.
    pub fn side(&self, side: Side) -> &SideState {
        &self.sides[side.index()]
    }

    /// Handshake round trip as the observer saw it (SYN to the completing ACK), in ns.
    pub fn handshake_rtt_ns(&self) -> Option<u64> {
        if self.flags & FLOW_HANDSHAKE != 0 && self.ack_ns >= self.syn_ns {
            Some(self.ack_ns - self.syn_ns)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directions_share_one_key_with_opposite_sides() {
        let c = addr_from_ipv4([10, 0, 1, 2]);
        let s = addr_from_ipv4([10, 0, 2, 2]);
        let (k1, s1) = FlowKey::canonical(FAMILY_IPV4, &c, 40000, &s, 80);
        let (k2, s2) = FlowKey::canonical(FAMILY_IPV4, &s, 80, &c, 40000);
        assert_eq!(k1, k2);
        assert_eq!(s1, Side::Lo);
        assert_eq!(s2, Side::Hi);
        assert_eq!(k1.endpoint(Side::Lo), (&c, 40000));
        assert_eq!(k1.endpoint(Side::Hi), (&s, 80));
    }

    #[test]
    fn addresses_compare_as_big_endian_numbers_then_ports() {
        // 10.0.0.255 < 10.0.1.0 even though the last byte is larger.
        assert!(endpoint_is_lower(
            &addr_from_ipv4([10, 0, 0, 255]),
            1,
            &addr_from_ipv4([10, 0, 1, 0]),
            1
        ));
        assert!(!endpoint_is_lower(
            &addr_from_ipv4([10, 0, 1, 0]),
            1,
            &addr_from_ipv4([10, 0, 0, 255]),
            1
        ));
        // Same address: the port decides.
        assert!(endpoint_is_lower(
            &addr_from_ipv4([127, 0, 0, 1]),
            80,
            &addr_from_ipv4([127, 0, 0, 1]),
            81
        ));
        assert!(!endpoint_is_lower(
            &addr_from_ipv4([127, 0, 0, 1]),
            81,
            &addr_from_ipv4([127, 0, 0, 1]),
            80
        ));
        // IPv6: a difference in the last word still counts.
        let mut a = [0u8; 16];
        let mut b = [0u8; 16];
        a[15] = 1;
        b[15] = 2;
        assert!(endpoint_is_lower(
            &addr_from_bytes(&a),
            9,
            &addr_from_bytes(&b),
            1
        ));
        assert_eq!(addr_to_bytes(&addr_from_bytes(&b)), b);
    }

    #[test]
    fn handshake_rtt_needs_a_complete_handshake() {
        let mut f = FlowState {
            syn_ns: 1_000,
            ack_ns: 1_300,
            ..Default::default()
        };
        assert_eq!(f.handshake_rtt_ns(), None);
        f.flags |= FLOW_HANDSHAKE;
        assert_eq!(f.handshake_rtt_ns(), Some(300));
    }
}
