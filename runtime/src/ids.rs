//! Validated identifiers. A `ContainerId` is used as a directory name under podrun's storage
//! and state roots, so validation here is what keeps those paths inside their root.

use std::fmt;

/// A container name or id: `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}` (docker's rule, length-capped).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContainerId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {kind} name {name:?}: use 1-64 of [A-Za-z0-9_.-], starting with a letter or digit")]
pub struct BadId {
    pub kind: &'static str,
    pub name: String,
}

const MAX_ID: usize = 64;

fn valid_id(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_ID
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl ContainerId {
    pub fn parse(s: &str) -> Result<ContainerId, BadId> {
        if valid_id(s) {
            Ok(ContainerId(s.to_owned()))
        } else {
            Err(BadId { kind: "container", name: s.to_owned() })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_id_accepts_docker_style_names() {
        for ok in ["web", "web-1", "a.b_c", "0abc", &"x".repeat(64)] {
            assert!(ContainerId::parse(ok).is_ok(), "{ok:?} was refused");
        }
    }

    #[test]
    fn container_id_rejects_paths_and_odd_names() {
        for bad in ["", ".", "..", "../x", "a/b", "-x", ".x", "a b", "a\nb", &"x".repeat(65)] {
            assert!(ContainerId::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
