//! JSON Lines sink: one object per line, lines buffered in the sink and handed to the output
//! whole, so a flush never leaves half a line.
//!
//! The per-packet records (resets, after-reset packets, samples, silences) write themselves
//! through [`WriteJson`] (see [`crate::wire::json`] for why not through serde). The summary and
//! stats records, once per interval, go through serde.

use std::io::{self, Write};

use serde::Serialize;

use crate::{
    pipeline::{
        record::{AfterResetRecord, ResetRecord, SampleRecord, SilenceRecord},
        summary::{StatsRecord, SummaryRecord},
        Sink,
    },
    wire::json::WriteJson,
};

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
            kernel::KernelFacts,
            testing::{self, MS, T},
            Finding, Origin, Strength, Verdict,
        },
        pipeline::{
            record::{AfterResetRecord, ResetRecord, SampleRecord, SilenceRecord},
            Sink,
        },
        report::json::JsonSink,
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
        let kernel = KernelFacts {
            kernel_reason: Some("NO_SOCKET".into()),
            socket_state: Some("TCP_CLOSE".into()),
            accepted: Some(false),
            ..KernelFacts::default()
        };
        let iface = "eth0";
        let got = lines(|s| {
            s.reset(&ResetRecord::of(&r, iface, verdict, kernel))
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
            s.reset(&ResetRecord::of(&r, iface, verdict, KernelFacts::default()))
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
