//! Packet parsing: Ethernet, up to two VLAN tags, PPPoE sessions, IPv4 (options, fragments), IPv6
//! (extension headers), TCP (options).
//!
//! Design decisions:
//! - One cursor over packet memory (`Cursor { pos, end }`) and one bounds-checked accessor,
//!   [`Cursor::ptr_at`]; every read goes through it, so the verifier sees a check before each load.
//! - Headers are advanced by the lengths the packet declares (`ihl * 4`, `doff * 4`, extension
//!   header lengths) and those lengths are validated first: a packet is either understood
//!   completely or rejected with the [`Counter`] that says why. It is never half-read.
//! - The payload may be shorter than the IP length says (a capture's snap length, a non-linear
//!   skb); headers may not.
//! - TCP options: the full option walk runs only on SYN and RST segments (window scale, and the
//!   RST's option summary). Other segments take a fast path that recognises the timestamp option in
//!   the layout Linux and the BSDs send (`NOP NOP TS`), which is all the flow state needs.

use core::{
    mem::size_of,
    ptr::{read_volatile, write_volatile},
};

use aya_ebpf::{cty::c_void, helpers::generated::bpf_probe_read_kernel};
use rst_tracer_common::{
    counter::Counter,
    event::{
        PacketInfo, IP_DF, IP_MF, IP_V6, OPT_MALFORMED, OPT_MPTCP, OPT_MSS, OPT_OTHER, OPT_SACK,
        OPT_SACK_OK, OPT_TIMESTAMPS, OPT_WSCALE, TCP_RST, TCP_SYN,
    },
    flow::{AddrWords, FAMILY_IPV4, FAMILY_IPV6},
};

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_P_PPPOE_SESSION: u16 = 0x8864;
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;
/// PPPoE session header (6 bytes) and the PPP protocol field (2 bytes).
const PPPOE_HLEN: usize = 8;
const IPPROTO_TCP: u8 = 6;
const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const IPV6_HLEN: usize = 40;
const TCP_HLEN: usize = 20;
/// Extension headers followed before giving up (hop-by-hop, routing, fragment, dest. options, AH).
const IPV6_MAX_EXT: usize = 4;
/// Bound on a header's offset from the frame start (a mask, so the verifier sees a range).
const MAX_HEADER_OFFSET: u32 = 0x1fff;
/// Longest TCP option area (60 - 20 bytes).
const TCP_MAX_OPT: usize = 40;

/// A read window over packet memory: `pos` is the next unread byte, `end` one past the last.
#[derive(Clone, Copy)]
pub struct Cursor {
    /// Address of the next unread byte.
    pub pos: usize,
    /// Address one past the last byte of the packet.
    pub end: usize,
}

impl Cursor {
    /// Pointer to a `T` at `offset` from the cursor, if the packet holds all of it.
    #[inline(always)]
    pub fn ptr_at<T>(&self, offset: usize) -> Option<*const T> {
        let start = self.pos + offset;
        if start + size_of::<T>() > self.end {
            None
        } else {
            Some(start as *const T)
        }
    }

    #[inline(always)]
    fn be16_at(&self, offset: usize) -> Option<u16> {
        // SAFETY: `ptr_at` checked that these bytes lie within the packet.
        // SAFETY: `ptr_at` checked that these bytes lie within the packet.
        self.ptr_at::<[u8; 2]>(offset)
            .map(|p| u16::from_be_bytes(unsafe { *p }))
    }
}

/// A fully parsed TCP segment.
///
/// It lives in a per-CPU map value, not on the stack: the verifier does not track map memory, so
/// every parse path (VLAN tags, IPv4 options, IPv6 extension headers) reaches the flow update in
/// the same verifier state instead of multiplying its work. For the same reason it holds no
/// packet pointers, only offsets from the start of the frame.
#[repr(C)]
pub struct Segment {
    /// `FAMILY_IPV4` or `FAMILY_IPV6`.
    pub family: u16,
    /// Source address.
    pub src: AddrWords,
    /// Destination address.
    pub dst: AddrWords,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// The segment's headers.
    pub info: PacketInfo,
    /// Offset of the TCP payload from the start of the frame.
    pub payload_offset: u32,
    /// Payload bytes present in the frame (may be fewer than `info.payload_len`).
    pub payload_available: u32,
    /// Position of the next IPv6 extension header (offset from the frame start) while walking.
    pub ext_off: u32,
    /// Scratch for the TCP option walk.
    pub options: OptionSummary,
}

/// Parses an Ethernet frame down to TCP, filling `seg` (map memory, see [`Segment`]). `Err`
/// carries the counter that says why the frame is not a TCP segment this program can judge
/// (including the benign reasons: other ethertype, non-TCP, non-first fragment).
#[inline(always)]
pub fn parse_frame(frame: Cursor, seg: &mut Segment) -> Result<(), Counter> {
    clear(&mut seg.info);
    let mut cur = frame;
    let mut ethertype = cur.be16_at(12).ok_or(Counter::ErrEthTruncated)?;
    cur.pos += ETH_HLEN;
    // Up to two tags (802.1ad outer, 802.1Q inner); a third is refused rather than guessed at.
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        ethertype = cur.be16_at(2).ok_or(Counter::ErrVlanTruncated)?;
        cur.pos += VLAN_HLEN;
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            ethertype = cur.be16_at(2).ok_or(Counter::ErrVlanTruncated)?;
            cur.pos += VLAN_HLEN;
            if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
                return Err(Counter::ErrVlanTooDeep);
            }
        }
    }
    // PPPoE session (ISP access networks): the PPP protocol field says what follows.
    if ethertype == ETH_P_PPPOE_SESSION {
        let ppp = cur.be16_at(6).ok_or(Counter::ErrPppoeTruncated)?;
        cur.pos += PPPOE_HLEN;
        ethertype = match ppp {
            PPP_IPV4 => ETH_P_IPV4,
            PPP_IPV6 => ETH_P_IPV6,
            _ => return Err(Counter::OtherEthertype),
        };
    }
    let ip_payload_len = match ethertype {
        ETH_P_IPV4 => parse_ipv4(&mut cur, seg)?,
        ETH_P_IPV6 => parse_ipv6(frame, &mut cur, seg)?,
        _ => return Err(Counter::OtherEthertype),
    };
    parse_tcp(&mut cur, ip_payload_len, seg)?;
    seg.payload_offset = (cur.pos - frame.pos) as u32;
    seg.payload_available = cur.end.saturating_sub(cur.pos) as u32;
    Ok(())
}

/// Zeroes a `PacketInfo` with four word stores. Volatile, or LLVM turns them back into a call
/// to a byte-wise `memset`.
#[inline(always)]
fn clear(info: &mut PacketInfo) {
    let words = info as *mut PacketInfo as *mut u64;
    for i in 0..size_of::<PacketInfo>() / 8 {
        // SAFETY: `i` counts the 8-byte words of `info` (8-byte aligned): each store is inside it.
        unsafe { write_volatile(words.add(i), 0) };
    }
}

/// Four header bytes at `at` as an address word (see `AddrWords`).
#[inline(always)]
fn word<const N: usize>(hdr: &[u8; N], at: usize) -> u32 {
    u32::from_ne_bytes([hdr[at], hdr[at + 1], hdr[at + 2], hdr[at + 3]])
}

/// IPv4: returns the IP payload length (total length minus header length).
#[inline(always)]
fn parse_ipv4(cur: &mut Cursor, seg: &mut Segment) -> Result<usize, Counter> {
    let hdr = cur.ptr_at::<[u8; 20]>(0).ok_or(Counter::ErrIpv4Truncated)?;
    // SAFETY: `ptr_at` checked that these bytes lie within the packet.
    let hdr = unsafe { &*hdr };
    if hdr[0] >> 4 != 4 {
        return Err(Counter::ErrIpv4BadHeader);
    }
    let ihl = ((hdr[0] & 0x0f) as usize) * 4;
    if ihl < 20 {
        return Err(Counter::ErrIpv4BadHeader);
    }
    // The options must be there too, even though only the fixed part is read.
    cur.ptr_at::<u8>(ihl - 1).ok_or(Counter::ErrIpv4Truncated)?;
    let total_len = u16::from_be_bytes([hdr[2], hdr[3]]) as usize;
    if total_len < ihl {
        return Err(Counter::ErrIpBadLength);
    }
    let frag = u16::from_be_bytes([hdr[6], hdr[7]]);
    if frag & 0x1fff != 0 {
        return Err(Counter::Ipv4Fragment);
    }
    if hdr[9] != IPPROTO_TCP {
        return Err(Counter::NonTcp);
    }
    seg.family = FAMILY_IPV4;
    seg.src = [word(hdr, 12), 0, 0, 0];
    seg.dst = [word(hdr, 16), 0, 0, 0];
    seg.info.ip_id = u16::from_be_bytes([hdr[4], hdr[5]]);
    seg.info.ttl = hdr[8];
    let mut ip_flags = 0;
    if frag & 0x4000 != 0 {
        ip_flags |= IP_DF;
    }
    if frag & 0x2000 != 0 {
        ip_flags |= IP_MF;
    }
    seg.info.ip_flags = ip_flags;
    cur.pos += ihl;
    Ok(total_len - ihl)
}

/// IPv6 with extension headers: returns the upper-layer payload length.
///
/// The walk position is kept in `seg.ext_off` (map memory, read and written volatile) so that each
/// extension-header kind does not become a separate verifier state for the rest of the program.
#[inline(always)]
fn parse_ipv6(frame: Cursor, cur: &mut Cursor, seg: &mut Segment) -> Result<usize, Counter> {
    let hdr = cur
        .ptr_at::<[u8; IPV6_HLEN]>(0)
        .ok_or(Counter::ErrIpv6Truncated)?;
    // SAFETY: `ptr_at` checked that these bytes lie within the packet.
    let hdr = unsafe { &*hdr };
    if hdr[0] >> 4 != 6 {
        return Err(Counter::ErrIpv6Truncated);
    }
    let mut remaining = u16::from_be_bytes([hdr[4], hdr[5]]) as usize;
    let mut next = hdr[6];
    seg.family = FAMILY_IPV6;
    seg.info.ttl = hdr[7];
    seg.info.ip_flags = IP_V6;
    seg.src = [word(hdr, 8), word(hdr, 12), word(hdr, 16), word(hdr, 20)];
    seg.dst = [word(hdr, 24), word(hdr, 28), word(hdr, 32), word(hdr, 36)];
    cur.pos += IPV6_HLEN;
    if next == IPPROTO_TCP {
        return Ok(remaining);
    }
    // SAFETY: a reference to a field: valid and aligned (volatile, so the verifier sees the
    // bound applied to every read).
    unsafe { write_volatile(&mut seg.ext_off, (cur.pos - frame.pos) as u32) };
    let mut i = 0;
    while i < IPV6_MAX_EXT {
        i += 1;
        // SAFETY: a reference to a field: valid and aligned (volatile, so the verifier sees the
        // bound applied to every read).
        let off = (unsafe { read_volatile(&seg.ext_off) } & MAX_HEADER_OFFSET) as usize;
        let ext = Cursor {
            pos: frame.pos + off,
            end: frame.end,
        };
        let b = ext
            .ptr_at::<[u8; 8]>(0)
            .ok_or(Counter::ErrIpv6ExtTruncated)?;
        // SAFETY: `ptr_at` checked that these bytes lie within the packet.
        let b = unsafe { &*b };
        let len = match next {
            // Hop-by-hop, routing, destination options: (len + 1) * 8 bytes.
            0 | 43 | 60 => (b[1] as usize + 1) * 8,
            // Authentication header: (len + 2) * 4 bytes.
            51 => (b[1] as usize + 2) * 4,
            // Fragment header: 8 bytes; only the first fragment carries the TCP header.
            44 => {
                let frag = u16::from_be_bytes([b[2], b[3]]);
                if frag & 0xfff8 != 0 {
                    return Err(Counter::Ipv6Fragment);
                }
                if frag & 1 != 0 {
                    seg.info.ip_flags |= IP_MF;
                }
                8
            }
            _ => return Err(Counter::NonTcp),
        };
        if len > remaining {
            return Err(Counter::ErrIpBadLength);
        }
        remaining -= len;
        next = b[0];
        // SAFETY: a reference to a field: valid and aligned (volatile, so the verifier sees the
        // bound applied to every read).
        unsafe { write_volatile(&mut seg.ext_off, (off + len) as u32) };
        if next == IPPROTO_TCP {
            // SAFETY: a reference to a field: valid and aligned (volatile, so the verifier sees the
            // bound applied to every read).
            let off = (unsafe { read_volatile(&seg.ext_off) } & MAX_HEADER_OFFSET) as usize;
            cur.pos = frame.pos + off;
            return Ok(remaining);
        }
    }
    Err(Counter::ErrIpv6TooManyExt)
}

/// TCP header and options; leaves the cursor at the payload.
#[inline(always)]
fn parse_tcp(cur: &mut Cursor, ip_payload_len: usize, seg: &mut Segment) -> Result<(), Counter> {
    let hdr = cur
        .ptr_at::<[u8; TCP_HLEN]>(0)
        .ok_or(Counter::ErrTcpTruncated)?;
    // SAFETY: `ptr_at` checked that these bytes lie within the packet.
    let hdr = unsafe { &*hdr };
    let doff = (hdr[12] >> 4) as usize * 4;
    if doff < TCP_HLEN || doff > ip_payload_len {
        return Err(Counter::ErrTcpBadOffset);
    }
    cur.ptr_at::<u8>(doff - 1).ok_or(Counter::ErrTcpTruncated)?;
    seg.sport = u16::from_be_bytes([hdr[0], hdr[1]]);
    seg.dport = u16::from_be_bytes([hdr[2], hdr[3]]);
    let info = &mut seg.info;
    info.seq = u32::from_be_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
    info.ack = u32::from_be_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]);
    info.flags = u16::from_be_bytes([hdr[12], hdr[13]]) & 0x0fff;
    info.window = u16::from_be_bytes([hdr[14], hdr[15]]);
    info.data_offset = (doff / 4) as u8;
    info.payload_len = (ip_payload_len - doff) as u16;
    if doff > TCP_HLEN {
        let opts = Cursor {
            pos: cur.pos + TCP_HLEN,
            end: cur.end,
        };
        if info.flags & (TCP_SYN | TCP_RST) != 0 {
            let scratch = &mut seg.options;
            walk_options(opts, doff - TCP_HLEN, scratch);
            let info = &mut seg.info;
            info.tcp_options = scratch.bits;
            info.wscale = scratch.wscale;
            info.ts_val = scratch.ts_val;
            info.ts_ecr = scratch.ts_ecr;
        } else {
            timestamp_fast_path(opts, doff - TCP_HLEN, info);
        }
    }
    cur.pos += doff;
    Ok(())
}

/// Recognises `NOP NOP TS(10)` at the start of the options.
#[inline(always)]
fn timestamp_fast_path(opts: Cursor, len: usize, info: &mut PacketInfo) {
    if len < 12 {
        return;
    }
    // One bounds check for all 12 bytes: separate checks get merged by LLVM in ways the
    // verifier cannot follow.
    let Some(p) = opts.ptr_at::<[u8; 12]>(0) else {
        return;
    };
    // SAFETY: `ptr_at` checked that these bytes lie within the packet.
    let b = unsafe { &*p };
    if b[..4] == [1, 1, 8, 10] {
        info.ts_val = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        info.ts_ecr = u32::from_be_bytes([b[8], b[9], b[10], b[11]]);
        info.tcp_options |= OPT_TIMESTAMPS;
    }
}

/// Scratch for the full option walk: a copy of the option bytes and what the walk found. It lives
/// in a per-CPU map value, not on the stack: the verifier does not track map memory, so the
/// branches of the copy and of the walk join again instead of multiplying into separate states.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct OptionSummary {
    /// The option bytes (up to 40; the buffer is 64 so indexes can be masked with `& 63`).
    pub raw: [u8; 64],
    /// `OPT_*` bits.
    pub bits: u8,
    /// Window-scale shift.
    pub wscale: u8,
    /// Walk position.
    pub off: u8,
    /// Option bytes copied into `raw`.
    pub len: u8,
    /// TSval.
    pub ts_val: u32,
    /// TSecr.
    pub ts_ecr: u32,
}

/// Copies the `len` option bytes at `opts` into `out.raw`, then walks them, noting what is
/// present; stops at a malformed length.
#[inline(always)]
fn walk_options(opts: Cursor, len: usize, out: &mut OptionSummary) {
    // One helper call copies the option bytes into map memory: a byte loop over packet memory
    // splits the verifier's states by how much of the packet each iteration proved present.
    let available = opts.end.saturating_sub(opts.pos);
    let mut len = if len < available { len } else { available };
    if len > TCP_MAX_OPT {
        len = TCP_MAX_OPT;
    }
    // SAFETY: the helper copies `len` <= TCP_MAX_OPT bytes into `out.raw`, which holds
    // TCP_MAX_OPT, from the program's own context; it checks the packet's bounds.
    let rc = unsafe {
        bpf_probe_read_kernel(
            out.raw.as_mut_ptr() as *mut c_void,
            (len & 63) as u32,
            opts.pos as *const c_void,
        )
    };
    if rc != 0 {
        out.bits = OPT_MALFORMED;
        return;
    }
    out.bits = 0;
    out.wscale = 0;
    out.ts_val = 0;
    out.ts_ecr = 0;
    // The walk position and length live in the map value too: were they locals, the verifier
    // would track every combination of offsets separately.
    out.off = 0;
    out.len = len as u8;
    let mut n = 0;
    while n < TCP_MAX_OPT {
        n += 1;
        // Volatile: otherwise LLVM keeps them in registers, which the verifier tracks.
        // SAFETY: a reference to a field: valid and aligned (volatile, so the verifier sees the
        // bound applied to every read).
        let off = (unsafe { read_volatile(&out.off) } & 63) as usize;
        // SAFETY: a reference to a field: valid and aligned (volatile, so the verifier sees the
        // bound applied to every read).
        let len = (unsafe { read_volatile(&out.len) } & 63) as usize;
        if off >= len || off >= TCP_MAX_OPT - 1 {
            return;
        }
        let kind = out.raw[off];
        if kind == 0 {
            return;
        }
        if kind == 1 {
            // SAFETY: a reference to a field: valid and aligned (volatile, so the verifier sees the
            // bound applied to every read).
            unsafe { write_volatile(&mut out.off, (off + 1) as u8) };
            continue;
        }
        let olen = out.raw[(off + 1) & 63] as usize;
        if olen < 2 || off + olen > len {
            out.bits |= OPT_MALFORMED;
            return;
        }
        match kind {
            2 => out.bits |= OPT_MSS,
            3 => {
                out.bits |= OPT_WSCALE;
                out.wscale = out.raw[(off + 2) & 63];
            }
            4 => out.bits |= OPT_SACK_OK,
            5 => out.bits |= OPT_SACK,
            8 if olen == 10 => {
                out.bits |= OPT_TIMESTAMPS;
                let raw = &out.raw;
                let at = |k: usize| raw[(off + k) & 63];
                let (val, ecr) = (
                    u32::from_be_bytes([at(2), at(3), at(4), at(5)]),
                    u32::from_be_bytes([at(6), at(7), at(8), at(9)]),
                );
                out.ts_val = val;
                out.ts_ecr = ecr;
            }
            30 => out.bits |= OPT_MPTCP,
            _ => out.bits |= OPT_OTHER,
        }
        // SAFETY: a reference to a field: valid and aligned (volatile, so the verifier sees the
        // bound applied to every read).
        unsafe { write_volatile(&mut out.off, (off + olen) as u8) };
    }
}
