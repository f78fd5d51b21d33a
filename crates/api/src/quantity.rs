//! Kubernetes resource quantities (`500m`, `1.5Gi`, `2e3`): parsing to an exact value for comparison.

use std::cmp::Ordering;

/// A parsed quantity as an exact number of nano-units (value × 10⁹).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(i128);

/// Upstream's message for an unparsable quantity.
pub const QUANTITY_FORMAT_MSG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

const NANO: i128 = 1_000_000_000;

fn suffix_multiplier(suffix: &str) -> Option<(i128, i128)> {
    // (numerator, denominator) applied to the number, in nano-units.
    let bin = |p: u32| (NANO * (1i128 << (10 * p)), 1);
    let dec = |e: u32| (NANO * 10i128.pow(e), 1);
    Some(match suffix {
        "" => dec(0),
        "n" => (1, 1),
        "u" => (1_000, 1),
        "m" => (1_000_000, 1),
        "k" => dec(3),
        "M" => dec(6),
        "G" => dec(9),
        "T" => dec(12),
        "P" => dec(15),
        "E" => dec(18),
        "Ki" => bin(1),
        "Mi" => bin(2),
        "Gi" => bin(3),
        "Ti" => bin(4),
        "Pi" => bin(5),
        "Ei" => bin(6),
        _ => return None,
    })
}

/// A string that is not a quantity. Not retryable: the same text always fails; the message is
/// upstream's (`QUANTITY_FORMAT_MSG`), for the writer to fix the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", QUANTITY_FORMAT_MSG)]
pub struct QuantityError;

impl Quantity {
    /// Zero.
    pub const ZERO: Quantity = Quantity(0);

    /// Parses a quantity string.
    /// The value in nano-units (1 = 1e-9).
    pub fn nanos(self) -> i128 {
        self.0
    }

    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        let s = s.trim();
        let err = || QuantityError;
        let (negative, body) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let num_end = body
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(body.len());
        let (number, suffix) = body.split_at(num_end);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(err());
        }
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        // Digits beyond nano precision are rounded away, as upstream rounds to its internal scale.
        let frac: String = frac_part.chars().take(9).collect();
        let digits = format!("{int_part}{frac}");
        let mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| err())?
        };
        let frac_scale = 10i128.pow(frac.len() as u32);
        let (mul, div) = if let Some(exp) = suffix.strip_prefix(['e', 'E']) {
            let e: i32 = exp.parse().map_err(|_| err())?;
            if !(-9..=18).contains(&e) {
                return Err(err());
            }
            if e >= 0 {
                (NANO * 10i128.pow(e as u32), 1)
            } else {
                (NANO, 10i128.pow((-e) as u32))
            }
        } else {
            suffix_multiplier(suffix).ok_or_else(err)?
        };
        let value = mantissa.checked_mul(mul).ok_or_else(err)? / frac_scale / div;
        Ok(Quantity(if negative { -value } else { value }))
    }

    /// True for a negative quantity.
    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// The value in milli-units, rounded up (how CPU is compared).
    pub fn milli_ceil(self) -> i128 {
        (self.0 + 999_999).div_euclid(1_000_000)
    }

    /// The value in whole units, rounded up.
    pub fn units_ceil(self) -> i128 {
        (self.0 + NANO - 1).div_euclid(NANO)
    }

    /// Compares two quantities.
    pub fn compare(self, other: Quantity) -> Ordering {
        self.0.cmp(&other.0)
    }
}

impl std::ops::Add for Quantity {
    type Output = Quantity;
    /// Saturating: requests summed over a node cannot overflow into nonsense.
    fn add(self, other: Quantity) -> Quantity {
        Quantity(self.0.saturating_add(other.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_compares() {
        let q = |s: &str| Quantity::parse(s).expect(s);
        assert_eq!(q("500m"), q("0.5"));
        assert_eq!(q("1Ki"), q("1024"));
        assert_eq!(q("1e3"), q("1k"));
        assert!(q("1Gi") > q("1G"));
        assert_eq!(q("100m").milli_ceil(), 100);
        assert_eq!(q("1.5").units_ceil(), 2);
        assert!(q("-1").is_negative());
        assert!(Quantity::parse("abc").is_err());
        assert!(Quantity::parse("1X").is_err());
        assert!(Quantity::parse("").is_err());
    }
}
