//! What rst-tracer's kernel program and the benchmarks' baseline share: the packet parser, so
//! the baseline's parse floor measures the very code the tracer runs.
#![no_std]

pub mod parse;
