//! A flow that falls silent one way: one side retransmits and the other never answers again, and
//! no reset explains it. Behind it is a black hole on the path, or a stateful device (firewall,
//! NAT, load balancer) that dropped the session while both ends still had it, often right after
//! a reset it saw but one end never got.
//!
//! Ordinary packets never leave the kernel, so this is judged from the kernel's flow entry: when
//! the retransmitting side started retransmitting (from the samples), and when the other side
//! last sent anything.

use crate::forensics::codes;
use rst_tracer_common::flow::{FlowState, Side};

use super::{Finding, Strength};

/// No answer for this long after the first retransmission makes a flow silent (ns).
pub const QUIET_NS: u64 = 2_000_000_000;

/// What the flow entry says about one side's retransmissions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Silence {
    /// The other side answered after the retransmissions began: nothing to report.
    Answered,
    /// Not quiet long enough yet.
    Waiting,
    /// The side kept sending into silence.
    Silent(Finding),
}

/// Judges `side` of `flow`, which retransmitted first at `first_retransmit_ns` (kernel time), at
/// kernel time `now_ns`.
pub fn check(flow: &FlowState, side: Side, first_retransmit_ns: u64, now_ns: u64) -> Silence {
    let me = flow.side(side);
    let other = flow.side(side.other());
    if other.last_ns >= first_retransmit_ns || flow.last_rst_ns >= first_retransmit_ns {
        return Silence::Answered;
    }
    let quiet = now_ns.saturating_sub(first_retransmit_ns);
    if quiet < QUIET_NS {
        return Silence::Waiting;
    }
    Silence::Silent(Finding::new(
        codes::ONEWAY_SILENCE,
        Strength::Info,
        format!(
            "{} retransmissions over {:.1} s and no answer (the other side last sent {:.1} s ago): a black hole, or a stateful device that dropped the session",
            me.retransmits,
            quiet as f64 / 1e9,
            now_ns.saturating_sub(other.last_ns) as f64 / 1e9
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forensics::testing::{reset, MS, T};

    #[test]
    fn silent_only_without_an_answer_for_long_enough() {
        let mut f = reset().flow;
        f.sides[0].retransmits = 4;
        f.sides[1].last_ns = T - 10 * MS;
        assert_eq!(check(&f, Side::Lo, T, T + MS), Silence::Waiting);
        assert!(
            matches!(check(&f, Side::Lo, T, T + QUIET_NS), Silence::Silent(x) if x.code == "oneway_silence")
        );
        f.sides[1].last_ns = T + 5 * MS;
        assert_eq!(check(&f, Side::Lo, T, T + QUIET_NS), Silence::Answered);
        f.sides[1].last_ns = T - 10 * MS;
        f.last_rst_ns = T + MS;
        assert_eq!(
            check(&f, Side::Lo, T, T + QUIET_NS),
            Silence::Answered,
            "a reset explains it"
        );
    }
}
