//! Internet checksums kept right, or kept wrong by exactly as much as before.
//!
//! The anonymiser changes addresses (in pseudo-headers and inside payloads) and may zero
//! payloads, so every checksum covering them must change too. It does not recompute them
//! from scratch: it adds the difference between the covered bytes before and after the
//! rewrite (RFC 1624 incremental update). That keeps a valid checksum valid, keeps an
//! invalid one invalid by the same amount (a capture of a bad-checksum bug stays a capture
//! of that bug), and works on packets the capture cut short, whose missing bytes are the
//! same before and after.

/// The 16-bit big-endian word sum of `data` (an odd last byte is the high half of a word),
/// not yet folded.
pub fn sum(data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(2);
    let mut s: u64 = 0;
    for c in &mut chunks {
        s += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        s += u64::from(*last) << 8;
    }
    s
}

/// Folds a sum into 16 bits with end-around carry (ones' complement addition).
pub fn fold(mut s: u64) -> u16 {
    while s > 0xFFFF {
        s = (s & 0xFFFF) + (s >> 16);
    }
    s as u16
}

/// How a checksum field treats the value 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zero {
    /// An ordinary value (IPv4 header, ICMP, ICMPv6, TCP).
    Ordinary,
    /// UDP: 0 means "no checksum" and stays 0; a computed 0 is sent as 0xFFFF.
    Udp,
}

/// Updates the checksum in `field` (2 bytes) after the bytes it covers changed: `before`
/// and `after` are the folded sums of the covered bytes (including the unchanged checksum
/// field itself) before and after. The new field is `old + before - after` in ones'
/// complement arithmetic, so the verifying sum is what it was.
pub fn update(field: &mut [u8], before: u16, after: u16, zero: Zero) {
    let Some(f) = field.get_mut(..2) else { return };
    let old = u16::from_be_bytes([f[0], f[1]]);
    if before == after || (zero == Zero::Udp && old == 0) {
        return;
    }
    let mut new = fold(u64::from(old) + u64::from(before) + u64::from(!after));
    if zero == Zero::Udp && new == 0 {
        new = 0xFFFF;
    }
    f.copy_from_slice(&new.to_be_bytes());
}

/// Whether the covered bytes (checksum field included) verify: their folded sum is 0xFFFF
/// (or the whole range is zero, which some stacks send for "not computed").
pub fn verifies(covered_sum: u16) -> bool {
    covered_sum == 0xFFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checksum(data: &[u8]) -> u16 {
        !fold(sum(data))
    }

    #[test]
    fn valid_stays_valid_and_invalid_stays_off_by_the_same() {
        let mut pkt = vec![
            0x45, 0, 0, 28, 1, 2, 0, 0, 64, 17, 0, 0, 198, 51, 100, 7, 192, 0, 2, 1,
        ];
        let c = checksum(&pkt);
        pkt[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(verifies(fold(sum(&pkt))));
        for bad in [false, true] {
            let mut p = pkt.clone();
            if bad {
                p[11] ^= 0x5A;
            }
            let err_before = fold(sum(&p));
            let before = fold(sum(&p));
            p[12..16].copy_from_slice(&[203, 0, 113, 9]);
            let after = fold(sum(&p));
            let (head, tail) = p.split_at_mut(12);
            let _ = tail;
            update(&mut head[10..12], before, after, Zero::Ordinary);
            let err_after = fold(sum(&p));
            assert_eq!(verifies(err_after), !bad);
            assert_eq!(err_before, err_after, "the error is kept exactly");
        }
    }

    #[test]
    fn udp_zero_means_none() {
        let mut f = [0u8, 0];
        update(&mut f, 0x1234, 0x4321, Zero::Udp);
        assert_eq!(f, [0, 0]);
    }
}
