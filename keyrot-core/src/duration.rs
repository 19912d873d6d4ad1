//! Durations as people write them (`90d`, `1h30m`, `45s`): one reader and one writer, used by
//! the settings, the policy's messages and every table that shows a duration.

use std::time::Duration;

/// Reads a duration written as whole numbers with units, largest first: `90d`, `12h`,
/// `1h30m`, `45s`, `2w`, `200ms`. Units: `w`, `d`, `h`, `m`, `s`, `ms` (for the server's
/// timeouts in tests).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let err = || DurationError(text.to_owned());
    let text = text.trim();
    if text.is_empty() {
        return Err(err());
    }
    let mut total: u64 = 0;
    let mut rest = text;
    let mut last_unit = u64::MAX;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        if digits == 0 {
            return Err(err());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| err())?;
        let (unit, millis) = match rest[digits..].chars().next().ok_or_else(err)? {
            'm' if rest[digits..].starts_with("ms") => ("ms", 1),
            'w' => ("w", 7 * 24 * 3600 * 1000),
            'd' => ("d", 24 * 3600 * 1000),
            'h' => ("h", 3600 * 1000),
            'm' => ("m", 60 * 1000),
            's' => ("s", 1000),
            _ => return Err(err()),
        };
        if millis >= last_unit {
            return Err(err());
        }
        last_unit = millis;
        total = value
            .checked_mul(millis)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(err)?;
        rest = &rest[digits + unit.len()..];
    }
    Ok(Duration::from_millis(total))
}

/// Writes a duration the way [`parse_duration`] reads it: in whole seconds (`90d`, `1h30m`),
/// or in milliseconds when under a second (`200ms`).
pub fn format_duration(duration: Duration) -> String {
    let mut secs = duration.as_secs();
    if secs == 0 {
        return match duration.subsec_millis() {
            0 => "0s".to_owned(),
            millis => format!("{millis}ms"),
        };
    }
    let mut out = String::new();
    for (unit, size) in [('d', 24 * 3600), ('h', 3600), ('m', 60), ('s', 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// A duration [`parse_duration`] could not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a duration: write whole numbers with units, largest first, e.g. 90d, 12h, 1h30m, 45s"
)]
pub struct DurationError(String);

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 3600;

    #[test]
    fn durations_read_and_write() {
        for (text, secs) in [
            ("90d", 90 * DAY),
            ("2w", 14 * DAY),
            ("1h30m", 5400),
            ("45s", 45),
            (" 5m ", 300),
            ("1d12h", DAY + 12 * 3600),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        for secs in [1, 59, 60, 3600, 5400, DAY, 90 * DAY, DAY + 1] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{secs}");
        }
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        // Milliseconds, for the server's timeouts in tests.
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("1s500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m1ms"), Ok(Duration::from_millis(60_001)));
        assert_eq!(format_duration(Duration::from_millis(200)), "200ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s");
        assert!(parse_duration("1ms1s").is_err());
        assert!(parse_duration("5mss").is_err());
    }

    /// The tables' and messages' durations (once `plan::human`, now this one writer).
    #[test]
    fn durations_print_for_people() {
        let human = format_duration;
        assert_eq!(human(Duration::from_secs(90 * DAY)), "90d");
        assert_eq!(human(Duration::from_secs(DAY + 7200)), "1d2h");
        assert_eq!(human(Duration::from_secs(5400)), "1h30m");
        assert_eq!(human(Duration::from_secs(300)), "5m");
        assert_eq!(human(Duration::from_secs(42)), "42s");
        assert_eq!(human(Duration::from_secs(DAY + 61)), "1d1m1s");
    }

    #[test]
    fn bad_durations_are_refused() {
        for text in [
            "",
            "d",
            "90",
            "7x",
            "1m1h",
            "1d1d",
            "-5m",
            "1.5h",
            "h5",
            "99999999999999999999d",
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.to_string().contains("e.g. 90d"), "{text}: {err}");
        }
    }
}
