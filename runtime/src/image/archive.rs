//! Opens what a user imports and works out, by content, what it is: an OCI image layout
//! (a directory, or the same as a tar archive), a `docker save` archive, or a plain root
//! filesystem tarball; then plans the import (which config, which layer blobs, which
//! digests to expect).
//!
//! Owns reading members of those containers. It never writes to the store, and it never
//! follows a member path or symlink out of the archive or directory it was given.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;
use oci_spec::image::{Arch, Descriptor, ImageConfiguration, ImageIndex, ImageManifest, Os};
use serde::Deserialize;

use super::digest::Digest;
use super::error::{corrupt, io_err, malformed, Error, Result};
use super::layer;
use super::reference::ImageName;

/// The largest index, manifest or config podrun reads into memory.
const MAX_JSON: u64 = 16 << 20;
const MAX_LINK_HOPS: usize = 8;
const MAX_INDEX_DEPTH: usize = 3;

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// A directory or an uncompressed tar archive whose members can be read by path.
pub struct Source {
    origin: PathBuf,
    kind: SourceKind,
}

enum SourceKind {
    Dir(OwnedFd),
    Tar { file: File, members: HashMap<String, Member> },
}

enum Member {
    File {
        offset: u64,
        size: u64,
    },
    /// A symlink or hard link, by the normalised path it names.
    Link(String),
}

/// What `detect` found.
pub enum Detected {
    Oci(Source),
    Docker(Source),
    /// The input file itself is one layer.
    Rootfs,
}

/// One layer to import: where its blob is, and what its digests must be.
#[derive(Debug)]
pub struct PlannedLayer {
    /// The member holding the blob; `None` for the input file itself (a rootfs tarball).
    pub member: Option<String>,
    pub blob: Option<Digest>,
    pub diff_id: Option<Digest>,
}

/// An import, planned: everything but the layer contents has been read and verified.
pub struct Plan {
    /// The raw config blob and its digest (the image id); `None` for a rootfs tarball, whose
    /// config podrun writes once the layer's digest is known.
    pub config: Option<(Vec<u8>, ImageConfiguration, Digest)>,
    pub names: Vec<ImageName>,
    pub layers: Vec<PlannedLayer>,
}

/// Normalises a member path: no leading `./` or `/`, no `..`.
fn member_path(p: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}

impl Source {
    fn dir(path: &Path) -> Result<Source> {
        let fd = nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| io_err("open", path)(e.into()))?;
        Ok(Source { origin: path.to_owned(), kind: SourceKind::Dir(fd) })
    }

    /// Indexes an uncompressed tar file by member name, seeking over contents.
    fn tar(path: &Path, file: File) -> Result<Source> {
        let mut members = HashMap::new();
        {
            let mut archive = tar::Archive::new(&file);
            let entries = archive.entries_with_seek().map_err(corrupt(path))?;
            for entry in entries {
                let entry = entry.map_err(corrupt(path))?;
                let Some(name) = member_path(&String::from_utf8_lossy(&entry.path_bytes())) else { continue };
                let link_target = |e: &tar::Entry<'_, &File>| {
                    e.link_name_bytes().map(|l| String::from_utf8_lossy(&l).into_owned()).unwrap_or_default()
                };
                let member = match entry.header().entry_type() {
                    tar::EntryType::Regular | tar::EntryType::Continuous => {
                        Member::File { offset: entry.raw_file_position(), size: entry.size() }
                    }
                    tar::EntryType::Symlink => {
                        let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
                        match member_path(&format!("{dir}/{}", link_target(&entry))) {
                            Some(t) => Member::Link(t),
                            None => continue,
                        }
                    }
                    tar::EntryType::Link => match member_path(&link_target(&entry)) {
                        Some(t) => Member::Link(t),
                        None => continue,
                    },
                    _ => continue,
                };
                members.insert(name, member);
            }
        }
        Ok(Source { origin: path.to_owned(), kind: SourceKind::Tar { file, members } })
    }

    /// Opens member `path` for reading, failing with `MissingBlob` when it is not there.
    pub fn open(&self, path: &str) -> Result<Box<dyn Read + '_>> {
        let missing = || Error::MissingBlob { path: path.to_owned() };
        let mut name = member_path(path).ok_or_else(missing)?;
        match &self.kind {
            SourceKind::Dir(dir) => {
                let how = OpenHow::new()
                    .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
                    .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
                match openat2(dir, name.as_str(), how) {
                    // Only regular files: a FIFO or device in the layout would block or never end.
                    Ok(fd) => match File::from(fd) {
                        f if f.metadata().is_ok_and(|m| m.is_file()) => Ok(Box::new(f)),
                        _ => Err(missing()),
                    },
                    Err(nix::errno::Errno::ENOENT) => Err(missing()),
                    Err(e) => Err(io_err("open", self.origin.join(&name))(e.into())),
                }
            }
            SourceKind::Tar { file, members } => {
                for _ in 0..MAX_LINK_HOPS {
                    match members.get(&name) {
                        Some(Member::File { offset, size }) => {
                            return Ok(Box::new(At { file, pos: *offset, end: offset + size }));
                        }
                        Some(Member::Link(target)) => name = target.clone(),
                        None => break,
                    }
                }
                Err(missing())
            }
        }
    }

    fn exists(&self, path: &str) -> bool {
        self.open(path).is_ok()
    }

    /// Reads a small member (an index, manifest or config) whole.
    pub fn read_small(&self, path: &str) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.open(path)?.take(MAX_JSON + 1).read_to_end(&mut buf).map_err(io_err("read", self.origin.join(path)))?;
        if buf.len() as u64 > MAX_JSON {
            return Err(Error::TooLarge { what: path.to_owned(), limit: MAX_JSON });
        }
        Ok(buf)
    }

    /// Reads blob `digest` of an OCI layout and checks it against the digest.
    fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = blob_path(digest);
        let bytes = self.read_small(&path)?;
        verify(&path, digest, &Digest::of(&bytes))?;
        Ok(bytes)
    }
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

pub fn verify(what: &str, expected: &Digest, actual: &Digest) -> Result<()> {
    if expected == actual {
        Ok(())
    } else {
        Err(Error::DigestMismatch { what: what.to_owned(), expected: expected.clone(), actual: actual.clone() })
    }
}

/// A member of a tar file, read with positioned reads (the file is shared by members).
struct At<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min((self.end - self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "archive member is truncated"));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn parse_docker_manifest(bytes: &[u8]) -> Option<Vec<DockerManifest>> {
    serde_json::from_slice::<Vec<DockerManifest>>(bytes).ok().filter(|m| !m.is_empty())
}

/// Works out what `path` is. A compressed archive that holds an image is decompressed into
/// `scratch` (the import's own temporary directory) so its members can be read by offset.
pub fn detect(path: &Path, scratch: &Path) -> Result<Detected> {
    let meta = std::fs::metadata(path).map_err(io_err("stat", path))?;
    if meta.is_dir() {
        let src = Source::dir(path)?;
        return if src.exists("oci-layout") {
            Ok(Detected::Oci(src))
        } else if src.exists("manifest.json") {
            Ok(Detected::Docker(src))
        } else {
            Err(Error::UnknownDirectory { path: path.to_owned() })
        };
    }
    let file = File::open(path).map_err(io_err("open", path))?;
    let mut magic = [0u8; 4];
    let n = file.read_at(&mut magic, 0).map_err(io_err("read", path))?;
    let compressed = magic[..n].starts_with(&[0x1f, 0x8b]) || magic[..n] == [0x28, 0xb5, 0x2f, 0xfd];
    if !compressed {
        let src = Source::tar(path, file)?;
        return Ok(classify(src));
    }
    // One pass over the names decides; most compressed inputs are rootfs tarballs, which are
    // then streamed from the start without a temporary copy.
    if !compressed_holds_image(path, &file)? {
        return Ok(Detected::Rootfs);
    }
    let outer = scratch.join("archive.tar");
    let mut out = File::create(&outer).map_err(io_err("create", &outer))?;
    // The scan above read `file` to its end: start again from the first byte.
    (&file).seek(io::SeekFrom::Start(0)).map_err(io_err("seek", path))?;
    let mut reader = layer::decompress(&file).map_err(corrupt(path))?;
    io::copy(&mut reader, &mut out).map_err(corrupt(path))?;
    drop(out);
    let tar = File::open(&outer).map_err(io_err("open", &outer))?;
    Ok(classify(Source::tar(path, tar)?))
}

fn classify(src: Source) -> Detected {
    if src.exists("oci-layout") && src.exists("index.json") {
        Detected::Oci(src)
    } else if src.read_small("manifest.json").ok().and_then(|b| parse_docker_manifest(&b)).is_some() {
        Detected::Docker(src)
    } else {
        Detected::Rootfs
    }
}

fn compressed_holds_image(path: &Path, file: &File) -> Result<bool> {
    let reader = layer::decompress(file).map_err(corrupt(path))?;
    let mut archive = tar::Archive::new(reader);
    let (mut layout, mut index, mut docker) = (false, false, false);
    for entry in archive.entries().map_err(corrupt(path))? {
        let mut entry = entry.map_err(corrupt(path))?;
        let name = member_path(&String::from_utf8_lossy(&entry.path_bytes())).unwrap_or_default();
        match name.as_str() {
            "oci-layout" => layout = true,
            "index.json" => index = true,
            "manifest.json" if entry.size() <= MAX_JSON => {
                let mut buf = Vec::new();
                entry.read_to_end(&mut buf).map_err(corrupt(path))?;
                docker = parse_docker_manifest(&buf).is_some();
            }
            _ => {}
        }
    }
    Ok((layout && index) || docker)
}

/// Plans the import of an OCI image layout.
pub fn plan_oci(src: &Source, wanted: Option<&ImageName>) -> Result<Plan> {
    let index_bytes = src.read_small("index.json")?;
    let index = ImageIndex::from_reader(&index_bytes[..]).map_err(|e| malformed("index.json")(e.into()))?;
    let chosen = choose_manifest(index.manifests(), wanted)?;
    let names = match wanted {
        Some(n) => vec![n.clone()],
        None => descriptor_name(chosen).into_iter().collect(),
    };
    if names.is_empty() {
        return Err(Error::NoName);
    }
    let manifest = resolve_manifest(src, chosen, 0)?;
    let config_digest = Digest::parse(manifest.config().digest().as_ref())?;
    let config_raw = src.read_blob(&config_digest)?;
    let config = parse_config(&config_raw)?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(Error::Unsupported {
            what: "the image".into(),
            why: "its manifest and config list different numbers of layers",
        });
    }
    let mut layers = Vec::new();
    for (desc, diff_id) in manifest.layers().iter().zip(diff_ids) {
        let blob = Digest::parse(desc.digest().as_ref())?;
        layers.push(PlannedLayer {
            member: Some(blob_path(&blob)),
            blob: Some(blob),
            diff_id: Some(Digest::parse(diff_id)?),
        });
    }
    Ok(Plan { config: Some((config_raw, config, config_digest)), names, layers })
}

fn parse_config(raw: &[u8]) -> Result<ImageConfiguration> {
    ImageConfiguration::from_reader(raw).map_err(|e| malformed("the image config")(e.into()))
}

/// The image name a descriptor's annotations give, if they give a full one.
fn descriptor_name(d: &Descriptor) -> Option<ImageName> {
    let ann = d.annotations().as_ref()?;
    if let Some(n) = ann.get(CONTAINERD_NAME).and_then(|n| ImageName::parse(n).ok()) {
        return Some(n);
    }
    // ref.name is often just a tag ("latest"): only a value with a repository part is a name.
    ann.get(REF_NAME).filter(|r| r.contains(':') || r.contains('/')).and_then(|r| ImageName::parse(r).ok())
}

fn ref_label(d: &Descriptor) -> String {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(CONTAINERD_NAME).or_else(|| a.get(REF_NAME)))
        .cloned()
        .unwrap_or_else(|| d.digest().to_string())
}

fn for_this_host(d: &Descriptor) -> bool {
    d.platform().as_ref().is_none_or(|p| *p.os() == Os::Linux && *p.architecture() == Arch::default())
}

fn choose_manifest<'a>(all: &'a [Descriptor], wanted: Option<&ImageName>) -> Result<&'a Descriptor> {
    let candidates: Vec<&Descriptor> = all.iter().filter(|d| for_this_host(d)).collect();
    let labels = || candidates.iter().map(|d| ref_label(d)).collect::<Vec<_>>();
    if let Some(w) = wanted {
        let matching: Vec<&&Descriptor> = candidates
            .iter()
            .filter(|d| {
                let ann = d.annotations().as_ref();
                descriptor_name(d).as_ref() == Some(w)
                    || ann.and_then(|a| a.get(REF_NAME)).is_some_and(|r| r == w.tag())
            })
            .collect();
        if let [one] = matching[..] {
            return Ok(one);
        }
        if candidates.len() > 1 && matching.is_empty() {
            return Err(Error::NoMatchingManifest { wanted: w.to_string(), candidates: labels() });
        }
    }
    match candidates[..] {
        [one] => Ok(one),
        [] => Err(Error::Unsupported {
            what: "the image index".into(),
            why: "it has no manifest for linux on this architecture",
        }),
        _ => Err(Error::AmbiguousManifest { candidates: labels() }),
    }
}

/// Follows nested indexes (multi-platform images) down to this host's manifest.
fn resolve_manifest(src: &Source, d: &Descriptor, depth: usize) -> Result<ImageManifest> {
    let digest = Digest::parse(d.digest().as_ref())?;
    let bytes = src.read_blob(&digest)?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| malformed(blob_path(&digest))(e.into()))?;
    if value.get("manifests").is_some() {
        if depth >= MAX_INDEX_DEPTH {
            return Err(Error::Unsupported { what: blob_path(&digest), why: "image indexes are nested too deeply" });
        }
        let index = ImageIndex::from_reader(&bytes[..]).map_err(|e| malformed(blob_path(&digest))(e.into()))?;
        let inner = choose_manifest(index.manifests(), None)?;
        return resolve_manifest(src, inner, depth + 1);
    }
    ImageManifest::from_reader(&bytes[..]).map_err(|e| malformed(blob_path(&digest))(e.into()))
}

/// Plans the import of a `docker save` archive.
pub fn plan_docker(src: &Source, wanted: Option<&ImageName>) -> Result<Plan> {
    let bytes = src.read_small("manifest.json")?;
    let all: Vec<DockerManifest> = serde_json::from_slice(&bytes).map_err(|e| malformed("manifest.json")(e.into()))?;
    let tags = |m: &DockerManifest| -> Vec<ImageName> {
        m.repo_tags.iter().flatten().filter_map(|t| ImageName::parse(t).ok()).collect()
    };
    let labels =
        || all.iter().map(|m| m.repo_tags.iter().flatten().cloned().collect::<Vec<_>>().join(" ")).collect::<Vec<_>>();
    let chosen = match (wanted, &all[..]) {
        (_, [one]) => one,
        (Some(w), _) => all
            .iter()
            .find(|m| tags(m).contains(w))
            .ok_or_else(|| Error::NoMatchingManifest { wanted: w.to_string(), candidates: labels() })?,
        (None, []) => return Err(Error::Unsupported { what: "manifest.json".into(), why: "it lists no image" }),
        (None, _) => return Err(Error::AmbiguousManifest { candidates: labels() }),
    };
    let names = match wanted {
        Some(w) => vec![w.clone()],
        None => tags(chosen),
    };
    if names.is_empty() {
        return Err(Error::NoName);
    }
    let config_raw = src.read_small(&chosen.config)?;
    let id = Digest::of(&config_raw);
    if let Some(expected) = digest_in_name(&chosen.config) {
        verify(&chosen.config, &expected, &id)?;
    }
    let config = parse_config(&config_raw)?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != chosen.layers.len() {
        return Err(Error::Unsupported {
            what: "the image".into(),
            why: "its manifest and config list different numbers of layers",
        });
    }
    let mut layers = Vec::new();
    for (path, diff_id) in chosen.layers.iter().zip(diff_ids) {
        layers.push(PlannedLayer {
            member: Some(path.clone()),
            blob: digest_in_name(path),
            diff_id: Some(Digest::parse(diff_id)?),
        });
    }
    Ok(Plan { config: Some((config_raw, config, id)), names, layers })
}

/// The digest a docker-save member name carries (`<hex>.json`, `blobs/sha256/<hex>`).
fn digest_in_name(path: &str) -> Option<Digest> {
    let base = path.rsplit('/').next()?;
    let hex = base.strip_suffix(".json").unwrap_or(base);
    Digest::from_hex(hex).ok()
}

/// Plans the import of a plain root filesystem tarball: one layer, the file itself.
pub fn plan_rootfs(path: &Path, wanted: Option<&ImageName>) -> Result<Plan> {
    let name = match wanted {
        Some(n) => n.clone(),
        None => name_from_file(path).ok_or(Error::NoName)?,
    };
    Ok(Plan { config: None, names: vec![name], layers: vec![PlannedLayer { member: None, blob: None, diff_id: None }] })
}

/// `alpine-minirootfs-3.20.tar.gz` -> `alpine-minirootfs-3.20:latest`, if that is a valid name.
fn name_from_file(path: &Path) -> Option<ImageName> {
    let base = path.file_name()?.to_str()?.to_ascii_lowercase();
    let stem = [".tar.gz", ".tar.zst", ".tgz", ".tar"].iter().find_map(|ext| base.strip_suffix(ext)).unwrap_or(&base);
    ImageName::parse(stem).ok()
}

/// The config podrun writes for a rootfs tarball: no timestamps and no file name, so the
/// same content always gets the same image id, however it was compressed or named.
pub fn rootfs_config(diff_id: &Digest) -> Vec<u8> {
    let config = serde_json::json!({
        "architecture": Arch::default().to_string(),
        "os": "linux",
        "config": { "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] },
        "rootfs": { "type": "layers", "diff_ids": [diff_id.to_string()] },
        "history": [ { "created_by": "podrun image import" } ],
    });
    // A json! value always serialises.
    serde_json::to_vec(&config).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_path_normalises_and_refuses_escapes() {
        assert_eq!(member_path("./blobs//sha256/x").as_deref(), Some("blobs/sha256/x"));
        assert_eq!(member_path("/index.json").as_deref(), Some("index.json"));
        assert_eq!(member_path("blobs/../../etc/passwd"), None);
    }

    #[test]
    fn rootfs_name_comes_from_the_file_name() {
        let n = |p: &str| name_from_file(Path::new(p)).map(|n| n.to_string());
        assert_eq!(n("/x/Alpine-MiniRootfs-3.20.tar.gz").as_deref(), Some("alpine-minirootfs-3.20:latest"));
        assert_eq!(n("debian.tar").as_deref(), Some("debian:latest"));
        assert_eq!(n("my rootfs.tar"), None);
    }

    #[test]
    fn docker_member_names_carry_digests() {
        let hex = "a".repeat(64);
        assert_eq!(digest_in_name(&format!("{hex}.json")).map(|d| d.hex().to_owned()), Some(hex.clone()));
        assert_eq!(digest_in_name(&format!("blobs/sha256/{hex}")).map(|d| d.hex().to_owned()), Some(hex));
        assert!(digest_in_name("abc/layer.tar").is_none());
    }

    #[test]
    fn rootfs_config_is_deterministic_and_parses() {
        let d = Digest::of(b"x");
        let a = rootfs_config(&d);
        assert_eq!(a, rootfs_config(&d));
        let c = parse_config(&a).unwrap();
        assert_eq!(c.rootfs().diff_ids(), &vec![d.to_string()]);
    }

    /// A config as `docker save` of an image built by the classic builder writes it:
    /// nulls, empty strings and fields outside the OCI spec.
    #[test]
    fn docker_style_config_with_nulls_parses() {
        let raw = br##"{"architecture":"amd64","config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,
            "ExposedPorts":null,"Tty":false,"Env":["PATH=/bin"],"Cmd":["sh"],"Image":"sha256:00","Volumes":null,
            "WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null},"container":"abc",
            "container_config":{"Cmd":["/bin/sh","-c","#(nop) CMD [\"sh\"]"]},"created":"2023-05-19T20:19:24.286Z",
            "docker_version":"20.10.23","history":[{"created":"2023-05-19T20:19:24Z","created_by":"x","empty_layer":true}],
            "os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]}}"##;
        let c = parse_config(raw).unwrap();
        let rc = crate::image::store::run_config(&c);
        assert_eq!(rc.cmd, vec!["sh"]);
        assert_eq!(rc.working_dir, None);
        assert_eq!(rc.user, None);
        assert!(rc.entrypoint.is_empty());
    }
}
