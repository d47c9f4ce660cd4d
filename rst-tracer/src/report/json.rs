//! JSON Lines sink: one object per line, lines buffered in the sink and handed to the output
//! whole, so a flush never leaves half a line.
//!
//! The per-packet records (resets, after-reset packets, samples, silences) write themselves
//! through [`WriteJson`]: keys are literals that need no escaping, numbers go through `itoa` and
//! `zmij` (serde_json's own float formatter, so the digits are the same), and strings are
//! checked for characters to escape in one pass before they are copied. Through serde_json every
//! key was escaped byte by byte and every address and time went through `core::fmt`, which cost
//! twice the whole pipeline. The summary and stats records, once per interval, go through serde.

use std::{
    io::{self, Write},
    net::IpAddr,
};

use serde::Serialize;

use super::{
    record::{AfterResetRecord, ResetRecord, SampleRecord, SilenceRecord},
    summary::{StatsRecord, SummaryRecord},
    Sink,
};

/// A value that writes itself as JSON text.
pub trait WriteJson {
    /// Appends this value's JSON text to `out`.
    fn write_json(&self, out: &mut Vec<u8>);
}

/// A JSON object being written: `{`, then each field with its key, then [`Object::end`].
pub struct Object<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> Object<'a> {
    /// Opens an object in `out`.
    pub fn begin(out: &'a mut Vec<u8>) -> Object<'a> {
        out.push(b'{');
        Object { out, empty: true }
    }

    /// Writes a field. `key` is a literal of the schema: letters, digits and `_` only, so it is
    /// written as it is.
    #[inline(always)]
    pub fn field<V: WriteJson + ?Sized>(&mut self, key: &'static str, value: &V) -> &mut Self {
        const MAX_KEY: usize = 32;
        let key = key.as_bytes();
        debug_assert!(
            key.len() <= MAX_KEY && !key.iter().copied().any(needs_escape),
            "key {key:?}"
        );
        // `,"key":` as one piece, without the comma before the first field. Inlined, with the
        // key a literal and the chain of fields known, the piece and its length are constants:
        // one copy of known length instead of four small writes.
        let mut piece = [0; MAX_KEY + 4];
        piece[..2].copy_from_slice(b",\"");
        piece[2..2 + key.len()].copy_from_slice(key);
        piece[2 + key.len()..4 + key.len()].copy_from_slice(b"\":");
        let from = usize::from(self.empty);
        self.empty = false;
        self.out.extend_from_slice(&piece[from..4 + key.len()]);
        value.write_json(self.out);
        self
    }

    /// Closes the object.
    pub fn end(&mut self) {
        self.out.push(b'}');
    }
}

/// Implements [`WriteJson`] for a struct as an object of the fields named, in that order, each
/// under its own name (as `#[derive(Serialize)]` would write it).
macro_rules! json_object {
    ($t:ty { $($field:ident),* $(,)? }) => {
        impl WriteJson for $t {
            fn write_json(&self, out: &mut Vec<u8>) {
                Object::begin(out)$(.field(stringify!($field), &self.$field))*.end();
            }
        }
    };
}
pub(super) use json_object;

/// Whether JSON needs `b` escaped inside a string.
fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Writes `s` as a JSON string, escaped as serde_json escapes: `\"`, `\\`, `\b`, `\f`, `\n`,
/// `\r`, `\t`, other control characters as `\u00xx`, everything else as it is.
fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.push(b'"');
    if any_needs_escape(bytes) {
        write_escaped(out, bytes);
    } else {
        out.extend_from_slice(bytes);
    }
    out.push(b'"');
}

/// Lowercase hex digits by value.
pub(super) const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Whether any of `bytes` needs escaping. Escapes are rare, so the common case is one pass
/// over 16-byte blocks with no early exit inside a block, which the compiler vectorises; a
/// string shorter than a block is checked as a block padded with spaces.
fn any_needs_escape(bytes: &[u8]) -> bool {
    const BLOCK: usize = 16;
    let escapes = |block: &[u8]| block.iter().fold(false, |any, &b| any | needs_escape(b));
    if bytes.len() < BLOCK {
        let mut block = [b' '; BLOCK];
        block[..bytes.len()].copy_from_slice(bytes);
        return escapes(&block);
    }
    // Whole blocks, then the last BLOCK bytes for what the whole blocks left.
    bytes.chunks_exact(BLOCK).any(escapes) || escapes(&bytes[bytes.len() - BLOCK..])
}

fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !needs_escape(b) {
            continue;
        }
        out.extend_from_slice(&bytes[run..i]);
        run = i + 1;
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX_DIGITS[usize::from(b >> 4)],
                HEX_DIGITS[usize::from(b & 0xf)],
            ]),
        }
    }
    out.extend_from_slice(&bytes[run..]);
}

/// A name from the schema's fixed vocabulary (record types, hooks, directions, origins, finding
/// codes, flag and option names): ASCII letters, digits, `_`, `-` and `|`, written without the
/// escape check.
#[derive(Clone, Copy, Debug)]
pub struct Name<'a>(pub &'a str);

impl WriteJson for Name<'_> {
    fn write_json(&self, out: &mut Vec<u8>) {
        debug_assert!(!self.0.bytes().any(needs_escape), "name {:?}", self.0);
        out.push(b'"');
        out.extend_from_slice(self.0.as_bytes());
        out.push(b'"');
    }
}

impl WriteJson for str {
    fn write_json(&self, out: &mut Vec<u8>) {
        write_str(out, self);
    }
}

impl WriteJson for String {
    fn write_json(&self, out: &mut Vec<u8>) {
        write_str(out, self);
    }
}

impl WriteJson for bool {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if *self { b"true" } else { b"false" });
    }
}

// Integers in decimal, as serde_json writes them (it uses itoa too).
macro_rules! write_json_integers {
    ($($t:ty),*) => {$(
        impl WriteJson for $t {
            fn write_json(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(itoa::Buffer::new().format(*self).as_bytes());
            }
        }
    )*};
}
write_json_integers!(u8, u16, u32, u64, usize, i32, i64);

impl WriteJson for f64 {
    /// As serde_json writes it: the shortest digits that read back the same, `null` when not
    /// finite. Whole numbers below 1e15 (most microsecond counts) are the integer and `.0`,
    /// written without the float formatter.
    fn write_json(&self, out: &mut Vec<u8>) {
        let v = *self;
        let whole = v as u64;
        if whole as f64 == v && v < 1e15 && v.is_sign_positive() {
            out.extend_from_slice(itoa::Buffer::new().format(whole).as_bytes());
            out.extend_from_slice(b".0");
        } else if v.is_finite() {
            out.extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes());
        } else {
            out.extend_from_slice(b"null");
        }
    }
}

impl WriteJson for IpAddr {
    /// As text (`10.0.0.1`, `2001:db8::1`).
    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'"');
        match self {
            IpAddr::V4(a) => {
                // Room for the longest, `255.255.255.255`, written in place and cut to length:
                // no copy of a length known only at run time.
                let start = out.len();
                out.extend_from_slice(&[0; 15]);
                let text = &mut out[start..];
                let mut len = 0;
                for (i, octet) in a.octets().into_iter().enumerate() {
                    if i > 0 {
                        text[len] = b'.';
                        len += 1;
                    }
                    if octet >= 100 {
                        text[len] = b'0' + octet / 100;
                        len += 1;
                    }
                    if octet >= 10 {
                        text[len] = b'0' + octet / 10 % 10;
                        len += 1;
                    }
                    text[len] = b'0' + octet % 10;
                    len += 1;
                }
                out.truncate(start + len);
            }
            // Hex digits, colons and dots: nothing to escape.
            IpAddr::V6(a) => write!(out, "{a}").expect("a Vec takes every byte"),
        }
        out.push(b'"');
    }
}

impl<T: WriteJson + ?Sized> WriteJson for &T {
    fn write_json(&self, out: &mut Vec<u8>) {
        (**self).write_json(out);
    }
}

impl<T: WriteJson> WriteJson for Option<T> {
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Some(v) => v.write_json(out),
            None => out.extend_from_slice(b"null"),
        }
    }
}

impl<T: WriteJson> WriteJson for [T] {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        for (i, v) in self.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            v.write_json(out);
        }
        out.push(b']');
    }
}

impl<T: WriteJson> WriteJson for Vec<T> {
    fn write_json(&self, out: &mut Vec<u8>) {
        self.as_slice().write_json(out);
    }
}

/// Writes each record as one JSON object per line.
pub struct JsonSink {
    out: Box<dyn Write + Send>,
    /// Whole lines not yet handed to `out`: each line is written here, and they go to `out` in
    /// one write when they pass `buffer` bytes and at every flush, so `out` never sees half a
    /// line (and the sink is its own output buffer: no line is copied a second time).
    lines: Vec<u8>,
    buffer: usize,
}

impl JsonSink {
    /// A sink writing to `out` (unbuffered: the sink buffers) in writes of about `buffer` bytes.
    pub fn new(out: Box<dyn Write + Send>, buffer: usize) -> JsonSink {
        JsonSink {
            out,
            lines: Vec::with_capacity(buffer + 4096),
            buffer,
        }
    }

    /// Writes one line: `write` appends the object to the buffered lines.
    fn line(&mut self, write: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> io::Result<()> {
        let start = self.lines.len();
        if let Err(e) = write(&mut self.lines) {
            self.lines.truncate(start);
            return Err(e);
        }
        self.lines.push(b'\n');
        if self.lines.len() >= self.buffer {
            self.write_lines()?;
        }
        Ok(())
    }

    /// Hands the buffered lines to `out`.
    fn write_lines(&mut self) -> io::Result<()> {
        self.out.write_all(&self.lines)?;
        self.lines.clear();
        Ok(())
    }

    fn record(&mut self, r: &impl WriteJson) -> io::Result<()> {
        self.line(|line| {
            r.write_json(line);
            Ok(())
        })
    }

    fn serialized(&mut self, r: &impl Serialize) -> io::Result<()> {
        self.line(|line| Ok(serde_json::to_writer(line, r)?))
    }
}

impl Sink for JsonSink {
    fn reset(&mut self, r: &ResetRecord) -> io::Result<()> {
        self.record(r)
    }

    fn after_reset(&mut self, r: &AfterResetRecord) -> io::Result<()> {
        self.record(r)
    }

    fn sample(&mut self, r: &SampleRecord) -> io::Result<()> {
        self.record(r)
    }

    fn silence(&mut self, r: &SilenceRecord) -> io::Result<()> {
        self.record(r)
    }

    fn summary(&mut self, s: &SummaryRecord, stats: &StatsRecord) -> io::Result<()> {
        self.serialized(s)?;
        self.serialized(stats)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_lines()?;
        self.out.flush()
    }
}

impl Drop for JsonSink {
    /// Writes what is still buffered, as a `BufWriter` does, ignoring errors (there is no one to
    /// report them to).
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(v: &(impl WriteJson + ?Sized)) -> String {
        let mut out = Vec::new();
        v.write_json(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let every_ascii: String = (0u8..=0x7f).map(char::from).collect();
        for s in [
            every_ascii.as_str(),
            "plain",
            "",
            "a \"quoted\" \\ path\n",
            "µs → 2001:db8::1",
        ] {
            assert_eq!(json(s), serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn numbers_and_addresses_as_serde_json_writes_them() {
        let mut floats = vec![0.0, -0.0, 370.0, 12.5, 1e-7, 1.0 / 3.0, -2.0, f64::NAN];
        floats.extend([
            f64::INFINITY,
            9_007_199_254_740_992.0,
            999_999_999_999_999.9,
        ]);
        for exp in 0..18 {
            let p = 10f64.powi(exp);
            floats.extend([p - 1.0, p, p + 1.0, p * 2.5, p / 1000.0 + 0.001]);
        }
        for f in floats {
            assert_eq!(json(&f), serde_json::to_string(&f).unwrap(), "{f}");
        }
        for n in [0, 7, 10, 99, 100, 12_345, 1 << 40, u64::MAX] {
            assert_eq!(json(&n), n.to_string());
        }
        for n in [0, -1, -100, i64::MIN, i64::MAX] {
            assert_eq!(json(&n), n.to_string());
        }
        for a in [
            "0.0.0.0",
            "255.255.255.255",
            "9.99.100.199",
            "255.10.0.1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "::",
        ] {
            let a: IpAddr = a.parse().unwrap();
            assert_eq!(json(&a), serde_json::to_string(&a).unwrap());
        }
    }

    #[test]
    fn objects_arrays_and_nulls() {
        let mut out = Vec::new();
        Object::begin(&mut out)
            .field("a", &1u8)
            .field("b", &None::<u32>)
            .field("c", &vec![true, false])
            .field("d", &Vec::<u8>::new())
            .end();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":1,"b":null,"c":[true,false],"d":[]}"#
        );
    }
}

/// The JSON of every per-packet record type, pinned field by field: the expected lines are
/// written from the inputs below (see the comments), not copied from the sink's output.
#[cfg(test)]
mod schema {
    use std::{
        io,
        sync::{Arc, Mutex},
    };

    use bytes::Bytes;
    use rst_tracer_common::{
        event::{
            Direction, Hook, PacketInfo, IP_DF, IP_V6, OPT_SACK, OPT_TIMESTAMPS, TCP_ACK, TCP_RST,
            TCP_SYN,
        },
        flow::{FlowKey, Side, SideState, FAMILY_IPV4, FAMILY_IPV6, SIDE_SEEN, SIDE_TIMESTAMPS},
    };

    use crate::{
        event::Sample,
        forensics::{
            explain::{Explanation, Mechanism},
            stack::StackFacts,
            testing::{self, MS, T},
            Finding, Origin, Strength, Verdict,
        },
        report::{
            json::JsonSink,
            record::{AfterResetRecord, ResetRecord, SampleRecord, SilenceRecord},
            Sink,
        },
    };

    /// 2026-11-22T13:03:44.049732610Z in ns since the epoch.
    const WALL: u64 = 1_795_352_624_049_732_610;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The lines `write` makes a JSON sink write.
    fn lines(write: impl FnOnce(&mut JsonSink)) -> Vec<String> {
        let out = Shared::default();
        let mut sink = JsonSink::new(Box::new(out.clone()), 4096);
        write(&mut sink);
        sink.flush().unwrap();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_string).collect()
    }

    fn v4(a: [u8; 4]) -> [u32; 4] {
        [u32::from_ne_bytes(a), 0, 0, 0]
    }

    /// 10.0.0.1:40000 (the client, side Lo) <-> 10.0.0.2:443.
    fn v4_key() -> FlowKey {
        let (key, side) = FlowKey::canonical(
            FAMILY_IPV4,
            &v4([10, 0, 0, 1]),
            40000,
            &v4([10, 0, 0, 2]),
            443,
        );
        assert_eq!(side, Side::Lo);
        key
    }

    #[test]
    fn a_reset_with_every_part() {
        // The forensics test reset (see `testing::reset`): from the client at T, seen at WALL.
        let mut r = testing::reset();
        r.seen.key = v4_key();
        r.seen.ts_ns = WALL;
        r.seen.hook = Hook::TcIngress;
        r.seen.direction = Direction::Ingress;
        r.rst.ip_flags = IP_DF;
        r.rst.payload_len = 3;
        r.rst.tcp_options = OPT_SACK | OPT_TIMESTAMPS;
        r.rst.ts_val = 77;
        r.payload = Bytes::from_static(b"a\"b");
        let verdict = Verdict {
            origin: Origin::OnPath,
            hops_closer: Some(2),
            suspicious: true,
            findings: vec![Finding::new(
                "ttl_mismatch",
                Strength::Strong,
                "ttl 62\tvs \"64\"",
            )],
            explanation: Some(Explanation {
                mechanism: Mechanism::Abort,
                detail: "its own socket aborted".into(),
            }),
        };
        let stack = StackFacts {
            kernel_reason: Some("NO_SOCKET".into()),
            socket_state: Some("TCP_CLOSE".into()),
            accepted: Some(false),
            ..StackFacts::default()
        };
        let iface = "eth0";
        let got = lines(|s| {
            s.reset(&ResetRecord::of(&r, iface, verdict, stack))
                .unwrap()
        });
        let expected = [
            r#"{"type":"reset","ts":"2026-11-22T13:03:44.049732Z","ts_ns":1795352624049732610,"iface":"eth0","hook":"tc-ingress","direction":"ingress","#,
            r#""flow":{"src":"10.0.0.1","sport":40000,"dst":"10.0.0.2","dport":443},"#,
            // RST|ACK = 0x14; options in bit order; payload "a\"b" is printable.
            r#""rst":{"seq":1000,"ack":5000,"flags":"RST|ACK","flags_raw":20,"window":0,"ttl":62,"ip_id":101,"df":true,"payload_len":3,"options":["sack","timestamps"],"ts_val":77},"#,
            r#""payload":{"captured":3,"hex":"612262","text":"a\"b"},"#,
            // The client: 5 packets at TTL 62, last 20 ms before the reset.
            r#""sender":{"seen":true,"packets":5,"bytes":0,"retransmits":0,"ttl":{"last":62,"min":62,"max":62,"n":5},"last_ip_id":100,"seq_next":1000,"last_ack":5000,"window":500,"timestamps":false,"ts_val":null,"last_seen_us_ago":20000.0,"leg_rtt_us":null},"#,
            // The server: 4 packets at TTL 64, last 10 ms before it.
            r#""receiver":{"seen":true,"packets":4,"bytes":0,"retransmits":0,"ttl":{"last":64,"min":64,"max":64,"n":4},"last_ip_id":7,"seq_next":5000,"last_ack":1000,"window":1000,"timestamps":false,"ts_val":null,"last_seen_us_ago":10000.0,"leg_rtt_us":null},"#,
            r#""trigger":{"us_before":10000.0,"seq":5000,"ack":1000,"len":0,"flags":"ACK","ip_id":7},"#,
            // SYN at T-100 ms, its ACK at T-80 ms; the flow's first_ns is 0.
            r#""history":{"new_flow":false,"midstream":false,"handshake":true,"handshake_rtt_us":20000.0,"resets_before":0,"age_us":1000000.0},"#,
            r#""seq_check":{"expected":1000,"delta":0,"receiver_seq_next":5000,"ack_delta":0},"#,
            r#""origin":"on-path","hops_closer":2,"suspicious":true,"findings":[{"code":"ttl_mismatch","detail":"ttl 62\tvs \"64\""}],"#,
            r#""explanation":"abort","explanation_detail":"its own socket aborted","kernel_reason":"NO_SOCKET","socket_state":"TCP_CLOSE","accepted":false}"#,
        ]
        .concat();
        assert_eq!(got, [expected]);
    }

    #[test]
    fn a_reset_with_nothing_known() {
        // No history on either side, no payload, no ACK, a fresh flow; replayed, no interface.
        let mut r = testing::reset();
        r.seen.key = v4_key();
        r.seen.new_flow = true;
        r.flow = Default::default();
        r.rst = PacketInfo {
            seq: 7,
            flags: TCP_RST,
            ttl: 64,
            ..PacketInfo::default()
        };
        let verdict = Verdict {
            origin: Origin::Unknown,
            hops_closer: None,
            suspicious: false,
            findings: Vec::new(),
            explanation: None,
        };
        let iface = "";
        let got = lines(|s| {
            s.reset(&ResetRecord::of(&r, iface, verdict, StackFacts::default()))
                .unwrap()
        });
        let side = r#"{"seen":false,"packets":0,"bytes":0,"retransmits":0,"ttl":null,"last_ip_id":null,"seq_next":null,"last_ack":null,"window":null,"timestamps":false,"ts_val":null,"last_seen_us_ago":null,"leg_rtt_us":null}"#;
        let expected = [
            r#"{"type":"reset","ts":"1970-01-01T00:00:01.000000Z","ts_ns":1000000000,"iface":"","hook":"replay","direction":"unknown","#,
            r#""flow":{"src":"10.0.0.1","sport":40000,"dst":"10.0.0.2","dport":443},"#,
            r#""rst":{"seq":7,"ack":null,"flags":"RST","flags_raw":4,"window":0,"ttl":64,"ip_id":0,"df":false,"payload_len":0,"options":[],"ts_val":null},"#,
            r#""payload":null,"sender":"#,
            side,
            r#","receiver":"#,
            side,
            r#","trigger":null,"history":{"new_flow":true,"midstream":false,"handshake":false,"handshake_rtt_us":null,"resets_before":0,"age_us":0.0},"#,
            r#""seq_check":{"expected":null,"delta":null,"receiver_seq_next":null,"ack_delta":null},"#,
            r#""origin":"unknown","hops_closer":null,"suspicious":false,"findings":[],"explanation":null,"explanation_detail":null,"kernel_reason":null,"socket_state":null,"accepted":null}"#,
        ]
        .concat();
        assert_eq!(got, [expected]);
    }

    /// An IPv6 packet from the server [2001:db8::2]:443 to [2001:db8::1]:40000, 3 ms after T.
    fn v6_sample() -> Sample {
        let client = [
            u32::from_ne_bytes([0x20, 0x01, 0x0d, 0xb8]),
            0,
            0,
            u32::from_ne_bytes([0, 0, 0, 1]),
        ];
        let server = [
            u32::from_ne_bytes([0x20, 0x01, 0x0d, 0xb8]),
            0,
            0,
            u32::from_ne_bytes([0, 0, 0, 2]),
        ];
        let (key, side) = FlowKey::canonical(FAMILY_IPV6, &server, 443, &client, 40000);
        let mut s = testing::after(side, 3, PacketInfo::default());
        s.seen.key = key;
        s.seen.ts_ns = WALL;
        s.seen.hook = Hook::Xdp;
        s.seen.direction = Direction::Ingress;
        s.packet = PacketInfo {
            seq: 4_000_000_000,
            ack: 9,
            flags: TCP_SYN | TCP_ACK | 0x100,
            window: 65535,
            ttl: 255,
            ip_flags: IP_V6,
            ..PacketInfo::default()
        };
        s.sender = SideState {
            packets: 12,
            bytes: 1 << 40,
            retransmits: 3,
            flags: SIDE_SEEN | SIDE_TIMESTAMPS,
            ttl_last: 255,
            ttl_min: 250,
            ttl_max: 255,
            ttl_samples: 12,
            seq_next: 4_000_000_000,
            last_flags: 0,
            window: 65535,
            ts_val: 123_456,
            last_ns: T + 3 * MS - 1_500,
            leg_min_ns: 1_500,
            ..SideState::default()
        };
        s
    }

    #[test]
    fn samples_of_both_kinds() {
        let s = v6_sample();
        let iface = "eth1";
        let got = lines(|sink| {
            sink.sample(&SampleRecord::of("retransmit", &s, iface))
                .unwrap();
            sink.sample(&SampleRecord::of("ttl_change", &s, iface))
                .unwrap();
        });
        let body = [
            r#""ts":"2026-11-22T13:03:44.049732Z","ts_ns":1795352624049732610,"iface":"eth1","hook":"xdp","direction":"ingress","#,
            r#""flow":{"src":"2001:db8::2","sport":443,"dst":"2001:db8::1","dport":40000},"#,
            // SYN|ACK and reserved bit 0x100; IPv6: no IP ID.
            r#""packet":{"seq":4000000000,"ack":9,"flags":"SYN|ACK|RES(0x1)","flags_raw":274,"window":65535,"ttl":255,"ip_id":null,"df":false,"payload_len":0,"options":[],"ts_val":null},"#,
            // Seen, timestamps, no ACK on its last packet, last seen 1.5 µs before.
            r#""sender":{"seen":true,"packets":12,"bytes":1099511627776,"retransmits":3,"ttl":{"last":255,"min":250,"max":255,"n":12},"last_ip_id":null,"seq_next":4000000000,"last_ack":null,"window":65535,"timestamps":true,"ts_val":123456,"last_seen_us_ago":1.5,"leg_rtt_us":1.5}}"#,
        ]
        .concat();
        assert_eq!(
            got,
            [
                format!(r#"{{"type":"retransmit",{body}"#),
                format!(r#"{{"type":"ttl_change",{body}"#)
            ]
        );
    }

    #[test]
    fn after_reset_packets_with_and_without_their_reset() {
        let s = v6_sample();
        let iface = "eth1";
        let got = lines(|sink| {
            // The flow's reset came from this packet's sender 2 ms (T + 1 ms) before it.
            sink.after_reset(&AfterResetRecord::of(
                &s,
                iface,
                Some((s.seen.side, T + MS)),
            ))
            .unwrap();
            // The reset came from the other side; then, one this run did not see.
            sink.after_reset(&AfterResetRecord::of(
                &s,
                iface,
                Some((s.seen.side.other(), T + MS)),
            ))
            .unwrap();
            sink.after_reset(&AfterResetRecord::of(&s, iface, None))
                .unwrap();
        });
        let head = [
            r#"{"type":"after_reset","ts":"2026-11-22T13:03:44.049732Z","ts_ns":1795352624049732610,"iface":"eth1","hook":"xdp","direction":"ingress","#,
            r#""flow":{"src":"2001:db8::2","sport":443,"dst":"2001:db8::1","dport":40000},"#,
            r#""packet":{"seq":4000000000,"ack":9,"flags":"SYN|ACK|RES(0x1)","flags_raw":274,"window":65535,"ttl":255,"ip_id":null,"df":false,"payload_len":0,"options":[],"ts_val":null},"#,
        ]
        .concat();
        assert_eq!(
            got,
            [
                format!(r#"{head}"from_reset_sender":true,"us_after_reset":2000.0}}"#),
                format!(r#"{head}"from_reset_sender":false,"us_after_reset":2000.0}}"#),
                format!(r#"{head}"from_reset_sender":false,"us_after_reset":null}}"#),
            ]
        );
    }

    #[test]
    fn a_silence() {
        let finding = Finding::new(
            "oneway_silence",
            Strength::Medium,
            "3 retransmissions and no answer",
        );
        let got = lines(|s| {
            s.silence(&SilenceRecord::of(&v4_key(), Side::Hi, 3, finding, WALL))
                .unwrap()
        });
        // Side Hi (the server) kept sending toward the client.
        let expected = [
            r#"{"type":"silence","ts":"2026-11-22T13:03:44.049732Z","ts_ns":1795352624049732610,"#,
            r#""flow":{"src":"10.0.0.2","sport":443,"dst":"10.0.0.1","dport":40000},"retransmits":3,"#,
            r#""findings":[{"code":"oneway_silence","detail":"3 retransmissions and no answer"}]}"#,
        ]
        .concat();
        assert_eq!(got, [expected]);
    }
}
