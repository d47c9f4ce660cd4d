//! In place, on MTU-sized frames (`cargo xtask bench`): iperf3 through the lab with segmentation
//! and receive offloads off on every lab interface (TSO, GSO, GRO), so that the hooks see one
//! skb per wire frame at ingress, as a NIC's traffic looks before GRO (at egress TCP still hands
//! the device GSO skbs, segmented after the hook). Eight ways in each round, alternating, in both
//! directions (the server receiving and the server sending): nothing attached; an empty tc
//! program at the tracer's two hooks (`rst_empty_in`, `rst_empty_eg` of the baseline object, the
//! floor any tc tracer starts from); the tracer's own parser alone; three floors of a per-flow
//! tracer at both hooks (one LRU flow look-up; the look-up and the clock; a direct-mapped array slot and the clock, see
//! `rst-tracer-ebpf/src/baseline.rs`); the tracer (`--ingress auto`); and `tcpdump -w`.
//!
//! The kernel's own BPF statistics (run time and run count per program, on while the bench
//! holds the `BPF_ENABLE_STATS` descriptor; no sysctl is changed) give the cost where packets
//! really flow: the BPF time of every program the tracer loads, per packet crossing the
//! server's interface (its rx + tx packet counters), beside the same for the empty programs on
//! the same traffic.
//!
//! Writes two sections of `summary.json` in `RST_TRACER_BENCH_OUT`:
//! - `insitu`: `tracer_ns_per_packet`, `empty_ns_per_packet`, `ratio` (budget: at most
//!   [`MAX_COST_RATIO`]), each floor's ns per packet and ratio to the empty programs, and the
//!   per-program ns per run;
//! - `veth_mtu`: Gbit/s per way and direction and each way's ratio to bare (the median of the
//!   rounds' own ratios; budget: the tracer at least [`MIN_THROUGHPUT_RATIO`] each way).

#[path = "common/summary.rs"]
mod summary;

use std::{collections::BTreeMap, env, fs, path::PathBuf, process::Command};

use anyhow::{anyhow, ensure, Context, Result};
use aya::{
    programs::{loaded_programs, tc::TcAttachOptions, LinkOrder, SchedClassifier, TcAttachType},
    sys::{enable_stats, Stats},
    Ebpf,
};
use rst_tracer_common::names::{PACKET_PROGRAMS, TRACEPOINT_PROGRAMS};
use rst_tracer_lab::iperf::{self, Direction};
use rst_tracer_lab::lab::{in_ns, Lab, ROUTER_SERVER_IF, SERVER_IF};
use serde_json::{json, Map, Value};
use summary::median;

/// Budget: the tracer's BPF ns per packet over the empty programs'.
const MAX_COST_RATIO: f64 = 2.5;
/// Budget: throughput with the tracer over bare, each direction.
const MIN_THROUGHPUT_RATIO: f64 = 0.90;
/// The empty tc programs of the baseline object: (name, hook).
const EMPTY_PROGRAMS: [(&str, TcAttachType); 2] = [
    ("rst_empty_in", TcAttachType::Ingress),
    ("rst_empty_eg", TcAttachType::Egress),
];
/// The floor of one flow look-up (insert on a miss) at both hooks.
const LOOKUP_FLOOR: [(&str, TcAttachType); 2] = [
    ("rst_tc_lookup", TcAttachType::Ingress),
    ("rst_tc_lookup", TcAttachType::Egress),
];
/// The floor of one flow look-up and a read of the clock at both hooks.
const LOOKUP_CLOCK_FLOOR: [(&str, TcAttachType); 2] = [
    ("rst_tc_look_clk", TcAttachType::Ingress),
    ("rst_tc_look_clk", TcAttachType::Egress),
];
const DIRECTIONS: [Direction; 2] = [Direction::ToServer, Direction::FromServer];

/// The floor of a direct-mapped array table's slot and a read of the clock at both hooks.
const SLOT_CLOCK_FLOOR: [(&str, TcAttachType); 2] = [
    ("rst_tc_slot_clk", TcAttachType::Ingress),
    ("rst_tc_slot_clk", TcAttachType::Egress),
];

/// The floor of the tracer's parser alone at both hooks.
const PARSE_FLOOR: [(&str, TcAttachType); 2] = [
    ("rst_tc_parse", TcAttachType::Ingress),
    ("rst_tc_parse", TcAttachType::Egress),
];

/// One way of watching the server's interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    Bare,
    Empty,
    /// `PARSE_FLOOR`.
    Parse,
    /// `LOOKUP_FLOOR`.
    Lookup,
    /// `LOOKUP_CLOCK_FLOOR`.
    LookupClock,
    /// `SLOT_CLOCK_FLOOR`.
    SlotClock,
    Tracer,
    Tcpdump,
}

impl Way {
    const ALL: [Way; 8] = [
        Way::Bare,
        Way::Empty,
        Way::Parse,
        Way::Lookup,
        Way::LookupClock,
        Way::SlotClock,
        Way::Tracer,
        Way::Tcpdump,
    ];

    fn key(self) -> &'static str {
        match self {
            Way::Bare => "bare",
            Way::Empty => "empty",
            Way::Parse => "floor_parse",
            Way::Lookup => "floor_lookup",
            Way::LookupClock => "floor_lookup_clock",
            Way::SlotClock => "floor_slot_clock",
            Way::Tracer => "tracer",
            Way::Tcpdump => "tcpdump",
        }
    }

    /// The baseline object's programs this way attaches.
    fn baseline_programs(self) -> &'static [(&'static str, TcAttachType)] {
        match self {
            Way::Empty => &EMPTY_PROGRAMS,
            Way::Parse => &PARSE_FLOOR,
            Way::Lookup => &LOOKUP_FLOOR,
            Way::LookupClock => &LOOKUP_CLOCK_FLOOR,
            Way::SlotClock => &SLOT_CLOCK_FLOOR,
            Way::Bare | Way::Tracer | Way::Tcpdump => &[],
        }
    }

    /// Where this way's results sit in `Way::ALL`.
    fn index(self) -> usize {
        Way::ALL
            .iter()
            .position(|w| *w == self)
            .expect("every way is in Way::ALL")
    }
}

/// BPF run time and run count of one program.
#[derive(Clone, Copy, Debug, Default)]
struct RunStats {
    ns: u64,
    runs: u64,
}

/// What one iperf3 run with a way attached measured.
#[derive(Debug, Default)]
struct Measured {
    gbps: f64,
    /// Packets that crossed the server's interface (rx + tx).
    packets: u64,
    /// BPF time and runs per program name, over the run.
    programs: BTreeMap<String, RunStats>,
}

/// Turns TSO, GSO and GRO off on every lab interface: one skb per MTU frame at every hook.
fn offloads_off(lab: &Lab) -> Result<()> {
    for (ns, dev) in [
        (&lab.client, "c0"),
        (&lab.router, "r0"),
        (&lab.router, ROUTER_SERVER_IF),
        (&lab.server, SERVER_IF),
    ] {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "ethtool", "-K", dev])
            .args(["tso", "off", "gso", "off", "gro", "off"])
            .output()
            .context("running ethtool")?;
        ensure!(
            out.status.success(),
            "ethtool -K {dev} in {ns}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Packets received plus sent by the server's interface so far.
fn iface_packets(lab: &Lab) -> Result<u64> {
    let out = Command::new("ip")
        .args(["-n", &lab.server, "-s", "-j", "link", "show", SERVER_IF])
        .output()
        .context("running ip -s link")?;
    let links: Value = serde_json::from_slice(&out.stdout).context("ip -j output")?;
    let stats = &links[0]["stats64"];
    let n = |dir: &str| stats[dir]["packets"].as_u64();
    n("rx")
        .zip(n("tx"))
        .map(|(rx, tx)| rx + tx)
        .ok_or_else(|| anyhow!("no packet counters for {SERVER_IF}: {links}"))
}

/// Run stats of every loaded program whose name is in `names`, by program id.
fn program_stats(names: &[&str]) -> Result<BTreeMap<u32, (String, RunStats)>> {
    let mut out = BTreeMap::new();
    for info in loaded_programs() {
        let info = info?;
        let Some(name) = info.name_as_str() else {
            continue;
        };
        if names.contains(&name) {
            let stats = RunStats {
                ns: info.run_time().as_nanos() as u64,
                runs: info.run_count(),
            };
            out.insert(info.id(), (name.to_string(), stats));
        }
    }
    Ok(out)
}

/// Loads `programs` of the baseline object and attaches each (tcx) at its hook on the server's
/// interface, inside its namespace; they stay attached while the returned object lives.
fn attach_baseline(lab: &Lab, programs: &[(&str, TcAttachType)]) -> Result<Ebpf> {
    let path = env::var_os("RST_TRACER_BASELINE_OBJECT")
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("RST_TRACER_BASELINE_OBJECT is not set: run `cargo xtask bench`"))?;
    in_ns(&lab.server, || {
        let mut ebpf =
            Ebpf::load_file(&path).with_context(|| format!("loading {}", path.display()))?;
        for (i, &(name, hook)) in programs.iter().enumerate() {
            let prog: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or_else(|| anyhow!("no {name} in {}", path.display()))?
                .try_into()?;
            // A program attached at both hooks is loaded once.
            if !programs[..i].iter().any(|(n, _)| *n == name) {
                prog.load()?;
            }
            prog.attach_with_options(
                SERVER_IF,
                hook,
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            )
            .with_context(|| format!("attaching {name}"))?;
        }
        Ok(ebpf)
    })
}

/// One iperf3 run in `direction` with `way` watching.
fn measure(lab: &Lab, way: Way, direction: Direction, seconds: u32) -> Result<Measured> {
    let scratch = std::env::temp_dir().join(format!("{}-insitu.pcap", lab.server));
    // What is attached during the run; dropped (detached, stopped) after it.
    let mut baseline = None;
    let mut tracer = None;
    let mut tcpdump = None;
    let names: Vec<&str> = match way {
        Way::Bare => Vec::new(),
        Way::Empty | Way::Parse | Way::Lookup | Way::LookupClock | Way::SlotClock => {
            baseline = Some(attach_baseline(lab, way.baseline_programs())?);
            way.baseline_programs().iter().map(|(n, _)| *n).collect()
        }
        Way::Tracer => {
            let t = lab.start_tracer(&["--ingress", "auto"]);
            ensure!(
                t.stderr().contains("ingress tc"),
                "the tracer did not attach at tc: {}",
                t.stderr()
            );
            tracer = Some(t);
            PACKET_PROGRAMS
                .into_iter()
                .chain(TRACEPOINT_PROGRAMS.iter().map(|(n, _)| *n))
                .collect()
        }
        Way::Tcpdump => {
            tcpdump = Some(lab.capture(&scratch, &[]));
            Vec::new()
        }
    };
    let before = program_stats(&names)?;
    let packets_before = iface_packets(lab)?;
    let gbps = iperf::run(lab, seconds, direction)?;
    let packets = iface_packets(lab)? - packets_before;
    let after = program_stats(&names)?;
    drop(baseline);
    if let Some(t) = tracer {
        t.stop();
    }
    if let Some(c) = tcpdump {
        c.stop();
        let _ = fs::remove_file(&scratch);
    }
    ensure!(
        names.is_empty() || !after.is_empty(),
        "{way:?}: none of its programs is loaded"
    );
    let mut programs = BTreeMap::new();
    for (id, (name, end)) in after {
        let start = before.get(&id).map(|(_, s)| *s).unwrap_or_default();
        let run = programs.entry(name).or_insert_with(RunStats::default);
        run.ns += end.ns - start.ns;
        run.runs += end.runs - start.runs;
    }
    Ok(Measured {
        gbps,
        packets,
        programs,
    })
}

/// BPF ns per packet crossing the interface, over all runs of a way.
fn ns_per_packet(runs: &[&Measured]) -> f64 {
    let ns: u64 = runs
        .iter()
        .flat_map(|m| m.programs.values())
        .map(|s| s.ns)
        .sum();
    let packets: u64 = runs.iter().map(|m| m.packets).sum();
    ns as f64 / packets.max(1) as f64
}

/// Runs of each packet program per packet crossing the interface, over all runs of a way: at
/// ingress one per frame; at egress TCP hands the device GSO skbs, segmented after the hook
/// even with offloads off, so a run there covers many frames.
fn runs_per_packet(runs: &[&Measured]) -> String {
    let packets: u64 = runs.iter().map(|m| m.packets).sum();
    program_totals(runs)
        .iter()
        .filter(|(name, s)| PACKET_PROGRAMS.contains(name) && s.runs > 0)
        .map(|(name, s)| format!("{name} {:.3}", s.runs as f64 / packets.max(1) as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

/// BPF time and runs per program, summed over all runs of a way.
fn program_totals<'a>(runs: &[&'a Measured]) -> BTreeMap<&'a str, RunStats> {
    let mut total: BTreeMap<&str, RunStats> = BTreeMap::new();
    for m in runs {
        for (name, s) in &m.programs {
            let t = total.entry(name.as_str()).or_default();
            t.ns += s.ns;
            t.runs += s.runs;
        }
    }
    total
}

/// ns per run of each program, over all runs of a way.
fn per_program(runs: &[&Measured]) -> Map<String, Value> {
    program_totals(runs)
        .into_iter()
        .filter(|(_, s)| s.runs > 0)
        .map(|(name, s)| {
            (
                format!("{name}_ns_per_run"),
                json!(s.ns as f64 / s.runs as f64),
            )
        })
        .collect()
}

fn main() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "the in-place bench needs root: run `cargo xtask bench`"
    );
    rst_tracer::object::embedded().context("the in-place bench needs the built eBPF object")?;
    let seconds = summary::env_u32("RST_TRACER_BENCH_VETH_SECONDS", 3);
    let rounds = summary::rounds();
    let lab = Lab::new(env!("CARGO_BIN_EXE_rst-tracer"));
    offloads_off(&lab)?;
    let _stats = enable_stats(Stats::RunTime).context("enabling BPF run-time statistics")?;
    let server = iperf::serve(&lab)?;

    // runs[direction][way] = one Measured per round.
    let mut runs: Vec<Vec<Vec<Measured>>> = (0..DIRECTIONS.len())
        .map(|_| Way::ALL.iter().map(|_| Vec::new()).collect())
        .collect();
    for _ in 0..rounds {
        for (d, direction) in DIRECTIONS.into_iter().enumerate() {
            for (w, way) in Way::ALL.into_iter().enumerate() {
                runs[d][w].push(measure(&lab, way, direction, seconds)?);
            }
        }
    }
    drop(server);
    drop(lab);

    println!(
        "in place, MTU frames (TSO/GSO/GRO off), iperf3 through the router, {seconds} s runs, \
         {rounds} rounds, both directions"
    );
    let way_runs = |w: Way| -> Vec<&Measured> { runs.iter().flat_map(|d| &d[w.index()]).collect() };
    let (empty, tracer) = (
        ns_per_packet(&way_runs(Way::Empty)),
        ns_per_packet(&way_runs(Way::Tracer)),
    );
    let ratio = tracer / empty;
    println!("  BPF ns per packet crossing {SERVER_IF}: tracer {tracer:.1}, empty tc programs {empty:.1}: {ratio:.2}x");
    let mut insitu = Map::new();
    insitu.insert("tracer_ns_per_packet".into(), json!(tracer));
    insitu.insert("empty_ns_per_packet".into(), json!(empty));
    insitu.insert("ratio".into(), json!(ratio));
    for floor in [Way::Parse, Way::Lookup, Way::LookupClock, Way::SlotClock] {
        let ns = ns_per_packet(&way_runs(floor));
        println!(
            "  {}: {ns:.1} ns per packet, {:.2}x the empty programs",
            floor.key(),
            ns / empty
        );
        insitu.insert(format!("{}_ns_per_packet", floor.key()), json!(ns));
        insitu.insert(format!("{}_ratio", floor.key()), json!(ns / empty));
    }
    for (d, direction) in DIRECTIONS.into_iter().enumerate() {
        let of = |w: Way| runs[d][w.index()].iter().collect::<Vec<_>>();
        let (e, t) = (
            ns_per_packet(&of(Way::Empty)),
            ns_per_packet(&of(Way::Tracer)),
        );
        let runs_per_packet = runs_per_packet(&of(Way::Tracer));
        println!(
            "    {}: tracer {t:.1}, empty {e:.1} ns/packet; tracer runs per packet: {runs_per_packet}",
            direction.name()
        );
        insitu.insert(
            format!("{}_tracer_ns_per_packet", direction.name()),
            json!(t),
        );
        insitu.insert(
            format!("{}_empty_ns_per_packet", direction.name()),
            json!(e),
        );
    }
    for (key, value) in [
        Way::Tracer,
        Way::Empty,
        Way::Parse,
        Way::Lookup,
        Way::LookupClock,
        Way::SlotClock,
    ]
    .into_iter()
    .flat_map(|w| per_program(&way_runs(w)))
    {
        println!("    {key}: {:.1}", value.as_f64().unwrap_or(0.0));
        insitu.insert(key, value);
    }
    summary::budget(
        &mut insitu,
        &format!("tracer BPF ns per packet <= {MAX_COST_RATIO}x the empty tc programs'"),
        &format!("{ratio:.2}x ({tracer:.1} vs {empty:.1} ns)"),
        ratio <= MAX_COST_RATIO,
    );
    summary::write_section(&summary::out_dir(), "insitu", insitu)?;

    let mut mtu = Map::new();
    let mut worst = f64::MAX;
    for (d, direction) in DIRECTIONS.into_iter().enumerate() {
        let bare: Vec<f64> = runs[d][0].iter().map(|m| m.gbps).collect();
        for (w, way) in Way::ALL.into_iter().enumerate() {
            let gbps: Vec<f64> = runs[d][w].iter().map(|m| m.gbps).collect();
            let ratio = median(gbps.iter().zip(&bare).map(|(g, b)| g / b).collect());
            println!(
                "  {:<17} {:<8} {:>6.2} Gbit/s  {ratio:.3}x bare",
                direction.name(),
                way.key(),
                median(gbps.clone())
            );
            let key = format!("{}_{}", direction.name(), way.key());
            mtu.insert(format!("{key}_gbps"), json!(median(gbps)));
            if way != Way::Bare {
                mtu.insert(format!("{key}_ratio"), json!(ratio));
            }
            if way == Way::Tracer {
                worst = worst.min(ratio);
            }
        }
    }
    summary::budget(
        &mut mtu,
        &format!("tracer >= {MIN_THROUGHPUT_RATIO} of bare throughput, each direction, MTU frames"),
        &format!("worst direction {worst:.3}x"),
        worst >= MIN_THROUGHPUT_RATIO,
    );
    summary::write_section(&summary::out_dir(), "veth_mtu", mtu)
}
