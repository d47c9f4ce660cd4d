//! A delay line in the lab's router: this kernel has no netem, so packets toward the client are
//! routed into a TUN device whose reader holds each one for a fixed time and writes it back,
//! and policy routing sends what comes out of the TUN on to the client. The path from the
//! server to the client then takes that much longer, as a real wide-area path does, and the
//! tracer's timing evidence (a reset faster than the path allows) can be shown in the lab.

use std::{
    collections::VecDeque,
    fs::{File, OpenOptions},
    io::{Read, Write},
    os::fd::AsRawFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use crate::lab::{in_ns, ip, Lab, CLIENT_IP};

/// The TUN device's name in the router namespace.
const TUN: &str = "rdelay";
/// The policy-routing table for what leaves the TUN.
const TABLE: &str = "100";

/// A running delay line; stopped on drop (the namespace takes the device and routes with it).
pub struct DelayLine {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DelayLine {
    /// Delays every packet the router forwards toward the client by `delay`.
    pub fn toward_client(lab: &Lab, delay: Duration) -> DelayLine {
        let r = lab.router.as_str();
        let tun = in_ns(r, open_tun);
        ip(&["-n", r, "link", "set", TUN, "up"]);
        for key in ["all", "default", TUN] {
            ip(&[
                "netns",
                "exec",
                r,
                "sysctl",
                "-qw",
                &format!("net.ipv4.conf.{key}.rp_filter=0"),
            ]);
        }
        ip(&["-n", r, "rule", "add", "iif", TUN, "lookup", TABLE]);
        ip(&[
            "-n",
            r,
            "route",
            "add",
            "10.201.1.0/24",
            "dev",
            "r0",
            "table",
            TABLE,
        ]);
        ip(&[
            "-n",
            r,
            "route",
            "add",
            &format!("{CLIENT_IP}/32"),
            "dev",
            TUN,
        ]);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || relay(tun, delay, &stop))
        };
        DelayLine {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Opens a TUN device (IP packets, no packet-information header) in the current namespace.
fn open_tun() -> File {
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .expect("opening /dev/net/tun");
    // struct ifreq: the name, then the flags (IFF_TUN | IFF_NO_PI), padded to 40 bytes.
    let mut ifreq = [0u8; 40];
    ifreq[..TUN.len()].copy_from_slice(TUN.as_bytes());
    ifreq[16..18].copy_from_slice(&(libc::IFF_TUN | libc::IFF_NO_PI).to_ne_bytes()[..2]);
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    // SAFETY: TUNSETIFF reads and writes a struct ifreq, which `ifreq` is laid out as and
    // outlives the call.
    let rc = unsafe { libc::ioctl(tun.as_raw_fd(), TUNSETIFF, ifreq.as_mut_ptr()) };
    assert_eq!(rc, 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
    tun
}

/// Reads packets from `tun`, holds each for `delay`, writes it back, until `stop`.
fn relay(mut tun: File, delay: Duration, stop: &AtomicBool) {
    let mut held: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut buf = vec![0u8; 65_536];
    while !stop.load(Ordering::Relaxed) {
        let mut pfd = libc::pollfd {
            fd: tun.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&mut pfd, 1, 1) };
        if ready > 0 && pfd.revents & libc::POLLIN != 0 {
            if let Ok(n) = tun.read(&mut buf) {
                held.push_back((Instant::now() + delay, buf[..n].to_vec()));
            }
        }
        let now = Instant::now();
        while held.front().is_some_and(|(due, _)| *due <= now) {
            let (_, packet) = held.pop_front().expect("a packet is due");
            let _ = tun.write(&packet);
        }
    }
}
