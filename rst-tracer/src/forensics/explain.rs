//! Explanations: the honest mechanisms that make resets, tried before any suspicion.
//!
//! Most resets are honest, and each honest mechanism leaves its own marks in the numbers:
//!
//! - an **abort** (SO_LINGER 0, a close with unread data, a crashed application) is built by the
//!   sender's own socket: its sequence number is the sender's next byte;
//! - a **reply** from a host that has no socket for the segment it received takes its sequence
//!   number from that segment's ACK (RFC 793 "reset generation"), whichever segment it was,
//!   retransmissions included, or acknowledges the segment's end when the segment had no ACK (a
//!   SYN to a closed port). Which situation led to the missing socket names the reply: a refused
//!   connect, a socket closed after its FIN, a challenge ACK answered, a sender that lost the
//!   connection (half-open), a retransmission met by a host that forgot the flow.
//!
//! Each mechanism is a small pure function of a [`Case`] that returns the evidence it rests on, or
//! nothing. The IP ID and window only choose between an abort and a reply where the sequence
//! number fits both; none of them judges a forgery: contradictions (another hop distance, a
//! copied IP ID, the sender still sending) are findings of their own, and the verdict weighs
//! them first.

use rst_tracer_common::{
    event::{IP_V6, TCP_ACK, TCP_FIN, TCP_RESERVED, TCP_SYN},
    flow::SIDE_FIN,
};

use super::{fingerprint, ipid, sequence, Case};
use crate::event::Reset;

/// An honest mechanism that makes resets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// The sender's socket aborted the connection.
    Abort,
    /// A connection attempt (SYN) met no listener.
    Refused,
    /// A host without a socket for the flow answered one of the receiver's segments.
    NoSocket,
    /// The sender had closed its side (FIN); a later segment of the receiver met the closed or
    /// TIME_WAIT socket.
    AfterClose,
    /// The receiver answered an earlier reset of the sender with a challenge ACK (RFC 5961), and
    /// the sender, which has no socket any more, answered that.
    ChallengeAck,
    /// The sender lost the connection (a restart, a crash) while the receiver kept it, and
    /// answered the receiver's next segment after a long silence.
    HalfOpen,
    /// The receiver was retransmitting, and the sender, which no longer has the connection,
    /// answered a retransmission.
    RetransmissionReply,
}

impl Mechanism {
    /// Stable name for output (the JSON `explanation` field).
    pub const fn code(self) -> &'static str {
        match self {
            Mechanism::Abort => "abort",
            Mechanism::Refused => "refused",
            Mechanism::NoSocket => "no_socket",
            Mechanism::AfterClose => "after_close",
            Mechanism::ChallengeAck => "challenge_ack",
            Mechanism::HalfOpen => "half_open",
            Mechanism::RetransmissionReply => "retransmission_reply",
        }
    }
}

/// Why a reset is honest: the mechanism and the evidence it rests on, in numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// The mechanism.
    pub mechanism: Mechanism,
    /// The evidence.
    pub detail: String,
}

/// A sender silent at least this long before answering is taken to have lost the connection.
const HALF_OPEN_SILENCE_NS: u64 = 2_000_000_000;

/// The honest mechanism that explains the reset of `case`, if any: a reply first when the numbers
/// say the reset answers a segment and nothing of the sender's own socket is on it, an abort
/// otherwise.
pub fn explain(case: &Case) -> Option<Explanation> {
    if !stack_shaped(case) {
        return None;
    }
    if let Some(e) = refused(case) {
        return Some(e);
    }
    let abort = abort(case);
    if abort
        .as_ref()
        .is_some_and(|_| carries_the_senders_socket(case.reset))
    {
        return abort;
    }
    reply(case).or(abort)
}

/// The mechanism the kernel's own reason for a reset this host sent names, where it names one
/// (`enum sk_rst_reason`).
pub fn from_kernel_reason(reason: &str) -> Option<Mechanism> {
    Some(match reason {
        // TCP_FLAGS: a listener answering a segment that is not a SYN: no connection here.
        "NO_SOCKET" | "TCP_FLAGS" => Mechanism::NoSocket,
        // Data after the application shut the connection down is answered like a reply.
        "TCP_TIMEWAIT_SOCKET" | "TCP_ABORT_ON_DATA" => Mechanism::AfterClose,
        "TCP_ABORT_ON_CLOSE"
        | "TCP_ABORT_ON_LINGER"
        | "TCP_ABORT_ON_MEMORY"
        | "TCP_STATE"
        | "TCP_DISCONNECT_WITH_DATA"
        | "TCP_KEEPALIVE_TIMEOUT" => Mechanism::Abort,
        _ => return None,
    })
}

/// A reset as stacks build them: no reserved bits, no payload, and a window of 0 (replies) or
/// near the sender's own (aborts).
fn stack_shaped(case: &Case) -> bool {
    let r = case.reset;
    let sender = r.flow.side(r.seen.side);
    // After a zero window, or only a SYN's unscaled one, the stack's next window may be anything.
    let window_ok = r.rst.window == 0
        || (sender.packets > 0
            && (sender.window == 0
                || fingerprint::window_unknown(sender)
                || fingerprint::near(r.rst.window, sender.window)));
    r.rst.flags & TCP_RESERVED == 0 && r.rst.payload_len == 0 && window_ok
}

/// Marks only the sender's own socket puts on a reset: an IP ID continuing its count (not 0), or
/// its own window (over IPv6, which has no IP ID, a window near its own: Linux's abort window
/// drifts from the last one advertised).
fn carries_the_senders_socket(r: &Reset) -> bool {
    let sender = r.flow.side(r.seen.side);
    let ipv4 = r.rst.ip_flags & IP_V6 == 0;
    let own_window = r.rst.window != 0
        && (r.rst.window == sender.window
            || (!ipv4 && fingerprint::near(r.rst.window, sender.window)));
    (ipv4 && r.rst.ip_id != 0 && ipid::continues_sender(r.rst.ip_id, sender)) || own_window
}

/// Whether `r` bears every mark of its sender's own abort: the sender's next byte, and its
/// socket's IP ID count or window.
pub fn is_own_abort(r: &Reset) -> bool {
    let sender = r.flow.side(r.seen.side);
    sender.packets > 0 && r.rst.seq == sender.seq_next && carries_the_senders_socket(r)
}

/// An abort: the reset's sequence number is exactly the sender's next byte.
fn abort(case: &Case) -> Option<Explanation> {
    let r = case.reset;
    let sender = r.flow.side(r.seen.side);
    if sender.packets == 0 || r.rst.seq != sender.seq_next {
        return None;
    }
    let ipv4 = r.rst.ip_flags & IP_V6 == 0;
    let id = if !ipv4 {
        String::new()
    } else if ipid::continues_sender(r.rst.ip_id, sender) {
        format!(", ip id {:#06x} continues its count", r.rst.ip_id)
    } else {
        format!(
            ", ip id {:#06x} after its {:#06x}",
            r.rst.ip_id, sender.last_ip_id
        )
    };
    Some(Explanation {
        mechanism: Mechanism::Abort,
        detail: format!(
            "seq {} is the sender's next byte{id}: its own socket aborted the connection (SO_LINGER 0, a close with unread data, a crashed application)",
            r.rst.seq
        ),
    })
}

/// A refused connect: the reset acknowledges the receiver's SYN (its sequence number + 1) and
/// the sender had said nothing since.
fn refused(case: &Case) -> Option<Explanation> {
    let r = case.reset;
    let receiver = r.flow.side(r.seen.side.other());
    let sender = r.flow.side(r.seen.side);
    let syn = receiver.packets > 0 && receiver.last_flags & (TCP_SYN | TCP_ACK) == TCP_SYN;
    let silent = sender.packets == 0 || sender.last_ns <= receiver.last_ns;
    let acks_it = r.rst.flags & TCP_ACK != 0 && r.rst.ack == sequence::segment_end(receiver);
    (syn && silent && acks_it).then(|| Explanation {
        mechanism: Mechanism::Refused,
        detail: format!(
            "acknowledges the receiver's SYN (ack {} = its seq + 1): nothing listens on port {}, the connect is refused",
            r.rst.ack,
            r.seen.sender().1
        ),
    })
}

/// A reply from a host without a socket for the flow, named by what led to the missing socket.
fn reply(case: &Case) -> Option<Explanation> {
    let how = sequence::answers_receiver(case)?;
    let r = case.reset;
    let sender = r.flow.side(r.seen.side);
    let receiver = r.flow.side(r.seen.side.other());
    let f = &r.flow;
    let pure_ack = receiver.last_len == 0 && receiver.last_flags & (TCP_SYN | TCP_FIN) == 0;
    let silence = receiver.last_ns.saturating_sub(sender.last_ns);
    // A keepalive probe (Linux's): no data, one below the receiver's next, to draw an ACK.
    let probe = receiver.last_len == 0
        && receiver.last_flags & (TCP_SYN | TCP_FIN) == 0
        && receiver.last_seq.wrapping_add(1) == receiver.seq_next;
    // The receiver's pure ACK came after the sender's earlier reset: its answer to it.
    let after_own_reset =
        f.rst_count > 0 && f.last_rst_side == r.seen.side as u8 && receiver.last_ns > f.last_rst_ns;
    let (mechanism, why) = if probe && sender.packets > 0 {
        (
            Mechanism::HalfOpen,
            format!(
                "it answers the receiver's keepalive probe after {:.1} s of the sender's silence: the sender lost the connection (a restart, a crash) while the receiver kept it",
                silence as f64 / 1e9
            ),
        )
    } else if after_own_reset && pure_ack && !probe {
        (
            Mechanism::ChallengeAck,
            "the receiver answered the sender's earlier reset with a challenge ACK (RFC 5961), and the sender, which has no socket any more, answered that".to_string(),
        )
    } else if sender.flags & SIDE_FIN != 0 {
        (
            Mechanism::AfterClose,
            "the sender had closed its side (FIN): the receiver's later segment met a closed or TIME_WAIT socket".to_string(),
        )
    } else if sender.packets > 0 && silence >= HALF_OPEN_SILENCE_NS {
        (
            Mechanism::HalfOpen,
            format!(
                "the sender was silent {:.1} s before: it lost the connection (a restart, a crash) while the receiver kept it",
                silence as f64 / 1e9
            ),
        )
    } else if receiver.retransmits > 0 {
        (
            Mechanism::RetransmissionReply,
            format!(
                "the receiver had retransmitted {} time(s): a host that no longer has the connection answers each retransmission",
                receiver.retransmits
            ),
        )
    } else {
        (
            Mechanism::NoSocket,
            "a host without a socket for this flow answers the segments that reach it".to_string(),
        )
    };
    Some(Explanation {
        mechanism,
        detail: format!("{how}: {why}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forensics::testing::{case, reset, MS, T};
    use rst_tracer_common::event::TCP_RST;

    fn mechanism(r: &crate::event::Reset) -> Option<Mechanism> {
        explain(&case(r)).map(|e| e.mechanism)
    }

    #[test]
    fn an_abort_continues_the_senders_socket() {
        // The fixture: seq 1000 = the client's next byte, ip id 101 after 100.
        let r = reset();
        let e = explain(&case(&r)).expect("explained");
        assert_eq!(e.mechanism, Mechanism::Abort);
        assert!(e.detail.contains("continues its count"), "{}", e.detail);
    }

    #[test]
    fn a_reply_to_the_last_segment_takes_its_ack() {
        // The server's last segment acknowledged 1000; the client's reset (no socket: ip id 0,
        // window 0, no ACK) answers it.
        let mut r = reset();
        r.rst.ip_id = 0;
        r.rst.flags = TCP_RST;
        assert_eq!(mechanism(&r), Some(Mechanism::NoSocket));
    }

    #[test]
    fn a_reply_to_an_older_segment_is_behind_the_latest_ack() {
        // The client had sent up to 1000, the server acknowledged 900 last; a reply to an
        // earlier segment of the server carries 800. The additive judge called this stale.
        let mut r = reset();
        r.flow.sides[1].last_ack = 900;
        r.rst.seq = 800;
        r.rst.ip_id = 0;
        r.rst.flags = TCP_RST;
        r.flow.sides[1].retransmits = 3;
        assert_eq!(mechanism(&r), Some(Mechanism::RetransmissionReply));
        // Ahead of the receiver's ACK, or far behind it, nothing explains it.
        r.rst.seq = 950;
        assert_eq!(mechanism(&r), None);
        // The server's window is 1000 << 7: 128,000 bytes may have been in flight.
        r.rst.seq = 900u32.wrapping_sub(200_000);
        assert_eq!(mechanism(&r), None);
    }

    #[test]
    fn a_refused_connect_acknowledges_the_syn() {
        let mut r = reset();
        r.flow.sides[0] = Default::default();
        let s = &mut r.flow.sides[1];
        s.last_flags = TCP_SYN;
        s.last_seq = 4999;
        s.last_len = 0;
        r.rst.seq = 0;
        r.rst.ack = 5000;
        r.rst.ip_id = 0;
        assert_eq!(mechanism(&r), Some(Mechanism::Refused));
        r.rst.ack = 5001;
        assert_eq!(mechanism(&r), None);
    }

    #[test]
    fn what_led_to_the_missing_socket_names_the_reply() {
        let mut r = reset();
        r.rst.ip_id = 0;
        r.rst.flags = TCP_RST;
        r.flow.sides[0].flags |= SIDE_FIN;
        assert_eq!(mechanism(&r), Some(Mechanism::AfterClose));
        r.flow.sides[0].flags &= !SIDE_FIN;
        // The server kept sending for 5 s after the client's last packet.
        r.flow.sides[1].last_ns = T + 5_000 * MS;
        r.seen.kernel_ts_ns = T + 5_010 * MS;
        assert_eq!(mechanism(&r), Some(Mechanism::HalfOpen));
        r.flow.sides[1].last_ns = T - 10 * MS;
        r.seen.kernel_ts_ns = T;
        r.flow.rst_count = 1;
        r.flow.last_rst_side = 0;
        assert_eq!(mechanism(&r), Some(Mechanism::ChallengeAck));
        // The receiver's last ACK came before that reset: not its answer to it.
        r.flow.last_rst_ns = T - 5 * MS;
        assert_eq!(mechanism(&r), Some(Mechanism::NoSocket));
        // A keepalive probe (one below the receiver's next byte) draws the reply.
        r.flow.rst_count = 0;
        r.flow.sides[1].last_seq = 4999;
        assert_eq!(mechanism(&r), Some(Mechanism::HalfOpen));
    }

    #[test]
    fn an_abort_right_after_the_synack_is_an_abort() {
        // The server's only packet was its SYN-ACK (IP ID 0, window 65,160 unscaled); its
        // socket then aborts with a RST|ACK at its next byte, a fresh IP ID and window 64
        // (scaled, shrunk by the client's unread request). No reply to the client's ACK
        // sets ACK.
        let mut r = reset();
        let c = &mut r.flow.sides[0];
        c.last_flags = TCP_SYN | TCP_ACK;
        c.last_ip_id = 0;
        c.window = 65_160;
        r.rst.ip_id = 19_596;
        r.rst.window = 64;
        assert_eq!(mechanism(&r), Some(Mechanism::Abort));
        let v = crate::forensics::judge(&case(&r));
        assert!(!v.suspicious, "{:?}", v.findings);
    }

    #[test]
    fn device_marks_are_not_a_stacks_reset() {
        let mut r = reset();
        r.rst.window = 16;
        assert_eq!(mechanism(&r), None, "window 16: no stack's");
        let mut r = reset();
        r.rst.flags |= 0x100;
        assert_eq!(mechanism(&r), None, "reserved bits");
        let mut r = reset();
        r.rst.payload_len = 5;
        assert_eq!(mechanism(&r), None, "a payload");
    }

    #[test]
    fn a_reset_at_neither_stream_point_is_unexplained() {
        let mut r = reset();
        r.rst.seq = 1500;
        assert_eq!(mechanism(&r), None);
    }

    #[test]
    fn kernel_reasons_name_mechanisms() {
        assert_eq!(from_kernel_reason("NO_SOCKET"), Some(Mechanism::NoSocket));
        assert_eq!(
            from_kernel_reason("TCP_ABORT_ON_CLOSE"),
            Some(Mechanism::Abort)
        );
        assert_eq!(from_kernel_reason("TCP_STATE"), Some(Mechanism::Abort));
        assert_eq!(
            from_kernel_reason("TCP_TIMEWAIT_SOCKET"),
            Some(Mechanism::AfterClose)
        );
        assert_eq!(from_kernel_reason("TCP_FLAGS"), Some(Mechanism::NoSocket));
        assert_eq!(
            from_kernel_reason("TCP_ABORT_ON_DATA"),
            Some(Mechanism::AfterClose)
        );
        assert_eq!(
            from_kernel_reason("TCP_KEEPALIVE_TIMEOUT"),
            Some(Mechanism::Abort)
        );
        assert_eq!(from_kernel_reason("NOT_SPECIFIED"), None);
    }
}
