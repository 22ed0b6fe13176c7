//! Classifies layer entry names: AUFS-style whiteouts (`.wh.<name>`, `.wh..wh..opq`) as the
//! OCI image spec defines them. Pure: it only plans; `layer.rs` turns the plan into overlayfs
//! whiteouts (a 0:0 character device) and opaque directories (`trusted.overlay.opaque=y`).

/// What one entry's last path component asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan<'a> {
    /// An ordinary file, directory or link with this name.
    Entry,
    /// Hide `name` of lower layers in this directory.
    Whiteout(&'a [u8]),
    /// Hide every lower-layer entry of this directory.
    Opaque,
    /// AUFS bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`): not content, skipped.
    Skip,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("whiteout {0:?} does not name an entry of its directory")]
pub struct BadWhiteout(pub String);

const PREFIX: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";
const META_PREFIX: &[u8] = b".wh..wh.";

pub fn plan(name: &[u8]) -> Result<Plan<'_>, BadWhiteout> {
    if name == OPAQUE {
        return Ok(Plan::Opaque);
    }
    if name.starts_with(META_PREFIX) {
        return Ok(Plan::Skip);
    }
    match name.strip_prefix(PREFIX) {
        None => Ok(Plan::Entry),
        Some(target) if target.is_empty() || target == b"." || target == b".." => {
            Err(BadWhiteout(String::from_utf8_lossy(name).into_owned()))
        }
        Some(target) => Ok(Plan::Whiteout(target)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteout_plans_hide_and_opaque() {
        assert_eq!(plan(b"passwd"), Ok(Plan::Entry));
        assert_eq!(plan(b".wh.passwd"), Ok(Plan::Whiteout(b"passwd")));
        assert_eq!(plan(b".wh..wh..opq"), Ok(Plan::Opaque));
        assert_eq!(plan(b".wh..wh.plnk"), Ok(Plan::Skip));
        assert_eq!(plan(b".whatever"), Ok(Plan::Entry));
    }

    #[test]
    fn whiteout_rejects_dot_dot_and_empty_names() {
        assert!(plan(b".wh...").is_err());
        assert!(plan(b".wh..").is_err());
        assert!(plan(b".wh.").is_err());
    }
}
