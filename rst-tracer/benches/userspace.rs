//! Userspace throughput and memory (`cargo xtask bench`): synthetic ring records (resets,
//! after-reset packets, retransmission samples over many flows) through decode and the whole
//! pipeline (flow table, settle window, forensics, JSON to a discarding writer) on one core,
//! beside decoding alone in the same run. Memory per flow: the userspace flow table measured
//! with a counting allocator, and the kernel flow map's locked memory (fdinfo `memlock`) divided
//! by its capacity. Writes the `userspace` section of `summary.json` in `RST_TRACER_BENCH_OUT`.

#[path = "common/summary.rs"]
mod summary;
use summary::median;

use std::{
    alloc::{GlobalAlloc, Layout},
    io,
    os::fd::{AsFd, AsRawFd},
    sync::atomic::{AtomicIsize, Ordering},
    time::Instant,
};

use anyhow::{anyhow, Context, Result};
use aya::maps::Map;
use bytes::Bytes;
use mimalloc::MiMalloc;
use rst_tracer::{
    attach::LoadOptions,
    event::{decode, Clock, Event, Reset},
    flows::FlowTable,
    forensics, iface,
    pipeline::{record::ResetRecord, Pipeline, Sink},
    report::{self, Format},
    source::prog_run::ProgRun,
};
use rst_tracer_common::{
    event::{
        Direction, EventHeader, EventKind, Hook, PacketInfo, RstEvent, SampleEvent, EVENT_VERSION,
        RST_FRAME_MAX, TCP_ACK, TCP_RST,
    },
    flow::{FlowKey, FlowState, SideState, FAMILY_IPV4, SIDE_SEEN},
    names::MAP_FLOWS,
};
use serde_json::json;

/// Bytes the process has allocated and not freed.
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

/// The binary's allocator (mimalloc), counting live bytes.
struct Counting;

// SAFETY: forwards to mimalloc unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { MiMalloc.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Flows in the synthetic stream.
const FLOWS: u32 = 20_000;
/// Flows put in the userspace table to measure its memory.
const MEMORY_FLOWS: u32 = 100_000;
/// Events per second the pipeline must sustain on one core.
const BUDGET_EVENTS_PER_S: f64 = 1_000_000.0;

/// The bytes of a plain-data `#[repr(C)]` event.
fn bytes_of<T: Copy>(v: &T) -> Bytes {
    // SAFETY: T is one of the integer-only #[repr(C)] event structs; reading its bytes is sound.
    let s = unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) };
    Bytes::copy_from_slice(s)
}

fn header(kind: EventKind, len: usize, key: FlowKey, side: u8, ts_ns: u64) -> EventHeader {
    EventHeader {
        version: EVENT_VERSION,
        kind: kind as u8,
        len: len as u16,
        ifindex: 2,
        ts_ns,
        key,
        hook: Hook::TcIngress as u8,
        direction: Direction::Ingress as u8,
        side,
        ..EventHeader::default()
    }
}

/// A side that has sent a few packets with a steady TTL.
fn side(ttl: u8, seq_next: u32, last_ns: u64) -> SideState {
    SideState {
        last_ns,
        packets: 10,
        bytes: 5_000,
        flags: SIDE_SEEN,
        ttl_last: ttl,
        ttl_min: ttl,
        ttl_max: ttl,
        ttl_samples: 10,
        last_ip_id: 100,
        seq_next,
        last_seq: seq_next.wrapping_sub(500),
        last_ack: 1,
        last_flags: TCP_ACK,
        window: 500,
        ..SideState::default()
    }
}

/// Per flow: a reset, the first packet after it, and three retransmission samples, 1 ms apart
/// from flow to flow.
fn stream() -> Vec<Bytes> {
    let mut out = Vec::new();
    for i in 0..FLOWS {
        let t = 1_000_000_000 + u64::from(i) * 1_000_000;
        let (key, _) = FlowKey::canonical(
            FAMILY_IPV4,
            &[0x0a00_0000 | i, 0, 0, 0],
            40_000,
            &[0x0a64_0001, 0, 0, 0],
            443,
        );
        let mut flow = FlowState::default();
        flow.sides[0] = side(63, 6_000, t - 5_000_000);
        flow.sides[1] = side(57, 90_000, t - 2_000_000);
        let rst = RstEvent {
            header: header(EventKind::Rst, size_of::<RstEvent>(), key, 0, t),
            rst: PacketInfo {
                seq: 6_000,
                flags: TCP_RST,
                ttl: 63,
                ip_id: 101,
                ..PacketInfo::default()
            },
            flow,
            payload_captured: 0,
            _pad: 0,
            frame_captured: 0,
            frame_len: 0,
            payload: [0; 64],
            frame: [0; RST_FRAME_MAX],
        };
        out.push(bytes_of(&rst));
        let sample = |kind: EventKind, side_ix: u8, ts: u64| SampleEvent {
            header: header(kind, size_of::<SampleEvent>(), key, side_ix, ts),
            packet: PacketInfo {
                seq: 90_000,
                flags: TCP_ACK,
                ttl: 57,
                ..PacketInfo::default()
            },
            sender: flow.sides[usize::from(side_ix)],
        };
        out.push(bytes_of(&sample(EventKind::AfterRst, 1, t + 100_000)));
        for k in 0..3 {
            out.push(bytes_of(&sample(
                EventKind::Retransmit,
                1,
                t + 200_000 * (k + 2),
            )));
        }
    }
    out
}

/// The kernel flow map's locked memory per entry, from its fdinfo.
fn kernel_bytes_per_flow() -> Result<f64> {
    let run = ProgRun::load(&LoadOptions::default())?;
    let Some(Map::LruHashMap(data)) = run.ebpf().map(MAP_FLOWS) else {
        return Err(anyhow!("no LRU hash {MAP_FLOWS}"));
    };
    let fd = data.fd().as_fd().as_raw_fd();
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))?;
    let field = |name: &str| -> Result<f64> {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| anyhow!("no {name} in the map's fdinfo"))
    };
    Ok(field("memlock:")? / field("max_entries:")?)
}

/// Live bytes the userspace flow table holds per flow, with `MEMORY_FLOWS` flows in it.
/// With `reset`, each flow also remembers that reset, as a flow that was reset does.
fn user_bytes_per_flow(reset: Option<&Reset>) -> f64 {
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let mut table = FlowTable::new(MEMORY_FLOWS as usize, u64::MAX);
    for i in 0..MEMORY_FLOWS {
        let (key, _) =
            FlowKey::canonical(FAMILY_IPV4, &[i, 0, 0, 0], 1, &[0xffff_ffff, 0, 0, 0], 2);
        let flow = table.touch(&key, 1 + u64::from(i));
        if let Some(r) = reset {
            flow.remember(u64::from(i), forensics::neighbour(r, false));
        }
    }
    let after = LIVE_BYTES.load(Ordering::Relaxed);
    drop(table);
    (after - before) as f64 / f64::from(MEMORY_FLOWS)
}

/// The first reset of the synthetic stream, decoded.
fn first_reset(records: &[Bytes], clock: &Clock) -> Result<Reset> {
    records
        .iter()
        .find_map(|r| match decode(r, clock) {
            Ok(Event::Reset(reset)) => Some(*reset),
            _ => None,
        })
        .ok_or_else(|| anyhow!("the synthetic stream has no reset"))
}

/// A sink that drops every record: the pipeline's cost without output.
struct Discard;

impl Sink for Discard {
    fn reset(&mut self, _: &ResetRecord) -> io::Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Events per second through the whole pipeline into `sink`.
fn pipeline_rate(records: &[Bytes], clock: Clock, sink: Box<dyn Sink + Send>) -> Result<f64> {
    let mut pipeline = Pipeline::new(sink, clock, 65_536, 0);
    pipeline.set_iface_names(iface::name_of);
    let start = Instant::now();
    for r in records {
        pipeline.record(r).context("pipeline")?;
    }
    pipeline.settle_all()?;
    pipeline.flush()?;
    Ok(records.len() as f64 / start.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    let rounds = summary::rounds();
    let records = stream();
    let clock = Clock {
        monotonic_to_epoch_ns: 0,
    };
    let (mut decode_rates, mut pipeline_rates, mut discard_rates) =
        (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let start = Instant::now();
        let mut decoded = 0usize;
        for r in &records {
            decoded += decode(r, &clock).is_ok() as usize;
        }
        if decoded != records.len() {
            return Err(anyhow!(
                "{} of {} synthetic records did not decode",
                records.len() - decoded,
                records.len()
            ));
        }
        decode_rates.push(records.len() as f64 / start.elapsed().as_secs_f64());

        discard_rates.push(pipeline_rate(&records, clock, Box::new(Discard))?);
        let json = report::sink(Format::Json, Box::new(io::sink()));
        pipeline_rates.push(pipeline_rate(&records, clock, json)?);
    }
    let (decode_rate, discard_rate, rate) = (
        median(decode_rates),
        median(discard_rates),
        median(pipeline_rates),
    );
    let user = user_bytes_per_flow(None);
    let user_reset = user_bytes_per_flow(Some(&first_reset(&records, &clock)?));
    let kernel = kernel_bytes_per_flow()?;

    println!(
        "userspace, one core ({rounds} rounds of {} records over {FLOWS} flows)",
        records.len()
    );
    println!("  decode only (baseline)              {decode_rate:>12.0} events/s");
    println!(
        "  decode + pipeline, output discarded {discard_rate:>12.0} events/s  ({:.2}x of decode only)",
        discard_rate / decode_rate
    );
    println!(
        "  decode + pipeline + JSON            {rate:>12.0} events/s  ({:.2}x of decode only)",
        rate / decode_rate
    );
    println!(
        "  memory per flow: kernel {kernel:.0} B, userspace {user:.0} B ({user_reset:.0} B for a flow that was reset)"
    );

    let mut values = serde_json::Map::new();
    summary::budget(
        &mut values,
        &format!(">= {BUDGET_EVENTS_PER_S:.0} events/s on one core, JSON written"),
        &format!("{rate:.0} (output discarded: {discard_rate:.0})"),
        rate >= BUDGET_EVENTS_PER_S,
    );
    values.insert("events_per_s".into(), json!(rate));
    values.insert("decode_only_events_per_s".into(), json!(decode_rate));
    values.insert("no_output_events_per_s".into(), json!(discard_rate));
    values.insert("bytes_per_flow_kernel".into(), json!(kernel));
    values.insert("bytes_per_flow_user".into(), json!(user));
    values.insert("bytes_per_reset_flow_user".into(), json!(user_reset));
    summary::write_section(&summary::out_dir(), "userspace", values)
}
