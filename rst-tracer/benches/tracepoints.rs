//! Cost of the kernel notes under a reset storm (`cargo xtask bench`): refused connects on
//! loopback, each making one tcp_send_reset (NO_SOCKET) and one tcp_receive_reset (the
//! connecting socket accepts the RST). Each round times the storm without the tracepoints, then
//! with them attached and their ring drained, and reports the ratio; the kernel's own run-time
//! statistics (BPF_ENABLE_STATS) give each tracepoint program's cost per event. Writes the
//! `tracepoints` section of `summary.json` in `RST_TRACER_BENCH_OUT`.

#[path = "common/summary.rs"]
mod summary;
use summary::median;

use std::{
    env,
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};
use aya::{
    maps::RingBuf,
    sys::{enable_stats, Stats},
    Ebpf,
};
use rst_tracer::{
    attach::{self, LoadOptions},
    tracepoints::{self, Tracepoints},
};
use rst_tracer_common::names::{MAP_RST_RING, TRACEPOINT_PROGRAMS};
use serde_json::json;

/// Refused connects per phase of a round.
const STORM: u32 = 5_000;

/// A loopback port nobody listens on.
fn closed_port() -> Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

/// Wall time per refused connect over `n` connects to `port`.
fn storm(port: u16, n: u32) -> Result<f64> {
    let start = Instant::now();
    for _ in 0..n {
        match TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            other => bail!("connect to closed port {port}: expected refused, got {other:?}"),
        }
    }
    Ok(start.elapsed().as_nanos() as f64 / n as f64)
}

/// The loaded object with every kernel-note tracepoint attached, and a thread draining its ring.
struct Attached {
    ebpf: Ebpf,
    stop: Arc<AtomicBool>,
    drained: Arc<AtomicU64>,
    drainer: Option<std::thread::JoinHandle<()>>,
}

impl Attached {
    fn new(object: &[u8], view: &Tracepoints) -> Result<Attached> {
        let opts = LoadOptions {
            tracepoints: view.offsets,
            ..LoadOptions::default()
        };
        let mut ebpf = attach::open(object, &opts)?;
        let notes = attach::attach_tracepoints(&mut ebpf, view);
        if !notes.is_empty() {
            bail!("kernel-note tracepoints not attached: {notes:?}");
        }
        let map = ebpf
            .take_map(MAP_RST_RING)
            .ok_or_else(|| anyhow!("no {MAP_RST_RING}"))?;
        let mut ring = RingBuf::try_from(map)?;
        let stop = Arc::new(AtomicBool::new(false));
        let drained = Arc::new(AtomicU64::new(0));
        let (s, d) = (stop.clone(), drained.clone());
        let drainer = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let mut n = 0;
                while ring.next().is_some() {
                    n += 1;
                }
                d.fetch_add(n, Ordering::Relaxed);
                if n == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        });
        Ok(Attached {
            ebpf,
            stop,
            drained,
            drainer: Some(drainer),
        })
    }

    /// (run time ns, run count) of each tracepoint program so far.
    fn run_stats(&self) -> Result<Vec<(u64, u64)>> {
        TRACEPOINT_PROGRAMS
            .iter()
            .map(|(name, _)| {
                let info = self
                    .ebpf
                    .program(name)
                    .ok_or_else(|| anyhow!("no program {name}"))?
                    .info()?;
                Ok((info.run_time().as_nanos() as u64, info.run_count()))
            })
            .collect()
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.drainer.take() {
            let _ = t.join();
        }
    }
}

fn main() -> Result<()> {
    let path = env::var_os("RST_TRACER_EBPF_OBJECT")
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("RST_TRACER_EBPF_OBJECT is not set: run `cargo xtask bench`"))?;
    let object = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    // Unmounted at the end if this mounted it.
    let _tracefs = tracepoints::ensure_tracefs().map_err(|e| anyhow!("tracefs: {e}"))?;
    let view = Tracepoints::discover(Path::new(tracepoints::TRACEFS));
    if !(view.send && view.receive && view.retransmit && view.synack) {
        bail!(
            "this kernel lacks part of the kernel notes: {:?}",
            view.notes
        );
    }
    let rounds = summary::rounds();
    let port = closed_port()?;
    let _stats = enable_stats(Stats::RunTime).context("BPF_ENABLE_STATS")?;

    let (mut without, mut with, mut per_event) = (Vec::new(), Vec::new(), Vec::new());
    let (mut events, mut drained) = (0u64, 0u64);
    for _ in 0..rounds {
        without.push(storm(port, STORM)?);
        let attached = Attached::new(&object, &view)?;
        let before = attached.run_stats()?;
        with.push(storm(port, STORM)?);
        let after = attached.run_stats()?;
        std::thread::sleep(Duration::from_millis(20));
        drained += attached.drained.load(Ordering::Relaxed);
        // Send and receive reset programs: the two that fire in this storm.
        let (ns, count) = before
            .iter()
            .zip(&after)
            .take(2)
            .fold((0, 0), |(ns, n), (b, a)| (ns + a.0 - b.0, n + a.1 - b.1));
        events += count;
        if count > 0 {
            per_event.push(ns as f64 / count as f64);
        }
    }
    let (without, with) = (median(without), median(with));
    let tp_ns = if per_event.is_empty() {
        bail!("the tracepoint programs never ran during the storm");
    } else {
        median(per_event)
    };
    println!("kernel notes under a reset storm ({rounds} rounds of {STORM} refused connects)");
    println!("  refused connect, no tracepoints (baseline)  {without:>9.0} ns");
    println!(
        "  refused connect, kernel notes attached        {with:>9.0} ns  ({:.3}x baseline)",
        with / without
    );
    println!(
        "  tracepoint program per event                {tp_ns:>9.0} ns  (x2 per connect: {:.1}% of a baseline connect)",
        200.0 * tp_ns / without
    );
    println!("  events: {events} tracepoint runs, {drained} ring records drained");
    let mut values = serde_json::Map::new();
    values.insert("refused_connect_ns".into(), json!(without));
    values.insert("refused_connect_with_tracepoints_ns".into(), json!(with));
    values.insert("ratio".into(), json!(with / without));
    values.insert("tracepoint_ns_per_event".into(), json!(tp_ns));
    values.insert("tracepoint_runs".into(), json!(events));
    values.insert("ring_records_drained".into(), json!(drained));
    summary::write_section(&summary::out_dir(), "tracepoints", values)
}
