//! The image commands: import, ls, inspect, rm.

use super::advice;
use super::table::{ago, parse_rfc3339};
use super::*;
use podrun::image::progress::Progress;
use podrun::image::reference::ImageName;
use podrun::image::{ImageRecord, Store};
use std::path::Path;

pub(super) fn open_store(root: &Path) -> Result<Store> {
    Store::open(root)
        .with_context(|| format!("opening the image store at {} (is podrun running as root?)", root.display()))
}

pub(super) fn image(root: &Path, cmd: ImageCommand) -> Result<()> {
    let store = open_store(root)?;
    match cmd {
        ImageCommand::Import(a) => {
            let name = a.name.as_deref().map(ImageName::parse).transpose()?;
            let mut progress = Progress::new(!a.quiet);
            let done = store
                .import(&a.path, name.as_ref(), &mut progress)
                .with_context(|| format!("importing {}", a.path.display()))?;
            if done.skipped_devices > 0 {
                eprintln!(
                    "podrun: skipped {} device node(s) in the layers; containers get /dev from podrun",
                    done.skipped_devices
                );
            }
            if a.quiet {
                println!("{}", done.image.id);
            } else {
                for n in &done.names {
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
                        eprintln!("podrun: error: removing {r}: {}", advice::say(&e));
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
