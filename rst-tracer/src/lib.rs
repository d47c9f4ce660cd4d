//! rst-tracer's userspace: loads the kernel program, attaches it, and turns its events into
//! reports of TCP resets with the evidence of who sent them.
//!
//! Data path: ring buffers ([`source`]) -> [`event`] decoding -> [`pipeline`] ([`flows`] joins
//! events per flow) -> [`report`] sinks (text, JSON Lines).
#![deny(missing_docs)]

pub mod attach;
pub mod cli;
pub mod counters;
pub mod event;
pub mod flows;
pub mod forensics;
pub mod iface;
pub mod object;
pub mod pipeline;
pub mod privileges;
pub mod report;
pub mod source;
pub mod stack;
pub mod wire;
