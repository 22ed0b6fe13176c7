//! Progress of long work (layer n/N, bytes) on a terminal; silent when stderr is not one.
//! One line, redrawn in place with `\r`, at most every 100 ms.

use std::io::{self, IsTerminal, Read, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    enabled: bool,
    label: String,
    bytes: u64,
    last: Option<Instant>,
}

const EVERY: Duration = Duration::from_millis(100);

impl Progress {
    /// Shows progress only when `wanted` and stderr is a terminal.
    pub fn new(wanted: bool) -> Progress {
        Progress { enabled: wanted && io::stderr().is_terminal(), label: String::new(), bytes: 0, last: None }
    }

    pub fn start(&mut self, label: String) {
        self.label = label;
        self.bytes = 0;
        self.last = None;
        self.draw();
    }

    fn advance(&mut self, n: u64) {
        self.bytes += n;
        if self.last.is_none_or(|t| t.elapsed() >= EVERY) {
            self.draw();
        }
    }

    /// Ends the current line with a final word ("done", "already present").
    pub fn finish(&mut self, word: &str) {
        if self.enabled {
            let _ = writeln!(io::stderr(), "\r\x1b[2K{} {}  {word}", self.label, human(self.bytes));
        }
    }

    /// A whole line of its own, e.g. for a step that had nothing to do.
    pub fn note(&self, line: &str) {
        if self.enabled {
            let _ = writeln!(io::stderr(), "\r\x1b[2K{line}");
        }
    }

    fn draw(&mut self) {
        if self.enabled {
            let _ = write!(io::stderr(), "\r\x1b[2K{} {}", self.label, human(self.bytes));
            self.last = Some(Instant::now());
        }
    }
}

/// Counts bytes read through it into a `Progress`.
pub struct Counting<'p, R> {
    inner: R,
    progress: &'p mut Progress,
}

impl<'p, R> Counting<'p, R> {
    pub fn new(inner: R, progress: &'p mut Progress) -> Self {
        Counting { inner, progress }
    }
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

/// 1536 -> "1.5 kB", as docker prints sizes (powers of 1000).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        let n = format!("{v:.3}");
        format!("{} {}", n.trim_end_matches('0').trim_end_matches('.'), UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes_read_like_docker() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(999), "999 B");
        assert_eq!(human(1_500), "1.5 kB");
        assert_eq!(human(2_000_000), "2 MB");
        assert_eq!(human(1_234_567), "1.235 MB");
    }
}
