//! What each fuzz target does with its input. The test suite replays the regression corpus
//! (`fuzz/regressions/<target>/`) through the same functions (`rst-tracer/tests/properties.rs`),
//! so a crash once found stays fixed.

use std::io::Cursor;

use rst_tracer::{
    event::{decode, Clock},
    source::{
        capture::{CaptureReader, Input},
        link,
    },
};

/// Link types the `link` target picks from by its input's first byte (the rest any i32).
const LINKTYPES: [i32; 8] = [1, 101, 113, 276, 0, 228, 229, 10];

/// A capture file: every record read and converted to Ethernet, until the end or an error.
pub fn capture(data: &[u8]) {
    let input = Input::from_reader("fuzz input", Box::new(Cursor::new(data.to_vec())));
    let Ok(mut reader) = CaptureReader::from_input(input) else {
        return;
    };
    let mut frame = Vec::new();
    while let Ok(Some(record)) = reader.next_record() {
        let _ = link::to_ethernet(record.linktype, &record.data, &mut frame);
    }
}

/// One frame: a link type (a known one by the first byte, or the first four bytes as any),
/// then the frame.
pub fn link(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (linktype, frame) = match LINKTYPES.get(usize::from(pick)) {
        Some(&known) => (known, rest),
        None if rest.len() >= 4 => (
            i32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]),
            &rest[4..],
        ),
        None => return,
    };
    let mut out = Vec::new();
    let _ = link::to_ethernet(linktype, frame, &mut out);
}

/// One ring-buffer record through the decoder.
pub fn ring_record(data: &[u8]) {
    let _ = decode(
        data,
        &Clock {
            monotonic_to_epoch_ns: 0,
        },
    );
}

/// What a target does with one input.
pub type Target = fn(&[u8]);

/// Every target: its name (as in `fuzz/Cargo.toml`) and what it does.
pub const TARGETS: [(&str, Target); 3] = [
    ("capture", capture),
    ("link", link),
    ("decode", ring_record),
];
