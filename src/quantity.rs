//! Kubernetes resource quantities (`resource.Quantity`): `250m`, `1Gi`, `1e3`. The API server
//! stores them in a canonical spelling, so matih compares them by amount, never by text.

/// Whether two strings are Kubernetes quantities (`resource.Quantity`: a decimal number with an
/// optional SI suffix `n u m k M G T P E`, binary suffix `Ki … Ei` or exponent `e3`) of the same amount.
pub fn same(a: &str, b: &str) -> bool {
    matches!((nanos(a), nanos(b)), (Some(x), Some(y)) if x == y)
}

/// The amount of a quantity in billionths, exactly; `None` for anything else (or out of range).
pub fn nanos(q: &str) -> Option<i128> {
    let (sign, rest) = match q.strip_prefix('-') {
        Some(r) => (-1, r),
        None => (1, q.strip_prefix('+').unwrap_or(q)),
    };
    let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(end);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() || number.matches('.').count() > 1 || frac.len() > 9 {
        return None;
    }
    let digits: i128 = format!("{int}{frac}").parse().ok()?;
    // digits × 10^-frac.len(), in nanos: × 10^(9 - frac.len()).
    let mut nanos = digits.checked_mul(10i128.checked_pow(9 - frac.len() as u32)?)?;
    let (mul, div): (i128, i128) = match suffix {
        "" => (1, 1),
        "n" => (1, 1_000_000_000),
        "u" => (1, 1_000_000),
        "m" => (1, 1_000),
        "k" => (1_000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000, 1),
        "E" => (1_000_000_000_000_000_000, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        "Ei" => (1 << 60, 1),
        e if e.starts_with(['e', 'E']) => {
            let exp: i32 = e[1..].parse().ok()?;
            if exp >= 0 {
                (10i128.checked_pow(exp as u32)?, 1)
            } else {
                (1, 10i128.checked_pow(exp.unsigned_abs())?)
            }
        }
        _ => return None,
    };
    nanos = nanos.checked_mul(mul)?;
    if nanos % div != 0 {
        return None;
    }
    Some(sign * nanos / div)
}

/// An amount in billionths as the shortest plain spelling for a person (`1.75`, `3.5Gi`, `250m`).
pub fn display(nanos: i128, binary: bool) -> String {
    const G: i128 = 1_000_000_000;
    if binary {
        for (suffix, unit) in [("Gi", 1i128 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
            if nanos >= unit * G {
                let tenths = nanos * 10 / (unit * G);
                return if tenths % 10 == 0 {
                    format!("{}{suffix}", tenths / 10)
                } else {
                    format!("{}.{}{suffix}", tenths / 10, tenths % 10)
                };
            }
        }
    }
    if nanos % G == 0 {
        format!("{}", nanos / G)
    } else {
        format!("{}m", nanos / 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_compare_by_amount() {
        assert!(same("1000m", "1"));
        assert!(same("1024Mi", "1Gi"));
        assert!(same("0.5", "500m"));
        assert!(same("1e3", "1k"));
        assert!(same("1.5Gi", "1536Mi"));
        assert!(!same("1000m", "2"));
        assert!(!same("1Gi", "1G"));
        assert!(!same("abc", "abc"));
        assert!(!same("1.2.3", "1"));
        assert!(!same("", "0"));
        assert_eq!(nanos("-250m"), Some(-250_000_000));
        assert_eq!(nanos("9Ei"), Some(9 * (1i128 << 60) * 1_000_000_000));
        assert_eq!(display(nanos("1750m").unwrap(), false), "1750m");
        assert_eq!(display(nanos("7").unwrap(), false), "7");
        assert_eq!(display(nanos("3584Mi").unwrap(), true), "3.5Gi");
    }
}
