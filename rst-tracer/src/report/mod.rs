//! Sinks: where records go. `text` is for people, `json` (JSON Lines) for machines; both receive
//! the same records from the pipeline ([`crate::pipeline::record`], [`crate::pipeline::summary`])
//! and only read them.

pub mod json;
pub mod text;

use std::io;

use crate::pipeline::Sink;

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One line per reset and a summary block per interval, for people.
    Text,
    /// JSON Lines, one object per line with a `"type"` field.
    Json,
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
