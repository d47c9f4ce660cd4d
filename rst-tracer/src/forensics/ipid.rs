//! IPv4 identification against the claimed sender's sequence. Stacks number their packets; a
//! reset whose IP ID copies the packet it answers, or that carries the same value on resets of
//! many flows, was built by a device, not by the sender's stack. IPv6 has no IP ID.

use crate::forensics::codes;
use rst_tracer_common::{
    event::{IP_V6, TCP_SYN},
    flow::SideState,
    ttl::initial_ttl,
};

use super::{sequence, timing, Case, Finding, Strength};

/// An IP ID this far past the sender's last one is a jump, not a continuation.
const CONTINUATION: u16 = 1024;
/// How long an IP ID seen on a reset counts toward a share (ns): a device stamping one value on
/// the resets it forges does so within moments; over longer spans, unrelated resets meet on one
/// of the 65,536 values by chance.
pub const SHARE_WINDOW_NS: u64 = 30_000_000_000;
/// A value shared across flows counts as fixed only when chance would make such a share rarer
/// than this (per reset).
const CHANCE: f64 = 1e-3;

/// How many flows' resets carried one IP ID around a reset, and how many IP IDs were noted in
/// the same window: enough to tell a fixed value from a coincidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpIdShare {
    /// Distinct flows whose resets carried the ID within the window (this reset's included),
    /// counted up to a cap that chance never reaches.
    pub flows: usize,
    /// Non-zero IPv4 IDs noted on resets within the window, this one included.
    pub noted: usize,
}

impl Default for IpIdShare {
    /// A reset alone with its ID.
    fn default() -> Self {
        IpIdShare { flows: 1, noted: 1 }
    }
}

impl IpIdShare {
    /// The chance that resets with random IDs would put this reset's ID on this many flows or
    /// more: a Poisson tail, the other noted IDs each landing on it with probability 1/65,536.
    pub fn chance(&self) -> f64 {
        let others = self.flows.saturating_sub(1);
        if others == 0 {
            return 1.0;
        }
        let lambda = self.noted.saturating_sub(1) as f64 / 65_536.0;
        // P(X >= others) = 1 - sum_{k < others} e^-l l^k / k!
        let mut term = (-lambda).exp();
        let mut below = 0.0;
        for k in 0..others {
            below += term;
            term *= lambda / (k + 1) as f64;
        }
        (1.0 - below).max(0.0)
    }
}

/// True when IP ID `id` continues a count whose last value was `last` (the same value, for stacks
/// that stamp one constant, or a step forward of at most [`CONTINUATION`]).
pub fn continues(id: u16, last: u16) -> bool {
    id.wrapping_sub(last) <= CONTINUATION
}

/// Packets in a row one ID apart that show a per-connection counter.
const COUNTER_RUN: u8 = 2;
/// How many of a counter-keeping sender's packets may have been lost before the observer between
/// its last one seen and its reset: each moved its counter on by one (or more).
const COUNTER_SLACK: u32 = 32;
/// The smallest segment (IPv4's least MSS) a GSO or GRO aggregate stands for, to count its IDs.
const MIN_SEGMENT: u32 = 536;

/// Whether IP ID `id` can be the next of `sender`'s own count. A sender whose stack keeps a
/// counter per connection (see [`keeps_a_counter`]) moves it on by one per segment, and the
/// observer sees every segment of the flow that reaches it: the next ID is one past its last
/// packet's segments, plus a few lost on the way. Other stacks' counters are shared with other
/// traffic or stamp one value: [`continues`].
pub fn continues_sender(id: u16, sender: &SideState) -> bool {
    if !keeps_a_counter(sender) {
        return continues(id, sender.last_ip_id);
    }
    let step = u32::from(id.wrapping_sub(sender.last_ip_id));
    // A GSO/GRO aggregate carries its first segment's ID.
    let segments = u32::from(sender.last_len).div_ceil(MIN_SEGMENT).max(1);
    (1..=segments + COUNTER_SLACK).contains(&step)
}

/// Whether the sender's latest packet was its SYN or SYN-ACK, with IP ID 0: a Linux SYN-ACK comes
/// from the listener's request socket (IP ID 0 with DF), and the connection's own socket starts a
/// counter of its own at a random value, so an ID after it neither continues nor jumps.
fn counter_not_started(sender: &SideState) -> bool {
    sender.last_flags & TCP_SYN != 0 && sender.last_ip_id == 0
}

/// Whether the sender's stack numbers this flow's packets with a counter of its own, so that its
/// abort continues it: its latest packets one ID apart in a row, from a stack whose initial TTL
/// is 64 (Linux keeps a counter per connection). Windows (initial TTL 128) numbers all its
/// packets with one global counter, which other traffic moves on between a flow's packets.
fn keeps_a_counter(sender: &SideState) -> bool {
    sender.ipid_run >= COUNTER_RUN && initial_ttl(sender.ttl_max) == 64
}

/// IP ID findings.
pub fn check(case: &Case) -> Vec<Finding> {
    let r = case.reset;
    if r.rst.ip_flags & IP_V6 != 0 {
        return vec![Finding::new(
            codes::IPID_NONE,
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
            codes::IPID_COPIED,
            Strength::Strong,
            format!("ip id {id:#06x} is the id of the packet it answers (the receiver's last): copied, not numbered"),
        ));
    }
    // Shared: the same value on resets of several flows, and not this sender's own next value
    // (two stacks' counters meet by chance often enough: 300 aborts collide half the time).
    let continues_own = sender.packets > 0 && continues_sender(id, sender);
    let share = case.ipid_share;
    if id != 0 && share.flows >= 2 && !continues_own && share.chance() < CHANCE {
        out.push(Finding::new(
            codes::IPID_SHARED,
            Strength::Strong,
            format!(
                "ip id {id:#06x} on resets of {} flows within {} s (chance {:.1e} among {} noted): a fixed value, not a stack's counter",
                share.flows,
                SHARE_WINDOW_NS / 1_000_000_000,
                share.chance(),
                share.noted
            ),
        ));
    }
    if sender.packets == 0 {
        return out;
    }
    let last = sender.last_ip_id;
    let copied = out.iter().any(|f| f.code == codes::IPID_COPIED);
    // A reply without a socket (the reset answers one of the receiver's segments) may carry any
    // ID: Linux puts 0 there, other stacks a per-destination or global value. Only a reset that
    // can be nothing but the sender's own abort must continue its count: one that answers
    // nothing, or one that came too soon after the sender's data for any answer to reach it.
    let abort_only =
        sequence::answers_receiver(case).is_none() || timing::too_soon_for_a_reply(case);
    if id != 0 && !copied && abort_only && !continues_sender(id, sender) && keeps_a_counter(sender)
    {
        out.push(Finding::new(
            codes::IPID_FOREIGN,
            Strength::Strong,
            format!(
                "ip id {id:#06x} after the sender's {last:#06x} (+{}), whose stack numbers this connection's packets one by one: its own reset would continue the count (an abort) or carry 0 (a reply without a socket)",
                id.wrapping_sub(last)
            ),
        ));
        return out;
    }
    if id == 0 && last != 0 {
        out.push(Finding::new(
            codes::IPID_ZERO,
            Strength::Weak,
            format!("ip id 0 after the sender's {last:#06x} (Linux reply resets also carry 0)"),
        ));
    } else if id != 0 && !copied && !counter_not_started(sender) {
        let step = id.wrapping_sub(last);
        if continues_sender(id, sender) {
            out.push(Finding::new(
                codes::IPID_CONTINUES,
                Strength::Info,
                format!("ip id {id:#06x} after {last:#06x} (+{step})"),
            ));
        } else {
            out.push(Finding::new(
                codes::IPID_JUMP,
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

    fn codes_with(r: &crate::event::Reset, flows: usize) -> Vec<(&'static str, Strength)> {
        codes(check(&Case {
            ipid_share: IpIdShare {
                flows,
                noted: flows + 4,
            },
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
    fn a_share_that_chance_explains_is_not_evidence() {
        let mut r = reset();
        r.rst.ip_id = 40_000;
        // Two flows among 20,000 resets in the window: a birthday coincidence.
        let c = Case {
            ipid_share: IpIdShare {
                flows: 2,
                noted: 20_000,
            },
            ..case(&r)
        };
        assert!(!codes(check(&c)).iter().any(|(c, _)| *c == "ipid_shared"));
        // Five flows among as many: chance cannot do that.
        let c = Case {
            ipid_share: IpIdShare {
                flows: 5,
                noted: 20_000,
            },
            ..case(&r)
        };
        assert!(codes(check(&c)).contains(&("ipid_shared", Strength::Strong)));
    }

    #[test]
    fn chance_is_a_poisson_tail() {
        let alone = IpIdShare {
            flows: 1,
            noted: 100,
        };
        assert_eq!(alone.chance(), 1.0);
        let pair = IpIdShare {
            flows: 2,
            noted: 65_537,
        };
        // One expected other: P(X >= 1) = 1 - 1/e.
        assert!((pair.chance() - (1.0 - (-1.0f64).exp())).abs() < 1e-9);
        let few = IpIdShare { flows: 2, noted: 8 };
        assert!(few.chance() < 1e-3, "{}", few.chance());
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
    fn a_jump_past_a_per_connection_counter_is_foreign() {
        let mut r = reset();
        r.flow.sides[0].ipid_run = COUNTER_RUN;
        r.rst.ip_id = 100 + 5000;
        // As a reply to the server's last segment (seq 1000 = its ACK, no ACK flag) any ID goes.
        r.rst.flags = rst_tracer_common::event::TCP_RST;
        assert_eq!(codes_with(&r, 1), [("ipid_jump", Strength::Weak)]);
        // With an ACK flag it is no reply: only the client's abort, which continues its count.
        r.rst.flags |= rst_tracer_common::event::TCP_ACK;
        assert_eq!(codes_with(&r, 1), [("ipid_foreign", Strength::Strong)]);
        r.rst.flags = rst_tracer_common::event::TCP_RST;
        // The server had acknowledged only 900: seq 1000 is the client's next byte, an abort.
        r.flow.sides[1].last_ack = 900;
        assert_eq!(codes_with(&r, 1), [("ipid_foreign", Strength::Strong)]);
        // Acknowledged, but the client's data left 2 ms before on a 10 ms path: no answer of the
        // server's can have reached it yet, so this too can only be its abort.
        r.flow.sides[1].last_ack = 1000;
        r.flow.sides[0].last_ns = crate::forensics::testing::T - 2 * crate::forensics::testing::MS;
        r.flow.sides[0].last_len = 100;
        assert_eq!(codes_with(&r, 1), [("ipid_foreign", Strength::Strong)]);
        // Continuing it, or 0 (a reply without a socket), is the stack's own.
        r.rst.ip_id = 101;
        assert_eq!(codes_with(&r, 1), [("ipid_continues", Strength::Info)]);
        r.rst.ip_id = 0;
        assert_eq!(codes_with(&r, 1), [("ipid_zero", Strength::Weak)]);
        // A Windows sender (initial TTL 128) numbers everything with one counter: a jump.
        r.rst.ip_id = 100 + 5000;
        r.flow.sides[0].ttl_min = 120;
        r.flow.sides[0].ttl_max = 120;
        assert_eq!(codes_with(&r, 1), [("ipid_jump", Strength::Weak)]);
    }

    #[test]
    fn a_per_connection_counter_continues_by_its_segments_only() {
        // The client's counter (three packets one apart) stands at 100.
        let mut r = reset();
        r.flow.sides[0].ipid_run = COUNTER_RUN;
        r.rst.ip_id = 101;
        assert_eq!(codes_with(&r, 1), [("ipid_continues", Strength::Info)]);
        // 755 on: within the loose bound for shared counters, not a connection's own next ID.
        // An IPS with a counter of its own and the client's TTL (abort-only: it sets ACK).
        r.rst.ip_id = 100 + 755;
        assert_eq!(codes_with(&r, 1), [("ipid_foreign", Strength::Strong)]);
        // A 64 KB GSO aggregate as its last packet stood for up to 123 segments.
        r.flow.sides[0].last_len = 65_000;
        assert_eq!(codes_with(&r, 1), [("ipid_foreign", Strength::Strong)]);
        r.rst.ip_id = 100 + 150;
        assert_eq!(codes_with(&r, 1), [("ipid_continues", Strength::Info)]);
        // The same ID again is no step of a counter.
        r.rst.ip_id = 100;
        assert!(!continues_sender(100, &r.flow.sides[0]));
        // Without a counter seen, the loose bound holds.
        r.flow.sides[0].ipid_run = 0;
        assert!(continues_sender(100 + 755, &r.flow.sides[0]));
    }

    #[test]
    fn an_id_after_a_synack_with_id_0_starts_a_count() {
        // The server's last packet was its SYN-ACK (IP ID 0, from the request socket); its
        // connection socket's abort carries a random first ID: no jump.
        let mut r = reset();
        let s = &mut r.flow.sides[0];
        s.last_flags = TCP_SYN | rst_tracer_common::event::TCP_ACK;
        s.last_ip_id = 0;
        r.rst.ip_id = 19_596;
        assert!(codes_with(&r, 1).is_empty(), "{:?}", codes_with(&r, 1));
        // After a SYN-ACK with an ID of its own (a global counter), the jump is still one.
        r.flow.sides[0].last_ip_id = 7;
        assert_eq!(codes_with(&r, 1), [("ipid_jump", Strength::Weak)]);
    }

    #[test]
    fn ipv6_says_so() {
        let mut r = reset();
        r.rst.ip_flags = IP_V6;
        assert_eq!(codes_with(&r, 1), [("ipid_none", Strength::Info)]);
    }
}
