//! The formats of kernel files, parsed exactly: flat-keyed files by exact key (no prefix
//! matching), limits with `max` (v2) and v1's near-2^63 as no limit, cpu lists. Pure:
//! text in, values out.

use std::collections::BTreeMap;

/// A flat-keyed file ("key value" per line) as a map, by exact key.
pub fn keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_owned(), it.next()?.parse().ok()?))
        })
        .collect()
}

/// The value of `key` in a flat-keyed file, by exact key (no prefix matching).
pub fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key)).then(|| it.next()?.parse().ok()).flatten()
    })
}

/// A limit file's value: "max" (v2) or v1's near-2^63 "unlimited" read as None.
pub fn limit(text: &str) -> Option<u64> {
    match text.trim() {
        "max" => None,
        v => v.parse::<u64>().ok().filter(|&n| n < (1 << 62)),
    }
}

/// Parses a cpu list ("0-3,8,10-11").
pub fn parse_cpulist(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                if a > b || b - a > 65_536 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::{keyed_value as keyed, limit as limit_value, parse_cpulist};

    #[test]
    fn flat_keyed_files_are_read_by_exact_key() {
        let stat = "usage_usec 1500\nuser_usec 1000\nnr_throttled 7\nthrottled_usec 900\n";
        assert_eq!(keyed(stat, "usage_usec"), Some(1500));
        assert_eq!(keyed(stat, "throttled_usec"), Some(900));
        assert_eq!(keyed(stat, "usage"), None, "no prefix matching");
        assert_eq!(keyed("oom 0\noom_kill 2\n", "oom_kill"), Some(2));
    }

    #[test]
    fn unlimited_reads_as_none_in_both_worlds() {
        assert_eq!(limit_value("max\n"), None);
        assert_eq!(limit_value("9223372036854771712"), None);
        assert_eq!(limit_value("33554432"), Some(32 << 20));
    }

    #[test]
    fn cpulists_parse_and_refuse_garbage() {
        assert_eq!(parse_cpulist("0-2,5,7-8\n"), Some(vec![0, 1, 2, 5, 7, 8]));
        assert_eq!(parse_cpulist("3-1"), None);
        assert_eq!(parse_cpulist("x"), None);
    }
}
