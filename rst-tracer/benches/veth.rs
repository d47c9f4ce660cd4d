//! Throughput over veth (`cargo xtask bench`): iperf3 from the lab's client to its server, through
//! the router, four ways in each round: no tracer; the tracer with `--ingress auto` (tc on veth);
//! the tracer forcing native XDP (`--ingress xdp`, which costs veth its GRO); and `tcpdump -w`
//! writing every packet to a file, the approach this tool replaces. The tracer and tcpdump watch
//! the server's interface. Medians over the rounds; the ways alternate within each round so drift
//! hits them alike, and each way's ratio to no tracer is taken within its round (the median of
//! those is the verdict's ratio), so a slow round weighs on both sides of its ratio.
//!
//! Writes the `veth` section of `summary.json` in `RST_TRACER_BENCH_OUT`; the budget is missed
//! when the tracer (auto) keeps less than 0.90 of the throughput without it, or does not beat
//! tcpdump.

#[path = "common/summary.rs"]
mod summary;

use std::{fs, path::Path};

use anyhow::{bail, ensure, Context, Result};
use rst_tracer_lab::{iperf, lab::Lab};
use serde_json::json;
use summary::median;

/// Budget: throughput with the tracer (auto) over throughput without.
const MIN_RATIO: f64 = 0.90;

/// One way of watching the server's interface.
#[derive(Clone, Copy, Debug)]
enum Way {
    None,
    TracerAuto,
    TracerXdp,
    Tcpdump,
}

impl Way {
    const ALL: [Way; 4] = [Way::None, Way::TracerAuto, Way::TracerXdp, Way::Tcpdump];

    fn label(self) -> &'static str {
        match self {
            Way::None => "no tracer (baseline)",
            Way::TracerAuto => "rst-tracer --ingress auto (tc)",
            Way::TracerXdp => "rst-tracer --ingress xdp (native)",
            Way::Tcpdump => "tcpdump -w (every packet to a file)",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Way::None => "none_gbps",
            Way::TracerAuto => "tracer_gbps",
            Way::TracerXdp => "tracer_xdp_native_gbps",
            Way::Tcpdump => "tcpdump_gbps",
        }
    }
}

/// iperf3 from the client to the server for `seconds`: received Gbit/s.
fn iperf(lab: &Lab, seconds: u32) -> Result<f64> {
    iperf::run(lab, seconds, iperf::Direction::ToServer)
}

/// One iperf3 run with `way` watching: Gbit/s, and for tcpdump the share of packets it lost
/// (its ring was full).
fn measure(lab: &Lab, way: Way, seconds: u32, scratch: &Path) -> Result<(f64, Option<f64>)> {
    match way {
        Way::None => Ok((iperf(lab, seconds)?, None)),
        Way::TracerAuto | Way::TracerXdp => {
            let mode = if matches!(way, Way::TracerXdp) {
                "xdp"
            } else {
                "auto"
            };
            let tracer = lab.start_tracer(&["--ingress", mode]);
            let expect = if matches!(way, Way::TracerXdp) {
                "xdp (driver)"
            } else {
                "ingress tc"
            };
            ensure!(
                tracer.stderr().contains(expect),
                "--ingress {mode} did not attach as {expect}: {}",
                tracer.stderr()
            );
            let gbps = iperf(lab, seconds)?;
            tracer.stop();
            Ok((gbps, None))
        }
        Way::Tcpdump => {
            let file = scratch.join("veth.pcap");
            let tcpdump = lab.capture(&file, &[]);
            let gbps = iperf(lab, seconds)?;
            let said = tcpdump.stop();
            let _ = fs::remove_file(&file);
            let count = |what: &str| {
                said.lines()
                    .find(|l| l.ends_with(what))
                    .and_then(|l| l.split(' ').next()?.parse::<u64>().ok())
            };
            let lost = match (count("captured"), count("dropped by kernel")) {
                (Some(captured), Some(dropped)) if captured + dropped > 0 => {
                    Some(dropped as f64 / (captured + dropped) as f64)
                }
                _ => bail!("tcpdump did not report its counts: {said}"),
            };
            Ok((gbps, lost))
        }
    }
}

fn main() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "the veth bench needs root: run `cargo xtask bench`"
    );
    rst_tracer::object::embedded().context("the veth bench needs the built eBPF object")?;
    let seconds = summary::env_u32("RST_TRACER_BENCH_VETH_SECONDS", 3);
    let rounds = summary::rounds();
    let lab = Lab::new(env!("CARGO_BIN_EXE_rst-tracer"));
    let scratch = std::env::temp_dir().join(format!("{}-bench", lab.server));
    fs::create_dir_all(&scratch)?;
    let server = iperf::serve(&lab)?;

    let mut gbps: Vec<Vec<f64>> = vec![Vec::new(); Way::ALL.len()];
    let mut tcpdump_lost = Vec::new();
    for _ in 0..rounds {
        for (i, way) in Way::ALL.into_iter().enumerate() {
            let (g, lost) = measure(&lab, way, seconds, &scratch)?;
            gbps[i].push(g);
            tcpdump_lost.extend(lost);
        }
    }
    drop(server);
    drop(lab);
    let _ = fs::remove_dir_all(&scratch);

    // Each way's throughput over no tracer's in the same round.
    let ratios: Vec<Vec<f64>> = gbps
        .iter()
        .map(|way| way.iter().zip(&gbps[0]).map(|(g, none)| g / none).collect())
        .collect();
    println!(
        "veth throughput (iperf3 client -> router -> server, {seconds} s runs, median of {rounds}; \
         ratio = median of the rounds' own ratios, with their range)"
    );
    let mut values = serde_json::Map::new();
    for ((way, g), r) in Way::ALL.into_iter().zip(&gbps).zip(&ratios) {
        let g = median(g.clone());
        let (lo, hi) = r
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        println!(
            "  {:<38} {g:>7.2} Gbit/s  ({:.3}x baseline, rounds {lo:.3}-{hi:.3})",
            way.label(),
            median(r.clone()),
        );
        values.insert(way.key().into(), json!(g));
    }
    let lost = median(tcpdump_lost);
    println!(
        "  tcpdump lost {:.1}% of the packets to its full ring",
        100.0 * lost
    );
    values.insert("tcpdump_lost_share".into(), json!(lost));
    let (auto, tcpdump) = (median(ratios[1].clone()), median(ratios[3].clone()));
    values.insert("tracer_ratio".into(), json!(auto));
    values.insert("tcpdump_ratio".into(), json!(tcpdump));
    summary::budget(
        &mut values,
        &format!("tracer (auto) >= {MIN_RATIO} of no tracer, and above tcpdump"),
        &format!("{auto:.3}x, tcpdump {tcpdump:.3}x"),
        auto >= MIN_RATIO && auto > tcpdump,
    );
    summary::write_section(&summary::out_dir(), "veth", values)
}
