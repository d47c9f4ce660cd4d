//! IPv4 identification against the claimed sender's sequence. Stacks number their packets; a
//! reset whose IP ID copies the packet it answers, or that carries the same value on resets of
//! many flows, was built by a device, not by the sender's stack. IPv6 has no IP ID.

use rst_tracer_common::event::IP_V6;

use super::{Case, Finding, Strength};

/// An IP ID this far past the sender's last one is a jump, not a continuation.
const CONTINUATION: u16 = 1024;

/// IP ID findings.
pub fn check(case: &Case) -> Vec<Finding> {
    let r = case.reset;
    if r.rst.ip_flags & IP_V6 != 0 {
        return vec![Finding::new(
            "ipid_none",
            Strength::Info,
            "IPv6: no IP ID to compare",
        )];
    }
    if case.sent_locally {
        return Vec::new();
    }
    let id = r.rst.ip_id;
    let sender = r.flow.side(r.seen.side);
    let receiver = r.flow.side(r.seen.side.other());
    let mut out = Vec::new();
    // Copied: the id of the packet it answers, and not simply the sender's own next value (some
    // stacks stamp one constant id on everything).
    let own = sender.packets > 0 && id == sender.last_ip_id;
    if id != 0 && receiver.packets > 0 && id == receiver.last_ip_id && !own {
        out.push(Finding::new(
            "ipid_copied",
            Strength::Strong,
            format!("ip id {id:#06x} is the id of the packet it answers (the receiver's last): copied, not numbered"),
        ));
    }
    // Shared: the same value on resets of several flows, and not this sender's own next value
    // (two stacks' counters meet by chance often enough: 300 aborts collide half the time).
    let continues_own = sender.packets > 0 && id.wrapping_sub(sender.last_ip_id) <= CONTINUATION;
    if id != 0 && case.ipid_flows >= 2 && !continues_own {
        out.push(Finding::new(
            "ipid_shared",
            Strength::Strong,
            format!(
                "ip id {id:#06x} on resets of {} flows: a fixed value, not a stack's counter",
                case.ipid_flows
            ),
        ));
    }
    if sender.packets == 0 {
        return out;
    }
    let last = sender.last_ip_id;
    if id == 0 && last != 0 {
        out.push(Finding::new(
            "ipid_zero",
            Strength::Weak,
            format!("ip id 0 after the sender's {last:#06x} (Linux reply resets also carry 0)"),
        ));
    } else if id != 0 && !out.iter().any(|f| f.code == "ipid_copied") {
        let step = id.wrapping_sub(last);
        if step == 0 || step <= CONTINUATION {
            out.push(Finding::new(
                "ipid_continues",
                Strength::Info,
                format!("ip id {id:#06x} after {last:#06x} (+{step})"),
            ));
        } else {
            out.push(Finding::new(
                "ipid_jump",
                Strength::Weak,
                format!("ip id {id:#06x} after the sender's {last:#06x} (+{step})"),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forensics::testing::{case, codes, reset};

    fn codes_with(r: &crate::event::Reset, ipid_flows: usize) -> Vec<(&'static str, Strength)> {
        codes(check(&Case {
            ipid_flows,
            ..case(r)
        }))
    }

    #[test]
    fn continuing_the_senders_count_is_fine() {
        assert_eq!(
            codes_with(&reset(), 1),
            [("ipid_continues", Strength::Info)]
        );
    }

    #[test]
    fn copied_from_the_trigger_is_strong() {
        let mut r = reset();
        r.rst.ip_id = 7; // the server's last packet
        assert_eq!(codes_with(&r, 1), [("ipid_copied", Strength::Strong)]);
    }

    #[test]
    fn a_constant_id_on_both_sides_is_not_copying() {
        let mut r = reset();
        r.flow.sides[0].last_ip_id = 1;
        r.flow.sides[1].last_ip_id = 1;
        r.rst.ip_id = 1;
        assert_eq!(codes_with(&r, 1), [("ipid_continues", Strength::Info)]);
    }

    #[test]
    fn a_shared_value_that_continues_the_senders_count_is_chance() {
        let mut r = reset();
        r.rst.ip_id = 101;
        assert!(!codes_with(&r, 2).iter().any(|(c, _)| *c == "ipid_shared"));
    }

    #[test]
    fn shared_across_flows_is_strong() {
        let mut r = reset();
        // Far from the sender's own count (100), as Airtel's 242 was from its clients'.
        r.rst.ip_id = 40_000;
        assert!(codes_with(&r, 3).contains(&("ipid_shared", Strength::Strong)));
        assert!(!codes_with(&r, 1).iter().any(|(c, _)| *c == "ipid_shared"));
    }

    #[test]
    fn zero_and_jumps_are_weak() {
        let mut r = reset();
        r.rst.ip_id = 0;
        assert_eq!(codes_with(&r, 1), [("ipid_zero", Strength::Weak)]);
        r.rst.ip_id = 100 + 5000;
        assert_eq!(codes_with(&r, 1), [("ipid_jump", Strength::Weak)]);
        // A sender that always sends 0 (Linux with DF) is not odd.
        r.flow.sides[0].last_ip_id = 0;
        r.rst.ip_id = 0;
        assert!(codes_with(&r, 1).is_empty());
    }

    #[test]
    fn ipv6_says_so() {
        let mut r = reset();
        r.rst.ip_flags = IP_V6;
        assert_eq!(codes_with(&r, 1), [("ipid_none", Strength::Info)]);
    }
}
