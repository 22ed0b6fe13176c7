//! Image names: `busybox`, `busybox:1.35`, `localhost/tools/x:1`, `registry:5000/a/b:tag`.
//!
//! Owns parsing and normalising names the way docker and podman read them (default tag
//! `latest`; `docker.io/library/` dropped, so `docker.io/library/busybox` is `busybox`).
//! It never resolves a name against a registry: podrun has no pull.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A normalised `repository:tag`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageName {
    repo: String,
    tag: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid image name {name:?}: {why} (expected e.g. busybox, busybox:1.35 or localhost/x:1)")]
pub struct BadName {
    pub name: String,
    pub why: &'static str,
}

const MAX_NAME: usize = 255;
const MAX_TAG: usize = 128;

impl ImageName {
    pub fn parse(s: &str) -> Result<ImageName, BadName> {
        let bad = |why| BadName { name: s.to_owned(), why };
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        if s.contains('@') {
            return Err(bad("digest references are not names; use the image id instead"));
        }
        // A ':' after the last '/' starts the tag; one before it belongs to a registry port.
        let last_slash = s.rfind('/').map_or(0, |i| i + 1);
        let (repo, tag) = match s[last_slash..].find(':') {
            Some(i) => (&s[..last_slash + i], &s[last_slash + i + 1..]),
            None => (s, "latest"),
        };
        if !valid_tag(tag) {
            return Err(bad("the tag must be 1-128 of [A-Za-z0-9_.-], not starting with . or -"));
        }
        if repo.len() > MAX_NAME {
            return Err(bad("the repository is longer than 255 characters"));
        }
        let mut parts: Vec<&str> = repo.split('/').collect();
        let has_domain =
            parts.len() > 1 && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost");
        let mut domain = None;
        if has_domain {
            let d = parts.remove(0);
            if !valid_domain(d) {
                return Err(bad("the registry must be a host name with an optional :port"));
            }
            if d == "docker.io" || d == "index.docker.io" {
                if parts.len() > 1 && parts[0] == "library" {
                    parts.remove(0);
                }
            } else {
                domain = Some(d);
            }
        }
        if parts.iter().any(|c| !valid_component(c)) {
            return Err(bad("each path component must be lowercase letters and digits, joined by . _ __ or -"));
        }
        parts.splice(0..0, domain);
        Ok(ImageName { repo: parts.join("/"), tag: tag.to_owned() })
    }

    pub fn repo(&self) -> &str {
        &self.repo
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    let host_ok = !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        });
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit()));
    host_ok && port_ok
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, the distribution spec's path component.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let sep_start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[sep_start..i];
        let dashes = sep.bytes().all(|x| x == b'-');
        if !(sep == "." || sep == "_" || sep == "__" || dashes) {
            return false;
        }
    }
    true
}

fn is_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repo, self.tag)
    }
}

impl fmt::Debug for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for ImageName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ImageName::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        ImageName::parse(s).unwrap().to_string()
    }

    #[test]
    fn name_gets_latest_tag_by_default() {
        assert_eq!(norm("busybox"), "busybox:latest");
        assert_eq!(norm("busybox:1.35"), "busybox:1.35");
    }

    #[test]
    fn name_keeps_registry_and_port() {
        assert_eq!(norm("localhost/x:1"), "localhost/x:1");
        assert_eq!(norm("localhost:5000/a/b"), "localhost:5000/a/b:latest");
        assert_eq!(norm("quay.io/org/app:v2.0-rc_1"), "quay.io/org/app:v2.0-rc_1");
    }

    #[test]
    fn name_drops_docker_hub_prefixes() {
        assert_eq!(norm("docker.io/library/busybox:latest"), "busybox:latest");
        assert_eq!(norm("docker.io/bitnami/redis"), "bitnami/redis:latest");
    }

    #[test]
    fn name_rejects_bad_forms() {
        for bad in [
            "",
            "Busybox",
            "busy box",
            "../x",
            "a//b",
            "x:",
            "x:-tag",
            "x@sha256:00",
            "-x",
            "x.",
            "a/b/",
            "bad_host_:80/x",
            "x:has/slash",
            &"a".repeat(256),
            &format!("x:{}", "t".repeat(129)),
        ] {
            assert!(ImageName::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn name_accepts_separators_of_the_spec() {
        for good in ["a.b", "a_b", "a__b", "a---b", "a1/b2/c3", "x:_t", "x:T.1-2"] {
            assert!(ImageName::parse(good).is_ok(), "{good:?} was refused");
        }
    }
}
