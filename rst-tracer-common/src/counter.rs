//! Per-CPU counters the kernel program keeps: one `u64` slot per [`Counter`].
//!
//! Nothing is printed from the kernel; every packet that is not fully understood and every event
//! that could not be written is counted here, and userspace shows the counters to the user.
//! The README lists every counter by its name in slot order, with what it counts; a unit test of
//! the userspace crate (`counters::tests`) fails when the list and [`Counter::ALL`] differ.

/// Index into the counters map. The discriminants are the wire contract: append, never reorder.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Every packet a hook saw.
    Packets = 0,
    /// Frames whose ethertype is neither IPv4 nor IPv6 (ARP, LLDP, 802.2 LLC, PPP control, ...).
    OtherEthertype = 1,
    /// IP packets that do not carry TCP.
    NonTcp = 2,
    /// TCP segments parsed completely.
    Tcp = 3,
    /// TCP segments with RST set.
    Rst = 4,
    /// Frame shorter than an Ethernet header.
    ErrEthTruncated = 5,
    /// VLAN tag cut short.
    ErrVlanTruncated = 6,
    /// More than two VLAN tags.
    ErrVlanTooDeep = 7,
    /// IPv4 header cut short (fixed part or options).
    ErrIpv4Truncated = 8,
    /// IPv4 header length (IHL) below 5 or version not 4.
    ErrIpv4BadHeader = 9,
    /// IP length field smaller than the headers it must hold (IPv4 total length, IPv6 payload length).
    ErrIpBadLength = 10,
    /// IPv4 fragments other than the first: counted and skipped.
    Ipv4Fragment = 11,
    /// IPv6 fixed header cut short, or version not 6.
    ErrIpv6Truncated = 12,
    /// IPv6 extension header cut short.
    ErrIpv6ExtTruncated = 13,
    /// More IPv6 extension headers than the parser follows.
    ErrIpv6TooManyExt = 14,
    /// IPv6 fragments other than the first: counted and skipped.
    Ipv6Fragment = 15,
    /// TCP header cut short (fixed part or options).
    ErrTcpTruncated = 16,
    /// TCP data offset below 5, or larger than the IP payload.
    ErrTcpBadOffset = 17,
    /// New flows inserted into the flow table.
    FlowInserts = 18,
    /// Flow insertions refused: almost always another CPU inserted the same flow first (its
    /// entry is then used).
    FlowInsertFailed = 19,
    /// Reset events written to the reset ring.
    RstWritten = 20,
    /// Reset events lost because the reset ring was full.
    RstDropped = 21,
    /// After-reset events written.
    AfterRstWritten = 22,
    /// After-reset events lost (ring full).
    AfterRstDropped = 23,
    /// Retransmission samples written.
    RetransmitWritten = 24,
    /// Retransmission samples lost (ring full).
    RetransmitDropped = 25,
    /// TTL-change samples written.
    TtlChangeWritten = 26,
    /// TTL-change samples lost (ring full).
    TtlChangeDropped = 27,
    /// Samples not written because the flow had one too recently (rate limit, not a loss).
    SamplesRateLimited = 28,
    /// Frames that carried replay metadata (capture timestamps).
    ReplayFrames = 29,
    /// PPPoE session header cut short.
    ErrPppoeTruncated = 30,
    /// Kernel-note events (tracepoints) written: sent and accepted resets to the reset ring,
    /// retransmissions to the sample ring (see `event::EventKind::ring`).
    NotesWritten = 31,
    /// Kernel-note events lost (ring full).
    NotesDropped = 32,
    /// Retransmissions the kernel noted, folded into a flow side's next retransmission or reset event
    /// instead of an event of their own (rate limit, not a loss: the count travels on).
    RetransmitsFolded = 33,
    /// Flows entered into the dropped-reset tally (`RST_DROPPED`): the first reset of the flow
    /// dropped on a full ring while the tally did not hold it.
    RstDroppedFlows = 34,
}

impl Counter {
    /// Number of counter slots (the map's size).
    pub const COUNT: u32 = 35;

    /// Every counter in index order.
    pub const ALL: [Counter; Self::COUNT as usize] = [
        Counter::Packets,
        Counter::OtherEthertype,
        Counter::NonTcp,
        Counter::Tcp,
        Counter::Rst,
        Counter::ErrEthTruncated,
        Counter::ErrVlanTruncated,
        Counter::ErrVlanTooDeep,
        Counter::ErrIpv4Truncated,
        Counter::ErrIpv4BadHeader,
        Counter::ErrIpBadLength,
        Counter::Ipv4Fragment,
        Counter::ErrIpv6Truncated,
        Counter::ErrIpv6ExtTruncated,
        Counter::ErrIpv6TooManyExt,
        Counter::Ipv6Fragment,
        Counter::ErrTcpTruncated,
        Counter::ErrTcpBadOffset,
        Counter::FlowInserts,
        Counter::FlowInsertFailed,
        Counter::RstWritten,
        Counter::RstDropped,
        Counter::AfterRstWritten,
        Counter::AfterRstDropped,
        Counter::RetransmitWritten,
        Counter::RetransmitDropped,
        Counter::TtlChangeWritten,
        Counter::TtlChangeDropped,
        Counter::SamplesRateLimited,
        Counter::ReplayFrames,
        Counter::ErrPppoeTruncated,
        Counter::NotesWritten,
        Counter::NotesDropped,
        Counter::RetransmitsFolded,
        Counter::RstDroppedFlows,
    ];

    /// Stable snake_case name, used in text and JSON output.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Packets => "packets",
            Counter::OtherEthertype => "other_ethertype",
            Counter::NonTcp => "non_tcp",
            Counter::Tcp => "tcp",
            Counter::Rst => "rst",
            Counter::ErrEthTruncated => "err_eth_truncated",
            Counter::ErrVlanTruncated => "err_vlan_truncated",
            Counter::ErrVlanTooDeep => "err_vlan_too_deep",
            Counter::ErrIpv4Truncated => "err_ipv4_truncated",
            Counter::ErrIpv4BadHeader => "err_ipv4_bad_header",
            Counter::ErrIpBadLength => "err_ip_bad_length",
            Counter::Ipv4Fragment => "ipv4_fragment",
            Counter::ErrIpv6Truncated => "err_ipv6_truncated",
            Counter::ErrIpv6ExtTruncated => "err_ipv6_ext_truncated",
            Counter::ErrIpv6TooManyExt => "err_ipv6_too_many_ext",
            Counter::Ipv6Fragment => "ipv6_fragment",
            Counter::ErrTcpTruncated => "err_tcp_truncated",
            Counter::ErrTcpBadOffset => "err_tcp_bad_offset",
            Counter::FlowInserts => "flow_inserts",
            Counter::FlowInsertFailed => "flow_insert_failed",
            Counter::RstWritten => "rst_written",
            Counter::RstDropped => "rst_dropped",
            Counter::AfterRstWritten => "after_rst_written",
            Counter::AfterRstDropped => "after_rst_dropped",
            Counter::RetransmitWritten => "retransmit_written",
            Counter::RetransmitDropped => "retransmit_dropped",
            Counter::TtlChangeWritten => "ttl_change_written",
            Counter::TtlChangeDropped => "ttl_change_dropped",
            Counter::SamplesRateLimited => "samples_rate_limited",
            Counter::ReplayFrames => "replay_frames",
            Counter::ErrPppoeTruncated => "err_pppoe_truncated",
            Counter::NotesWritten => "stack_written",
            Counter::NotesDropped => "stack_dropped",
            Counter::RetransmitsFolded => "stack_retransmits_folded",
            Counter::RstDroppedFlows => "rst_dropped_flows",
        }
    }

    /// True for counters of malformed input (the `err_*` family).
    pub const fn is_parse_error(self) -> bool {
        matches!(
            self,
            Counter::ErrEthTruncated
                | Counter::ErrVlanTruncated
                | Counter::ErrVlanTooDeep
                | Counter::ErrPppoeTruncated
                | Counter::ErrIpv4Truncated
                | Counter::ErrIpv4BadHeader
                | Counter::ErrIpBadLength
                | Counter::ErrIpv6Truncated
                | Counter::ErrIpv6ExtTruncated
                | Counter::ErrIpv6TooManyExt
                | Counter::ErrTcpTruncated
                | Counter::ErrTcpBadOffset
        )
    }

    /// True for counters of events lost to a full ring.
    pub const fn is_drop(self) -> bool {
        matches!(
            self,
            Counter::RstDropped
                | Counter::AfterRstDropped
                | Counter::RetransmitDropped
                | Counter::TtlChangeDropped
                | Counter::NotesDropped
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order_and_names_are_unique() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as u32, i as u32, "{c:?} out of place");
            for other in &Counter::ALL[..i] {
                assert_ne!(c.name(), other.name());
            }
        }
    }
}
