//! TTL (hop limit) against the claimed sender's baseline in this flow. Routers decrement the TTL
//! on every hop, so packets of one sender on one path arrive with one TTL; a reset with another
//! was built by another box, and the initial-TTL guess says how far that box is.

use crate::forensics::codes;
use rst_tracer_common::ttl::{hops_from_initial, initial_ttl, INITIAL_TTLS};

use super::{Case, Finding, Strength};
use crate::event::Reset;

/// Baseline samples from which a one-hop difference counts as strong evidence.
const STABLE_SAMPLES: u32 = 3;

/// TTL findings: consistent with the sender, or not and by how much.
pub fn check(case: &Case) -> Vec<Finding> {
    let r = case.reset;
    let s = r.flow.side(r.seen.side);
    if s.ttl_samples == 0 || case.sent_locally {
        return Vec::new();
    }
    let ttl = r.rst.ttl;
    let base = if s.ttl_min == s.ttl_max {
        format!("{}", s.ttl_min)
    } else {
        format!("{}..{}", s.ttl_min, s.ttl_max)
    };
    if (s.ttl_min..=s.ttl_max).contains(&ttl) {
        if let Some(f) = takeover(case) {
            return vec![f];
        }
        return vec![Finding::new(
            codes::TTL_CONSISTENT,
            Strength::Info,
            format!(
                "ttl {ttl} within the sender's baseline {base} (n={})",
                s.ttl_samples
            ),
        )];
    }
    let distance = if ttl > s.ttl_max {
        ttl - s.ttl_max
    } else {
        s.ttl_min - ttl
    };
    let stable = s.ttl_samples >= STABLE_SAMPLES && s.ttl_min == s.ttl_max;
    let strength = if distance >= 2 || stable {
        Strength::Strong
    } else {
        Strength::Medium
    };
    let nearest = if ttl > s.ttl_max {
        s.ttl_max
    } else {
        s.ttl_min
    };
    let how = if initial_ttl(ttl) == initial_ttl(nearest) {
        let (hops, way) = if ttl > nearest {
            (ttl - nearest, "closer to")
        } else {
            (nearest - ttl, "farther from")
        };
        format!(
            "sent by a box {hops} hop{} {way} the observer",
            if hops == 1 { "" } else { "s" }
        )
    } else {
        format!(
            "another initial TTL ({} vs {}): another stack, {} hops from the observer vs {}",
            initial_ttl(ttl),
            initial_ttl(nearest),
            hops_from_initial(ttl),
            hops_from_initial(nearest)
        )
    };
    vec![Finding::new(
        codes::TTL_MISMATCH,
        strength,
        format!(
            "ttl {ttl} vs the sender's baseline {base} (n={}): {how}",
            s.ttl_samples
        ),
    )]
}

/// A data segment shortly before the reset, within this (ns), is the reset's prelude.
const TAKEOVER_NS: u64 = 2_000_000_000;

/// The takeover signature: the claimed sender's TTL, stable until then, changed with a data
/// segment shortly before the reset, and the reset carries the new TTL. A device that answers in
/// the sender's place (a block page, then a reset) widens the baseline with its own data, so that
/// its reset looks consistent; a route change does not single out the moments before a reset.
pub fn takeover(case: &Case) -> Option<Finding> {
    let r = case.reset;
    let shift = case.ttl_shift?;
    let (lo, hi) = shift.before;
    let stable = lo == hi && lo != 0;
    let recent = r.seen.kernel_ts_ns.saturating_sub(shift.ts_ns) <= TAKEOVER_NS
        && shift.ts_ns <= r.seen.kernel_ts_ns;
    (stable && recent && shift.payload_len > 0 && shift.ttl != lo && r.rst.ttl == shift.ttl).then(|| {
        Finding::new(
            codes::TTL_TAKEOVER,
            Strength::Strong,
            format!(
                "the sender's packets arrived with ttl {lo} until {} B of data {:.3} ms before this reset came with ttl {}, as the reset does: another box answered in its place (a block page, then a reset)",
                shift.payload_len,
                r.seen.kernel_ts_ns.saturating_sub(shift.ts_ns) as f64 / 1e6,
                shift.ttl
            ),
        )
    })
}

/// Whether a replayed reset was sent by the capture host itself: a host's own packets are
/// captured before any router decrements them, so they carry an initial TTL exactly (64, 128,
/// 255: 0 hops). The reset must, and so must its sender's other packets in the flow (at least
/// one: a reset from a sender that said nothing, at TTL 64, is as likely a device's answer to a
/// SYN), and the receiver's must have travelled at least one hop, so that the two ends are
/// told apart. Such a reset can never be an on-path forgery: it never crossed the path.
pub fn sent_by_capture_host(r: &Reset) -> bool {
    let sender = r.flow.side(r.seen.side);
    let receiver = r.flow.side(r.seen.side.other());
    let ttl = r.rst.ttl;
    let at_zero_hops = INITIAL_TTLS.contains(&ttl);
    let sender_agrees = sender.ttl_samples > 0 && sender.ttl_min == ttl && sender.ttl_max == ttl;
    let receiver_far = receiver.ttl_samples > 0 && hops_from_initial(receiver.ttl_max) >= 1;
    at_zero_hops && sender_agrees && receiver_far
}

/// Hops between the reset's sender and the claimed sender, positive when the reset's sender is
/// closer to the observer; only when both TTLs start from the same initial value.
pub fn hops_closer(case: &Case) -> Option<i32> {
    let r = case.reset;
    let s = r.flow.side(r.seen.side);
    if s.ttl_samples == 0 {
        return None;
    }
    let ttl = r.rst.ttl;
    let nearest = if ttl > s.ttl_max {
        s.ttl_max
    } else {
        s.ttl_min
    };
    (initial_ttl(ttl) == initial_ttl(nearest)).then(|| ttl as i32 - nearest as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        flows::TtlShift,
        forensics::testing::{case, reset},
    };

    #[test]
    fn within_the_baseline_is_consistent() {
        let r = reset();
        let f = check(&case(&r));
        assert_eq!(
            (f[0].code, f[0].strength),
            ("ttl_consistent", Strength::Info)
        );
        assert_eq!(f[0].detail, "ttl 62 within the sender's baseline 62 (n=5)");
    }

    #[test]
    fn one_hop_off_a_stable_baseline_is_strong() {
        let mut r = reset();
        r.rst.ttl = 63;
        let f = check(&case(&r));
        assert_eq!(
            (f[0].code, f[0].strength),
            ("ttl_mismatch", Strength::Strong)
        );
        assert!(
            f[0].detail.contains("1 hop closer to the observer"),
            "{}",
            f[0].detail
        );
        assert_eq!(hops_closer(&case(&r)), Some(1));
    }

    #[test]
    fn one_hop_off_a_thin_baseline_is_medium() {
        let mut r = reset();
        r.flow.sides[0].ttl_samples = 1;
        r.rst.ttl = 61;
        let f = check(&case(&r));
        assert_eq!(f[0].strength, Strength::Medium);
        assert!(
            f[0].detail.contains("1 hop farther from"),
            "{}",
            f[0].detail
        );
        assert_eq!(hops_closer(&case(&r)), Some(-1));
    }

    #[test]
    fn another_initial_ttl_is_another_stack() {
        let mut r = reset();
        r.flow.sides[0].ttl_min = 38;
        r.flow.sides[0].ttl_max = 38;
        r.rst.ttl = 70;
        let f = check(&case(&r));
        assert_eq!(f[0].strength, Strength::Strong);
        assert!(
            f[0].detail.contains("another initial TTL (128 vs 64)"),
            "{}",
            f[0].detail
        );
        assert_eq!(hops_closer(&case(&r)), None);
    }

    #[test]
    fn the_capture_hosts_own_resets_are_at_zero_hops() {
        // The fixture's client arrives with 62 (2 hops), the server with 64 (0 hops).
        let mut r = reset();
        assert!(!sent_by_capture_host(&r), "the client is 2 hops away");
        r.seen.side = rst_tracer_common::flow::Side::Hi;
        r.rst.ttl = 64;
        assert!(sent_by_capture_host(&r), "the server is the capture host");
        r.rst.ttl = 63;
        assert!(!sent_by_capture_host(&r), "a reset that travelled a hop");
        // A sender that said nothing before: a device answering at TTL 64 looks the same.
        r.rst.ttl = 64;
        r.flow.sides[1].ttl_samples = 0;
        assert!(!sent_by_capture_host(&r));
        r.flow.sides[1].ttl_samples = 4;
        // Both ends at 0 hops (one LAN): neither is told apart.
        r.rst.ttl = 64;
        r.flow.sides[0].ttl_min = 64;
        r.flow.sides[0].ttl_max = 64;
        assert!(!sent_by_capture_host(&r));
    }

    #[test]
    fn a_device_taking_over_with_data_then_a_reset_is_strong() {
        // The client's packets came with 62; 1 ms before the reset a data segment with 64
        // widened the baseline to 62..64, and the reset carries 64.
        let mut r = reset();
        r.flow.sides[0].ttl_max = 64;
        r.rst.ttl = 64;
        let shift = TtlShift {
            ts_ns: crate::forensics::testing::T - crate::forensics::testing::MS,
            before: (62, 62),
            ttl: 64,
            payload_len: 120,
        };
        let c = Case {
            ttl_shift: Some(shift),
            ..case(&r)
        };
        assert_eq!(check(&c)[0].code, "ttl_takeover");
        assert_eq!(check(&c)[0].strength, Strength::Strong);
        // A pure ACK that shifted, or a baseline that was never stable, is no takeover.
        for s in [
            TtlShift {
                payload_len: 0,
                ..shift
            },
            TtlShift {
                before: (61, 62),
                ..shift
            },
        ] {
            let c = Case {
                ttl_shift: Some(s),
                ..case(&r)
            };
            assert_eq!(check(&c)[0].code, "ttl_consistent");
        }
    }

    #[test]
    fn no_baseline_no_finding() {
        let mut r = reset();
        r.flow.sides[0].ttl_samples = 0;
        assert!(check(&case(&r)).is_empty());
    }
}
