//! The lab's forger: a sniffer and a raw socket in the router namespace, which learns where a
//! flow's streams are and injects resets with the fields an incident calls for.

use std::{
    mem::MaybeUninit,
    net::{Ipv4Addr, SocketAddrV4},
    time::{Duration, Instant},
};

use etherparse::{
    IpHeaders, IpNumber, Ipv4Header, NetSlice, PacketBuilder, SlicedPacket, TcpHeader,
    TransportSlice,
};
use socket2::{Domain, Protocol, Socket, Type};

use crate::lab::in_ns;

/// A segment the sniffer saw.
#[derive(Clone, Copy, Debug)]
pub struct Seen {
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Payload length.
    pub len: u32,
    /// IPv4 identification.
    pub ip_id: u16,
}

impl Seen {
    /// The sequence number after this segment.
    pub fn next_seq(&self) -> u32 {
        self.seq.wrapping_add(self.len)
    }
}

/// Sniffs one interface of a namespace.
pub struct Sniffer {
    socket: Socket,
}

impl Sniffer {
    /// Opens a packet socket on `iface` in namespace `ns`.
    pub fn open(ns: &str, iface: &str) -> Sniffer {
        let socket = in_ns(ns, || {
            let proto = Protocol::from((libc::ETH_P_ALL as u16).to_be() as i32);
            let s = Socket::new(Domain::PACKET, Type::RAW, Some(proto)).unwrap();
            s.bind_device(Some(iface.as_bytes())).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            s
        });
        Sniffer { socket }
    }

    /// Waits (at most 5 s) for a TCP segment to port `dport` with payload, and returns it.
    pub fn data_to(&self, dport: u16) -> Seen {
        self.wait(|s| s.dport == dport && s.len > 0)
            .unwrap_or_else(|| panic!("the router saw no data segment to port {dport}"))
    }

    /// Waits (at most 5 s) for a segment matching `pred`.
    pub fn wait(&self, pred: impl Fn(&Seen) -> bool) -> Option<Seen> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        while Instant::now() < deadline {
            let Ok(n) = self.socket.recv(&mut buf) else {
                continue;
            };
            // SAFETY: recv initialised the first n bytes.
            let frame: Vec<u8> = buf[..n]
                .iter()
                .map(|b| unsafe { b.assume_init() })
                .collect();
            let Ok(p) = SlicedPacket::from_ethernet(&frame) else {
                continue;
            };
            if let Some(TransportSlice::Tcp(t)) = p.transport {
                let seen = Seen {
                    sport: t.source_port(),
                    dport: t.destination_port(),
                    seq: t.sequence_number(),
                    ack: t.acknowledgment_number(),
                    len: t.payload().len() as u32,
                    ip_id: match &p.net {
                        Some(NetSlice::Ipv4(v4)) => v4.header().identification(),
                        _ => 0,
                    },
                };
                if pred(&seen) {
                    return Some(seen);
                }
            }
        }
        None
    }
}

/// One reset to inject.
#[derive(Clone, Copy, Debug)]
pub struct Rst {
    /// Claimed sender.
    pub src: Ipv4Addr,
    /// Claimed sender's port.
    pub sport: u16,
    /// Receiver.
    pub dst: Ipv4Addr,
    /// Receiver's port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number (RST|ACK when set).
    pub ack: Option<u32>,
    /// TTL as it leaves the router (nothing decrements it on the way to a neighbour).
    pub ttl: u8,
    /// IP ID.
    pub ip_id: u16,
    /// Window.
    pub window: u16,
}

/// Sends `rst` from namespace `ns` through a raw IP socket.
pub fn inject(ns: &str, rst: &Rst) {
    send(ns, rst, true, &[]);
}

/// Sends a data segment (PSH|ACK, the acknowledgement `like.ack` or 0) carrying `payload`,
/// addressed, numbered and marked as `like` is, from namespace `ns`: what a device that answers
/// in an endpoint's place sends before its reset.
pub fn inject_data(ns: &str, like: &Rst, payload: &[u8]) {
    send(ns, like, false, payload);
}

/// Builds and sends one segment: a reset, or a data segment with `payload`.
fn send(ns: &str, rst: &Rst, reset: bool, payload: &[u8]) {
    let mut ip = Ipv4Header::new(
        0,
        rst.ttl,
        IpNumber::TCP,
        rst.src.octets(),
        rst.dst.octets(),
    )
    .unwrap();
    ip.identification = rst.ip_id;
    let mut tcp = TcpHeader::new(rst.sport, rst.dport, rst.seq, rst.window);
    tcp.rst = reset;
    tcp.psh = !payload.is_empty();
    if let Some(a) = rst.ack {
        tcp.ack = true;
        tcp.acknowledgment_number = a;
    }
    let mut packet = Vec::new();
    PacketBuilder::ip(IpHeaders::Ipv4(ip, Default::default()))
        .tcp_header(tcp)
        .write(&mut packet, payload)
        .unwrap();
    let dst = rst.dst;
    in_ns(ns, || {
        let raw = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(libc::IPPROTO_RAW)),
        )
        .unwrap();
        raw.send_to(&packet, &SocketAddrV4::new(dst, 0).into())
            .unwrap();
    });
}
