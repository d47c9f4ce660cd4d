//! Live tracing: load, attach to the chosen interfaces, stream the rings through the pipeline
//! until a signal or `--duration`, then detach and print the final summary.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{anyhow, Context, Result};
use aya::maps::{MapData, RingBuf};
use rst_tracer_common::names::{MAP_RST_RING, MAP_SAMPLE_RING};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{signal, SignalKind},
    time::{interval_at, sleep, Instant},
};

use super::prog_run::take_ring;
use crate::{
    attach::{self, IngressMode, LoadOptions},
    counters,
    event::{epoch_now_ns, monotonic_now_ns, Clock},
    exporter::{Exporter, MetricsOptions},
    iface, object,
    pipeline::Pipeline,
    privileges,
    report::{self, Format},
    tracepoints::{self, Tracepoints},
};

/// How often resets whose settle window closed are judged and written.
const SETTLE_TICK: Duration = Duration::from_millis(100);
/// How often the traced interfaces are checked for still being there.
const IFACE_CHECK: Duration = Duration::from_secs(1);
/// Records taken from one ring per wake-up before the other ring gets its turn.
const BATCH: usize = 1024;

/// What `rst-tracer live` was asked to do, resolved.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// Interfaces to trace (empty: the default-route interface).
    pub ifaces: Vec<String>,
    /// Ingress hook choice.
    pub ingress: IngressMode,
    /// Summary interval.
    pub interval: Duration,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Output format.
    pub format: Format,
    /// Kernel program settings.
    pub load: LoadOptions,
    /// Where tracefs is, for the kernel notes.
    pub tracefs: PathBuf,
    /// Written once every hook is attached (for scripts and tests that must wait for it).
    pub ready_file: Option<PathBuf>,
    /// Wait for a vanished interface to come back and attach to it again.
    pub reattach: bool,
    /// A pcapng file to write the resets to, beside the output.
    pub pcap_out: Option<PathBuf>,
    /// Prometheus metrics: served while tracing, written at the end.
    pub metrics: MetricsOptions,
}

/// Runs the live tracer, writing records to `out`.
///
/// # Errors
/// Missing privileges, unknown interface, a refused program or attach, an output error, or a
/// traced interface that disappeared (checked every `IFACE_CHECK`; the final summary is still
/// written).
pub async fn run(opts: LiveOptions, out: Box<dyn Write + Send>) -> Result<()> {
    privileges::check()?;
    let object = object::embedded()?;
    let ifaces = iface::default_or_named(&opts.ifaces)?;
    let mut exporter = Exporter::bind(&opts.metrics)?;
    let mut kernel_notes = Vec::new();
    let tracefs = if opts.tracefs == Path::new(tracepoints::TRACEFS) {
        tracepoints::ensure_tracefs().map(Some)
    } else {
        Ok(None)
    };
    let view = match &tracefs {
        Ok(mount) => {
            kernel_notes.extend(mount.as_ref().and_then(|m| m.note()));
            Tracepoints::discover(&opts.tracefs)
        }
        Err(why) => Tracepoints::off(&format!(
            "{why}: local resets carry no kernel reason, received ones no 'accepted'"
        )),
    };
    kernel_notes.extend(view.notes.iter().filter(|n| !n.is_empty()).cloned());
    let load = LoadOptions {
        tracepoints: view.offsets,
        ..opts.load
    };
    let mut ebpf = attach::open(object, &load)?;
    let mut attachments = Vec::new();
    for name in &ifaces {
        attachments.push(attach::attach(&mut ebpf, name, opts.ingress)?);
    }
    log::debug!(
        "verifier cost (instructions processed): {:?}",
        attach::verifier_cost(&ebpf)?
    );
    kernel_notes.extend(attach::attach_tracepoints(&mut ebpf, &view));
    // The tracepoints are attached and their links do not need tracefs: one mounted for them
    // is unmounted again.
    drop(tracefs);
    // The output files are created while the process may still write wherever root may (an
    // operator's --pcap-out in a directory root does not own).
    let sink = exporter.beside(report::sinks(
        opts.format,
        out,
        opts.pcap_out.as_deref(),
        None,
    )?);
    // Everything that needed privileges is done: keep only what reading the maps needs (and,
    // with --reattach, attaching again).
    let kept = if opts.reattach {
        privileges::KEPT_FOR_REATTACH
    } else {
        privileges::KEPT_AFTER_LOAD
    };
    let hooks: Vec<String> = attachments
        .iter()
        .map(|a| format!("{} (ingress {}, egress tc)", a.iface, a.ingress))
        .collect();
    for note in &kernel_notes {
        eprintln!("rst-tracer: kernel notes: {note}");
    }
    if let Some(path) = &opts.ready_file {
        // The ready file says "attached, and holding only what tracing needs", so it is written
        // after the attaching capabilities are gone. CAP_DAC_OVERRIDE is kept for that write
        // (a root process may be told a directory it does not own, as before the drop) and given
        // up right after it.
        let with_dac: Vec<caps::Capability> = kept
            .iter()
            .copied()
            .chain([caps::Capability::CAP_DAC_OVERRIDE])
            .collect();
        privileges::keep_only(&with_dac).context("giving up capabilities after attaching")?;
        write_ready_file(path, &hooks.join("\n"))?;
    }
    privileges::keep_only(kept).context("giving up capabilities after attaching")?;
    // Said once attached and holding only what tracing needs, as the ready file says it.
    eprintln!("rst-tracer: tracing {}", hooks.join(", "));
    // Capabilities are per thread: the metrics thread starts once they are given up.
    exporter.start()?;

    let mut rst_ring = watch(take_ring(&mut ebpf, MAP_RST_RING)?)?;
    let mut sample_ring = watch(take_ring(&mut ebpf, MAP_SAMPLE_RING)?)?;
    let mut pipeline = Pipeline::new(
        sink,
        Clock::now(),
        opts.load.flow_table_size,
        epoch_now_ns(),
    );
    pipeline.set_iface_names(iface::name_of);
    pipeline.set_tracepoints(view);
    pipeline.set_host_addresses(iface::local_addresses());
    let mut ticker = interval_at(Instant::now() + opts.interval, opts.interval);
    let mut settle_ticker = interval_at(Instant::now() + SETTLE_TICK, SETTLE_TICK);
    let mut iface_ticker = interval_at(Instant::now() + IFACE_CHECK, IFACE_CHECK);
    // An interface that disappeared: its hooks went with it, so tracing stops with an error;
    // with --reattach, the names waiting to come back.
    let mut vanished = None;
    let mut waiting: Vec<String> = Vec::new();
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let deadline = sleep(
        opts.duration
            .unwrap_or(Duration::from_secs(100 * 365 * 86_400)),
    );
    tokio::pin!(deadline);

    loop {
        tokio::select! {
            biased;
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = &mut deadline => break,
            // Timers before the rings: they are due once per period, and a busy ring must not
            // hold back summaries.
            _ = settle_ticker.tick() => pipeline.advance(monotonic_now_ns())?,
            _ = iface_ticker.tick() => {
                vanished = check_interfaces(&mut ebpf, &mut attachments, &mut waiting, &opts);
                if vanished.is_some() {
                    break;
                }
            }
            _ = ticker.tick() => {
                // Addresses come and go (DHCP, pods): read them again every interval.
                pipeline.set_host_addresses(iface::local_addresses());
                check_silences(&ebpf, &mut pipeline)?;
                let snap = counters::snapshot(&ebpf, true)?;
                pipeline.summary(epoch_now_ns(), monotonic_now_ns(), &snap)?;
            }
            // At most one batch per wake-up, so a storm in one ring cannot starve the other;
            // the reset ring goes first (biased).
            guard = rst_ring.readable_mut() => {
                let mut guard = guard?;
                if drain(guard.get_inner_mut(), &mut pipeline, BATCH)? {
                    guard.clear_ready();
                }
            }
            guard = sample_ring.readable_mut() => {
                let mut guard = guard?;
                if drain(guard.get_inner_mut(), &mut pipeline, BATCH)? {
                    guard.clear_ready();
                }
            }
        }
        pipeline.flush()?;
    }
    // Detach first, then empty the rings, so the final summary covers everything the hooks saw.
    drop(attachments);
    drain(rst_ring.get_mut(), &mut pipeline, usize::MAX)?;
    drain(sample_ring.get_mut(), &mut pipeline, usize::MAX)?;
    pipeline.settle_all()?;
    check_silences(&ebpf, &mut pipeline)?;
    let snap = counters::snapshot(&ebpf, true)?;
    pipeline.summary(epoch_now_ns(), monotonic_now_ns(), &snap)?;
    pipeline.flush()?;
    exporter.finish()?;
    match vanished {
        Some(why) => Err(anyhow!(why)),
        None => Ok(()),
    }
}

/// Checks that every traced interface is still there. One that disappeared ends the run (the
/// returned message says which), or with `--reattach` waits in `waiting` until an interface of
/// its name appears, which is then attached to.
fn check_interfaces(
    ebpf: &mut aya::Ebpf,
    attachments: &mut Vec<attach::Attachment>,
    waiting: &mut Vec<String>,
    opts: &LiveOptions,
) -> Option<String> {
    let mut i = 0;
    while i < attachments.len() {
        if attachments[i].present() {
            i += 1;
            continue;
        }
        let gone = attachments.remove(i);
        let what = format!(
            "interface {} (index {}) disappeared while tracing, and its hooks with it",
            gone.iface, gone.ifindex
        );
        if !opts.reattach {
            return Some(what);
        }
        eprintln!("rst-tracer: {what}; waiting for it to come back (--reattach)");
        waiting.push(gone.iface.clone());
    }
    waiting.retain(|name| {
        if iface::index_of(name).is_none() {
            return true;
        }
        match attach::attach(ebpf, name, opts.ingress) {
            Ok(a) => {
                eprintln!(
                    "rst-tracer: re-attached to {} (index {}; ingress {}, egress tc)",
                    a.iface, a.ifindex, a.ingress
                );
                attachments.push(a);
                false
            }
            Err(e) => {
                eprintln!("rst-tracer: {name} is back but attaching failed, retrying: {e:#}");
                true
            }
        }
    });
    None
}

/// Writes the ready file without following a symbolic link (this runs as root, and the path may
/// be in a directory others can write): a stale regular file is replaced, a symlink refused,
/// and the new file is created exclusively, so nothing swapped in meanwhile is written through.
fn write_ready_file(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let shown = path.display();
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            anyhow::bail!("--ready-file {shown} is a symbolic link: refusing to write through it")
        }
        Ok(meta) if meta.is_file() => {
            fs::remove_file(path).with_context(|| format!("removing the stale {shown}"))?
        }
        Ok(_) => anyhow::bail!("--ready-file {shown} exists and is not a regular file"),
        Err(_) => {}
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("creating {shown}"))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {shown}"))
}

/// Checks the flows that retransmitted against their kernel entries (one map look-up each).
fn check_silences(ebpf: &aya::Ebpf, pipeline: &mut Pipeline) -> Result<()> {
    let now = monotonic_now_ns();
    for key in pipeline.silence_candidates() {
        if let Some(state) = counters::flow_state(ebpf, &key) {
            pipeline.check_silence(&key, &state, now)?;
        }
    }
    Ok(())
}

/// Registers a ring with the tokio reactor.
fn watch(ring: RingBuf<MapData>) -> Result<AsyncFd<RingBuf<MapData>>> {
    // SAFETY: the ring owns its map fd and the AsyncFd owns the ring, so the fd stays open for
    // as long as it is registered.
    Ok(unsafe { AsyncFd::register(ring) }.map_err(std::io::Error::from)?)
}

/// Hands up to `limit` records waiting in `ring` to the pipeline; true when the ring is empty.
pub fn drain(ring: &mut RingBuf<MapData>, pipeline: &mut Pipeline, limit: usize) -> Result<bool> {
    for _ in 0..limit {
        let Some(item) = ring.next() else {
            return Ok(true);
        };
        pipeline.record(&item)?;
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_file_is_never_written_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        fs::write(&target, "keep me").unwrap();
        let link = dir.path().join("ready-link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = write_ready_file(&link, "s0").unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep me");

        // A dangling link is refused too (it would create the file it points to).
        let nowhere = dir.path().join("nowhere");
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(&nowhere, &dangling).unwrap();
        assert!(write_ready_file(&dangling, "s0").is_err());
        assert!(!nowhere.exists());

        // A new path is created; a stale file from an earlier run is replaced.
        let ready = dir.path().join("ready");
        write_ready_file(&ready, "s0 (ingress tc, egress tc)").unwrap();
        assert_eq!(
            fs::read_to_string(&ready).unwrap(),
            "s0 (ingress tc, egress tc)"
        );
        write_ready_file(&ready, "s1").unwrap();
        assert_eq!(fs::read_to_string(&ready).unwrap(), "s1");
        // A directory is not a ready file.
        assert!(write_ready_file(dir.path(), "s0").is_err());
    }
}
