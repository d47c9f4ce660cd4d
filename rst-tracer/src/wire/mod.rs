//! The bottom layer: how the output writes the wire's values, for every layer above. TCP flag
//! and option names, payload views, RFC 3339 times and microsecond differences here; JSON text
//! in [`json`].

pub mod json;

use std::fmt;

use rst_tracer_common::event::{
    OPT_MALFORMED, OPT_MPTCP, OPT_MSS, OPT_OTHER, OPT_SACK, OPT_SACK_OK, OPT_TIMESTAMPS,
    OPT_WSCALE, TCP_ACK, TCP_CWR, TCP_ECE, TCP_FIN, TCP_PSH, TCP_RESERVED, TCP_RST, TCP_SYN,
    TCP_URG,
};
use serde::Serialize;

use json::{json_object, Name, Object, WriteJson, HEX_DIGITS};

/// TCP flags as text, e.g. `RST|ACK`; reserved bits show as `RES(0x…)`, no flag as `none`.
/// Written straight into the output: no string is built per packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlagNames(pub u16);

impl FlagNames {
    /// The longest text: every flag and the reserved bits.
    const MAX_TEXT: usize = "SYN|FIN|RST|PSH|ACK|URG|ECE|CWR|RES(0xf)".len();

    /// The text, written into `buf`.
    fn text(self, buf: &mut [u8; Self::MAX_TEXT]) -> &str {
        const NAMES: [(u16, &str); 8] = [
            (TCP_SYN, "SYN"),
            (TCP_FIN, "FIN"),
            (TCP_RST, "RST"),
            (TCP_PSH, "PSH"),
            (TCP_ACK, "ACK"),
            (TCP_URG, "URG"),
            (TCP_ECE, "ECE"),
            (TCP_CWR, "CWR"),
        ];
        let flags = self.0;
        let mut len = 0;
        let mut put = |piece: &[u8]| {
            buf[len..len + piece.len()].copy_from_slice(piece);
            len += piece.len();
        };
        let mut sep: &[u8] = b"";
        for (bit, name) in NAMES {
            if flags & bit != 0 {
                put(sep);
                put(name.as_bytes());
                sep = b"|";
            }
        }
        if flags & TCP_RESERVED != 0 {
            put(sep);
            put(b"RES(0x");
            put(&[HEX_DIGITS[usize::from((flags & TCP_RESERVED) >> 8)], b')']);
        } else if sep.is_empty() {
            put(b"none");
        }
        std::str::from_utf8(&buf[..len]).expect("flag names are ASCII")
    }
}

impl fmt::Display for FlagNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text(&mut [0; Self::MAX_TEXT]))
    }
}

impl WriteJson for FlagNames {
    fn write_json(&self, out: &mut Vec<u8>) {
        Name(self.text(&mut [0; Self::MAX_TEXT])).write_json(out);
    }
}

/// TCP options present, as a list of names (`["mss", "sack_ok"]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionNames(pub u8);

impl OptionNames {
    /// The names of the options present, in option-bit order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        const NAMES: [(u8, &str); 8] = [
            (OPT_MSS, "mss"),
            (OPT_WSCALE, "wscale"),
            (OPT_SACK_OK, "sack_ok"),
            (OPT_SACK, "sack"),
            (OPT_TIMESTAMPS, "timestamps"),
            (OPT_MPTCP, "mptcp"),
            (OPT_OTHER, "other"),
            (OPT_MALFORMED, "malformed"),
        ];
        NAMES
            .into_iter()
            .filter(move |(bit, _)| self.0 & bit != 0)
            .map(|(_, n)| n)
    }
}

impl WriteJson for OptionNames {
    fn write_json(&self, out: &mut Vec<u8>) {
        if self.0 == 0 {
            // Most packets after the handshake carry none.
            out.extend_from_slice(b"[]");
            return;
        }
        out.push(b'[');
        for (i, name) in self.names().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            Name(name).write_json(out);
        }
        out.push(b']');
    }
}

/// Printable or hex view of a RST's payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayloadView {
    /// Bytes captured (at most 64).
    pub captured: usize,
    /// The captured bytes in hex.
    pub hex: String,
    /// The captured bytes as text, when they are printable.
    pub text: Option<String>,
}

impl PayloadView {
    /// View of payload bytes.
    pub fn of(bytes: &[u8]) -> PayloadView {
        let printable = !bytes.is_empty()
            && bytes
                .iter()
                .all(|b| b.is_ascii_graphic() || matches!(b, b' ' | b'\r' | b'\n' | b'\t'));
        PayloadView {
            captured: bytes.len(),
            hex: bytes.iter().map(|b| format!("{b:02x}")).collect(),
            text: printable.then(|| String::from_utf8_lossy(bytes).into_owned()),
        }
    }
}

json_object!(PayloadView {
    captured,
    hex,
    text
});

/// Microseconds from `earlier` to `later` (kernel ns), never negative.
pub fn us_between(earlier: u64, later: u64) -> f64 {
    later.saturating_sub(earlier) as f64 / 1000.0
}

/// A time as RFC 3339 with microseconds, UTC (`2026-11-22T13:03:44.049732Z`), from nanoseconds
/// since the epoch. Written straight into the output: no string is built per record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rfc3339(pub u64);

impl Rfc3339 {
    /// Length of the text: `YYYY-MM-DDTHH:MM:SS.ffffffZ` (a u64 of nanoseconds ends in 2554).
    const LEN: usize = 27;

    /// The text, as ASCII bytes.
    fn text(self) -> [u8; Self::LEN] {
        let secs = self.0 / 1_000_000_000;
        let (year, month, day) = civil_date(secs / 86_400);
        let time = secs % 86_400;
        let mut t = *b"0000-00-00T00:00:00.000000Z";
        put_digits(&mut t[0..4], year);
        put_digits(&mut t[5..7], month);
        put_digits(&mut t[8..10], day);
        put_digits(&mut t[11..13], time / 3_600);
        put_digits(&mut t[14..16], time % 3_600 / 60);
        put_digits(&mut t[17..19], time % 60);
        put_digits(&mut t[20..26], self.0 % 1_000_000_000 / 1_000);
        t
    }
}

/// Decimal digit pairs, `00` to `99`.
const DIGIT_PAIRS: [u8; 200] = {
    let mut pairs = [0; 200];
    let mut i = 0;
    while i < 100 {
        pairs[2 * i] = b'0' + (i / 10) as u8;
        pairs[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    pairs
};

/// Writes `v` in decimal into all of `digits`, two at a time, with leading zeros (digits that
/// do not fit are dropped).
fn put_digits(digits: &mut [u8], mut v: u64) {
    let mut end = digits.len();
    while end >= 2 {
        let pair = (v % 100) as usize * 2;
        v /= 100;
        digits[end - 2..end].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        end -= 2;
    }
    if end == 1 {
        digits[0] = b'0' + (v % 10) as u8;
    }
}

/// Year, month (1-12) and day (1-31) of the proleptic Gregorian calendar, `days` after
/// 1970-01-01 (Howard Hinnant's `civil_from_days`: eras of 400 years, years from March).
fn civil_date(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let march_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * march_month + 2) / 5 + 1;
    let month = if march_month < 10 {
        march_month + 3
    } else {
        march_month - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.text()).expect("digits and separators"))
    }
}

impl WriteJson for Rfc3339 {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'"');
        out.extend_from_slice(&self.text());
        out.push(b'"');
    }
}

impl Serialize for Rfc3339 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_names_include_reserved_bits() {
        assert_eq!(FlagNames(TCP_RST | TCP_ACK).to_string(), "RST|ACK");
        assert_eq!(FlagNames(TCP_RST | 0x100).to_string(), "RST|RES(0x1)");
        assert_eq!(FlagNames(0x100).to_string(), "RES(0x1)");
        assert_eq!(FlagNames(0).to_string(), "none");
    }

    #[test]
    fn rfc3339_dates_across_leap_days_and_centuries() {
        for (ns, text) in [
            (0, "1970-01-01T00:00:00.000000Z"),
            (1_795_352_624_049_732_610, "2026-11-22T13:03:44.049732Z"),
            (1_795_352_624_000_001_999, "2026-11-22T13:03:44.000001Z"),
            (951_782_399_999_999_000, "2000-02-28T23:59:59.999999Z"),
            (951_782_400_000_000_000, "2000-02-29T00:00:00.000000Z"),
            (1_735_689_599_123_456_789, "2024-12-31T23:59:59.123456Z"),
            (4_107_542_400_000_000_000, "2100-03-01T00:00:00.000000Z"),
            (u64::MAX, "2554-07-21T23:34:33.709551Z"),
        ] {
            assert_eq!(Rfc3339(ns).to_string(), text, "{ns}");
        }
    }

    #[test]
    fn payload_text_only_when_printable() {
        let p = PayloadView::of(b"Access Denied");
        assert_eq!(p.text.as_deref(), Some("Access Denied"));
        assert_eq!(p.hex, "4163636573732044656e696564");
        assert_eq!(PayloadView::of(&[0, 1, 0xff]).text, None);
    }
}
