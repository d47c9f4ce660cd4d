//! Reading back what `--pcap-out` wrote, with the reader replay uses (`source::capture`) and with
//! tshark, and checking it against the JSON resets of the same run.

use std::{path::Path, process::Command};

use rst_tracer::source::capture::{CaptureReader, Record};
use rst_tracer_common::event::RST_FRAME_MAX;
use serde_json::Value;

/// Every record of a capture file, read with replay's reader.
pub fn records(path: &Path) -> Vec<Record> {
    let mut reader = CaptureReader::open(path)
        .unwrap_or_else(|e| panic!("{} does not open: {e}", path.display()));
    let mut out = Vec::new();
    while let Some(r) = reader
        .next_record()
        .unwrap_or_else(|e| panic!("{} is broken: {e}", path.display()))
    {
        out.push(r);
    }
    out
}

/// One field of every packet, as `tshark -r PATH -T fields -e FIELD` prints it.
pub fn tshark_field(path: &Path, field: &str) -> Vec<String> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args(["-T", "fields", "-e", field])
        .output()
        .expect("this test needs tshark (`cargo xtask test` installs it)");
    assert!(
        out.status.success(),
        "tshark -r {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The TCP resets of a capture, as (time in ns, first `RST_FRAME_MAX` bytes), sorted: what a
/// pcap-out of its replay must hold. Which packets are resets is tshark's word
/// (`tcp.flags.reset == 1`, it parses PPPoE and every other layer), the bytes and times are the
/// capture's records.
pub fn resets_in(path: &Path) -> Vec<(u64, Vec<u8>)> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args([
            "-Y",
            "tcp.flags.reset == 1",
            "-T",
            "fields",
            "-e",
            "frame.number",
        ])
        .output()
        .expect("this test needs tshark (`cargo xtask test` installs it)");
    assert!(out.status.success(), "tshark -r {}", path.display());
    let numbers: Vec<usize> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse().expect("a frame number"))
        .collect();
    let records = records(path);
    let mut resets: Vec<(u64, Vec<u8>)> = numbers
        .iter()
        .map(|n| {
            let r = &records[n - 1];
            (r.ts_ns, r.data[..r.data.len().min(RST_FRAME_MAX)].to_vec())
        })
        .collect();
    resets.sort();
    resets
}

/// The packets of a pcap-out file as (time in ns, bytes), sorted.
pub fn packets(records: &[Record]) -> Vec<(u64, Vec<u8>)> {
    let mut out: Vec<(u64, Vec<u8>)> = records.iter().map(|r| (r.ts_ns, r.data.clone())).collect();
    out.sort();
    out
}

/// Checks a pcap-out file against the JSON resets of the same run, in the order both were
/// written: one packet per reset at its time, on an interface named `iface`, Ethernet, its
/// comment (as tshark shows `frame.comment`) beginning "SUSPICIOUS" exactly for the suspicious
/// ones and naming the origin and every finding. Returns what is wrong, if anything.
pub fn check(pcap: &Path, resets: &[&Value], iface: &str) -> Result<(), String> {
    let records = records(pcap);
    if records.len() != resets.len() {
        return Err(format!(
            "{} packets for {} resets",
            records.len(),
            resets.len()
        ));
    }
    let comments = tshark_field(pcap, "frame.comment");
    let interfaces = tshark_field(pcap, "frame.interface_name");
    if comments.len() != resets.len() || interfaces.len() != resets.len() {
        return Err(format!(
            "tshark shows {} comments and {} interface names for {} resets",
            comments.len(),
            interfaces.len(),
            resets.len()
        ));
    }
    let suspicious = resets.iter().filter(|r| r["suspicious"] == true).count();
    let flagged = comments
        .iter()
        .filter(|c| c.starts_with("SUSPICIOUS"))
        .count();
    if flagged != suspicious {
        return Err(format!(
            "{flagged} comments begin SUSPICIOUS, {suspicious} resets are suspicious"
        ));
    }
    for (i, ((record, r), (comment, name))) in records
        .iter()
        .zip(resets)
        .zip(comments.iter().zip(&interfaces))
        .enumerate()
    {
        let origin = format!("origin {}", r["origin"].as_str().unwrap_or("?"));
        let codes: Vec<&str> = r["findings"]
            .as_array()
            .map(|f| f.iter().filter_map(|x| x["code"].as_str()).collect())
            .unwrap_or_default();
        let wrong = if Some(record.ts_ns) != r["ts_ns"].as_u64() {
            Some(format!("time {} vs {}", record.ts_ns, r["ts_ns"]))
        } else if record.linktype != 1 {
            Some(format!("link type {}", record.linktype))
        } else if name != iface {
            Some(format!("interface {name:?}, expected {iface:?}"))
        } else if comment.starts_with("SUSPICIOUS") != (r["suspicious"] == true) {
            Some(format!(
                "comment {comment:?} for suspicious = {}",
                r["suspicious"]
            ))
        } else if !comment.contains(&origin) {
            Some(format!("comment {comment:?} lacks {origin:?}"))
        } else {
            codes
                .iter()
                .find(|c| !comment.contains(*c))
                .map(|code| format!("comment {comment:?} lacks finding {code}"))
        };
        if let Some(wrong) = wrong {
            return Err(format!("packet {i}: {wrong}"));
        }
    }
    Ok(())
}

/// A packet of a capture as (time in ns, first `RST_FRAME_MAX` bytes).
pub type Packet = (u64, Vec<u8>);

/// What `--pcap-out-context n` must put before each reset of a capture, by tshark's reading of
/// it: for every TCP reset (time and bytes, as [`resets_in`] gives them), the last `n` other TCP
/// packets between the same two endpoints (addresses and ports, either way) since the previous
/// reset between them, oldest first. Sorted by the reset.
pub fn context_in(path: &Path, n: usize) -> Vec<(Packet, Vec<Packet>)> {
    let fields = [
        "tcp.flags.reset",
        "ip.src",
        "ipv6.src",
        "tcp.srcport",
        "ip.dst",
        "ipv6.dst",
        "tcp.dstport",
    ];
    let mut args = vec!["-T", "fields", "-E", "separator=|"];
    for f in &fields {
        args.extend(["-e", f]);
    }
    let out = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args(&args)
        .output()
        .expect("this test needs tshark (`cargo xtask test` installs it)");
    assert!(out.status.success(), "tshark -r {}", path.display());
    let records = records(path);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), records.len(), "{}", path.display());
    let mut recent: std::collections::HashMap<(String, String), Vec<Packet>> = Default::default();
    let mut out = Vec::new();
    for (line, record) in lines.iter().zip(&records) {
        let f: Vec<&str> = line.split('|').collect();
        // Not TCP, or TCP inside another layer (an ICMP error quoting a segment, a tunnel).
        if f[3].is_empty() || f.iter().any(|v| v.contains(',')) {
            continue;
        }
        let endpoint = |addr4: &str, addr6: &str, port: &str| format!("{addr4}{addr6}:{port}");
        let (a, b) = (endpoint(f[1], f[2], f[3]), endpoint(f[4], f[5], f[6]));
        let flow = if a <= b { (a, b) } else { (b, a) };
        let packet = (
            record.ts_ns,
            record.data[..record.data.len().min(RST_FRAME_MAX)].to_vec(),
        );
        if f[0] == "1" || f[0] == "True" {
            let mut before = recent.remove(&flow).unwrap_or_default();
            let keep = before.len().saturating_sub(n);
            before.drain(..keep);
            out.push((packet, before));
        } else {
            recent.entry(flow).or_default().push(packet);
        }
    }
    out.sort();
    out
}

/// What a `--pcap-out-context` file holds: each reset packet (time, bytes) with the context
/// packets written just before it (their comments begin "context:"), sorted by the reset.
pub fn context_written(path: &Path) -> Vec<(Packet, Vec<Packet>)> {
    let comments = tshark_field(path, "frame.comment");
    let mut out = Vec::new();
    let mut before = Vec::new();
    for (r, comment) in records(path).iter().zip(&comments) {
        let packet = (r.ts_ns, r.data.clone());
        if comment.starts_with("context:") {
            before.push(packet);
        } else {
            out.push((packet, std::mem::take(&mut before)));
        }
    }
    out.sort();
    out
}
