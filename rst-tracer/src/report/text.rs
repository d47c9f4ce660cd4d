//! Text sink: one line per reset with its evidence in numbers, and a summary block per interval.

use rst_tracer_common::counter::Counter;
use std::io::{self, Write};

use crate::{
    forensics::{Origin, Strength},
    pipeline::{
        record::{AfterResetRecord, ResetRecord, SampleRecord, SilenceRecord},
        summary::{StatsRecord, SummaryRecord, TallyView},
        Sink,
    },
};

/// Writes records for people.
pub struct TextSink {
    out: Box<dyn Write + Send>,
}

impl TextSink {
    /// A sink writing to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> TextSink {
        TextSink { out }
    }
}

/// A duration in microseconds as people read it: "40 µs", "0.3 ms", "4.1 ms", "2.05 s".
pub fn duration(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 100.0 {
        format!("{:.1} ms", us / 1e3)
    } else {
        format!("{us:.0} µs")
    }
}

/// "x5 (4 suspicious: ttl_mismatch x4, window_unusual x4)".
fn tally(t: &TallyView) -> String {
    let mut out = format!("x{}", t.resets);
    if t.suspicious > 0 || !t.findings.is_empty() {
        let findings: Vec<String> = t
            .findings
            .iter()
            .map(|f| format!("{} x{}", f.code, f.count))
            .collect();
        out += &format!(" ({} suspicious: {})", t.suspicious, findings.join(", "));
    }
    out
}

/// Time of day (UTC) from an RFC 3339 timestamp.
fn time_of_day(ts: &str) -> &str {
    ts.get(11..ts.len().saturating_sub(1)).unwrap_or(ts)
}

/// The one-line text form of a reset.
pub fn reset_line(r: &ResetRecord) -> String {
    let (seen, f) = (&r.seen, &r.seen.flow);
    let mut head = format!(
        "{} {} {} {} {} {}:{} > {}:{} seq {}",
        time_of_day(&seen.ts.to_string()),
        if seen.iface.is_empty() {
            "-"
        } else {
            &seen.iface
        },
        seen.hook,
        seen.direction,
        r.rst.flags,
        f.src,
        f.sport,
        f.dst,
        f.dport,
        r.rst.seq
    );
    if let Some(ack) = r.rst.ack {
        head += &format!(" ack {ack}");
    }
    head += &format!(" win {}", r.rst.window);
    let mut parts = vec![head];

    parts.push(match &r.sender.ttl {
        Some(b) if b.min == b.max => {
            format!("ttl {}, sender's baseline {} (n={})", r.rst.ttl, b.min, b.n)
        }
        Some(b) => format!(
            "ttl {}, sender's baseline {}..{} (n={})",
            r.rst.ttl, b.min, b.max, b.n
        ),
        None => format!("ttl {}, no baseline from the sender", r.rst.ttl),
    });
    parts.push(match (r.rst.ip_id, r.sender.last_ip_id) {
        (None, _) => "no ip id (IPv6)".to_string(),
        (Some(id), Some(prev)) => format!("ip id {id:#06x} after {prev:#06x}"),
        (Some(id), None) => format!("ip id {id:#06x}"),
    });
    parts.push(match r.seq_check.delta {
        Some(0) => "seq = expected".to_string(),
        Some(d) => format!("seq expected{d:+}"),
        None => "seq: sender sent nothing before".to_string(),
    });
    let mut timing = Vec::new();
    if let Some(t) = &r.trigger {
        timing.push(format!(
            "{} after the peer's last segment",
            duration(t.us_before)
        ));
    }
    if let Some(rtt) = r.history.handshake_rtt_us {
        timing.push(format!("handshake rtt {}", duration(rtt)));
    }
    if !timing.is_empty() {
        parts.push(timing.join("; "));
    }
    if r.history.new_flow {
        parts.push("first packet seen of this flow".to_string());
    } else if r.history.midstream {
        parts.push("flow picked up mid-stream".to_string());
    }
    if let Some(p) = &r.payload {
        parts.push(match &p.text {
            Some(text) => format!("payload {} B {:?}", r.rst.payload_len, text),
            None => format!("payload {} B {}", r.rst.payload_len, p.hex),
        });
    }
    if let Some(reason) = &r.kernel.kernel_reason {
        let state = r
            .kernel
            .socket_state
            .as_deref()
            .map(|s| format!(" in {s}"))
            .unwrap_or_default();
        parts.push(format!("kernel: {reason}{state}"));
    }
    match r.kernel.accepted {
        Some(true) => parts.push("a socket here accepted it".into()),
        Some(false) => parts.push("no socket here accepted it".into()),
        None => {}
    }
    parts.push(verdict(r));
    parts.join(" | ")
}

/// Who sent a reset, in words: its origin, and for an on-path one how many hops closer or
/// farther than the claimed sender, when the TTLs tell.
pub(crate) fn origin(r: &ResetRecord) -> String {
    match (r.origin, r.hops_closer) {
        (Origin::OnPath, Some(h)) if h > 0 => {
            format!("on-path, {h} hop{} closer", if h == 1 { "" } else { "s" })
        }
        (Origin::OnPath, Some(h)) if h < 0 => format!(
            "on-path, {} hop{} farther",
            -h,
            if h == -1 { "" } else { "s" }
        ),
        (origin, _) => origin.name().to_string(),
    }
}

/// The verdict part of a reset line: origin, and for a suspicious reset the strongest evidence,
/// for an honest one the mechanism that explains it.
fn verdict(r: &ResetRecord) -> String {
    let origin = origin(r);
    let weighty: Vec<&str> = r
        .findings
        .iter()
        .filter(|f| f.strength > Strength::Info)
        .map(|f| f.code)
        .collect();
    if r.suspicious {
        format!(
            "=> SUSPICIOUS, {origin}: {} [{}]",
            r.findings[0].detail,
            weighty.join(" ")
        )
    } else {
        let why = match (r.explanation, &r.explanation_detail) {
            (Some(code), Some(detail)) => format!(": {code}, {detail}"),
            _ => String::new(),
        };
        if weighty.is_empty() {
            format!("=> {origin}{why}")
        } else {
            format!("=> {origin}{why} [{}]", weighty.join(" "))
        }
    }
}

impl Sink for TextSink {
    fn reset(&mut self, r: &ResetRecord) -> io::Result<()> {
        writeln!(self.out, "{}", reset_line(r))
    }

    fn after_reset(&mut self, r: &AfterResetRecord) -> io::Result<()> {
        let f = &r.seen.flow;
        let who = if r.from_reset_sender {
            "the reset's claimed sender"
        } else {
            "the reset's receiver"
        };
        let when = r
            .us_after_reset
            .map(|us| format!(" {} after the reset", duration(us)))
            .unwrap_or_default();
        writeln!(
            self.out,
            "{} {} after reset: {}:{} > {}:{} {} seq {} len {} from {who}{when}",
            time_of_day(&r.seen.ts.to_string()),
            if r.seen.iface.is_empty() {
                "-"
            } else {
                &r.seen.iface
            },
            f.src,
            f.sport,
            f.dst,
            f.dport,
            r.packet.flags,
            r.packet.seq,
            r.packet.payload_len
        )
    }

    fn sample(&mut self, _r: &SampleRecord) -> io::Result<()> {
        // Samples are counted in the summary; one line each would bury the resets.
        Ok(())
    }

    fn silence(&mut self, r: &SilenceRecord) -> io::Result<()> {
        let f = &r.flow;
        let detail = r
            .findings
            .first()
            .map(|x| x.detail.as_str())
            .unwrap_or_default();
        writeln!(
            self.out,
            "{} silence: {}:{} > {}:{} | {detail}",
            time_of_day(&r.ts.to_string()),
            f.src,
            f.sport,
            f.dst,
            f.dport
        )
    }

    fn summary(&mut self, s: &SummaryRecord, stats: &StatsRecord) -> io::Result<()> {
        let o = &mut self.out;
        writeln!(
            o,
            "-- summary {} (last {:.1} s) --",
            time_of_day(&s.ts.to_string()),
            s.interval_s
        )?;
        writeln!(
            o,
            "   resets {} (total {}), suspicious {}, after-reset packets {}, retransmit samples {}, ttl-change samples {}, silent flows {}",
            s.resets, s.resets_total, s.suspicious, s.after_reset, s.retransmit_samples, s.ttl_change_samples, s.silences
        )?;
        if s.resets_dropped > 0 {
            writeln!(
                o,
                "   resets dropped on a full ring {} (not judged; counted by remote and port below)",
                s.resets_dropped
            )?;
        }
        if !s.by_origin.is_empty() {
            let list: Vec<String> = s
                .by_origin
                .iter()
                .map(|(o, n)| format!("{o} x{n}"))
                .collect();
            writeln!(o, "   resets by origin: {}", list.join(", "))?;
        }
        if !s.top_remote.is_empty() {
            let list: Vec<String> = s
                .top_remote
                .iter()
                .map(|r| format!("{} {}", r.addr, tally(&r.tally)))
                .collect();
            writeln!(o, "   resets by remote endpoint: {}", list.join(", "))?;
        }
        if !s.top_ports.is_empty() {
            let list: Vec<String> = s
                .top_ports
                .iter()
                .map(|p| format!("{} {}", p.port, tally(&p.tally)))
                .collect();
            writeln!(o, "   resets by port: {}", list.join(", "))?;
        }
        for r in &s.local_by_kernel_reason {
            let meaning = r.meaning.map(|m| format!(": {m}")).unwrap_or_default();
            writeln!(
                o,
                "   sent by this host: {} x{} to {}{meaning}",
                r.reason, r.resets, r.remote
            )?;
        }
        if s.not_accepted > 0 {
            writeln!(
                o,
                "   received resets no socket accepted: {} (they did not end a connection)",
                s.not_accepted
            )?;
        }
        writeln!(
            o,
            "   kernel: packets {} tcp {} rst {} | parse errors {} | ring drops {} | rate-limited samples {}",
            stats.counter(Counter::Packets),
            stats.counter(Counter::Tcp),
            stats.counter(Counter::Rst),
            stats.parse_errors,
            stats.ring_drops,
            stats.counter(Counter::SamplesRateLimited)
        )?;
        let ft = &stats.flow_table;
        let opt = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_else(|| "?".into());
        writeln!(
            o,
            "   flow tables: kernel {}/{} entries, {} evicted | userspace {} flows, {} evicted | decode errors {}",
            opt(ft.entries),
            ft.capacity,
            opt(ft.evictions),
            s.flows_tracked,
            s.flow_evictions,
            stats.decode_errors
        )?;
        if let Some(r) = &stats.replay {
            let skipped: Vec<String> = r
                .skipped
                .iter()
                .map(|(why, n)| format!("{why} x{n}"))
                .collect();
            writeln!(
                o,
                "   replay: {} records in {:.2} s ({} records/s), {} run through the kernel program, skipped: {}",
                r.records,
                r.wall_ms as f64 / 1000.0,
                r.records_per_s,
                r.frames,
                if skipped.is_empty() {
                    "none".to_string()
                } else {
                    skipped.join(", ")
                }
            )?;
            if r.context_evicted > 0 {
                writeln!(
                    o,
                    "   pcap-out context: {} sets of packets forgotten to make room",
                    r.context_evicted
                )?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(40.0), "40 µs");
        assert_eq!(duration(300.0), "0.3 ms");
        assert_eq!(duration(4100.0), "4.1 ms");
        assert_eq!(duration(2_050_000.0), "2.05 s");
    }

    /// A writer whose bytes the test can read back.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_summary_names_local_reasons_and_rejected_resets() {
        use crate::{
            counters::CounterSnapshot,
            flows::FlowTableStats,
            forensics::{kernel::KernelFacts, testing::reset, Origin, Verdict},
            pipeline::summary::{StatsRecord, SummaryWindow},
        };
        use rst_tracer_common::event::Direction;

        let verdict = Verdict {
            origin: Origin::Local,
            hops_closer: None,
            suspicious: false,
            findings: Vec::new(),
            explanation: None,
        };
        let mut window = SummaryWindow::new(0);
        let mut sent = reset();
        sent.seen.direction = Direction::Egress;
        let no_socket = KernelFacts {
            kernel_reason: Some("NO_SOCKET".into()),
            ..KernelFacts::default()
        };
        window.reset(&sent, &verdict, &no_socket);
        window.reset(&sent, &verdict, &no_socket);
        let mut received = reset();
        received.seen.direction = Direction::Ingress;
        let rejected = KernelFacts {
            accepted: Some(false),
            ..KernelFacts::default()
        };
        window.reset(&received, &verdict, &rejected);
        let summary = window.take(1_000_000_000, FlowTableStats::default());
        let stats = StatsRecord::of(1_000_000_000, &CounterSnapshot::default(), 1024, 0);
        let out = Shared::default();
        TextSink::new(Box::new(out.clone()))
            .summary(&summary, &stats)
            .unwrap();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains("sent by this host: NO_SOCKET x2 to 0.0.0.0: segments for connections this host does not have"),
            "{text}"
        );
        assert!(
            text.contains("received resets no socket accepted: 1"),
            "{text}"
        );
    }

    #[test]
    fn time_of_day_strips_date_and_zone() {
        assert_eq!(
            time_of_day("2026-11-22T12:00:01.234567Z"),
            "12:00:01.234567"
        );
    }
}
