//! Parsers for command-line values: durations with units and the keepalive spec.
//!
//! Every timer is a flag so a lab can compress a 30 s keepalive into a second; these
//! parsers accept the forms people type (`30`, `30s`, `500ms`, `1.5s`, `2m`).

use crate::peer::Keepalive;
use std::time::Duration;

/// Parses `500ms`, `30s`, `1.5s`, `2m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("expected a duration such as 30s, 500ms or 2m, found {s:?}"))?;
    if !value.is_finite() || value < 0.0 || value * scale > 1e9 {
        return Err(format!("duration {s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

/// Parses a positive duration (a zero period would spin).
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("duration {s:?} must be greater than zero"));
    }
    Ok(d)
}

/// A keepalive setting: `off`, or `<period>[,<ttl>]` (`30s,3`, `1s`, `500ms,2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepaliveArg(pub Option<Keepalive>);

/// Parses the `--keepalive` value.
pub fn parse_keepalive(s: &str) -> Result<KeepaliveArg, String> {
    if s == "off" || s == "0" {
        return Ok(KeepaliveArg(None));
    }
    let (period, ttl) = match s.split_once(',') {
        Some((p, t)) => {
            let ttl: u8 = t
                .trim()
                .parse()
                .map_err(|_| format!("expected a TTL from 1 to 255 after the comma, found {t:?}"))?;
            if ttl == 0 {
                return Err("a keepalive TTL of 0 would never leave the host".into());
            }
            (p, ttl)
        }
        None => (s, 3),
    };
    Ok(KeepaliveArg(Some(Keepalive {
        period: parse_positive_duration(period)?,
        ttl,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        for bad in ["", "fast", "-1s", "1e300", "NaN", "5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert!(parse_positive_duration("0ms").is_err());
    }

    #[test]
    fn keepalives() {
        let ka = |p: u64, ttl| {
            KeepaliveArg(Some(Keepalive {
                period: Duration::from_millis(p),
                ttl,
            }))
        };
        assert_eq!(parse_keepalive("30"), Ok(ka(30_000, 3)));
        assert_eq!(parse_keepalive("1s,2"), Ok(ka(1000, 2)));
        assert_eq!(parse_keepalive("500ms"), Ok(ka(500, 3)));
        assert_eq!(parse_keepalive("off"), Ok(KeepaliveArg(None)));
        assert!(parse_keepalive("1s,0").is_err());
        assert!(parse_keepalive("1s,300").is_err());
        assert!(parse_keepalive("1s,").is_err());
    }
}
