//! Timing: a reset that acknowledges the packet it answers cannot reach the observer sooner than
//! the observer-to-sender round trip after that packet. The handshake gives that round trip per
//! side: SYN-ACK to ACK for the client, SYN to SYN-ACK for the server.

use crate::forensics::codes;
use rst_tracer_common::{
    event::{TCP_ACK, TCP_FIN, TCP_SYN},
    flow::{Side, FLOW_HANDSHAKE_UNTIMED},
};

use super::{Case, Finding, Strength};

/// How much shorter than the round trip a reset's delay must be to count as too fast (ns).
const TIMING_MARGIN_NS: u64 = 1_000_000;

/// Round trip from the observer to the claimed sender and back (ns), and where it comes from: the
/// shortest clean sample. The handshake gives one (SYN-ACK to ACK for the client, SYN to
/// SYN-ACK for the server) unless a SYN or SYN-ACK was retransmitted (Karn's rule: the answer
/// may belong to the first copy, and a lost SYN makes a one-second "round trip") or data
/// completed it in place of the lost ACK (a retransmission timeout may lie in it); the kernel
/// times data/ACK pairs too, never retransmitted segments. The smaller wins: loss only ever
/// makes a round trip look longer.
pub fn leg_rtt_ns(case: &Case) -> Option<(u64, &'static str)> {
    let f = &case.reset.flow;
    let clean = f.flags & FLOW_HANDSHAKE_UNTIMED == 0;
    let handshake = (clean && f.syn_ns != 0 && f.synack_ns > f.syn_ns && f.ack_ns > f.synack_ns)
        .then(|| {
            let client = Side::from_u8(f.syn_side);
            if case.reset.seen.side == client {
                f.ack_ns - f.synack_ns
            } else {
                f.synack_ns - f.syn_ns
            }
        });
    let measured = u64::from(f.side(case.reset.seen.side).leg_min_ns);
    match handshake {
        Some(leg) if measured == 0 || leg <= measured => Some((leg, "handshake")),
        _ => (measured > 0).then_some((measured, "data/ACK pairs")),
    }
}

/// Whether the reset came too soon after the claimed sender's own last data to be a reply to
/// anything the receiver sent after that data: the receiver's answer would still have been on
/// its way to the sender (a round trip, less the margin). Then only the sender's own abort can
/// explain it.
pub fn too_soon_for_a_reply(case: &Case) -> bool {
    let r = case.reset;
    let sender = r.flow.side(r.seen.side);
    let Some((leg, _)) = leg_rtt_ns(case) else {
        return false;
    };
    let data = sender.last_len > 0 || sender.last_flags & TCP_FIN != 0;
    let elapsed = r.seen.kernel_ts_ns.saturating_sub(sender.last_ns);
    sender.packets > 0 && data && r.rst.seq == sender.seq_next && elapsed + TIMING_MARGIN_NS < leg
}

/// Timing findings.
pub fn check(case: &Case) -> Vec<Finding> {
    let r = case.reset;
    let receiver = r.flow.side(r.seen.side.other());
    if case.sent_locally || receiver.packets == 0 || r.rst.flags & TCP_ACK == 0 {
        return Vec::new();
    }
    let Some((leg, source)) = leg_rtt_ns(case) else {
        return Vec::new();
    };
    // Only a reset that acknowledges a packet that moved the receiver's stream (data, SYN or
    // FIN) proves it was sent after that packet arrived; acknowledging a pure ACK proves nothing.
    let moved = receiver.last_len > 0 || receiver.last_flags & (TCP_SYN | TCP_FIN) != 0;
    if r.rst.ack != receiver.seq_next || !moved {
        return Vec::new();
    }
    // A flow seen at two points of the capture path (every packet twice, TTLs one apart) has
    // times between copies, not between packets.
    let sender = r.flow.side(r.seen.side);
    if sender.ttl_min != sender.ttl_max || receiver.ttl_min != receiver.ttl_max {
        return Vec::new();
    }
    let elapsed = r.seen.kernel_ts_ns.saturating_sub(receiver.last_ns);
    let ms = |ns: u64| ns as f64 / 1e6;
    // Below a millisecond of margin, scheduling and queueing jitter decide, not distance.
    if elapsed * 2 + TIMING_MARGIN_NS < leg {
        vec![Finding::new(
            codes::TOO_FAST,
            Strength::Strong,
            format!(
                "arrived {:.3} ms after the packet it acknowledges, but the sender is {:.3} ms away (round trip, from the {source}): sent from near the observer",
                ms(elapsed),
                ms(leg)
            ),
        )]
    } else {
        vec![Finding::new(
            codes::TIMING_PLAUSIBLE,
            Strength::Info,
            format!(
                "{:.3} ms after the packet it acknowledges; the sender's round trip is {:.3} ms (from the {source})",
                ms(elapsed),
                ms(leg)
            ),
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forensics::testing::{case, codes, reset, MS, T};

    #[test]
    fn faster_than_the_round_trip_is_strong() {
        let mut r = reset();
        // The client is 10 ms away (SYN-ACK at T-90, ACK at T-80); the RST comes 1 ms after the
        // server's packet.
        r.flow.sides[1].last_ns = T - MS;
        r.flow.sides[1].last_len = 100;
        assert_eq!(codes(check(&case(&r))), [("too_fast", Strength::Strong)]);
        r.flow.sides[1].last_ns = T - 10 * MS;
        assert_eq!(
            codes(check(&case(&r))),
            [("timing_plausible", Strength::Info)]
        );
    }

    #[test]
    fn acknowledging_a_pure_ack_or_a_doubled_capture_proves_nothing() {
        let mut r = reset();
        r.flow.sides[1].last_ns = T - MS;
        r.flow.sides[1].last_len = 100;
        assert_eq!(codes(check(&case(&r))), [("too_fast", Strength::Strong)]);
        r.flow.sides[1].ttl_min = 63;
        assert!(
            codes(check(&case(&r))).is_empty(),
            "TTLs one apart: every packet captured twice"
        );
        r.flow.sides[1].ttl_min = 64;
        r.flow.sides[1].last_len = 0;
        assert!(codes(check(&case(&r))).is_empty(), "a pure ACK");
    }

    #[test]
    fn without_a_handshake_the_data_ack_round_trip_serves() {
        let mut r = reset();
        r.flow.syn_ns = 0;
        r.flow.flags = 0;
        r.flow.sides[1].last_ns = T - MS;
        r.flow.sides[1].last_len = 100;
        assert!(codes(check(&case(&r))).is_empty(), "no round trip known");
        r.flow.sides[0].leg_min_ns = (10 * MS) as u32;
        let f = check(&case(&r));
        assert_eq!(f[0].code, "too_fast");
        assert!(
            f[0].detail.contains("from the data/ACK pairs"),
            "{}",
            f[0].detail
        );
    }

    #[test]
    fn a_retransmitted_syn_makes_the_handshake_no_measure() {
        // A lost SYN: the handshake "round trip" is a second, and an honest reply looks fast.
        let mut r = reset();
        r.flow.syn_ns = T - 900 * MS;
        r.flow.synack_ns = T - 100 * MS;
        r.flow.ack_ns = T - 90 * MS;
        r.seen.side = Side::Hi;
        r.flow.sides[0].last_ns = T - 50 * MS;
        r.flow.sides[0].last_len = 100;
        r.flow.sides[0].seq_next = 1000;
        r.rst.ack = 1000;
        assert_eq!(codes(check(&case(&r))), [("too_fast", Strength::Strong)]);
        r.flow.flags |= FLOW_HANDSHAKE_UNTIMED;
        assert!(codes(check(&case(&r))).is_empty(), "no clean sample");
        // A clean data/ACK sample still serves.
        r.flow.sides[1].leg_min_ns = (200 * MS) as u32;
        assert_eq!(codes(check(&case(&r))), [("too_fast", Strength::Strong)]);
        r.flow.sides[1].leg_min_ns = (20 * MS) as u32;
        assert_eq!(
            codes(check(&case(&r))),
            [("timing_plausible", Strength::Info)]
        );
    }

    #[test]
    fn a_reset_right_after_the_senders_data_is_no_reply() {
        // The client's data (seq_next 1000) 2 ms before its "reset"; the client is 10 ms away.
        let mut r = reset();
        r.flow.sides[0].last_ns = T - 2 * MS;
        r.flow.sides[0].last_len = 100;
        assert!(too_soon_for_a_reply(&case(&r)));
        r.flow.sides[0].last_ns = T - 12 * MS;
        assert!(!too_soon_for_a_reply(&case(&r)), "a round trip later");
        r.flow.sides[0].last_ns = T - 2 * MS;
        r.flow.sides[0].last_len = 0;
        assert!(!too_soon_for_a_reply(&case(&r)), "a pure ACK moves nothing");
    }

    #[test]
    fn the_shorter_clean_sample_wins() {
        let mut r = reset();
        r.flow.sides[0].leg_min_ns = (4 * MS) as u32;
        assert_eq!(leg_rtt_ns(&case(&r)), Some((4 * MS, "data/ACK pairs")));
        r.flow.sides[0].leg_min_ns = (40 * MS) as u32;
        assert_eq!(leg_rtt_ns(&case(&r)), Some((10 * MS, "handshake")));
    }

    #[test]
    fn a_reset_that_did_not_see_the_last_packet_proves_nothing() {
        let mut r = reset();
        r.flow.sides[1].last_ns = T - MS;
        r.flow.sides[1].last_len = 100;
        r.rst.ack = 4000;
        assert!(codes(check(&case(&r))).is_empty());
    }
}
