//! Kernel tests: the built eBPF object, loaded for real, with crafted frames pushed through its
//! XDP and TC programs by BPF_PROG_TEST_RUN. They assert the events and the counters exactly.
//! They need root and the object (`cargo xtask test` provides both) and fail plainly without.

use std::collections::BTreeMap;

use etherparse::{
    IpNumber, Ipv6Extensions, Ipv6FragmentHeader, Ipv6RawExtHeader, Ipv6RoutingExtensions,
    TcpOptionElement,
};
use rst_tracer::{
    attach::LoadOptions,
    event::{decode, Clock, Event, Reset, Sample},
    source::prog_run::ProgRun,
};
use rst_tracer_common::{
    counter::Counter,
    event::{
        Direction, Hook, IP_DF, IP_MF, IP_V6, OPT_MPTCP, OPT_MSS, OPT_SACK_OK, OPT_TIMESTAMPS,
        OPT_WSCALE, RST_FRAME_MAX, TCP_ACK, TCP_RST,
    },
    flow::{
        addr_from_ipv4, FlowKey, Side, FAMILY_IPV4, FLOW_HANDSHAKE, FLOW_HANDSHAKE_UNTIMED,
        FLOW_MIDSTREAM, SIDE_SEEN, SIDE_TIMESTAMPS, SYN_SIDE_UNKNOWN,
    },
    names,
    replay::ReplayMeta,
};
use rst_tracer_lab::frames::Seg;

const CLIENT: &str = "10.0.1.2";
const SERVER: &str = "10.0.2.2";
const MS: u64 = 1_000_000;
const T0: u64 = 1_700_000_000_000_000_000;

struct Kernel {
    run: ProgRun,
}

impl Kernel {
    /// The kernel program, loaded; None (after saying so loudly) where it cannot run.
    fn new() -> Option<Kernel> {
        if !rst_tracer_lab::privileged() {
            return None;
        }
        Some(Kernel {
            run: ProgRun::load(&LoadOptions::default()).expect("loading the kernel object"),
        })
    }

    /// Runs a frame through XDP as a capture record taken at `ts_ns`.
    fn replay(&mut self, frame: &[u8], ts_ns: u64) {
        let (action, _) = self
            .run
            .xdp(frame, Some(ReplayMeta::new(ts_ns)), 1)
            .unwrap();
        assert_eq!(action, 2, "the program must always pass packets (XDP_PASS)");
    }

    fn seg(&mut self, seg: &Seg, ts_ns: u64) {
        self.replay(&seg.frame(), ts_ns);
    }

    fn events(&mut self) -> Vec<Event> {
        let clock = Clock {
            monotonic_to_epoch_ns: 0,
        };
        self.run
            .drain()
            .into_iter()
            .map(|r| decode(&r, &clock).expect("decodable event"))
            .collect()
    }

    fn resets(&mut self) -> Vec<Reset> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Reset(r) => Some(*r),
                _ => None,
            })
            .collect()
    }

    /// The non-zero counters by name.
    fn counters(&self) -> BTreeMap<&'static str, u64> {
        let snap = self.run.counters().unwrap();
        Counter::ALL
            .iter()
            .filter(|c| snap.get(**c) != 0)
            .map(|c| (c.name(), snap.get(*c)))
            .collect()
    }
}

fn counts(pairs: &[(&'static str, u64)]) -> BTreeMap<&'static str, u64> {
    pairs.iter().copied().collect()
}

/// The handshake, one request and its ACK, in replay time from T0.
fn handshake_and_request(k: &mut Kernel) {
    let mss = [
        TcpOptionElement::MaximumSegmentSize(1460),
        TcpOptionElement::WindowScale(7),
    ];
    k.seg(
        &Seg::new(CLIENT, 40000, SERVER, 80)
            .seq(100)
            .syn()
            .options(&mss)
            .ttl(63)
            .ip_id(10),
        T0,
    );
    k.seg(
        &Seg::new(SERVER, 80, CLIENT, 40000)
            .seq(5000)
            .ack(101)
            .syn()
            .options(&mss)
            .ip_id(0),
        T0 + 2 * MS,
    );
    k.seg(
        &Seg::new(CLIENT, 40000, SERVER, 80)
            .seq(101)
            .ack(5001)
            .ttl(63)
            .ip_id(11),
        T0 + 4 * MS,
    );
    k.seg(
        &Seg::new(CLIENT, 40000, SERVER, 80)
            .seq(101)
            .ack(5001)
            .payload(b"GET / HTTP/1.1\r\n\r\n")
            .ttl(63)
            .ip_id(12),
        T0 + 5 * MS,
    );
    k.seg(
        &Seg::new(SERVER, 80, CLIENT, 40000)
            .seq(5001)
            .ack(119)
            .ip_id(20),
        T0 + 7 * MS,
    );
}

#[test]
fn object_has_every_program_and_map_name() {
    let Some(k) = Kernel::new() else {
        return;
    };
    let stack = names::TRACEPOINT_PROGRAMS.map(|(program, _)| program);
    for name in names::PACKET_PROGRAMS.into_iter().chain(stack) {
        assert!(
            k.run.ebpf().program(name).is_some(),
            "program {name} missing"
        );
    }
    for name in names::MAPS {
        // The rings were taken out of the object by ProgRun; the others are still in it.
        let taken = name == names::MAP_RST_RING || name == names::MAP_SAMPLE_RING;
        assert!(
            taken || k.run.ebpf().map(name).is_some(),
            "map {name} missing"
        );
    }
}

#[test]
fn ordinary_packets_make_no_events() {
    let Some(mut k) = Kernel::new() else {
        return;
    };
    handshake_and_request(&mut k);
    assert!(k.events().is_empty());
    assert_eq!(
        k.counters(),
        counts(&[
            ("packets", 5),
            ("tcp", 5),
            ("flow_inserts", 1),
            ("replay_frames", 5)
        ])
    );
}

#[test]
fn a_reset_carries_its_headers_and_the_flow_before_it() {
    let Some(mut k) = Kernel::new() else {
        return;
    };
    handshake_and_request(&mut k);
    // A RST "from the server" with another TTL and IP ID, 1 ms after the client's last packet.
    let rst = Seg::new(SERVER, 80, CLIENT, 40000)
        .seq(5001)
        .ack(119)
        .rst()
        .ttl(60)
        .ip_id(0x4242);
    k.seg(
        &Seg {
            ack: Some(119),
            ..rst
        },
        T0 + 8 * MS,
    );
    let resets = k.resets();
    assert_eq!(resets.len(), 1);
    let r = &resets[0];
    assert_eq!(
        r.seen.ts_ns,
        T0 + 8 * MS,
        "capture time, not the machine's clock"
    );
    assert_eq!(r.seen.hook, Hook::Replay);
    assert_eq!(r.seen.direction, Direction::Unknown);
    assert!(!r.seen.new_flow);
    assert_eq!(r.seen.sender(), (SERVER.parse().unwrap(), 80));
    assert_eq!(r.seen.receiver(), (CLIENT.parse().unwrap(), 40000));
    assert_eq!(
        (r.rst.seq, r.rst.ack, r.rst.ttl, r.rst.ip_id, r.rst.window),
        (5001, 119, 60, 0x4242, 0)
    );
    assert_eq!(r.rst.flags, TCP_RST | TCP_ACK);
    assert_eq!(r.rst.ip_flags, IP_DF);

    let flow = &r.flow;
    assert_eq!(flow.flags & FLOW_HANDSHAKE, FLOW_HANDSHAKE);
    assert_eq!(flow.flags & (FLOW_MIDSTREAM | FLOW_HANDSHAKE_UNTIMED), 0);
    assert_eq!(flow.handshake_rtt_ns(), Some(4 * MS));
    assert_eq!(flow.rst_count, 0);
    let server = flow.side(r.seen.side);
    let client = flow.side(r.seen.side.other());
    // The client numbered its packets 10, 11, 12: a run of two steps; the server's 0, 20 none.
    assert_eq!((client.ipid_run, server.ipid_run), (2, 0));
    assert_eq!(
        (server.ttl_min, server.ttl_max, server.ttl_samples),
        (64, 64, 2)
    );
    assert_eq!(server.last_ip_id, 20);
    assert_eq!(server.seq_next, 5001, "SYN counts one");
    assert_eq!(server.wscale, 7);
    assert_eq!(
        (client.ttl_min, client.ttl_max, client.ttl_samples),
        (63, 63, 3)
    );
    assert_eq!(client.seq_next, 119);
    assert_eq!(
        (client.last_seq, client.last_len, client.last_ip_id),
        (101, 18, 12)
    );
    assert_eq!(
        client.last_ns,
        T0 + 5 * MS,
        "the trigger candidate: the client's last packet"
    );
    assert_eq!(client.flags & SIDE_SEEN, SIDE_SEEN);
    assert!(r.payload.is_empty());
    assert_eq!(k.counters()["rst"], 1);
    assert_eq!(k.counters()["rst_written"], 1);
}

#[test]
fn reset_payload_is_captured() {
    let Some(mut k) = Kernel::new() else {
        return;
    };
    let text = b"Access Denied by policy";
    k.seg(
        &Seg::new(SERVER, 80, CLIENT, 40000)
            .seq(7)
            .ack(9)
            .rst()
            .payload(text),
        T0,
    );
    let r = k.resets().remove(0);
    assert!(r.seen.new_flow);
    assert_eq!(r.rst.payload_len as usize, text.len());
    assert_eq!(&r.payload[..], text);
    // Longer than the 64 bytes an event carries: the first 64.
    let long: Vec<u8> = (0..200u8).collect();
    k.seg(
        &Seg::new(SERVER, 81, CLIENT, 40000).rst().payload(&long),
        T0,
    );
    let r = k.resets().remove(0);
    assert_eq!(r.rst.payload_len, 200);
    assert_eq!(&r.payload[..], &long[..64]);
}

#[test]
fn a_reset_carries_the_first_bytes_of_its_frame_at_every_hook() {
    let Some(mut k) = Kernel::new() else {
        return;
    };
    // A short reset (54 bytes) whole, at each hook; one with a long payload cut at 256 bytes,
    // with the frame's real length beside the bytes.
    let short = Seg::new(SERVER, 80, CLIENT, 40000).rst().frame();
    let long_payload: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    let long = Seg::new(SERVER, 81, CLIENT, 40000)
        .rst()
        .vlans(&[7])
        .payload(&long_payload)
        .frame();
    assert_eq!(long.len(), 14 + 4 + 20 + 20 + 1000);
    for frame in [&short, &long] {
        k.replay(frame, T0);
        k.run.xdp(frame, None, 1).unwrap();
        k.run.tc(Hook::TcIngress, frame, 1).unwrap();
        k.run.tc(Hook::TcEgress, frame, 1).unwrap();
        let resets = k.resets();
        assert_eq!(resets.len(), 4);
        for r in resets {
            let hook = r.seen.hook;
            let kept = frame.len().min(RST_FRAME_MAX);
            assert_eq!(
                r.frame.len as usize,
                frame.len(),
                "{hook:?}: the whole length"
            );
            assert_eq!(
                &r.frame.data[..],
                &frame[..kept],
                "{hook:?}: the first bytes"
            );
        }
    }
}

#[test]
fn vlan_tags_one_and_two_are_parsed_three_are_refused() {
    let Some(mut k) = Kernel::new() else {
        return;
    };
    let base = Seg::new(CLIENT, 1, SERVER, 2).rst();
    k.seg(&base.clone().vlans(&[100]), T0);
    k.seg(&base.clone().vlans(&[100, 200]), T0);
    let resets = k.resets();
    assert_eq!(resets.len(), 2);
    assert!(resets
        .iter()
        .all(|r| r.seen.sender() == (CLIENT.parse().unwrap(), 1)));
    k.seg(&base.vlans(&[100, 200, 300]), T0);
    assert!(k.resets().is_empty());
    assert_eq!(k.counters()["err_vlan_too_deep"], 1);
}

#[test]
fn pppoe_sessions_behind_vlan_tags() {
    let Some(mut k) = Kernel::new() else {
        return;
    };
    let seg = Seg::new(CLIENT, 7, SERVER, 8).seq(99).rst();
    for (ppp, ip) in [
        (0x0021u16, seg.ip_packet()),
        (
            0x0057,
            Seg::new("2001:db8::1", 7, "2001:db8::2", 8)
                .rst()
                .ip_packet(),
        ),
    ] {
        let mut pppoe = vec![0x11, 0x00, 0x12, 0x34];
        pppoe.extend_from_slice(&((ip.len() + 2) as u16).to_be_bytes());
        pppoe.extend_from_slice(&ppp.to_be_bytes());
        pppoe.extend_from_slice(&ip);
        k.replay(
            &rst_tracer_lab::frames::ethernet(&[939, 744], 0x8864, &pppoe),
            T0,
        );
    }
    let resets = k.resets();
    assert_eq!(resets.len(), 2);
    assert_eq!((resets[0].seen.sender().1, resets[0].rst.seq), (7, 99));
    assert_eq!(resets[1].rst.ip_flags, IP_V6);
    // PPP control traffic (LCP) is not IP; a header cut short is malformed.
    let mut lcp = vec![0x11, 0x00, 0x12, 0x34, 0x00, 0x02, 0xc0, 0x21, 1, 2];
    lcp.resize(46, 0);
    k.replay(&rst_tracer_lab::frames::ethernet(&[], 0x8864, &lcp), T0);
    k.replay(
        &rst_tracer_lab::frames::ethernet(&[], 0x8864, &[0x11, 0x00, 0x12]),
        T0,
    );
    let c = k.counters();
    assert_eq!(
        (c["other_ethertype"], c["err_pppoe_truncated"]),
        (1, 1),
        "{c:?}"
    );
}

#[test]
fn ipv4_options_are_skipped_by_their_length() {
    let Some(mut k) = Kernel::new() else {
        return;
    };
    // Record-route style option area of 12 bytes (IHL 8).
    let opts = [7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    k.seg(
        &Seg::new(CLIENT, 4321, SERVER, 80)
            .seq(77)
            .rst()
            .ipv4_options(&opts),
        T0,
    );
    let r = k.resets().remove(0);
    assert_eq!(r.seen.sender(), (CLIENT.parse().unwrap(), 4321));
    assert_eq!(r.seen.receiver(), (SERVER.parse().unwrap(), 80));
    assert_eq!(r.rst.seq, 77);
}

#[test]
fn ipv4_fragments_first_is_parsed_others_are_counted() {
    let Some(mut k) = Kernel::new() else {
        return;
    };
    let mut first = Seg::new(CLIENT, 5, SERVER, 6).rst().frame();
    first[14 + 6] |= 0x20; // MF, offset 0
    k.replay(&first, T0);
    let r = k.resets().remove(0);
    assert_eq!(r.rst.ip_flags, IP_DF | IP_MF);
    let mut later = Seg::new(CLIENT, 5, SERVER, 6).rst().frame();
    later[14 + 7] = 0x10; // offset 16 * 8
    k.replay(&later, T0);
    assert!(k.resets().is_empty());
    assert_eq!(k.counters()["ipv4_fragment"], 1);
}

fn raw_ext(next: IpNumber) -> Ipv6RawExtHeader {
    Ipv6RawExtHeader::new_raw(next, &[0; 6]).unwrap()
}

#[test]
fn ipv6_with_extension_headers() {
    let Some(mut k) = Kernel::new() else {
        return;
    };
    let v6c = "2001:db8::2";
    let v6s = "2001:db8:1::2";
    k.seg(&Seg::new(v6c, 40000, v6s, 443).seq(9).rst().ttl(57), T0);
    let exts = Ipv6Extensions {
        hop_by_hop_options: Some(raw_ext(IpNumber::IPV6_ROUTE_HEADER)),
        routing: Some(Ipv6RoutingExtensions {
            routing: raw_ext(IpNumber::IPV6_FRAGMENTATION_HEADER),
            final_destination_options: None,
        }),
        fragment: Some(Ipv6FragmentHeader::new(
            IpNumber::IPV6_DESTINATION_OPTIONS,
            0u16.try_into().unwrap(),
            true,
            1,
        )),
        destination_options: Some(raw_ext(IpNumber::TCP)),
        auth: None,
    };
    k.seg(
        &Seg::new(v6c, 40001, v6s, 443).seq(10).rst().ipv6_ext(exts),
        T0,
    );
    let resets = k.resets();
    assert_eq!(resets.len(), 2, "{:?}", k.counters());
    assert_eq!(resets[0].seen.sender(), (v6c.parse().unwrap(), 40000));
    assert_eq!(resets[0].rst.ttl, 57);
    assert_eq!(resets[0].rst.ip_flags, IP_V6);
    assert_eq!(resets[0].rst.ip_id, 0);
    assert_eq!(resets[1].seen.sender(), (v6c.parse().unwrap(), 40001));
    assert_eq!(resets[1].rst.seq, 10);
    assert_eq!(resets[1].rst.ip_flags, IP_V6 | IP_MF);

    let later = Ipv6Extensions {
        fragment: Some(Ipv6FragmentHeader::new(
            IpNumber::TCP,
            100u16.try_into().unwrap(),
            false,
            1,
        )),
        ..Default::default()
    };
    k.seg(&Seg::new(v6c, 40002, v6s, 443).rst().ipv6_ext(later), T0);
    assert!(k.resets().is_empty());
    assert_eq!(k.counters()["ipv6_fragment"], 1);
}

#[test]
fn tcp_options_are_summarised() {
    let Some(mut k) = Kernel::new() else {
        return;
    };
    let syn_opts = [
        TcpOptionElement::MaximumSegmentSize(1460),
        TcpOptionElement::SelectiveAcknowledgementPermitted,
        TcpOptionElement::Timestamp(111, 0),
        TcpOptionElement::Noop,
        TcpOptionElement::WindowScale(9),
    ];
    k.seg(
        &Seg::new(CLIENT, 3000, SERVER, 22).syn().options(&syn_opts),
        T0,
    );
    // An ACK in Linux's layout (NOP NOP TS) takes the fast path.
    let ts = [
        TcpOptionElement::Noop,
        TcpOptionElement::Noop,
        TcpOptionElement::Timestamp(222, 333),
    ];
    k.seg(
        &Seg::new(CLIENT, 3000, SERVER, 22)
            .seq(1)
            .ack(1)
            .options(&ts),
        T0 + MS,
    );
    // A RST with an MPTCP option (kind 30) and timestamps.
    let mut rst = Seg::new(CLIENT, 3000, SERVER, 22)
        .seq(1)
        .ack(1)
        .rst()
        .options(&ts)
        .frame();
    let tcp = rst.len() - 32;
    rst[tcp + 20] = 30; // the first NOP becomes MPTCP kind 30 with length...
    rst[tcp + 21] = 2; // ...2 (a bare option, enough for the summary)
    k.replay(&rst, T0 + 2 * MS);
    let r = k.resets().remove(0);
    assert_eq!(r.rst.tcp_options, OPT_MPTCP | OPT_TIMESTAMPS);
    assert_eq!((r.rst.ts_val, r.rst.ts_ecr), (222, 333));
    let client = r.flow.side(r.seen.side);
    assert_eq!(client.wscale, 9);
    assert_eq!(client.flags & SIDE_TIMESTAMPS, SIDE_TIMESTAMPS);
    assert_eq!(
        (client.ts_val, client.ts_ecr),
        (222, 333),
        "from the fast path"
    );
}

#[test]
fn syn_options_walk_finds_every_kind() {
    let Some(mut k) = Kernel::new() else {
        return;
    };
    let opts = [
        TcpOptionElement::MaximumSegmentSize(1460),
        TcpOptionElement::SelectiveAcknowledgementPermitted,
        TcpOptionElement::Timestamp(5, 6),
        TcpOptionElement::Noop,
        TcpOptionElement::WindowScale(3),
    ];
    // A RST+SYN is odd but walks the same code and reports it.
    k.seg(
        &Seg::new(CLIENT, 1, SERVER, 2).syn().rst().options(&opts),
        T0,
    );
    let r = k.resets().remove(0);
    assert_eq!(
        r.rst.tcp_options,
        OPT_MSS | OPT_SACK_OK | OPT_TIMESTAMPS | OPT_WSCALE
    );
    assert_eq!(r.rst.wscale, 3);
    assert_eq!((r.rst.ts_val, r.rst.ts_ecr), (5, 6));
}

#[test]
fn every_truncation_point_is_counted_never_misread() {
    let Some(mut k) = Kernel::new() else {
        return;
    };
    let full = Seg::new(CLIENT, 1111, SERVER, 2222)
        .seq(5)
        .ack(6)
        .rst()
        .payload(b"xyz")
        .frame();
    // 14 Ethernet + 20 IPv4 + 20 TCP + 3 payload.
    assert_eq!(full.len(), 57);
    let mut expected: BTreeMap<&'static str, u64> = BTreeMap::new();
    for cut in 0..full.len() {
        if cut < 14 {
            // The kernel itself refuses to run XDP on less than an Ethernet header; replay must
            // count such records in userspace.
            assert!(
                k.run
                    .xdp(&full[..cut], Some(ReplayMeta::new(T0)), 1)
                    .is_err(),
                "cut {cut}"
            );
            continue;
        }
        k.replay(&full[..cut], T0);
        let name = match cut {
            14..=33 => "err_ipv4_truncated",
            34..=53 => "err_tcp_truncated",
            _ => "rst", // headers complete, payload cut: parsed, payload partly captured
        };
        *expected.entry(name).or_default() += 1;
    }
    let resets = k.resets();
    assert_eq!(resets.len(), 3);
    for (r, have) in resets.iter().zip([0usize, 1, 2]) {
        assert_eq!(r.rst.payload_len, 3, "length from the IP header");
        assert_eq!(r.payload.len(), have, "only the bytes present");
    }
    let c = k.counters();
    for (name, n) in &expected {
        assert_eq!(c.get(name), Some(n), "counter {name}: {c:?}");
    }
    assert_eq!(c["packets"], full.len() as u64 - 14);
}

#[test]
fn malformed_headers_are_counted_by_kind() {
    let Some(mut k) = Kernel::new() else {
        return;
    };
    let good = Seg::new(CLIENT, 1, SERVER, 2).rst().frame();
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x44; // IHL 4
    let mut bad_version = good.clone();
    bad_version[14] = 0x55;
    let mut short_total = good.clone();
    short_total[16..18].copy_from_slice(&10u16.to_be_bytes());
    let mut bad_doff = good.clone();
    bad_doff[14 + 20 + 12] = 0x40; // data offset 4
    let mut big_doff = good.clone();
    big_doff[14 + 20 + 12] = 0xf0; // data offset 15: past the IP payload
    let mut arp = good.clone();
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    let mut udp = good.clone();
    udp[14 + 9] = 17;
    for f in [
        &bad_ihl,
        &bad_version,
        &short_total,
        &bad_doff,
        &big_doff,
        &arp,
        &udp,
    ] {
        k.replay(f, T0);
    }
    assert!(k.resets().is_empty());
    assert_eq!(
        k.counters(),
        counts(&[
            ("packets", 7),
            ("err_ipv4_bad_header", 2),
            ("err_ip_bad_length", 1),
            ("err_tcp_bad_offset", 2),
            ("other_ethertype", 1),
            ("non_tcp", 1),
            ("replay_frames", 7),
        ])
    );
}

fn samples(events: Vec<Event>) -> (Vec<Sample>, Vec<Sample>, Vec<Sample>) {
    let (mut after, mut retrans, mut ttl) = (Vec::new(), Vec::new(), Vec::new());
    for e in events {
        match e {
            Event::AfterReset(s) => after.push(s),
            Event::Retransmit(s) => retrans.push(s),
            Event::TtlChange(s) => ttl.push(s),
            Event::Reset(_) | Event::Kernel(_) => {}
        }
    }
    (after, retrans, ttl)
}

#[test]
fn first_packet_from_each_side_after_a_reset() {
    let Some(mut k) = Kernel::new() else {
        return;
    };
    handshake_and_request(&mut k);
    k.seg(
        &Seg::new(CLIENT, 40000, SERVER, 80)
            .seq(119)
            .ack(5001)
            .rst()
            .ttl(63),
        T0 + 10 * MS,
    );
    // The client keeps sending after "its" reset, twice; the server answers once.
    k.seg(
        &Seg::new(CLIENT, 40000, SERVER, 80)
            .seq(119)
            .ack(5001)
            .payload(b"more")
            .ttl(63),
        T0 + 11 * MS,
    );
    k.seg(
        &Seg::new(CLIENT, 40000, SERVER, 80)
            .seq(123)
            .ack(5001)
            .payload(b"again")
            .ttl(63),
        T0 + 12 * MS,
    );
    k.seg(
        &Seg::new(SERVER, 80, CLIENT, 40000).seq(5001).ack(128),
        T0 + 13 * MS,
    );
    let events = k.events();
    assert!(matches!(events[0], Event::Reset(_)));
    let (after, _, _) = samples(events);
    assert_eq!(after.len(), 2, "one per side, then only counted");
    assert_eq!(after[0].seen.side, Side::Lo, "client 10.0.1.2 sorts low");
    assert_eq!(after[0].packet.seq, 119);
    assert_eq!(after[1].seen.sender(), (SERVER.parse().unwrap(), 80));
    assert_eq!(k.counters()["after_rst_written"], 2);
}

#[test]
fn retransmissions_and_ttl_changes_are_sampled_and_rate_limited() {
    let Some(mut k) = Kernel::new() else {
        return;
    };
    handshake_and_request(&mut k);
    let again = Seg::new(CLIENT, 40000, SERVER, 80)
        .seq(101)
        .ack(5001)
        .payload(b"GET / HTTP/1.1\r\n\r\n")
        .ttl(63);
    k.seg(&again, T0 + 300 * MS);
    k.seg(&again, T0 + 310 * MS); // within the 100 ms gap: counted, not sampled
    k.seg(&again.clone().ttl(61), T0 + 600 * MS); // a retransmission with another TTL: one sample
    k.seg(
        &Seg::new(CLIENT, 40000, SERVER, 80)
            .seq(119)
            .ack(5001)
            .ttl(50),
        T0 + 900 * MS,
    );
    let (after, retrans, ttl) = samples(k.events());
    assert!(after.is_empty());
    assert_eq!(retrans.len(), 2);
    assert_eq!(retrans[0].packet.seq, 101);
    assert_eq!(retrans[0].sender.retransmits, 0, "state before this packet");
    assert_eq!(retrans[1].sender.retransmits, 2);
    assert_eq!(ttl.len(), 1);
    assert_eq!((ttl[0].packet.ttl, ttl[0].sender.ttl_last), (50, 61));
    let c = k.counters();
    assert_eq!(c["retransmit_written"], 2);
    assert_eq!(c["ttl_change_written"], 1);
    assert_eq!(c["samples_rate_limited"], 1);
}

/// A handshake in which `resent` (a SYN from the client, or a SYN-ACK from the server) went out
/// twice, a second apart, then a reset from the server, through `k`; returns the reset's flow
/// state.
fn handshake_with_a_copy(k: &mut Kernel, resent: &Seg) -> rst_tracer_common::flow::FlowState {
    let syn = Seg::new(CLIENT, 40000, SERVER, 80).seq(100).syn().ttl(63);
    let synack = Seg::new(SERVER, 80, CLIENT, 40000).seq(5000).ack(101).syn();
    k.seg(&syn, T0);
    k.seg(resent, T0 + 1000 * MS);
    k.seg(&synack, T0 + 1002 * MS);
    let ack = Seg::new(CLIENT, 40000, SERVER, 80)
        .seq(101)
        .ack(5001)
        .ttl(63);
    k.seg(&ack, T0 + 1004 * MS);
    k.seg(
        &Seg::new(SERVER, 80, CLIENT, 40000).seq(5001).rst(),
        T0 + 1010 * MS,
    );
    k.resets().remove(0).flow
}

#[test]
fn a_handshake_sent_twice_is_marked_as_no_measure_of_the_round_trip() {
    let syn = Seg::new(CLIENT, 40000, SERVER, 80).seq(100).syn().ttl(63);
    let synack = Seg::new(SERVER, 80, CLIENT, 40000).seq(5000).ack(101).syn();
    for (what, resent) in [("SYN", syn), ("SYN-ACK", synack)] {
        let Some(mut k) = Kernel::new() else {
            return;
        };
        let flow = handshake_with_a_copy(&mut k, &resent);
        assert_eq!(
            flow.flags & (FLOW_HANDSHAKE | FLOW_HANDSHAKE_UNTIMED),
            FLOW_HANDSHAKE | FLOW_HANDSHAKE_UNTIMED,
            "a {what} sent twice"
        );
    }
}

#[test]
fn a_handshake_completed_by_data_is_no_measure_of_the_round_trip() {
    // The client's own ACK of the SYN-ACK was lost: its request, retransmitted 700 ms later,
    // completes the handshake at the server. A pure ACK leaves the handshake timed.
    for (what, payload, untimed) in [
        ("data", &b"GET /"[..], true),
        ("a pure ACK", &b""[..], false),
    ] {
        let Some(mut k) = Kernel::new() else {
            return;
        };
        k.seg(
            &Seg::new(CLIENT, 40000, SERVER, 80).seq(100).syn().ttl(63),
            T0,
        );
        k.seg(
            &Seg::new(SERVER, 80, CLIENT, 40000).seq(5000).ack(101).syn(),
            T0 + MS,
        );
        k.seg(
            &Seg::new(CLIENT, 40000, SERVER, 80)
                .seq(101)
                .ack(5001)
                .payload(payload)
                .ttl(63),
            T0 + 701 * MS,
        );
        k.seg(
            &Seg::new(SERVER, 80, CLIENT, 40000).seq(5001).rst(),
            T0 + 710 * MS,
        );
        let flow = k.resets().remove(0).flow;
        assert_eq!(
            flow.flags & (FLOW_HANDSHAKE | FLOW_HANDSHAKE_UNTIMED),
            if untimed {
                FLOW_HANDSHAKE | FLOW_HANDSHAKE_UNTIMED
            } else {
                FLOW_HANDSHAKE
            },
            "a handshake completed by {what}"
        );
    }
}

#[test]
fn resets_dropped_on_a_full_ring_are_counted_per_flow() {
    // 4,000 RSTs of one flow with nothing reading the reset ring (2 MiB holds about 3,100):
    // those that do not fit are counted, and counted in the flow's entry of the dropped tally.
    let Some(mut k) = Kernel::new() else {
        return;
    };
    let rst = Seg::new(CLIENT, 40000, SERVER, 80).seq(900).rst().frame();
    k.run.xdp(&rst, Some(ReplayMeta::new(T0)), 4_000).unwrap();
    let c = k.counters();
    let dropped = c["rst_dropped"];
    assert!(dropped > 0, "{c:?}");
    assert_eq!(c["rst_written"] + dropped, 4_000, "{c:?}");
    assert_eq!(c["rst_dropped_flows"], 1, "{c:?}");
    let tally = k.run.counters().unwrap().dropped_resets;
    assert_eq!(tally.len(), 1, "{tally:?}");
    let (d, n) = tally[0];
    assert_eq!(n, dropped);
    let (key, side) = FlowKey::canonical(
        FAMILY_IPV4,
        &addr_from_ipv4(CLIENT.parse::<std::net::Ipv4Addr>().unwrap().octets()),
        40000,
        &addr_from_ipv4(SERVER.parse::<std::net::Ipv4Addr>().unwrap().octets()),
        80,
    );
    assert_eq!(
        (d.key, d.side, d.hook),
        (key, side as u8, Hook::Replay as u8)
    );
    assert_eq!(d.syn_side, SYN_SIDE_UNKNOWN, "no SYN seen");
}

#[test]
fn a_flow_picked_up_mid_stream_is_marked() {
    let Some(mut k) = Kernel::new() else {
        return;
    };
    k.seg(
        &Seg::new(CLIENT, 40000, SERVER, 80)
            .seq(500)
            .ack(900)
            .payload(b"x"),
        T0,
    );
    k.seg(&Seg::new(SERVER, 80, CLIENT, 40000).seq(900).rst(), T0 + MS);
    let r = k.resets().remove(0);
    assert_eq!(r.flow.flags & FLOW_MIDSTREAM, FLOW_MIDSTREAM);
    assert_eq!(r.flow.handshake_rtt_ns(), None);
}

#[test]
fn data_ack_pairs_time_each_side_and_retransmissions_are_not_timed() {
    let Some(mut k) = Kernel::new() else {
        return;
    };
    // Picked up mid-stream: no handshake to time.
    k.seg(
        &Seg::new(CLIENT, 40000, SERVER, 80)
            .seq(500)
            .ack(900)
            .payload(b"aaaa"),
        T0,
    );
    k.seg(
        &Seg::new(SERVER, 80, CLIENT, 40000).seq(900).ack(504),
        T0 + 3 * MS,
    ); // server: 3 ms
    k.seg(
        &Seg::new(SERVER, 80, CLIENT, 40000)
            .seq(900)
            .ack(504)
            .payload(b"bb"),
        T0 + 4 * MS,
    );
    k.seg(
        &Seg::new(CLIENT, 40000, SERVER, 80).seq(504).ack(902),
        T0 + 6 * MS,
    ); // client: 2 ms
       // A segment sent, retransmitted, then acknowledged: ambiguous, not timed (Karn).
    k.seg(
        &Seg::new(CLIENT, 40000, SERVER, 80)
            .seq(504)
            .ack(902)
            .payload(b"cc"),
        T0 + 10 * MS,
    );
    k.seg(
        &Seg::new(CLIENT, 40000, SERVER, 80)
            .seq(504)
            .ack(902)
            .payload(b"cc"),
        T0 + 300 * MS,
    );
    k.seg(
        &Seg::new(SERVER, 80, CLIENT, 40000).seq(902).ack(506),
        T0 + 301 * MS,
    );
    k.seg(
        &Seg::new(CLIENT, 40000, SERVER, 80).seq(506).ack(902).rst(),
        T0 + 400 * MS,
    );
    let r = k.resets().remove(0);
    assert_eq!(r.flow.handshake_rtt_ns(), None);
    assert_eq!(
        r.flow.side(Side::Hi).leg_min_ns as u64,
        3 * MS,
        "server: the round trip of its ACK"
    );
    assert_eq!(r.flow.side(Side::Lo).leg_min_ns as u64, 2 * MS, "client");
}

#[test]
fn tc_programs_report_their_hook_and_direction() {
    let Some(mut k) = Kernel::new() else {
        return;
    };
    let rst = Seg::new(CLIENT, 1, SERVER, 2).rst().frame();
    let (ret, _) = k.run.tc(Hook::TcIngress, &rst, 1).unwrap();
    assert_eq!(ret as i32, -1, "TC_ACT_UNSPEC: let the packet continue");
    k.run.tc(Hook::TcEgress, &rst, 1).unwrap();
    let resets = k.resets();
    assert_eq!(resets.len(), 2);
    assert_eq!(
        (resets[0].seen.hook, resets[0].seen.direction),
        (Hook::TcIngress, Direction::Ingress)
    );
    assert_eq!(
        (resets[1].seen.hook, resets[1].seen.direction),
        (Hook::TcEgress, Direction::Egress)
    );
    // A live (non-replay) run: no capture timestamp flag, kernel clock time.
    k.run.xdp(&rst, None, 1).unwrap();
    let r = k.resets().remove(0);
    assert_eq!(r.seen.hook, Hook::Xdp);
    assert!(
        r.seen.ts_ns > 0 && r.seen.ts_ns < T0,
        "monotonic clock, not a capture timestamp"
    );
}

#[test]
fn verifier_cost_stays_bounded() {
    let Some(mut k) = Kernel::new() else {
        return;
    };
    // ProgRun loads the live XDP and the TC programs on first use.
    let frame = Seg::new(CLIENT, 1, SERVER, 2).frame();
    k.run.xdp(&frame, None, 1).unwrap();
    k.run.tc(Hook::TcIngress, &frame, 1).unwrap();
    k.run.tc(Hook::TcEgress, &frame, 1).unwrap();
    let cost = rst_tracer::attach::verifier_cost(k.run.ebpf()).unwrap();
    assert_eq!(cost.len(), 4, "{cost:?}");
    for (name, insns) in cost {
        // The kernel's hard limit is 1,000,000; a parser change that multiplies verifier states
        // shows up here long before it reaches that.
        assert!(
            insns > 0 && insns < 400_000,
            "{name}: {insns} instructions verified"
        );
    }
}
