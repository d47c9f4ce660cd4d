//! What happened around the reset: the claimed sender still talking after "its" reset (it never
//! sent it), resets toward both ends, the flow going one way (a stateful device dropping it),
//! retransmissions before it (loss, a black hole), and resets of flows this host never saw start.

use crate::forensics::codes;
use rst_tracer_common::{
    event::{IP_V6, TCP_ACK, TCP_RST, TCP_SYN},
    flow::{FLOW_HANDSHAKE, FLOW_MIDSTREAM},
};

use super::{explain, Case, Finding, Strength};
use crate::flows::Neighbour;

/// Resets toward both ends of a flow this close together (ns) are one injector's work.
const BOTH_ENDS_NS: u64 = 10_000_000;

/// Whether a packet passed between this reset and `other` (a reset toward the other end) that
/// the later of the two could be answering: then it is a reply, not the second half of a pair.
fn answered_between(case: &Case, other: &Neighbour) -> bool {
    let r = case.reset;
    let (t, u) = (r.seen.kernel_ts_ns, other.seen.kernel_ts_ns);
    if u <= t {
        // `other` came first: did this reset's receiver send anything after it?
        r.flow.side(r.seen.side.other()).last_ns > u
    } else {
        // This one came first: did this reset's sender send anything before `other`?
        case.after
            .iter()
            .any(|a| a.seen.side == r.seen.side && a.seen.kernel_ts_ns < u)
    }
}

/// Findings from the packets and resets around this one.
pub fn check(case: &Case) -> Vec<Finding> {
    let r = case.reset;
    let side = r.seen.side;
    let mut out = Vec::new();
    let ms = |ns: u64| ns as f64 / 1e6;

    // The claimed sender still sending something new after its own reset. Not new: a later
    // copy of its last packet (a capture duplicate), its answer to a new connection the
    // receiver opened on the same ports, or a new connection it opens itself on them (an
    // abort leaves no TIME_WAIT, so its port can come round again at once).
    let reopened = case
        .after
        .iter()
        .any(|a| a.seen.side != side && a.packet.flags & (TCP_SYN | TCP_ACK) == TCP_SYN);
    let continues = case.after.iter().find(|a| {
        let p = &a.packet;
        let s = &a.sender;
        let from_sender = a.seen.side == side && p.flags & TCP_RST == 0;
        let copy = p.ip_flags & IP_V6 == 0
            && p.ip_id == s.last_ip_id
            && p.seq == s.last_seq
            && p.payload_len == s.last_len
            && p.flags == s.last_flags;
        let answers_reopen = reopened && p.flags & TCP_SYN != 0;
        let opens_anew = p.flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
        from_sender && !copy && !answers_reopen && !opens_anew
    });
    if let Some(a) = continues {
        out.push(Finding::new(
            codes::SENDER_CONTINUES,
            Strength::Strong,
            format!(
                "the claimed sender sent {} {} B (ttl {}) {:.3} ms after its own reset: it never sent the reset",
                crate::wire::FlagNames(a.packet.flags),
                a.packet.payload_len,
                a.packet.ttl,
                ms(a.seen.kernel_ts_ns.saturating_sub(r.seen.kernel_ts_ns))
            ),
        ));
    }

    let toward_other_end: Vec<&Neighbour> = case
        .neighbours
        .iter()
        .filter(|n| n.seen.side != side)
        .collect();
    let t = r.seen.kernel_ts_ns;
    if let Some(closest) = toward_other_end
        .iter()
        .map(|n| n.seen.kernel_ts_ns.abs_diff(t))
        .min()
    {
        // No stack answers a reset with a reset, and two ends rarely abort in the same
        // moment: resets both ways within milliseconds, with nothing between them that one
        // could answer, are an injector resetting both ends.
        // Two aborts that each bear their own socket's marks are both ends closing at once.
        // A reset seen leaving this host is this host's (its stack's, or a tool's on it), never
        // an on-path injector's, so a pair with one is no pair of resets neither end sent; and
        // the other may answer a packet that took a path around this observer (a flow
        // mis-routed here mid-stream, its other half still going elsewhere).
        let own = explain::is_own_abort(r);
        let at_once = !super::left_this_host(r, case.sent_locally)
            && toward_other_end
                .iter()
                .filter(|n| !n.left_this_host)
                .any(|n| {
                    n.seen.kernel_ts_ns.abs_diff(t) <= BOTH_ENDS_NS
                        && !answered_between(case, n)
                        && !(own && n.own_abort)
                });
        let (strength, what) = if at_once {
            (Strength::Strong, "an injector resets both ends at once")
        } else {
            (Strength::Info, "each end reset the other")
        };
        out.push(Finding::new(
            codes::BOTH_DIRECTIONS,
            strength,
            format!(
                "{} reset(s) toward the other end of the flow, the closest {:.3} ms from this one: {what}",
                toward_other_end.len(),
                ms(closest)
            ),
        ));
    }
    let same_side = case
        .neighbours
        .iter()
        .filter(|n| n.seen.side == side)
        .count();
    if same_side >= 2 {
        let mut seqs: Vec<u32> = case
            .neighbours
            .iter()
            .filter(|n| n.seen.side == side)
            .map(|n| n.rst.seq)
            .collect();
        seqs.push(r.rst.seq);
        seqs.sort_unstable();
        seqs.dedup();
        let shifting = if seqs.len() > 1 {
            format!(
                " with {} different sequence numbers (a device guessing where the stream is)",
                seqs.len()
            )
        } else {
            " at one sequence number".to_string()
        };
        out.push(Finding::new(
            codes::RST_BURST,
            Strength::Info,
            format!(
                "{} resets from the same side within the settle window{shifting}",
                same_side + 1
            ),
        ));
    }

    let [lo, hi] = case.retransmits_after;
    let (mine, theirs) = if side.index() == 0 {
        (lo, hi)
    } else {
        (hi, lo)
    };
    let answered = |s| case.after.iter().any(|a| a.seen.side == s);
    if theirs > 0 && !answered(side) && mine == 0 {
        out.push(Finding::new(
            codes::ONEWAY_AFTER,
            Strength::Info,
            format!("after the reset only the receiver kept sending ({theirs} retransmissions, no answer): a stateful device dropped the session"),
        ));
    }

    let sender = r.flow.side(side);
    let receiver = r.flow.side(side.other());
    let before = sender.retransmits + receiver.retransmits;
    if before > 0 {
        out.push(Finding::new(
            codes::RETRANSMISSIONS_BEFORE,
            Strength::Info,
            format!(
                "{before} retransmissions before the reset ({} from the sender, {} from the receiver): loss or a black hole on the path",
                sender.retransmits, receiver.retransmits
            ),
        ));
    }

    if r.flow.flags & FLOW_MIDSTREAM != 0 && case.sent_locally {
        out.push(Finding::new(
            codes::MIDSTREAM_RESET,
            Strength::Info,
            "this host reset a flow it never saw start: a segment for a connection it does not have (ECMP/VIP mis-routing, or a restarted service)",
        ));
    } else if r.flow.flags & FLOW_HANDSHAKE == 0 && sender.packets + receiver.packets > 0 {
        out.push(Finding::new(
            codes::NO_HANDSHAKE,
            Strength::Info,
            "the flow's handshake was not seen",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forensics::{
        neighbour,
        testing::{after, case, reset, MS, T},
    };
    use rst_tracer_common::{
        event::{Hook, PacketInfo, TCP_ACK},
        flow::Side,
    };

    #[test]
    fn sender_continuing_is_strong_but_a_copy_of_an_old_packet_is_not() {
        let r = reset();
        let new = after(
            Side::Lo,
            2,
            PacketInfo {
                seq: 1000,
                flags: TCP_ACK,
                ip_id: 102,
                ttl: 62,
                payload_len: 5,
                ..Default::default()
            },
        );
        let c = Case {
            after: std::slice::from_ref(&new),
            ..case(&r)
        };
        assert!(check(&c)
            .iter()
            .any(|f| f.code == "sender_continues" && f.strength == Strength::Strong));
        let mut copy = after(
            Side::Lo,
            1,
            PacketInfo {
                seq: 990,
                flags: TCP_ACK,
                ip_id: 100,
                ttl: 61,
                ..Default::default()
            },
        );
        copy.sender.last_ip_id = 100;
        copy.sender.last_seq = 990;
        copy.sender.last_flags = TCP_ACK;
        let c = Case {
            after: std::slice::from_ref(&copy),
            ..c
        };
        assert!(!check(&c).iter().any(|f| f.code == "sender_continues"));
        // The receiver answering is not the sender continuing.
        let answer = after(
            Side::Hi,
            1,
            PacketInfo {
                seq: 5000,
                flags: TCP_ACK,
                ..Default::default()
            },
        );
        let c = Case {
            after: std::slice::from_ref(&answer),
            ..c
        };
        assert!(!check(&c).iter().any(|f| f.code == "sender_continues"));
    }

    #[test]
    fn a_constant_ip_id_stack_sending_data_is_not_a_copy() {
        let r = reset();
        let mut data = after(
            Side::Lo,
            40,
            PacketInfo {
                seq: 990,
                flags: TCP_ACK,
                ip_id: 1,
                payload_len: 132,
                ..Default::default()
            },
        );
        data.sender.last_ip_id = 1;
        data.sender.last_seq = 990;
        data.sender.last_flags = TCP_ACK;
        let c = Case {
            after: std::slice::from_ref(&data),
            ..case(&r)
        };
        assert!(check(&c).iter().any(|f| f.code == "sender_continues"));
    }

    #[test]
    fn answering_a_new_connection_on_the_same_ports_is_not_continuing() {
        let r = reset();
        let syn = after(
            Side::Hi,
            400,
            PacketInfo {
                flags: TCP_SYN,
                ..Default::default()
            },
        );
        let synack = after(
            Side::Lo,
            500,
            PacketInfo {
                flags: TCP_SYN | TCP_ACK,
                ..Default::default()
            },
        );
        let both = [syn, synack];
        let c = Case {
            after: &both,
            ..case(&r)
        };
        assert!(!check(&c).iter().any(|f| f.code == "sender_continues"));
    }

    /// Seen in the lab's benign load: a client aborted, and 38 ms later its next connection got
    /// the same ephemeral port, so its SYN was the first packet of "the flow" after the reset.
    #[test]
    fn the_sender_opening_a_new_connection_on_the_same_ports_is_not_continuing() {
        let r = reset();
        let syn = after(
            Side::Lo,
            38,
            PacketInfo {
                seq: 77,
                flags: TCP_SYN,
                ip_id: 101,
                ttl: 62,
                ..Default::default()
            },
        );
        let c = Case {
            after: std::slice::from_ref(&syn),
            ..case(&r)
        };
        assert!(!check(&c).iter().any(|f| f.code == "sender_continues"));
        // Data from it is still continuing.
        let data = after(
            Side::Lo,
            38,
            PacketInfo {
                seq: 1000,
                flags: TCP_ACK,
                payload_len: 10,
                ..Default::default()
            },
        );
        let c = Case {
            after: std::slice::from_ref(&data),
            ..case(&r)
        };
        assert!(check(&c).iter().any(|f| f.code == "sender_continues"));
    }

    #[test]
    fn a_burst_says_whether_its_sequence_numbers_shift() {
        let r = reset();
        let mut a = reset();
        a.rst.seq = 2000;
        let mut b = reset();
        b.rst.seq = 3000;
        let n = [neighbour(&a, false), neighbour(&b, false)];
        let c = Case {
            neighbours: &n,
            ..case(&r)
        };
        let f = check(&c)
            .into_iter()
            .find(|f| f.code == "rst_burst")
            .expect("a burst");
        assert!(
            f.detail.contains("3 different sequence numbers"),
            "{}",
            f.detail
        );
    }

    #[test]
    fn resets_both_ways_at_once_are_an_injectors_unless_both_are_their_stacks_aborts() {
        // The fixture's reset is the client's own abort (next byte, IP ID 101 after 100).
        let r = reset();
        let mut other = reset();
        other.seen.side = Side::Hi;
        other.seen.kernel_ts_ns = T + MS / 10;
        other.rst.seq = 5000;
        other.rst.ip_id = 8; // the server's count: 7 before
        let pair = [neighbour(&other, false)];
        let strength = |c: &Case| {
            check(c)
                .into_iter()
                .find(|f| f.code == "both_directions")
                .map(|f| f.strength)
        };
        let c = Case {
            neighbours: &pair,
            ..case(&r)
        };
        assert_eq!(strength(&c), Some(Strength::Info), "both ends aborted");
        // The other carries an ID of no counter: an injector's pair.
        let mut forged = other.clone();
        forged.rst.ip_id = 0x3412;
        let pair = [neighbour(&forged, false)];
        let c = Case {
            neighbours: &pair,
            ..case(&r)
        };
        assert_eq!(strength(&c), Some(Strength::Strong));
        // Judged sent by this host, but in replay (inferred from addresses and TTLs, which an
        // IPS answering on a span port copies): still an injector's pair.
        let pair = [neighbour(&forged, true)];
        let c = Case {
            neighbours: &pair,
            ..case(&r)
        };
        assert_eq!(strength(&c), Some(Strength::Strong), "inferred, not seen");
        let c = Case {
            neighbours: &pair,
            sent_locally: true,
            ..case(&r)
        };
        assert_eq!(strength(&c), Some(Strength::Strong), "inferred, not seen");
        // The same pair where this host was seen sending the other (its stack's answer to a
        // segment of a flow routed here mid-stream) or this one: each end reset the other.
        let mut sent = forged.clone();
        sent.seen.hook = Hook::TcEgress;
        let pair = [neighbour(&sent, true)];
        let c = Case {
            neighbours: &pair,
            ..case(&r)
        };
        assert_eq!(
            strength(&c),
            Some(Strength::Info),
            "the other left this host"
        );
        let mut mine = r.clone();
        mine.seen.hook = Hook::TcEgress;
        let pair = [neighbour(&forged, false)];
        let c = Case {
            neighbours: &pair,
            sent_locally: true,
            ..case(&mine)
        };
        assert_eq!(
            strength(&c),
            Some(Strength::Info),
            "this one left this host"
        );
        // Arriving (ingress) with this host's address: a decoy, not this host's.
        let mut decoy = forged.clone();
        decoy.seen.hook = Hook::TcIngress;
        let pair = [neighbour(&decoy, true)];
        let c = Case {
            neighbours: &pair,
            ..case(&r)
        };
        assert_eq!(strength(&c), Some(Strength::Strong), "a decoy");
    }

    #[test]
    fn one_way_after_the_reset() {
        let r = reset();
        let c = Case {
            retransmits_after: [0, 3],
            ..case(&r)
        };
        assert!(check(&c).iter().any(|f| f.code == "oneway_after"));
    }

    #[test]
    fn midstream_local_reset_points_at_routing() {
        let mut r = reset();
        r.flow.flags = FLOW_MIDSTREAM;
        let c = Case {
            sent_locally: true,
            ..case(&r)
        };
        assert!(check(&c).iter().any(|f| f.code == "midstream_reset"));
    }
}
