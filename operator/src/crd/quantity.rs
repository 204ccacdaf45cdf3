//! Storage sizes as Kubernetes writes them (`10Gi`, `500M`, `1.5Ti`,
//! `1e9`), in bytes, so the operator can tell growth from shrinking. Pure.

/// Why a text is not a storage quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a storage size (examples: 10Gi, 500Mi, 1T)")]
pub struct QuantityError {
    /// The text that was given.
    pub text: String,
}

/// Bytes of a Kubernetes quantity, rounded up to a whole byte (as the
/// apiserver rounds storage requests). Negative values, milli-units and
/// overflows are errors.
pub fn parse_bytes(text: &str) -> Result<u128, QuantityError> {
    let err = || QuantityError {
        text: text.to_owned(),
    };
    let s = text.trim();
    let number_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_end);
    let number = number.strip_prefix('+').unwrap_or(number);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err(err());
    }
    // value = digits / 10^fraction_len * base^power (binary) or * 10^exp (decimal)
    let digits: u128 = format!("{whole}{fraction}").parse().map_err(|_| err())?;
    let scale = u32::try_from(fraction.len()).map_err(|_| err())?;
    let (binary_power, decimal_exp): (u32, i64) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        e if e.starts_with(['e', 'E']) => (0, e[1..].parse().map_err(|_| err())?),
        _ => return Err(err()),
    };
    let numerator = digits
        .checked_mul(1u128.checked_shl(binary_power).ok_or_else(err)?)
        .ok_or_else(err)?;
    let exp = decimal_exp - i64::from(scale);
    if exp >= 0 {
        let factor = 10u128
            .checked_pow(u32::try_from(exp).map_err(|_| err())?)
            .ok_or_else(err)?;
        numerator.checked_mul(factor).ok_or_else(err)
    } else {
        let divisor = 10u128
            .checked_pow(u32::try_from(-exp).map_err(|_| err())?)
            .ok_or_else(err)?;
        Ok(numerator.div_ceil(divisor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binary_decimal_fractional_and_exponent_forms() {
        let cases: &[(&str, u128)] = &[
            ("0", 0),
            ("100", 100),
            ("1Ki", 1024),
            ("10Gi", 10 << 30),
            ("1.5Gi", 3 << 29),
            ("1Ti", 1 << 40),
            ("1k", 1000),
            ("500M", 500_000_000),
            ("2G", 2_000_000_000),
            ("1e9", 1_000_000_000),
            ("1E3", 1000),
            ("0.5", 1),
            ("1.0001k", 1001),
            ("+5Mi", 5 << 20),
            (".5Ki", 512),
        ];
        for (text, bytes) in cases {
            assert_eq!(parse_bytes(text), Ok(*bytes), "{text}");
        }
    }

    #[test]
    fn orders_sizes_across_units() {
        assert!(parse_bytes("1Gi").unwrap() > parse_bytes("1G").unwrap());
        assert!(parse_bytes("1000Mi").unwrap() < parse_bytes("1Gi").unwrap());
        assert_eq!(parse_bytes("1024Mi"), parse_bytes("1Gi"));
    }

    #[test]
    fn rejects_what_is_not_a_storage_size() {
        for text in [
            "",
            "Gi",
            "-1Gi",
            "10GB",
            "1.2.3",
            "10 gi",
            "100m",
            "1e",
            "1e99999",
            "9Ei9",
            "99999999999999999999999999999999999999999Ei",
        ] {
            assert!(parse_bytes(text).is_err(), "{text:?}");
        }
    }
}
