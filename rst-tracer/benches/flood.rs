//! Reset flood (`cargo xtask bench`): the lab's router sends forged resets into the server's
//! interface as fast as one sender thread can (bounded in count and time) while the tracer runs
//! there. Every reset must be either reported (a `reset` line) or counted as dropped by the
//! kernel (`rst_dropped`): `sent == received + dropped_counted`; and every one must be in the
//! summaries' per-remote and per-port tallies (`summarised == sent`), dropped event or not.
//!
//! Then a retransmission storm: tens of thousands of flows resending a data segment, enough to
//! overrun the sample ring, with resets mixed in. The resets have their own ring, so every one
//! must still be reported and none dropped.
//!
//! Writes the `flood` section of `summary.json` in `RST_TRACER_BENCH_OUT`; fails when a reset is
//! unaccounted for.

#[path = "common/summary.rs"]
mod summary;

use std::{
    ffi::CString,
    net::Ipv4Addr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};
use etherparse::PacketBuilder;
use rst_tracer_lab::lab::{in_ns, Lab, Tracer, CLIENT_IP, ROUTER_SERVER_IF, SERVER_IF, SERVER_IP};
use serde_json::{json, Value};

/// Distinct flows the reset flood cycles through.
const FLOOD_FLOWS: u16 = 4_096;
/// Flows of the retransmission storm: each resends one segment; at the kernel's one sample per
/// flow per 100 ms this allows far more samples per second than userspace reads.
const STORM_FLOWS: u16 = 30_000;
/// One reset among this many storm segments.
const STORM_RST_EVERY: usize = 64;
/// An address on the server's link that nobody holds: the server drops segments to it
/// silently (it does not forward), so the storm makes no answers of its own.
const UNUSED_IP: &str = "10.201.2.3";
/// Frames handed to the kernel per sendmmsg call.
const BATCH: usize = 64;

/// A packet socket on one interface of a namespace, sending prepared frames.
struct Wire {
    fd: OwnedFd,
}

impl Wire {
    /// Opens a packet socket in namespace `ns` bound to `iface`.
    fn open(ns: &str, iface: &str) -> Result<Wire> {
        let name = CString::new(iface)?;
        in_ns(ns, || {
            // SAFETY: plain socket(2); the fd is owned right away.
            let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
            ensure!(
                raw >= 0,
                "packet socket: {}",
                std::io::Error::last_os_error()
            );
            // SAFETY: a fresh fd nobody else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            // SAFETY: a NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
            ensure!(ifindex != 0, "no interface {iface} in {ns}");
            // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
            let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = (libc::ETH_P_IP as u16).to_be();
            addr.sll_ifindex = ifindex as i32;
            // SAFETY: addr is a valid sockaddr_ll of the given size.
            let rc = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&raw const addr).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            ensure!(
                rc == 0,
                "bind to {iface}: {}",
                std::io::Error::last_os_error()
            );
            Ok(Wire { fd })
        })
    }

    /// Sends `frames` in order, round and round, until `count` have left or `limit` has
    /// passed. Returns how many left and the seconds it took.
    fn send(&self, frames: &[Vec<u8>], count: u64, limit: Duration) -> Result<(u64, f64)> {
        let start = Instant::now();
        let mut sent = 0u64;
        let mut iovs: Vec<libc::iovec> = Vec::with_capacity(BATCH);
        // SAFETY: mmsghdr is plain data; all-zero is a valid start.
        let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
        while sent < count && start.elapsed() < limit {
            let n = (count - sent).min(BATCH as u64) as usize;
            iovs.clear();
            for i in 0..n {
                let frame = &frames[((sent + i as u64) % frames.len() as u64) as usize];
                iovs.push(libc::iovec {
                    iov_base: frame.as_ptr() as *mut _,
                    iov_len: frame.len(),
                });
            }
            for (msg, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
                msg.msg_hdr.msg_iov = iov;
                msg.msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: msgs[..n] point at iovecs that point at live frames.
            let rc = unsafe { libc::sendmmsg(self.fd.as_raw_fd(), msgs.as_mut_ptr(), n as u32, 0) };
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ENOBUFS) {
                    std::thread::yield_now();
                    continue;
                }
                bail!("sendmmsg: {e}");
            }
            sent += rc as u64;
        }
        Ok((sent, start.elapsed().as_secs_f64()))
    }
}

/// The MAC address of `iface` in namespace `ns`.
fn mac(ns: &str, iface: &str) -> Result<[u8; 6]> {
    let out = Command::new("ip")
        .args(["-j", "-n", ns, "link", "show", "dev", iface])
        .output()?;
    let links: Value = serde_json::from_slice(&out.stdout).context("ip -j link")?;
    let text = links[0]["address"].as_str().context("no MAC address")?;
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("odd MAC {text}"))
}

/// Builds frames from the router to the server's interface.
struct Frames {
    router: [u8; 6],
    server: [u8; 6],
}

impl Frames {
    /// A reset from the client's address, port `sport`, to the server's port 80.
    fn reset(&self, sport: u16) -> Vec<u8> {
        self.tcp(SERVER_IP, sport, true)
    }

    /// A 100-byte data segment of flow `sport` to the unused address: sent twice or more, a
    /// retransmission.
    fn segment(&self, sport: u16) -> Vec<u8> {
        self.tcp(UNUSED_IP, sport, false)
    }

    fn tcp(&self, dst: &str, sport: u16, rst: bool) -> Vec<u8> {
        let src: Ipv4Addr = CLIENT_IP.parse().unwrap();
        let dst: Ipv4Addr = dst.parse().unwrap();
        let step = PacketBuilder::ethernet2(self.router, self.server)
            .ipv4(src.octets(), dst.octets(), 63)
            .tcp(sport, 80, 1_000_000, 502);
        let (step, payload): (_, &[u8]) = if rst {
            (step.rst(), &[])
        } else {
            (step.ack(7).psh(), &[0x55; 100])
        };
        let mut frame = Vec::with_capacity(step.size(payload.len()));
        step.write(&mut frame, payload).expect("building a frame");
        frame
    }
}

/// What one tracer run reported: reset lines and the final kernel counters.
struct Reported {
    resets: u64,
    /// Resets in the summaries' per-remote and per-port tallies (the smaller of the two sums).
    summarised: u64,
    counters: Value,
}

impl Reported {
    fn of(tracer: Tracer) -> Result<Reported> {
        // Let the tracer read what the rings hold before it is stopped.
        std::thread::sleep(Duration::from_secs(2));
        let lines = tracer.stop();
        let resets = lines.iter().filter(|l| l["type"] == "reset").count() as u64;
        let tallied = |list: &str| -> u64 {
            lines
                .iter()
                .filter(|l| l["type"] == "summary")
                .filter_map(|l| l[list].as_array())
                .flatten()
                .filter_map(|t| t["resets"].as_u64())
                .sum()
        };
        let summarised = tallied("top_remote").min(tallied("top_ports"));
        let counters = lines
            .iter()
            .rev()
            .find(|l| l["type"] == "stats")
            .context("the tracer printed no stats")?["counters"]
            .clone();
        Ok(Reported {
            resets,
            summarised,
            counters,
        })
    }

    fn counter(&self, name: &str) -> u64 {
        self.counters[name].as_u64().unwrap_or(0)
    }
}

fn main() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    ensure!(
        unsafe { libc::geteuid() } == 0,
        "the flood bench needs root: run `cargo xtask bench`"
    );
    rst_tracer::object::embedded().context("the flood bench needs the built eBPF object")?;
    let count = u64::from(summary::env_u32("RST_TRACER_BENCH_FLOOD", 500_000));
    let limit = Duration::from_secs(10);
    let lab = Lab::new(env!("CARGO_BIN_EXE_rst-tracer"));
    let frames = Frames {
        router: mac(&lab.router, ROUTER_SERVER_IF)?,
        server: mac(&lab.server, SERVER_IF)?,
    };
    let wire = Wire::open(&lab.router, ROUTER_SERVER_IF)?;

    // The flood: resets only.
    let flood: Vec<Vec<u8>> = (0..FLOOD_FLOWS).map(|i| frames.reset(20_000 + i)).collect();
    let tracer = lab.start_tracer(&[]);
    let (sent, seconds) = wire.send(&flood, count, limit)?;
    let flood_seen = Reported::of(tracer)?;
    let received = flood_seen.resets;
    let dropped = flood_seen.counter("rst_dropped");
    let hook_saw = flood_seen.counter("rst");
    let summarised = flood_seen.summarised;

    // The storm: retransmitted segments with a reset among every STORM_RST_EVERY.
    let mut storm = Vec::new();
    let mut is_reset = Vec::new();
    for i in 0..STORM_FLOWS {
        if usize::from(i) % STORM_RST_EVERY == 0 {
            storm.push(frames.reset(50_000 + i / STORM_RST_EVERY as u16));
            is_reset.push(true);
        }
        storm.push(frames.segment(10_000 + i));
        is_reset.push(false);
    }
    let tracer = lab.start_tracer(&[]);
    let (storm_sent, storm_seconds) = wire.send(&storm, count * 4, limit)?;
    let storm_seen = Reported::of(tracer)?;
    let per_cycle = is_reset.iter().filter(|r| **r).count() as u64;
    let len = storm.len() as u64;
    let storm_rst_sent = storm_sent / len * per_cycle
        + is_reset[..(storm_sent % len) as usize]
            .iter()
            .filter(|r| **r)
            .count() as u64;
    let storm_received = storm_seen.resets;
    let storm_rst_dropped = storm_seen.counter("rst_dropped");
    let samples = storm_seen.counter("retransmit_written");
    let samples_dropped = storm_seen.counter("retransmit_dropped");
    drop(lab);

    println!("reset flood ({FLOOD_FLOWS} flows, one sender thread, tracer with --ingress auto)");
    println!(
        "  sent {sent} resets in {seconds:.2} s ({:.0}/s); the hook saw {hook_saw}",
        sent as f64 / seconds
    );
    println!(
        "  reported {received}, dropped and counted {dropped}, unaccounted {}",
        sent as i64 - (received + dropped) as i64
    );
    println!("  in the summaries' per-remote and per-port tallies: {summarised}");
    println!(
        "retransmission storm ({STORM_FLOWS} flows, a reset every {STORM_RST_EVERY} segments)"
    );
    println!("  sent {storm_sent} frames in {storm_seconds:.2} s, {storm_rst_sent} of them resets");
    println!(
        "  retransmission samples: {samples} written, {samples_dropped} dropped (sample ring full)"
    );
    println!("  resets: {storm_received} reported, {storm_rst_dropped} dropped");

    let mut values = serde_json::Map::new();
    values.insert("sent".into(), json!(sent));
    values.insert("received".into(), json!(received));
    values.insert("dropped_counted".into(), json!(dropped));
    values.insert("summarised".into(), json!(summarised));
    values.insert("seconds".into(), json!(seconds));
    values.insert("hook_saw".into(), json!(hook_saw));
    values.insert("storm_frames_sent".into(), json!(storm_sent));
    values.insert("storm_rst_sent".into(), json!(storm_rst_sent));
    values.insert("storm_rst_received".into(), json!(storm_received));
    values.insert("storm_rst_dropped".into(), json!(storm_rst_dropped));
    values.insert("storm_samples_written".into(), json!(samples));
    values.insert("storm_samples_dropped".into(), json!(samples_dropped));
    summary::budget(
        &mut values,
        "every reset reported or counted as dropped, and every one in the summaries' tallies; under the storm, every reset reported",
        &format!(
            "flood {} unaccounted, {summarised} of {sent} summarised; storm {storm_received} of {storm_rst_sent} reported",
            sent as i64 - (received + dropped) as i64
        ),
        sent == received + dropped
            && summarised == sent
            && storm_received == storm_rst_sent
            && storm_rst_dropped == 0,
    );
    summary::write_section(&summary::out_dir(), "flood", values)
}
