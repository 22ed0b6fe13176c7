//! The command line: clap definitions and each command's output. Library errors get their
//! context here with anyhow; `main.rs` turns them into exit codes.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use podrun::image::progress::{human, Progress};
use podrun::image::reference::ImageName;
use podrun::image::{ImageRecord, Store};

const ABOUT: &str = "podrun builds Kubernetes-style pods from scratch: a pause process holding shared \
namespaces, workload containers that join them, overlay root filesystems from image layers.";

#[derive(Parser)]
#[command(name = "podrun", version, about = ABOUT, propagate_version = true)]
pub struct Cli {
    /// Where podrun keeps images and container root filesystems.
    #[arg(long, global = true, env = "PODRUN_ROOT", default_value = "/var/lib/podrun", value_name = "DIR")]
    pub root: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Import, list, inspect and remove images.
    #[command(subcommand)]
    Image(ImageCommand),
}

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Import an image from a file or directory, detected by content: an OCI image layout
    /// (directory or tar, as `skopeo copy … oci-archive:` writes), a `docker save` archive,
    /// or a plain root filesystem tarball (.tar, .tar.gz, .tar.zst), which becomes a
    /// one-layer image.
    ///
    /// Layers are verified against their digests while they are read and stored once: an
    /// image sharing layers with one already here unpacks only what is new.
    #[command(after_help = "Examples:\n  \
        podrun image import rootfs-fixtures/out/busybox-oci\n  \
        podrun image import busybox.tar --name localhost/busybox:1.35\n  \
        podrun image import alpine-minirootfs.tar.gz --name alpine:3.20")]
    Import(ImportArgs),
    /// List images.
    #[command(visible_alias = "list")]
    Ls(LsArgs),
    /// Show everything podrun knows of images, as JSON.
    Inspect {
        /// Image names or ids.
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
    /// Remove images by name or id. Removing a name that other names share only untags;
    /// layers no image uses any more are deleted.
    #[command(visible_alias = "remove")]
    Rm {
        /// Remove an image by id even when several names point at it.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<String>,
    },
}

#[derive(Args)]
pub struct ImportArgs {
    /// The OCI layout directory, archive or rootfs tarball.
    pub path: PathBuf,
    /// Name the image NAME[:TAG] (default: the name the archive carries, or for a rootfs
    /// tarball the file name). With several images in one archive, picks that one.
    #[arg(long, short = 'n', value_name = "NAME[:TAG]")]
    pub name: Option<String>,
    /// Print only the image id; no progress.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Args)]
pub struct LsArgs {
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Print only image ids.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Image(cmd) => image(&cli.root, cmd),
    }
}

fn open_store(root: &Path) -> Result<Store> {
    Store::open(root)
        .with_context(|| format!("opening the image store at {} (is podrun running as root?)", root.display()))
}

fn image(root: &Path, cmd: ImageCommand) -> Result<()> {
    let store = open_store(root)?;
    match cmd {
        ImageCommand::Import(a) => {
            let name = a.name.as_deref().map(ImageName::parse).transpose()?;
            let mut progress = Progress::new(!a.quiet);
            let (img, names) = store
                .import(&a.path, name.as_ref(), &mut progress)
                .with_context(|| format!("importing {}", a.path.display()))?;
            if a.quiet {
                println!("{}", img.id);
            } else {
                for n in &names {
                    println!("Loaded image: {n}");
                }
            }
        }
        ImageCommand::Ls(a) => {
            let images = store.images()?;
            let mut out = std::io::stdout().lock();
            match (a.format, a.quiet) {
                (_, true) => {
                    for i in &images {
                        writeln!(out, "{}", i.id.short())?;
                    }
                }
                (Format::Json, false) => {
                    let rows: Vec<_> = images.iter().map(summary).collect();
                    writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
                }
                (Format::Table, false) => write!(out, "{}", table(&images, now()))?,
            }
        }
        ImageCommand::Inspect { images } => {
            let mut all = Vec::new();
            for r in &images {
                let img = store.resolve(r)?;
                let raw = store.config_bytes(&img.id)?;
                let mut v = serde_json::to_value(&img)?;
                v["size"] = img.size().into();
                v["image_config"] = serde_json::from_slice(&raw).context("reading the stored image config")?;
                all.push(v);
            }
            println!("{}", serde_json::to_string_pretty(&all)?);
        }
        ImageCommand::Rm { force, images } => {
            let mut failed = 0;
            for r in &images {
                match store.remove(r, force) {
                    Ok(rm) => {
                        for n in &rm.untagged {
                            println!("Untagged: {n}");
                        }
                        if let Some(id) = rm.deleted {
                            println!("Deleted: {id}");
                        }
                    }
                    Err(e) => {
                        eprintln!("podrun: error: removing {r}: {e}");
                        failed += 1;
                    }
                }
            }
            if failed > 0 {
                bail!(crate::Reported);
            }
        }
    }
    Ok(())
}

fn summary(i: &ImageRecord) -> serde_json::Value {
    serde_json::json!({
        "id": i.id,
        "names": i.names,
        "created": i.created,
        "imported": i.imported,
        "size": i.size(),
        "layers": i.layers.len(),
    })
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `docker images` style: one row per name, `<none>` for an unnamed image.
fn table(images: &[ImageRecord], now: u64) -> String {
    let mut rows = vec![["REPOSITORY".to_owned(), "TAG".into(), "IMAGE ID".into(), "CREATED".into(), "SIZE".into()]];
    for i in images {
        let created = i.created.as_deref().and_then(parse_rfc3339).map_or("N/A".to_owned(), |t| ago(now, t));
        let names: Vec<(String, String)> = if i.names.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            i.names.iter().map(|n| (n.repo().to_owned(), n.tag().to_owned())).collect()
        };
        for (repo, tag) in names {
            rows.push([repo, tag, i.id.short().to_owned(), created.clone(), human(i.size())]);
        }
    }
    let widths: Vec<usize> = (0..5).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    let mut s = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        s.push_str(line.join("   ").trim_end());
        s.push('\n');
    }
    s
}

/// Seconds since the epoch of an RFC 3339 time (`2024-05-01T12:00:00Z`, fraction and offset
/// allowed); only what image configs carry.
fn parse_rfc3339(s: &str) -> Option<u64> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let mut t = days * 86_400 + h * 3600 + mi * 60 + sec;
    let tz = s[19..].trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
    if let Some(off) = tz.strip_prefix('+').map(|o| (1, o)).or_else(|| tz.strip_prefix('-').map(|o| (-1, o))) {
        let (sign, o) = off;
        let oh: i64 = o.get(0..2)?.parse().ok()?;
        let om: i64 = o.get(3..5)?.parse().ok()?;
        t -= sign * (oh * 3600 + om * 60);
    }
    u64::try_from(t).ok()
}

fn ago(now: u64, then: u64) -> String {
    let s = now.saturating_sub(then);
    let (n, unit) = match s {
        0..=59 => return "Less than a minute ago".into(),
        60..=3599 => (s / 60, "minute"),
        3600..=86_399 => (s / 3600, "hour"),
        86_400..=1_209_599 => (s / 86_400, "day"),
        1_209_600..=5_183_999 => (s / 604_800, "week"),
        5_184_000..=63_071_999 => (s / 2_592_000, "month"),
        _ => (s / 31_536_000, "year"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_parse_with_fraction_and_offset() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2024-05-01T12:00:00.123456789Z"), Some(1_714_564_800));
        assert_eq!(parse_rfc3339("2024-05-01T14:00:00+02:00"), Some(1_714_564_800));
        assert_eq!(parse_rfc3339("garbage"), None);
    }

    #[test]
    fn ages_read_like_docker() {
        assert_eq!(ago(100, 100), "Less than a minute ago");
        assert_eq!(ago(7200, 0), "2 hours ago");
        assert_eq!(ago(86_400, 0), "1 day ago");
        assert_eq!(ago(3 * 31_536_000, 0), "3 years ago");
    }
}
