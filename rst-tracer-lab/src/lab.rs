//! A network-namespace lab: client -- router -- server, joined by veth pairs, real Linux TCP
//! stacks on both ends, the router forwarding (and decrementing TTL). Everything it makes is
//! removed on drop, also when a test fails.
//!
//! Addresses are only ever those of these namespaces: 10.201.1.0/24 (client side) and
//! 10.201.2.0/24 (server side). Every lab has them, so labs take turns (see [`Lab::new`]).

use std::{
    fs::File,
    io::Read,
    net::{TcpListener, TcpStream},
    os::fd::AsRawFd,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

/// Client address.
pub const CLIENT_IP: &str = "10.201.1.2";
/// Server address.
pub const SERVER_IP: &str = "10.201.2.2";
/// Server-side interface in the server namespace (where the tracer attaches).
pub const SERVER_IF: &str = "s0";
/// Router interface facing the server.
pub const ROUTER_SERVER_IF: &str = "r1";

static LAB_SEQ: AtomicU32 = AtomicU32::new(0);

/// Runs `ip` with `args`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("running ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until no other lab exists on this machine (see [`Lab::new`]) and returns the lock that
/// says so.
fn wait_for_turn() -> File {
    let path = std::env::temp_dir().join("rst-tracer-lab.turn");
    let file = File::options()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    // SAFETY: flock on a descriptor this function owns; it takes integer arguments only.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(
        rc,
        0,
        "locking {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    file
}

/// The three namespaces of one lab, and the tracer binary to run in it.
pub struct Lab {
    pub client: String,
    pub router: String,
    pub server: String,
    /// A second server holding the same address, when [`Lab::add_backend`] made it.
    pub backend: Option<String>,
    tag: String,
    tracer: PathBuf,
    /// Held for the lab's life: see [`Lab::new`].
    _turn: File,
}

impl Lab {
    /// Builds the lab, to run the tracer binary `tracer` in, once no other lab exists on this
    /// machine. Every lab has the same addresses, and the TCP tracepoints fire in every network
    /// namespace of the kernel, so a tracer would hear another lab's kernel notes as its own
    /// host's: labs take turns (an exclusive lock on one file, held until the lab is dropped, in
    /// this process or another; the kernel releases it when a process dies). Names stay unique
    /// per process and lab, so what a crashed run left behind never collides.
    pub fn new(tracer: impl Into<PathBuf>) -> Lab {
        let turn = wait_for_turn();
        let n = LAB_SEQ.fetch_add(1, Ordering::SeqCst);
        let tag = format!("rstlab-{}-{n}", std::process::id());
        let lab = Lab {
            client: format!("{tag}-c"),
            router: format!("{tag}-r"),
            server: format!("{tag}-s"),
            backend: None,
            tag,
            tracer: tracer.into(),
            _turn: turn,
        };
        for ns in [&lab.client, &lab.router, &lab.server] {
            ip(&["netns", "add", ns]);
        }
        let (c, r, s) = (
            lab.client.as_str(),
            lab.router.as_str(),
            lab.server.as_str(),
        );
        ip(&[
            "link", "add", "c0", "netns", c, "type", "veth", "peer", "name", "r0", "netns", r,
        ]);
        ip(&[
            "link",
            "add",
            SERVER_IF,
            "netns",
            s,
            "type",
            "veth",
            "peer",
            "name",
            ROUTER_SERVER_IF,
            "netns",
            r,
        ]);
        ip(&["-n", c, "addr", "add", "10.201.1.2/24", "dev", "c0"]);
        ip(&["-n", r, "addr", "add", "10.201.1.1/24", "dev", "r0"]);
        ip(&[
            "-n",
            r,
            "addr",
            "add",
            "10.201.2.1/24",
            "dev",
            ROUTER_SERVER_IF,
        ]);
        ip(&["-n", s, "addr", "add", "10.201.2.2/24", "dev", SERVER_IF]);
        for (ns, dev) in [
            (c, "c0"),
            (r, "r0"),
            (r, ROUTER_SERVER_IF),
            (s, SERVER_IF),
            (c, "lo"),
            (r, "lo"),
            (s, "lo"),
        ] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        ip(&["-n", c, "route", "add", "default", "via", "10.201.1.1"]);
        ip(&["-n", s, "route", "add", "default", "via", "10.201.2.1"]);
        let fwd = Command::new("ip")
            .args(["netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
            .status()
            .expect("sysctl");
        assert!(fwd.success(), "enabling forwarding in {r}");
        lab
    }

    /// Adds a second server namespace (the backend) behind the router's interface `r2`, holding
    /// the server's address too, as two backends behind one VIP do. Traffic reaches it once the
    /// router's route to the address points there ([`Lab::route_to_backend`]).
    pub fn add_backend(&mut self) -> String {
        let b = format!("{}-b", self.tag);
        ip(&["netns", "add", &b]);
        self.backend = Some(b.clone());
        ip(&[
            "link",
            "add",
            SERVER_IF,
            "netns",
            &b,
            "type",
            "veth",
            "peer",
            "name",
            "r2",
            "netns",
            &self.router,
        ]);
        ip(&["-n", &b, "addr", "add", "10.201.2.2/24", "dev", SERVER_IF]);
        for (ns, dev) in [
            (b.as_str(), SERVER_IF),
            (b.as_str(), "lo"),
            (self.router.as_str(), "r2"),
        ] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        ip(&[
            "-n",
            &b,
            "route",
            "add",
            "default",
            "via",
            "10.201.2.1",
            "dev",
            SERVER_IF,
            "onlink",
        ]);
        b
    }

    /// Points the router's route for the server address at the backend, as an ECMP rehash or a
    /// VIP change does mid-flow.
    pub fn route_to_backend(&self) {
        ip(&[
            "-n",
            &self.router,
            "route",
            "replace",
            &format!("{SERVER_IP}/32"),
            "dev",
            "r2",
        ]);
    }

    /// Starts the tracer in the server namespace on the server interface (JSON output) and waits
    /// until its hooks are attached.
    pub fn start_tracer(&self, extra: &[&str]) -> Tracer {
        self.start_tracer_as("json", extra)
    }

    /// As [`Lab::start_tracer`], with output `format` (`json` or `text`).
    pub fn start_tracer_as(&self, format: &str, extra: &[&str]) -> Tracer {
        self.start_tracer_in(&self.server, format, extra)
    }

    /// Starts the tracer in namespace `ns` on its `s0` interface.
    pub fn start_tracer_in(&self, ns: &str, format: &str, extra: &[&str]) -> Tracer {
        self.start_tracer_on(ns, SERVER_IF, format, extra)
    }

    /// Starts the tracer in namespace `ns` on interface `iface`.
    pub fn start_tracer_on(&self, ns: &str, iface: &str, format: &str, extra: &[&str]) -> Tracer {
        let dir = std::env::temp_dir().join(format!("{ns}-tracer"));
        std::fs::create_dir_all(&dir).unwrap();
        // The directory belongs to another user (nobody) and only its owner may write there, as
        // a ready file's directory may on a real host: the tracer, root with its capabilities
        // given up, must still create the ready file in it.
        std::os::unix::fs::chown(&dir, Some(65_534), Some(65_534)).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let ready = dir.join("ready");
        let _ = std::fs::remove_file(&ready);
        let stdout = File::create(dir.join("stdout")).unwrap();
        let stderr = File::create(dir.join("stderr")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(&self.tracer)
            .args([
                "live",
                "--iface",
                iface,
                "--format",
                format,
                "--interval",
                "1",
                "--ready-file",
            ])
            .arg(&ready)
            .args(extra)
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("starting rst-tracer");
        let mut tracer = Tracer {
            child: Some(child),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready.exists() {
            if let Some(status) = tracer.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "rst-tracer exited before attaching ({status}): {}",
                    tracer.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "rst-tracer did not attach in 30 s: {}",
                tracer.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        tracer
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.client, &self.router, &self.server]
            .into_iter()
            .chain(self.backend.as_ref())
        {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Lab {
    /// Starts tcpdump on the server's interface writing to `file`, with extra `args` (options
    /// and a filter), and returns once it listens.
    pub fn capture(&self, file: &std::path::Path, args: &[&str]) -> Capture {
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.server,
                "tcpdump",
                "-i",
                SERVER_IF,
                "-w",
            ])
            .arg(file)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting tcpdump");
        // tcpdump says "listening on ..." once its socket is open.
        let mut stderr = child.stderr.take().unwrap();
        let mut seen = Vec::new();
        let mut byte = [0u8; 1];
        while !String::from_utf8_lossy(&seen).contains("listening on") {
            assert_eq!(
                stderr.read(&mut byte).unwrap(),
                1,
                "tcpdump ended: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.push(byte[0]);
        }
        Capture {
            child: Some(child),
            stderr,
        }
    }

    /// A listening socket on the server.
    pub fn listen(&self, port: u16) -> TcpListener {
        in_ns(&self.server, || {
            TcpListener::bind(("0.0.0.0", port)).unwrap()
        })
    }

    /// A fresh connection to the server's `port`: (client side, server side).
    pub fn pair(&self, port: u16) -> (TcpStream, TcpStream) {
        let l = self.listen(port);
        let c = self.connect(port).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    }

    /// A connection from the client to the server's `port`.
    pub fn connect(&self, port: u16) -> std::io::Result<TcpStream> {
        in_ns(&self.client, || {
            TcpStream::connect_timeout(
                &format!("{SERVER_IP}:{port}").parse().unwrap(),
                Duration::from_secs(5),
            )
        })
    }
}

/// Makes `close` of this socket send a RST (SO_LINGER 0).
pub fn abort(s: &TcpStream) {
    socket2::SockRef::from(s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

/// Waits until a reset reached socket `s` and its stack took it (a read fails with
/// ECONNRESET), at most 5 s. Anything still unread on `s` is read and discarded.
pub fn wait_for_reset(s: &mut TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(n) if n > 0 => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            other => panic!("waiting for a reset on {s:?}: {other:?}"),
        }
    }
}

/// Waits up to `within` until a reset reached socket `s` and its stack took it, without
/// reading: the socket holds a pending ECONNRESET, or EPIPE where the peer had closed with a FIN
/// first (a read of such a socket returns end of stream, never the error). Whether it did; a
/// pending error is taken.
pub fn reset_taken_within(s: &TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(e)) = s.take_error() {
            if matches!(e.raw_os_error(), Some(libc::ECONNRESET | libc::EPIPE)) {
                return true;
            }
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until `s` has `n` bytes to read (they reached the socket), without reading them.
pub fn wait_until_readable(s: &TcpStream, n: usize) {
    let mut buf = vec![0u8; n];
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while s.peek(&mut buf).expect("data within 5 s") < n {}
}

/// Waits until namespace `ns` holds a TCP socket on local port `port` in `state` (an `ss` state
/// name; the orphan of a closed connection is a timewait socket in fin-wait-2 once its FIN is
/// acked).
pub fn wait_for_state(ns: &str, state: &str, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "ss", "-Htan", "state", state])
            .arg(format!("sport = :{port}"))
            .output()
            .expect("running ss");
        if !out.stdout.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {state} socket on port {port} in {ns} within 5 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until the peer's FIN reached `s` (a read returns end of stream).
pub fn wait_for_fin(s: &mut TcpStream) {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    while s.read(&mut buf).expect("the FIN within 5 s") > 0 {}
}

/// Runs `f` on a thread inside network namespace `ns`. Sockets made there stay in that
/// namespace, so they can be returned and used from anywhere.
pub fn in_ns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            // SAFETY: a valid namespace fd; the change affects only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread panicked")
    })
}

/// A running tcpdump; stopped (SIGINT, so it writes out what it holds) by [`Capture::stop`],
/// killed on drop otherwise.
pub struct Capture {
    child: Option<Child>,
    stderr: std::process::ChildStderr,
}

impl Capture {
    /// Stops tcpdump with SIGINT, waits for it and returns what it said on leaving (its counts
    /// of packets captured and dropped).
    pub fn stop(mut self) -> String {
        let mut child = self.child.take().unwrap();
        // SAFETY: signalling the tcpdump this process started.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        child.wait().unwrap();
        let mut said = String::new();
        let _ = self.stderr.read_to_string(&mut said);
        said
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running tracer; stopped (SIGINT) by [`Tracer::stop`], killed on drop otherwise.
pub struct Tracer {
    child: Option<Child>,
    dir: PathBuf,
}

impl Tracer {
    /// The tracer's process id (`ip netns exec` execs it in place).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// What the tracer wrote to stderr so far.
    pub fn stderr(&self) -> String {
        let mut s = String::new();
        let _ = File::open(self.dir.join("stderr")).and_then(|mut f| f.read_to_string(&mut s));
        s
    }

    /// Waits until the TCP traffic the test made has passed the tracer's hooks: until two
    /// interval reports (one per 1 s; `stats` records in JSON, the `kernel:` line in text)
    /// written after this call show the same count of TCP segments. A condition, where a fixed
    /// sleep would guess. Fails after 15 s of traffic that does not stop.
    pub fn wait_quiet(&self) {
        let tcp_count = |line: &str| -> Option<u64> {
            if let Ok(r) = serde_json::from_str::<serde_json::Value>(line) {
                return (r["type"] == "stats")
                    .then(|| r["counters"]["tcp"].as_u64())
                    .flatten();
            }
            let counts = line.trim_start().strip_prefix("kernel: packets ")?;
            counts.split_whitespace().nth(2)?.parse().ok()
        };
        // Whole lines only: the tracer may be writing the last one.
        let tcp_counts = |dir: &std::path::Path| -> Vec<u64> {
            let out = std::fs::read_to_string(dir.join("stdout")).unwrap_or_default();
            let whole = out.rfind('\n').map_or("", |end| &out[..end]);
            whole.lines().filter_map(tcp_count).collect()
        };
        let before = tcp_counts(&self.dir).len();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let counts = tcp_counts(&self.dir);
            if let [.., a, b] = counts[before.min(counts.len())..] {
                if a == b {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "TCP traffic still passing the tracer after 15 s: {counts:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// [`Tracer::wait_quiet`], then [`Tracer::stop`].
    pub fn stop_when_quiet(self) -> Vec<serde_json::Value> {
        self.wait_quiet();
        self.stop()
    }

    /// Sends SIGINT, waits for a clean exit and returns every JSON line it printed.
    pub fn stop(self) -> Vec<serde_json::Value> {
        self.stop_with(libc::SIGINT)
    }

    /// Sends `signal` (SIGINT or SIGTERM), waits for a clean exit and returns every JSON line.
    pub fn stop_with(self, signal: i32) -> Vec<serde_json::Value> {
        self.stop_raw(signal)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    /// Sends `signal`, waits for a clean exit and returns what the tracer printed.
    pub fn stop_raw(mut self, signal: i32) -> String {
        let mut child = self.child.take().unwrap();
        // SAFETY: signalling the child this test started.
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "rst-tracer did not stop within 15 s of signal {signal}: {}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "rst-tracer exited with {status}: {}",
            self.stderr()
        );
        std::fs::read_to_string(self.dir.join("stdout")).unwrap()
    }

    /// Waits up to `within` for the tracer to exit on its own: its exit status, what it printed
    /// and its stderr; or None if it still runs (it is then killed).
    pub fn wait_exit(
        mut self,
        within: Duration,
    ) -> Option<(std::process::ExitStatus, String, String)> {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                let stdout = std::fs::read_to_string(self.dir.join("stdout")).unwrap();
                return Some((status, stdout, self.stderr()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Kills the tracer with SIGKILL and waits for it.
    pub fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        // SAFETY: signalling the child this test started.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait().unwrap();
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
