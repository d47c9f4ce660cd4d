//! Kernel-note tests: real resets made by the server's own TCP stack and forged ones, and what the
//! tracer says the kernel said about them (tcp:tcp_send_reset's reason, tcp:tcp_receive_reset).
//! They need root, the built eBPF object and tracefs (`cargo xtask test`) and fail plainly
//! without. The reasons asserted are the ones Linux 6.10+ gives for each case.

use rst_tracer_lab::require_privileges;

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpStream},
    os::fd::AsRawFd,
    time::Duration,
};

use rst_tracer_lab::{
    forge::{inject, Rst, Sniffer},
    lab::{self, abort, Lab, CLIENT_IP, ROUTER_SERVER_IF, SERVER_IP},
    scenarios::nft,
};
use serde_json::Value;

/// The tracer binary this test runs.
const TRACER: &str = env!("CARGO_BIN_EXE_rst-tracer");

/// The one reset on server port `port` sent in `direction`.
fn reset_on<'a>(out: &'a [Value], port: u16, direction: &str) -> &'a Value {
    let found: Vec<&Value> = out
        .iter()
        .filter(|o| o["type"] == "reset" && o["direction"] == direction)
        .filter(|o| o["flow"]["sport"] == port || o["flow"]["dport"] == port)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {direction} reset on port {port}, got {found:#?}"
    );
    found[0]
}

/// The server's stack resets connections five ways; each egress reset must carry the kernel's
/// reason and the socket state, and none an `accepted` (no socket of this host received it).
/// Returns the client sockets, to be dropped once the tracer has stopped.
fn local_resets(lab: &Lab) -> Vec<TcpStream> {
    let mut buf = [0u8; 4];
    // SO_LINGER 0 close after reading everything.
    let (c1, mut s1) = lab.pair(8301);
    (&c1).write_all(b"abcd").unwrap();
    s1.read_exact(&mut buf).unwrap();
    abort(&s1);
    drop(s1);
    // Close with unread data.
    let (mut c2, s2) = lab.pair(8302);
    c2.write_all(b"abcd").unwrap();
    lab::wait_until_readable(&s2, 4);
    drop(s2);
    // A connect to a port nobody listens on.
    assert!(lab.connect(8303).is_err());
    // Data to a connection the server closed: the orphaned socket waits in FIN_WAIT2 as a
    // timewait socket, which answers with a reset.
    let (mut c4, s4) = lab.pair(8304);
    drop(s4);
    lab::wait_for_fin(&mut c4);
    lab::wait_for_state(&lab.server, "fin-wait-2", 8304);
    let _ = c4.write_all(b"x");
    // Data to a connection the server shut down both ways but still holds open.
    let (mut c7, s7) = lab.pair(8307);
    s7.shutdown(Shutdown::Both).unwrap();
    lab::wait_for_fin(&mut c7);
    let _ = c7.write_all(b"x");
    vec![c1, c2, c4, c7, s7]
}

#[test]
fn the_kernel_says_why_this_host_reset_and_whether_a_received_reset_took() {
    require_privileges!();
    let lab = Lab::new(TRACER);
    let tracer = lab.start_tracer(&[]);
    let keep = local_resets(&lab);

    // Two forged resets toward the server, claiming to be the client: a blind one far out of
    // window, then the exact one. The server's answer to the client's next segment is NO_SOCKET.
    let sniffer = Sniffer::open(&lab.router, ROUTER_SERVER_IF);
    let (mut c, mut s) = lab.pair(8305);
    c.write_all(b"abcd").unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).unwrap();
    let seen = sniffer.data_to(8305);
    let blind = Rst {
        src: CLIENT_IP.parse().unwrap(),
        sport: seen.sport,
        dst: SERVER_IP.parse().unwrap(),
        dport: 8305,
        seq: seen.next_seq().wrapping_add(0x4000_0000),
        ack: None,
        ttl: 64,
        ip_id: 7,
        window: 0,
    };
    // One path, one queue: the server's stack takes them in the order they are sent.
    inject(&lab.router, &blind);
    inject(
        &lab.router,
        &Rst {
            seq: seen.next_seq(),
            ip_id: 8,
            ..blind
        },
    );
    lab::wait_for_reset(&mut s);
    c.write_all(b"more").unwrap();
    let out = tracer.stop_when_quiet();
    drop((keep, c, s));

    for (port, reason, state) in [
        (8301, "TCP_STATE", Some("TCP_CLOSE")),
        (8302, "TCP_ABORT_ON_CLOSE", Some("TCP_CLOSE")),
        (8303, "NO_SOCKET", None),
        (8304, "TCP_TIMEWAIT_SOCKET", Some("TCP_TIME_WAIT")),
        (8305, "NO_SOCKET", None),
        (8307, "TCP_ABORT_ON_DATA", Some("TCP_CLOSE")),
    ] {
        let r = reset_on(&out, port, "egress");
        assert_eq!(r["kernel_reason"], reason, "port {port}: {r:#}");
        match state {
            Some(state) => assert_eq!(r["socket_state"], state, "port {port}: {r:#}"),
            None => assert!(r["socket_state"].is_null(), "port {port}: {r:#}"),
        }
        assert!(r["accepted"].is_null(), "port {port}: {r:#}");
        assert_eq!(r["origin"], "local", "port {port}: {r:#}");
        // Only the answer to the client's data after the forged kill is mid-stream NO_SOCKET.
        let midstream = r["findings"].to_string().contains("no_socket_midstream");
        assert_eq!(midstream, port == 8305, "port {port}: {r:#}");
    }

    let received: Vec<&Value> = out
        .iter()
        .filter(|o| o["type"] == "reset" && o["direction"] == "ingress")
        .filter(|o| o["flow"]["dport"] == 8305)
        .collect();
    let by_id = |id: u16| {
        received
            .iter()
            .find(|r| r["rst"]["ip_id"] == id)
            .unwrap_or_else(|| panic!("no ingress reset with IP ID {id}: {received:#?}"))
    };
    let (blind, exact) = (by_id(7), by_id(8));
    assert_eq!(blind["accepted"], false, "{blind:#}");
    assert_eq!(exact["accepted"], true, "{exact:#}");
    assert!(blind["kernel_reason"].is_null() && exact["kernel_reason"].is_null());
    let findings = |r: &Value| r["findings"].to_string();
    assert!(findings(blind).contains("not_accepted"), "{blind:#}");
    assert!(!findings(exact).contains("not_accepted"), "{exact:#}");

    // The summaries add up the same: NO_SOCKET twice to the client, one rejected reset.
    let summaries: Vec<&Value> = out.iter().filter(|o| o["type"] == "summary").collect();
    let sent = |reason: &str| -> u64 {
        summaries
            .iter()
            .flat_map(|s| s["local_by_kernel_reason"].as_array().unwrap())
            .filter(|r| r["reason"] == reason && r["remote"] == CLIENT_IP)
            .map(|r| r["resets"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(sent("NO_SOCKET"), 2, "{summaries:#?}");
    assert_eq!(sent("TCP_ABORT_ON_CLOSE"), 1, "{summaries:#?}");
    let rejected: u64 = summaries
        .iter()
        .map(|s| s["not_accepted"].as_u64().unwrap())
        .sum();
    assert_eq!(rejected, 1, "{summaries:#?}");
}

/// The seed case of a server that goes on listening: a device resets the server side of a live
/// flow (its socket dies), the client sends on, and the server answers. No connection socket is
/// left, so the segment reaches the port's listener, which resets it: tcp_send_reset fires with
/// the listener (state TCP_LISTEN, reason TCP_FLAGS on Linux 6.10+), whose addresses are its own
/// (0.0.0.0:port, peer 0.0.0.0:0), not the flow's. The kernel's word must still reach the reset
/// and the summary. (With the listener closed the answer is NO_SOCKET, sent without a socket:
/// port 8305 above.)
#[test]
fn a_listeners_reset_for_a_connection_gone_here_carries_the_kernels_reason() {
    require_privileges!();
    // A port of its own: the tracepoints are kernel-wide.
    const PORT: u16 = 8310;
    let lab = Lab::new(TRACER);
    let tracer = lab.start_tracer(&[]);
    let sniffer = Sniffer::open(&lab.router, ROUTER_SERVER_IF);
    let listener = lab.listen(PORT);
    let mut c = lab.connect(PORT).unwrap();
    let (mut s, _) = listener.accept().unwrap();
    c.write_all(b"abcd").unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).unwrap();
    let seen = sniffer.data_to(PORT);
    // Forged toward the server at exactly the client's next sequence number: the server's socket
    // accepts it and is gone; the listener stays.
    inject(
        &lab.router,
        &Rst {
            src: CLIENT_IP.parse().unwrap(),
            sport: seen.sport,
            dst: SERVER_IP.parse().unwrap(),
            dport: PORT,
            seq: seen.next_seq(),
            ack: None,
            ttl: 64,
            ip_id: 9,
            window: 0,
        },
    );
    lab::wait_for_reset(&mut s);
    c.write_all(b"more").unwrap();
    let out = tracer.stop_when_quiet();
    drop((c, s, listener));

    let r = reset_on(&out, PORT, "egress");
    assert_eq!(r["kernel_reason"], "TCP_FLAGS", "{r:#}");
    assert_eq!(r["socket_state"], "TCP_LISTEN", "{r:#}");
    assert_eq!(r["origin"], "local", "{r:#}");
    // A reply to a segment of a connection that is gone here, and the verdict says so.
    assert_eq!(r["explanation"], "no_socket", "{r:#}");
    assert!(
        r["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "no_socket_midstream"),
        "{r:#}"
    );
    let listener_resets: u64 = out
        .iter()
        .filter(|o| o["type"] == "summary")
        .flat_map(|s| s["local_by_kernel_reason"].as_array().unwrap())
        .filter(|r| r["reason"] == "TCP_FLAGS" && r["remote"] == CLIENT_IP)
        .map(|r| r["resets"].as_u64().unwrap())
        .sum();
    assert_eq!(listener_resets, 1, "{out:#?}");
}

/// A tracer on the router sees the server's abort arrive (ingress) on its way to the client. The
/// client's socket accepts it on this same kernel, but no socket of the router is involved:
/// `accepted` is null, and the server's reason is not the router's to report.
#[test]
fn forwarded_resets_carry_no_stack_view() {
    require_privileges!();
    let lab = Lab::new(TRACER);
    let tracer = lab.start_tracer_on(&lab.router, ROUTER_SERVER_IF, "json", &[]);
    let (c, mut s) = lab.pair(8308);
    (&c).write_all(b"abcd").unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).unwrap();
    abort(&s);
    drop(s);
    let out = tracer.stop_when_quiet();
    drop(c);

    let r = reset_on(&out, 8308, "ingress");
    assert_eq!(r["flow"]["src"], SERVER_IP, "{r:#}");
    assert!(r["accepted"].is_null(), "{r:#}");
    assert!(r["kernel_reason"].is_null(), "{r:#}");
}

/// The tracepoints fire in every network namespace: resets the client's namespace makes for
/// itself (connects to its own closed ports) are no flow the router's tracer sees, and must not
/// fill its flow table; they are counted as notes from elsewhere.
#[test]
fn another_namespaces_kernel_notes_stay_out_of_the_flow_table() {
    require_privileges!();
    let lab = Lab::new(TRACER);
    // Traced: the router, whose own stack makes no resets.
    let tracer = lab.start_tracer_on(&lab.router, "r0", "json", &[]);
    const REFUSED: u16 = 200;
    lab::in_ns(&lab.client, || {
        for port in 9000..9000 + REFUSED {
            let to = std::net::SocketAddr::new(CLIENT_IP.parse().unwrap(), port);
            assert!(TcpStream::connect_timeout(&to, Duration::from_secs(1)).is_err());
        }
    });
    let out = tracer.stop_when_quiet();
    let summary = out.iter().rev().find(|o| o["type"] == "summary").unwrap();
    let stats = out.iter().rev().find(|o| o["type"] == "stats").unwrap();
    assert_eq!(summary["flows_tracked"], 0, "{summary}");
    assert_eq!(summary["resets"], 0, "{summary}");
    // Each refused connect is one tcp_send_reset and one tcp_receive_reset in the client's
    // namespace.
    assert!(
        stats["stack_notes_elsewhere"].as_u64().unwrap() >= 2 * u64::from(REFUSED),
        "{stats}"
    );
}

/// The seed case: a server with TCP_DEFER_ACCEPT drops the client's bare handshake ACK and
/// retransmits its SYN-ACK while the client, believing the connection open, waits; the client
/// then gives up and resets. The reset's findings say the server's stack never took the ACK.
#[test]
fn a_synack_retransmitted_after_the_handshake_is_evidence_on_the_reset() {
    require_privileges!();
    let lab = Lab::new(TRACER);
    let tracer = lab.start_tracer(&[]);
    let listener = lab.listen(8306);
    // One second: the listener retransmits its SYN-ACK at the first timeout (1 s) even though
    // the client's ACK arrived.
    let one_second: libc::c_int = 1;
    // SAFETY: a valid socket and an int option of the right size.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&one_second as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "TCP_DEFER_ACCEPT: {}",
        std::io::Error::last_os_error()
    );
    let client = lab.connect(8306).unwrap();
    std::thread::sleep(Duration::from_millis(1_500));
    abort(&client);
    drop(client);
    let out = tracer.stop_when_quiet();
    drop(listener);

    let r = reset_on(&out, 8306, "ingress");
    let findings = r["findings"].to_string();
    assert!(findings.contains("synack_after_handshake"), "{r:#}");
}

/// tracefs in this test process's own mount namespace (the tracers the tests start mount
/// theirs): mounted while a test needs it if it was missing, and unmounted after, one test at a
/// time so that none unmounts it under another.
struct HostTracefs {
    _mount: rst_tracer::tracepoints::Tracefs,
    _turn: std::sync::MutexGuard<'static, ()>,
}

fn host_tracefs() -> HostTracefs {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    HostTracefs {
        _mount: rst_tracer::tracepoints::ensure_tracefs().expect("tracefs"),
        _turn: turn,
    }
}

/// Counts one tracepoint's firings for a local port in a tracefs instance of its own, so other
/// tests' traffic does not count; removed on drop.
struct TraceCount {
    dir: std::path::PathBuf,
    event: std::path::PathBuf,
    _tracefs: HostTracefs,
}

impl TraceCount {
    fn start(event: &str, sport: u16) -> TraceCount {
        let tracefs = host_tracefs();
        let dir = std::path::Path::new(rst_tracer::tracepoints::TRACEFS)
            .join("instances")
            .join(format!("rstlab-{}-{sport}", std::process::id()));
        std::fs::create_dir(&dir).expect("a tracefs instance");
        let event = dir.join("events").join(event);
        std::fs::write(event.join("filter"), format!("sport == {sport}")).unwrap();
        std::fs::write(event.join("enable"), "1").unwrap();
        TraceCount {
            dir,
            event,
            _tracefs: tracefs,
        }
    }

    fn count(&self) -> usize {
        let trace = std::fs::read_to_string(self.dir.join("trace")).unwrap();
        trace.lines().filter(|l| !l.starts_with('#')).count()
    }
}

impl Drop for TraceCount {
    fn drop(&mut self) {
        let _ = std::fs::write(self.event.join("enable"), "0");
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Retransmissions come in bursts; the kernel sends one event per flow side per sample gap and
/// folds the rest in, yet the count a reset's verdict reports is every retransmission the
/// kernel made (counted independently through a tracefs instance). With a ten-minute gap only
/// the first retransmission has an event of its own: the rest reach userspace only through the
/// flush that the reset makes.
#[test]
fn retransmission_bursts_are_folded_into_few_events_and_counted_exactly() {
    require_privileges!();
    // A port no other test here uses: the tracepoints, and the count below, are kernel-wide.
    const PORT: u16 = 8309;
    let lab = Lab::new(TRACER);
    // The router drops one in four of the server's segments on this port, and its reset, so
    // that only the server's kernel (the send tracepoint) can flush the held count: the
    // tracepoints are kernel-wide, and the client accepting the reset would flush it too.
    let r = lab.router.as_str();
    nft(r, "add table inet rstlab_loss");
    nft(
        r,
        "add chain inet rstlab_loss lossy { type filter hook forward priority 0; policy accept; }",
    );
    nft(
        r,
        &format!("add rule inet rstlab_loss lossy ip saddr {SERVER_IP} tcp sport {PORT} numgen random mod 4 == 0 drop"),
    );
    nft(
        r,
        &format!("add rule inet rstlab_loss lossy ip saddr {SERVER_IP} tcp sport {PORT} tcp flags & rst != 0 drop"),
    );
    let tracer = lab.start_tracer(&["--sample-gap", "600000"]);
    let kernel = TraceCount::start("tcp/tcp_retransmit_skb", PORT);
    let (mut c, s) = lab.pair(PORT);
    // The server streams until told to stop, then aborts in the middle of the stream, while
    // the lossy path still has it retransmitting: retransmissions held in the kernel's tally
    // must be flushed with the reset.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut s = s;
            let chunk = vec![0x5a; 64 << 10];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                s.write_all(&chunk).unwrap();
            }
            abort(&s);
        })
    };
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut got = vec![0u8; 4 << 20];
    c.read_exact(&mut got).unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    // Read on until the stream goes quiet (the reset never reaches the client).
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut rest = [0u8; 64 << 10];
    while matches!(c.read(&mut rest), Ok(n) if n > 0) {}
    writer.join().unwrap();
    let out = tracer.stop_when_quiet();
    let retransmitted = kernel.count();
    drop(c);

    assert!(
        retransmitted >= 10,
        "the lossy path made only {retransmitted} retransmissions"
    );
    // The abort is the first egress reset; the server answers what the client sends after it
    // with more (the router keeps the resets from the client).
    let r = out
        .iter()
        .filter(|o| o["type"] == "reset" && o["direction"] == "egress")
        .filter(|o| o["flow"]["sport"] == PORT)
        .min_by_key(|o| o["ts_ns"].as_u64())
        .expect("the server's abort");
    let finding = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "stack_retransmits")
        .unwrap_or_else(|| panic!("no stack_retransmits finding: {r:#}"));
    assert!(
        finding["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("retransmitted {retransmitted} time(s)")),
        "the kernel retransmitted {retransmitted} times: {finding:#}"
    );
    let stats = out.iter().rev().find(|o| o["type"] == "stats").unwrap();
    let folded = stats["counters"]["stack_retransmits_folded"]
        .as_u64()
        .unwrap();
    // Other tests' flows may fold theirs too (the tracepoints are kernel-wide).
    assert!(
        folded as usize >= retransmitted - 1,
        "{folded} of {retransmitted} retransmissions folded: {stats:#}"
    );
}

#[test]
fn without_the_tracepoints_the_tracer_runs_and_says_what_is_off() {
    require_privileges!();
    let lab = Lab::new(TRACER);
    let empty = std::env::temp_dir().join(format!("rst-no-tracefs-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let tracer = lab.start_tracer(&["--tracefs", empty.to_str().unwrap()]);
    let keep = local_resets(&lab);
    tracer.wait_quiet();
    let stderr = tracer.stderr();
    let out = tracer.stop();
    drop(keep);
    std::fs::remove_dir(&empty).unwrap();

    for tracepoint in [
        "tcp_send_reset",
        "tcp_receive_reset",
        "tcp_retransmit_skb",
        "tcp_retransmit_synack",
    ] {
        assert!(
            stderr.contains(&format!("tcp:{tracepoint} is missing")),
            "stderr: {stderr}"
        );
    }
    for port in [8301, 8302, 8303, 8304, 8307] {
        let r = reset_on(&out, port, "egress");
        assert!(r["kernel_reason"].is_null(), "port {port}: {r:#}");
        assert!(r["accepted"].is_null(), "port {port}: {r:#}");
        assert_eq!(r["origin"], "local", "port {port}: {r:#}");
    }
}

/// Every kernel-note program passes this kernel's verifier and attaches. The tracer runs on
/// without one it could not attach (it says so on stderr), so only this test fails loudly when
/// one no longer loads (a program over the verifier's 512-byte stack, for example).
#[test]
fn every_stack_view_program_loads_and_attaches() {
    require_privileges!();
    let _tracefs = host_tracefs();
    let view = rst_tracer::tracepoints::Tracepoints::discover(std::path::Path::new(
        rst_tracer::tracepoints::TRACEFS,
    ));
    assert!(
        view.send && view.receive && view.retransmit && view.synack,
        "this kernel lacks a tracepoint: {:?}",
        view.notes
    );
    let load = rst_tracer::attach::LoadOptions {
        tracepoints: view.offsets,
        ..Default::default()
    };
    let object = rst_tracer::object::embedded().unwrap();
    let mut ebpf = rst_tracer::attach::open(object, &load).unwrap();
    let refused = rst_tracer::attach::attach_tracepoints(&mut ebpf, &view);
    assert!(refused.is_empty(), "{refused:#?}");
}
