//! The reset's own headers. Linux reply resets carry window 0 and its aborts the sender's last
//! window; no stack sets the reserved bits; stacks do not write text into resets (devices do);
//! a timestamp older than the sender's last is not the sender's clock.

use crate::forensics::codes;
use rst_tracer_common::{
    event::{OPT_TIMESTAMPS, TCP_RESERVED, TCP_SYN},
    flow::{SideState, SIDE_TIMESTAMPS},
    seq::seq_diff,
};

use super::{Case, Finding, Strength};

/// Within a factor of four of each other (a window a stack may put on its own abort).
pub fn near(a: u16, b: u16) -> bool {
    let (a, b) = (a as u32, b as u32);
    a <= b * 4 && b <= a * 4
}

/// Whether the sender's own window is not known in the units its reset uses: its latest packet
/// was its SYN or SYN-ACK, whose window is never scaled, while its connection's later windows
/// are scaled and shrink with the data it holds unread.
pub fn window_unknown(sender: &SideState) -> bool {
    sender.last_flags & TCP_SYN != 0
}

/// Fingerprint findings.
pub fn check(case: &Case) -> Vec<Finding> {
    let r = case.reset;
    if case.sent_locally {
        return Vec::new();
    }
    let sender = r.flow.side(r.seen.side);
    let mut out = Vec::new();
    let window = r.rst.window;
    if window != 0 {
        if sender.packets > 0 && window == sender.window {
            out.push(Finding::new(
                codes::WINDOW_SENDER,
                Strength::Info,
                format!("window {window} = the sender's last window, as stack aborts carry"),
            ));
        } else if sender.packets > 0 && window_unknown(sender) {
            out.push(Finding::new(
                codes::WINDOW_UNUSUAL,
                Strength::Weak,
                format!("window {window} on a RST after only the sender's SYN (window {}, unscaled): its connection's window, scaled and shrunk by unread data, is not known yet", sender.window),
            ));
        } else if sender.packets > 0 && near(window, sender.window) {
            out.push(Finding::new(
                codes::WINDOW_UNUSUAL,
                Strength::Weak,
                format!("window {window} on a RST, near the sender's own {} (some stacks put their receive space there)", sender.window),
            ));
        } else {
            let last = if sender.packets > 0 {
                format!("the sender's last window is {}", sender.window)
            } else {
                "the sender sent nothing before".into()
            };
            out.push(Finding::new(
                codes::WINDOW_UNUSUAL,
                Strength::Medium,
                format!("window {window} on a RST: reply resets carry 0 and aborts the sender's own window ({last})"),
            ));
        }
    }
    if r.rst.flags & TCP_RESERVED != 0 {
        out.push(Finding::new(
            codes::RESERVED_BITS,
            Strength::Medium,
            format!(
                "reserved TCP bits {:#x} set: no stack sets them",
                (r.rst.flags & TCP_RESERVED) >> 8
            ),
        ));
    }
    if r.rst.payload_len > 0 {
        let text = crate::wire::PayloadView::of(&r.payload).text;
        let shown = text.map(|t| format!(": {t:?}")).unwrap_or_default();
        out.push(Finding::new(
            codes::PAYLOAD,
            Strength::Medium,
            format!("{} bytes of payload on a RST{shown}: devices write their reason there, stacks do not", r.rst.payload_len),
        ));
    }
    if r.rst.tcp_options & OPT_TIMESTAMPS != 0 && sender.flags & SIDE_TIMESTAMPS != 0 {
        let d = seq_diff(r.rst.ts_val, sender.ts_val);
        if d < 0 {
            out.push(Finding::new(
                codes::TS_REGRESSED,
                Strength::Medium,
                format!(
                    "TSval {} is {} ticks older than the sender's last ({}): not the sender's clock (Linux accepts resets regardless of timestamps)",
                    r.rst.ts_val,
                    -d,
                    sender.ts_val
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
    use rst_tracer_common::event::{TCP_ACK, TCP_RST};

    #[test]
    fn windows() {
        let mut r = reset();
        assert!(
            codes(check(&case(&r))).is_empty(),
            "window 0 is what reply resets carry"
        );
        r.rst.window = 500;
        assert_eq!(codes(check(&case(&r))), [("window_sender", Strength::Info)]);
        r.rst.window = 480;
        assert_eq!(
            codes(check(&case(&r))),
            [("window_unusual", Strength::Weak)]
        );
        r.rst.window = 16;
        assert_eq!(
            codes(check(&case(&r))),
            [("window_unusual", Strength::Medium)]
        );
        // After only the sender's SYN-ACK (65,160 unscaled) its connection's window is unknown.
        r.flow.sides[0].last_flags = TCP_SYN | rst_tracer_common::event::TCP_ACK;
        r.flow.sides[0].window = 65_160;
        r.rst.window = 64;
        assert_eq!(
            codes(check(&case(&r))),
            [("window_unusual", Strength::Weak)]
        );
    }

    #[test]
    fn reserved_bits_payload_and_old_timestamps() {
        let mut r = reset();
        r.rst.flags = TCP_RST | TCP_ACK | 0xf00;
        r.rst.payload_len = 13;
        r.payload = bytes::Bytes::from_static(b"Access Denied");
        r.flow.sides[0].flags |= SIDE_TIMESTAMPS;
        r.flow.sides[0].ts_val = 1000;
        r.rst.tcp_options = OPT_TIMESTAMPS;
        r.rst.ts_val = 900;
        let c = case(&r);
        let f = check(&c);
        let got: Vec<&str> = f.iter().map(|f| f.code).collect();
        assert_eq!(got, ["reserved_bits", "payload", "ts_regressed"]);
        assert!(f[1].detail.contains("\"Access Denied\""), "{}", f[1].detail);
    }
}
