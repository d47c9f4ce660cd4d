//! Decoding ring-buffer records into typed events.
//!
//! A record is read in place in the ring (no copy; `bytes::Buf` reads the header), its header is
//! checked (version, kind, declared length against the record's real length) and only then is
//! the `#[repr(C)]` struct from `rst-tracer-common` read, unaligned, from the bytes. A record that fails a check is an
//! error with the numbers in it, never a guess.

use std::net::IpAddr;

use bytes::{Buf, Bytes};
use rst_tracer_common::{
    event::{
        Direction, EventHeader, EventKind, Hook, KernelNoteEvent, PacketInfo, RstEvent,
        SampleEvent, EVENT_VERSION, HDR_NEW_FLOW, HDR_TS_CAPTURE,
    },
    flow::{addr_to_bytes, FlowKey, FlowState, Side, SideState, FAMILY_IPV4},
};

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than an event header.
    #[error("record of {len} bytes is shorter than the {need}-byte event header")]
    ShortHeader {
        /// Record length.
        len: usize,
        /// Header length.
        need: usize,
    },
    /// A version this build does not read.
    #[error("event version {got}, this build reads version {EVENT_VERSION}: kernel object and loader are from different builds")]
    Version {
        /// Version found.
        got: u8,
    },
    /// A kind this build does not know.
    #[error("unknown event kind {0}")]
    Kind(u8),
    /// Declared or actual length does not match the kind.
    #[error("{kind:?} event: record is {len} bytes, header says {declared}, expected {expected}")]
    Length {
        /// Kind.
        kind: EventKind,
        /// Record length.
        len: usize,
        /// Length in the header.
        declared: u16,
        /// Size of the kind's struct.
        expected: usize,
    },
    /// Hook byte out of range.
    #[error("unknown hook {0}")]
    Hook(u8),
}

/// Converts kernel timestamps to wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Added to `bpf_ktime_get_ns()` values (CLOCK_MONOTONIC) to get ns since the epoch.
    pub monotonic_to_epoch_ns: i128,
}

impl Clock {
    /// Reads the current offset between CLOCK_REALTIME and CLOCK_MONOTONIC.
    pub fn now() -> Clock {
        let mono = clock_ns(libc::CLOCK_MONOTONIC);
        let real = clock_ns(libc::CLOCK_REALTIME);
        Clock {
            monotonic_to_epoch_ns: real - mono,
        }
    }

    /// Wall-clock ns since the epoch for an event header's timestamp.
    pub fn epoch_ns(&self, header: &EventHeader) -> u64 {
        if header.flags & HDR_TS_CAPTURE != 0 {
            header.ts_ns
        } else {
            (header.ts_ns as i128 + self.monotonic_to_epoch_ns).max(0) as u64
        }
    }

    /// Wall-clock ns for a live kernel timestamp (replay pipelines use a zero offset).
    pub fn epoch_of_kernel(&self, kernel_ns: u64) -> u64 {
        (kernel_ns as i128 + self.monotonic_to_epoch_ns).max(0) as u64
    }
}

/// CLOCK_MONOTONIC now, in ns: the clock of `bpf_ktime_get_ns()`.
pub fn monotonic_now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC) as u64
}

/// Wall-clock time now, in ns since the epoch.
pub fn epoch_now_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME) as u64
}

fn clock_ns(id: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// Where and when an event's packet was seen, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// Interface index (0 in replay).
    pub ifindex: u32,
    /// The hook.
    pub hook: Hook,
    /// Direction relative to the traced host.
    pub direction: Direction,
    /// The flow.
    pub key: FlowKey,
    /// The packet's sender.
    pub side: Side,
    /// The packet created the flow entry: there is no history before it.
    pub new_flow: bool,
    /// The kernel's own clock value, for differences with other kernel timestamps.
    pub kernel_ts_ns: u64,
}

impl Seen {
    /// Sender's address and port.
    pub fn sender(&self) -> (IpAddr, u16) {
        endpoint(&self.key, self.side)
    }

    /// Receiver's address and port.
    pub fn receiver(&self) -> (IpAddr, u16) {
        endpoint(&self.key, self.side.other())
    }
}

/// Address and port of one side of a flow.
pub fn endpoint(key: &FlowKey, side: Side) -> (IpAddr, u16) {
    let (words, port) = key.endpoint(side);
    let addr = addr_to_bytes(words);
    let ip = if key.family == FAMILY_IPV4 {
        IpAddr::from([addr[0], addr[1], addr[2], addr[3]])
    } else {
        IpAddr::from(addr)
    };
    (ip, port)
}

/// A TCP reset and the flow state from before it.
#[derive(Clone, Debug)]
pub struct Reset {
    /// Where and when.
    pub seen: Seen,
    /// The RST's headers.
    pub rst: PacketInfo,
    /// Flow state before the RST.
    pub flow: FlowState,
    /// The first payload bytes that were captured.
    pub payload: Bytes,
    /// The first bytes of the reset's frame, as the kernel saw them.
    pub frame: Frame,
}

/// The first bytes of a packet's frame, from its link-layer (Ethernet) header on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    /// The bytes copied (at most `rst_tracer_common::event::RST_FRAME_MAX`; empty when the
    /// kernel could not copy them).
    pub data: Bytes,
    /// The frame's whole length as the hook saw it.
    pub len: u32,
}

/// A sampled packet with its sender's state from before it.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Where and when.
    pub seen: Seen,
    /// The packet's headers.
    pub packet: PacketInfo,
    /// The sender's side state before the packet.
    pub sender: SideState,
}

/// What the kernel's TCP stack did, by tracepoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelAct {
    /// This host sent a reset (tcp_send_reset).
    SentReset,
    /// A socket of this host accepted a reset (tcp_receive_reset).
    AcceptedReset,
    /// This host retransmitted a segment (tcp_retransmit_skb).
    Retransmitted,
    /// A listener of this host retransmitted its SYN-ACK (tcp_retransmit_synack).
    RetransmittedSynAck,
}

/// What the kernel's TCP stack said about a flow (tracepoints).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelNote {
    /// What it did.
    pub act: KernelAct,
    /// Kernel time the tracepoint fired.
    pub kernel_ts_ns: u64,
    /// The flow.
    pub key: FlowKey,
    /// The sender of the reset or retransmission.
    pub side: Side,
    /// Socket state (sent resets, retransmissions).
    pub state: u32,
    /// `enum sk_rst_reason` (sent resets).
    pub reason: u32,
    /// How many acts the note stands for: 1, or for retransmissions the ones the kernel
    /// folded into it (see `rst_tracer_common::event::KernelNoteEvent::count`).
    pub count: u32,
}

/// A decoded ring-buffer record.
#[derive(Clone, Debug)]
pub enum Event {
    /// A reset.
    Reset(Box<Reset>),
    /// The first packet from a side after a reset in its flow.
    AfterReset(Sample),
    /// A retransmission sample.
    Retransmit(Sample),
    /// A TTL-change sample.
    TtlChange(Sample),
    /// What the kernel noted: a reset it sent or accepted, a retransmission.
    Kernel(KernelNote),
}

/// Decodes one record. `clock` turns kernel time into wall-clock time.
pub fn decode(record: &[u8], clock: &Clock) -> Result<Event, DecodeError> {
    let need = size_of::<EventHeader>();
    if record.len() < need {
        return Err(DecodeError::ShortHeader {
            len: record.len(),
            need,
        });
    }
    let mut peek = record;
    let version = peek.get_u8();
    let kind_byte = peek.get_u8();
    let declared = peek.get_u16_le();
    if version != EVENT_VERSION {
        return Err(DecodeError::Version { got: version });
    }
    let kind = EventKind::from_u8(kind_byte).ok_or(DecodeError::Kind(kind_byte))?;
    let expected = kind.wire_size();
    if record.len() < expected || declared as usize != expected {
        return Err(DecodeError::Length {
            kind,
            len: record.len(),
            declared,
            expected,
        });
    }
    match kind {
        EventKind::Rst => {
            let raw: RstEvent = read(record);
            let seen = seen(&raw.header, clock)?;
            let n = (raw.payload_captured as usize).min(raw.payload.len());
            let frame_n = (raw.frame_captured as usize).min(raw.frame.len());
            Ok(Event::Reset(Box::new(Reset {
                seen,
                rst: raw.rst,
                flow: raw.flow,
                payload: Bytes::copy_from_slice(&raw.payload[..n]),
                frame: Frame {
                    data: Bytes::copy_from_slice(&raw.frame[..frame_n]),
                    len: raw.frame_len,
                },
            })))
        }
        EventKind::KernelSentReset
        | EventKind::KernelAcceptedReset
        | EventKind::KernelRetransmit
        | EventKind::KernelSynAckRetransmit => {
            let raw: KernelNoteEvent = read(record);
            Ok(Event::Kernel(KernelNote {
                act: match kind {
                    EventKind::KernelSentReset => KernelAct::SentReset,
                    EventKind::KernelAcceptedReset => KernelAct::AcceptedReset,
                    EventKind::KernelRetransmit => KernelAct::Retransmitted,
                    _ => KernelAct::RetransmittedSynAck,
                },
                kernel_ts_ns: raw.ts_ns,
                key: raw.key,
                side: Side::from_u8(raw.side),
                state: raw.state,
                reason: raw.reason,
                count: raw.count,
            }))
        }
        EventKind::AfterRst | EventKind::Retransmit | EventKind::TtlChange => {
            let raw: SampleEvent = read(record);
            let sample = Sample {
                seen: seen(&raw.header, clock)?,
                packet: raw.packet,
                sender: raw.sender,
            };
            Ok(match kind {
                EventKind::AfterRst => Event::AfterReset(sample),
                EventKind::Retransmit => Event::Retransmit(sample),
                _ => Event::TtlChange(sample),
            })
        }
    }
}

/// Reads a plain-data struct from the front of `bytes` (length checked by the caller).
fn read<T: Copy>(bytes: &[u8]) -> T {
    assert!(bytes.len() >= size_of::<T>());
    // SAFETY: length checked above; T is a #[repr(C)] integer-only struct from rst-tracer-common,
    // valid for any bit pattern; read_unaligned makes no alignment assumption about the ring.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
}

fn seen(h: &EventHeader, clock: &Clock) -> Result<Seen, DecodeError> {
    let hook = Hook::from_u8(h.hook).ok_or(DecodeError::Hook(h.hook))?;
    let direction = match h.direction {
        1 => Direction::Ingress,
        2 => Direction::Egress,
        _ => Direction::Unknown,
    };
    Ok(Seen {
        ts_ns: clock.epoch_ns(h),
        ifindex: h.ifindex,
        hook,
        direction,
        key: h.key,
        side: Side::from_u8(h.side),
        new_flow: h.flags & HDR_NEW_FLOW != 0,
        kernel_ts_ns: h.ts_ns,
    })
}

#[cfg(test)]
pub(crate) mod testing {
    //! Builders for unit tests: a reset with a flow history, and the packets after it, in a few
    //! lines.

    use bytes::Bytes;
    use rst_tracer_common::{
        event::{Direction, Hook, PacketInfo, TCP_ACK, TCP_RST},
        flow::{FlowKey, FlowState, Side, SIDE_SEEN},
    };

    use super::{Reset, Sample, Seen};

    /// Milliseconds in ns.
    pub const MS: u64 = 1_000_000;
    /// The time the reset is seen.
    pub const T: u64 = 1_000 * MS;

    /// A reset from side Lo (the client) at `T`, the client having sent 5 packets with TTL 62
    /// and IP IDs up to 100, stream at 1000; the server's last packet (IP ID 7, seq 5000, ack
    /// 1000) 10 ms before; handshake RTT 20 ms.
    pub fn reset() -> Reset {
        let mut flow = FlowState {
            syn_ns: T - 100 * MS,
            synack_ns: T - 90 * MS,
            ack_ns: T - 80 * MS,
            ..Default::default()
        };
        flow.flags = rst_tracer_common::flow::FLOW_HANDSHAKE;
        let c = &mut flow.sides[0];
        c.packets = 5;
        c.flags = SIDE_SEEN;
        c.ttl_last = 62;
        c.ttl_min = 62;
        c.ttl_max = 62;
        c.ttl_samples = 5;
        c.last_ip_id = 100;
        c.seq_next = 1000;
        c.last_seq = 990;
        c.last_ack = 5000;
        c.last_flags = TCP_ACK;
        c.window = 500;
        c.last_ns = T - 20 * MS;
        let s = &mut flow.sides[1];
        s.packets = 4;
        s.flags = SIDE_SEEN;
        s.ttl_last = 64;
        s.ttl_min = 64;
        s.ttl_max = 64;
        s.ttl_samples = 4;
        s.last_ip_id = 7;
        s.seq_next = 5000;
        s.last_seq = 5000;
        s.last_ack = 1000;
        s.last_flags = TCP_ACK;
        s.window = 1000;
        s.wscale = 7;
        s.last_ns = T - 10 * MS;
        Reset {
            seen: Seen {
                ts_ns: T,
                ifindex: 0,
                hook: Hook::Replay,
                direction: Direction::Unknown,
                key: FlowKey {
                    family: 4,
                    ..Default::default()
                },
                side: Side::Lo,
                new_flow: false,
                kernel_ts_ns: T,
            },
            rst: PacketInfo {
                seq: 1000,
                ack: 5000,
                flags: TCP_RST | TCP_ACK,
                ttl: 62,
                ip_id: 101,
                window: 0,
                ..Default::default()
            },
            flow,
            payload: Bytes::new(),
            frame: super::Frame::default(),
        }
    }

    /// A packet after the reset from `side`, `ms_after` the reset.
    pub fn after(side: Side, ms_after: u64, packet: PacketInfo) -> Sample {
        let mut seen = reset().seen;
        seen.side = side;
        seen.ts_ns = T + ms_after * MS;
        seen.kernel_ts_ns = seen.ts_ns;
        Sample {
            seen,
            packet,
            sender: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rst_tracer_common::event::{TCP_ACK, TCP_RST};

    const CLOCK: Clock = Clock {
        monotonic_to_epoch_ns: 1_000_000_000_000,
    };

    /// A reset event written byte by byte the way the kernel lays it out, every field commented,
    /// so a layout change in rst-tracer-common breaks this test rather than the decoder.
    fn golden_reset_bytes() -> Vec<u8> {
        let mut b = Vec::new();
        // EventHeader (64 bytes)
        b.push(4); // version
        b.push(1); // kind = Rst
        b.extend_from_slice(&656u16.to_le_bytes()); // len
        b.extend_from_slice(&7u32.to_le_bytes()); // ifindex
        b.extend_from_slice(&5_000u64.to_le_bytes()); // ts_ns (monotonic)
        push_golden_key(&mut b);
        b.push(2); // hook = TcIngress
        b.push(1); // direction = Ingress
        b.push(0); // side = Lo (the client 10.0.1.2:40000)
        b.push(0); // flags
        b.extend_from_slice(&[0; 4]); // header padding
                                      // PacketInfo (32 bytes)
        b.extend_from_slice(&1001u32.to_le_bytes()); // seq
        b.extend_from_slice(&2002u32.to_le_bytes()); // ack
        b.extend_from_slice(&0u32.to_le_bytes()); // ts_val
        b.extend_from_slice(&0u32.to_le_bytes()); // ts_ecr
        b.extend_from_slice(&0xa358u16.to_le_bytes()); // ip_id
        b.extend_from_slice(&0u16.to_le_bytes()); // window
        b.extend_from_slice(&(TCP_RST | TCP_ACK).to_le_bytes()); // flags
        b.extend_from_slice(&3u16.to_le_bytes()); // payload_len
        b.push(63); // ttl
        b.push(1); // ip_flags = DF
        b.push(0); // tcp_options
        b.push(5); // data_offset
        b.push(0); // wscale
        b.extend_from_slice(&[0; 3]); // padding
                                      // FlowState (232 bytes): side Lo has ttl_last at offset 56 of its SideState.
        let mut flow = vec![0u8; 232];
        flow[56] = 62; // sides[0].ttl_last
        flow[16..20].copy_from_slice(&9u32.to_le_bytes()); // sides[0].packets
        b.extend_from_slice(&flow);
        b.push(3); // payload_captured
        b.push(0); // padding
        b.extend_from_slice(&5u16.to_le_bytes()); // frame_captured
        b.extend_from_slice(&1514u32.to_le_bytes()); // frame_len: the whole frame
        let mut payload = [0u8; 64];
        payload[..3].copy_from_slice(b"abc");
        b.extend_from_slice(&payload);
        let mut frame = [0u8; 256];
        frame[..5].copy_from_slice(&[0x02, 0, 0, 0, 0x01]); // the destination MAC's first bytes
        frame[5] = 0xee; // past frame_captured: not part of the frame
        b.extend_from_slice(&frame);
        b
    }

    /// The flow key of the hand-written records (40 bytes): 10.0.1.2:40000 <-> 10.0.2.2:80.
    fn push_golden_key(b: &mut Vec<u8>) {
        b.extend_from_slice(&[10, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // addr_lo
        b.extend_from_slice(&[10, 0, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // addr_hi
        b.extend_from_slice(&40000u16.to_le_bytes()); // port_lo
        b.extend_from_slice(&80u16.to_le_bytes()); // port_hi
        b.extend_from_slice(&4u16.to_le_bytes()); // family
        b.extend_from_slice(&[0; 2]); // key padding
    }

    #[test]
    fn decodes_a_folded_stack_retransmission_laid_out_by_hand() {
        let mut b = vec![4, 7]; // version, kind = KernelRetransmit
        b.extend_from_slice(&72u16.to_le_bytes()); // len
        b.extend_from_slice(&1u32.to_le_bytes()); // state = TCP_ESTABLISHED
        b.extend_from_slice(&9_000u64.to_le_bytes()); // ts_ns
        push_golden_key(&mut b);
        b.push(1); // side = Hi (the server 10.0.2.2:80)
        b.extend_from_slice(&[0; 3]); // padding
        b.extend_from_slice(&u32::MAX.to_le_bytes()); // reason: none
        b.extend_from_slice(&5u32.to_le_bytes()); // count: itself and four folded in
        b.extend_from_slice(&[0; 4]); // padding
        assert_eq!(b.len(), size_of::<KernelNoteEvent>());
        let Event::Kernel(n) = decode(&b, &CLOCK).unwrap() else {
            panic!("not a kernel note")
        };
        assert_eq!(n.act, KernelAct::Retransmitted);
        assert_eq!(n.side, Side::Hi);
        assert_eq!((n.kernel_ts_ns, n.state, n.count), (9_000, 1, 5));
        assert_eq!(n.key.port_hi, 80);
    }

    #[test]
    fn decodes_a_reset_laid_out_by_hand() {
        let bytes = golden_reset_bytes();
        assert_eq!(bytes.len(), size_of::<RstEvent>());
        let Event::Reset(r) = decode(&bytes, &CLOCK).unwrap() else {
            panic!("not a reset")
        };
        assert_eq!(r.seen.ts_ns, 1_000_000_005_000);
        assert_eq!(r.seen.ifindex, 7);
        assert_eq!(r.seen.hook, Hook::TcIngress);
        assert_eq!(r.seen.direction, Direction::Ingress);
        assert_eq!(r.seen.sender(), ("10.0.1.2".parse().unwrap(), 40000));
        assert_eq!(r.seen.receiver(), ("10.0.2.2".parse().unwrap(), 80));
        assert_eq!(
            (r.rst.seq, r.rst.ack, r.rst.ip_id, r.rst.ttl),
            (1001, 2002, 0xa358, 63)
        );
        assert_eq!(r.rst.flags, TCP_RST | TCP_ACK);
        assert_eq!(r.flow.sides[0].ttl_last, 62);
        assert_eq!(r.flow.sides[0].packets, 9);
        assert_eq!(&r.payload[..], b"abc");
        assert_eq!(&r.frame.data[..], [0x02, 0, 0, 0, 0x01]);
        assert_eq!(r.frame.len, 1514);
    }

    #[test]
    fn rejects_bad_records_with_the_numbers() {
        assert_eq!(
            decode(&[1, 1, 0], &CLOCK).unwrap_err(),
            DecodeError::ShortHeader { len: 3, need: 64 }
        );
        let mut v = golden_reset_bytes();
        v[0] = 9;
        assert_eq!(
            decode(&v, &CLOCK).unwrap_err(),
            DecodeError::Version { got: 9 }
        );
        let mut v = golden_reset_bytes();
        v[1] = 77;
        assert_eq!(decode(&v, &CLOCK).unwrap_err(), DecodeError::Kind(77));
        let mut v = golden_reset_bytes();
        v.truncate(300);
        let err = decode(&v, &CLOCK).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::Length {
                    len: 300,
                    declared: 656,
                    expected: 656,
                    ..
                }
            ),
            "{err}"
        );
        let mut v = golden_reset_bytes();
        v[56] = 9; // hook
        assert_eq!(decode(&v, &CLOCK).unwrap_err(), DecodeError::Hook(9));
    }

    #[test]
    fn capture_timestamps_are_not_shifted() {
        let h = EventHeader {
            ts_ns: 42,
            flags: HDR_TS_CAPTURE,
            ..Default::default()
        };
        assert_eq!(CLOCK.epoch_ns(&h), 42);
        let h = EventHeader {
            ts_ns: 42,
            ..Default::default()
        };
        assert_eq!(CLOCK.epoch_ns(&h), 1_000_000_000_042);
    }
}
