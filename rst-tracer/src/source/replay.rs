//! Capture replay: every frame of a pcap or pcapng file goes through the same loaded kernel
//! program as live traffic (XDP, by BPF_PROG_TEST_RUN, with the record's capture timestamp as
//! replay metadata), and the events come back through the same rings, decoder, flow table and
//! reports. There is no second parser and no second flow logic.

use std::{
    io::{IsTerminal, Write},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Instant,
};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ipnet::IpNet;
use rst_tracer_common::{counter::Counter, event::TCP_RST, replay::ReplayMeta};

use super::{
    capture::{CaptureError, CaptureReader, Input, RECORD_SNAP},
    link::{self, LinkError},
    prog_run::ProgRun,
};
use crate::{
    attach::LoadOptions,
    counters,
    event::Clock,
    exporter::{Exporter, MetricsOptions},
    pipeline::{summary::ReplayStats, Pipeline},
    privileges,
    report::{
        self,
        context::{ResetContext, SharedContext},
        Format,
    },
};

/// Files smaller than this replay without a progress bar.
const PROGRESS_MIN_BYTES: u64 = 64 << 20;

/// What `rst-tracer replay` was asked to do.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// Capture files, replayed in order as one stream.
    pub files: Vec<PathBuf>,
    /// Output format.
    pub format: Format,
    /// Networks of the traced host: packets from them are egress, to them ingress.
    pub local: Vec<IpNet>,
    /// A pcapng file to write the resets to, beside the output.
    pub pcap_out: Option<PathBuf>,
    /// Packets of each reset's flow to put before it in that file (`--pcap-out-context`).
    pub pcap_out_context: Option<usize>,
    /// Prometheus metrics: served while replaying, written at the end.
    pub metrics: MetricsOptions,
}

impl ReplayStats {
    /// Counts a record not run, by why and its link type.
    fn skip(&mut self, why: LinkError, linktype: i32) {
        let key = match why {
            LinkError::Unsupported(_) => format!("unsupported-{}", link::name(linktype)),
            LinkError::Short => "short".to_string(),
            LinkError::NotIp => format!("not-ip-{}", link::name(linktype)),
        };
        *self.skipped.entry(key).or_default() += 1;
    }
}

/// Replays the files, writing records to `out`. Everything read before a broken record is
/// reported, with the final summary, before the error is returned.
///
/// # Errors
/// Missing privileges or object, an unreadable or broken capture (with its byte offset), or an
/// output error.
pub fn run(opts: &ReplayOptions, out: Box<dyn Write + Send>) -> Result<()> {
    // Every input is opened first, then the program loaded and the outputs created, then the
    // privileges given up: the files (which came from anywhere) are parsed without them. A file that did not open
    // fails in its turn, after the ones before it are replayed.
    let inputs: Vec<(&PathBuf, Result<Input, CaptureError>)> =
        opts.files.iter().map(|p| (p, Input::open(p))).collect();
    let mut exporter = Exporter::bind(&opts.metrics)?;
    let load = LoadOptions {
        keep_replayed_flow: opts.pcap_out_context.is_some(),
        ..LoadOptions::default()
    };
    let mut prog = ProgRun::load(&load)?;
    // The output files too are created before the privileges go (a --pcap-out in a directory
    // root does not own).
    let context = opts
        .pcap_out_context
        .map(|n| Arc::new(Mutex::new(ResetContext::new(n))));
    let sink = exporter.beside(report::sinks(
        opts.format,
        out,
        opts.pcap_out.as_deref(),
        context.clone(),
    )?);
    privileges::keep_only(privileges::KEPT_AFTER_LOAD)
        .context("giving up capabilities before reading the captures")?;
    exporter.start()?;
    // Capture timestamps are already wall-clock time: no clock offset.
    let mut pipeline = Pipeline::new(
        sink,
        Clock {
            monotonic_to_epoch_ns: 0,
        },
        load.flow_table_size,
        0,
    );
    pipeline.set_local_networks(opts.local.clone());
    let mut stats = ReplayStats::default();
    let started = Instant::now();
    let mut failure = None;
    for (path, input) in inputs {
        let run = Run {
            prog: &mut prog,
            pipeline: &mut pipeline,
            context: context.as_ref(),
            stats: &mut stats,
        };
        if let Err(e) = replay_file(path, input, run) {
            failure = Some(e);
            break;
        }
    }
    // Whatever ended the input, the waiting resets get their verdicts, and retransmitting flows
    // are checked for silence at the capture's end.
    pipeline.settle_all()?;
    for key in pipeline.silence_candidates() {
        if let Some(state) = counters::flow_state(prog.ebpf(), &key) {
            pipeline.check_silence(&key, &state, stats.last_ts_ns)?;
        }
    }
    stats.context_evicted = context.map_or(0, |c| {
        c.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .evicted()
    });
    let wall = started.elapsed();
    stats.wall_ms = u64::try_from(wall.as_millis()).unwrap_or(u64::MAX);
    stats.records_per_s = (stats.records as f64 / wall.as_secs_f64().max(1e-3)) as u64;
    let snap = prog.counters()?;
    pipeline.set_replay_stats(stats.clone());
    pipeline.summary(stats.last_ts_ns, stats.last_ts_ns, &snap)?;
    pipeline.flush()?;
    exporter.finish()?;
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// What replaying a file works with.
struct Run<'a> {
    prog: &'a mut ProgRun,
    pipeline: &'a mut Pipeline,
    /// With `--pcap-out-context`: shown every TCP frame, with the flow the program saw.
    context: Option<&'a SharedContext>,
    stats: &'a mut ReplayStats,
}

fn replay_file(path: &PathBuf, input: Result<Input, CaptureError>, run: Run) -> Result<()> {
    let Run {
        prog,
        pipeline,
        context,
        stats,
    } = run;
    let mut reader = CaptureReader::from_input(input?)?;
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let progress = progress_bar(size);
    let mut frame = Vec::with_capacity(RECORD_SNAP + 14);
    while let Some(record) = reader.next_record()? {
        if stats.records == 0 {
            stats.first_ts_ns = record.ts_ns;
            pipeline.begin(record.ts_ns);
        }
        stats.records += 1;
        stats.last_ts_ns = stats.last_ts_ns.max(record.ts_ns);
        match link::to_ethernet(record.linktype, &record.data, &mut frame) {
            Ok(()) => {
                stats.frames += 1;
                prog.xdp(&frame, Some(ReplayMeta::new(record.ts_ns)), 1)
                    .with_context(|| {
                        format!("{}: record at byte {}", path.display(), record.offset)
                    })?;
                if let Some(c) = context {
                    // The flow the program parsed out of this frame, before its reset (if it
                    // is one) reaches the sinks.
                    if let Some(seen) = prog.replayed_flow()? {
                        c.lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .note(
                                seen.key,
                                seen.tcp_flags & TCP_RST != 0,
                                &frame,
                                record.ts_ns,
                            );
                    }
                }
                for event in prog.drain() {
                    pipeline.record(&event)?;
                }
                pipeline.advance(record.ts_ns)?;
            }
            Err(why) => stats.skip(why, record.linktype),
        }
        if let Some(bar) = &progress {
            if stats.records.is_multiple_of(10_000) {
                bar.set_position(reader.offset());
                let rate = stats.records as f64 / bar.elapsed().as_secs_f64().max(1e-3);
                // The kernel's RST counter: one map read, without counting flows.
                let resets = counters::snapshot(prog.ebpf(), false)
                    .map(|c| c.get(Counter::Rst))
                    .unwrap_or(0);
                bar.set_message(format!(
                    "{} records, {} frames, {resets} resets, {rate:.0} records/s",
                    stats.records, stats.frames
                ));
            }
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    Ok(())
}

/// A progress bar on stderr for large files when stderr is a terminal.
fn progress_bar(size: u64) -> Option<ProgressBar> {
    if size < PROGRESS_MIN_BYTES || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{wide_bar} {bytes}/{total_bytes} {percent}% {msg} (eta {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    Some(bar)
}
