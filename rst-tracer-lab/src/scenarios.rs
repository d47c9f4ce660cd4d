//! The lab's scenarios: the incidents rst-tracer exists for, reproduced between namespaces with
//! real Linux stacks, and the honest resets beside them. Each scenario returns the resets it
//! forged; [`score`] checks the tracer's verdicts against them: every forged reset must be
//! suspicious, no other reset may be.

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    net::{Ipv4Addr, TcpStream},
    time::Duration,
};

use serde_json::Value;

use crate::{
    forge::{inject, Rst, Seen, Sniffer},
    lab::{
        abort, reset_taken_within, wait_for_fin, wait_for_reset, Lab, CLIENT_IP, ROUTER_SERVER_IF,
        SERVER_IP,
    },
};

/// Where the tracer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Traced {
    /// On the server's interface.
    Server,
    /// On a second server behind the same address (the scenario adds it).
    Backend,
}

/// One scenario.
pub struct Scenario {
    /// Short name (report and test names).
    pub name: &'static str,
    /// What it reproduces, in a sentence.
    pub what: &'static str,
    /// Codes a caught forged reset of this scenario must carry (at least one of them).
    pub expect_codes: &'static [&'static str],
    /// Codes one honest reset (or silent flow) must carry, all of them: the cause the verdict has
    /// to name.
    pub explain_codes: &'static [&'static str],
    /// Where the tracer runs.
    pub traced: Traced,
    /// Runs the traffic in a lab whose tracer is running; returns the resets it forged.
    pub run: fn(&Lab) -> Vec<Rst>,
}

/// Every scenario, the forged ones first.
pub const ALL: &[Scenario] = &[
    Scenario {
        name: "proxy-ttl",
        what: "a device on the path resets the server side of a live flow with its own TTL (64 where the client's packets arrive with 63)",
        expect_codes: &["ttl_mismatch"],
        explain_codes: &[],
        traced: Traced::Server,
        run: proxy_ttl,
    },
    Scenario {
        name: "censor",
        what: "a censor resets both ends right after the request: fixed IP ID, window 2453, its own TTL",
        expect_codes: &["ttl_mismatch", "window_unusual"],
        explain_codes: &[],
        traced: Traced::Server,
        run: censor,
    },
    Scenario {
        name: "blind",
        what: "blind resets: one far outside the receive window, one inside it but not exact",
        expect_codes: &["ttl_mismatch", "sender_continues"],
        explain_codes: &[],
        traced: Traced::Server,
        run: blind,
    },
    Scenario {
        name: "client-continues",
        what: "a reset forged with the client's own TTL and next IP ID; the real client keeps sending",
        expect_codes: &["sender_continues"],
        explain_codes: &[],
        traced: Traced::Server,
        run: client_continues,
    },
    Scenario {
        name: "ecmp-vip",
        what: "ECMP/VIP mis-routing: mid-flow the router sends the client's segments to a second backend with the same address, which has no such connection and resets it",
        expect_codes: &[],
        explain_codes: &["midstream_reset", "no_socket_midstream"],
        traced: Traced::Backend,
        run: ecmp_vip,
    },
    Scenario {
        name: "black-hole",
        what: "a black hole mid-transfer: the server's data vanishes, it retransmits, then the application gives up with an abort",
        expect_codes: &[],
        explain_codes: &["retransmissions_before", "stack_retransmits"],
        traced: Traced::Server,
        run: black_hole,
    },
    Scenario {
        name: "firewall",
        what: "a stateful firewall (nftables conntrack, 1 s close timeout) ages out a session closed by a reset forged toward the client; the server, which never got a reset, retransmits into silence",
        expect_codes: &[],
        explain_codes: &["oneway_silence"],
        traced: Traced::Server,
        run: firewall,
    },
    Scenario {
        name: "honest",
        what: "normal close, SO_LINGER 0 aborts from each side, a refused connect, data to a closed socket",
        expect_codes: &[],
        explain_codes: &[],
        traced: Traced::Server,
        run: honest,
    },
    Scenario {
        name: "benign-load",
        what: "1000 short connections, a third aborted by the client and a fifth by the server",
        expect_codes: &[],
        explain_codes: &[],
        traced: Traced::Server,
        run: benign_load,
    },
];

const CLIENT: fn() -> Ipv4Addr = || CLIENT_IP.parse().unwrap();
const SERVER: fn() -> Ipv4Addr = || SERVER_IP.parse().unwrap();

/// A connection with a request the server has read; returns (client, server, sniffed request).
pub fn request(lab: &Lab, sniffer: &Sniffer, port: u16) -> (TcpStream, TcpStream, Seen) {
    let (mut c, mut s) = lab.pair(port);
    c.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut buf = [0u8; 18];
    s.read_exact(&mut buf).unwrap();
    (c, s, sniffer.data_to(port))
}

/// A reset toward the server claiming to come from the client.
pub fn toward_server(sport: u16, dport: u16, seq: u32) -> Rst {
    Rst {
        src: CLIENT(),
        sport,
        dst: SERVER(),
        dport,
        seq,
        ack: None,
        ttl: 64,
        ip_id: 0x5151,
        window: 0,
    }
}

/// A reset toward the client claiming to come from the server, at exactly what the client
/// expects after its request `req`.
pub fn toward_client(req: &Seen) -> Rst {
    Rst {
        src: SERVER(),
        sport: req.dport,
        dst: CLIENT(),
        dport: req.sport,
        seq: req.ack,
        ack: Some(req.next_seq()),
        ttl: 64,
        ip_id: 0x6161,
        window: 0,
    }
}

fn proxy_ttl(lab: &Lab) -> Vec<Rst> {
    let sniffer = Sniffer::open(&lab.router, ROUTER_SERVER_IF);
    let (c, mut s, req) = request(lab, &sniffer, 8101);
    let rst = toward_server(req.sport, req.dport, req.next_seq());
    inject(&lab.router, &rst);
    wait_for_reset(&mut s);
    drop((c, s));
    vec![rst]
}

fn censor(lab: &Lab) -> Vec<Rst> {
    let sniffer = Sniffer::open(&lab.router, ROUTER_SERVER_IF);
    let (mut c, mut s, req) = request(lab, &sniffer, 8102);
    let to_server = Rst {
        ip_id: 0x3412,
        window: 2453,
        ..toward_server(req.sport, req.dport, req.next_seq())
    };
    // And one to the client, claiming the server (the server-side tracer does not see it).
    let to_client = Rst {
        ttl: to_server.ttl,
        ip_id: to_server.ip_id,
        window: to_server.window,
        ..toward_client(&req)
    };
    inject(&lab.router, &to_server);
    inject(&lab.router, &to_client);
    wait_for_reset(&mut s);
    wait_for_reset(&mut c);
    drop((c, s));
    vec![to_server, to_client]
}

fn blind(lab: &Lab) -> Vec<Rst> {
    let sniffer = Sniffer::open(&lab.router, ROUTER_SERVER_IF);
    let (mut c, mut s, req) = request(lab, &sniffer, 8103);
    let far = toward_server(
        req.sport,
        req.dport,
        req.next_seq().wrapping_add(0x4000_0000),
    );
    let near = Rst {
        ip_id: 0x5152,
        ..toward_server(req.sport, req.dport, req.next_seq().wrapping_add(1000))
    };
    inject(&lab.router, &far);
    inject(&lab.router, &near);
    // Linux drops one and answers the other with a challenge ACK: the connection lives on. The
    // resets are ahead of this data on the one path to the server, so its stack took them first.
    c.write_all(b"still here").unwrap();
    let mut buf = [0u8; 10];
    s.read_exact(&mut buf).unwrap();
    drop((c, s));
    vec![far, near]
}

fn client_continues(lab: &Lab) -> Vec<Rst> {
    let sniffer = Sniffer::open(&lab.router, ROUTER_SERVER_IF);
    let (mut c, mut s, req) = request(lab, &sniffer, 8104);
    // Everything the client's own reset would carry: its TTL on arrival, its next IP ID.
    let rst = Rst {
        ttl: 63,
        ip_id: req.ip_id.wrapping_add(1),
        ..toward_server(req.sport, req.dport, req.next_seq())
    };
    inject(&lab.router, &rst);
    // The server's socket takes it; the real client never sent it, and goes on with its next
    // segment.
    wait_for_reset(&mut s);
    let _ = c.write_all(b"more data");
    drop((c, s));
    vec![rst]
}

fn ecmp_vip(lab: &Lab) -> Vec<Rst> {
    let (mut c, mut s) = lab.pair(8130);
    c.write_all(b"first half").unwrap();
    let mut buf = [0u8; 10];
    s.read_exact(&mut buf).unwrap();
    lab.route_to_backend();
    // Reaches the backend, which never had this connection and resets it.
    let _ = c.write_all(b"second half");
    wait_for_reset(&mut c);
    drop((c, s));
    Vec::new()
}

fn black_hole(lab: &Lab) -> Vec<Rst> {
    let (c, mut s) = lab.pair(8140);
    crate::lab::ip(&[
        "-n",
        &lab.router,
        "route",
        "add",
        "blackhole",
        &format!("{CLIENT_IP}/32"),
    ]);
    s.write_all(&[0x42; 4000]).unwrap();
    // Retransmission timeouts of 200, 400, 800 ms go by without an answer.
    std::thread::sleep(Duration::from_millis(1600));
    // The abort's reset leaves within close() (the egress hook runs in the sending call).
    abort(&s);
    drop(s);
    drop(c);
    Vec::new()
}

/// Runs `nft` in namespace `ns`.
pub fn nft(ns: &str, rule: &str) {
    crate::lab::ip(&["netns", "exec", ns, "nft", rule]);
}

fn firewall(lab: &Lab) -> Vec<Rst> {
    let r = &lab.router;
    // Established flows pass; whatever conntrack no longer knows is dropped.
    nft(r, "add table inet rstlab");
    nft(
        r,
        "add chain inet rstlab guard { type filter hook forward priority 0; policy accept; }",
    );
    nft(r, "add rule inet rstlab guard ct state invalid drop");
    nft(
        r,
        "add rule inet rstlab guard ct state new tcp flags & (syn | ack) != syn drop",
    );
    crate::lab::ip(&[
        "netns",
        "exec",
        r,
        "sysctl",
        "-qw",
        "net.netfilter.nf_conntrack_tcp_timeout_close=1",
    ]);
    let sniffer = Sniffer::open(r, ROUTER_SERVER_IF);
    let (c, mut s, req) = request(lab, &sniffer, 8150);
    // A device resets the client side, claiming the server, at exactly what the client expects:
    // the client closes, and conntrack marks the session closed.
    let to_client = toward_client(&req);
    inject(r, &to_client);
    // The firewall ages the closed session out; then the server, which never saw a reset, answers.
    std::thread::sleep(Duration::from_millis(1200));
    s.write_all(&[0x42; 2000]).unwrap();
    // Its data and retransmissions are dropped; the tracer checks for silence every second.
    std::thread::sleep(Duration::from_millis(3500));
    drop((c, s));
    vec![to_client]
}

fn honest(lab: &Lab) -> Vec<Rst> {
    let mut buf = [0u8; 8];
    // Normal close.
    let (mut c, mut s) = lab.pair(8110);
    c.write_all(b"12345678").unwrap();
    s.read_exact(&mut buf).unwrap();
    drop((c, s));
    // The server aborts; the client aborts.
    for client_aborts in [false, true] {
        let (mut c, mut s) = lab.pair(if client_aborts { 8112 } else { 8111 });
        c.write_all(b"12345678").unwrap();
        s.read_exact(&mut buf).unwrap();
        abort(if client_aborts { &c } else { &s });
        drop((c, s));
    }
    // A refused connect.
    assert!(lab.connect(8113).is_err());
    // Data sent to a socket the server has closed.
    let (mut c, s) = lab.pair(8114);
    drop(s);
    wait_for_fin(&mut c);
    let _ = c.write_all(b"anyone?");
    assert!(
        reset_taken_within(&c, Duration::from_secs(5)),
        "no reset for data to a closed socket within 5 s"
    );
    drop(c);
    Vec::new()
}

/// Connections of the benign load.
pub const BENIGN_CONNECTIONS: u32 = 1000;

/// An end of a connection.
enum End {
    Client,
    Server,
}

/// Which end of the benign load's connection `i` aborts (one reset each), if any: a third of the
/// clients, and a fifth of the servers of the rest; the others close with FINs.
fn benign_aborter(i: u32) -> Option<End> {
    if i.is_multiple_of(3) {
        Some(End::Client)
    } else if i.is_multiple_of(5) {
        Some(End::Server)
    } else {
        None
    }
}

/// The resets the benign load makes: one per aborted connection.
pub fn benign_resets() -> usize {
    (0..BENIGN_CONNECTIONS)
        .filter(|i| benign_aborter(*i).is_some())
        .count()
}

fn benign_load(lab: &Lab) -> Vec<Rst> {
    let l = lab.listen(8120);
    let mut buf = [0u8; 4];
    for i in 0..BENIGN_CONNECTIONS {
        let mut c = lab.connect(8120).unwrap();
        let (mut s, _) = l.accept().unwrap();
        c.write_all(b"ping").unwrap();
        s.read_exact(&mut buf).unwrap();
        match benign_aborter(i) {
            Some(End::Client) => abort(&c),
            Some(End::Server) => abort(&s),
            None => {}
        }
        drop((c, s));
    }
    Vec::new()
}

/// How a scenario went.
#[derive(Debug)]
pub struct Outcome {
    /// Scenario name.
    pub name: &'static str,
    /// Resets the tracer reported.
    pub resets: usize,
    /// Forged resets the tracer saw.
    pub forged: usize,
    /// Of those, reported suspicious with an expected code.
    pub caught: usize,
    /// Finding codes on the caught and the explained resets.
    pub codes: BTreeSet<String>,
    /// Forged resets seen but not caught, with their findings.
    pub missed: Vec<String>,
    /// Forged resets sent toward the traced host that the tracer never reported.
    pub unseen: Vec<String>,
    /// Honest resets called suspicious, with their findings.
    pub false_positives: Vec<String>,
    /// Honest resets (or silent flows) carrying every one of the scenario's explanation codes.
    pub explained: usize,
    /// Kernel-note gaps: egress resets without a kernel reason, and resets to the traced host
    /// without `accepted`.
    pub stack_gaps: Vec<String>,
}

/// The finding codes of a record.
pub fn codes_of(r: &Value) -> Vec<String> {
    r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap().to_string())
        .collect()
}

/// The record's findings include every explanation code of the scenario.
fn explains(scenario: &Scenario, codes: &[String]) -> bool {
    !scenario.explain_codes.is_empty()
        && scenario
            .explain_codes
            .iter()
            .all(|c| codes.iter().any(|x| x == c))
}

/// Whether reset record `r` is the forged reset `f`.
pub fn is(r: &Value, f: &Rst) -> bool {
    r["flow"]["src"] == f.src.to_string()
        && r["flow"]["sport"] == f.sport
        && r["flow"]["dport"] == f.dport
        && r["rst"]["seq"] == f.seq
        && r["rst"]["ip_id"] == f.ip_id
}

/// Scores the tracer's output of a scenario against what it forged.
pub fn score(scenario: &Scenario, out: &[Value], forged: &[Rst]) -> Outcome {
    let mut o = Outcome {
        name: scenario.name,
        resets: 0,
        forged: 0,
        caught: 0,
        codes: BTreeSet::new(),
        missed: Vec::new(),
        unseen: Vec::new(),
        false_positives: Vec::new(),
        explained: 0,
        stack_gaps: Vec::new(),
    };
    for r in out.iter().filter(|r| r["type"] == "silence") {
        let codes = codes_of(r);
        if explains(scenario, &codes) {
            o.explained += 1;
            o.codes.extend(codes);
        }
    }
    for r in out.iter().filter(|r| r["type"] == "reset") {
        o.resets += 1;
        let egress = r["direction"] == "egress";
        let to_host = r["direction"] == "ingress" && r["flow"]["dst"] == SERVER_IP;
        if (egress && r["kernel_reason"].is_null()) || (to_host && r["accepted"].is_null()) {
            o.stack_gaps
                .push(format!("{} seq {}", r["flow"], r["rst"]["seq"]));
        }
        let codes = codes_of(r);
        let suspicious = r["suspicious"] == true;
        if forged.iter().any(|f| is(r, f)) {
            o.forged += 1;
            let expected = scenario
                .expect_codes
                .iter()
                .any(|c| codes.iter().any(|x| x == c));
            if suspicious && expected {
                o.caught += 1;
                o.codes.extend(codes);
            } else {
                o.missed.push(format!(
                    "{} seq {}: {:?}",
                    r["flow"], r["rst"]["seq"], codes
                ));
            }
        } else if suspicious {
            o.false_positives.push(format!(
                "{} seq {}: {}",
                r["flow"], r["rst"]["seq"], r["findings"]
            ));
        } else if explains(scenario, &codes) {
            o.explained += 1;
            o.codes.extend(codes);
        }
    }
    // Every forged reset toward the traced host crosses its interface: each must be there.
    let traced: std::net::Ipv4Addr = SERVER_IP.parse().unwrap();
    for f in forged.iter().filter(|f| f.dst == traced) {
        let resets = out.iter().filter(|r| r["type"] == "reset");
        if !resets.clone().any(|r| is(r, f)) {
            o.unseen.push(format!(
                "{}:{} -> {}:{} seq {}",
                f.src, f.sport, f.dst, f.dport, f.seq
            ));
        }
    }
    o
}

/// Runs one scenario in a fresh lab with the tracer binary `tracer` and scores it.
pub fn run(tracer: &str, scenario: &Scenario) -> Outcome {
    let mut lab = Lab::new(tracer);
    let t = match scenario.traced {
        Traced::Server => lab.start_tracer(&[]),
        Traced::Backend => {
            let backend = lab.add_backend();
            lab.start_tracer_in(&backend, "json", &[])
        }
    };
    let forged = (scenario.run)(&lab);
    let out = t.stop_when_quiet();
    score(scenario, &out, &forged)
}
