//! The benchmarks' baseline: an XDP program that does nothing but pass the packet. Every kernel
//! cost rst-tracer reports is measured beside this one in the same run.
#![no_std]
#![no_main]

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

/// Passes every packet.
#[xdp]
pub fn rst_baseline(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
