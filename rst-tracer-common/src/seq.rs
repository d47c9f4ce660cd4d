//! TCP sequence-space arithmetic (RFC 793 / RFC 1982 serial numbers, modulo 2^32).

/// True when `a` comes strictly before `b` in sequence space.
#[inline(always)]
pub const fn seq_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// True when `a` comes before or is `b`.
#[inline(always)]
pub const fn seq_before_eq(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}

/// Signed distance from `from` to `to` (positive when `to` is ahead).
#[inline(always)]
pub const fn seq_diff(to: u32, from: u32) -> i32 {
    to.wrapping_sub(from) as i32
}

/// The sequence space one segment occupies: payload plus one for SYN and one for FIN.
#[inline(always)]
pub const fn seq_len(payload_len: u16, syn: bool, fin: bool) -> u32 {
    payload_len as u32 + syn as u32 + fin as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_survives_wraparound() {
        assert!(seq_before(1, 2));
        assert!(!seq_before(2, 2));
        assert!(seq_before_eq(2, 2));
        assert!(
            seq_before(u32::MAX - 10, 5),
            "5 is 16 ahead of MAX-10 after the wrap"
        );
        assert!(!seq_before(5, u32::MAX - 10));
        assert_eq!(seq_diff(5, u32::MAX - 10), 16);
        assert_eq!(seq_diff(u32::MAX - 10, 5), -16);
    }

    #[test]
    fn syn_and_fin_take_one_each() {
        assert_eq!(seq_len(0, true, false), 1);
        assert_eq!(seq_len(100, false, true), 101);
        assert_eq!(seq_len(0, false, false), 0);
    }
}
