//! Lab tests: real TCP connections between network namespaces, the real tracer binary attached
//! in the server namespace, assertions on its JSON output. They need root and the built eBPF
//! object (`cargo xtask test`) and fail plainly without.

use rst_tracer_lab::require_privileges;

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    time::{Duration, Instant},
};

use rst_tracer_lab::{
    forge::{inject, Rst, Sniffer},
    lab::{abort, in_ns, wait_for_reset, Lab, CLIENT_IP, ROUTER_SERVER_IF, SERVER_IF, SERVER_IP},
};

/// The tracer binary this test runs.
const TRACER: &str = env!("CARGO_BIN_EXE_rst-tracer");
use serde_json::Value;

/// Makes one reset of each honest kind: the server aborts on port 8081 (SO_LINGER 0, an egress
/// RST), the client aborts on port 8082 (an ingress RST from one hop away), and a connect to
/// closed port 9 is refused. Returns the sockets that are still open (the peers of the aborted
/// ones), to be dropped once the test has what it needs.
fn resets_of_each_kind(lab: &Lab) -> (TcpStream, TcpStream) {
    let (mut c, mut s) = lab.pair(8081);
    c.write_all(b"request").unwrap();
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).unwrap();
    abort(&s);
    drop(s);

    let (mut c2, mut s2) = lab.pair(8082);
    c2.write_all(b"abc").unwrap();
    s2.read_exact(&mut buf[..3]).unwrap();
    abort(&c2);
    drop(c2);

    let refused = lab.connect(9).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    (c, s2)
}

/// The reset records whose flow involves server port `port`.
fn resets_on(out: &[Value], port: u16) -> Vec<&Value> {
    out.iter()
        .filter(|o| o["type"] == "reset")
        .filter(|o| o["flow"]["sport"] == port || o["flow"]["dport"] == port)
        .collect()
}

#[test]
fn real_connections_stream_each_reset_once_with_its_evidence() {
    require_privileges!();
    let lab = Lab::new(TRACER);
    let tracer = lab.start_tracer(&[]);

    // 1. Normal close: no reset.
    let (mut c, mut s) = lab.pair(8080);
    c.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).unwrap();
    drop(c);
    drop(s);

    // 2.-4. A server abort, a client abort and a refused connect.
    let survivors = resets_of_each_kind(&lab);
    let out = tracer.stop_when_quiet();
    drop(survivors);

    assert!(
        resets_on(&out, 8080).is_empty(),
        "a normal close has no reset: {:?}",
        resets_on(&out, 8080)
    );

    let r = resets_on(&out, 8081);
    assert_eq!(r.len(), 1, "server abort: {r:?}");
    let r = r[0];
    assert_eq!(r["direction"], "egress");
    assert_eq!(r["hook"], "tc-egress");
    assert_eq!(r["iface"], SERVER_IF);
    assert_eq!(
        (r["flow"]["src"].as_str(), r["flow"]["sport"].as_u64()),
        (Some(SERVER_IP), Some(8081))
    );
    assert_eq!(r["flow"]["dst"], CLIENT_IP);
    assert_eq!(r["rst"]["ttl"], 64, "sent here: nothing decremented it");
    assert_eq!(
        r["seq_check"]["delta"], 0,
        "an abort sends the next sequence number"
    );
    assert_eq!(
        r["receiver"]["ttl"]["min"], 63,
        "the client is one router away"
    );
    assert_eq!(r["history"]["handshake"], true);
    assert_eq!(
        (r["origin"].as_str(), r["suspicious"].as_bool()),
        (Some("local"), Some(false)),
        "sent by this host"
    );

    let r = resets_on(&out, 8082);
    assert_eq!(r.len(), 1, "client abort: {r:?}");
    let r = r[0];
    assert_eq!(r["direction"], "ingress");
    assert_eq!(r["hook"], "tc-ingress", "auto picks tc on a veth");
    assert_eq!(r["flow"]["src"], CLIENT_IP);
    assert_eq!(r["flow"]["dport"], 8082);
    assert_eq!(r["rst"]["ttl"], 63, "the router decremented it");
    assert_eq!(r["sender"]["ttl"]["min"], 63);
    assert_eq!(r["seq_check"]["delta"], 0);
    assert_eq!(
        (r["origin"].as_str(), r["suspicious"].as_bool()),
        (Some("peer"), Some(false)),
        "{}",
        r["findings"]
    );

    let r = resets_on(&out, 9);
    assert_eq!(r.len(), 1, "refused connect: {r:?}");
    let r = r[0];
    assert_eq!(r["direction"], "egress");
    assert_eq!(r["flow"]["src"], SERVER_IP);
    assert_eq!(r["flow"]["sport"], 9);
    assert_eq!(r["rst"]["flags"], "RST|ACK");
    assert_eq!(r["rst"]["seq"], 0);
    assert_eq!(
        r["sender"]["seen"], false,
        "the server sent nothing before refusing"
    );
    assert_eq!(r["seq_check"]["ack_delta"], 0, "it acknowledges the SYN");
    assert_eq!(r["origin"], "local");

    let resets = out.iter().filter(|o| o["type"] == "reset").count();
    assert_eq!(resets, 3, "exactly the three resets above");
    let last_stats = out
        .iter()
        .rev()
        .find(|o| o["type"] == "stats")
        .expect("a final stats record");
    assert_eq!(last_stats["counters"]["rst"], 3);
    assert_eq!(last_stats["ring_drops"], 0);
    assert!(
        out.iter().any(|o| o["type"] == "summary"),
        "a final summary"
    );
}

#[test]
fn a_reset_forged_by_the_router_with_its_own_ttl() {
    require_privileges!();
    let lab = Lab::new(TRACER);
    let port = 8090;
    let l = lab.listen(port);
    let sniffer = Sniffer::open(&lab.router, ROUTER_SERVER_IF);
    let tracer = lab.start_tracer(&[]);
    let mut c = lab.connect(port).unwrap();
    let (mut s, _) = l.accept().unwrap();
    let client_port = c.local_addr().unwrap().port();
    c.write_all(b"GET /").unwrap();
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).unwrap();
    let next_seq = sniffer.data_to(port).next_seq();

    // The router, pretending to be the client: its own TTL (64, not decremented by anyone) and
    // a fixed IP ID, exactly at the client's next sequence number.
    let rst = Rst {
        src: CLIENT_IP.parse().unwrap(),
        sport: client_port,
        dst: SERVER_IP.parse().unwrap(),
        dport: port,
        seq: next_seq,
        ack: None,
        ttl: 64,
        ip_id: 0x5151,
        window: 0,
    };
    inject(&lab.router, &rst);
    wait_for_reset(&mut s);
    drop((c, s));
    let out = tracer.stop_with(libc::SIGTERM);
    assert!(
        out.iter().any(|o| o["type"] == "summary"),
        "SIGTERM also ends with a final summary"
    );

    let r = resets_on(&out, port);
    let forged: Vec<&&Value> = r.iter().filter(|o| o["direction"] == "ingress").collect();
    assert_eq!(forged.len(), 1, "{r:?}");
    let f = forged[0];
    assert_eq!(f["flow"]["src"], CLIENT_IP);
    assert_eq!(f["flow"]["sport"], client_port);
    assert_eq!(f["flow"]["dport"], port);
    assert_eq!(f["rst"]["ttl"], 64, "the router's own TTL");
    assert_eq!(
        f["sender"]["ttl"]["min"], 63,
        "what the real client's packets arrive with"
    );
    assert_eq!(f["sender"]["ttl"]["max"], 63);
    assert_eq!(f["seq_check"]["delta"], 0);
    assert_eq!(f["rst"]["flags"], "RST");
    // The verdict: not sent by the client, by a box one hop closer (the router).
    assert_eq!(
        (
            f["origin"].as_str(),
            f["suspicious"].as_bool(),
            f["hops_closer"].as_i64()
        ),
        (Some("on-path"), Some(true), Some(1)),
        "{}",
        f["findings"]
    );
    assert_eq!(f["findings"][0]["code"], "ttl_mismatch");
}

#[test]
fn live_pcap_out_holds_each_reset_as_the_wire_had_it_and_every_record_fits_the_schema() {
    require_privileges!();
    let lab = Lab::new(TRACER);
    let dir = tempfile::tempdir().unwrap();
    // The tracer's file goes to a directory of another user (nobody, 0755: only its owner may
    // write), as an operator's may: the tracer creates it before giving up CAP_DAC_OVERRIDE.
    let theirs = dir.path().join("nobody");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65_534), Some(65_534)).unwrap();
    let (wire, resets_out) = (dir.path().join("wire.pcap"), theirs.join("resets.pcapng"));
    // tcpdump beside the tracer on the server's interface: the independent record of the bytes.
    let capture = lab.capture(&wire, &["--immediate-mode", "-U", "-n", "tcp"]);
    let tracer = lab.start_tracer(&[&format!("--pcap-out={}", resets_out.display())]);

    // A forged reset (the router, its own TTL, as in a_reset_forged_by_the_router_with_its_own_ttl)
    // and the honest kinds.
    let port = 8091;
    let l = lab.listen(port);
    let sniffer = Sniffer::open(&lab.router, ROUTER_SERVER_IF);
    let mut c = lab.connect(port).unwrap();
    let (mut s, _) = l.accept().unwrap();
    c.write_all(b"GET /").unwrap();
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).unwrap();
    let rst = Rst {
        src: CLIENT_IP.parse().unwrap(),
        sport: c.local_addr().unwrap().port(),
        dst: SERVER_IP.parse().unwrap(),
        dport: port,
        seq: sniffer.data_to(port).next_seq(),
        ack: None,
        ttl: 64,
        ip_id: 0x5151,
        window: 0,
    };
    inject(&lab.router, &rst);
    let survivors = resets_of_each_kind(&lab);
    let out = tracer.stop_when_quiet();
    capture.stop();
    drop((survivors, c, s));

    // Every record of the live run is in the JSON contract (schema/).
    let seen =
        rst_tracer_lab::schema::Schemas::load().check_all(&out, &["reset", "summary", "stats"]);
    eprintln!("schema: checked {seen:?}");
    let resets: Vec<&Value> = out.iter().filter(|o| o["type"] == "reset").collect();
    assert!(resets.len() >= 4, "{resets:#?}");
    assert!(
        resets.iter().any(|r| r["suspicious"] == true),
        "the forged reset is suspicious: {resets:#?}"
    );
    if let Err(wrong) = rst_tracer_lab::pcapng::check(&resets_out, &resets, SERVER_IF) {
        panic!("{wrong}");
    }
    // Each written packet is, byte for byte, a reset tcpdump saw on the wire (the times come
    // from different clocks).
    let bytes = |v: Vec<(u64, Vec<u8>)>| {
        let mut b: Vec<Vec<u8>> = v.into_iter().map(|(_, b)| b).collect();
        b.sort();
        b
    };
    let written = bytes(rst_tracer_lab::pcapng::packets(
        &rst_tracer_lab::pcapng::records(&resets_out),
    ));
    let on_the_wire = bytes(rst_tracer_lab::pcapng::resets_in(&wire));
    assert_eq!(
        written, on_the_wire,
        "the written bytes are the wire's resets"
    );
}

/// Whether an XDP program is attached to the server's interface; a failed query fails the test
/// (read as "nothing attached" it would pass the detach checks it serves).
fn xdp_attached(lab: &Lab) -> bool {
    let out = Command::new("ip")
        .args(["-n", &lab.server, "-d", "link", "show", "dev", SERVER_IF])
        .output()
        .unwrap();
    assert!(
        out.status.success() && !out.stdout.is_empty(),
        "ip link show {SERVER_IF} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.contains("prog/xdp") || text.contains(" xdp")
}

fn tcx_programs(lab: &Lab) -> usize {
    in_ns(&lab.server, || {
        [
            aya::programs::TcAttachType::Ingress,
            aya::programs::TcAttachType::Egress,
        ]
        .into_iter()
        .map(
            |t| match aya::programs::SchedClassifier::query_tcx(SERVER_IF, t) {
                Ok((_, programs)) => programs.len(),
                // A failed query is no evidence that nothing is attached.
                Err(e) => panic!("querying tcx {t:?} on {SERVER_IF}: {e}"),
            },
        )
        .sum()
    })
}

#[test]
fn kill_9_leaves_nothing_attached() {
    require_privileges!();
    let lab = Lab::new(TRACER);
    let tracer = lab.start_tracer(&["--ingress", "xdp"]);
    assert!(
        xdp_attached(&lab),
        "XDP should be attached while the tracer runs"
    );
    assert_eq!(tcx_programs(&lab), 1, "tcx egress while the tracer runs");
    tracer.kill9();
    // Links are released with the process's file descriptors; give the kernel a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while (xdp_attached(&lab) || tcx_programs(&lab) > 0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!xdp_attached(&lab), "XDP still attached after kill -9");
    assert_eq!(
        tcx_programs(&lab),
        0,
        "tcx programs still attached after kill -9"
    );

    // The same with TC on ingress.
    let tracer = lab.start_tracer(&["--ingress", "tc"]);
    assert_eq!(tcx_programs(&lab), 2);
    tracer.kill9();
    let deadline = Instant::now() + Duration::from_secs(5);
    while tcx_programs(&lab) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        tcx_programs(&lab),
        0,
        "tcx programs still attached after kill -9"
    );
}

/// Adds the veth `gone0` to the server's namespace (10.209.0.1/24), its peer `gone1` to the
/// client's (10.209.0.2/24), both up: an interface for the tests to delete.
fn add_gone0(lab: &Lab) {
    let (s, c) = (lab.server.as_str(), lab.client.as_str());
    rst_tracer_lab::lab::ip(&[
        "-n", s, "link", "add", "gone0", "type", "veth", "peer", "name", "gone1", "netns", c,
    ]);
    rst_tracer_lab::lab::ip(&["-n", s, "addr", "add", "10.209.0.1/24", "dev", "gone0"]);
    rst_tracer_lab::lab::ip(&["-n", c, "addr", "add", "10.209.0.2/24", "dev", "gone1"]);
    rst_tracer_lab::lab::ip(&["-n", s, "link", "set", "gone0", "up"]);
    rst_tracer_lab::lab::ip(&["-n", c, "link", "set", "gone1", "up"]);
}

/// Waits up to 5 s for the tracer to write `text` to stderr.
fn wait_for_stderr(tracer: &rst_tracer_lab::lab::Tracer, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !tracer.stderr().contains(text) {
        assert!(
            Instant::now() < deadline,
            "no {text:?} on stderr in 5 s: {}",
            tracer.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_interface_that_disappears_is_reported_and_ends_the_run() {
    require_privileges!();
    let lab = Lab::new(TRACER);
    add_gone0(&lab);
    let tracer = lab.start_tracer_on(&lab.server, "gone0", "json", &["--ingress", "tc"]);
    let deleted = Instant::now();
    rst_tracer_lab::lab::ip(&["-n", &lab.server, "link", "del", "gone0"]);
    let Some((status, stdout, stderr)) = tracer.wait_exit(Duration::from_secs(5)) else {
        panic!("still tracing 5 s after its interface was deleted");
    };
    assert!(deleted.elapsed() <= Duration::from_secs(5));
    assert!(
        !status.success(),
        "exit status {status} after the interface went: {stderr}"
    );
    assert!(
        stderr.contains("interface gone0") && stderr.contains("disappeared"),
        "{stderr}"
    );
    let summaries = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "summary")
        .count();
    assert!(summaries >= 1, "no final summary: {stdout}");
}

#[test]
fn live_metrics_over_http_count_the_resets_the_json_stream_reports() {
    use rst_tracer_lab::metrics::{family, fetch, implied_by, parse};
    require_privileges!();
    let lab = Lab::new(TRACER);
    // The default address: the server namespace's own loopback.
    let tracer = lab.start_tracer(&["--metrics"]);
    let addr = "127.0.0.1:9464".parse().unwrap();
    let scrape = || parse(&in_ns(&lab.server, || fetch(addr)));
    // Serving, the tracer (its metrics thread included) holds no privilege it gave up.
    let held = rst_tracer_lab::caps_still_held(tracer.pid());
    assert!(held.is_empty(), "capabilities kept while serving: {held:?}");
    let (_c, _s2) = resets_of_each_kind(&lab);
    // Until every reset is judged: the counts stay the same across two scrapes 2 s apart (the
    // settle window of a lab flow is 0.5 s) and the kernel counters of a summary are there.
    let deadline = Instant::now() + Duration::from_secs(30);
    let served = loop {
        let before = scrape();
        std::thread::sleep(Duration::from_secs(2));
        let after = scrape();
        let resets = |s| family(s, "rst_tracer_resets_total");
        let judged: f64 = resets(&after).values().sum();
        if judged >= 3.0
            && resets(&before) == resets(&after)
            && after.contains_key(r#"rst_tracer_kernel_events_total{counter="rst"}"#)
        {
            break after;
        }
        assert!(
            Instant::now() < deadline,
            "resets not judged in 30 s: {after:?}"
        );
    };
    let out = tracer.stop_when_quiet();
    let (resets, findings) = implied_by(&out);
    assert_eq!(
        family(&served, "rst_tracer_resets_total"),
        resets,
        "{out:?}"
    );
    assert_eq!(family(&served, "rst_tracer_findings_total"), findings);
    // The server's abort and the refused connect are egress resets this host sent, with the
    // kernel's reasons; the client's abort comes in.
    let count = |series: &str| served.get(series).copied().unwrap_or(0.0);
    assert!(
        count(r#"rst_tracer_resets_total{origin="local",suspicious="false",direction="egress"}"#)
            >= 2.0,
        "{served:?}"
    );
    assert!(
        count(r#"rst_tracer_resets_total{origin="peer",suspicious="false",direction="ingress"}"#)
            >= 1.0,
        "{served:?}"
    );
    let mut reasons: std::collections::BTreeMap<String, f64> = Default::default();
    for r in out.iter().filter(|r| r["type"] == "reset") {
        if let Some(reason) = r["kernel_reason"].as_str() {
            *reasons
                .entry(format!(
                    "rst_tracer_kernel_reasons_total{{reason=\"{reason}\"}}"
                ))
                .or_default() += 1.0;
        }
    }
    assert!(!reasons.is_empty(), "no kernel reason in {out:?}");
    assert_eq!(family(&served, "rst_tracer_kernel_reasons_total"), reasons);
    assert!(count(r#"rst_tracer_kernel_events_total{counter="rst"}"#) >= 3.0);
}

#[test]
fn once_attached_the_tracer_keeps_no_privilege_it_no_longer_needs() {
    require_privileges!();
    let lab = Lab::new(TRACER);
    // `ip netns exec` gives the tracer a fresh /sys without tracefs: it mounts one.
    let tracer = lab.start_tracer(&[]);
    let held = rst_tracer_lab::caps_still_held(tracer.pid());
    assert!(
        held.is_empty(),
        "capabilities kept after attaching: {held:?}"
    );
    let stderr = tracer.stderr();
    assert!(stderr.contains("mounted tracefs"), "{stderr}");
    let mounts = std::fs::read_to_string(format!("/proc/{}/mountinfo", tracer.pid())).unwrap();
    let tracefs: Vec<&str> = mounts
        .lines()
        .filter(|l| l.contains(" - tracefs "))
        .collect();
    assert!(
        tracefs.is_empty(),
        "tracefs still mounted while tracing: {tracefs:?}"
    );
    // Tracing goes on without them: the server's refusal of a closed port is reported with the
    // kernel's reason.
    let _ = lab.connect(9);
    let out = tracer.stop_when_quiet();
    let refused: Vec<&Value> = out
        .iter()
        .filter(|r| r["type"] == "reset" && r["flow"]["sport"] == 9)
        .collect();
    assert_eq!(refused.len(), 1, "{out:?}");
    assert!(
        refused[0]["kernel_reason"] == "NO_SOCKET",
        "no kernel reason: {}",
        refused[0]
    );
}

/// With --reattach, a deleted interface is waited for, attached to again when one of its name
/// comes back, and traced: a refused connect over the new one is reported.
#[test]
fn with_reattach_an_interface_that_comes_back_is_traced_again() {
    require_privileges!();
    let lab = Lab::new(TRACER);
    add_gone0(&lab);
    let tracer = lab.start_tracer_on(
        &lab.server,
        "gone0",
        "json",
        &["--ingress", "tc", "--reattach"],
    );
    rst_tracer_lab::lab::ip(&["-n", &lab.server, "link", "del", "gone0"]);
    wait_for_stderr(&tracer, "waiting for it to come back");
    add_gone0(&lab);
    wait_for_stderr(&tracer, "re-attached to gone0");
    // A connect to a closed port over the new gone0: the server's reset leaves through it.
    let refused = in_ns(&lab.client, || {
        TcpStream::connect_timeout(&"10.209.0.1:9".parse().unwrap(), Duration::from_secs(2))
    });
    assert!(refused.is_err());
    let out = tracer.stop_when_quiet();
    let resets: Vec<&Value> = out
        .iter()
        .filter(|o| o["type"] == "reset" && o["flow"]["src"] == "10.209.0.1")
        .collect();
    assert_eq!(resets.len(), 1, "{out:?}");
    assert_eq!(resets[0]["iface"], "gone0");
    assert_eq!(resets[0]["direction"], "egress");
}

fn run_tracer_in(ns: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_rst-tracer")])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn errors_say_what_to_do() {
    require_privileges!();
    let lab = Lab::new(TRACER);

    let (ok, err) = run_tracer_in(&lab.server, &["--iface", "nosuch0", "--duration", "1"]);
    assert!(!ok);
    assert!(
        err.contains("unknown interface \"nosuch0\"") && err.contains(SERVER_IF),
        "{err}"
    );

    // Another XDP program on the interface: say so and suggest --ingress tc.
    let first = lab.start_tracer(&["--ingress", "xdp"]);
    let (ok, err) = run_tracer_in(
        &lab.server,
        &["--iface", SERVER_IF, "--ingress", "xdp", "--duration", "1"],
    );
    assert!(!ok);
    assert!(
        err.contains("another XDP program is already attached") && err.contains("--ingress tc"),
        "{err}"
    );
    // ...and the suggestion works beside it.
    let (ok, err) = run_tracer_in(
        &lab.server,
        &["--iface", SERVER_IF, "--ingress", "tc", "--duration", "0.5"],
    );
    assert!(ok, "{err}");
    first.stop();

    // Without privileges.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_rst-tracer"))
        .args(["--iface", "lo", "--duration", "1"])
        .output()
        .expect("setpriv (util-linux)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("missing CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON") && err.contains("run as root"),
        "{err}"
    );
}

/// The fields of a reset that live tracing and replay must agree on: everything but times and
/// the hook.
fn evidence(r: &Value) -> Value {
    let side = |s: &Value| {
        serde_json::json!({
            "seen": s["seen"], "packets": s["packets"], "bytes": s["bytes"], "ttl": s["ttl"],
            "last_ip_id": s["last_ip_id"], "seq_next": s["seq_next"], "last_ack": s["last_ack"],
            "window": s["window"], "timestamps": s["timestamps"], "retransmits": s["retransmits"],
        })
    };
    serde_json::json!({
        "direction": r["direction"],
        "flow": r["flow"],
        "rst": r["rst"],
        "payload": r["payload"],
        "sender": side(&r["sender"]),
        "receiver": side(&r["receiver"]),
        "seq_check": r["seq_check"],
        "handshake": r["history"]["handshake"],
        "midstream": r["history"]["midstream"],
        "trigger_seq": r["trigger"]["seq"],
        "origin": r["origin"],
        "suspicious": r["suspicious"],
    })
}

#[test]
fn live_and_replay_of_a_capture_of_the_same_traffic_agree() {
    require_privileges!();
    assert!(
        Command::new("tcpdump")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "this test needs tcpdump (`cargo xtask test` installs it)"
    );
    let lab = Lab::new(TRACER);
    let pcap = std::env::temp_dir().join(format!("{}-roundtrip.pcap", lab.server));
    let capture = lab.capture(&pcap, &["--immediate-mode", "-U", "-n", "-s", "256", "tcp"]);
    let tracer = lab.start_tracer(&[]);

    let survivors = resets_of_each_kind(&lab);
    let live = tracer.stop_when_quiet();
    capture.stop();
    drop(survivors);

    let out = Command::new(env!("CARGO_BIN_EXE_rst-tracer"))
        .args([
            "replay",
            "--format",
            "json",
            "--local",
            &format!("{SERVER_IP}/32"),
        ])
        .arg(&pcap)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&pcap);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();

    let mut live_resets: Vec<Value> = live
        .iter()
        .filter(|o| o["type"] == "reset")
        .map(evidence)
        .collect();
    let mut replay_resets: Vec<Value> = replayed
        .iter()
        .filter(|o| o["type"] == "reset")
        .map(evidence)
        .collect();
    assert_eq!(live_resets.len(), 3, "{live_resets:#?}");
    let key = |v: &Value| (v["flow"]["sport"].as_u64(), v["flow"]["dport"].as_u64());
    live_resets.sort_by_key(key);
    replay_resets.sort_by_key(key);
    assert_eq!(live_resets, replay_resets, "live and replay disagree");
}
