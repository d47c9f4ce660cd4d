//! Sequence and acknowledgement numbers. An honest reset carries the sender's next sequence
//! number (an abort) or the acknowledgement of the packet it answers (a reply), and Linux acts on
//! a reset only when its sequence is exactly RCV.NXT (RFC 5961): inside the window it sends a
//! challenge ACK instead, outside it drops the reset.

use crate::forensics::codes;
use rst_tracer_common::{
    event::{TCP_ACK, TCP_FIN, TCP_SYN},
    flow::{SideState, WSCALE_UNKNOWN},
    seq::{seq_diff, seq_len},
};

use super::{timing, Case, Finding, Strength};
use crate::event::Reset;

/// The least span of acknowledgements a reply may answer: one unscaled maximum window.
const MIN_ACK_SPAN: u32 = 65_535;

/// Where the receiver's last segment ends (seq + length, SYN and FIN counting one).
pub fn segment_end(side: &SideState) -> u32 {
    side.last_seq.wrapping_add(seq_len(
        side.last_len,
        side.last_flags & TCP_SYN != 0,
        side.last_flags & TCP_FIN != 0,
    ))
}

/// How far behind the receiver's latest ACK an ACK of one of its recent segments may lie: what
/// the sender may have had in flight, at most the receiver's window (at least 64 KiB).
fn ack_span(receiver: &SideState, sender: &SideState) -> u32 {
    receive_window(receiver, sender).max(MIN_ACK_SPAN)
}

/// The receiver's advertised window in bytes: scaled when both sides' SYNs said how.
fn receive_window(receiver: &SideState, sender: &SideState) -> u32 {
    let shift = if receiver.wscale != WSCALE_UNKNOWN && sender.wscale != WSCALE_UNKNOWN {
        u32::from(receiver.wscale.min(14))
    } else {
        0
    };
    u32::from(receiver.window) << shift
}

/// How the reset's numbers answer one of the receiver's segments, if they do: its sequence
/// number is an ACK the receiver sent (the latest, or an earlier one within what was in flight),
/// or, for a segment without ACK, it acknowledges the segment's end.
pub fn answers_receiver(case: &Case) -> Option<String> {
    let r = case.reset;
    let sender = r.flow.side(r.seen.side);
    let receiver = r.flow.side(r.seen.side.other());
    if receiver.packets == 0 {
        return None;
    }
    if receiver.last_flags & TCP_ACK != 0 {
        // A reply to a segment with an ACK takes that ACK as its sequence number and sets no
        // ACK of its own (RFC 793; Linux, the BSDs and Windows alike).
        if r.rst.flags & TCP_ACK != 0 {
            return None;
        }
        let behind = seq_diff(receiver.last_ack, r.rst.seq);
        if behind == 0 {
            return Some(format!(
                "seq {} is the ACK of the receiver's last segment",
                r.rst.seq
            ));
        }
        // Behind the latest ACK only when that ACK moved while the reply was on its way: the
        // sender's own data, sent within the last round trips, moved it (a stack retransmits
        // with its current ACK, so an old ACK is no retransmission's).
        if behind > 0 && behind as u32 <= ack_span(receiver, sender) && sent_lately(case) {
            return Some(format!(
                "seq {} is {behind} bytes behind the receiver's latest ACK: the ACK of an earlier segment still in flight",
                r.rst.seq
            ));
        }
        return None;
    }
    (r.rst.flags & TCP_ACK != 0 && r.rst.ack == segment_end(receiver)).then(|| {
        format!(
            "ack {} is the end of the receiver's last segment, which had no ACK",
            r.rst.ack
        )
    })
}

/// Whether the claimed sender sent within the last two round trips (or the last second when no
/// round trip is known) before the reset.
fn sent_lately(case: &Case) -> bool {
    let r = case.reset;
    let sender = r.flow.side(r.seen.side);
    let span = timing::leg_rtt_ns(case).map_or(1_000_000_000, |(leg, _)| 2 * leg + 1_000_000);
    sender.packets > 0 && r.seen.kernel_ts_ns.saturating_sub(sender.last_ns) <= span
}

/// What the reset's receiver expects next from its sender (RCV.NXT), as far as the flow state
/// before it tells: the receiver's last ACK, else the end of the sender's last segment.
fn rcv_nxt(r: &Reset) -> Option<u32> {
    let sender = r.flow.side(r.seen.side);
    let receiver = r.flow.side(r.seen.side.other());
    if receiver.packets > 0 && receiver.last_flags & TCP_ACK != 0 {
        Some(receiver.last_ack)
    } else if sender.packets > 0 {
        Some(sender.seq_next)
    } else {
        None
    }
}

/// Whether reset `r` is at exactly RCV.NXT: of several resets reaching a Linux socket, the one
/// it accepts (an in-window other gets a challenge ACK, the rest are dropped).
pub fn is_exact(r: &Reset) -> bool {
    rcv_nxt(r) == Some(r.rst.seq)
}

/// Sequence findings: what a Linux receiver does with the reset, and whether its numbers are
/// where the streams are.
pub fn check(case: &Case) -> Vec<Finding> {
    let r = case.reset;
    let sender = r.flow.side(r.seen.side);
    let receiver = r.flow.side(r.seen.side.other());
    let mut out = Vec::new();
    if let Some(nxt) = rcv_nxt(r) {
        let d = seq_diff(r.rst.seq, nxt);
        let window = i64::from(receive_window(receiver, sender));
        out.push(if d == 0 {
            Finding::new(codes::RFC5961_RESET, Strength::Info, format!("seq = RCV.NXT ({nxt}): a Linux receiver accepts it and the connection ends"))
        } else if d > 0 && (d as i64) < window {
            Finding::new(
                codes::RFC5961_CHALLENGE_ACK,
                Strength::Info,
                format!("seq RCV.NXT+{d}, inside the receive window ({window}): Linux answers with a challenge ACK and the connection survives"),
            )
        } else {
            Finding::new(
                codes::RFC5961_DROP,
                Strength::Info,
                format!("seq RCV.NXT{d:+}, outside the receive window ({window}): Linux drops it; it did not end the connection"),
            )
        });
    }
    // Only with both directions in view: a reply reset takes its sequence from the packet it
    // answers, and from a one-sided view (asymmetric routing, a mid-stream VIP change) that
    // packet was never seen.
    if sender.packets > 0 && receiver.packets > 0 && !case.sent_locally {
        let expect = sender.seq_next;
        let d = seq_diff(r.rst.seq, expect);
        // A reply carries the ACK of whichever of the receiver's segments it answers.
        let answers = answers_receiver(case).is_some();
        if d < 0 && !answers {
            out.push(Finding::new(
                codes::SEQ_STALE,
                Strength::Medium,
                format!("seq {d} behind the sender's stream ({expect}): built from an old packet"),
            ));
        } else if d > 0 && !answers {
            out.push(Finding::new(
                codes::SEQ_AHEAD,
                Strength::Medium,
                format!("seq +{d} ahead of anything the sender sent ({expect})"),
            ));
        }
    }
    if r.rst.flags & TCP_ACK != 0 && receiver.packets > 0 && !case.sent_locally {
        let d = seq_diff(r.rst.ack, receiver.seq_next);
        if d > 0 {
            out.push(Finding::new(
                codes::ACK_AHEAD,
                Strength::Medium,
                format!(
                    "ack {} acknowledges {d} bytes the receiver never sent",
                    r.rst.ack
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forensics::testing::{case, codes, reset};
    use rst_tracer_common::event::TCP_RST;

    #[test]
    fn exact_resets_the_connection() {
        assert_eq!(
            codes(check(&case(&reset()))),
            [("rfc5961_reset", Strength::Info)]
        );
    }

    #[test]
    fn in_window_draws_a_challenge_ack_out_of_window_is_dropped() {
        let mut r = reset();
        r.rst.seq = 1010;
        assert_eq!(
            codes(check(&case(&r))),
            [
                ("rfc5961_challenge_ack", Strength::Info),
                ("seq_ahead", Strength::Medium)
            ]
        );
        r.rst.seq = 1_000_000;
        assert_eq!(codes(check(&case(&r)))[0].0, "rfc5961_drop");
    }

    #[test]
    fn stale_sequence_and_invented_ack() {
        let mut r = reset();
        // Further behind the receiver's ACK than its window (1000 << 7): no segment in flight
        // was acknowledged there.
        r.rst.seq = 1000u32.wrapping_sub(200_000);
        r.rst.ack = 5100;
        let c = codes(check(&case(&r)));
        assert!(c.contains(&("seq_stale", Strength::Medium)), "{c:?}");
        assert!(c.contains(&("ack_ahead", Strength::Medium)), "{c:?}");
    }

    #[test]
    fn a_one_sided_view_does_not_judge_the_sequence() {
        let mut r = reset();
        r.flow.sides[1] = Default::default();
        r.rst.seq = 700;
        assert!(!codes(check(&case(&r)))
            .iter()
            .any(|(c, _)| *c == "seq_stale"));
    }

    #[test]
    fn a_reply_carries_no_ack_and_an_old_ack_needs_recent_data() {
        let mut r = reset();
        r.flow.sides[1].last_ack = 900;
        r.rst.seq = 800;
        r.rst.flags = TCP_RST;
        assert!(answers_receiver(&case(&r)).is_some());
        // RST|ACK: a reply to a segment with an ACK sets none of its own.
        r.rst.flags = TCP_RST | TCP_ACK;
        assert!(answers_receiver(&case(&r)).is_none());
        // The sender silent for long: the receiver's ACK has not moved since any reply left.
        r.rst.flags = TCP_RST;
        r.flow.sides[0].last_ns = 1;
        assert!(answers_receiver(&case(&r)).is_none());
    }

    #[test]
    fn a_reply_to_an_earlier_segment_is_not_stale() {
        let mut r = reset();
        // 300 bytes behind the receiver's latest ACK, within its window: the ACK of an earlier
        // segment, which the sender's own data moved on since (sent 20 ms ago, a round trip 10).
        r.rst.seq = 700;
        r.rst.flags = TCP_RST;
        assert!(!codes(check(&case(&r)))
            .iter()
            .any(|(c, _)| *c == "seq_stale"));
    }

    #[test]
    fn a_reply_reset_takes_the_ack_of_what_it_answers() {
        let mut r = reset();
        // The receiver acknowledged less than the sender sent (data in flight): the reset carries
        // the receiver's ACK, which is honest.
        r.flow.sides[1].last_ack = 900;
        r.rst.seq = 900;
        r.rst.flags = TCP_RST;
        assert_eq!(codes(check(&case(&r))), [("rfc5961_reset", Strength::Info)]);
    }
}
