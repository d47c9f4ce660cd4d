//! Crafted frames for the kernel tests: etherparse builds the IP and TCP layers; Ethernet and
//! VLAN headers are prepended here, so every header variant the parser handles can be made.

use std::net::IpAddr;

use etherparse::{
    IpHeaders, IpNumber, Ipv4Header, Ipv6Extensions, Ipv6Header, PacketBuilder, TcpHeader,
    TcpOptionElement,
};

/// One TCP segment to build.
#[derive(Clone, Debug)]
pub struct Seg {
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    pub seq: u32,
    pub ack: Option<u32>,
    pub syn: bool,
    pub rst: bool,
    pub window: u16,
    pub ttl: u8,
    pub ip_id: u16,
    pub options: Vec<TcpOptionElement>,
    pub payload: Vec<u8>,
    pub ipv4_options: Vec<u8>,
    pub ipv6_ext: Option<Ipv6Extensions>,
    pub vlans: Vec<u16>,
}

impl Seg {
    /// A segment from `src:sport` to `dst:dport`, TTL 64, nothing set.
    pub fn new(src: &str, sport: u16, dst: &str, dport: u16) -> Seg {
        Seg {
            src: src.parse().unwrap(),
            sport,
            dst: dst.parse().unwrap(),
            dport,
            seq: 1000,
            ack: None,
            syn: false,
            rst: false,
            window: 64240,
            ttl: 64,
            ip_id: 1,
            options: Vec::new(),
            payload: Vec::new(),
            ipv4_options: Vec::new(),
            ipv6_ext: None,
            vlans: Vec::new(),
        }
    }

    pub fn seq(mut self, seq: u32) -> Seg {
        self.seq = seq;
        self
    }
    pub fn ack(mut self, ack: u32) -> Seg {
        self.ack = Some(ack);
        self
    }
    pub fn syn(mut self) -> Seg {
        self.syn = true;
        self
    }
    pub fn rst(mut self) -> Seg {
        self.rst = true;
        self.window = 0;
        self
    }
    pub fn ttl(mut self, ttl: u8) -> Seg {
        self.ttl = ttl;
        self
    }
    pub fn ip_id(mut self, id: u16) -> Seg {
        self.ip_id = id;
        self
    }
    pub fn window(mut self, w: u16) -> Seg {
        self.window = w;
        self
    }
    pub fn payload(mut self, p: &[u8]) -> Seg {
        self.payload = p.to_vec();
        self
    }
    pub fn options(mut self, o: &[TcpOptionElement]) -> Seg {
        self.options = o.to_vec();
        self
    }
    pub fn ipv4_options(mut self, o: &[u8]) -> Seg {
        self.ipv4_options = o.to_vec();
        self
    }
    pub fn ipv6_ext(mut self, e: Ipv6Extensions) -> Seg {
        self.ipv6_ext = Some(e);
        self
    }
    pub fn vlans(mut self, v: &[u16]) -> Seg {
        self.vlans = v.to_vec();
        self
    }

    /// The IP packet (no link layer).
    pub fn ip_packet(&self) -> Vec<u8> {
        let ip = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut h =
                    Ipv4Header::new(0, self.ttl, IpNumber::TCP, s.octets(), d.octets()).unwrap();
                h.identification = self.ip_id;
                h.dont_fragment = true;
                h.options = self.ipv4_options.as_slice().try_into().unwrap();
                IpHeaders::Ipv4(h, Default::default())
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let h = Ipv6Header {
                    traffic_class: 0,
                    flow_label: Default::default(),
                    payload_length: 0,
                    next_header: IpNumber::TCP,
                    hop_limit: self.ttl,
                    source: s.octets(),
                    destination: d.octets(),
                };
                IpHeaders::Ipv6(h, self.ipv6_ext.clone().unwrap_or_default())
            }
            _ => panic!("mixed address families"),
        };
        let mut tcp = TcpHeader::new(self.sport, self.dport, self.seq, self.window);
        tcp.syn = self.syn;
        tcp.rst = self.rst;
        if let Some(a) = self.ack {
            tcp.ack = true;
            tcp.acknowledgment_number = a;
        }
        tcp.set_options(&self.options).unwrap();
        let builder = PacketBuilder::ip(ip).tcp_header(tcp);
        let mut out = Vec::new();
        builder.write(&mut out, &self.payload).unwrap();
        out
    }

    /// The Ethernet frame, with this segment's VLAN tags (outer first).
    pub fn frame(&self) -> Vec<u8> {
        let ethertype: u16 = if self.src.is_ipv4() { 0x0800 } else { 0x86dd };
        ethernet(&self.vlans, ethertype, &self.ip_packet())
    }
}

/// An Ethernet frame around `payload`: the first tag is 802.1ad when there are two, else 802.1Q.
pub fn ethernet(vlans: &[u16], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
    for (i, id) in vlans.iter().enumerate() {
        let tpid: u16 = if vlans.len() > 1 && i == 0 {
            0x88a8
        } else {
            0x8100
        };
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&id.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}
