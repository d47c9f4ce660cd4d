//! rst-tracer's userspace: loads the kernel program, attaches it, and turns its events into
//! reports of TCP resets with the evidence of who sent them.
//!
//! Data path: packet -> hook -> parse -> flow (the kernel program) -> ring -> [`event`] decoding
//! -> [`flows`] table -> [`forensics`] -> verdict -> [`report`] sinks (text, JSON Lines, metrics), by way
//! of the [`pipeline`]; the rings are read by a [`source`] (live, or a replayed capture).
//!
//! The modules are in layers, each importing only from the layers below it (and within its own
//! without a cycle; `tests/layers.rs` checks it), bottom first:
//!
//! 1. [`wire`]: how the output writes values (flag names, payload views, RFC 3339 times,
//!    microsecond differences, JSON text).
//! 2. Decoding and flow state: [`event`], [`flows`], [`stack`] (tracefs formats), [`counters`]
//!    (the kernel's counters and flow map).
//! 3. [`forensics`]: pure functions of a case, weighed into a verdict.
//! 4. [`pipeline`]: events -> flow table -> settle window -> verdict -> the records and summaries
//!    it hands a [`pipeline::Sink`].
//! 5. [`report`]: the sinks, which only read those records.
//! 6. [`source`] and the command line: [`cli`], [`attach`], [`exporter`] (serving the
//!    metrics), [`iface`], [`privileges`], [`object`] (and the binary's `main.rs`).
#![deny(missing_docs)]

pub mod attach;
pub mod cli;
pub mod counters;
pub mod event;
pub mod exporter;
pub mod flows;
pub mod forensics;
pub mod iface;
pub mod object;
pub mod pipeline;
pub mod privileges;
#[cfg(test)]
mod readme;
pub mod report;
pub mod source;
pub mod tracepoints;
pub mod wire;
