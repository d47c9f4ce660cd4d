//! Replay throughput (`cargo xtask bench`): records per second of `rst-tracer replay` beside
//! `tshark -r FILE -q -z expert` (the tool people use for this today) on the same files in the
//! same run: the largest capture of the shared corpus and a synthetic capture of 1,000,000
//! packets. Prints the ratio and adds a `replay` section to `summary.json`. Also the peak
//! resident memory of replaying a million resets from a million distinct sources (budget:
//! [`MAX_PEAK_RSS_MIB`]), where every table keyed by flow or remote meets a million keys, and what
//! `--pcap-out-context 16` adds to it when every flow it keeps is full (budget:
//! [`MAX_CONTEXT_EXTRA_MIB`]), beside the same replay without it.

#[path = "common/summary.rs"]
mod summary;

use std::{
    env, fs,
    io::{BufWriter, Write},
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context, Result};
use rst_tracer_lab::frames::Seg;
use serde_json::json;

/// Packets in the synthetic capture.
const SYNTHETIC_PACKETS: usize = 1_000_000;
/// Packets per synthetic flow: handshake, requests and ACKs, then a RST.
const PER_FLOW: usize = 100;

/// Writes a pcap (microsecond, Ethernet) of `frames`, each with its time in µs.
fn write_pcap(path: &Path, frames: impl Iterator<Item = (u64, Vec<u8>)>) -> Result<()> {
    let mut w = BufWriter::new(fs::File::create(path)?);
    w.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
    w.write_all(&2u16.to_le_bytes())?;
    w.write_all(&4u16.to_le_bytes())?;
    w.write_all(&[0; 8])?;
    w.write_all(&65535u32.to_le_bytes())?;
    w.write_all(&1u32.to_le_bytes())?;
    for (t_us, frame) in frames {
        for v in [
            (t_us / 1_000_000) as u32,
            (t_us % 1_000_000) as u32,
            frame.len() as u32,
            frame.len() as u32,
        ] {
            w.write_all(&v.to_le_bytes())?;
        }
        w.write_all(&frame)?;
    }
    w.flush()?;
    Ok(())
}

/// The synthetic captures' start, in µs since the epoch.
const START_US: u64 = 1_700_000_000_000_000;

/// Writes `SYNTHETIC_PACKETS` packets: flows of a handshake, data and ACKs, each ending in a
/// RST, 37 µs apart.
fn synthetic(path: &Path) -> Result<()> {
    let frames = (0..SYNTHETIC_PACKETS).map(|n| {
        let (flow, i) = (n / PER_FLOW, n % PER_FLOW);
        let client = format!("10.{}.{}.2", (flow >> 8) & 0xff, flow & 0xff);
        let port = 10_000 + (flow % 50_000) as u16;
        let (c, s) = (client.as_str(), "192.0.2.10");
        let seq_c = 1000 + (i as u32) * 100;
        let seg = match i {
            0 => Seg::new(c, port, s, 80).seq(999).syn(),
            1 => Seg::new(s, 80, c, port).seq(5000).ack(1000).syn(),
            _ if i == PER_FLOW - 1 => Seg::new(s, 80, c, port).seq(5001).ack(seq_c).rst(),
            _ if i % 2 == 0 => Seg::new(c, port, s, 80)
                .seq(seq_c)
                .ack(5001)
                .payload(&[0x41; 100]),
            _ => Seg::new(s, 80, c, port).seq(5001).ack(seq_c),
        };
        (START_US + 37 * (n as u64 + 1), seg.frame())
    });
    write_pcap(path, frames)
}

/// Resets in the distinct-sources capture, each from its own address.
const DISTINCT_SOURCES: u32 = 1_000_000;
/// Budget: the peak resident memory of replaying it (MiB).
const MAX_PEAK_RSS_MIB: f64 = 256.0;

/// Writes `DISTINCT_SOURCES` resets to 192.0.2.2:443, each from its own address in 10/8, a
/// millisecond apart: every table keyed by flow or remote meets a million keys.
fn distinct_sources(path: &Path) -> Result<()> {
    let frames = (0..DISTINCT_SOURCES).map(|i| {
        let [_, a, b, c] = i.to_be_bytes();
        let src = format!("10.{a}.{b}.{c}");
        let rst = Seg::new(&src, 40000, "192.0.2.2", 443)
            .seq(1000 + i)
            .rst()
            .frame();
        (START_US + 1_000 * u64::from(i), rst)
    });
    write_pcap(path, frames)
}

/// Flows and packets per flow of the context capture: as many flows as `--pcap-out-context`
/// keeps, each with more packets than it keeps of one, no resets, so every kept flow is full.
const CONTEXT_FLOWS: u32 = 8192;
const CONTEXT_PACKETS_PER_FLOW: u32 = 18;
/// Budget: what `--pcap-out-context 16` may add to the peak resident memory (MiB). Its packet
/// bytes are bounded at 16 x 256 bytes for each of 8,192 flows and 1,024 resets (36 MiB).
const MAX_CONTEXT_EXTRA_MIB: f64 = 48.0;

/// Writes the context capture: `CONTEXT_FLOWS` flows taking turns, each packet 300 bytes of
/// data from its client.
fn context_flows(path: &Path) -> Result<()> {
    let frames = (0..CONTEXT_FLOWS * CONTEXT_PACKETS_PER_FLOW).map(|n| {
        let (flow, i) = (n % CONTEXT_FLOWS, n / CONTEXT_FLOWS);
        let client = format!("10.1.{}.{}", (flow >> 8) & 0xff, flow & 0xff);
        let seg = Seg::new(&client, 40000, "192.0.2.10", 80)
            .seq(1000 + i * 300)
            .ack(5001)
            .payload(&[0x41; 300]);
        (START_US + 10 * u64::from(n + 1), seg.frame())
    });
    write_pcap(path, frames)
}

/// Peak resident memory (MiB) of a command run to its end, its output discarded.
fn peak_rss_mib(cmd: &mut Command) -> Result<f64> {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("{cmd:?}"))?;
    let mut status = 0;
    // SAFETY: all-zero is a valid rusage, which wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for the child this function started; status and usage are valid.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    if pid < 0 || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("{cmd:?} failed (wait status {status})");
    }
    // ru_maxrss is in KiB on Linux.
    Ok(usage.ru_maxrss as f64 / 1024.0)
}

/// Wall time of a command, its output discarded.
fn time(cmd: &mut Command) -> Result<f64> {
    let start = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .with_context(|| format!("{cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(start.elapsed().as_secs_f64())
}

fn records(path: &Path) -> Result<u64> {
    let out = Command::new("capinfos")
        .args(["-c", "-M"])
        .arg(path)
        .output()
        .context("capinfos (wireshark tools)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.split("Number of packets:").nth(1))
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("capinfos did not count {}: {text}", path.display()))
}

fn main() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the replay benchmark loads eBPF programs: run `sudo -E cargo xtask bench`");
    }
    let out_dir = summary::out_dir();
    fs::create_dir_all(&out_dir)?;
    let corpus =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/captures/ndpi/reddit.pcap");
    let synth = out_dir.join("synthetic-1m.pcap");
    if !synth.exists() {
        synthetic(&synth)?;
    }
    let tracer = env!("CARGO_BIN_EXE_rst-tracer");
    println!("replay throughput (wall time, output discarded), beside tshark -q -z expert on the same file");
    println!(
        "{:<32} {:>9} {:>16} {:>16} {:>7}",
        "file", "records", "rst-tracer rec/s", "tshark rec/s", "ratio"
    );
    let mut summary = serde_json::Map::new();
    for (label, path) in [
        ("corpus: ndpi/reddit.pcap", &corpus),
        ("synthetic, 1M packets", &synth),
    ] {
        let n = records(path)?;
        let ours = time(
            Command::new(tracer)
                .args(["replay", "--format", "json"])
                .arg(path),
        )?;
        let theirs = time(
            Command::new("tshark")
                .args(["-r"])
                .arg(path)
                .args(["-q", "-z", "expert"]),
        )?;
        let (a, b) = (n as f64 / ours, n as f64 / theirs);
        println!("{label:<32} {n:>9} {a:>16.0} {b:>16.0} {:>6.1}x", a / b);
        if path == &synth {
            summary.insert("records_per_s".into(), json!(a));
            summary.insert("tshark_records_per_s".into(), json!(b));
        } else {
            summary.insert("corpus_records_per_s".into(), json!(a));
            summary.insert("corpus_tshark_records_per_s".into(), json!(b));
        }
    }

    let distinct = out_dir.join("distinct-sources-1m.pcap");
    if !distinct.exists() {
        distinct_sources(&distinct)?;
    }
    let peak = peak_rss_mib(
        Command::new(tracer)
            .args(["replay", "--format", "json"])
            .arg(&distinct),
    )?;
    println!("peak resident memory replaying {DISTINCT_SOURCES} resets from distinct sources: {peak:.0} MiB");
    summary.insert("distinct_sources_peak_rss_mib".into(), json!(peak));
    summary::budget(
        &mut summary,
        &format!("peak RSS replaying {DISTINCT_SOURCES} resets from distinct sources <= {MAX_PEAK_RSS_MIB} MiB"),
        &format!("{peak:.0} MiB"),
        peak <= MAX_PEAK_RSS_MIB,
    );

    let context = out_dir.join("context-flows.pcap");
    if !context.exists() {
        context_flows(&context)?;
    }
    let pcap_out = out_dir.join("context-out.pcapng");
    let pcap_arg = format!("--pcap-out={}", pcap_out.display());
    let peak_with = |extra: &[&str]| {
        peak_rss_mib(
            Command::new(tracer)
                .args(["replay", "--format", "json", &pcap_arg])
                .args(extra)
                .arg(&context),
        )
    };
    let (without, with) = (peak_with(&[])?, peak_with(&["--pcap-out-context=16"])?);
    let extra = with - without;
    println!(
        "peak resident memory replaying {CONTEXT_FLOWS} flows of {CONTEXT_PACKETS_PER_FLOW} packets: {without:.1} MiB, with --pcap-out-context 16 {with:.1} MiB (+{extra:.1})"
    );
    summary.insert("context_peak_rss_mib".into(), json!(with));
    summary.insert("context_baseline_peak_rss_mib".into(), json!(without));
    summary::budget(
        &mut summary,
        &format!("--pcap-out-context 16 adds <= {MAX_CONTEXT_EXTRA_MIB} MiB of peak RSS with {CONTEXT_FLOWS} full flows"),
        &format!("+{extra:.1} MiB ({without:.1} -> {with:.1})"),
        extra <= MAX_CONTEXT_EXTRA_MIB,
    );
    let _ = fs::remove_file(&pcap_out);
    summary::write_section(&out_dir, "replay", summary)
}
