//! The contract between the rst-tracer kernel program and its userspace loader.
//!
//! Everything that crosses the kernel/user boundary is defined here exactly once: the flow-table key
//! and value, the ring-buffer events, the counter indices, the replay metadata, and the names of
//! programs, maps and load-time globals. Both sides also share the pure helpers that interpret those
//! values (sequence-space arithmetic, initial-TTL guesses, flow-key canonicalisation), so that the
//! kernel and the forensics in userspace can never disagree about what a number means.
//!
//! All wire types are `#[repr(C)]` plain data with explicit padding fields and compile-time size
//! checks; flags are integers, never `bool`. Multi-byte integers are in host byte order unless a
//! field's doc says otherwise (addresses are kept in network byte order, as on the wire).
#![no_std]
#![deny(missing_docs)]

pub mod counter;
pub mod event;
pub mod flow;
pub mod names;
pub mod replay;
pub mod seq;
pub mod ttl;

/// Implements `aya::Pod` for the types userspace reads out of maps (userspace builds only).
#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are #[repr(C)] structs of integers and integer arrays with explicit
    // padding fields, checked by the const size asserts beside their definitions.
    unsafe impl aya::Pod for crate::flow::FlowKey {}
    unsafe impl aya::Pod for crate::flow::DroppedReset {}
    unsafe impl aya::Pod for crate::flow::FlowState {}
    unsafe impl aya::Pod for crate::event::TracepointOffsets {}
    unsafe impl aya::Pod for crate::replay::ReplayedFlow {}
}
