//! `--log FILE` and `--log-format`: errors written where containerd's shim and conmon read
//! them, as runc's logrus does (one line each; JSON: `{"level","msg","time"}`).

use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where errors go besides stderr, found in argv before (and even without) a full parse.
pub struct Logger {
    file: Option<PathBuf>,
    format: LogFormat,
}

impl Logger {
    pub fn from_args(args: &[std::ffi::OsString]) -> Logger {
        let mut l = Logger { file: None, format: LogFormat::Text };
        let mut it = args.iter().map(|a| a.to_string_lossy().into_owned());
        while let Some(a) = it.next() {
            let (name, value) = match a.split_once('=') {
                Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
                None => (a.clone(), None),
            };
            match name.as_str() {
                "--log" => l.file = value.or_else(|| it.next()).map(PathBuf::from),
                "--log-format" => {
                    if value.or_else(|| it.next()).as_deref() == Some("json") {
                        l.format = LogFormat::Json;
                    }
                }
                // The command's own arguments start here; a "--log" after them is not ours.
                "--" => break,
                _ => {}
            }
        }
        l
    }

    /// Appends an error line to the log file, if there is one.
    pub fn error(&self, msg: &str) {
        let Some(path) = &self.file else { return };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let time = rfc3339(now.as_secs(), now.subsec_nanos());
        let line = match self.format {
            LogFormat::Json => serde_json::json!({"level": "error", "msg": msg, "time": time}).to_string(),
            LogFormat::Text => format!("time=\"{time}\" level=error msg={}", serde_json::Value::from(msg)),
        };
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Unix time as RFC 3339 in UTC, with nanoseconds when there are any.
pub fn rfc3339(secs: u64, nanos: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let frac = if nanos > 0 { format!(".{nanos:09}") } else { String::new() };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{frac}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000, 5), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn the_log_is_found_in_any_spelling() {
        let a = |s: &str| s.split_whitespace().map(Into::into).collect::<Vec<std::ffi::OsString>>();
        let l = Logger::from_args(&a("podrun --log /x --log-format json create"));
        assert_eq!((l.file.as_deref(), l.format), (Some(std::path::Path::new("/x")), LogFormat::Json));
        let l = Logger::from_args(&a("podrun --log=/y create --bundle b c"));
        assert_eq!((l.file.as_deref(), l.format), (Some(std::path::Path::new("/y")), LogFormat::Text));
    }
}
