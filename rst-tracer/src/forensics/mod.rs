//! Forensics: who really sent a reset, and the evidence.
//!
//! Each evidence kind is a pure function from a [`Case`] (the reset, the flow state before it,
//! and what followed within the settle window) to [`Finding`]s with stable codes and details in
//! numbers. [`judge`] is the one place that weighs them into a [`Verdict`].
//!
//! Judging explains first. Most resets are honest, and the honest mechanisms that make them
//! ([`explain`]: an abort, a reply from a host without a socket, a refused connect, ...) leave
//! their marks in the numbers. Suspicion needs a contradiction no honest mechanism produces: a
//! `Strong` finding (a TTL outside the sender's baseline, an IP ID copied from the packet it
//! answers, fixed across flows or foreign to the sender's own counter on what can only be its
//! abort, the sender still sending after "its" reset, a reset faster than the path allows,
//! resets toward both ends at once). So a reset is:
//!
//! - `local` when this host sent it (the caller says so: its source is one of the host's
//!   addresses, or in replay the capture host sent it); suspicious only when this host kept
//!   sending in the flow after it, so that its TCP stack cannot have built it;
//! - suspicious (`on-path`) on any strong finding;
//! - honest when a mechanism explains it, and the verdict names the mechanism;
//! - suspicious when nothing explains it and middlebox habits (`Medium` findings: a window no
//!   stack uses, reserved bits, a payload, a sequence number at neither stream point) add up to
//!   [`SUSPICIOUS_SCORE`];
//! - otherwise honest but unexplained. `Weak` oddities that honest stacks show every day (IP ID
//!   0, a jump in IP IDs) never decide alone. Never on no evidence: a reset from a sender that
//!   sent nothing before has origin `unknown` unless a finding says otherwise.

pub mod aftermath;
pub mod codes;
pub mod duplicate;
pub mod explain;
pub mod fingerprint;
pub mod ipid;
pub mod kernel;
pub mod sequence;
pub mod silence;
pub mod timing;
pub mod ttl;

use crate::{
    event::{Reset, Sample},
    flows::{Neighbour, TtlShift},
};
use explain::Explanation;
use ipid::IpIdShare;
use kernel::KernelFacts;
use rst_tracer_common::event::Hook;

/// How much a finding says that the claimed sender did not send the reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Strength {
    /// Context only: says nothing about who sent it (or says the sender did).
    Info = 0,
    /// An oddity honest stacks also show; never decides alone.
    Weak = 1,
    /// A middlebox habit: counts only when no honest mechanism explains the reset.
    Medium = 2,
    /// A contradiction: a fact the claimed sender cannot produce.
    Strong = 3,
}

/// Total weight of `Medium` and `Weak` findings from which a reset no mechanism explains is
/// suspicious (a medium and a weak one, or two medium ones).
pub const SUSPICIOUS_SCORE: u32 = 3;

/// One piece of evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Stable code (see the README for the list).
    pub code: &'static str,
    /// The evidence in numbers.
    pub detail: String,
    /// Its weight (not in the output).
    pub strength: Strength,
}

impl Finding {
    /// A finding.
    pub fn new(code: &'static str, strength: Strength, detail: impl Into<String>) -> Finding {
        Finding {
            code,
            detail: detail.into(),
            strength,
        }
    }
}

/// Who sent a reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The endpoint it claims to come from.
    Peer,
    /// This host's own stack.
    Local,
    /// A device between the endpoints.
    OnPath,
    /// The same packet seen twice on the capture path.
    Duplicate,
    /// Not enough evidence either way.
    Unknown,
}

impl Origin {
    /// Stable name for output (as in JSON).
    pub const fn name(self) -> &'static str {
        match self {
            Origin::Peer => "peer",
            Origin::Local => "local",
            Origin::OnPath => "on-path",
            Origin::Duplicate => "duplicate",
            Origin::Unknown => "unknown",
        }
    }
}

/// The verdict on one reset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Who sent it.
    pub origin: Origin,
    /// For `on-path`: how many hops closer to the observer than the claimed sender the sender is,
    /// when the TTLs allow an estimate.
    pub hops_closer: Option<i32>,
    /// The reset was not sent by the endpoint it claims to come from.
    pub suspicious: bool,
    /// Every finding, strongest first.
    pub findings: Vec<Finding>,
    /// The honest mechanism that explains the reset, when one does (not for suspicious ones).
    pub explanation: Option<Explanation>,
}

/// What a flow keeps of reset `r` for the verdicts of its neighbours: where, when and its
/// headers, whether it bore its sender's own abort ([`explain::is_own_abort`]), whether it
/// was seen leaving this host ([`left_this_host`], with `sent_locally` as the caller judges it
/// for the reset's own [`Case`]) and whether it was at exactly RCV.NXT
/// ([`sequence::is_exact`]).
pub fn neighbour(r: &Reset, sent_locally: bool) -> Neighbour {
    Neighbour::of(
        r,
        explain::is_own_abort(r),
        left_this_host(r, sent_locally),
        sequence::is_exact(r),
    )
}

/// Whether reset `r`, judged sent by this host (`sent_locally`), was also seen leaving it: at
/// the live egress hook, which sees only what this host sends or forwards (and a forwarded reset
/// is not judged sent here). In replay who sent a packet is inferred from addresses and TTLs,
/// which a forger can copy, and an arriving packet may carry this host's address as its
/// source: neither counts.
pub fn left_this_host(r: &Reset, sent_locally: bool) -> bool {
    sent_locally && r.seen.hook == Hook::TcEgress
}

/// Everything known about one reset when its settle window closes.
#[derive(Clone, Debug)]
pub struct Case<'a> {
    /// The reset, with the flow state from before it.
    pub reset: &'a Reset,
    /// The claimed sender is this host: live, the reset's source is one of its addresses at an
    /// initial TTL; replay, a `--local` address or the inferred capture host.
    pub sent_locally: bool,
    /// The first packet from each side after the reset (from the kernel), within the window.
    pub after: &'a [Sample],
    /// The flow's other resets within the window, before and after this one.
    pub neighbours: &'a [Neighbour],
    /// How many flows' resets carried this reset's IP ID around it, among how many noted.
    pub ipid_share: IpIdShare,
    /// Retransmission samples per side (by `Side::index`) after the reset, within the window.
    pub retransmits_after: [u32; 2],
    /// What this host's stack said about the flow (tracepoints).
    pub kernel: KernelFacts,
    /// The claimed sender's latest sampled TTL change before the reset, if any.
    pub ttl_shift: Option<TtlShift>,
}

/// Weighs the evidence of a case into a verdict: explanations first, suspicion only on a
/// contradiction or on middlebox habits that nothing honest explains.
pub fn judge(case: &Case) -> Verdict {
    if let Some(f) = duplicate::check(case) {
        return Verdict {
            origin: Origin::Duplicate,
            hops_closer: None,
            suspicious: false,
            findings: vec![f],
            explanation: None,
        };
    }
    let mut findings = Vec::with_capacity(8);
    findings.extend(ttl::check(case));
    findings.extend(ipid::check(case));
    findings.extend(sequence::check(case));
    findings.extend(timing::check(case));
    findings.extend(fingerprint::check(case));
    findings.extend(aftermath::check(case));
    findings.extend(kernel::check(case));
    findings.sort_by_key(|f| std::cmp::Reverse(f.strength));
    let contradicted = findings.iter().any(|f| f.strength == Strength::Strong);
    let explanation = if contradicted {
        None
    } else if case.sent_locally {
        local_explanation(case)
    } else {
        explain::explain(case)
    };
    let habits: u32 = findings.iter().map(|f| f.strength as u32).sum();
    let has_medium = findings.iter().any(|f| f.strength == Strength::Medium);
    let sender_seen = case.reset.flow.side(case.reset.seen.side).packets > 0;
    let (origin, suspicious) = if case.sent_locally {
        // This host put it on the wire; nothing on the path could have. Only this host still
        // sending in the flow after it says its stack did not build it (a raw-socket tool did).
        (
            Origin::Local,
            findings.iter().any(|f| f.code == codes::SENDER_CONTINUES),
        )
    } else if contradicted || (explanation.is_none() && has_medium && habits >= SUSPICIOUS_SCORE) {
        (Origin::OnPath, true)
    } else if sender_seen {
        (Origin::Peer, false)
    } else {
        (Origin::Unknown, false)
    };
    let hops_closer = if origin == Origin::OnPath {
        ttl::hops_closer(case)
    } else {
        None
    };
    Verdict {
        origin,
        hops_closer,
        suspicious,
        findings,
        explanation,
    }
}

/// What explains a reset this host sent: the kernel's own reason where the kernel notes gave one,
/// else the packets' marks.
fn local_explanation(case: &Case) -> Option<Explanation> {
    let from_packets = explain::explain(case);
    let reason = case.kernel.kernel_reason.as_deref();
    let Some((reason, mechanism)) =
        reason.and_then(|r| explain::from_kernel_reason(r).map(|m| (r, m)))
    else {
        return from_packets;
    };
    // The packets may name the situation more closely (a refused connect is NO_SOCKET too).
    Some(match from_packets {
        Some(e)
            if e.mechanism == mechanism
                || (mechanism == explain::Mechanism::NoSocket
                    && e.mechanism != explain::Mechanism::Abort) =>
        {
            e
        }
        _ => Explanation {
            mechanism,
            detail: format!("the kernel's reason: {reason}"),
        },
    })
}

#[cfg(test)]
pub(crate) mod testing {
    //! Builders for forensics unit tests: a case of a reset in a few lines (the reset itself and
    //! the packets after it come from [`crate::event::testing`]).

    pub use crate::event::testing::{after, reset, MS, T};

    use super::{Case, Finding, Strength};
    use crate::event::Reset;

    /// A case of `r` alone: not sent locally, nothing after it, no neighbours, its IP ID in one flow.
    pub fn case(r: &Reset) -> Case<'_> {
        Case {
            reset: r,
            sent_locally: false,
            after: &[],
            neighbours: &[],
            ipid_share: super::IpIdShare::default(),
            retransmits_after: [0, 0],
            kernel: super::KernelFacts::default(),
            ttl_shift: None,
        }
    }

    /// The codes and strengths of some findings.
    pub fn codes(findings: Vec<Finding>) -> Vec<(&'static str, Strength)> {
        findings.into_iter().map(|f| (f.code, f.strength)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{testing::*, *};
    use rst_tracer_common::{event::TCP_ACK, flow::Side};

    #[test]
    fn an_honest_reset_is_the_peers() {
        let r = reset();
        let v = judge(&case(&r));
        assert_eq!(
            (v.origin, v.suspicious),
            (Origin::Peer, false),
            "{:?}",
            v.findings
        );
    }

    #[test]
    fn no_baseline_no_verdict() {
        let mut r = reset();
        r.flow.sides[0] = Default::default();
        let v = judge(&case(&r));
        assert_eq!(
            (v.origin, v.suspicious),
            (Origin::Unknown, false),
            "{:?}",
            v.findings
        );
    }

    #[test]
    fn a_foreign_ttl_makes_it_on_path_with_a_hop_estimate() {
        let mut r = reset();
        r.rst.ttl = 63;
        let v = judge(&case(&r));
        assert_eq!(
            (v.origin, v.suspicious, v.hops_closer),
            (Origin::OnPath, true, Some(1)),
            "{:?}",
            v.findings
        );
        assert_eq!(v.findings[0].code, "ttl_mismatch");
    }

    #[test]
    fn locally_sent_resets_are_local_whatever_they_look_like() {
        let mut r = reset();
        r.rst.ttl = 64;
        let c = Case {
            sent_locally: true,
            ..case(&r)
        };
        assert_eq!(judge(&c).origin, Origin::Local);
    }

    #[test]
    fn a_reply_to_a_retransmission_train_is_explained_not_accused() {
        // The additive judge's commonest false accusation: a peer without the socket answers a
        // retransmitted segment. Its seq is the ACK of that older segment (behind the sender's
        // stream: "stale"), its IP ID 0 ("zero"), and two more replies followed ("burst").
        let mut r = reset();
        r.flow.sides[1].last_ack = 900;
        r.flow.sides[1].retransmits = 4;
        r.rst.seq = 900;
        r.rst.ip_id = 0;
        r.rst.flags = rst_tracer_common::event::TCP_RST;
        let burst = [neighbour(&r, false), neighbour(&r, false)];
        let v = judge(&Case {
            neighbours: &burst,
            ..case(&r)
        });
        assert_eq!(
            (v.origin, v.suspicious),
            (Origin::Peer, false),
            "{:?}",
            v.findings
        );
        assert_eq!(
            v.explanation.map(|e| e.mechanism),
            Some(explain::Mechanism::RetransmissionReply)
        );
    }

    #[test]
    fn a_contradiction_outweighs_any_explanation() {
        // Exact sequence number, as an abort carries; but one hop closer than the sender.
        let mut r = reset();
        r.rst.ttl = 63;
        let v = judge(&case(&r));
        assert!(v.suspicious);
        assert_eq!(v.explanation, None);
    }

    #[test]
    fn unexplained_middlebox_habits_add_up_explained_ones_do_not() {
        // At neither stream point (seq ahead: medium) with a window no stack uses (medium).
        let mut r = reset();
        r.rst.seq = 1010;
        r.rst.window = 16;
        let v = judge(&case(&r));
        assert_eq!(
            (v.origin, v.suspicious),
            (Origin::OnPath, true),
            "{:?}",
            v.findings
        );
        // A lone weak oddity on an unexplained reset decides nothing: a one-sided view (the
        // receiver never seen) and an IP ID jump.
        let mut r = reset();
        r.flow.sides[1] = Default::default();
        r.rst.seq = 1010;
        r.rst.ip_id = 9000;
        let v = judge(&case(&r));
        assert!(!v.suspicious, "{:?}", v.findings);
        assert_eq!(v.explanation, None);
    }

    #[test]
    fn a_local_reset_is_explained_by_the_kernels_word() {
        let mut r = reset();
        r.rst.ip_id = 0;
        r.rst.flags = rst_tracer_common::event::TCP_RST;
        let mut c = Case {
            sent_locally: true,
            ..case(&r)
        };
        c.kernel.kernel_reason = Some("NO_SOCKET".into());
        let v = judge(&c);
        assert_eq!(
            (v.origin, v.explanation.map(|e| e.mechanism)),
            (Origin::Local, Some(explain::Mechanism::NoSocket))
        );
        c.kernel.kernel_reason = Some("TCP_ABORT_ON_CLOSE".into());
        let e = judge(&c).explanation.expect("explained");
        assert_eq!(e.mechanism, explain::Mechanism::Abort);
        assert!(e.detail.contains("TCP_ABORT_ON_CLOSE"), "{}", e.detail);
        // A reason that names no mechanism leaves the packets to speak.
        c.kernel.kernel_reason = Some("NOT_SPECIFIED".into());
        assert_eq!(
            judge(&c).explanation.map(|e| e.mechanism),
            Some(explain::Mechanism::NoSocket)
        );
    }

    #[test]
    fn the_sender_still_talking_after_its_reset_is_strong() {
        let r = reset();
        let more = after(
            Side::Lo,
            3,
            rst_tracer_common::event::PacketInfo {
                seq: 1000,
                flags: TCP_ACK,
                payload_len: 10,
                ttl: 62,
                ..Default::default()
            },
        );
        let c = Case {
            after: std::slice::from_ref(&more),
            ..case(&r)
        };
        let v = judge(&c);
        assert!(v.suspicious, "{:?}", v.findings);
        assert!(v.findings.iter().any(|f| f.code == "sender_continues"));
        // This host still sending after its own reset: its stack did not build it.
        let v = judge(&Case {
            sent_locally: true,
            ..c
        });
        assert_eq!((v.origin, v.suspicious), (Origin::Local, true));
    }
}
