//! Findings from the kernel notes: what this host's own TCP stack said about the flow (whether it
//! accepted the reset, what it retransmitted before it). Empty without the tracepoints.

use crate::forensics::codes;
use rst_tracer_common::{event::TCP_SYN, flow::FLOW_MIDSTREAM};

use super::{Case, Finding, Strength};

/// What this host's stack said about a reset's flow (tracepoints), where it could know.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelFacts {
    /// Why this host sent the reset, in the kernel's words (`NO_SOCKET`, ...).
    pub kernel_reason: Option<String>,
    /// The sending socket's state then (`TCP_CLOSE`, ...), when this host sent it.
    pub socket_state: Option<String>,
    /// Whether a socket of this host accepted the reset (null when no socket here was involved).
    pub accepted: Option<bool>,
    /// Segments this host's stack retransmitted in the flow before the reset, per sending side
    /// (by `Side::index`).
    pub retransmits: [u32; 2],
    /// SYN-ACK retransmissions by this host after the handshake's ACK was on the wire.
    pub synacks_after_handshake: u32,
}

/// The kernel-note findings of `case`.
pub fn check(case: &Case) -> Vec<Finding> {
    let s = &case.kernel;
    let mut out = Vec::new();
    if s.accepted == Some(false) {
        out.push(Finding::new(
            codes::NOT_ACCEPTED,
            Strength::Info,
            "no socket of this host accepted it (outside the window, a challenge ACK, or no such connection): it did not end a connection here",
        ));
    }
    if s.synacks_after_handshake > 0 {
        out.push(Finding::new(
            codes::SYNACK_AFTER_HANDSHAKE,
            Strength::Info,
            format!(
                "this host retransmitted its SYN-ACK {} time(s) after the client's handshake ACK was seen: its stack did not take the ACK (TCP_DEFER_ACCEPT waiting for data, a full accept queue) while the client believed the connection open",
                s.synacks_after_handshake
            ),
        ));
    }
    let r = case.reset;
    let peer = r.flow.side(r.seen.side.other());
    // A listener answering a mid-stream segment (TCP_FLAGS from a socket in TCP_LISTEN) has no
    // connection for it either.
    let listener = s.kernel_reason.as_deref() == Some("TCP_FLAGS")
        && s.socket_state.as_deref() == Some("TCP_LISTEN");
    if (s.kernel_reason.as_deref() == Some("NO_SOCKET") || listener)
        && peer.packets > 0
        && peer.last_flags & TCP_SYN == 0
    {
        let start = if r.flow.flags & FLOW_MIDSTREAM != 0 {
            "a flow that never started here: its packets reach the wrong host (ECMP/VIP mis-routing, a failover)"
        } else {
            "a connection that ended here without the peer knowing (a reset this host accepted, a restarted service), or packets reaching the wrong host"
        };
        out.push(Finding::new(
            codes::NO_SOCKET_MIDSTREAM,
            Strength::Info,
            format!(
                "the kernel had no connection for this mid-stream segment ({}): {start}; a routing or lifecycle problem, not the application",
                if listener { "only the port's listener, TCP_FLAGS" } else { "NO_SOCKET" }
            ),
        ));
    }
    let (sender, receiver) = (r.seen.side.index(), r.seen.side.other().index());
    for (side, whose) in [(sender, "sender"), (receiver, "receiver")] {
        let n = s.retransmits[side];
        if n > 0 {
            out.push(Finding::new(
                codes::STACK_RETRANSMITS,
                Strength::Info,
                format!("this host's stack retransmitted {n} time(s) from the reset's {whose} before it"),
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
    fn without_the_stack_view_there_is_nothing_to_say() {
        let r = reset();
        assert!(check(&case(&r)).is_empty());
    }

    #[test]
    fn a_rejected_reset_and_a_half_open_handshake_are_named() {
        let r = reset();
        let mut c = case(&r);
        c.kernel = KernelFacts {
            accepted: Some(false),
            retransmits: [0, 3],
            synacks_after_handshake: 2,
            ..KernelFacts::default()
        };
        let found = check(&c);
        let names: Vec<&str> = codes(found.clone()).into_iter().map(|(c, _)| c).collect();
        assert_eq!(
            names,
            [
                "not_accepted",
                "synack_after_handshake",
                "stack_retransmits"
            ]
        );
        assert!(found[1].detail.contains("2 time(s)"), "{found:?}");
        assert!(
            found[2]
                .detail
                .contains("retransmitted 3 time(s) from the reset's receiver"),
            "{found:?}"
        );
        c.kernel.accepted = Some(true);
        assert!(!check(&c).iter().any(|f| f.code == "not_accepted"));
    }

    #[test]
    fn no_socket_for_a_midstream_segment_points_away_from_the_application() {
        // The server (side Hi) last sent an ACK; this host (Lo) answers NO_SOCKET.
        let r = reset();
        let mut c = case(&r);
        c.kernel.kernel_reason = Some("NO_SOCKET".into());
        let found = check(&c);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].code, "no_socket_midstream");
        assert!(found[0].detail.contains("ended here"), "{found:?}");
        // A refused connect (the peer's last segment a SYN) is not mid-stream.
        let mut syn = reset();
        syn.flow.sides[1].last_flags = TCP_SYN;
        let mut c = case(&syn);
        c.kernel.kernel_reason = Some("NO_SOCKET".into());
        assert!(check(&c).is_empty());
        // The port's listener answering the mid-stream segment says the same.
        let mut c = case(&r);
        c.kernel.kernel_reason = Some("TCP_FLAGS".into());
        c.kernel.socket_state = Some("TCP_LISTEN".into());
        let found = check(&c);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].detail.contains("listener"), "{found:?}");
    }
}
