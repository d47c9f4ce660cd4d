//! Running the loaded kernel program over frames with BPF_PROG_TEST_RUN, without attaching it.
//!
//! Used wherever frames do not arrive from a NIC: the kernel tests, the benchmarks, and capture
//! replay. Frames run through exactly the program that is attached live; XDP runs may carry
//! replay metadata (a capture timestamp) in front of the frame.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use aya::{
    maps::{Array, MapData, RingBuf},
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
    Ebpf,
};
use bytes::Bytes;
use rst_tracer_common::{
    event::Hook,
    names::{
        MAP_REPLAYED_FLOW, MAP_RST_RING, MAP_SAMPLE_RING, PROG_REPLAY, PROG_TC_EGRESS,
        PROG_TC_INGRESS, PROG_XDP,
    },
    replay::{ReplayMeta, ReplayedFlow},
};

use crate::{
    attach::{self, LoadOptions},
    counters::{self, CounterSnapshot},
    object,
};

/// The kernel program, loaded but not attached, with its rings.
pub struct ProgRun {
    ebpf: Ebpf,
    rst_ring: RingBuf<MapData>,
    sample_ring: RingBuf<MapData>,
}

/// Size of `struct xdp_md` (six u32 fields).
const XDP_MD_LEN: usize = 24;

impl ProgRun {
    /// Loads the embedded object's maps and replay's XDP program; the live XDP and TC programs
    /// are loaded the first time [`ProgRun::xdp`] or [`ProgRun::tc`] needs one (each costs a
    /// verifier run).
    ///
    /// # Errors
    /// No embedded object, missing privileges, or a program the kernel refuses.
    pub fn load(opts: &LoadOptions) -> Result<ProgRun> {
        crate::privileges::check()?;
        let mut ebpf = attach::open(object::embedded()?, opts)?;
        attach::load_program(&mut ebpf, PROG_REPLAY)?;
        let rst_ring = take_ring(&mut ebpf, MAP_RST_RING)?;
        let sample_ring = take_ring(&mut ebpf, MAP_SAMPLE_RING)?;
        Ok(ProgRun {
            ebpf,
            rst_ring,
            sample_ring,
        })
    }

    /// The loaded object (maps, programs).
    pub fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }

    /// Runs an XDP program over `frame`, `repeat` times: with `meta`, replay's program, the frame
    /// carrying replay metadata (its capture timestamp) exactly as capture replay sends it;
    /// without, the live XDP program. Returns the XDP action and the kernel's mean time per run.
    ///
    /// # Errors
    /// When the kernel refuses the program or the test run.
    pub fn xdp(
        &mut self,
        frame: &[u8],
        meta: Option<ReplayMeta>,
        repeat: u32,
    ) -> Result<(u32, Duration)> {
        let name = if meta.is_some() {
            PROG_REPLAY
        } else {
            PROG_XDP
        };
        let prog: &mut Xdp = attach::loaded(&mut self.ebpf, name)?.try_into()?;
        let mut data = Vec::with_capacity(frame.len() + 16);
        let meta_len = match meta {
            Some(m) => {
                data.extend_from_slice(&m.to_bytes());
                16
            }
            None => 0,
        };
        data.extend_from_slice(frame);
        // struct xdp_md { data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex }
        let mut ctx = [0u8; XDP_MD_LEN];
        ctx[0..4].copy_from_slice(&(meta_len as u32).to_ne_bytes());
        ctx[4..8].copy_from_slice(&(data.len() as u32).to_ne_bytes());
        let out = prog
            .test_run(TestRunOptions {
                data_in: Some(&data),
                ctx_in: Some(&ctx),
                repeat: repeat.max(1),
                ..TestRunOptions::default()
            })
            .context("BPF_PROG_TEST_RUN of the XDP program")?;
        Ok((out.return_value, out.duration))
    }

    /// Runs a TC program (`Hook::TcIngress` or `Hook::TcEgress`) over `frame`, `repeat` times.
    ///
    /// # Errors
    /// A hook that is not a TC hook, or a refused test run.
    pub fn tc(&mut self, hook: Hook, frame: &[u8], repeat: u32) -> Result<(u32, Duration)> {
        let name = match hook {
            Hook::TcIngress => PROG_TC_INGRESS,
            Hook::TcEgress => PROG_TC_EGRESS,
            other => return Err(anyhow!("{} is not a TC hook", other.name())),
        };
        let prog: &mut SchedClassifier = attach::loaded(&mut self.ebpf, name)?.try_into()?;
        let out = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                repeat: repeat.max(1),
                ..TestRunOptions::default()
            })
            .with_context(|| format!("BPF_PROG_TEST_RUN of {name}"))?;
        Ok((out.return_value, out.duration))
    }

    /// What `rst_replay` parsed out of the frame it ran last: its flow and TCP flags, or None
    /// when it was not a TCP segment.
    ///
    /// # Errors
    /// When the map cannot be read.
    pub fn replayed_flow(&self) -> Result<Option<ReplayedFlow>> {
        let map = self
            .ebpf
            .map(MAP_REPLAYED_FLOW)
            .with_context(|| format!("map {MAP_REPLAYED_FLOW} missing"))?;
        let slot: Array<&MapData, ReplayedFlow> = Array::try_from(map)?;
        let seen = slot.get(&0, 0)?;
        Ok((seen.tcp == 1).then_some(seen))
    }

    /// Takes every record waiting in the rings, the reset ring first.
    pub fn drain(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        for ring in [&mut self.rst_ring, &mut self.sample_ring] {
            while let Some(item) = ring.next() {
                out.push(Bytes::copy_from_slice(&item));
            }
        }
        out
    }

    /// The kernel counters and flow-table size.
    ///
    /// # Errors
    /// When a map cannot be read.
    pub fn counters(&self) -> Result<CounterSnapshot> {
        counters::snapshot(&self.ebpf, true)
    }
}

/// Takes a ring map out of the object.
///
/// # Errors
/// When the map is missing or not a ring buffer.
pub fn take_ring(ebpf: &mut Ebpf, name: &str) -> Result<RingBuf<MapData>> {
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| anyhow!("map {name} missing from the eBPF object"))?;
    Ok(RingBuf::try_from(map)?)
}
