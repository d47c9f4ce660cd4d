//! Sinks: where records go. `text` is for people, `json` (JSON Lines) for machines, `metrics`
//! counts them for Prometheus, `pcapng` is a capture of the resets (`--pcap-out`), in replay with
//! the packets before each one that `context` kept; all receive the same records from the
//! pipeline ([`crate::pipeline::record`], [`crate::pipeline::summary`]) and only read them.

pub mod context;
pub mod json;
pub mod metrics;
pub mod pcapng;
pub mod text;

use std::{io, path::Path};

use crate::pipeline::{
    record::{AfterResetRecord, ResetRecord, SampleRecord, SilenceRecord},
    summary::{StatsRecord, SummaryRecord},
    Sink,
};

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

/// A sink of `format` writing to `out`, with, when `pcap_out` names a file, a pcapng capture of
/// the resets beside it (a [`Tee`]), and in it the packets before each reset that `context`
/// holds.
///
/// # Errors
/// When the pcapng file cannot be created.
pub fn sinks(
    format: Format,
    out: Box<dyn io::Write + Send>,
    pcap_out: Option<&Path>,
    context: Option<context::SharedContext>,
) -> io::Result<Box<dyn Sink + Send>> {
    let output = sink(format, out);
    Ok(match pcap_out {
        Some(path) => Box::new(Tee::new(vec![
            output,
            Box::new(pcapng::PcapngSink::create(path, context)?),
        ])),
        None => output,
    })
}

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

/// Several sinks fed the same records, in order (the output format beside, later, metrics or a
/// capture of the resets). Every sink gets every record even when one fails; the first error is
/// returned.
pub struct Tee {
    sinks: Vec<Box<dyn Sink + Send>>,
}

impl Tee {
    /// A tee over `sinks`.
    pub fn new(sinks: Vec<Box<dyn Sink + Send>>) -> Tee {
        Tee { sinks }
    }

    /// Calls `write` on each sink; the first error, after all have been called.
    fn each(&mut self, mut write: impl FnMut(&mut dyn Sink) -> io::Result<()>) -> io::Result<()> {
        let mut first = Ok(());
        for sink in &mut self.sinks {
            let result = write(sink.as_mut());
            if first.is_ok() {
                first = result;
            }
        }
        first
    }
}

impl Sink for Tee {
    fn reset(&mut self, r: &ResetRecord) -> io::Result<()> {
        self.each(|s| s.reset(r))
    }
    fn after_reset(&mut self, r: &AfterResetRecord) -> io::Result<()> {
        self.each(|s| s.after_reset(r))
    }
    fn sample(&mut self, r: &SampleRecord) -> io::Result<()> {
        self.each(|s| s.sample(r))
    }
    fn silence(&mut self, r: &SilenceRecord) -> io::Result<()> {
        self.each(|s| s.silence(r))
    }
    fn summary(&mut self, s: &SummaryRecord, stats: &StatsRecord) -> io::Result<()> {
        self.each(|sink| sink.summary(s, stats))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.each(|s| s.flush())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Counts the flushes it gets; fails each one when `fail`.
    struct Flushes {
        seen: Arc<Mutex<u32>>,
        fail: bool,
    }

    impl Sink for Flushes {
        fn reset(&mut self, _: &ResetRecord) -> io::Result<()> {
            Ok(())
        }
        fn flush(&mut self) -> io::Result<()> {
            *self.seen.lock().unwrap() += 1;
            if self.fail {
                return Err(io::Error::other("sink one failed"));
            }
            Ok(())
        }
    }

    #[test]
    fn a_tee_feeds_every_sink_and_returns_the_first_error() {
        let (one, two) = (Arc::new(Mutex::new(0)), Arc::new(Mutex::new(0)));
        let mut tee = Tee::new(vec![
            Box::new(Flushes {
                seen: one.clone(),
                fail: true,
            }),
            Box::new(Flushes {
                seen: two.clone(),
                fail: false,
            }),
        ]);
        let err = tee.flush().unwrap_err();
        assert_eq!(err.to_string(), "sink one failed");
        assert_eq!((*one.lock().unwrap(), *two.lock().unwrap()), (1, 1));
    }
}
