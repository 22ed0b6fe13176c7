//! Giving memory back: a server that stays up for a container's lifetime keeps only what
//! it uses now, not what starting up (or a burst of readers) once touched.

/// The heap's free pages go back to the kernel (glibc gives back only the heap's top by
/// itself, and requests leave free pages between live ones).
pub fn trim_heap() {
    // SAFETY: malloc_trim only releases free memory.
    unsafe { libc::malloc_trim(0) };
}

/// Unmaps this process's pages of code and read-only data (its own binary's, libc's, the
/// loader's); each is mapped again from the page cache, unchanged, when it is next used.
///
/// The kernel maps a page's neighbours on each fault (64 kB around it), so once a process
/// has started, nearly all of its code and libc's is mapped: the loader's relocations and
/// std's start-up touch pages all over them. A server answering requests uses about half
/// of libc's and little of the loader's. Only read-only private mappings of a file that
/// hold no page of their own are unmapped (the loader's RELRO pages, written before they
/// were made read-only, are this process's alone and would be lost).
///
/// Returns how many kB were mapped in what it unmapped.
pub fn unmap_code() -> usize {
    let Ok(smaps) = podrun_cgroup::read_kernel_file("/proc/self/smaps") else { return 0 };
    let mut unmapped = 0;
    for (range, rss) in code_mappings(&smaps) {
        // SAFETY: MADV_DONTNEED on a read-only private file mapping without anonymous pages
        // drops page table entries only; the file's pages are mapped again on access.
        if unsafe { libc::madvise(range.start as *mut libc::c_void, range.end - range.start, libc::MADV_DONTNEED) } == 0
        {
            unmapped += rss;
        }
    }
    unmapped
}

/// The mappings of `smaps` (/proc/self/smaps) that `unmap_code` may unmap, and the kB of
/// each that are resident: a file's, not writable, with no anonymous pages.
fn code_mappings(smaps: &str) -> Vec<(std::ops::Range<usize>, usize)> {
    let mut found = Vec::new();
    let mut current: Option<std::ops::Range<usize>> = None;
    let mut rss = 0;
    for line in smaps.lines() {
        let mut words = line.split_ascii_whitespace();
        let Some(first) = words.next() else { continue };
        if let Some((start, end)) = first.split_once('-') {
            // A mapping's first line: range, permissions, offset, device, inode, path.
            let perms = words.next().unwrap_or("");
            let path = words.nth(3).unwrap_or("");
            let range = usize::from_str_radix(start, 16).ok().zip(usize::from_str_radix(end, 16).ok());
            current = match (range, perms.as_bytes()) {
                (Some((s, e)), [b'r', b'-', _, b'p']) if path.starts_with('/') && s < e => Some(s..e),
                _ => None,
            };
            continue;
        }
        let kb = || words.clone().next().and_then(|v| v.parse::<usize>().ok());
        match first {
            "Rss:" => rss = kb().unwrap_or(0),
            // Anonymous comes after Rss in every kernel's smaps.
            "Anonymous:" => {
                if let Some(range) = current.take() {
                    if kb() == Some(0) && rss > 0 {
                        found.push((range, rss));
                    }
                }
            }
            _ => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0c0a00000-55d0c0a0f000 r--p 00000000 fe:00 5367004                    /usr/bin/view
Size:                 60 kB
Rss:                  60 kB
Anonymous:             0 kB
55d0c0a0f000-55d0c0a51000 r-xp 0000e000 fe:00 5367004                    /usr/bin/view
Size:                264 kB
Rss:                264 kB
Anonymous:             0 kB
55d0c0a51000-55d0c0a53000 r--p 0004f000 fe:00 5367004                    /usr/bin/view
Size:                  8 kB
Rss:                   8 kB
Anonymous:             8 kB
55d0c0a53000-55d0c0a54000 rw-p 00051000 fe:00 5367004                    /usr/bin/view
Size:                  4 kB
Rss:                   4 kB
Anonymous:             4 kB
55d0c1a00000-55d0c1a2a000 rw-p 00000000 00:00 0                          [heap]
Rss:                 128 kB
Anonymous:           128 kB
7f05d1e45000-7f05d1f9b000 r-xp 00026000 fe:00 326279                     /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                1084 kB
Anonymous:             0 kB
7f05d1f9b000-7f05d1f9c000 r-xp 00000000 00:00 0 
Rss:                   4 kB
Anonymous:             0 kB
7f05d1fa0000-7f05d1fa1000 r-xp 00000000 fe:00 326280                     /usr/lib/x86_64-linux-gnu/unused.so
Rss:                   0 kB
Anonymous:             0 kB
7f05d2012000-7f05d2014000 r-xp 00000000 00:00 0                          [vdso]
Rss:                   8 kB
Anonymous:             0 kB
7f05d2020000-7f05d2021000 rw-s 00000000 00:01 1234                       /memfd:podrun-view (deleted)
Rss:                   4 kB
Anonymous:             0 kB
";

    #[test]
    fn only_a_files_read_only_pages_without_pages_of_their_own_are_unmapped() {
        let found = code_mappings(SMAPS);
        assert_eq!(
            found,
            [
                (0x55d0c0a00000..0x55d0c0a0f000, 60),
                (0x55d0c0a0f000..0x55d0c0a51000, 264),
                (0x7f05d1e45000..0x7f05d1f9b000, 1084),
            ]
        );
    }

    fn code_rss() -> usize {
        code_mappings(&podrun_cgroup::read_kernel_file("/proc/self/smaps").unwrap()).iter().map(|(_, kb)| kb).sum()
    }

    #[test]
    fn unmapped_code_runs_again_and_is_mapped_as_it_is_used() {
        let before = code_rss();
        assert!(before > 0);
        let unmapped = unmap_code();
        assert!(unmapped > 0, "nothing unmapped of {before} kB");
        // This runs on code that was just unmapped: std's formatting, libc's read.
        let after = code_rss();
        assert!(after < before, "{after} kB mapped after unmapping, {before} kB before");
        assert_eq!(format!("{:.2}", 0.5f64), "0.50");
        assert!(podrun_cgroup::read_kernel_file("/proc/self/stat").unwrap().contains(')'));
    }
}
