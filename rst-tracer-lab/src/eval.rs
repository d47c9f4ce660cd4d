//! The labelled corpus `cargo xtask eval` builds: honest resets made by the mechanisms that make
//! them on real Linux stacks behind a lossy router, and forged resets of the kinds devices
//! inject, each run with the tracer on the server and on the router. Every reset the tracer
//! reports is labelled by how it was made (a forged one is the exact packet the forger sent, the
//! rest are the stacks' own), and [`Tally`] counts the verdicts per class: how many honest
//! resets were called suspicious or misattributed to the traced host, how many forged ones were
//! caught.

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use socket2::{SockRef, TcpKeepalive};

use crate::{
    delay::DelayLine,
    forge::{inject, inject_data, Rst, Seen, Sniffer},
    lab::{abort, in_ns, ip, reset_taken_within, Lab, ROUTER_SERVER_IF, SERVER_IF, SERVER_IP},
    scenarios::{is, nft, request, toward_client, toward_server},
};

/// Where the tracer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Viewpoint {
    /// On the server's interface, in the server namespace: the server's resets are its own.
    Server,
    /// On the router's server-side interface: every reset is forwarded, none is the router's.
    Router,
}

impl Viewpoint {
    /// Name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Viewpoint::Server => "server",
            Viewpoint::Router => "router",
        }
    }

    /// The address of the traced host that sends TCP in the lab, if any.
    fn host(self) -> Option<&'static str> {
        match self {
            Viewpoint::Server => Some(SERVER_IP),
            Viewpoint::Router => None,
        }
    }
}

/// How a class's resets are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// By the endpoints' own stacks.
    Honest,
    /// By a forger; the class returns each reset it sent.
    Forged,
}

/// One class of resets.
pub struct Class {
    /// Short name (report rows).
    pub name: &'static str,
    /// How its resets are made, in a sentence.
    pub what: &'static str,
    /// Honest or forged.
    pub kind: Kind,
    /// The class runs `scale / per` times (connections, or forged repetitions).
    pub per: usize,
    /// Makes the traffic: `n` is the class's share of the scale; returns the forged resets.
    pub run: fn(&Lab, usize) -> Vec<Rst>,
}

/// Percent of forwarded TCP packets the router drops while honest classes run.
pub const LOSS_PERCENT: u32 = 4;
/// How long the router holds every packet toward the client (a wide-area path's delay), so
/// that timing evidence means what it means on real paths.
pub const DELAY: Duration = Duration::from_millis(30);

/// Every class: honest first.
pub const CLASSES: &[Class] = &[
    Class {
        name: "aborts",
        what: "SO_LINGER 0 aborts from both sides, four clients at once on one server port",
        kind: Kind::Honest,
        per: 1,
        run: aborts,
    },
    Class {
        name: "refused",
        what: "connects to a port nothing listens on",
        kind: Kind::Honest,
        per: 2,
        run: refused,
    },
    Class {
        name: "closed",
        what: "data sent to a connection the server closed (FIN_WAIT2 and TIME_WAIT sockets answer)",
        kind: Kind::Honest,
        per: 4,
        run: closed,
    },
    Class {
        name: "restart",
        what: "the server restarts with connections open; its aborts are lost, the clients' data and retransmissions get replies without a socket",
        kind: Kind::Honest,
        per: 10,
        run: restart,
    },
    Class {
        name: "keepalive",
        what: "keepalive probes to a server that restarted silently",
        kind: Kind::Honest,
        per: 10,
        run: keepalive,
    },
    Class {
        name: "backlog",
        what: "a full accept queue with tcp_abort_on_overflow: the listener resets the handshake's ACK",
        kind: Kind::Honest,
        per: 10,
        run: backlog,
    },
    Class {
        name: "ttl-other",
        what: "a device one hop closer resets the server side with its own TTL",
        kind: Kind::Forged,
        per: 50,
        run: ttl_other,
    },
    Class {
        name: "ttl-copy-continues",
        what: "exact sequence number, the client's TTL and next IP ID; the real client keeps sending",
        kind: Kind::Forged,
        per: 50,
        run: ttl_copy_continues,
    },
    Class {
        name: "ips-counter",
        what: "an IPS active response: RST|ACK to each end at the exact sequence numbers, the client's TTL, IP IDs from the device's own counter",
        kind: Kind::Forged,
        per: 50,
        run: ips_counter,
    },
    Class {
        name: "ttl-copy-silent",
        what: "a bare RST at the exact sequence number right after the request, with the client's TTL and an IP ID of the device's own; the client says nothing more",
        kind: Kind::Forged,
        per: 50,
        run: ttl_copy_silent,
    },
    Class {
        name: "takeover",
        what: "a device answers in the client's place: a data segment with its own TTL, then a reset at the next sequence number with the same TTL, so the client's baseline widens to cover it",
        kind: Kind::Forged,
        per: 50,
        run: takeover,
    },
    Class {
        name: "blind-in-window",
        what: "a blind reset inside the window but not exact, the client's TTL, a random IP ID",
        kind: Kind::Forged,
        per: 50,
        run: blind_in_window,
    },
    Class {
        name: "blind-far",
        what: "a blind reset far outside the window, with the device's own TTL",
        kind: Kind::Forged,
        per: 50,
        run: blind_far,
    },
    Class {
        name: "censor",
        what: "a censor resets both ends right after the request: fixed IP ID, window 2453, its own TTL",
        kind: Kind::Forged,
        per: 50,
        run: censor,
    },
    Class {
        name: "gateway",
        what: "a forger beside the client (its own namespace's raw socket) resets the server side at the exact sequence number; the real client keeps sending",
        kind: Kind::Forged,
        per: 50,
        run: gateway,
    },
];

/// Ports: each repetition of a class its own, up to 900 of them, so flows never mix.
fn port(base: u16, i: usize) -> u16 {
    base + (i % 900) as u16
}

/// A read timeout on both ends, so that loss never hangs a run.
fn patient(socks: &[&TcpStream]) {
    for s in socks {
        let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(3)));
    }
}

/// The next connection `l` accepts within 3 s, if any: a handshake whose packets were lost and
/// whose client then aborted never reaches the accept queue, and a plain accept would wait
/// for it forever.
fn accept_within(l: &TcpListener) -> Option<TcpStream> {
    l.set_nonblocking(true).ok()?;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).ok()?;
                return Some(s);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(2)),
            Err(_) => return None,
        }
    }
    None
}

/// Turns `LOSS_PERCENT` random loss on in the router's forward path.
pub fn lossy(lab: &Lab) {
    let r = &lab.router;
    nft(r, "add table inet rsteval");
    nft(
        r,
        "add chain inet rsteval loss { type filter hook forward priority 0; policy accept; }",
    );
    nft(
        r,
        &format!("add rule inet rsteval loss meta l4proto tcp numgen random mod 100 < {LOSS_PERCENT} drop"),
    );
}

fn aborts(lab: &Lab, n: usize) -> Vec<Rst> {
    let l = lab.listen(9000);
    thread::scope(|t| {
        for w in 0..4 {
            let l = l.try_clone().unwrap();
            t.spawn(move || {
                let mut buf = [0u8; 4];
                for i in 0..n / 4 {
                    let Ok(mut c) = lab.connect(9000) else {
                        continue;
                    };
                    let Some(mut s) = accept_within(&l) else {
                        continue;
                    };
                    patient(&[&c, &s]);
                    let _ = c.write_all(b"ping");
                    let _ = s.read_exact(&mut buf);
                    abort(if (i + w) % 2 == 0 { &c } else { &s });
                    drop((c, s));
                }
            });
        }
    });
    Vec::new()
}

fn refused(lab: &Lab, n: usize) -> Vec<Rst> {
    for i in 0..n {
        let _ = lab.connect(port(9100, i));
    }
    Vec::new()
}

fn closed(lab: &Lab, n: usize) -> Vec<Rst> {
    for i in 0..n {
        let l = lab.listen(port(9200, i));
        let Ok(mut c) = lab.connect(port(9200, i)) else {
            continue;
        };
        let Some(s) = accept_within(&l) else {
            continue;
        };
        drop((s, l));
        // The client's pacing, not a wait for anything: it writes twice into the closed
        // connection, and the second write meets the reset or makes another.
        thread::sleep(Duration::from_millis(20));
        let _ = c.write_all(b"anyone?");
        thread::sleep(Duration::from_millis(20));
        let _ = c.write_all(b"hello?");
    }
    Vec::new()
}

/// Drops the server's resets at the router while `during` runs, as a restart whose aborts are
/// lost does, and until the router has dropped at least `resets` of them (at most 3 s more).
fn without_server_resets(lab: &Lab, resets: u64, during: impl FnOnce()) {
    let r = &lab.router;
    nft(r, "add table inet rstgone");
    nft(
        r,
        "add chain inet rstgone quiet { type filter hook forward priority -1; policy accept; }",
    );
    nft(
        r,
        &format!("add rule inet rstgone quiet ip saddr {SERVER_IP} tcp flags rst counter drop"),
    );
    during();
    let deadline = Instant::now() + Duration::from_secs(3);
    while dropped_resets(r) < resets {
        if Instant::now() >= deadline {
            eprintln!(
                "eval: the router dropped {} of {resets} server resets in 3 s; the rest will get through",
                dropped_resets(r)
            );
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    nft(r, "delete table inet rstgone");
}

/// How many resets the rule of [`without_server_resets`] in namespace `ns` has dropped.
fn dropped_resets(ns: &str) -> u64 {
    let listed = std::process::Command::new("ip")
        .args([
            "netns", "exec", ns, "nft", "list", "chain", "inet", "rstgone", "quiet",
        ])
        .output()
        .expect("running nft");
    let text = String::from_utf8_lossy(&listed.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .find(|w| w[0] == "packets")
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(0)
}

/// `n` connections to `port` with a request each: (client, server) pairs.
fn open(lab: &Lab, base: u16, n: usize) -> Vec<(TcpStream, TcpStream)> {
    let l = lab.listen(base);
    let mut pairs = Vec::new();
    for _ in 0..n {
        let Ok(mut c) = lab.connect(base) else {
            continue;
        };
        let Some(mut s) = accept_within(&l) else {
            continue;
        };
        patient(&[&c, &s]);
        let _ = c.write_all(b"req");
        let mut buf = [0u8; 3];
        let _ = s.read_exact(&mut buf);
        pairs.push((c, s));
    }
    pairs
}

fn restart(lab: &Lab, n: usize) -> Vec<Rst> {
    let pairs = open(lab, 9300, n);
    let mut clients = Vec::new();
    let aborted = pairs.len() as u64;
    without_server_resets(lab, aborted, || {
        for (c, s) in pairs {
            abort(&s);
            drop(s);
            clients.push(c);
        }
        for c in &mut clients {
            let _ = c.write_all(b"still there?");
        }
        // Retransmissions at 200 and 400 ms meet replies the router drops.
        thread::sleep(Duration::from_millis(700));
    });
    // The next retransmissions' replies get through.
    thread::sleep(Duration::from_millis(1200));
    drop(clients);
    Vec::new()
}

fn keepalive(lab: &Lab, n: usize) -> Vec<Rst> {
    let pairs = open(lab, 9400, n);
    let probe = TcpKeepalive::new()
        .with_time(Duration::from_secs(1))
        .with_interval(Duration::from_secs(1));
    let mut clients = Vec::new();
    let aborted = pairs.len() as u64;
    without_server_resets(lab, aborted, || {
        for (c, s) in pairs {
            SockRef::from(&c).set_tcp_keepalive(&probe).unwrap();
            abort(&s);
            drop(s);
            clients.push(c);
        }
    });
    // The idle clients probe after 1 s; the server answers without a socket.
    thread::sleep(Duration::from_millis(2500));
    drop(clients);
    Vec::new()
}

fn backlog(lab: &Lab, n: usize) -> Vec<Rst> {
    ip(&[
        "netns",
        "exec",
        &lab.server,
        "sysctl",
        "-qw",
        "net.ipv4.tcp_abort_on_overflow=1",
    ]);
    let addr: SocketAddr = format!("0.0.0.0:{}", 9500).parse().unwrap();
    let listener = in_ns(&lab.server, || {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_reuse_address(true).unwrap();
        s.bind(&addr.into()).unwrap();
        s.listen(1).unwrap();
        s
    });
    // A burst of connects: their SYNs all find room (request sockets are not in the accept
    // queue), then their handshakes' ACKs find the queue of one full and are answered with a
    // reset. A full queue drops further SYNs: each connect gives up after half a second.
    let to: SocketAddr = format!("{SERVER_IP}:9500").parse().unwrap();
    let conns: Vec<TcpStream> = thread::scope(|t| {
        let tries: Vec<_> = (0..n.min(40))
            .map(|_| {
                t.spawn(|| {
                    in_ns(&lab.client, || {
                        TcpStream::connect_timeout(&to, Duration::from_millis(500))
                    })
                })
            })
            .collect();
        tries
            .into_iter()
            .filter_map(|h| h.join().ok()?.ok())
            .collect()
    });
    for mut c in conns.iter() {
        let _ = c.set_write_timeout(Some(Duration::from_millis(200)));
        let _ = c.write_all(b"x");
    }
    // Each write meets the overflowed queue's reset, but for the connection that got in.
    let deadline = Instant::now() + Duration::from_secs(1);
    for c in &conns {
        reset_taken_within(c, deadline.saturating_duration_since(Instant::now()));
    }
    drop((conns, listener));
    Vec::new()
}

/// What a forger does to one request it saw.
struct Forgery {
    /// A data segment it sends first (addressed and marked like the resets), with its payload.
    data_first: Option<(Rst, &'static [u8])>,
    /// The resets, in the order sent.
    resets: Vec<Rst>,
    /// Sent from the client's namespace (a forger beside the client), else from the router.
    beside_client: bool,
    /// The real client sends more data afterwards (it never sent a reset).
    client_continues: bool,
}

impl Forgery {
    /// Resets sent from the router; the client says nothing more.
    fn from_router(resets: Vec<Rst>) -> Forgery {
        Forgery {
            data_first: None,
            resets,
            beside_client: false,
            client_continues: false,
        }
    }
}

/// Runs `n` fresh requests (a port of its own each); on each, the forger sends what `forge`
/// makes of the request; returns every reset forged.
fn each_request(lab: &Lab, base: u16, n: usize, forge: impl Fn(&Seen, u16) -> Forgery) -> Vec<Rst> {
    let sniffer = Sniffer::open(&lab.router, ROUTER_SERVER_IF);
    let mut all = Vec::new();
    for i in 0..n {
        let port = port(base, i);
        let (mut c, s, req) = request(lab, &sniffer, port);
        let f = forge(&req, port);
        let from = if f.beside_client {
            &lab.client
        } else {
            &lab.router
        };
        if let Some((like, payload)) = &f.data_first {
            inject_data(from, like, payload);
        }
        for rst in &f.resets {
            inject(from, rst);
        }
        // The forgery is ahead of the client's next segments on the one path to the server.
        if f.client_continues {
            let _ = c.write_all(b"more data");
        }
        drop((c, s));
        all.extend(f.resets);
    }
    all
}

fn ttl_other(lab: &Lab, n: usize) -> Vec<Rst> {
    each_request(lab, 10000, n, |req, _| {
        Forgery::from_router(vec![toward_server(req.sport, req.dport, req.next_seq())])
    })
}

fn ttl_copy_continues(lab: &Lab, n: usize) -> Vec<Rst> {
    each_request(lab, 11000, n, |req, _| Forgery {
        data_first: None,
        resets: vec![Rst {
            ttl: 63,
            ip_id: req.ip_id.wrapping_add(1),
            ..toward_server(req.sport, req.dport, req.next_seq())
        }],
        beside_client: false,
        client_continues: true,
    })
}

fn ttl_copy_silent(lab: &Lab, n: usize) -> Vec<Rst> {
    each_request(lab, 17000, n, |req, port| {
        Forgery::from_router(vec![Rst {
            ttl: 63,
            ip_id: 0x5000u16.wrapping_add(port.wrapping_mul(101)),
            ..toward_server(req.sport, req.dport, req.next_seq())
        }])
    })
}

fn takeover(lab: &Lab, n: usize) -> Vec<Rst> {
    const PAGE: &[u8] = b"HTTP/1.1 403 Forbidden\r\n\r\n";
    each_request(lab, 18000, n, |req, port| {
        let data = Rst {
            ip_id: 0x6000u16.wrapping_add(port),
            ack: Some(req.ack),
            ..toward_server(req.sport, req.dport, req.next_seq())
        };
        let reset = Rst {
            ip_id: data.ip_id.wrapping_add(1),
            ack: None,
            ..toward_server(
                req.sport,
                req.dport,
                req.next_seq().wrapping_add(PAGE.len() as u32),
            )
        };
        Forgery {
            data_first: Some((data, PAGE)),
            resets: vec![reset],
            beside_client: false,
            client_continues: false,
        }
    })
}

fn ips_counter(lab: &Lab, n: usize) -> Vec<Rst> {
    let counter = std::cell::Cell::new(0x7100u16);
    let next_id = || {
        counter.set(counter.get().wrapping_add(1));
        counter.get()
    };
    each_request(lab, 12000, n, |req, _| {
        Forgery::from_router(vec![
            Rst {
                ttl: 63,
                ip_id: next_id(),
                ack: Some(req.ack),
                ..toward_server(req.sport, req.dport, req.next_seq())
            },
            Rst {
                ttl: 63,
                ip_id: next_id(),
                ..toward_client(req)
            },
        ])
    })
}

fn blind_in_window(lab: &Lab, n: usize) -> Vec<Rst> {
    // Linux answers it with a challenge ACK and the connection lives on.
    each_request(lab, 13000, n, |req, port| Forgery {
        data_first: None,
        resets: vec![Rst {
            ttl: 63,
            ip_id: 0x9000u16.wrapping_add(port.wrapping_mul(37)),
            ..toward_server(req.sport, req.dport, req.next_seq().wrapping_add(1000))
        }],
        beside_client: false,
        client_continues: true,
    })
}

fn blind_far(lab: &Lab, n: usize) -> Vec<Rst> {
    each_request(lab, 14000, n, |req, _| {
        Forgery::from_router(vec![toward_server(
            req.sport,
            req.dport,
            req.next_seq().wrapping_add(0x4000_0000),
        )])
    })
}

fn censor(lab: &Lab, n: usize) -> Vec<Rst> {
    each_request(lab, 15000, n, |req, _| {
        let mark = |r: Rst| Rst {
            ip_id: 0x3412,
            window: 2453,
            ..r
        };
        Forgery::from_router(vec![
            mark(toward_server(req.sport, req.dport, req.next_seq())),
            mark(toward_client(req)),
        ])
    })
}

fn gateway(lab: &Lab, n: usize) -> Vec<Rst> {
    // Sent from the client's own namespace: it crosses the router as the client's packets do,
    // and arrives with the same TTL.
    each_request(lab, 16000, n, |req, port| Forgery {
        data_first: None,
        resets: vec![Rst {
            ip_id: 0x2000u16.wrapping_add(port),
            ..toward_server(req.sport, req.dport, req.next_seq())
        }],
        beside_client: true,
        client_continues: true,
    })
}

/// The verdicts on one class from one viewpoint.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Class name.
    pub class: &'static str,
    /// Viewpoint name.
    pub viewpoint: &'static str,
    /// Honest resets reported.
    pub honest: usize,
    /// Of those, called suspicious.
    pub false_positives: usize,
    /// Of those, called `local` though the traced host did not send them.
    pub misattributed_local: usize,
    /// Of those, with an explanation.
    pub explained: usize,
    /// Resets the traced host sent that were not called `local`.
    pub unclaimed_local: usize,
    /// Forged resets reported.
    pub forged: usize,
    /// Of those, called suspicious.
    pub caught: usize,
    /// The shortest handshake round trip among the resets' flows (µs): the delay line at work.
    pub min_rtt_us: Option<u64>,
    /// A few of the wrong verdicts, for the report.
    pub examples: Vec<String>,
}

/// Keeps a wrong verdict for the report (three per tally at most).
fn example(t: &mut Tally, what: &str, r: &Value) {
    if t.examples.len() < 3 {
        t.examples.push(format!(
            "{what}: {} seq {} ttl {} ip_id {} origin {}: {}",
            r["flow"],
            r["rst"]["seq"],
            r["rst"]["ttl"],
            r["rst"]["ip_id"],
            r["origin"],
            r["findings"]
        ));
    }
}

/// Labels the tracer's output of one class and counts the verdicts.
pub fn tally(class: &Class, viewpoint: Viewpoint, out: &[Value], forged: &[Rst]) -> Tally {
    let mut t = Tally {
        class: class.name,
        viewpoint: viewpoint.name(),
        ..Tally::default()
    };
    for r in out.iter().filter(|r| r["type"] == "reset") {
        if let Some(rtt) = r["history"]["handshake_rtt_us"].as_f64() {
            let rtt = rtt as u64;
            t.min_rtt_us = Some(t.min_rtt_us.map_or(rtt, |m| m.min(rtt)));
        }
        let suspicious = r["suspicious"] == true;
        if forged.iter().any(|f| is(r, f)) {
            t.forged += 1;
            if suspicious {
                t.caught += 1;
            } else {
                example(&mut t, "missed", r);
            }
            continue;
        }
        t.honest += 1;
        if !r["explanation"].is_null() {
            t.explained += 1;
        }
        if suspicious {
            t.false_positives += 1;
            example(&mut t, "false positive", r);
        }
        let from_host = viewpoint.host().is_some_and(|h| r["flow"]["src"] == h);
        if r["origin"] == "local" && !from_host {
            t.misattributed_local += 1;
            example(&mut t, "called local", r);
        }
        if from_host && r["origin"] != "local" {
            t.unclaimed_local += 1;
            example(&mut t, "not called local", r);
        }
    }
    t
}

/// Runs one class in a fresh lab with the tracer at `viewpoint`, at `scale`.
pub fn run(tracer: &str, class: &Class, viewpoint: Viewpoint, scale: usize) -> Tally {
    let n = (scale / class.per).max(1);
    let lab = Lab::new(tracer);
    let _delay = DelayLine::toward_client(&lab, DELAY);
    if class.kind == Kind::Honest {
        lossy(&lab);
    }
    let t = match viewpoint {
        Viewpoint::Server => lab.start_tracer_on(&lab.server, SERVER_IF, "json", &[]),
        Viewpoint::Router => lab.start_tracer_on(&lab.router, ROUTER_SERVER_IF, "json", &[]),
    };
    let forged = (class.run)(&lab, n);
    let out = t.stop_when_quiet();
    tally(class, viewpoint, &out, &forged)
}
