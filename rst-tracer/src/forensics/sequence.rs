//! Sequence and acknowledgement numbers. An honest reset carries the sender's next sequence
//! number (an abort) or the acknowledgement of the packet it answers (a reply), and Linux acts on
//! a reset only when its sequence is exactly RCV.NXT (RFC 5961): inside the window it sends a
//! challenge ACK instead, outside it drops the reset.

use rst_tracer_common::{event::TCP_ACK, flow::WSCALE_UNKNOWN, seq::seq_diff};

use super::{Case, Finding, Strength};

/// Sequence findings: what a Linux receiver does with the reset, and whether its numbers are
/// where the streams are.
pub fn check(case: &Case) -> Vec<Finding> {
    let r = case.reset;
    let sender = r.flow.side(r.seen.side);
    let receiver = r.flow.side(r.seen.side.other());
    let mut out = Vec::new();
    let receiver_acked = receiver.packets > 0 && receiver.last_flags & TCP_ACK != 0;
    // What the receiver expects next from the sender.
    let rcv_nxt = if receiver_acked {
        Some(receiver.last_ack)
    } else if sender.packets > 0 {
        Some(sender.seq_next)
    } else {
        None
    };
    if let Some(nxt) = rcv_nxt {
        let d = seq_diff(r.rst.seq, nxt);
        let shift = if receiver.wscale != WSCALE_UNKNOWN && sender.wscale != WSCALE_UNKNOWN {
            receiver.wscale.min(14)
        } else {
            0
        };
        let window = (receiver.window as i64) << shift;
        out.push(if d == 0 {
            Finding::new("rfc5961_reset", Strength::Info, format!("seq = RCV.NXT ({nxt}): a Linux receiver accepts it and the connection ends"))
        } else if d > 0 && (d as i64) < window {
            Finding::new(
                "rfc5961_challenge_ack",
                Strength::Info,
                format!("seq RCV.NXT+{d}, inside the receive window ({window}): Linux answers with a challenge ACK and the connection survives"),
            )
        } else {
            Finding::new(
                "rfc5961_drop",
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
        let answers = super::explain::answers_receiver(case).is_some();
        if d < 0 && !answers {
            out.push(Finding::new(
                "seq_stale",
                Strength::Medium,
                format!("seq {d} behind the sender's stream ({expect}): built from an old packet"),
            ));
        } else if d > 0 && !answers {
            out.push(Finding::new(
                "seq_ahead",
                Strength::Medium,
                format!("seq +{d} ahead of anything the sender sent ({expect})"),
            ));
        }
    }
    if r.rst.flags & TCP_ACK != 0 && receiver.packets > 0 && !case.sent_locally {
        let d = seq_diff(r.rst.ack, receiver.seq_next);
        if d > 0 {
            out.push(Finding::new(
                "ack_ahead",
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
    fn a_reply_to_an_earlier_segment_is_not_stale() {
        let mut r = reset();
        // 300 bytes behind the receiver's latest ACK, within its window: the ACK of an earlier
        // segment (a retransmission answered by a host without the socket).
        r.rst.seq = 700;
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
        assert_eq!(codes(check(&case(&r))), [("rfc5961_reset", Strength::Info)]);
    }
}
