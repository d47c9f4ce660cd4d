//! pcapng sink (`--pcap-out FILE`): every reset as a packet, with the bytes the kernel copied of
//! its frame, its true time (ns), the interface it was seen on (one interface description block
//! per interface, named) and the verdict as the packet's comment, so that Wireshark shows the
//! judgement beside the packet. The other records are not packets and are left out.
//!
//! A reset's comment starts with `SUSPICIOUS` when the verdict is; then come the origin, the
//! explanation and the findings (see [`comment`]). In replay with `--pcap-out-context N`, the
//! flow's packets before each reset come just before it, each with a comment that says so
//! ([`super::context`]).

use std::{
    borrow::Cow,
    fs::File,
    io::{self, BufWriter, Write},
    path::Path,
    time::Duration,
};

use pcap_file::{
    pcapng::{
        blocks::{
            enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption},
            interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption},
            section_header::{SectionHeaderBlock, SectionHeaderOption},
        },
        PcapNgWriter,
    },
    DataLink, PcapError,
};
use rst_tracer_common::event::RST_FRAME_MAX;

use super::{context::SharedContext, text};
use crate::pipeline::{record::ResetRecord, Sink};

/// `if_tsresol` 9: timestamps in nanoseconds. pcap-file 2 writes an enhanced packet block's
/// timestamp in nanoseconds whatever the interface says, so every interface must say this.
const TSRESOL_NANOSECONDS: u8 = 9;

/// `epb_flags` direction bits (pcapng, section "Enhanced Packet Block Flags Word").
const EPB_INBOUND: u32 = 0b01;
/// Outbound.
const EPB_OUTBOUND: u32 = 0b10;

/// Writes each reset to a pcapng file.
pub struct PcapngSink {
    writer: PcapNgWriter<BufWriter<File>>,
    /// Interface names in the order of their description blocks (the block's index is the
    /// packets' `interface_id`).
    interfaces: Vec<String>,
    /// Where the packets before each reset are, with `--pcap-out-context`.
    context: Option<SharedContext>,
}

impl PcapngSink {
    /// Creates (or truncates) `path` and writes the section header; with `context`, each reset
    /// is preceded by the packets set aside for it there.
    ///
    /// # Errors
    /// When the file cannot be created or written.
    pub fn create(path: &Path, context: Option<SharedContext>) -> io::Result<PcapngSink> {
        let file = File::create(path)
            .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", path.display())))?;
        let section = SectionHeaderBlock {
            options: vec![SectionHeaderOption::UserApplication(Cow::Owned(format!(
                "rst-tracer {}",
                env!("CARGO_PKG_VERSION")
            )))],
            ..SectionHeaderBlock::default()
        };
        let writer =
            PcapNgWriter::with_section_header(BufWriter::new(file), section).map_err(io_error)?;
        Ok(PcapngSink {
            writer,
            interfaces: Vec::new(),
            context,
        })
    }

    /// The `interface_id` of the interface named `name`, writing its description block the
    /// first time it is seen.
    fn interface(&mut self, name: &str) -> io::Result<u32> {
        if let Some(i) = self.interfaces.iter().position(|n| n == name) {
            return Ok(i as u32);
        }
        self.writer
            .write_pcapng_block(InterfaceDescriptionBlock {
                linktype: DataLink::ETHERNET,
                snaplen: RST_FRAME_MAX as u32,
                options: vec![
                    InterfaceDescriptionOption::IfName(Cow::Borrowed(name)),
                    InterfaceDescriptionOption::IfTsResol(TSRESOL_NANOSECONDS),
                ],
            })
            .map_err(io_error)?;
        self.interfaces.push(name.to_string());
        Ok(self.interfaces.len() as u32 - 1)
    }
}

/// The packet comment of a reset: `SUSPICIOUS` first when it is, then who sent it, what
/// explains it and every finding with its detail, e.g.
/// `SUSPICIOUS; origin on-path, 1 hop closer; explanation none; findings: ttl_mismatch: ttl 64
/// vs ...; ipid_jump: ...` or `origin local; explanation abort: ...; findings: none`.
pub fn comment(r: &ResetRecord) -> String {
    let mut parts = Vec::with_capacity(4);
    if r.suspicious {
        parts.push("SUSPICIOUS".to_string());
    }
    parts.push(format!("origin {}", text::origin(r)));
    parts.push(match (r.explanation, &r.explanation_detail) {
        (Some(code), Some(detail)) => format!("explanation {code}: {detail}"),
        (Some(code), None) => format!("explanation {code}"),
        (None, _) => "explanation none".to_string(),
    });
    let findings: Vec<String> = r
        .findings
        .iter()
        .map(|f| format!("{}: {}", f.code, f.detail))
        .collect();
    parts.push(if findings.is_empty() {
        "findings: none".to_string()
    } else {
        format!("findings: {}", findings.join("; "))
    });
    parts.join("; ")
}

/// The interface a record names: replay has none, so its packets go on one called `replay`
/// (the hook).
fn interface_name<'a>(r: &'a ResetRecord) -> &'a str {
    if r.seen.iface.is_empty() {
        r.seen.hook
    } else {
        r.seen.iface
    }
}

fn io_error(e: PcapError) -> io::Error {
    match e {
        PcapError::IoError(e) => e,
        other => io::Error::other(format!("writing pcapng: {other}")),
    }
}

impl Sink for PcapngSink {
    fn reset(&mut self, r: &ResetRecord) -> io::Result<()> {
        let interface_id = self.interface(interface_name(r))?;
        let before = match &self.context {
            // A poisoned lock only means another thread panicked holding it: the packets are
            // still whole.
            Some(c) => c
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(&r.key, r.seen.ts_ns),
            None => Vec::new(),
        };
        let n = before.len();
        for (i, p) in before.into_iter().enumerate() {
            let note = format!(
                "context: packet {} of {n} of this flow before the reset that follows",
                i + 1
            );
            self.writer
                .write_pcapng_block(EnhancedPacketBlock {
                    interface_id,
                    timestamp: Duration::from_nanos(p.ts_ns),
                    original_len: p.len,
                    data: Cow::Owned(p.data.to_vec()),
                    options: vec![EnhancedPacketOption::Comment(Cow::Owned(note))],
                })
                .map_err(io_error)?;
        }
        let mut options = vec![EnhancedPacketOption::Comment(Cow::Owned(comment(r)))];
        match r.seen.direction {
            "ingress" => options.push(EnhancedPacketOption::Flags(EPB_INBOUND)),
            "egress" => options.push(EnhancedPacketOption::Flags(EPB_OUTBOUND)),
            _ => {}
        }
        self.writer
            .write_pcapng_block(EnhancedPacketBlock {
                interface_id,
                timestamp: Duration::from_nanos(r.seen.ts_ns),
                // Never less than what the file holds, even if the kernel said so.
                original_len: r.frame.len.max(r.frame.data.len() as u32),
                data: Cow::Borrowed(&r.frame.data),
                options,
            })
            .map_err(io_error)?;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.get_mut().flush()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use pcap_parser::{traits::PcapReaderIterator, Block, PcapBlockOwned, PcapError as ReadError};
    use rst_tracer_common::event::{Direction, Hook};

    use super::*;
    use crate::{
        event::Frame,
        forensics::{
            explain::{Explanation, Mechanism},
            kernel::KernelFacts,
            testing, Finding, Origin, Strength, Verdict,
        },
    };

    /// 2026-11-22T13:03:44.049732610Z in ns since the epoch.
    const WALL: u64 = 1_795_352_624_049_732_610;

    fn forged() -> Verdict {
        Verdict {
            origin: Origin::OnPath,
            hops_closer: Some(1),
            suspicious: true,
            findings: vec![
                Finding::new("ttl_mismatch", Strength::Strong, "ttl 64 vs 63"),
                Finding::new("ipid_jump", Strength::Medium, "ip id 0x5151"),
            ],
            explanation: None,
        }
    }

    fn honest() -> Verdict {
        Verdict {
            origin: Origin::Local,
            hops_closer: None,
            suspicious: false,
            findings: Vec::new(),
            explanation: Some(Explanation {
                mechanism: Mechanism::Abort,
                detail: "its own socket aborted".into(),
            }),
        }
    }

    #[test]
    fn the_comment_leads_with_suspicious_then_origin_explanation_and_findings() {
        let r = testing::reset();
        let c = comment(&ResetRecord::of(&r, "s0", forged(), KernelFacts::default()));
        assert_eq!(
            c,
            "SUSPICIOUS; origin on-path, 1 hop closer; explanation none; \
             findings: ttl_mismatch: ttl 64 vs 63; ipid_jump: ip id 0x5151"
        );
        let c = comment(&ResetRecord::of(&r, "s0", honest(), KernelFacts::default()));
        assert_eq!(
            c,
            "origin local; explanation abort: its own socket aborted; findings: none"
        );
    }

    /// The blocks of a pcapng file, read with pcap-parser: (interface names with their
    /// resolution, packets as (interface, timestamp units, original length, bytes)).
    #[allow(clippy::type_complexity, reason = "a test's tuple of what it checks")]
    fn read_back(path: &Path) -> (Vec<(String, u8)>, Vec<(u32, u64, u32, Vec<u8>)>) {
        let file = File::open(path).unwrap();
        let mut reader = pcap_parser::PcapNGReader::new(65536, file).unwrap();
        let (mut interfaces, mut packets) = (Vec::new(), Vec::new());
        loop {
            match reader.next() {
                Ok((n, block)) => {
                    match block {
                        PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                            let name = idb
                                .options
                                .iter()
                                .find(|o| o.code == pcap_parser::OptionCode::IfName)
                                .map(|o| String::from_utf8_lossy(&o.value).into_owned())
                                .unwrap_or_default();
                            let name = name.trim_end_matches('\0').to_string();
                            interfaces.push((name, idb.if_tsresol));
                        }
                        PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => packets.push((
                            epb.if_id,
                            (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low),
                            epb.origlen,
                            epb.data[..epb.caplen as usize].to_vec(),
                        )),
                        _ => {}
                    }
                    reader.consume(n);
                }
                Err(ReadError::Eof) => break,
                Err(ReadError::Incomplete(_)) => reader.refill().unwrap(),
                Err(e) => panic!("unreadable pcapng: {e:?}"),
            }
        }
        (interfaces, packets)
    }

    #[test]
    fn each_interface_is_described_once_and_each_reset_is_a_packet_on_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resets.pcapng");
        let mut sink = PcapngSink::create(&path, None).unwrap();
        let frame = |byte: u8, len: u32| Frame {
            data: Bytes::from(vec![byte; 60]),
            len,
        };
        let mut r = testing::reset();
        r.seen.ts_ns = WALL;
        r.seen.hook = Hook::TcIngress;
        r.seen.direction = Direction::Ingress;
        r.frame = frame(0xaa, 1514);
        sink.reset(&ResetRecord::of(&r, "s0", forged(), KernelFacts::default()))
            .unwrap();
        r.frame = frame(0xbb, 60);
        sink.reset(&ResetRecord::of(&r, "s1", honest(), KernelFacts::default()))
            .unwrap();
        r.seen.ts_ns = WALL + 1;
        r.frame = frame(0xcc, 60);
        sink.reset(&ResetRecord::of(&r, "s0", honest(), KernelFacts::default()))
            .unwrap();
        sink.flush().unwrap();
        let (interfaces, packets) = read_back(&path);
        assert_eq!(
            interfaces,
            [("s0".to_string(), 9), ("s1".to_string(), 9)],
            "one description per interface, nanoseconds"
        );
        let seen: Vec<(u32, u64, u32, u8)> = packets
            .iter()
            .map(|(i, ts, len, data)| (*i, *ts, *len, data[0]))
            .collect();
        assert_eq!(
            seen,
            [
                (0, WALL, 1514, 0xaa),
                (1, WALL, 60, 0xbb),
                (0, WALL + 1, 60, 0xcc)
            ]
        );
        assert!(packets.iter().all(|p| p.3.len() == 60));
    }

    #[test]
    fn a_file_that_cannot_be_created_is_an_error_naming_it() {
        let err = PcapngSink::create(Path::new("/nonexistent-dir/resets.pcapng"), None)
            .err()
            .expect("no such directory");
        assert!(
            err.to_string().contains("/nonexistent-dir/resets.pcapng"),
            "{err}"
        );
    }
}
