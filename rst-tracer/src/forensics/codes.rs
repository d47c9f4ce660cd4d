//! Every finding code, in one list: the forensics name their findings with these constants,
//! and a test checks the list against the README's table of codes, so neither drifts. The
//! codes are part of the JSON contract (`findings[].code`): add freely, never rename.

/// `ttl_mismatch` (see the README's table of finding codes).
pub const TTL_MISMATCH: &str = "ttl_mismatch";
/// `ttl_takeover` (see the README's table of finding codes).
pub const TTL_TAKEOVER: &str = "ttl_takeover";
/// `ttl_consistent` (see the README's table of finding codes).
pub const TTL_CONSISTENT: &str = "ttl_consistent";
/// `ipid_copied` (see the README's table of finding codes).
pub const IPID_COPIED: &str = "ipid_copied";
/// `ipid_shared` (see the README's table of finding codes).
pub const IPID_SHARED: &str = "ipid_shared";
/// `ipid_foreign` (see the README's table of finding codes).
pub const IPID_FOREIGN: &str = "ipid_foreign";
/// `ipid_zero` (see the README's table of finding codes).
pub const IPID_ZERO: &str = "ipid_zero";
/// `ipid_jump` (see the README's table of finding codes).
pub const IPID_JUMP: &str = "ipid_jump";
/// `ipid_continues` (see the README's table of finding codes).
pub const IPID_CONTINUES: &str = "ipid_continues";
/// `ipid_none` (see the README's table of finding codes).
pub const IPID_NONE: &str = "ipid_none";
/// `rfc5961_reset` (see the README's table of finding codes).
pub const RFC5961_RESET: &str = "rfc5961_reset";
/// `rfc5961_challenge_ack` (see the README's table of finding codes).
pub const RFC5961_CHALLENGE_ACK: &str = "rfc5961_challenge_ack";
/// `rfc5961_drop` (see the README's table of finding codes).
pub const RFC5961_DROP: &str = "rfc5961_drop";
/// `seq_stale` (see the README's table of finding codes).
pub const SEQ_STALE: &str = "seq_stale";
/// `seq_ahead` (see the README's table of finding codes).
pub const SEQ_AHEAD: &str = "seq_ahead";
/// `ack_ahead` (see the README's table of finding codes).
pub const ACK_AHEAD: &str = "ack_ahead";
/// `too_fast` (see the README's table of finding codes).
pub const TOO_FAST: &str = "too_fast";
/// `timing_plausible` (see the README's table of finding codes).
pub const TIMING_PLAUSIBLE: &str = "timing_plausible";
/// `window_unusual` (see the README's table of finding codes).
pub const WINDOW_UNUSUAL: &str = "window_unusual";
/// `window_sender` (see the README's table of finding codes).
pub const WINDOW_SENDER: &str = "window_sender";
/// `reserved_bits` (see the README's table of finding codes).
pub const RESERVED_BITS: &str = "reserved_bits";
/// `payload` (see the README's table of finding codes).
pub const PAYLOAD: &str = "payload";
/// `ts_regressed` (see the README's table of finding codes).
pub const TS_REGRESSED: &str = "ts_regressed";
/// `sender_continues` (see the README's table of finding codes).
pub const SENDER_CONTINUES: &str = "sender_continues";
/// `duplicate` (see the README's table of finding codes).
pub const DUPLICATE: &str = "duplicate";
/// `both_directions` (see the README's table of finding codes).
pub const BOTH_DIRECTIONS: &str = "both_directions";
/// `rst_burst` (see the README's table of finding codes).
pub const RST_BURST: &str = "rst_burst";
/// `oneway_after` (see the README's table of finding codes).
pub const ONEWAY_AFTER: &str = "oneway_after";
/// `retransmissions_before` (see the README's table of finding codes).
pub const RETRANSMISSIONS_BEFORE: &str = "retransmissions_before";
/// `midstream_reset` (see the README's table of finding codes).
pub const MIDSTREAM_RESET: &str = "midstream_reset";
/// `no_handshake` (see the README's table of finding codes).
pub const NO_HANDSHAKE: &str = "no_handshake";
/// `not_accepted` (see the README's table of finding codes).
pub const NOT_ACCEPTED: &str = "not_accepted";
/// `no_socket_midstream` (see the README's table of finding codes).
pub const NO_SOCKET_MIDSTREAM: &str = "no_socket_midstream";
/// `synack_after_handshake` (see the README's table of finding codes).
pub const SYNACK_AFTER_HANDSHAKE: &str = "synack_after_handshake";
/// `stack_retransmits` (see the README's table of finding codes).
pub const STACK_RETRANSMITS: &str = "stack_retransmits";
/// `oneway_silence` (see the README's table of finding codes).
pub const ONEWAY_SILENCE: &str = "oneway_silence";

/// Every code, in the README's order.
pub const ALL: [&str; 36] = [
    TTL_MISMATCH,
    TTL_TAKEOVER,
    TTL_CONSISTENT,
    IPID_COPIED,
    IPID_SHARED,
    IPID_FOREIGN,
    IPID_ZERO,
    IPID_JUMP,
    IPID_CONTINUES,
    IPID_NONE,
    RFC5961_RESET,
    RFC5961_CHALLENGE_ACK,
    RFC5961_DROP,
    SEQ_STALE,
    SEQ_AHEAD,
    ACK_AHEAD,
    TOO_FAST,
    TIMING_PLAUSIBLE,
    WINDOW_UNUSUAL,
    WINDOW_SENDER,
    RESERVED_BITS,
    PAYLOAD,
    TS_REGRESSED,
    SENDER_CONTINUES,
    DUPLICATE,
    BOTH_DIRECTIONS,
    RST_BURST,
    ONEWAY_AFTER,
    RETRANSMISSIONS_BEFORE,
    MIDSTREAM_RESET,
    NO_HANDSHAKE,
    NOT_ACCEPTED,
    NO_SOCKET_MIDSTREAM,
    SYNACK_AFTER_HANDSHAKE,
    STACK_RETRANSMITS,
    ONEWAY_SILENCE,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_lists_every_code_and_no_other() {
        let readme = crate::readme::first_column("| code | strength | what it means |");
        assert_eq!(readme, ALL, "README table vs forensics::codes::ALL");
    }

    #[test]
    fn codes_are_distinct() {
        let mut sorted = ALL.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), ALL.len());
    }
}
