//! Properties of everything that reads untrusted bytes, checked on generated inputs (proptest):
//! the capture reader, the link-layer conversion and the ring-record decoder end every input in
//! records or a clear error, never a panic; and a capture cut at any byte keeps every record
//! before the cut. Unprivileged: no kernel program runs here (the replay tests run the whole
//! path on real captures).

use std::path::{Path, PathBuf};

use proptest::prelude::*;

#[path = "../../fuzz/harness.rs"]
mod harness;
use rst_tracer::{
    event::{decode, Clock},
    source::{
        capture::{CaptureError, CaptureReader, Record},
        link,
    },
};

/// A capture of the shared corpus (read-only, beside this checkout); None, said loudly once
/// (see `rst_tracer_lab::skip`), where the corpus is not there.
fn corpus(name: &str) -> Option<Vec<u8>> {
    static SAID: std::sync::Once = std::sync::Once::new();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/captures")
        .join(name);
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            SAID.call_once(|| {
                rst_tracer_lab::skip(&format!(
                    "the shared capture corpus is missing ({}: {e})",
                    path.display()
                ))
            });
            None
        }
    }
}

/// Every record of `bytes` read as a capture file, and the error that ended it, if any; every
/// record also goes through the link-layer conversion.
fn read_all(dir: &tempfile::TempDir, bytes: &[u8]) -> (Vec<Record>, Option<CaptureError>) {
    let path: PathBuf = dir.path().join("input");
    std::fs::write(&path, bytes).unwrap();
    let mut reader = match CaptureReader::open(&path) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut records = Vec::new();
    let mut frame = Vec::new();
    loop {
        match reader.next_record() {
            Ok(Some(r)) => {
                let _ = link::to_ethernet(r.linktype, &r.data, &mut frame);
                records.push(r);
            }
            Ok(None) => return (records, None),
            Err(e) => return (records, Some(e)),
        }
    }
}

/// A pcap header (little-endian, microseconds) for `linktype`.
fn pcap_header(linktype: u32) -> Vec<u8> {
    let mut h = 0xa1b2_c3d4u32.to_le_bytes().to_vec();
    h.extend_from_slice(&2u16.to_le_bytes());
    h.extend_from_slice(&4u16.to_le_bytes());
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&65535u32.to_le_bytes());
    h.extend_from_slice(&linktype.to_le_bytes());
    h
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any bytes: records or an error with a message, never a panic.
    #[test]
    fn any_bytes_end_in_records_or_a_clear_error(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let dir = tempfile::tempdir().unwrap();
        let (_, err) = read_all(&dir, &bytes);
        if let Some(e) = err {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    /// A pcap header of any link type, then any bytes: the body is where parsers get far.
    #[test]
    fn any_records_after_a_valid_header_end_cleanly(
        linktype in prop_oneof![Just(1u32), Just(101), Just(113), Just(276), Just(0), any::<u32>()],
        body in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = pcap_header(linktype);
        bytes.extend(body);
        let (_, err) = read_all(&dir, &bytes);
        if let Some(e) = err {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    /// Any frame under any link type: converted or refused, never a panic.
    #[test]
    fn any_frame_converts_or_is_refused(linktype in any::<i32>(), data in proptest::collection::vec(any::<u8>(), 0..1600)) {
        let mut out = Vec::new();
        if link::to_ethernet(linktype, &data, &mut out).is_ok() {
            prop_assert!(out.len() >= 14, "a converted frame has an Ethernet header");
        }
    }

    /// Any ring record: decoded or refused, never a panic.
    #[test]
    fn any_ring_record_decodes_or_is_refused(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        let clock = Clock { monotonic_to_epoch_ns: 0 };
        let _ = decode(&bytes, &clock);
    }

    /// A real capture cut at any byte keeps every record that ended before the cut, and
    /// says where it was cut.
    #[test]
    fn a_capture_cut_anywhere_keeps_every_record_before_the_cut(cut_at in 0.0f64..1.0) {
        let Some(whole) = corpus("censor/gfw-test1.pcap") else {
            return Ok(());
        };
        let dir = tempfile::tempdir().unwrap();
        let (all, err) = read_all(&dir, &whole);
        prop_assert!(err.is_none());
        let cut = (whole.len() as f64 * cut_at) as usize;
        let (kept, err) = read_all(&dir, &whole[..cut]);
        // A record is in the cut file when its header and data end by the cut.
        let complete: Vec<&Record> = all
            .iter()
            .filter(|r| r.offset as usize + 16 + r.data.len() <= cut)
            .collect();
        prop_assert_eq!(kept.len(), complete.len());
        for (k, c) in kept.iter().zip(&complete) {
            prop_assert_eq!(k, *c);
        }
        // Where the last complete record ends (the 24-byte file header when none is).
        let boundary = complete.last().map_or(24, |r| r.offset as usize + 16 + r.data.len());
        match err {
            None => prop_assert_eq!(cut, boundary, "no error, so the cut fell between records"),
            Some(CaptureError::Empty { .. }) => prop_assert_eq!(cut, 0),
            Some(CaptureError::Truncated { offset, .. }) if cut < 24 => prop_assert_eq!(offset, 0),
            Some(CaptureError::Truncated { offset, .. }) => {
                prop_assert_eq!(offset as usize, boundary, "the error names where the cut record starts");
            }
            Some(e) => prop_assert!(false, "cut at {}: {}", cut, e),
        }
    }
}

/// The fuzzers' regression corpus (`fuzz/regressions/<target>/`: inputs that once crashed or
/// that pin a case) through the same functions as the fuzz targets.
#[test]
fn the_fuzz_regression_corpus_replays_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
    let mut replayed = 0;
    for (target, run) in harness::TARGETS {
        let dir = root.join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            run(&std::fs::read(&path).unwrap());
            replayed += 1;
        }
    }
    assert!(
        replayed > 0,
        "no regression inputs under {}",
        root.display()
    );
}
