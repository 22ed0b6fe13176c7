//! Validated identifiers. A `ContainerId` is used as a directory name under podrun's storage
//! and state roots, so validation here is what keeps those paths inside their root.

use std::fmt;

/// A container name or id: `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}` (docker's rule, length-capped).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ContainerId(String);

impl TryFrom<String> for ContainerId {
    type Error = BadId;
    fn try_from(s: String) -> Result<ContainerId, BadId> {
        ContainerId::parse(&s)
    }
}

impl From<ContainerId> for String {
    fn from(id: ContainerId) -> String {
        id.0
    }
}

impl std::ops::Deref for ContainerId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

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

/// A sandbox (pod) name: the same rule as containers; also the default hostname.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct SandboxId(String);

impl SandboxId {
    pub fn parse(s: &str) -> Result<SandboxId, BadId> {
        if valid_id(s) {
            Ok(SandboxId(s.to_owned()))
        } else {
            Err(BadId { kind: "sandbox", name: s.to_owned() })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SandboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `prefix-` and 12 random hex digits, for names the user did not give.
pub fn generate(prefix: &str) -> String {
    let mut b = [0u8; 6];
    // getrandom(2) with no flags blocks only before the pool is initialised at boot.
    // SAFETY: b is a live buffer of the given length.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        b.copy_from_slice(&(t as u64 ^ std::process::id() as u64).to_le_bytes()[..6]);
    }
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    if prefix.is_empty() {
        hex
    } else {
        format!("{prefix}-{hex}")
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
    #[test]
    fn an_id_read_from_json_is_checked_once_there() {
        let ok: ContainerId = serde_json::from_str("\"c1\"").unwrap();
        assert_eq!((ok.as_str(), serde_json::to_string(&ok).unwrap().as_str()), ("c1", "\"c1\""));
        assert!(serde_json::from_str::<ContainerId>("\"../etc\"").is_err(), "a path is no id");
    }

    use super::*;

    #[test]
    fn container_id_accepts_docker_style_names() {
        for ok in ["web", "web-1", "a.b_c", "0abc", &"x".repeat(64)] {
            assert!(ContainerId::parse(ok).is_ok(), "{ok:?} was refused");
        }
    }

    #[test]
    fn generated_names_are_valid_and_differ() {
        let (a, b) = (generate("pod"), generate("pod"));
        assert!(SandboxId::parse(&a).is_ok() && a.starts_with("pod-") && a.len() == 16);
        assert_ne!(a, b);
        assert_eq!(generate("").len(), 12);
    }

    #[test]
    fn container_id_rejects_paths_and_odd_names() {
        for bad in ["", ".", "..", "../x", "a/b", "-x", ".x", "a b", "a\nb", &"x".repeat(65)] {
            assert!(ContainerId::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
