//! Durations as `timeouts` write them: `"90s"`, `"20m"`, `"1h"`, `"1h30m"` or `"120"`.

/// `"90s"`, `"20m"`, `"1h"`, `"1h30m"` or `"120"` → seconds.
pub fn parse_duration(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Some(n);
    }
    let (mut total, mut num) = (0u64, String::new());
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return None,
        };
        total = total.checked_add(num.parse::<u64>().ok()?.checked_mul(unit)?)?;
        num.clear();
    }
    num.is_empty().then_some(total)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn units_add_up() {
        assert_eq!(parse_duration("120"), Some(120));
        assert_eq!(parse_duration(" 90s "), Some(90));
        assert_eq!(parse_duration("20m"), Some(1200));
        assert_eq!(parse_duration("1h30m"), Some(5400));
        assert_eq!(parse_duration("1h30"), None, "a number without a unit after one with a unit");
        assert_eq!(parse_duration("5d"), None);
        assert_eq!(parse_duration("m"), None);
    }
}
