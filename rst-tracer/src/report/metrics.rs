//! Prometheus metrics: a sink that counts the records the pipeline hands it, beside the output
//! format (through [`super::Tee`]), so the totals are those of the JSON stream of the same run.
//!
//! Two kinds of numbers, each kept the way prometheus-client means it:
//!
//! - what this sink counts itself, record by record (resets by origin, suspicion and direction,
//!   findings by code, local resets by kernel reason, ...): `Family`s of `Counter`s, updated as
//!   each record arrives;
//! - what others count (the kernel's counters, the flow tables, the settle window): mirrored
//!   from the last `stats`/`summary` pair by a [`Collector`] that encodes that snapshot at each
//!   scrape, as `ConstCounter`s and `ConstGauge`s. They change once per summary (every
//!   `--interval` live, at the end in replay) and are absent before the first.
//!
//! No label takes an address or a port: each label has a bounded set of values (the origins,
//! directions, finding codes and explanations are fixed lists; kernel reasons are the kernel's
//! enum, and past [`MAX_KERNEL_REASONS`] distinct ones the rest count as `other`).

use std::{
    collections::HashSet,
    fmt, io,
    sync::{Arc, Mutex},
};

use prometheus_client::{
    collector::Collector,
    encoding::{
        prometheus_text, DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric,
    },
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        MetricType,
    },
    registry::{Metric, Registry},
};
use rst_tracer_common::counter::Counter as KernelCounter;

use crate::pipeline::{
    record::{AfterResetRecord, ResetRecord, SampleRecord, SilenceRecord},
    summary::{StatsRecord, SummaryRecord},
    Sink, USER_FLOW_CAPACITY,
};

/// Distinct kernel reasons the `reason` label takes; past them a reset counts as `other`. The
/// kernel's `enum sk_rst_reason` has about 40 names, so only a kernel that invents unnamed
/// numbers (`reason N`) reaches it.
pub const MAX_KERNEL_REASONS: usize = 64;
/// The `reason` label of the resets past [`MAX_KERNEL_REASONS`] (the kernel's names are upper
/// case: no real reason is called this).
const OTHER_REASON: &str = "other";

/// Labels of `rst_tracer_resets_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResetLabels {
    /// `peer`, `local`, `on-path`, `duplicate` or `unknown`.
    pub origin: &'static str,
    /// The verdict's `suspicious`.
    pub suspicious: bool,
    /// `ingress`, `egress` or `unknown`.
    pub direction: &'static str,
}

/// Labels of `rst_tracer_findings_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: &'static str,
}

/// Labels of `rst_tracer_kernel_reasons_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

/// Labels of `rst_tracer_explanations_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExplanationLabel {
    explanation: &'static str,
}

/// Labels of `rst_tracer_samples_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// Labels of `rst_tracer_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

/// Labels of the kernel counters mirrored from `stats.counters`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CounterLabel {
    counter: &'static str,
}

/// Labels of the flow-table metrics: `kernel` or `userspace`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabel {
    table: &'static str,
}

/// Everything the metrics show: the registry (what `/metrics` encodes) and the handles the sink
/// updates. Shared between the sink and whoever serves or writes the exposition.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    resets: Family<ResetLabels, Counter>,
    findings: Family<CodeLabel, Counter>,
    kernel_reasons: Family<ReasonLabel, Counter>,
    explanations: Family<ExplanationLabel, Counter>,
    after_reset: Counter,
    samples: Family<KindLabel, Counter>,
    silences: Counter,
    resets_dropped: Counter,
    tally_evictions: Counter,
    last_summary: Arc<LastSummary>,
}

/// A new metric of type `M` at zero, registered in `registry` as `name` with `help`.
fn register<M: Metric + Clone + Default>(registry: &mut Registry, name: &str, help: &str) -> M {
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric registered, at zero; `rst_tracer_build_info` carries this build's version.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("rst_tracer");
        let resets: Family<ResetLabels, Counter> = register(
            &mut registry,
            "resets",
            "Resets judged, by origin, whether suspicious, and direction (the reset records)",
        );
        let findings: Family<CodeLabel, Counter> = register(
            &mut registry,
            "findings",
            "Findings in the judged resets, by code (each reset's findings list)",
        );
        let kernel_reasons: Family<ReasonLabel, Counter> = register(
            &mut registry,
            "kernel_reasons",
            "Resets this host sent, by the kernel's reason (kernel notes; other: past 64 names)",
        );
        let explanations: Family<ExplanationLabel, Counter> = register(
            &mut registry,
            "explanations",
            "Resets an honest mechanism explains, by explanation",
        );
        let after_reset: Counter = register(
            &mut registry,
            "after_reset_packets",
            "First packets from a side after a reset",
        );
        let samples: Family<KindLabel, Counter> = register(
            &mut registry,
            "samples",
            "Retransmission and TTL-change samples, by kind",
        );
        let silences: Counter = register(
            &mut registry,
            "silences",
            "Flows one side of which retransmitted into silence (silence records)",
        );
        let resets_dropped: Counter = register(
            &mut registry,
            "resets_dropped",
            "Resets whose events the kernel dropped on a full ring: never judged, counted per flow",
        );
        let tally_evictions: Counter = register(
            &mut registry,
            "tally_evictions",
            "Keys dropped from the summaries' bounded per-remote and per-reason tallies",
        );
        let build_info: Family<VersionLabel, Gauge> = register(
            &mut registry,
            "build_info",
            "Always 1; the version of this rst-tracer build",
        );
        build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        let last_summary = Arc::new(LastSummary::default());
        registry.register_collector(Box::new(last_summary.clone()));
        Metrics {
            registry,
            resets,
            findings,
            kernel_reasons,
            explanations,
            after_reset,
            samples,
            silences,
            resets_dropped,
            tally_evictions,
            last_summary,
        }
    }

    /// The exposition in the Prometheus text format (version 0.0.4: what every scraper, the
    /// node exporter's textfile collector and `promtool check metrics` read).
    ///
    /// # Errors
    /// Only when the encoder fails (it writes into a `String`, which does not).
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut text = String::new();
        prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// The `Content-Type` of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// What the last summary said, as the values the metrics mirror.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct SummaryValues {
    /// Every kernel counter by name, in index order.
    kernel: Vec<(&'static str, u64)>,
    parse_errors: u64,
    ring_drops: u64,
    decode_errors: u64,
    kernel_flow_capacity: u32,
    kernel_flow_entries: Option<u64>,
    kernel_flow_evictions: Option<u64>,
    user_flows: usize,
    user_flow_evictions: u64,
    resets_waiting: usize,
    settled_early: u64,
    ipid_forgotten_early: u64,
    kernel_notes_elsewhere: u64,
    ts_ns: u64,
}

impl SummaryValues {
    fn of(s: &SummaryRecord, stats: &StatsRecord) -> SummaryValues {
        SummaryValues {
            kernel: KernelCounter::ALL
                .iter()
                .map(|c| (c.name(), stats.counter(*c)))
                .collect(),
            parse_errors: stats.parse_errors,
            ring_drops: stats.ring_drops,
            decode_errors: stats.decode_errors,
            kernel_flow_capacity: stats.flow_table.capacity,
            kernel_flow_entries: stats.flow_table.entries,
            kernel_flow_evictions: stats.flow_table.evictions,
            user_flows: s.flows_tracked,
            user_flow_evictions: s.flow_evictions,
            resets_waiting: stats.resets_waiting,
            settled_early: stats.settled_early,
            ipid_forgotten_early: stats.ipid_forgotten_early,
            kernel_notes_elsewhere: stats.kernel_notes_elsewhere,
            ts_ns: stats.ts.0,
        }
    }
}

/// The last summary's values, encoded at each scrape (nothing before the first summary).
#[derive(Debug, Default)]
struct LastSummary(Mutex<Option<SummaryValues>>);

impl LastSummary {
    fn set(&self, values: SummaryValues) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(values);
    }
}

/// One labelled metric of a collector: its descriptor, then a value per label set.
fn encode_family<L: EncodeLabelSet, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    values: impl IntoIterator<Item = (L, M)>,
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in values {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One metric of a collector without labels.
fn encode_one(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl EncodeMetric,
) -> fmt::Result {
    value.encode(encoder.encode_descriptor(name, help, None, value.metric_type())?)
}

/// A counter without labels.
fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    encode_one(encoder, name, help, ConstCounter::new(value))
}

/// A gauge without labels.
fn gauge<N: EncodeGaugeValue + fmt::Debug + Send + Sync + 'static>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: N,
) -> fmt::Result {
    encode_one(encoder, name, help, ConstGauge::new(value))
}

/// A flow-table metric per table that has the value.
fn per_table<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    kernel: Option<M>,
    userspace: M,
) -> fmt::Result {
    let tables = [("kernel", kernel), ("userspace", Some(userspace))];
    encode_family(
        encoder,
        name,
        help,
        kind,
        tables
            .into_iter()
            .filter_map(|(table, v)| Some((TableLabel { table }, v?))),
    )
}

impl Collector for LastSummary {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let Some(v) = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
            return Ok(());
        };
        let e = &mut encoder;
        encode_family(
            e,
            "kernel_events",
            "The kernel program's counters by name (as stats.counters), at the last summary",
            MetricType::Counter,
            v.kernel
                .iter()
                .map(|(counter, n)| (CounterLabel { counter }, ConstCounter::new(*n))),
        )?;
        counter(
            e,
            "ring_drops",
            "Events lost to full ring buffers (the *_dropped kernel counters)",
            v.ring_drops,
        )?;
        counter(
            e,
            "parse_errors",
            "Malformed or truncated packets (the err_* kernel counters)",
            v.parse_errors,
        )?;
        counter(
            e,
            "decode_errors",
            "Ring records userspace could not decode",
            v.decode_errors,
        )?;
        per_table(
            e,
            "flow_table_entries",
            "Flows in the kernel's and userspace's flow tables",
            MetricType::Gauge,
            v.kernel_flow_entries.map(|n| ConstGauge::new(n as i64)),
            ConstGauge::new(v.user_flows as i64),
        )?;
        per_table(
            e,
            "flow_table_capacity",
            "Capacity of the kernel's and userspace's flow tables",
            MetricType::Gauge,
            Some(ConstGauge::new(i64::from(v.kernel_flow_capacity))),
            ConstGauge::new(USER_FLOW_CAPACITY as i64),
        )?;
        per_table(
            e,
            "flow_table_evictions",
            "Flows evicted to keep the kernel's (LRU) and userspace's flow tables bounded",
            MetricType::Counter,
            v.kernel_flow_evictions.map(ConstCounter::new),
            ConstCounter::new(v.user_flow_evictions),
        )?;
        gauge(
            e,
            "resets_waiting",
            "Resets waiting in the settle window for their verdict (its backlog)",
            v.resets_waiting as i64,
        )?;
        counter(
            e,
            "settled_early",
            "Resets judged before their settle window closed because too many waited",
            v.settled_early,
        )?;
        counter(
            e,
            "ipid_forgotten_early",
            "Reset IP IDs dropped from the full share registry before their 30 s",
            v.ipid_forgotten_early,
        )?;
        counter(
            e,
            "kernel_notes_elsewhere",
            "Kernel notes left out as another network namespace's",
            v.kernel_notes_elsewhere,
        )?;
        gauge(
            e,
            "stats_timestamp_seconds",
            "When the summary these values come from was taken (Unix time)",
            v.ts_ns as f64 / 1e9,
        )
    }
}

/// The sink: counts each record into a shared [`Metrics`].
pub struct MetricsSink {
    metrics: Arc<Metrics>,
    /// The kernel reasons that have a label value of their own (at most
    /// [`MAX_KERNEL_REASONS`]).
    reasons: HashSet<String>,
}

impl MetricsSink {
    /// A sink counting into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> MetricsSink {
        MetricsSink {
            metrics,
            reasons: HashSet::new(),
        }
    }

    /// The label value of kernel reason `reason`: its name while the names fit.
    fn reason_label(&mut self, reason: &str) -> String {
        if self.reasons.contains(reason) {
            return reason.to_string();
        }
        if self.reasons.len() < MAX_KERNEL_REASONS {
            self.reasons.insert(reason.to_string());
            return reason.to_string();
        }
        OTHER_REASON.to_string()
    }
}

impl Sink for MetricsSink {
    fn reset(&mut self, r: &ResetRecord) -> io::Result<()> {
        let m = &self.metrics;
        m.resets
            .get_or_create(&ResetLabels {
                origin: r.origin.name(),
                suspicious: r.suspicious,
                direction: r.seen.direction,
            })
            .inc();
        for f in &r.findings {
            m.findings.get_or_create(&CodeLabel { code: f.code }).inc();
        }
        if let Some(explanation) = r.explanation {
            m.explanations
                .get_or_create(&ExplanationLabel { explanation })
                .inc();
        }
        if let Some(reason) = &r.kernel.kernel_reason {
            let reason = self.reason_label(reason);
            self.metrics
                .kernel_reasons
                .get_or_create(&ReasonLabel { reason })
                .inc();
        }
        Ok(())
    }

    fn after_reset(&mut self, _: &AfterResetRecord) -> io::Result<()> {
        self.metrics.after_reset.inc();
        Ok(())
    }

    fn sample(&mut self, r: &SampleRecord) -> io::Result<()> {
        self.metrics
            .samples
            .get_or_create(&KindLabel { kind: r.kind })
            .inc();
        Ok(())
    }

    fn silence(&mut self, _: &SilenceRecord) -> io::Result<()> {
        self.metrics.silences.inc();
        Ok(())
    }

    fn summary(&mut self, s: &SummaryRecord, stats: &StatsRecord) -> io::Result<()> {
        self.metrics.resets_dropped.inc_by(s.resets_dropped);
        self.metrics.tally_evictions.inc_by(s.tally_evictions);
        self.metrics.last_summary.set(SummaryValues::of(s, stats));
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rst_tracer_common::event::Direction;

    use super::*;
    use crate::{
        counters::CounterSnapshot,
        event::testing::reset,
        flows::FlowTableStats,
        forensics::{
            explain::{Explanation, Mechanism},
            kernel::KernelFacts,
            Finding, Origin, Strength, Verdict,
        },
        pipeline::summary::SummaryWindow,
    };

    /// The value of the series `series` (name and labels exactly as encoded) in `text`.
    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// Hands the sink one reset with this verdict, seen in `direction`, sent with `reason`.
    fn judged(
        sink: &mut MetricsSink,
        origin: Origin,
        suspicious: bool,
        direction: Direction,
        codes: &[&'static str],
        explanation: Option<Mechanism>,
        reason: Option<&str>,
    ) {
        let mut r = reset();
        r.seen.direction = direction;
        let verdict = Verdict {
            origin,
            hops_closer: None,
            suspicious,
            findings: codes
                .iter()
                .map(|c| Finding::new(c, Strength::Strong, "detail"))
                .collect(),
            explanation: explanation.map(|mechanism| Explanation {
                mechanism,
                detail: "detail".into(),
            }),
        };
        let kernel = KernelFacts {
            kernel_reason: reason.map(str::to_string),
            ..KernelFacts::default()
        };
        sink.reset(&ResetRecord::of(&r, "eth0", verdict, kernel))
            .unwrap();
    }

    #[test]
    fn resets_count_by_origin_suspicion_and_direction_and_findings_by_code() {
        let metrics = Arc::new(Metrics::new());
        let mut sink = MetricsSink::new(metrics.clone());
        for _ in 0..3 {
            judged(
                &mut sink,
                Origin::OnPath,
                true,
                Direction::Ingress,
                &["ttl_mismatch", "ipid_jump"],
                None,
                None,
            );
        }
        judged(
            &mut sink,
            Origin::Local,
            false,
            Direction::Egress,
            &["midstream_reset"],
            Some(Mechanism::NoSocket),
            Some("NO_SOCKET"),
        );
        judged(
            &mut sink,
            Origin::Local,
            false,
            Direction::Egress,
            &[],
            Some(Mechanism::Abort),
            Some("TCP_ABORT_ON_CLOSE"),
        );
        judged(
            &mut sink,
            Origin::Peer,
            false,
            Direction::Unknown,
            &["ttl_consistent", "ipid_jump"],
            Some(Mechanism::Abort),
            None,
        );
        let text = metrics.encode().unwrap();
        let resets = |labels: &str| value(&text, &format!("rst_tracer_resets_total{{{labels}}}"));
        assert_eq!(
            resets(r#"origin="on-path",suspicious="true",direction="ingress""#),
            Some(3.0),
            "{text}"
        );
        assert_eq!(
            resets(r#"origin="local",suspicious="false",direction="egress""#),
            Some(2.0)
        );
        assert_eq!(
            resets(r#"origin="peer",suspicious="false",direction="unknown""#),
            Some(1.0)
        );
        // No series for what never happened.
        assert_eq!(
            resets(r#"origin="on-path",suspicious="false",direction="ingress""#),
            None
        );
        // One series of `name` with label `label` = `v`.
        let one = |name: &str, label: &str, v: &str| {
            value(
                &text,
                &format!("rst_tracer_{name}_total{{{label}=\"{v}\"}}"),
            )
        };
        assert_eq!(one("findings", "code", "ttl_mismatch"), Some(3.0));
        assert_eq!(one("findings", "code", "ipid_jump"), Some(4.0));
        assert_eq!(one("findings", "code", "midstream_reset"), Some(1.0));
        assert_eq!(one("findings", "code", "ttl_consistent"), Some(1.0));
        assert_eq!(one("kernel_reasons", "reason", "NO_SOCKET"), Some(1.0));
        assert_eq!(
            one("kernel_reasons", "reason", "TCP_ABORT_ON_CLOSE"),
            Some(1.0)
        );
        assert_eq!(one("explanations", "explanation", "abort"), Some(2.0));
        assert_eq!(one("explanations", "explanation", "no_socket"), Some(1.0));
        assert_eq!(
            value(
                &text,
                &format!(
                    "rst_tracer_build_info{{version=\"{}\"}}",
                    env!("CARGO_PKG_VERSION")
                )
            ),
            Some(1.0)
        );
        // Nothing of the kernel's before the first summary.
        assert!(!text.contains("rst_tracer_kernel_events_total"), "{text}");
        assert!(!text.contains("rst_tracer_resets_waiting"), "{text}");
    }

    #[test]
    fn kernel_reasons_past_the_bound_count_as_other() {
        let metrics = Arc::new(Metrics::new());
        let mut sink = MetricsSink::new(metrics.clone());
        for i in 0..MAX_KERNEL_REASONS + 10 {
            let reason = format!("reason {i}");
            judged(
                &mut sink,
                Origin::Local,
                false,
                Direction::Egress,
                &[],
                None,
                Some(&reason),
            );
        }
        // A reason that has its label keeps it past the bound.
        judged(
            &mut sink,
            Origin::Local,
            false,
            Direction::Egress,
            &[],
            None,
            Some("reason 0"),
        );
        let text = metrics.encode().unwrap();
        let series = text
            .lines()
            .filter(|l| l.starts_with("rst_tracer_kernel_reasons_total{"))
            .count();
        assert_eq!(series, MAX_KERNEL_REASONS + 1, "{text}");
        assert_eq!(
            value(&text, r#"rst_tracer_kernel_reasons_total{reason="other"}"#),
            Some(10.0)
        );
        assert_eq!(
            value(
                &text,
                r#"rst_tracer_kernel_reasons_total{reason="reason 0"}"#
            ),
            Some(2.0)
        );
    }

    #[test]
    fn a_summary_gives_the_kernel_counters_and_the_tables_as_they_were_then() {
        let metrics = Arc::new(Metrics::new());
        let mut sink = MetricsSink::new(metrics.clone());
        let mut values = vec![0u64; KernelCounter::COUNT as usize];
        values[KernelCounter::Packets as usize] = 1000;
        values[KernelCounter::RstDropped as usize] = 5;
        values[KernelCounter::NotesDropped as usize] = 2;
        values[KernelCounter::ErrTcpTruncated as usize] = 3;
        values[KernelCounter::FlowInserts as usize] = 40;
        let snap = CounterSnapshot {
            values,
            flow_entries: Some(30),
            ..CounterSnapshot::default()
        };
        let mut stats = StatsRecord::of(2_500_000_000, &snap, 65_536, 7);
        stats.resets_waiting = 4;
        stats.settled_early = 1;
        let mut window = SummaryWindow::new(0);
        let mut summary = window.take(
            2_500_000_000,
            FlowTableStats {
                tracked: 12,
                evictions: 9,
            },
        );
        summary.resets_dropped = 6;
        sink.summary(&summary, &stats).unwrap();
        // A second window's dropped resets add up; the snapshot is replaced.
        stats.resets_waiting = 0;
        sink.summary(&summary, &stats).unwrap();
        let text = metrics.encode().unwrap();
        let v = |series: &str| value(&text, series);
        assert_eq!(
            v(r#"rst_tracer_kernel_events_total{counter="packets"}"#),
            Some(1000.0),
            "{text}"
        );
        assert_eq!(
            v(r#"rst_tracer_kernel_events_total{counter="rst_dropped"}"#),
            Some(5.0)
        );
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("rst_tracer_kernel_events_total{"))
                .count(),
            KernelCounter::COUNT as usize
        );
        for (series, expected) in [
            ("rst_tracer_ring_drops_total", 7.0),
            ("rst_tracer_parse_errors_total", 3.0),
            ("rst_tracer_decode_errors_total", 7.0),
            (r#"rst_tracer_flow_table_entries{table="kernel"}"#, 30.0),
            (r#"rst_tracer_flow_table_entries{table="userspace"}"#, 12.0),
            (
                r#"rst_tracer_flow_table_capacity{table="kernel"}"#,
                65_536.0,
            ),
            (
                r#"rst_tracer_flow_table_evictions_total{table="kernel"}"#,
                10.0,
            ),
            (
                r#"rst_tracer_flow_table_evictions_total{table="userspace"}"#,
                9.0,
            ),
            ("rst_tracer_resets_waiting", 0.0),
            ("rst_tracer_settled_early_total", 1.0),
            ("rst_tracer_resets_dropped_total", 12.0),
            ("rst_tracer_stats_timestamp_seconds", 2.5),
        ] {
            assert_eq!(v(series), Some(expected), "{series}");
        }
    }

    #[test]
    fn a_kernel_flow_table_not_counted_has_no_series() {
        let metrics = Arc::new(Metrics::new());
        let mut sink = MetricsSink::new(metrics.clone());
        let stats = StatsRecord::of(0, &CounterSnapshot::default(), 1024, 0);
        let summary = SummaryWindow::new(0).take(0, FlowTableStats::default());
        sink.summary(&summary, &stats).unwrap();
        let text = metrics.encode().unwrap();
        // Capacity is always known; entries and evictions only when counted.
        assert_eq!(
            value(&text, r#"rst_tracer_flow_table_entries{table="kernel"}"#),
            None,
            "{text}"
        );
        assert_eq!(
            value(
                &text,
                r#"rst_tracer_flow_table_evictions_total{table="kernel"}"#
            ),
            None
        );
        assert_eq!(
            value(&text, r#"rst_tracer_flow_table_capacity{table="kernel"}"#),
            Some(1024.0)
        );
    }

    #[test]
    fn samples_after_reset_packets_and_silences_are_counted() {
        let metrics = Arc::new(Metrics::new());
        let mut sink = MetricsSink::new(metrics.clone());
        let s =
            crate::event::testing::after(rst_tracer_common::flow::Side::Lo, 1, Default::default());
        for _ in 0..2 {
            sink.sample(&SampleRecord::of("retransmit", &s, "eth0"))
                .unwrap();
        }
        sink.sample(&SampleRecord::of("ttl_change", &s, "eth0"))
            .unwrap();
        sink.after_reset(&AfterResetRecord::of(&s, "eth0", None))
            .unwrap();
        let finding = Finding::new("oneway_silence", Strength::Medium, "detail");
        sink.silence(&SilenceRecord::of(&s.seen.key, s.seen.side, 3, finding, 0))
            .unwrap();
        let text = metrics.encode().unwrap();
        let v = |series: &str| value(&text, series);
        assert_eq!(
            v(r#"rst_tracer_samples_total{kind="retransmit"}"#),
            Some(2.0)
        );
        assert_eq!(
            v(r#"rst_tracer_samples_total{kind="ttl_change"}"#),
            Some(1.0)
        );
        assert_eq!(v("rst_tracer_after_reset_packets_total"), Some(1.0));
        assert_eq!(v("rst_tracer_silences_total"), Some(1.0));
    }
}
