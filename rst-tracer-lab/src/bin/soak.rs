//! `cargo xtask soak --minutes N`: the tracer under continuous lab load with churn, for N
//! minutes. Every second the client opens connections the server aborts (one egress reset each)
//! and connects to a closed port (one each); every ten seconds a namespace comes and goes, its
//! stack making resets of its own that no traced flow owns. The tracer's resident memory is
//! printed every ten seconds. It fails unless the memory stays within `MAX_RSS_MIB` and every
//! reset the lab made is reported or counted as dropped.
//!
//! The tracer binary is named by `RST_TRACER_BIN` (xtask sets it).

use std::{
    env,
    io::Write,
    net::{SocketAddr, TcpStream},
    process::ExitCode,
    time::{Duration, Instant},
};

use rst_tracer_lab::lab::{abort, in_ns, ip, Lab};

/// Connections the server aborts per second, and connects to a closed port.
const ABORTS_PER_S: u32 = 20;
const REFUSED_PER_S: u32 = 20;
/// The server port the aborted connections use (one listener for the whole run).
const PORT: u16 = 8401;
/// The closed port.
const CLOSED: u16 = 9;
/// The resident memory the tracer must stay within (MiB): its tables' bounds, measured.
const MAX_RSS_MIB: f64 = 256.0;

fn main() -> ExitCode {
    rst_tracer_lab::require_root_and_object();
    let Ok(tracer) = env::var("RST_TRACER_BIN") else {
        eprintln!("soak: RST_TRACER_BIN is not set; run `cargo xtask soak`");
        return ExitCode::FAILURE;
    };
    let minutes: f64 = match env::args().nth(1).map(|m| m.parse()) {
        Some(Ok(m)) if m > 0.0 && m <= 24.0 * 60.0 => m,
        _ => {
            eprintln!("soak: give the minutes to run (0 < N <= 1440)");
            return ExitCode::from(2);
        }
    };
    match soak(&tracer, Duration::from_secs_f64(minutes * 60.0)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("soak: {why}");
            ExitCode::FAILURE
        }
    }
}

/// Resident memory of process `pid` (MiB).
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A namespace that is deleted when this is dropped, whatever happened in between.
struct PassingNamespace(String);

impl Drop for PassingNamespace {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

/// A namespace of its own with an address, whose stack refuses `n` connects to itself: resets
/// the tracepoints see (they are kernel-wide) that belong to no traced flow. Removed after.
fn passing_namespace(lab_tag: &str, i: u32, n: u32) {
    let ns = PassingNamespace(format!("{lab_tag}-soak{i}"));
    ip(&["netns", "add", &ns.0]);
    ip(&[
        "-n", &ns.0, "link", "add", "p0", "type", "veth", "peer", "name", "p1",
    ]);
    ip(&["-n", &ns.0, "addr", "add", "10.203.0.1/24", "dev", "p0"]);
    ip(&["-n", &ns.0, "link", "set", "p0", "up"]);
    ip(&["-n", &ns.0, "link", "set", "p1", "up"]);
    // Connects to its own address go through loopback.
    ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
    in_ns(&ns.0, || {
        for port in 0..n {
            let to = SocketAddr::from(([10, 203, 0, 1], 9000 + port as u16));
            let _ = TcpStream::connect_timeout(&to, Duration::from_secs(1));
        }
    });
}

fn soak(tracer: &str, length: Duration) -> Result<(), String> {
    let lab = Lab::new(tracer);
    let listener = lab.listen(PORT);
    let run = lab.start_tracer(&[]);
    let pid = run.pid();
    let start = Instant::now();
    let (mut sent, mut peak, mut series) = (0u64, 0f64, Vec::new());
    let mut second = 0u32;
    while start.elapsed() < length {
        let tick = Instant::now();
        for _ in 0..ABORTS_PER_S {
            let mut c = lab.connect(PORT).map_err(|e| format!("connect: {e}"))?;
            let (s, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
            c.write_all(b"x").map_err(|e| format!("write: {e}"))?;
            abort(&s);
            drop(s);
            sent += 1;
        }
        for _ in 0..REFUSED_PER_S {
            if lab.connect(CLOSED).is_ok() {
                return Err(format!("port {CLOSED} on the server accepted a connection"));
            }
            sent += 1;
        }
        if second.is_multiple_of(10) {
            passing_namespace(&lab.server, second / 10, 20);
            let rss = rss_mib(pid);
            peak = peak.max(rss);
            series.push((start.elapsed().as_secs(), rss));
            println!(
                "t={:>5} s  resets made {sent:>7}  tracer RSS {rss:>6.1} MiB",
                start.elapsed().as_secs()
            );
        }
        second += 1;
        if let Some(rest) = Duration::from_secs(1).checked_sub(tick.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    // The last resets' settle windows close when the tracer stops (it judges what waits).
    let out = run.stop();
    let reported = out.iter().filter(|o| o["type"] == "reset").count() as u64;
    let dropped: u64 = out
        .iter()
        .filter(|o| o["type"] == "summary")
        .filter_map(|o| o["resets_dropped"].as_u64())
        .sum();
    // Only the resets of the two kinds made here: the server's, from the aborted port and the
    // closed one.
    let ours = out
        .iter()
        .filter(|o| o["type"] == "reset")
        .filter(|o| {
            let sport = o["flow"]["sport"].as_u64();
            sport == Some(u64::from(PORT)) || sport == Some(u64::from(CLOSED))
        })
        .count() as u64;
    let elsewhere = out
        .iter()
        .rev()
        .find(|o| o["type"] == "stats")
        .and_then(|o| o["stack_notes_elsewhere"].as_u64())
        .unwrap_or(0);
    println!(
        "made {sent} resets; reported {reported} ({ours} of the server's), {dropped} counted as \
         dropped; peak RSS {peak:.1} MiB (bound {MAX_RSS_MIB}); kernel notes from other \
         namespaces left out: {elsewhere}"
    );
    if ours + dropped != sent {
        return Err(format!(
            "made {sent} resets, but {ours} were reported and {dropped} counted as dropped"
        ));
    }
    if peak > MAX_RSS_MIB {
        return Err(format!(
            "peak RSS {peak:.1} MiB above {MAX_RSS_MIB} MiB: {series:?}"
        ));
    }
    Ok(())
}
