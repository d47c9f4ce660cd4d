//! Names of programs, maps and load-time globals: the strings userspace looks up in the object.
//!
//! The kernel crate names its statics and functions after these (a test checks the built object
//! has every one of them). Kernel object names are cut at 15 characters, so all of these fit.

/// XDP ingress program.
pub const PROG_XDP: &str = "rst_xdp";
/// Capture replay's XDP program (run by BPF_PROG_TEST_RUN, never attached).
pub const PROG_REPLAY: &str = "rst_replay";
/// TC (tcx) ingress program.
pub const PROG_TC_INGRESS: &str = "rst_tc_in";
/// TC (tcx) egress program.
pub const PROG_TC_EGRESS: &str = "rst_tc_eg";
/// Every packet program: the three live hooks in attach order, then replay's.
pub const PACKET_PROGRAMS: [&str; 4] = [PROG_XDP, PROG_TC_INGRESS, PROG_TC_EGRESS, PROG_REPLAY];
/// Tracepoint program on tcp:tcp_send_reset.
pub const PROG_TP_SEND_RESET: &str = "rst_tp_send";
/// Tracepoint program on tcp:tcp_receive_reset.
pub const PROG_TP_RECEIVE_RESET: &str = "rst_tp_recv";
/// Tracepoint program on tcp:tcp_retransmit_skb.
pub const PROG_TP_RETRANSMIT: &str = "rst_tp_retrans";
/// Tracepoint program on tcp:tcp_retransmit_synack.
pub const PROG_TP_SYNACK: &str = "rst_tp_synack";
/// Every kernel-note program with its tcp tracepoint, in the order of
/// `TracepointOffsets`' users: send reset, receive reset, retransmit, SYN-ACK retransmit.
pub const TRACEPOINT_PROGRAMS: [(&str, &str); 4] = [
    (PROG_TP_SEND_RESET, "tcp_send_reset"),
    (PROG_TP_RECEIVE_RESET, "tcp_receive_reset"),
    (PROG_TP_RETRANSMIT, "tcp_retransmit_skb"),
    (PROG_TP_SYNACK, "tcp_retransmit_synack"),
];
/// Load-time global ([`crate::event::TracepointOffsets`]): the tracepoints' field offsets.
pub const GLOBAL_TP_OFFSETS: &str = "TP_OFFSETS";

/// LRU hash: [`crate::flow::FlowKey`] -> [`crate::flow::FlowState`].
pub const MAP_FLOWS: &str = "RST_FLOWS";
/// Ring buffer for reset evidence: [`crate::event::RstEvent`] and after-reset samples.
pub const MAP_RST_RING: &str = "RST_RING";
/// Ring buffer for rate-limited samples (retransmissions, TTL changes).
pub const MAP_SAMPLE_RING: &str = "RST_SAMPLES";
/// Per-CPU array of `u64` counters indexed by [`crate::counter::Counter`].
pub const MAP_COUNTERS: &str = "RST_COUNTERS";
/// Array of one [`crate::replay::ReplayedFlow`]: the flow of the frame `rst_replay` ran last.
pub const MAP_REPLAYED_FLOW: &str = "RST_REPLAYED_FLOW";
/// Every map, for the object check.
pub const MAPS: [&str; 7] = [
    MAP_FLOWS,
    MAP_RST_RING,
    MAP_SAMPLE_RING,
    MAP_COUNTERS,
    MAP_RETRANSMIT_TALLY,
    MAP_DROPPED_RESETS,
    MAP_REPLAYED_FLOW,
];
/// Map of the resets the kernel dropped on a full reset ring, per flow (per-CPU LRU,
/// [`DROPPED_RESET_FLOWS`] entries).
pub const MAP_DROPPED_RESETS: &str = "RST_DROPPED";
/// Flows whose dropped resets the kernel counts at once; the least recent is forgotten, with
/// its count (the `rst_dropped_flows` counter counts the flows entered, so the forgotten are
/// that less the entries held).
pub const DROPPED_RESET_FLOWS: u32 = 16_384;
/// Map of each flow's stack retransmissions not yet sent (LRU, [`RETRANSMIT_TALLY_FLOWS`] entries).
pub const MAP_RETRANSMIT_TALLY: &str = "RST_RETX_TALLY";
/// Flows whose stack retransmissions the kernel tallies at once; the least recent is forgotten
/// (with at most one sample gap's worth of held retransmissions).
pub const RETRANSMIT_TALLY_FLOWS: u32 = 16_384;

/// Load-time global (`u32`): 1 when `rst_replay` should leave each frame's flow in
/// [`MAP_REPLAYED_FLOW`] (replay with `--pcap-out-context`), 0 when it should not.
pub const GLOBAL_KEEP_REPLAYED_FLOW: &str = "KEEP_REPLAYED_FLOW";

/// Load-time global (`u64`): least time between two samples of one flow, in ns.
pub const GLOBAL_SAMPLE_GAP_NS: &str = "SAMPLE_GAP_NS";

/// Default number of flows in the kernel flow table.
pub const DEFAULT_FLOW_TABLE_SIZE: u32 = 65_536;
/// Default least time between two samples of one flow (100 ms).
pub const DEFAULT_SAMPLE_GAP_NS: u64 = 100_000_000;
/// Size of the reset-evidence ring buffer in bytes: 2 MiB, about 3,100 resets of 656 bytes (with
/// the ring's 8-byte record header), since a reset carries its frame's first bytes (1 MiB held
/// about 2,600 resets before them).
pub const RST_RING_BYTES: u32 = 2 << 20;
/// Size of the sample ring buffer in bytes.
pub const SAMPLE_RING_BYTES: u32 = 1 << 20;
