//! JSON Lines sink: one object per line, each line handed to the (buffered) output in one write,
//! so a flush never leaves half a line.

use std::io::{self, Write};

use serde::Serialize;

use super::{
    record::{AfterResetRecord, ResetRecord, SampleRecord, SilenceRecord},
    summary::{StatsRecord, SummaryRecord},
    Sink,
};

/// Writes each record as one JSON object per line.
pub struct JsonSink {
    out: Box<dyn Write + Send>,
    /// The line being built: serialized here first so each line reaches `out` in one write.
    line: Vec<u8>,
}

impl JsonSink {
    /// A sink writing to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> JsonSink {
        JsonSink {
            out,
            line: Vec::with_capacity(4096),
        }
    }

    fn line<T: Serialize>(&mut self, value: &T) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, value)?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)
    }
}

impl Sink for JsonSink {
    fn reset(&mut self, r: &ResetRecord) -> io::Result<()> {
        self.line(r)
    }

    fn after_reset(&mut self, r: &AfterResetRecord) -> io::Result<()> {
        self.line(r)
    }

    fn sample(&mut self, r: &SampleRecord) -> io::Result<()> {
        self.line(r)
    }

    fn silence(&mut self, r: &SilenceRecord) -> io::Result<()> {
        self.line(r)
    }

    fn summary(&mut self, s: &SummaryRecord, stats: &StatsRecord) -> io::Result<()> {
        self.line(s)?;
        self.line(stats)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
