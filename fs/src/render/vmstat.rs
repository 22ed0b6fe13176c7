//! /proc/vmstat as the container's: its cgroup's memory, page faults and I/O, so that
//! `vmstat`'s memory, bi/bo and si/so columns, and `vmstat -s`, are the container's and
//! not the host's totals over the container's uptime. Must not read any file.

use crate::render::meminfo::MemView;
use podrun_cgroup::snapshot::MemorySnapshot;

const PAGE: u64 = 4096;

/// The host's /proc/vmstat (`host`, for its keys and their order) with every value the
/// cgroup's or 0: gauges from memory.stat in pages (free memory as the view's MemFree when
/// the container has a limit, else the host's), the fault and swap counters memory.stat
/// keeps, pgpgin/pgpgout (KiB read and written) from io.stat's bytes. Counters no cgroup
/// keeps (compaction, NUMA, reclaim details, ...) are 0.
pub fn render_vmstat(host: &str, m: &MemorySnapshot, view: Option<&MemView>, io_stat: &str) -> String {
    let io = |key: &str| -> u64 {
        io_stat.split_whitespace().filter_map(|f| f.strip_prefix(key)?.strip_prefix('=')?.parse::<u64>().ok()).sum()
    };
    let pages = |key: &str| m.stat(key) / PAGE;
    let mut out = String::with_capacity(host.len());
    for line in host.lines() {
        let Some((key, value)) = line.split_once(' ') else { continue };
        let v = match key {
            "nr_free_pages" => view.map_or_else(|| value.trim().parse().unwrap_or(0), |v| v.free * 1024 / PAGE),
            "nr_inactive_anon" => pages("inactive_anon"),
            "nr_active_anon" => pages("active_anon"),
            "nr_inactive_file" => pages("inactive_file"),
            "nr_active_file" => pages("active_file"),
            "nr_unevictable" => pages("unevictable"),
            "nr_anon_pages" => pages("anon"),
            "nr_mapped" => pages("file_mapped"),
            "nr_file_pages" => pages("file"),
            "nr_dirty" => pages("file_dirty"),
            "nr_writeback" => pages("file_writeback"),
            "nr_shmem" => pages("shmem"),
            "nr_slab_reclaimable" => pages("slab_reclaimable"),
            "nr_slab_unreclaimable" => pages("slab_unreclaimable"),
            "nr_page_table_pages" => pages("pagetables"),
            // The kernel counts this one in KiB.
            "nr_kernel_stack" => m.stat("kernel_stack") / 1024,
            "pgfault"
            | "pgmajfault"
            | "pswpin"
            | "pswpout"
            | "pgactivate"
            | "pgdeactivate"
            | "pglazyfree"
            | "pgrefill"
            | "workingset_refault_anon"
            | "workingset_refault_file"
            | "workingset_activate_anon"
            | "workingset_activate_file"
            | "workingset_restore_anon"
            | "workingset_restore_file"
            | "workingset_nodereclaim"
            | "thp_fault_alloc"
            | "thp_collapse_alloc" => m.stat(key),
            "pgpgin" => io("rbytes") / 1024,
            "pgpgout" => io("wbytes") / 1024,
            _ => 0,
        };
        out.push_str(key);
        out.push(' ');
        out.push_str(&v.to_string());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmstat_is_the_cgroups_memory_faults_and_io_and_zero_for_the_rest() {
        let host = "nr_free_pages 5000000\nnr_inactive_anon 99\nnr_kernel_stack 7000\npgpgin 10214107\n\
                    pgpgout 35200889\npswpin 5\npgfault 123456789\nnuma_hit 42\ncompact_stall 3\n";
        let mut m = MemorySnapshot::default();
        for (k, v) in [("inactive_anon", 8192), ("kernel_stack", 65536), ("pgfault", 1234)] {
            m.stat.insert(k.to_owned(), v);
        }
        let view = MemView { total: 262_144, free: 200_000, ..Default::default() };
        let io = "8:0 rbytes=1048576 wbytes=2048 rios=3 wios=1 dbytes=0 dios=0\n7:0 rbytes=1024 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n";
        let out = render_vmstat(host, &m, Some(&view), io);
        assert_eq!(
            out,
            "nr_free_pages 50000\nnr_inactive_anon 2\nnr_kernel_stack 64\npgpgin 1025\npgpgout 2\npswpin 0\n\
             pgfault 1234\nnuma_hit 0\ncompact_stall 0\n"
        );
        // Without a limit the free pages are the host's.
        assert!(render_vmstat(host, &m, None, "").starts_with("nr_free_pages 5000000\n"));
    }
}
