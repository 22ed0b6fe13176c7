//! Restart policies and their back-off: what `run --restart` and `--restart-backoff` mean,
//! and the pure decisions the container's monitor takes on each exit (whether to start it
//! again, after how long). Nothing here touches a process; container.rs does.
//!
//! Kubernetes' rules, made tunable: the delay before restart n is INITIAL·2ⁿ capped at CAP
//! (kubelet: 10 s, 20 s, 40 s … 5 min), and a container that ran longer than twice the
//! cap (kubelet's 10 min) starts its back-off again from INITIAL.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestartError {
    #[error(
        "invalid restart policy {0:?}: use never, always or on-failure[:MAX] (MAX restarts at most, e.g. on-failure:3)"
    )]
    Policy(String),
    #[error("invalid back-off {0:?}: use INITIAL[:CAP] with units ms, s, m or h, e.g. 10s:5m (Kubernetes' default) or 200ms:2s; CAP must be at least INITIAL")]
    Backoff(String),
}

/// When a container that ended is started again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Never (the default, as `docker run`).
    #[default]
    Never,
    /// After every exit, whatever its status (Kubernetes' restartPolicy: Always).
    Always,
    /// After an exit with a non-zero status (an OOM kill is 137), at most `max` times.
    OnFailure { max: Option<u32> },
}

impl Policy {
    pub fn parse(s: &str) -> Result<Policy, RestartError> {
        let bad = || RestartError::Policy(s.to_owned());
        match s.split_once(':') {
            None => match s {
                "never" | "no" => Ok(Policy::Never),
                "always" => Ok(Policy::Always),
                "on-failure" => Ok(Policy::OnFailure { max: None }),
                _ => Err(bad()),
            },
            Some(("on-failure", n)) => n.parse::<u32>().map(|m| Policy::OnFailure { max: Some(m) }).map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::Never => f.write_str("never"),
            Policy::Always => f.write_str("always"),
            Policy::OnFailure { max: None } => f.write_str("on-failure"),
            Policy::OnFailure { max: Some(m) } => write!(f, "on-failure:{m}"),
        }
    }
}

/// The delays between tries, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    pub initial_ms: u64,
    pub cap_ms: u64,
}

impl Default for Backoff {
    /// Kubernetes' kubelet: 10 s doubling to 5 min.
    fn default() -> Backoff {
        Backoff { initial_ms: 10_000, cap_ms: 300_000 }
    }
}

/// `500ms`, `10s`, `1.5s`, `5m`, `1h`.
fn parse_duration(s: &str) -> Option<u64> {
    let at = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(at);
    let scale = match unit {
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        _ => return None,
    };
    let v: f64 = num.parse().ok()?;
    let ms = v * scale;
    (ms.is_finite() && (1.0..=7.0 * 24.0 * 3600e3).contains(&ms)).then(|| ms.round() as u64)
}

impl Backoff {
    /// `INITIAL[:CAP]`; without CAP, Kubernetes' 5 min (or INITIAL, if that is longer).
    pub fn parse(s: &str) -> Result<Backoff, RestartError> {
        let bad = || RestartError::Backoff(s.to_owned());
        let (initial, cap) = match s.split_once(':') {
            Some((i, c)) => (parse_duration(i).ok_or_else(bad)?, Some(parse_duration(c).ok_or_else(bad)?)),
            None => (parse_duration(s).ok_or_else(bad)?, None),
        };
        let cap = cap.unwrap_or(Backoff::default().cap_ms.max(initial));
        if cap < initial {
            return Err(bad());
        }
        Ok(Backoff { initial_ms: initial, cap_ms: cap })
    }

    /// The delay before the restart that follows `step` earlier back-offs.
    pub fn delay(&self, step: u32) -> Duration {
        let ms = self.initial_ms.saturating_mul(1u64.checked_shl(step.min(63)).unwrap_or(u64::MAX));
        Duration::from_millis(ms.min(self.cap_ms))
    }

    /// A run at least this long counts as clean: the next back-off starts from INITIAL.
    pub fn reset_after(&self) -> Duration {
        Duration::from_millis(self.cap_ms.saturating_mul(2))
    }
}

impl fmt::Display for Backoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", human_ms(self.initial_ms), human_ms(self.cap_ms))
    }
}

/// 250ms, 10s, 1.5s, 5m.
pub fn human_ms(ms: u64) -> String {
    match ms {
        ms if ms < 1000 => format!("{ms}ms"),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{:.1}s", ms as f64 / 1000.0),
    }
}

/// A container's policy and back-off, as recorded in its state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restart {
    pub policy: Policy,
    #[serde(default)]
    pub backoff: Backoff,
}

impl Restart {
    /// Whether an exit with `code`, after `restarts` restarts so far, is followed by another
    /// start. `stopped`: the user stopped it (kill, rm), which always wins.
    pub fn again(&self, code: i32, restarts: u32, stopped: bool) -> bool {
        if stopped {
            return false;
        }
        match self.policy {
            Policy::Never => false,
            Policy::Always => true,
            Policy::OnFailure { max } => code != 0 && max.is_none_or(|m| restarts < m),
        }
    }
}

/// The monitor's back-off position: how many delays in a row, reset by a long clean run.
#[derive(Debug, Default, Clone, Copy)]
pub struct Steps(pub u32);

impl Steps {
    /// The delay before the next start, for a run that lasted `ran`.
    pub fn next(&mut self, b: &Backoff, ran: Duration) -> Duration {
        if ran >= b.reset_after() {
            self.0 = 0;
        }
        let d = b.delay(self.0);
        self.0 = self.0.saturating_add(1);
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_like_docker_and_print_back() {
        assert_eq!(Policy::parse("never").unwrap(), Policy::Never);
        assert_eq!(Policy::parse("no").unwrap(), Policy::Never);
        assert_eq!(Policy::parse("always").unwrap(), Policy::Always);
        assert_eq!(Policy::parse("on-failure").unwrap(), Policy::OnFailure { max: None });
        assert_eq!(Policy::parse("on-failure:3").unwrap(), Policy::OnFailure { max: Some(3) });
        for bad in ["", "sometimes", "on-failure:", "on-failure:-1", "always:2", "on-failure:x"] {
            assert!(Policy::parse(bad).is_err(), "{bad}");
        }
        for s in ["never", "always", "on-failure", "on-failure:3"] {
            assert_eq!(Policy::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn backoff_parses_units_and_defaults_the_cap_like_kubernetes() {
        assert_eq!(Backoff::parse("10s:5m").unwrap(), Backoff::default());
        assert_eq!(Backoff::parse("200ms:2s").unwrap(), Backoff { initial_ms: 200, cap_ms: 2000 });
        assert_eq!(Backoff::parse("1.5s").unwrap(), Backoff { initial_ms: 1500, cap_ms: 300_000 });
        assert_eq!(Backoff::parse("10m").unwrap(), Backoff { initial_ms: 600_000, cap_ms: 600_000 });
        assert_eq!(Backoff::parse("1h:1h").unwrap().cap_ms, 3_600_000);
        for bad in ["", "10", "s", "10x", "-1s", "0s", "0.1ms", "2s:1s", "1s:", ":1s", "1s:2s:3s", "nans", "9999h"] {
            assert!(Backoff::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Backoff::default().to_string(), "10s:5m");
        assert_eq!(Backoff::parse("250ms:1.5s").unwrap().to_string(), "250ms:1.5s");
    }

    #[test]
    fn delays_double_up_to_the_cap_and_reset_after_a_long_run() {
        let b = Backoff::default();
        let secs: Vec<u64> = (0..8).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(secs, [10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(b.delay(u32::MAX).as_secs(), 300);
        assert_eq!(b.reset_after().as_secs(), 600);
        let short = Duration::from_millis(5);
        let mut s = Steps::default();
        let got: Vec<u64> = (0..3).map(|_| s.next(&b, short).as_secs()).collect();
        assert_eq!(got, [10, 20, 40]);
        // Ten minutes of running: back to the first delay.
        assert_eq!(s.next(&b, Duration::from_secs(600)).as_secs(), 10);
        assert_eq!(s.next(&b, short).as_secs(), 20);
    }

    #[test]
    fn on_failure_counts_restarts_and_a_stop_always_wins() {
        let r = |p| Restart { policy: p, backoff: Backoff::default() };
        let three = r(Policy::OnFailure { max: Some(3) });
        assert!(three.again(3, 0, false) && three.again(137, 2, false));
        assert!(!three.again(3, 3, false), "at most 3 restarts: 4 starts in all");
        assert!(!three.again(0, 0, false), "a clean exit is not a failure");
        assert!(r(Policy::OnFailure { max: None }).again(1, 1000, false));
        assert!(r(Policy::Always).again(0, 1000, false));
        assert!(!r(Policy::Always).again(1, 0, true));
        assert!(!r(Policy::Never).again(1, 0, false));
    }
}
