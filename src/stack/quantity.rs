//! Kubernetes resource quantities (`500m`, `1.5Gi`, `2e3`), read just far enough to compare a
//! request with its limit. Pure.
//!
//! Grammar: apimachinery `resource.Quantity` (`<signedNumber><suffix>`, suffix one of the binary
//! SI `Ki`..`Ei`, the decimal SI `m`, ``, `k`..`E`, or a decimal exponent `e<int>`/`E<int>`).
//! The crates that parse quantities for k8s-openapi compare through `f32` scale factors and
//! panic on decimal overflow; a user's spec must never panic the operator, so this reads the
//! value exactly, in milli-units, with checked arithmetic, and gives up (None) on anything
//! malformed or out of range, leaving the verdict to the API server.

/// Longest number read (digits): beyond it the value is out of range anyway.
const MAX_DIGITS: usize = 30;

/// The quantity in thousandths of its unit (`500m` -> 500, `1Ki` -> 1_024_000), rounded up as
/// Kubernetes rounds sub-milli precision up. `None` when the text is not a quantity or the
/// value does not fit.
pub fn milli(text: &str) -> Option<i128> {
    let (negative, rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let split = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(split);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') || whole.len() + fraction.len() > MAX_DIGITS {
        return None;
    }
    let mut mantissa: i128 = 0;
    for digit in whole.bytes().chain(fraction.bytes()) {
        mantissa = mantissa.checked_mul(10)?.checked_add(i128::from(digit - b'0'))?;
    }
    let (pow2, pow10): (u32, i32) = match suffix {
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "m" => (0, -3),
        "" => (0, 0),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        exponent => {
            let digits = exponent.strip_prefix(['e', 'E'])?;
            let value: i32 = digits.parse().ok().filter(|v: &i32| v.abs() <= 40)?;
            (0, value)
        }
    };
    let fraction_digits = i32::try_from(fraction.len()).ok()?;
    let mut value = mantissa.checked_mul(1i128.checked_shl(pow2)?)?;
    // Milli-units: three more decimal places.
    let shift = pow10 - fraction_digits + 3;
    if shift >= 0 {
        value = value.checked_mul(10i128.checked_pow(shift.unsigned_abs())?)?;
    } else {
        let divisor = 10i128.checked_pow(shift.unsigned_abs())?;
        value = value / divisor + i128::from(value % divisor != 0);
    }
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_exactly_in_milli_units() {
        let cases: [(&str, Option<i128>); 18] = [
            ("500m", Some(500)),
            ("1", Some(1000)),
            ("0.5", Some(500)),
            (".5", Some(500)),
            ("2.", Some(2000)),
            ("1Ki", Some(1_024_000)),
            ("1.5Gi", Some(1_610_612_736_000)),
            ("64Mi", Some(67_108_864_000)),
            ("1k", Some(1_000_000)),
            ("2e3", Some(2_000_000)),
            ("1E-3", Some(1)),
            ("0.1m", Some(1)),
            ("-1", Some(-1000)),
            ("", None),
            ("lots", None),
            ("1Qi", None),
            ("1.2.3", None),
            ("99999999999999999999999999999999Ei", None),
        ];
        for (text, want) in cases {
            assert_eq!(milli(text), want, "{text}");
        }
        assert!(milli("1Gi") > milli("1G"), "binary and decimal suffixes compare exactly");
        assert!(milli("1e40").is_none() || milli("1e40") > milli("1E"), "huge exponents never wrap");
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_handled(text in "\\PC{0,40}") {
            let _ = milli(&text);
        }

        #[test]
        fn any_shaped_quantity_is_handled(text in "[-+]?[0-9]{0,35}(\\.[0-9]{0,35})?([KMGTPE]i?|m|k|[eE][-+]?[0-9]{1,4})?") {
            let _ = milli(&text);
        }
    }
}
