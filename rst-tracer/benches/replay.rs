//! Replay throughput (`cargo xtask bench`): records per second of `rst-tracer replay` beside
//! `tshark -r FILE -q -z expert` (the tool people use for this today) on the same files in the
//! same run: the largest capture of the shared corpus and a synthetic capture of 1,000,000
//! packets. Prints the ratio and adds a `replay` section to `summary.json`.

#[path = "common/summary.rs"]
mod summary;

#[path = "../tests/common/frames.rs"]
#[allow(
    dead_code,
    reason = "the benchmark uses only some of the test frame builders"
)]
mod frames;

use std::{
    env, fs,
    io::{BufWriter, Write},
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context, Result};
use frames::Seg;
use serde_json::json;

/// Packets in the synthetic capture.
const SYNTHETIC_PACKETS: usize = 1_000_000;
/// Packets per synthetic flow: handshake, requests and ACKs, then a RST.
const PER_FLOW: usize = 100;

/// Writes a pcap (microsecond, Ethernet) of `SYNTHETIC_PACKETS` packets: flows of a handshake,
/// data and ACKs, each ending in a RST.
fn synthetic(path: &Path) -> Result<()> {
    let mut w = BufWriter::new(fs::File::create(path)?);
    w.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
    w.write_all(&2u16.to_le_bytes())?;
    w.write_all(&4u16.to_le_bytes())?;
    w.write_all(&[0; 8])?;
    w.write_all(&65535u32.to_le_bytes())?;
    w.write_all(&1u32.to_le_bytes())?;
    let mut t_us: u64 = 1_700_000_000_000_000;
    for flow in 0..SYNTHETIC_PACKETS / PER_FLOW {
        let client = format!("10.{}.{}.2", (flow >> 8) & 0xff, flow & 0xff);
        let port = 10_000 + (flow % 50_000) as u16;
        let (c, s) = (client.as_str(), "192.0.2.10");
        for i in 0..PER_FLOW {
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
            let frame = seg.frame();
            t_us += 37;
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
    }
    w.flush()?;
    Ok(())
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
    summary::write_section(&out_dir, "replay", summary)
}
