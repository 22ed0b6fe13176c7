//! The one error type of the image module: what a caller (the CLI, `run`) can act on.

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;

use super::digest::{BadDigest, Digest};
use super::layer::LayerError;
use super::reference::BadName;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op} {path}")]
    Io { op: &'static str, path: PathBuf, source: io::Error },
    #[error("{op} {path}: {errno}")]
    Sys { op: &'static str, path: PathBuf, errno: Errno },
    #[error("{path} is not a readable tar archive (truncated or corrupt?)")]
    Corrupt { path: PathBuf, source: io::Error },
    #[error("{path}: not an image: a directory needs an oci-layout file (OCI image layout) or a manifest.json (docker save)")]
    UnknownDirectory { path: PathBuf },
    #[error("{what} is malformed")]
    Malformed { what: String, source: Box<dyn std::error::Error + Send + Sync> },
    #[error("{what}: {why}")]
    Unsupported { what: String, why: &'static str },
    #[error("the image points at {path}, which is not in the archive (a manifest or layer blob is missing)")]
    MissingBlob { path: String },
    #[error("{what} has digest {actual}, but the image says {expected}: the file is corrupt or was altered")]
    DigestMismatch { what: String, expected: Digest, actual: Digest },
    #[error("{what} is larger than {limit} bytes, which podrun accepts for it")]
    TooLarge { what: String, limit: u64 },
    #[error("the archive holds {} images ({})", .candidates.len(), .candidates.join(", "))]
    AmbiguousManifest { candidates: Vec<String> },
    #[error("no image in the archive matches {wanted} (it holds: {})", .candidates.join(", "))]
    NoMatchingManifest { wanted: String, candidates: Vec<String> },
    #[error("the image has no name")]
    NoName,
    #[error("layer {index} ({what})")]
    Layer { index: usize, what: String, source: LayerError },
    #[error(transparent)]
    BadName(#[from] BadName),
    #[error(transparent)]
    BadDigest(#[from] BadDigest),
    #[error("no such image: {0}")]
    NotFound(String),
    #[error("{reference} matches more than one image id; give more digits")]
    AmbiguousId { reference: String },
    #[error("image {image} is referenced by several names ({})", .names.join(", "))]
    SeveralNames { image: String, names: Vec<String> },
    #[error("image {image} is in use by container(s) {}; remove them first", .containers.join(", "))]
    InUse { image: String, containers: Vec<String> },
    #[error("container {0} already has a root filesystem")]
    RootfsExists(String),
    #[error("container {0} has no root filesystem")]
    NoRootfs(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches an operation and path to an io::Error.
pub(crate) fn io_err(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { op, path, source }
}

pub(crate) fn malformed(what: impl Into<String>) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> Error {
    let what = what.into();
    move |source| Error::Malformed { what, source }
}

pub(crate) fn corrupt(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Corrupt { path, source }
}
