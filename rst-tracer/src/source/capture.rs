//! Reading capture files: pcap (either byte order, micro- or nanosecond timestamps) and pcapng
//! (several sections and interfaces, each with its own link type, timestamp resolution and
//! offset), through the `pcap-parser` crate.
//!
//! Errors name the file and the byte offset where reading stopped; records read before a broken
//! one have already been returned, so nothing before the damage is lost.

use std::{
    fs::File,
    io::{BufReader, Cursor, Read},
    path::{Path, PathBuf},
};

use pcap_parser::{
    create_reader, pcapng::Block, traits::PcapReaderIterator, Linktype, PcapBlockOwned, PcapError,
};

/// Bytes of each record kept: headers and the first payload bytes are all the kernel program
/// reads, and XDP test runs refuse frames larger than a page.
pub const RECORD_SNAP: usize = 1024;
/// Reader buffer: the largest record the reader accepts (pcapng blocks hold whole records).
const BUFFER: usize = 1 << 20;
/// Bytes read before the format is sniffed: more than any file header (a pcapng section
/// header with its options), and the parser sniffs from one read.
const HEAD: usize = 64 * 1024;
/// The file name that means standard input.
pub const STDIN: &str = "-";
/// How errors name standard input.
const STDIN_NAME: &str = "(standard input)";

/// Why a capture could not be read (further).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CaptureError {
    /// The file could not be opened or read.
    #[error("{path}: {detail}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        detail: String,
    },
    /// Empty file.
    #[error("{path}: empty file, not a pcap or pcapng capture")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// Neither pcap nor pcapng.
    #[error("{path}: not a pcap or pcapng capture (starts with {found})")]
    NotACapture {
        /// The file.
        path: PathBuf,
        /// The first bytes, in hex.
        found: String,
    },
    /// A pcapng file (its first block is a section header) whose section header is damaged.
    #[error("{path}: a pcapng file whose section header (byte 0) is damaged: {detail}")]
    DamagedHeader {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: &'static str,
    },
    /// The file ends inside a header or record.
    #[error(
        "{path}: truncated at byte {offset} (frame {frame}): the file ends inside a record (or its header)"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Where the incomplete record starts.
        offset: u64,
        /// The frame it would have been (1 for the first).
        frame: u64,
    },
    /// A record larger than the reader accepts (usually a corrupt length field).
    #[error(
        "{path}: record at byte {offset} (frame {frame}) is larger than {BUFFER} bytes: corrupt length field?"
    )]
    RecordTooLarge {
        /// The file.
        path: PathBuf,
        /// Where the record starts.
        offset: u64,
        /// The frame it would have been (1 for the first).
        frame: u64,
    },
    /// Anything else the parser refused.
    #[error("{path}: corrupt at byte {offset} (frame {frame}): {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where the bad block starts.
        offset: u64,
        /// The frame it would have been (1 for the first).
        frame: u64,
        /// What is wrong, in words.
        detail: &'static str,
    },
}

/// One captured frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Byte offset of the record in the file.
    pub offset: u64,
    /// Capture time, ns since the epoch.
    pub ts_ns: u64,
    /// Link type of the frame.
    pub linktype: i32,
    /// The frame's first [`RECORD_SNAP`] bytes.
    pub data: Vec<u8>,
}

/// A pcapng interface: its link type and clock.
#[derive(Clone, Copy, Debug)]
struct Interface {
    linktype: i32,
    units_per_sec: u128,
    ts_offset_s: i64,
}

/// Timestamp units per second of a pcapng `if_tsresol` byte: 10 to the power of its value, or,
/// with the high bit set, 2 to the power of the low seven bits (any exponent; one too large
/// for a u128 is taken as u128::MAX: every 64-bit timestamp is then below a nanosecond).
/// pcap-parser's own conversion reads every power of two as microseconds.
fn units_per_second(tsresol: u8) -> u128 {
    let (base, exponent): (u128, u32) = if tsresol & 0x80 == 0 {
        (10, u32::from(tsresol))
    } else {
        (2, u32::from(tsresol & 0x7f))
    };
    base.checked_pow(exponent).unwrap_or(u128::MAX)
}

/// A capture input opened but not read yet: a file, or standard input for `-`. Opening every
/// input first lets replay give up its privileges before it parses any of them.
pub struct Input {
    /// How messages name it.
    name: PathBuf,
    reader: Box<dyn Read + Send>,
}

impl Input {
    /// An input read from `reader`, named `name` in messages.
    pub fn from_reader(name: impl Into<PathBuf>, reader: Box<dyn Read + Send>) -> Input {
        Input {
            name: name.into(),
            reader,
        }
    }

    /// Opens `path`; `-` is standard input.
    ///
    /// # Errors
    /// The file cannot be opened.
    pub fn open(path: &Path) -> Result<Input, CaptureError> {
        if path == Path::new(STDIN) {
            return Ok(Input {
                name: PathBuf::from(STDIN_NAME),
                reader: Box::new(std::io::stdin()),
            });
        }
        let file = File::open(path).map_err(|e| CaptureError::Io {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        Ok(Input {
            name: path.to_path_buf(),
            reader: Box::new(file),
        })
    }
}

/// Reads the records of one capture file in order.
pub struct CaptureReader {
    path: PathBuf,
    inner: Box<dyn PcapReaderIterator + Send>,
    /// Bytes consumed so far: the offset of the next block.
    offset: u64,
    /// Frames returned so far.
    frames: u64,
    format: FormatState,
}

/// What a parser error means, in words (its own dump shows parser internals).
fn what_is_wrong(e: &PcapError<&[u8]>) -> &'static str {
    match e {
        PcapError::HeaderNotRecognized => "an unknown block or header",
        PcapError::NomError(..) | PcapError::OwnedNomError(..) => {
            "a malformed block (its length or contents do not parse)"
        }
        PcapError::ReadError => "a read error",
        _ => "the parser stopped here",
    }
}

/// The type of a pcapng section header block, the first bytes of every pcapng file.
const PCAPNG_SECTION_HEADER: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// What the file's headers said so far.
#[derive(Default)]
struct FormatState {
    /// Legacy pcap: link type and whether timestamps are in ns.
    legacy: Option<(i32, bool)>,
    /// pcapng: interfaces of the current section.
    interfaces: Vec<Interface>,
    /// pcapng: time of the last timestamped record (simple packet blocks have none).
    last_ts_ns: u64,
}

impl CaptureReader {
    /// Opens `path` (`-`: standard input) and checks that it is a pcap or pcapng capture. The
    /// input is read once, front to back, so a pipe or a FIFO works as well as a file.
    ///
    /// # Errors
    /// The file cannot be read, is empty, or is neither format.
    pub fn open(path: &Path) -> Result<CaptureReader, CaptureError> {
        CaptureReader::from_input(Input::open(path)?)
    }

    /// A reader of an input already opened (see [`Input::open`]).
    ///
    /// # Errors
    /// The input cannot be read, is empty, or is neither format.
    pub fn from_input(input: Input) -> Result<CaptureReader, CaptureError> {
        let Input {
            name: named,
            reader: mut input,
        } = input;
        let io = |e: std::io::Error| CaptureError::Io {
            path: named.clone(),
            detail: e.to_string(),
        };
        // The head is read whole (a pipe hands bytes over in pieces) and handed to the parser
        // first: it sniffs the format from its first read.
        let mut head = Vec::with_capacity(HEAD);
        input
            .by_ref()
            .take(HEAD as u64)
            .read_to_end(&mut head)
            .map_err(io)?;
        if head.is_empty() {
            return Err(CaptureError::Empty { path: named });
        }
        let found = head
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ");
        let pcapng = head.starts_with(&PCAPNG_SECTION_HEADER);
        let whole = BufReader::new(Cursor::new(head).chain(input));
        let inner = create_reader(BUFFER, whole).map_err(|e| match e {
            PcapError::Incomplete(_) | PcapError::UnexpectedEof | PcapError::Eof => {
                CaptureError::Truncated {
                    path: named.clone(),
                    offset: 0,
                    frame: 1,
                }
            }
            _ if pcapng => CaptureError::DamagedHeader {
                path: named.clone(),
                detail: "its byte-order magic, length or version do not parse",
            },
            _ => CaptureError::NotACapture {
                path: named.clone(),
                found,
            },
        })?;
        Ok(CaptureReader {
            path: named,
            inner,
            offset: 0,
            frames: 0,
            format: FormatState::default(),
        })
    }

    /// The next frame, or `None` at the end of the file.
    ///
    /// # Errors
    /// A truncated or corrupt record, with its byte offset.
    pub fn next_record(&mut self) -> Result<Option<Record>, CaptureError> {
        loop {
            let (len, record) = match self.inner.next() {
                Ok((len, block)) => (len, self.format.block(block, self.offset)),
                Err(PcapError::Eof) => return Ok(None),
                Err(PcapError::Incomplete(_)) => {
                    if self.inner.refill().is_err() {
                        return Err(self.corrupt("a read error"));
                    }
                    continue;
                }
                Err(PcapError::UnexpectedEof) => {
                    return Err(CaptureError::Truncated {
                        path: self.path.clone(),
                        offset: self.offset,
                        frame: self.frames + 1,
                    })
                }
                Err(PcapError::BufferTooSmall) => {
                    return Err(CaptureError::RecordTooLarge {
                        path: self.path.clone(),
                        offset: self.offset,
                        frame: self.frames + 1,
                    })
                }
                Err(e) => {
                    let detail = what_is_wrong(&e);
                    return Err(self.corrupt(detail));
                }
            };
            self.inner.consume(len);
            self.offset += len as u64;
            if let Some(record) = record {
                self.frames += 1;
                return Ok(Some(record));
            }
        }
    }

    fn corrupt(&self, detail: &'static str) -> CaptureError {
        CaptureError::Corrupt {
            path: self.path.clone(),
            offset: self.offset,
            frame: self.frames + 1,
            detail,
        }
    }

    /// Bytes read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

impl FormatState {
    /// Turns a block into a record (packets) or updates the reader's state (headers).
    fn block(&mut self, block: PcapBlockOwned<'_>, offset: u64) -> Option<Record> {
        let snap = |data: &[u8]| data[..data.len().min(RECORD_SNAP)].to_vec();
        match block {
            PcapBlockOwned::LegacyHeader(h) => {
                self.legacy = Some((h.network.0, h.is_nanosecond_precision()));
                None
            }
            PcapBlockOwned::Legacy(b) => {
                let (linktype, nanos) = self.legacy.unwrap_or((Linktype::ETHERNET.0, false));
                let frac_ns = if nanos {
                    b.ts_usec as u64
                } else {
                    b.ts_usec as u64 * 1_000
                };
                let ts_ns = b.ts_sec as u64 * 1_000_000_000 + frac_ns;
                Some(Record {
                    offset,
                    ts_ns,
                    linktype,
                    data: snap(b.data),
                })
            }
            PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                self.interfaces.clear();
                None
            }
            PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                self.interfaces.push(Interface {
                    linktype: idb.linktype.0,
                    units_per_sec: units_per_second(idb.if_tsresol),
                    ts_offset_s: idb.ts_offset(),
                });
                None
            }
            PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                let iface = self.interface(epb.if_id);
                let units = ((epb.ts_high as u64) << 32) | epb.ts_low as u64;
                let ns = units as u128 * 1_000_000_000 / iface.units_per_sec;
                let ts_ns = (ns as i128 + iface.ts_offset_s as i128 * 1_000_000_000).max(0) as u64;
                self.last_ts_ns = ts_ns;
                Some(Record {
                    offset,
                    ts_ns,
                    linktype: iface.linktype,
                    // The block data is padded to 4 bytes; the captured length ends it.
                    data: snap(&epb.data[..(epb.caplen as usize).min(epb.data.len())]),
                })
            }
            PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                // No timestamp and interface 0 by definition; keep the last known time.
                let iface = self.interface(0);
                Some(Record {
                    offset,
                    ts_ns: self.last_ts_ns,
                    linktype: iface.linktype,
                    data: snap(&spb.data[..(spb.origlen as usize).min(spb.data.len())]),
                })
            }
            PcapBlockOwned::NG(_) => None,
        }
    }

    fn interface(&self, id: u32) -> Interface {
        self.interfaces
            .get(id as usize)
            .copied()
            .unwrap_or(Interface {
                // A packet for an interface never described: its link type is unknown.
                linktype: -1,
                units_per_sec: 1_000_000,
                ts_offset_s: 0,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `bytes` to `name` in `dir` (a test's own directory, removed when it ends).
    fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// A little-endian pcap header (µs or ns) for `linktype`.
    fn pcap_header(nanos: bool, linktype: u32) -> Vec<u8> {
        let magic: u32 = if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        let mut h = magic.to_le_bytes().to_vec();
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&[0; 8]);
        h.extend_from_slice(&65535u32.to_le_bytes());
        h.extend_from_slice(&linktype.to_le_bytes());
        h
    }

    fn pcap_record(sec: u32, frac: u32, data: &[u8]) -> Vec<u8> {
        let mut r = Vec::new();
        for v in [sec, frac, data.len() as u32, data.len() as u32] {
            r.extend_from_slice(&v.to_le_bytes());
        }
        r.extend_from_slice(data);
        r
    }

    fn read_all(p: &Path) -> (Vec<Record>, Option<CaptureError>) {
        let mut r = match CaptureReader::open(p) {
            Ok(r) => r,
            Err(e) => return (Vec::new(), Some(e)),
        };
        let mut out = Vec::new();
        loop {
            match r.next_record() {
                Ok(Some(rec)) => out.push(rec),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    #[test]
    fn microsecond_and_nanosecond_pcap() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = pcap_header(false, 1);
        f.extend(pcap_record(10, 500, &[1; 20]));
        let (recs, err) = read_all(&write(&dir, "us.pcap", &f));
        assert_eq!(err, None);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].ts_ns, 10_000_500_000);
        assert_eq!(recs[0].linktype, 1);
        assert_eq!(recs[0].offset, 24);

        let mut f = pcap_header(true, 113);
        f.extend(pcap_record(10, 500, &[1; 20]));
        let (recs, _) = read_all(&write(&dir, "ns.pcap", &f));
        assert_eq!(recs[0].ts_ns, 10_000_000_500);
        assert_eq!(recs[0].linktype, 113);
    }

    #[test]
    fn big_endian_pcap() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = 0xa1b2_c3d4u32.to_be_bytes().to_vec();
        f.extend_from_slice(&2u16.to_be_bytes());
        f.extend_from_slice(&4u16.to_be_bytes());
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&65535u32.to_be_bytes());
        f.extend_from_slice(&101u32.to_be_bytes());
        for v in [7u32, 1, 4, 4] {
            f.extend_from_slice(&v.to_be_bytes());
        }
        f.extend_from_slice(&[0x45, 0, 0, 4]);
        let (recs, err) = read_all(&write(&dir, "be.pcap", &f));
        assert_eq!(err, None);
        assert_eq!(
            (recs[0].ts_ns, recs[0].linktype, recs[0].data.len()),
            (7_000_001_000, 101, 4)
        );
    }

    fn block(kind: u32, body: &[u8]) -> Vec<u8> {
        let len = (12 + body.len()) as u32;
        let mut b = kind.to_le_bytes().to_vec();
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(body);
        b.extend_from_slice(&len.to_le_bytes());
        b
    }

    fn section() -> Vec<u8> {
        let mut body = 0x1a2b_3c4du32.to_le_bytes().to_vec();
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&(-1i64).to_le_bytes());
        block(0x0a0d_0d0a, &body)
    }

    /// An interface description; `tsresol` adds the if_tsresol option.
    fn interface(linktype: u16, tsresol: Option<u8>) -> Vec<u8> {
        let mut body = linktype.to_le_bytes().to_vec();
        body.extend_from_slice(&[0, 0]);
        body.extend_from_slice(&65535u32.to_le_bytes());
        if let Some(r) = tsresol {
            body.extend_from_slice(&9u16.to_le_bytes());
            body.extend_from_slice(&1u16.to_le_bytes());
            body.extend_from_slice(&[r, 0, 0, 0]);
            body.extend_from_slice(&[0, 0, 0, 0]);
        }
        block(1, &body)
    }

    fn packet(if_id: u32, ts: u64, data: &[u8]) -> Vec<u8> {
        let mut body = if_id.to_le_bytes().to_vec();
        body.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        body.extend_from_slice(&(ts as u32).to_le_bytes());
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(data);
        body.resize(body.len().div_ceil(4) * 4, 0);
        block(6, &body)
    }

    #[test]
    fn pcapng_interfaces_have_their_own_link_type_and_clock() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = section();
        f.extend(interface(1, None)); // Ethernet, microseconds
        f.extend(interface(101, Some(9))); // raw IP, nanoseconds
        f.extend(packet(1, 1_000_000_000_123, &[0x45; 21]));
        f.extend(packet(0, 5_000_001, &[7; 60]));
        // A second section starts afresh: its interface 0 is Linux cooked.
        f.extend(section());
        f.extend(interface(113, Some(3))); // milliseconds
        f.extend(packet(0, 42_001, &[1; 30]));
        // Powers of two: 2^20 units per second, and 2^0 (seconds).
        f.extend(interface(113, Some(0x80 | 20)));
        f.extend(interface(113, Some(0x80)));
        f.extend(packet(1, 3 << 20 | 1 << 19, &[2; 30]));
        f.extend(packet(2, 7, &[3; 30]));
        let (recs, err) = read_all(&write(&dir, "multi.pcapng", &f));
        assert_eq!(err, None);
        let got: Vec<(i32, u64, usize)> = recs
            .iter()
            .map(|r| (r.linktype, r.ts_ns, r.data.len()))
            .collect();
        assert_eq!(
            got,
            [
                (101, 1_000_000_000_123, 21),
                (1, 5_000_001_000, 60),
                (113, 42_001_000_000, 30),
                (113, 3_500_000_000, 30),
                (113, 7_000_000_000, 30),
            ]
        );
    }

    #[test]
    fn a_fifo_fed_in_small_pieces_reads_like_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = section();
        f.extend(interface(1, Some(9)));
        for i in 0..50u64 {
            f.extend(packet(0, 1_000 + i, &[i as u8; 60]));
        }
        let file = write(&dir, "whole.pcapng", &f);
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: c is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        let writer_path = fifo.clone();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let mut w = File::options().write(true).open(writer_path).unwrap();
            for piece in f.chunks(5) {
                w.write_all(piece).unwrap();
                w.flush().unwrap();
            }
        });
        // Opening it twice, as an earlier reader did to sniff the format, hangs: bound the wait.
        let (done, got) = std::sync::mpsc::channel();
        std::thread::spawn(move || done.send(read_all(&fifo)));
        let (from_fifo, err) = got
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("reading the FIFO hung");
        writer.join().unwrap();
        assert_eq!(err, None);
        let (from_file, _) = read_all(&file);
        assert_eq!(from_fifo.len(), 50);
        assert_eq!(from_fifo, from_file);
    }

    #[test]
    fn damaged_pcapng_says_what_where_and_which_frame_in_words() {
        let dir = tempfile::tempdir().unwrap();
        // A section header whose byte-order magic is wrong.
        let mut f = section();
        f[8..12].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        f.extend(interface(1, None));
        let (_, err) = read_all(&write(&dir, "bad-section.pcapng", &f));
        let err = err.unwrap();
        assert!(matches!(err, CaptureError::DamagedHeader { .. }), "{err:?}");
        assert!(err.to_string().contains("pcapng"), "{err}");

        // Two good frames, then a block whose trailing length disagrees with its leading one.
        let mut f = section();
        f.extend(interface(1, None));
        f.extend(packet(0, 1, &[1; 40]));
        f.extend(packet(0, 2, &[2; 40]));
        let at = f.len();
        let mut bad = packet(0, 3, &[3; 40]);
        let n = bad.len();
        bad[n - 4..].copy_from_slice(&999u32.to_le_bytes());
        f.extend(bad);
        let (recs, err) = read_all(&write(&dir, "bad-block.pcapng", &f));
        assert_eq!(recs.len(), 2, "the frames before the damage are kept");
        let message = err.expect("an error for the damaged block").to_string();
        assert!(
            message.contains(&format!("byte {at}")) && message.contains("frame 3"),
            "{message}"
        );
        for internals in ["Nom", "ErrorKind", "Verify", "["] {
            assert!(!message.contains(internals), "parser internals: {message}");
        }
    }

    #[test]
    fn every_tsresol_exponent_has_its_units() {
        assert_eq!(units_per_second(6), 1_000_000);
        assert_eq!(units_per_second(9), 1_000_000_000);
        assert_eq!(units_per_second(0), 1);
        assert_eq!(units_per_second(0x80 | 10), 1024);
        assert_eq!(units_per_second(0x80 | 127), 1 << 127);
        assert_eq!(units_per_second(38), 10u128.pow(38));
        // Beyond a u128: every u64 timestamp is below a nanosecond, and nothing panics.
        assert_eq!(units_per_second(39), u128::MAX);
        assert_eq!(units_per_second(127), u128::MAX);
    }

    #[test]
    fn broken_files_get_errors_with_offsets_and_keep_what_came_before() {
        let dir = tempfile::tempdir().unwrap();
        let (_, err) = read_all(&write(&dir, "empty.pcap", &[]));
        assert!(matches!(err, Some(CaptureError::Empty { .. })), "{err:?}");

        let (recs, err) = read_all(&write(&dir, "header-only.pcap", &pcap_header(false, 1)));
        assert_eq!(
            (recs.len(), err),
            (0, None),
            "a header alone is an empty capture"
        );

        let (_, err) = read_all(&write(
            &dir,
            "magic.pcap",
            b"GIF89a\x01\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        ));
        let err = err.unwrap();
        assert!(matches!(err, CaptureError::NotACapture { .. }), "{err:?}");
        assert!(err.to_string().contains("47 49 46 38"), "{err}");

        let mut f = pcap_header(false, 1);
        f.extend(pcap_record(1, 0, &[9; 30]));
        let cut = f.len();
        f.extend(pcap_record(2, 0, &[9; 30]));
        f.truncate(cut + 25);
        let (recs, err) = read_all(&write(&dir, "truncated.pcap", &f));
        assert_eq!(recs.len(), 1, "the record before the damage is kept");
        assert_eq!(
            err,
            Some(CaptureError::Truncated {
                path: dir.path().join("truncated.pcap"),
                offset: cut as u64,
                frame: 2,
            })
        );

        let mut f = pcap_header(false, 1);
        f.extend(pcap_record(1, 0, &[9; 30]));
        let at = f.len();
        for v in [2u32, 0, 0x7fff_0000, 0x7fff_0000] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        f.extend_from_slice(&[0; 64]);
        let (recs, err) = read_all(&write(&dir, "huge.pcap", &f));
        assert_eq!(recs.len(), 1);
        let err = err.expect("an error for the huge record");
        assert!(err.to_string().contains(&format!("byte {at}")), "{err}");
    }
}
