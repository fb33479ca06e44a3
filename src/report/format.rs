//! Number formatting for tables: fixed precision that still shows small values, `inf`, `NaN`
//! and `N/A` for nulls.

/// Formats a value with 4 significant decimals, switching to scientific notation for very large
/// or very small magnitudes.
pub fn num(v: Option<f64>) -> String {
    match v {
        None => "N/A".into(),
        Some(x) if x.is_nan() => "NaN".into(),
        Some(x) if x.is_infinite() => {
            if x > 0.0 {
                "inf".into()
            } else {
                "-inf".into()
            }
        }
        Some(0.0) => "0".into(),
        Some(x) if x.abs() >= 1e6 || x.abs() < 1e-3 => format!("{x:.3e}"),
        Some(x) => {
            let s = format!("{x:.4}");
            let s = s.trim_end_matches('0').trim_end_matches('.');
            s.to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::num;

    #[test]
    fn formats() {
        assert_eq!(num(None), "N/A");
        assert_eq!(num(Some(0.625)), "0.625");
        assert_eq!(num(Some(2.0)), "2");
        assert_eq!(num(Some(f64::INFINITY)), "inf");
        assert_eq!(num(Some(f64::NAN)), "NaN");
        assert_eq!(num(Some(1.0e-5)), "1.000e-5");
        assert_eq!(num(Some(-12.34567)), "-12.3457");
    }
}
