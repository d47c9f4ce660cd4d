//! Capture duplicates: the same packet seen twice on the capture path (before and after a
//! router, or on two interfaces) is one reset, not two, and never evidence of forgery.

use crate::forensics::codes;
use rst_tracer_common::event::IP_V6;

use super::{Case, Finding, Strength};

/// Two copies of one packet arrive this close together at most (ns).
const WINDOW_NS: u64 = 10_000_000;

/// A finding when this reset is a later copy of an earlier one: same sender, same headers (IP ID
/// included), TTL one lower, within [`WINDOW_NS`].
pub fn check(case: &Case) -> Option<Finding> {
    let r = case.reset;
    case.neighbours.iter().find_map(|n| {
        let earlier = n.seen.kernel_ts_ns <= r.seen.kernel_ts_ns && r.seen.kernel_ts_ns - n.seen.kernel_ts_ns <= WINDOW_NS;
        let same = n.seen.side == r.seen.side
            && n.rst.seq == r.rst.seq
            && n.rst.ack == r.rst.ack
            && n.rst.flags == r.rst.flags
            && n.rst.window == r.rst.window
            && (r.rst.ip_flags & IP_V6 != 0 || n.rst.ip_id == r.rst.ip_id);
        (earlier && same && n.rst.ttl == r.rst.ttl.wrapping_add(1)).then(|| {
            Finding::new(
                codes::DUPLICATE,
                Strength::Info,
                format!(
                    "the RST of {:.3} ms earlier again (same seq and ip id {:#06x}), ttl {} then {}: the same packet captured before and after a hop",
                    (r.seen.kernel_ts_ns - n.seen.kernel_ts_ns) as f64 / 1e6,
                    r.rst.ip_id,
                    n.rst.ttl,
                    r.rst.ttl
                ),
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forensics::{
        neighbour,
        testing::{case, reset, MS},
    };

    #[test]
    fn one_lower_ttl_same_headers_is_a_duplicate() {
        let first = neighbour(&reset(), false);
        let mut copy = reset();
        copy.rst.ttl -= 1;
        copy.seen.kernel_ts_ns += MS / 100;
        let c = Case {
            neighbours: std::slice::from_ref(&first),
            ..case(&copy)
        };
        assert_eq!(check(&c).map(|f| f.code), Some("duplicate"));
        // The same TTL again is a second packet (a device repeating its forgery), not a copy.
        let mut again = reset();
        again.seen.kernel_ts_ns += MS;
        let c = Case {
            reset: &again,
            neighbours: std::slice::from_ref(&first),
            ..c
        };
        assert_eq!(check(&c), None);
        // Another IP ID is another packet.
        let mut other = copy.clone();
        other.rst.ip_id += 1;
        let c = Case {
            reset: &other,
            neighbours: std::slice::from_ref(&first),
            ..c
        };
        assert_eq!(check(&c), None);
    }
}
