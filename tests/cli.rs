//! The command line as a whole (issue 20): every list command has `-q` (names or ids, one a
//! line) and `--format json` (an array of objects with the table's fields), with the same
//! meaning on an empty root and with objects in it; `podrun completion SHELL` and
//! `podrun man DIR` cover every command `--help` lists; bad input exits 125 with the choices.

mod common;

use common::{need_root, TestRoot};
use std::collections::BTreeSet;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// The list commands, as podman has them (`ps`, `pod ps`, `images`); `sandbox list` and
/// `image list` are aliases.
const LISTS: [&[&str]; 6] =
    [&["ps"], &["ps", "-a"], &["sandbox", "ls"], &["sandbox", "list"], &["image", "ls"], &["image", "list"]];

fn with(cmd: &[&str], extra: &[&str]) -> Vec<String> {
    cmd.iter().chain(extra).map(|s| s.to_string()).collect()
}

/// The table's cells of its one row under `header`, the columns split at the header's
/// offsets (cells hold spaces: "Less than a minute ago").
fn table_cell(table: &str, header: &str) -> String {
    let mut lines = table.lines();
    let head = lines.next().expect("a header");
    let row = lines.next().unwrap_or_else(|| panic!("no row in {table}"));
    let start = head.find(header).unwrap_or_else(|| panic!("no {header} in {head}"));
    let end = head[start + header.len()..]
        .find(|c: char| c != ' ')
        .map_or(row.len(), |i| start + header.len() + i)
        .min(row.len());
    row[start..end].trim().to_owned()
}

#[test]
fn list_commands_on_an_empty_root_print_no_names_and_an_empty_array() {
    if !need_root("list_commands_on_an_empty_root_print_no_names_and_an_empty_array") {
        return;
    }
    let t = TestRoot::new();
    for cmd in LISTS {
        assert_eq!(t.ok(with(cmd, &["-q"])), "", "{cmd:?} -q");
        assert_eq!(t.ok(with(cmd, &["--quiet"])), "", "{cmd:?} --quiet");
        assert_eq!(json(&t.ok(with(cmd, &["--format", "json"]))), serde_json::json!([]), "{cmd:?}");
        assert_eq!(t.ok(with(cmd, &[])).lines().count(), 1, "{cmd:?}: the header alone");
    }
    t.assert_clean(&[]);
}

#[test]
fn ps_quiet_prints_the_name_and_json_has_the_tables_fields() {
    if !need_root("ps_quiet_prints_the_name_and_json_has_the_tables_fields") {
        return;
    }
    let t = TestRoot::with_busybox();
    assert_eq!(t.ok(["run", "-d", "--name", "c1", "busybox", "sleep", "3600"]), "c1\n");
    assert_eq!(t.ok(["ps", "-q"]), "c1\n");
    assert_eq!(t.ok(["ps", "-a", "--quiet"]), "c1\n");
    let table = t.ok(["ps"]);
    let v = json(&t.ok(["ps", "--format", "json"]));
    let list = v.as_array().expect("an array");
    assert_eq!(list.len(), 1, "{v}");
    let c = &list[0];
    assert_eq!(c["id"], table_cell(&table, "CONTAINER"));
    assert_eq!(c["id"], "c1");
    assert_eq!(c["image"], table_cell(&table, "IMAGE"));
    assert_eq!(c["command"], serde_json::json!(["sleep", "3600"]));
    assert_eq!(table_cell(&table, "COMMAND"), "\"sleep 3600\"");
    assert!(c["created"].as_u64().is_some_and(|s| s > 0), "{c}");
    assert_eq!(c["status"], "running");
    assert_eq!(table_cell(&table, "STATUS"), "Up");
    assert_eq!(c["restarts"].to_string(), table_cell(&table, "RESTARTS"));
    assert_eq!(c["last_exit"], serde_json::Value::Null);
    assert_eq!(c["sandbox"], serde_json::Value::Null);
    assert_eq!(table_cell(&table, "SANDBOX"), "-");
    assert!(c["pid"].as_i64().is_some_and(|p| p > 1), "the init's pid: {c}");
    let pids = t.known_pids();
    assert_eq!(t.ok(["rm", "-f", "c1"]), "c1\n");
    t.assert_clean(&pids);
}

#[test]
fn sandbox_ls_quiet_prints_the_name_and_json_has_the_tables_fields() {
    if !need_root("sandbox_ls_quiet_prints_the_name_and_json_has_the_tables_fields") {
        return;
    }
    let t = TestRoot::with_busybox();
    assert_eq!(t.ok(["sandbox", "create", "pod1"]), "pod1\n");
    t.ok(["run", "-d", "--join", "pod1", "--name", "c1", "busybox", "sleep", "3600"]);
    assert_eq!(t.ok(["sandbox", "ls", "-q"]), "pod1\n");
    assert_eq!(t.ok(["sandbox", "list", "--quiet"]), "pod1\n");
    let table = t.ok(["sandbox", "ls"]);
    let v = json(&t.ok(["sandbox", "ls", "--format", "json"]));
    let list = v.as_array().expect("an array");
    assert_eq!(list.len(), 1, "{v}");
    let s = &list[0];
    assert_eq!(s["name"], table_cell(&table, "SANDBOX"));
    assert_eq!(s["name"], "pod1");
    assert_eq!(s["status"], "ready");
    assert_eq!(table_cell(&table, "STATUS"), "Ready");
    assert!(s["created"].as_u64().is_some_and(|c| c > 0), "{s}");
    assert_eq!(s["pause"]["pid"].to_string(), table_cell(&table, "PAUSE PID"));
    let shared: Vec<&str> = s["shared"].as_array().expect("shared").iter().map(|n| n.as_str().unwrap()).collect();
    assert_eq!(shared.join(","), table_cell(&table, "SHARED"));
    assert_eq!(shared, ["ipc", "net", "uts"]);
    assert_eq!(s["containers"], serde_json::json!(["c1"]));
    assert_eq!(table_cell(&table, "CONTAINERS"), "1");
    // ps says the same from the container's side.
    assert_eq!(json(&t.ok(["ps", "--format", "json"]))[0]["sandbox"], "pod1");
    let pids = t.known_pids();
    t.ok(["sandbox", "rm", "-f", "pod1"]);
    t.assert_clean(&pids);
}

#[test]
fn image_ls_quiet_prints_the_short_id_and_json_has_the_tables_fields() {
    if !need_root("image_ls_quiet_prints_the_short_id_and_json_has_the_tables_fields") {
        return;
    }
    let t = TestRoot::with_busybox();
    let short = t.ok(["image", "ls", "-q"]);
    assert_eq!(short.lines().count(), 1, "{short}");
    let short = short.trim();
    assert!(short.len() == 12 && short.bytes().all(|b| b.is_ascii_hexdigit()), "{short:?}");
    assert_eq!(t.ok(["image", "list", "--quiet"]).trim(), short);
    let table = t.ok(["image", "ls"]);
    let v = json(&t.ok(["image", "ls", "--format", "json"]));
    let list = v.as_array().expect("an array");
    assert_eq!(list.len(), 1, "{v}");
    let i = &list[0];
    let id = i["id"].as_str().expect("an id");
    assert!(id.strip_prefix("sha256:").is_some_and(|hex| hex.starts_with(short)), "{id} vs {short}");
    assert_eq!(table_cell(&table, "IMAGE ID"), short);
    let name = format!("{}:{}", table_cell(&table, "REPOSITORY"), table_cell(&table, "TAG"));
    assert_eq!(i["names"], serde_json::json!([name]));
    assert!(i["created"].is_string(), "{i}");
    assert!(i["size"].as_u64().is_some_and(|s| s > 0), "{i}");
    assert_eq!(i["layers"], 1);
    t.assert_clean(&[]);
}

#[test]
fn quiet_wins_over_format_json_in_every_list_command() {
    if !need_root("quiet_wins_over_format_json_in_every_list_command") {
        return;
    }
    let t = TestRoot::with_busybox();
    t.ok(["sandbox", "create", "pod1"]);
    t.ok(["run", "-d", "--join", "pod1", "--name", "c1", "busybox", "sleep", "3600"]);
    let short = t.ok(["image", "ls", "-q"]);
    for (cmd, want) in [(&["ps"][..], "c1\n"), (&["sandbox", "ls"], "pod1\n"), (&["image", "ls"], &short)] {
        assert_eq!(t.ok(with(cmd, &["-q", "--format", "json"])), want, "{cmd:?}");
    }
    let pids = t.known_pids();
    t.ok(["sandbox", "rm", "-f", "pod1"]);
    t.assert_clean(&pids);
}

#[test]
fn an_unknown_format_exits_125_with_the_choices() {
    // Refused before the store is opened: no root needed.
    let t = TestRoot::new();
    for cmd in LISTS.iter().copied().chain([&["stats", "--no-stream"][..], &["sandbox", "inspect", "x"]]) {
        let err = t.fails(with(cmd, &["--format", "yaml"]));
        assert!(err.contains("invalid value 'yaml' for '--format <FORMAT>'"), "{cmd:?}: {err}");
        assert!(err.contains("[possible values: table, json]"), "{cmd:?}: {err}");
    }
    assert!(!t.store().exists());
}

/// The commands `podrun ARGS --help` lists (two-space indented names under "Commands:"),
/// `help` aside.
fn subcommands(t: &TestRoot, args: &[String]) -> Vec<String> {
    let help = t.ok(args.iter().map(String::as_str).chain(["--help"]));
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.strip_prefix("  ").filter(|l| !l.starts_with(' ')))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_owned)
        .collect()
}

/// Every command --help shows, as paths: [], ["image"], ["image", "ls"], ...
fn every_command(t: &TestRoot) -> Vec<Vec<String>> {
    let mut all = vec![vec![]];
    let mut i = 0;
    while i < all.len() {
        let path = all[i].clone();
        for sub in subcommands(t, &path) {
            let mut p = path.clone();
            p.push(sub);
            all.push(p);
        }
        i += 1;
    }
    all
}

#[test]
fn completion_scripts_for_bash_zsh_and_fish_name_every_command() {
    let t = TestRoot::new();
    let commands = every_command(&t);
    for must in [&["ps"][..], &["sandbox", "ls"], &["image", "ls"], &["completion"]] {
        assert!(commands.iter().any(|c| c == must), "--help lists no {must:?}: {commands:?}");
    }
    for shell in ["bash", "zsh", "fish"] {
        let script = t.ok(["completion", shell]);
        assert!(script.len() > 1000, "{shell}: {script}");
        for c in commands.iter().filter_map(|c| c.last()) {
            assert!(script.contains(c.as_str()), "{shell}: no {c}");
        }
        // Hidden commands are not offered (clap_complete would: see cli/manual.rs).
        assert!(!script.contains("monitor-resume"), "{shell}");
        assert!(
            !script.contains("podrun__subcmd__man") && !script.contains("'man:") && !script.contains("\"man\""),
            "{shell}"
        );
    }
    // The bash script parses, and completes what --help lists.
    let bash = t.ok(["completion", "bash"]);
    let o = std::process::Command::new("bash").args(["-n", "-c", &bash]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let complete = |words: &str| {
        let script = format!(
            "{bash}\nCOMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             _podrun podrun \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\""
        );
        let o = std::process::Command::new("bash").args(["-c", &script]).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap().lines().map(str::to_owned).collect::<BTreeSet<_>>()
    };
    let top = complete("podrun ''");
    for c in subcommands(&t, &[]) {
        assert!(top.contains(&c), "podrun <TAB> offers no {c}: {top:?}");
    }
    assert!(!top.contains("man") && !top.contains("monitor-resume"), "hidden commands offered: {top:?}");
    let subs = complete("podrun sandbox ''");
    for s in subcommands(&t, &["sandbox".into()]) {
        assert!(subs.contains(&s), "podrun sandbox <TAB> offers no {s}: {subs:?}");
    }
    let flags = complete("podrun sandbox ls -");
    assert!(flags.contains("-q") && flags.contains("--quiet") && flags.contains("--format"), "{flags:?}");
    let shells = complete("podrun completion ''");
    assert!(["bash", "zsh", "fish"].iter().all(|s| shells.contains(*s)), "{shells:?}");
    assert!(!t.store().exists(), "completion never touches the root");
}

#[test]
fn man_writes_one_page_for_every_command() {
    let t = TestRoot::new();
    let dir = t.path().join("share/man/man1");
    let out = t.ok(["man".as_ref(), dir.as_os_str()]);
    let listed: BTreeSet<String> = out.lines().map(str::to_owned).collect();
    let written: BTreeSet<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path().display().to_string()).collect();
    assert_eq!(listed, written, "it prints the pages it wrote");
    let want: BTreeSet<String> = every_command(&t)
        .iter()
        .map(|c| {
            dir.join(format!("{}.1", ["podrun".to_owned()].iter().chain(c).cloned().collect::<Vec<_>>().join("-")))
        })
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(written, want, "one page per command --help lists, none for hidden ones");
    for page in &written {
        let text = std::fs::read_to_string(page).unwrap();
        let name = page.rsplit('/').next().unwrap().trim_end_matches(".1");
        assert!(text.contains(&format!(".TH {name} 1 ")), "{page}: {text}");
        assert!(text.contains(".SH NAME") && text.contains(".SH SYNOPSIS"), "{page}");
        assert!(text.contains(&format!("\"podrun {}\"", env!("CARGO_PKG_VERSION"))), "{page}: the footer");
    }
    let ls = std::fs::read_to_string(dir.join("podrun-sandbox-ls.1")).unwrap();
    assert!(ls.contains(r"\fB\-\-quiet\fR") && ls.contains("Print only sandbox names"), "{ls}");
    assert!(ls.contains(r"\fBPODRUN_ROOT\fR"), "the environment variables are named: {ls}");
    // Again into the same directory: the pages are replaced, not refused.
    assert_eq!(t.ok(["man".as_ref(), dir.as_os_str()]), out);
    assert!(!t.store().exists(), "man never touches the root");
}

#[test]
fn an_unknown_shell_or_an_unwritable_man_dir_exits_125_with_a_clear_error() {
    let t = TestRoot::new();
    let err = t.fails(["completion", "tcsh"]);
    assert!(err.contains("invalid value 'tcsh'") && err.contains("bash") && err.contains("zsh"), "{err}");
    assert!(t.fails(["completion"]).contains("<SHELL>"));
    assert!(t.fails(["man"]).contains("<DIR>"));
    // A file where the directory should be.
    let file = t.path().join("file");
    std::fs::write(&file, "").unwrap();
    let err = t.fails(["man".as_ref(), file.join("man1").as_os_str()]);
    assert!(err.starts_with("podrun: error: creating ") && err.contains("file/man1"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!t.store().exists(), "completion and man never touch the root");
}
