//! The image store: content-addressed layers, image records, and container root
//! filesystems built from them.
//!
//! Layout under the storage root (0700, root-owned, so set-id files in layers stay data):
//! ```text
//! lock                  flock: shared by imports and rootfs creation, exclusive by removal
//! index.lock            flock: exclusive while images.json is rewritten
//! images.json           every image record (names, layers, run config), replaced atomically
//! images/<id>.json      each image's raw config blob
//! layers/<diff_id>/     one unpacked layer, an overlay lowerdir; never written after commit
//! containers/<cid>/     image (the id), upper/, work/, merged/ of one container rootfs
//! tmp/import-*/         work in progress; renamed into layers/ when complete
//! ```
//! Imports unpack into tmp/ without holding the index lock and commit with renames under
//! it, so a failed or killed import leaves nothing half-done in layers/ or images.json, and
//! two imports of the same image both succeed with one copy of each layer. Removal takes
//! the store lock exclusively, so it never deletes a layer an import is about to use.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use oci_spec::image::ImageConfiguration;
use serde::{Deserialize, Serialize};

use super::archive::{self, Detected, Plan};
use super::digest::{Digest, HashingReader};
use super::error::{io_err, Error, Result};
use super::layer;
use super::progress::{Counting, Progress};
use super::reference::ImageName;
use crate::ids::ContainerId;

const IMAGES_JSON: &str = "images.json";

/// What `run` needs from an image config, and what `image inspect` shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub diff_id: Digest,
    /// Bytes of regular-file content.
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub id: Digest,
    pub names: Vec<ImageName>,
    /// Bottom layer first, as in the image config.
    pub layers: Vec<LayerRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Unix seconds of the import.
    pub imported: u64,
    pub architecture: String,
    pub os: String,
    pub config: RunConfig,
}

impl ImageRecord {
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Index {
    images: Vec<ImageRecord>,
}

impl Index {
    fn layer_sizes(&self) -> HashMap<Digest, u64> {
        self.images.iter().flat_map(|i| &i.layers).map(|l| (l.diff_id.clone(), l.size)).collect()
    }

    /// Moves `names` to image `id`, dropping images left without a name and without a
    /// container using them.
    fn name(&mut self, id: &Digest, names: &[ImageName], in_use: &HashSet<Digest>) {
        for img in &mut self.images {
            if &img.id != id {
                img.names.retain(|n| !names.contains(n));
            }
        }
        self.images.retain(|i| &i.id == id || !i.names.is_empty() || in_use.contains(&i.id));
    }
}

/// What `Store::import` did.
#[derive(Debug)]
pub struct Imported {
    pub image: ImageRecord,
    /// The names this import gave the image.
    pub names: Vec<ImageName>,
    /// Device nodes in the layers that were not created (containers get /dev from podrun).
    pub skipped_devices: u64,
}

/// What `Store::remove` did.
#[derive(Debug, Default)]
pub struct Removed {
    pub untagged: Vec<ImageName>,
    pub deleted: Option<Digest>,
    pub layers_deleted: usize,
}

pub use crate::mount::Rootfs;

pub struct Store {
    root: PathBuf,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn mkdir_private(path: &Path) -> Result<()> {
    fs::DirBuilder::new().recursive(true).mode(0o700).create(path).map_err(io_err("create directory", path))
}

/// Writes `bytes` to `path` atomically and durably: temp file, fsync, rename, fsync dir.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err("create", &tmp))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(io_err("write", &tmp))?;
    fs::rename(&tmp, path).map_err(io_err("rename", path))?;
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("sync", dir))?;
    }
    Ok(())
}

/// A temporary directory under the store's tmp/, removed when dropped (also on error).
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

impl Store {
    /// Opens (creating if needed) the store at `root`. Directories podrun creates are 0700,
    /// so set-id files inside layers are data nobody else can reach; an existing `root` keeps
    /// its mode (it may be a directory podrun does not own).
    pub fn open(root: &Path) -> Result<Store> {
        for sub in ["layers", "images", "containers", "tmp"] {
            mkdir_private(&root.join(sub))?;
        }
        Ok(Store { root: root.to_owned() })
    }

    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers").join(diff_id.hex())
    }

    fn config_path(&self, id: &Digest) -> PathBuf {
        self.root.join("images").join(format!("{}.json", id.hex()))
    }

    fn container_dir(&self, cid: &ContainerId) -> PathBuf {
        self.root.join("containers").join(cid.as_str())
    }

    fn lock(&self, name: &str, arg: FlockArg) -> Result<Flock<File>> {
        let path = self.root.join(name);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("open lock", &path))?;
        Flock::lock(f, arg).map_err(|(_, e)| Error::Sys { op: "flock", path, errno: e })
    }

    fn load_index(&self) -> Result<Index> {
        let path = self.root.join(IMAGES_JSON);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::Malformed { what: path.display().to_string(), source: e.into() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(io_err("read", path)(e)),
        }
    }

    fn save_index(&self, index: &Index) -> Result<()> {
        // Serialising plain records cannot fail.
        let bytes = serde_json::to_vec_pretty(index).unwrap_or_default();
        write_atomic(&self.root.join(IMAGES_JSON), &bytes)
    }

    /// Every image, in import order.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        Ok(self.load_index()?.images)
    }

    /// Finds an image by name (`busybox`, `busybox:latest`) or id (`sha256:…`, or a prefix
    /// of at least 4 hex digits).
    pub fn resolve(&self, reference: &str) -> Result<ImageRecord> {
        find(&self.load_index()?, reference).cloned()
    }

    /// The image's raw config blob.
    pub fn config_bytes(&self, id: &Digest) -> Result<Vec<u8>> {
        let p = self.config_path(id);
        fs::read(&p).map_err(io_err("read", p))
    }

    /// Imports the image (or rootfs tarball) at `path`.
    pub fn import(&self, path: &Path, name: Option<&ImageName>, progress: &mut Progress) -> Result<Imported> {
        let _shared = self.lock_for_import()?;
        let work = self.work_dir()?;
        let plan = match archive::detect(path, &work.0)? {
            Detected::Oci(src) => (archive::plan_oci(&src, name)?, Some(src)),
            Detected::Docker(src) => (archive::plan_docker(&src, name)?, Some(src)),
            Detected::Rootfs => (archive::plan_rootfs(path, name)?, None),
        };
        let (plan, src): (Plan, _) = plan;
        let known = self.load_index()?.layer_sizes();
        let total = plan.layers.len();
        let mut layers = Vec::with_capacity(total);
        let mut unpacked: Vec<(Digest, PathBuf)> = Vec::new();
        let mut skipped_devices = 0;
        for (i, planned) in plan.layers.iter().enumerate() {
            let label = |d: &str| format!("layer {}/{total} {}", i + 1, d);
            if let Some((d, size)) = planned.diff_id.as_ref().and_then(|d| known.get(d).map(|s| (d.clone(), *s))) {
                progress.note(&format!("{}  already present", label(d.short())));
                layers.push(LayerRecord { diff_id: d, size });
                continue;
            }
            let what = planned.member.clone().unwrap_or_else(|| path.display().to_string());
            progress.start(label(planned.diff_id.as_ref().or(planned.blob.as_ref()).map_or("", |d| d.short())));
            let dest = work.0.join(format!("layer-{i}"));
            // The layer's root becomes the container's / (overlayfs takes the top layer's root
            // attributes): 0755 like any root. layers/ above it keeps others out.
            fs::DirBuilder::new().mode(0o755).create(&dest).map_err(io_err("create directory", &dest))?;
            let input: Box<dyn std::io::Read> = match (&src, &planned.member) {
                (Some(src), Some(member)) => src.open(member)?,
                _ => Box::new(File::open(path).map_err(io_err("open", path))?),
            };
            let (diff_id, stats) = unpack_verified(input, &dest, planned, progress).map_err(|e| match e {
                Unpack::Layer(source) => Error::Layer { index: i + 1, what: what.clone(), source },
                Unpack::Other(e) => e,
            })?;
            progress.finish(&format!("{} files", stats.entries));
            skipped_devices += stats.skipped_devices;
            layers.push(LayerRecord { diff_id: diff_id.clone(), size: stats.bytes });
            unpacked.push((diff_id, dest));
        }
        let (config_raw, config, id) = match plan.config {
            Some(c) => c,
            None => {
                let raw = archive::rootfs_config(&layers[0].diff_id);
                let config = ImageConfiguration::from_reader(&raw[..])
                    .map_err(|e| Error::Malformed { what: "podrun's rootfs config".into(), source: e.into() })?;
                let id = Digest::of(&raw);
                (raw, config, id)
            }
        };
        if !unpacked.is_empty() {
            // One syncfs instead of an fsync per file: the layer must be on disk before the
            // rename below makes it part of the store.
            let dir = File::open(&work.0).map_err(io_err("open", &work.0))?;
            nix::unistd::syncfs(&dir).map_err(|e| io_err("syncfs", &work.0)(e.into()))?;
        }
        let record = ImageRecord {
            id: id.clone(),
            names: plan.names.clone(),
            layers,
            created: config.created().clone(),
            imported: now(),
            architecture: config.architecture().to_string(),
            os: config.os().to_string(),
            config: run_config(&config),
        };
        let names = record.names.clone();
        Ok(Imported { image: self.commit(record, &config_raw, unpacked)?, names, skipped_devices })
    }

    /// Takes the store lock shared for an import. If nobody else holds it, first cleans
    /// tmp/ of imports that were killed.
    fn lock_for_import(&self) -> Result<Flock<File>> {
        match self.lock("lock", FlockArg::LockExclusiveNonblock) {
            Ok(excl) => {
                self.clean_tmp();
                excl.relock(FlockArg::LockShared).map_err(|e| Error::Sys {
                    op: "flock",
                    path: self.root.join("lock"),
                    errno: e,
                })?;
                Ok(excl)
            }
            Err(Error::Sys { errno: nix::errno::Errno::EWOULDBLOCK, .. }) => self.lock("lock", FlockArg::LockShared),
            Err(e) => Err(e),
        }
    }

    fn clean_tmp(&self) {
        if let Ok(entries) = fs::read_dir(self.root.join("tmp")) {
            for e in entries.flatten() {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }

    fn work_dir(&self) -> Result<WorkDir> {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let p = self.root.join("tmp").join(format!("import-{}-{nanos}", std::process::id()));
        fs::DirBuilder::new().mode(0o700).create(&p).map_err(io_err("create directory", &p))?;
        Ok(WorkDir(p))
    }

    fn commit(&self, record: ImageRecord, config_raw: &[u8], unpacked: Vec<(Digest, PathBuf)>) -> Result<ImageRecord> {
        let _index = self.lock("index.lock", FlockArg::LockExclusive)?;
        let mut index = self.load_index()?;
        let referenced = index.layer_sizes();
        for (diff_id, dir) in unpacked {
            let target = self.layer_dir(&diff_id);
            if target.exists() {
                if referenced.contains_key(&diff_id) {
                    continue; // a concurrent import committed it first; ours goes with tmp/
                }
                // Left by a crash between rename and index write: ours is known complete.
                fs::remove_dir_all(&target).map_err(io_err("remove stale layer", &target))?;
            }
            fs::rename(&dir, &target).map_err(io_err("rename", &target))?;
        }
        write_atomic(&self.config_path(&record.id), config_raw)?;
        let in_use = self.containers_by_image()?.into_keys().collect();
        match index.images.iter_mut().find(|i| i.id == record.id) {
            Some(existing) => {
                for n in &record.names {
                    if !existing.names.contains(n) {
                        existing.names.push(n.clone());
                    }
                }
            }
            None => index.images.push(record.clone()),
        }
        index.name(&record.id, &record.names, &in_use);
        self.save_index(&index)?;
        find(&index, &record.id.to_string()).cloned()
    }

    /// Removes a name, or (by id, or the last name) the image; then deletes layers no image
    /// uses. An image a container uses is never deleted.
    pub fn remove(&self, reference: &str, force: bool) -> Result<Removed> {
        let _excl = self.lock("lock", FlockArg::LockExclusive)?;
        let _index = self.lock("index.lock", FlockArg::LockExclusive)?;
        let mut index = self.load_index()?;
        let image = find(&index, reference)?.clone();
        let mut removed = Removed::default();
        let by_name = ImageName::parse(reference).ok().filter(|n| image.names.contains(n));
        let delete = match &by_name {
            Some(n) if image.names.len() > 1 => {
                removed.untagged.push(n.clone());
                false
            }
            _ if image.names.len() > 1 && !force => {
                return Err(Error::SeveralNames {
                    image: image.id.to_string(),
                    names: image.names.iter().map(|n| n.to_string()).collect(),
                })
            }
            _ => true,
        };
        if delete {
            if let Some(users) = self.containers_by_image()?.remove(&image.id) {
                return Err(Error::InUse { image: reference.to_owned(), containers: users });
            }
            removed.untagged = image.names.clone();
            removed.deleted = Some(image.id.clone());
            index.images.retain(|i| i.id != image.id);
        } else {
            for img in &mut index.images {
                img.names.retain(|n| Some(n) != by_name.as_ref());
            }
        }
        self.save_index(&index)?;
        if delete {
            let _ = fs::remove_file(self.config_path(&image.id));
        }
        removed.layers_deleted = self.collect_garbage(&index)?;
        Ok(removed)
    }

    /// Deletes layers and configs no image uses, and leftovers in tmp/. Needs the store lock
    /// exclusively.
    fn collect_garbage(&self, index: &Index) -> Result<usize> {
        let used = index.layer_sizes();
        let mut n = 0;
        let layers = self.root.join("layers");
        for e in fs::read_dir(&layers).map_err(io_err("read", &layers))?.flatten() {
            let name = e.file_name();
            let keep = name.to_str().and_then(|h| Digest::from_hex(h).ok()).is_some_and(|d| used.contains_key(&d));
            if !keep {
                fs::remove_dir_all(e.path()).map_err(io_err("remove layer", e.path()))?;
                n += 1;
            }
        }
        let ids: HashSet<String> = index.images.iter().map(|i| format!("{}.json", i.id.hex())).collect();
        let images = self.root.join("images");
        for e in fs::read_dir(&images).map_err(io_err("read", &images))?.flatten() {
            if !e.file_name().to_str().is_some_and(|f| ids.contains(f)) {
                let _ = fs::remove_file(e.path());
            }
        }
        self.clean_tmp();
        Ok(n)
    }

    /// Image id -> containers whose rootfs is built from it.
    fn containers_by_image(&self) -> Result<HashMap<Digest, Vec<String>>> {
        let mut out: HashMap<Digest, Vec<String>> = HashMap::new();
        let dir = self.root.join("containers");
        for e in fs::read_dir(&dir).map_err(io_err("read", &dir))?.flatten() {
            if let Ok(id) = fs::read_to_string(e.path().join("image")) {
                if let Ok(d) = Digest::parse(id.trim()) {
                    out.entry(d).or_default().push(e.file_name().to_string_lossy().into_owned());
                }
            }
        }
        Ok(out)
    }

    /// Creates container `cid`'s rootfs directories on `image`. Nothing is mounted yet:
    /// see `mount::overlay::mount_rootfs`.
    pub fn create_rootfs(&self, cid: &ContainerId, image: &ImageRecord) -> Result<Rootfs> {
        let _shared = self.lock("lock", FlockArg::LockShared)?;
        let dir = self.container_dir(cid);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::RootfsExists(cid.to_string()))
            }
            Err(e) => return Err(io_err("create directory", &dir)(e)),
        }
        let made = (|| {
            // The image may have been removed since the caller resolved it.
            let current = self.resolve(&image.id.to_string())?;
            // upper/ is the container's / once written to, so 0755; containers/ keeps others out.
            for (sub, mode) in [("upper", 0o755), ("work", 0o700), ("merged", 0o755)] {
                let p = dir.join(sub);
                fs::DirBuilder::new().mode(mode).create(&p).map_err(io_err("create directory", &p))?;
            }
            // Not fsync'd: a container's rootfs is as ephemeral as the container.
            fs::write(dir.join("image"), current.id.to_string()).map_err(io_err("write", dir.join("image")))?;
            self.rootfs_of(cid, &current)
        })();
        if made.is_err() {
            let _ = fs::remove_dir_all(&dir);
        }
        made
    }

    /// The rootfs of an existing container.
    pub fn rootfs(&self, cid: &ContainerId) -> Result<Rootfs> {
        let dir = self.container_dir(cid);
        let id = fs::read_to_string(dir.join("image")).map_err(|_| Error::NoRootfs(cid.to_string()))?;
        let image = self.resolve(id.trim())?;
        self.rootfs_of(cid, &image)
    }

    fn rootfs_of(&self, cid: &ContainerId, image: &ImageRecord) -> Result<Rootfs> {
        let dir = self.container_dir(cid);
        Ok(Rootfs {
            lowers: image.layers.iter().rev().map(|l| self.layer_dir(&l.diff_id)).collect(),
            upper: dir.join("upper"),
            work: dir.join("work"),
            merged: dir.join("merged"),
            dir,
        })
    }

    /// Deletes container `cid`'s rootfs (its writes with it). Unmounts `merged` first if it is
    /// mounted in this mount namespace, and refuses while anything else is mounted inside.
    pub fn remove_rootfs(&self, cid: &ContainerId) -> Result<()> {
        let trash = self.retire_rootfs(cid)?;
        fs::remove_dir_all(&trash).map_err(io_err("remove", &trash))
    }

    /// Takes container `cid`'s rootfs out of the store at once: unmounted, and renamed into
    /// tmp/, where it no longer holds the name or an image; the caller deletes the returned
    /// directory (or leaves it to the next garbage collection of tmp/).
    pub fn retire_rootfs(&self, cid: &ContainerId) -> Result<PathBuf> {
        let dir = self.container_dir(cid);
        if !dir.exists() {
            return Err(Error::NoRootfs(cid.to_string()));
        }
        crate::mount::overlay::unmount_all_under(&dir).map_err(|e| Error::Io {
            op: "unmount",
            path: dir.clone(),
            source: e,
        })?;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let trash = self.root.join("tmp").join(format!("removed-{cid}-{nanos}"));
        fs::rename(&dir, &trash).map_err(io_err("rename", &dir))?;
        Ok(trash)
    }
}

fn find<'a>(index: &'a Index, reference: &str) -> Result<&'a ImageRecord> {
    if let Ok(name) = ImageName::parse(reference) {
        if let Some(img) = index.images.iter().find(|i| i.names.contains(&name)) {
            return Ok(img);
        }
    }
    let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
    let looks_like_id = hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    if looks_like_id {
        let hex = hex.to_ascii_lowercase();
        let found: Vec<&ImageRecord> = index.images.iter().filter(|i| i.id.hex().starts_with(&hex)).collect();
        match found[..] {
            [one] => return Ok(one),
            [] => {}
            _ => return Err(Error::AmbiguousId { reference: reference.to_owned() }),
        }
    }
    Err(Error::NotFound(reference.to_owned()))
}

pub(crate) fn run_config(c: &ImageConfiguration) -> RunConfig {
    let Some(cfg) = c.config() else { return RunConfig::default() };
    RunConfig {
        entrypoint: cfg.entrypoint().clone().unwrap_or_default(),
        cmd: cfg.cmd().clone().unwrap_or_default(),
        env: cfg.env().clone().unwrap_or_default(),
        working_dir: cfg.working_dir().clone().filter(|w| !w.is_empty()),
        user: cfg.user().clone().filter(|u| !u.is_empty()),
    }
}

enum Unpack {
    Layer(layer::LayerError),
    Other(Error),
}

/// Streams one layer blob into `dest`, hashing the blob and its uncompressed tar as they
/// pass, and checks both digests against what the image promised.
fn unpack_verified(
    input: Box<dyn std::io::Read + '_>,
    dest: &Path,
    planned: &archive::PlannedLayer,
    progress: &mut Progress,
) -> Result<(Digest, layer::LayerStats), Unpack> {
    let root = File::open(dest).map_err(|e| Unpack::Other(io_err("open", dest)(e)))?;
    let mut blob = HashingReader::new(Counting::new(input, progress));
    let (diff_id, stats) = {
        let tar = layer::decompress(&mut blob).map_err(|e| Unpack::Layer(layer::LayerError::Read(e)))?;
        let mut diff = HashingReader::new(tar);
        let stats = layer::unpack(&mut diff, std::os::fd::AsFd::as_fd(&root)).map_err(Unpack::Layer)?;
        let (diff_id, _) = diff.finish().map_err(|e| Unpack::Layer(layer::LayerError::Read(e)))?;
        (diff_id, stats)
    };
    let (blob_digest, _) = blob.finish().map_err(|e| Unpack::Layer(layer::LayerError::Read(e)))?;
    let what = || planned.member.clone().unwrap_or_default();
    if let Some(expected) = &planned.blob {
        archive::verify(&what(), expected, &blob_digest).map_err(Unpack::Other)?;
    }
    if let Some(expected) = &planned.diff_id {
        archive::verify(&format!("{} (uncompressed)", what()), expected, &diff_id).map_err(Unpack::Other)?;
    }
    Ok((diff_id, stats))
}
