//! Sinks: where records go. `text` is for people, `json` (JSON Lines) for machines; both receive
//! the same records.

pub mod json;
pub mod record;
pub mod summary;
pub mod text;

use std::io;

use record::{AfterResetRecord, ResetRecord, SampleRecord, SilenceRecord};
use summary::{StatsRecord, SummaryRecord};

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line per reset and a summary block per interval, for people.
    Text,
    /// JSON Lines, one object per line with a `"type"` field.
    Json,
}

/// Receives every record the pipeline produces.
pub trait Sink {
    /// A reset.
    fn reset(&mut self, r: &ResetRecord) -> io::Result<()>;
    /// The first packet from a side after a reset.
    fn after_reset(&mut self, r: &AfterResetRecord) -> io::Result<()>;
    /// A retransmission or TTL-change sample.
    fn sample(&mut self, r: &SampleRecord) -> io::Result<()>;
    /// A flow that fell silent one way.
    fn silence(&mut self, r: &SilenceRecord) -> io::Result<()>;
    /// An interval summary with the counters at its end.
    fn summary(&mut self, s: &SummaryRecord, stats: &StatsRecord) -> io::Result<()>;
    /// Hands everything written so far to the output. Sinks buffer; the caller flushes once
    /// per batch of events (live: at every wake-up), so a reader still sees each reset as soon
    /// as its batch is done, without one write per line.
    fn flush(&mut self) -> io::Result<()>;
}

/// Output buffered between flushes: about this many bytes a write.
const OUTPUT_BUFFER: usize = 64 * 1024;

/// A sink of `format` writing to `out`.
pub fn sink(format: Format, out: Box<dyn io::Write + Send>) -> Box<dyn Sink + Send> {
    match format {
        Format::Text => Box::new(text::TextSink::new(Box::new(io::BufWriter::with_capacity(
            OUTPUT_BUFFER,
            out,
        )))),
        Format::Json => Box::new(json::JsonSink::new(out, OUTPUT_BUFFER)),
    }
}
