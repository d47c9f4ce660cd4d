//! Link layers of capture files, translated to the Ethernet frames the kernel program parses.
//!
//! Ethernet frames (802.1Q tags included) pass through untouched. Linux cooked captures (SLL,
//! SLL2), raw IP, BSD loopback/null and FDDI with LLC/SNAP get a synthetic Ethernet header
//! carrying the same ethertype. Anything else is refused with its link type, so the caller can
//! count it.

/// Link types, as numbered in pcap and pcapng.
pub mod linktype {
    /// BSD loopback: 4-byte address family in the capturing host's byte order.
    pub const NULL: i32 = 0;
    /// Ethernet.
    pub const ETHERNET: i32 = 1;
    /// FDDI.
    pub const FDDI: i32 = 10;
    /// Raw IP as some BSDs number it.
    pub const RAW_BSD_12: i32 = 12;
    /// Raw IP as some BSDs number it.
    pub const RAW_BSD_14: i32 = 14;
    /// Raw IP (LINKTYPE_RAW).
    pub const RAW: i32 = 101;
    /// OpenBSD loopback: 4-byte address family in network byte order.
    pub const LOOP: i32 = 108;
    /// Linux cooked capture.
    pub const LINUX_SLL: i32 = 113;
    /// Raw IPv4.
    pub const IPV4: i32 = 228;
    /// Raw IPv6.
    pub const IPV6: i32 = 229;
    /// Linux cooked capture v2.
    pub const LINUX_SLL2: i32 = 276;
}

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;

/// Why a frame could not be given to the kernel program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkError {
    /// A link type this translation does not know.
    Unsupported(i32),
    /// The frame is too short for its link-layer header, or for an Ethernet header.
    Short,
    /// The link-layer header names a protocol that is not IP (e.g. FDDI without SNAP).
    NotIp,
}

/// A readable name for a link type.
pub fn name(linktype: i32) -> String {
    match linktype {
        linktype::NULL => "null".into(),
        linktype::ETHERNET => "ethernet".into(),
        linktype::FDDI => "fddi".into(),
        linktype::RAW | linktype::RAW_BSD_12 | linktype::RAW_BSD_14 => "raw".into(),
        linktype::LOOP => "loop".into(),
        linktype::LINUX_SLL => "linux-sll".into(),
        linktype::IPV4 => "ipv4".into(),
        linktype::IPV6 => "ipv6".into(),
        linktype::LINUX_SLL2 => "linux-sll2".into(),
        other => format!("linktype-{other}"),
    }
}

/// Writes the Ethernet frame for `data` of `linktype` into `out` (cleared first).
///
/// # Errors
/// An unknown link type, a frame too short for its header, or a non-IP payload where the
/// translation needs to know the protocol.
pub fn to_ethernet(linktype: i32, data: &[u8], out: &mut Vec<u8>) -> Result<(), LinkError> {
    out.clear();
    match linktype {
        linktype::ETHERNET => out.extend_from_slice(data),
        linktype::LINUX_SLL => {
            let proto = be16(data, 14).ok_or(LinkError::Short)?;
            synthetic(out, proto, &data[16..]);
        }
        linktype::LINUX_SLL2 => {
            let proto = be16(data, 0).ok_or(LinkError::Short)?;
            let rest = data.get(20..).ok_or(LinkError::Short)?;
            synthetic(out, proto, rest);
        }
        linktype::RAW
        | linktype::RAW_BSD_12
        | linktype::RAW_BSD_14
        | linktype::IPV4
        | linktype::IPV6 => {
            let proto = match data.first().map(|b| b >> 4) {
                Some(4) => ETH_P_IPV4,
                Some(6) => ETH_P_IPV6,
                Some(_) => return Err(LinkError::NotIp),
                None => return Err(LinkError::Short),
            };
            synthetic(out, proto, data);
        }
        linktype::NULL | linktype::LOOP => {
            let family: [u8; 4] = data.get(..4).ok_or(LinkError::Short)?.try_into().unwrap();
            // NULL is in the capturing host's byte order, LOOP in network order: try both.
            let proto = [u32::from_le_bytes(family), u32::from_be_bytes(family)]
                .into_iter()
                .find_map(|af| match af {
                    2 => Some(ETH_P_IPV4),
                    // AF_INET6 on BSD, FreeBSD and Darwin.
                    24 | 28 | 30 => Some(ETH_P_IPV6),
                    _ => None,
                })
                .ok_or(LinkError::NotIp)?;
            synthetic(out, proto, &data[4..]);
        }
        linktype::FDDI => {
            // Frame control, two 6-byte addresses, then LLC: SNAP is AA AA 03 + OUI + ethertype.
            let llc = data.get(13..21).ok_or(LinkError::Short)?;
            if llc[..3] != [0xaa, 0xaa, 0x03] {
                return Err(LinkError::NotIp);
            }
            let proto = u16::from_be_bytes([llc[6], llc[7]]);
            synthetic(out, proto, &data[21..]);
        }
        other => return Err(LinkError::Unsupported(other)),
    }
    if out.len() < 14 {
        return Err(LinkError::Short);
    }
    Ok(())
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    data.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]))
}

/// An Ethernet header with locally administered addresses and `ethertype`, then `payload`.
fn synthetic(out: &mut Vec<u8>, ethertype: u16, payload: &[u8]) {
    out.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01]);
    out.extend_from_slice(&ethertype.to_be_bytes());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP4: [u8; 4] = [0x45, 0, 0, 20];
    const IP6: [u8; 4] = [0x60, 0, 0, 0];

    fn eth(linktype: i32, data: &[u8]) -> Result<Vec<u8>, LinkError> {
        let mut out = Vec::new();
        to_ethernet(linktype, data, &mut out).map(|()| out)
    }

    fn ethertype(frame: &[u8]) -> u16 {
        u16::from_be_bytes([frame[12], frame[13]])
    }

    #[test]
    fn ethernet_passes_through() {
        let frame: Vec<u8> = (0..60).collect();
        assert_eq!(eth(linktype::ETHERNET, &frame).unwrap(), frame);
        assert_eq!(eth(linktype::ETHERNET, &frame[..10]), Err(LinkError::Short));
    }

    #[test]
    fn cooked_captures_keep_their_protocol() {
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&0x86ddu16.to_be_bytes());
        sll.extend_from_slice(&IP6);
        let f = eth(linktype::LINUX_SLL, &sll).unwrap();
        assert_eq!((ethertype(&f), &f[14..]), (0x86dd, &IP6[..]));

        let mut sll2 = 0x0800u16.to_be_bytes().to_vec();
        sll2.extend_from_slice(&[0; 18]);
        sll2.extend_from_slice(&IP4);
        let f = eth(linktype::LINUX_SLL2, &sll2).unwrap();
        assert_eq!((ethertype(&f), &f[14..]), (0x0800, &IP4[..]));
        assert_eq!(eth(linktype::LINUX_SLL2, &[8, 0]), Err(LinkError::Short));
    }

    #[test]
    fn raw_ip_is_told_apart_by_version() {
        assert_eq!(ethertype(&eth(linktype::RAW, &IP4).unwrap()), 0x0800);
        assert_eq!(ethertype(&eth(linktype::IPV6, &IP6).unwrap()), 0x86dd);
        assert_eq!(eth(linktype::RAW, &[0x20, 0, 0, 0]), Err(LinkError::NotIp));
    }

    #[test]
    fn loopback_families_in_either_byte_order() {
        let mut null_le = 2u32.to_le_bytes().to_vec();
        null_le.extend_from_slice(&IP4);
        assert_eq!(ethertype(&eth(linktype::NULL, &null_le).unwrap()), 0x0800);
        let mut loop_be = 30u32.to_be_bytes().to_vec();
        loop_be.extend_from_slice(&IP6);
        assert_eq!(ethertype(&eth(linktype::LOOP, &loop_be).unwrap()), 0x86dd);
        assert_eq!(eth(linktype::NULL, &[7, 0, 0, 0, 1]), Err(LinkError::NotIp));
    }

    #[test]
    fn fddi_with_snap() {
        let mut f = vec![0x50];
        f.extend_from_slice(&[0; 12]);
        f.extend_from_slice(&[0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x00]);
        f.extend_from_slice(&IP4);
        let e = eth(linktype::FDDI, &f).unwrap();
        assert_eq!((ethertype(&e), &e[14..]), (0x0800, &IP4[..]));
        f[13] = 0x42;
        assert_eq!(eth(linktype::FDDI, &f), Err(LinkError::NotIp));
    }

    #[test]
    fn unknown_link_types_are_named() {
        assert_eq!(eth(147, &[0; 40]), Err(LinkError::Unsupported(147)));
        assert_eq!(name(147), "linktype-147");
        assert_eq!(name(linktype::LINUX_SLL2), "linux-sll2");
    }
}
