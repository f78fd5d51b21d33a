//! FNV-1a, the non-cryptographic hash upstream uses for template hashes; also how everynode
//! derives stable short ids (static pod hashes, hollow pod addresses, server identities).
//! Written out because it is a few lines; keeping one copy keeps the constants in one place.

const OFFSET_32: u32 = 2_166_136_261;
const PRIME_32: u32 = 16_777_619;
const OFFSET_64: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME_64: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 32 over several byte strings, as if concatenated.
pub fn fnv1a_32<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u32 {
    parts
        .into_iter()
        .flatten()
        .fold(OFFSET_32, |h, b| (h ^ u32::from(*b)).wrapping_mul(PRIME_32))
}

/// FNV-1a 64 over several byte strings, as if concatenated.
pub fn fnv1a_64<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    parts
        .into_iter()
        .flatten()
        .fold(OFFSET_64, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME_64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values() {
        // Published FNV-1a test vectors.
        assert_eq!(fnv1a_32([b"".as_slice()]), 0x811c_9dc5);
        assert_eq!(fnv1a_32([b"a".as_slice()]), 0xe40c_292c);
        assert_eq!(fnv1a_64([b"a".as_slice()]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            fnv1a_32([b"fo".as_slice(), b"obar"]),
            fnv1a_32([b"foobar".as_slice()])
        );
    }
}
