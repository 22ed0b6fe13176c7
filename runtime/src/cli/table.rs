//! Tables and times for people: aligned columns, RFC 3339 times, "3 days ago".

pub(super) fn columns<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut s = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        s.push_str(line.join("   ").trim_end());
        s.push('\n');
    }
    s
}

/// Seconds since the epoch of an RFC 3339 time (`2024-05-01T12:00:00Z`, fraction and offset
/// allowed); only what image configs carry.
pub(super) fn parse_rfc3339(s: &str) -> Option<u64> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let mut t = days * 86_400 + h * 3600 + mi * 60 + sec;
    let tz = s[19..].trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    if let Some(off) = tz.strip_prefix('+').map(|o| (1, o)).or_else(|| tz.strip_prefix('-').map(|o| (-1, o))) {
        let (sign, o) = off;
        let oh: i64 = o.get(0..2)?.parse().ok()?;
        let om: i64 = o.get(3..5)?.parse().ok()?;
        t -= sign * (oh * 3600 + om * 60);
    }
    u64::try_from(t).ok()
}

pub(super) fn ago(now: u64, then: u64) -> String {
    let s = now.saturating_sub(then);
    let (n, unit) = match s {
        0..=59 => return "Less than a minute ago".into(),
        60..=3599 => (s / 60, "minute"),
        3600..=86_399 => (s / 3600, "hour"),
        86_400..=1_209_599 => (s / 86_400, "day"),
        1_209_600..=5_183_999 => (s / 604_800, "week"),
        5_184_000..=63_071_999 => (s / 2_592_000, "month"),
        _ => (s / 31_536_000, "year"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_parse_with_fraction_and_offset() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2024-05-01T12:00:00.123456789Z"), Some(1_714_564_800));
        assert_eq!(parse_rfc3339("2024-05-01T14:00:00+02:00"), Some(1_714_564_800));
        assert_eq!(parse_rfc3339("garbage"), None);
    }

    #[test]
    fn ages_read_like_docker() {
        assert_eq!(ago(100, 100), "Less than a minute ago");
        assert_eq!(ago(7200, 0), "2 hours ago");
        assert_eq!(ago(86_400, 0), "1 day ago");
        assert_eq!(ago(3 * 31_536_000, 0), "3 years ago");
    }
}
