//! Initial-TTL guesses: which stack default (64, 128, 255) a received TTL most likely started
//! from, and so how many hops away its sender is.

/// The initial TTLs common stacks use (Linux/BSD/macOS 64, Windows 128, network gear 255).
pub const INITIAL_TTLS: [u8; 3] = [64, 128, 255];

/// The smallest common initial TTL at or above `ttl` (255 for anything above 128).
pub const fn initial_ttl(ttl: u8) -> u8 {
    if ttl <= 64 {
        64
    } else if ttl <= 128 {
        128
    } else {
        255
    }
}

/// Hops travelled from the guessed initial TTL.
pub const fn hops_from_initial(ttl: u8) -> u8 {
    initial_ttl(ttl) - ttl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses_the_nearest_default_above() {
        assert_eq!(initial_ttl(64), 64);
        assert_eq!(initial_ttl(38), 64);
        assert_eq!(hops_from_initial(38), 26);
        assert_eq!(initial_ttl(70), 128);
        assert_eq!(hops_from_initial(127), 1);
        assert_eq!(initial_ttl(250), 255);
        assert_eq!(hops_from_initial(0), 64);
    }
}
