//! Skel generations (issue 12 item 1): what build-skel records, what a
//! re-record writes (and does not), how the files hold up against a
//! second writer, a kill and hand edits, and what create-vs, sync and
//! `list --skels` make of them. Real skels from `build-skel --from`.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{Setup, debian_rootfs, require_root};
use vskel::generation::{self, Kind, Part};
use vskel::layout::SkelDirs;
use vskel::progress::Progress;

fn dirs(skel: &Path) -> SkelDirs {
    SkelDirs {
        dir: skel.to_path_buf(),
    }
}

fn record(skel: &Path) -> generation::Recorded {
    generation::record(
        &dirs(skel),
        "test",
        &Progress::hidden(),
        generation::Store::Skip,
    )
    .unwrap()
}

fn gen_dir(skel: &Path) -> PathBuf {
    skel.join("generations")
}

/// The names in the generations directory, sorted, without the content
/// store `objects/` (tests/verify.rs tests it).
fn gen_files(skel: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(gen_dir(skel))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "objects")
        .collect();
    names.sort();
    names
}

/// Every path below `root` (relative; the root itself as ""), not
/// following symlinks.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![PathBuf::new()];
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in fs::read_dir(root.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let path = rel.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out
}

/// Check generation `n` against the skel on disk, hashing every file and
/// symlink target independently (the blake3 crate, read through std).
fn assert_record_matches_disk(skel: &Path, n: u64) {
    let generation = generation::load(&dirs(skel), n).unwrap();
    let mut seen = 0;
    for part in Part::ALL {
        let root = skel.join(part.dir_name());
        for rel in walk(&root) {
            let path = root.join(&rel);
            let meta = fs::symlink_metadata(&path).unwrap();
            let entry = generation
                .entry(part, &rel)
                .unwrap_or_else(|| panic!("{} missing from the record", path.display()));
            seen += 1;
            assert_eq!(
                entry.inode(),
                (meta.dev(), meta.ino()),
                "{}",
                path.display()
            );
            assert_eq!(entry.mode, meta.mode() & 0o7777, "{}", path.display());
            assert_eq!((entry.uid, entry.gid), (meta.uid(), meta.gid()));
            assert_eq!(entry.size, meta.size(), "{}", path.display());
            assert_eq!(entry.mtime, (meta.mtime(), meta.mtime_nsec()));
            let ft = meta.file_type();
            let want = if ft.is_file() {
                assert_eq!(entry.kind, Kind::File);
                Some(*blake3::hash(&fs::read(&path).unwrap()).as_bytes())
            } else if ft.is_symlink() {
                assert_eq!(entry.kind, Kind::Symlink);
                use std::os::unix::ffi::OsStrExt;
                let target = fs::read_link(&path).unwrap();
                Some(*blake3::hash(target.as_os_str().as_bytes()).as_bytes())
            } else {
                if ft.is_dir() {
                    assert_eq!(entry.kind, Kind::Dir);
                }
                None
            };
            assert_eq!(entry.hash, want, "{}", path.display());
        }
    }
    assert_eq!(
        seen,
        generation.entries().len(),
        "the record has extra entries"
    );
    assert_eq!(generation.header.entries as usize, seen);
}

/// A global regular file of the example skel with its parent directory.
const GLOBAL_FILE: &str = "bin/hello";

/// Replace global `rel` by a new inode (write beside, rename over), keeping
/// the parent directory's mtime so that only `rel` changes.
fn replace_by_rename(skel: &Path, rel: &str, content: &[u8]) -> (u64, u64) {
    let path = skel.join("global").join(rel);
    let parent = path.parent().unwrap();
    let parent_mtime =
        filetime::FileTime::from_last_modification_time(&fs::metadata(parent).unwrap());
    let old = fs::symlink_metadata(&path).unwrap();
    let tmp = parent.join(".new");
    fs::write(&tmp, content).unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(old.mode() & 0o7777)).unwrap();
    fs::rename(&tmp, &path).unwrap();
    filetime::set_file_mtime(parent, parent_mtime).unwrap();
    let new = fs::symlink_metadata(&path).unwrap();
    assert_ne!(old.ino(), new.ino());
    (old.ino(), new.ino())
}

#[test]
fn build_records_generation_one_with_correct_hashes() {
    let setup = Setup::new("");
    let skel = setup.build_example_skel("base");
    assert_eq!(generation::current(&dirs(&skel)).unwrap(), Some(1));
    assert_eq!(gen_files(&skel), [".lock", "1.record"]);
    assert_record_matches_disk(&skel, 1);
    let header = generation::load(&dirs(&skel), 1).unwrap().header;
    assert_eq!(header.follows, None);
    assert_eq!(header.made_by, "build-skel");
}

#[test]
fn debian_skel_records_generation_one_with_correct_hashes() {
    let setup = Setup::new("");
    let _ = debian_rootfs();
    let skel = setup.build_debian_skel("deb");
    assert_record_matches_disk(&skel, 1);
    // Nothing changed: no new generation, nothing hashed again.
    let again = record(&skel);
    assert!(!again.new);
    assert_eq!((again.generation, again.hashed), (1, 0));
}

#[test]
fn replacing_a_global_file_by_rename_records_exactly_that_change() {
    let setup = Setup::new("");
    let skel = setup.build_example_skel("base");
    let (old_ino, new_ino) = replace_by_rename(&skel, GLOBAL_FILE, b"new hello\n");
    let recorded = record(&skel);
    assert!(recorded.new);
    assert_eq!(
        (recorded.generation, recorded.changes, recorded.hashed),
        (2, 1, 1)
    );
    assert_record_matches_disk(&skel, 2);
    let changes = generation::changes(&dirs(&skel), 1, 2).unwrap();
    assert_eq!(changes.len(), 1, "{changes:#?}");
    let change = &changes[0];
    assert_eq!(
        (change.part, change.path.as_path()),
        (Part::Global, Path::new(GLOBAL_FILE))
    );
    let (old, new) = (change.old.as_ref().unwrap(), change.new.as_ref().unwrap());
    assert_eq!((old.ino, new.ino), (old_ino, new_ino));
    assert_eq!(new.hash, Some(*blake3::hash(b"new hello\n").as_bytes()));
    // Backwards (a rollback) swaps the sides.
    let back = generation::changes(&dirs(&skel), 2, 1).unwrap();
    assert_eq!(back[0].old.as_ref().unwrap().ino, new_ino);
    assert_eq!(back[0].new.as_ref().unwrap().ino, old_ino);
    // Generation 1 stays as it was.
    assert_eq!(
        generation::load(&dirs(&skel), 1)
            .unwrap()
            .entry(Part::Global, Path::new(GLOBAL_FILE))
            .unwrap()
            .ino,
        old_ino
    );
    assert_eq!(
        generation::load(&dirs(&skel), 2).unwrap().header.follows,
        Some(1)
    );
}

#[test]
fn changes_fold_across_generations() {
    let setup = Setup::new("");
    let skel = setup.build_example_skel("base");
    let global = skel.join("global");
    // 2: a file changes; 3: it changes again and a file is added;
    // 4: the added file goes again.
    replace_by_rename(&skel, GLOBAL_FILE, b"two\n");
    assert_eq!(record(&skel).generation, 2);
    replace_by_rename(&skel, GLOBAL_FILE, b"three\n");
    fs::write(global.join("added"), b"added\n").unwrap();
    assert_eq!(record(&skel).generation, 3);
    fs::remove_file(global.join("added")).unwrap();
    assert_eq!(record(&skel).generation, 4);
    let d = dirs(&skel);
    let one_to_four = generation::changes(&d, 1, 4).unwrap();
    // The root's mtime changed (added, removed) and bin/hello: the added
    // file, gone again, is not a change.
    let paths: Vec<&Path> = one_to_four.iter().map(|c| c.path.as_path()).collect();
    assert_eq!(
        paths,
        [Path::new(""), Path::new(GLOBAL_FILE)],
        "{one_to_four:#?}"
    );
    let hello = &one_to_four[1];
    assert_eq!(
        hello.new.as_ref().unwrap().hash,
        Some(*blake3::hash(b"three\n").as_bytes())
    );
    let two_to_three = generation::changes(&d, 2, 3).unwrap();
    let added = two_to_three
        .iter()
        .find(|c| c.path == Path::new("added"))
        .unwrap();
    assert!(added.old.is_none() && added.new.is_some());
    let three_to_four = generation::changes(&d, 3, 4).unwrap();
    let removed = three_to_four
        .iter()
        .find(|c| c.path == Path::new("added"))
        .unwrap();
    assert!(removed.old.is_some() && removed.new.is_none());
    assert!(generation::changes(&d, 2, 2).unwrap().is_empty());
    assert!(generation::changes(&d, 1, 5).is_err());
}

#[test]
fn re_record_without_change_writes_nothing() {
    let setup = Setup::new("");
    let skel = setup.build_example_skel("base");
    let before = gen_files(&skel);
    let mtime = fs::metadata(gen_dir(&skel)).unwrap().mtime_nsec();
    let again = record(&skel);
    assert!(!again.new);
    assert_eq!((again.generation, again.hashed, again.changes), (1, 0, 0));
    // A vserver linked to the global inodes changes their ctime, not
    // what they are: still nothing new, nothing hashed.
    setup.create("base", "web1", "10.0.0.2");
    let again = record(&skel);
    assert!(!again.new);
    assert_eq!((again.generation, again.hashed), (1, 0));
    assert_eq!(gen_files(&skel), before);
    assert_eq!(fs::metadata(gen_dir(&skel)).unwrap().mtime_nsec(), mtime);
}

#[test]
fn generation_files_are_read_only_and_a_second_writer_cannot_corrupt_them() {
    let setup = Setup::new("");
    let skel = setup.build_example_skel("base");
    replace_by_rename(&skel, GLOBAL_FILE, b"two\n");
    // Two recorders at once: one writes generation 2, the other finds it.
    let results: Vec<generation::Recorded> = std::thread::scope(|s| {
        let a = s.spawn(|| record(&skel));
        let b = s.spawn(|| record(&skel));
        vec![a.join().unwrap(), b.join().unwrap()]
    });
    assert!(results.iter().all(|r| r.generation == 2));
    assert_eq!(results.iter().filter(|r| r.new).count(), 1);
    assert_eq!(
        gen_files(&skel),
        [".lock", "1.record", "2.changes", "2.record"]
    );
    for name in ["1.record", "2.changes", "2.record"] {
        let mode = fs::metadata(gen_dir(&skel).join(name)).unwrap().mode();
        assert_eq!(mode & 0o7777, 0o444, "{name}");
    }
    // Writing over an existing generation file is refused and leaves it.
    let path = gen_dir(&skel).join("2.record");
    let text = fs::read(&path).unwrap();
    let err = vskel::generation::store::write_once(&path, b"garbage").unwrap_err();
    assert!(err.to_string().contains("2.record"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), text);
    assert_eq!(
        gen_files(&skel),
        [".lock", "1.record", "2.changes", "2.record"]
    );
    assert_record_matches_disk(&skel, 2);
}

#[test]
fn an_interrupted_record_leaves_the_current_generation() {
    let setup = Setup::new("");
    let skel = setup.build_example_skel("base");
    // What a record killed between its two files leaves: a temporary
    // file and the changes of a generation 2 without its record.
    fs::write(gen_dir(&skel).join(".tmp-2.recordXYZ"), b"half").unwrap();
    fs::write(gen_dir(&skel).join("2.changes"), b"half").unwrap();
    assert_eq!(generation::current(&dirs(&skel)).unwrap(), Some(1));
    replace_by_rename(&skel, GLOBAL_FILE, b"two\n");
    let recorded = record(&skel);
    assert_eq!((recorded.generation, recorded.new), (2, true));
    assert_eq!(
        gen_files(&skel),
        [".lock", "1.record", "2.changes", "2.record"]
    );
    assert_eq!(generation::changes(&dirs(&skel), 1, 2).unwrap().len(), 1);
}

#[test]
fn a_record_killed_half_way_leaves_the_current_generation() {
    require_root("a_record_killed_half_way_leaves_the_current_generation");
    let setup = Setup::new("");
    let skel = setup.build_example_skel("base");
    let global = skel.join("global");
    // Big (sparse) files, so create-vs has much to hash before it writes
    // generation 2; each trial kills it after a longer delay, until one
    // finishes.
    for i in 0..4 {
        let f = fs::File::create(global.join(format!("big-{i}"))).unwrap();
        f.set_len(1 << 29).unwrap();
    }
    let mut trial = 0;
    let mut killed = 0;
    let mut delay_ms = 20u64;
    loop {
        trial += 1;
        let mut child = setup
            .vskel_process()
            .args([
                "create-vs",
                "base",
                &format!("k{trial}"),
                "k.example.org",
                "10.0.0.9",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let finished = child.try_wait().unwrap().is_some();
        if !finished {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        child.wait().unwrap();
        let d = dirs(&skel);
        let current = generation::current(&d).unwrap().unwrap();
        // Whatever is current is complete and loads.
        let loaded = generation::load(&d, current).unwrap();
        assert_eq!(loaded.number(), current);
        if current > 1 {
            generation::changes(&d, 1, current).unwrap();
        }
        if finished || trial >= 20 {
            break;
        }
        delay_ms += 60;
    }
    assert!(killed > 0, "no run was killed: the test tested nothing");
    // The next record completes what the killed ones did not.
    let recorded = record(&skel);
    assert_record_matches_disk(&skel, recorded.generation);
    assert!(recorded.generation >= 2);
}

#[test]
fn create_vs_and_sync_store_the_generation() {
    let setup = Setup::new("");
    let skel = setup.build_example_skel("base");
    setup.create("base", "web1", "10.0.0.2");
    setup.create_view("base", "w1", "10.0.0.3");
    let saved = |name: &str| -> toml::Value {
        let text =
            fs::read_to_string(setup.root.join(format!(".vskel/vservers/{name}.toml"))).unwrap();
        toml::from_str(&text).unwrap()
    };
    assert_eq!(saved("web1")["generation"].as_integer(), Some(1));
    assert_eq!(saved("w1")["generation"].as_integer(), Some(1));
    // The skel changes: create-vs of a tree records generation 2; a sync
    // of the view then keeps the current one, 2.
    replace_by_rename(&skel, GLOBAL_FILE, b"two\n");
    setup.create("base", "web2", "10.0.0.4");
    assert_eq!(saved("web2")["generation"].as_integer(), Some(2));
    // A dry run changes no record.
    setup
        .vskel()
        .args(["sync", "--dry-run", "w1"])
        .assert()
        .success();
    assert_eq!(saved("w1")["generation"].as_integer(), Some(1));
    setup.vskel().args(["sync", "w1"]).assert().success();
    assert_eq!(saved("w1")["generation"].as_integer(), Some(2));
    assert_eq!(saved("web1")["generation"].as_integer(), Some(1));
    // The first sync of a view of a skel without generations records one.
    fs::remove_dir_all(gen_dir(&skel)).unwrap();
    setup.vskel().args(["sync", "w1"]).assert().success();
    assert_eq!(generation::current(&dirs(&skel)).unwrap(), Some(1));
    assert_eq!(saved("w1")["generation"].as_integer(), Some(1));
}

#[test]
fn a_skel_without_generations_gets_one_from_the_first_command_that_needs_it() {
    let setup = Setup::new("");
    let skel = setup.build_example_skel("base");
    // A skel built before generations existed.
    fs::remove_dir_all(gen_dir(&skel)).unwrap();
    let out = setup.vskel().args(["list", "--skels"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "base  generation: not recorded yet\n"
    );
    assert!(!gen_dir(&skel).exists(), "list must not record");
    // An old registry record (no generation field) still loads.
    setup.create("base", "web1", "10.0.0.2");
    let record = setup.root.join(".vskel/vservers/web1.toml");
    let old: String = fs::read_to_string(&record)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("generation"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&record, old).unwrap();
    setup.vskel().args(["list"]).assert().success();
    assert_eq!(generation::current(&dirs(&skel)).unwrap(), Some(1));
    assert_record_matches_disk(&skel, 1);
    let out = setup.vskel().args(["list", "--skels"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.starts_with("base  generation 1: "), "{text}");
    assert!(
        text.ends_with(" bytes; generation unknown: web1\n"),
        "{text}"
    );
}

#[test]
fn list_skels_shows_generations_and_their_vservers() {
    let setup = Setup::new("");
    let skel = setup.build_example_skel("base");
    setup.create("base", "web1", "10.0.0.2");
    replace_by_rename(&skel, GLOBAL_FILE, b"two\n");
    setup.create("base", "web2", "10.0.0.3");
    setup.create_view("base", "w1", "10.0.0.4");
    let header = generation::load(&dirs(&skel), 2).unwrap().header;
    let out = setup.vskel().args(["list", "--skels"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "base  generation 2: {} entries, {} bytes; generation 2: w1, web2; generation 1: web1\n",
            header.entries, header.bytes
        )
    );
    let out = setup
        .vskel()
        .args(["list", "--skels", "--format", "json"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["skels"][0], "base");
    assert!(json["protection"][0]["global_files"].as_u64().unwrap() > 0);
    let g = &json["generations"][0];
    assert_eq!(g["skel"], "base");
    assert_eq!(g["current"], 2);
    assert_eq!(g["entries"], header.entries);
    assert_eq!(g["bytes"], header.bytes);
    // Newest generation first.
    assert_eq!(
        g["vservers"],
        serde_json::json!([
            {"generation": 2, "vservers": ["w1", "web2"]},
            {"generation": 1, "vservers": ["web1"]}
        ])
    );
}

/// Rewrite a generation file's text with `edit` and a valid trailer (as
/// a writer of another version, or a careful hand, would leave it).
fn with_valid_trailer(text: &[u8], edit: impl Fn(String) -> String) -> Vec<u8> {
    let text = String::from_utf8(text.to_vec()).unwrap();
    let body_end = text.trim_end_matches('\n').rfind('\n').unwrap() + 1;
    let body = edit(text[..body_end].to_string());
    let lines = body.lines().count() - 2;
    let sum = blake3::hash(body.as_bytes());
    format!("{body}end {lines} {}\n", sum.to_hex()).into_bytes()
}

#[test]
fn bad_generation_files_are_refused_naming_the_file() {
    let setup = Setup::new("");
    let skel = setup.build_example_skel("base");
    replace_by_rename(&skel, GLOBAL_FILE, b"two\n");
    record(&skel);
    let record_path = gen_dir(&skel).join("2.record");
    let changes_path = gen_dir(&skel).join("2.changes");
    let record_text = fs::read(&record_path).unwrap();
    let changes_text = fs::read(&changes_path).unwrap();
    type Edit = Box<dyn Fn(&[u8]) -> Vec<u8>>;
    let cases: Vec<(&str, &Path, &[u8], Edit, &str)> = vec![
        (
            "empty",
            &record_path,
            &record_text,
            Box::new(|_| Vec::new()),
            "truncated",
        ),
        (
            "truncated",
            &record_path,
            &record_text,
            Box::new(|t| t[..t.len() / 2].to_vec()),
            "",
        ),
        (
            "hand-edited",
            &record_path,
            &record_text,
            Box::new(|t| {
                let mut t = t.to_vec();
                let at = t.len() / 2;
                t[at] = if t[at] == b'0' { b'1' } else { b'0' };
                t
            }),
            "checksum mismatch",
        ),
        (
            "wrong version",
            &record_path,
            &record_text,
            Box::new(|t| with_valid_trailer(t, |b| b.replacen("record 1\n", "record 2\n", 1))),
            "format version 2",
        ),
        (
            "changes file as record",
            &record_path,
            &record_text,
            Box::new({
                let c = changes_text.clone();
                move |_| c.clone()
            }),
            "not a generation record file",
        ),
        (
            "wrong number",
            &record_path,
            &record_text,
            Box::new(|t| {
                with_valid_trailer(t, |b| b.replacen("\"generation\":2", "\"generation\":7", 1))
            }),
            "says it is generation 7",
        ),
        (
            "bad entry",
            &record_path,
            &record_text,
            Box::new(|t| with_valid_trailer(t, |b| b.replacen("\tbin/hello\n", "\t../hello\n", 1))),
            "bad entry line",
        ),
        (
            "entry dropped",
            &record_path,
            &record_text,
            Box::new(|t| {
                with_valid_trailer(t, |b| {
                    let mut lines: Vec<&str> = b.lines().collect();
                    lines.remove(3);
                    lines.iter().map(|l| format!("{l}\n")).collect()
                })
            }),
            "the header counts",
        ),
        (
            "changes hand-edited",
            &changes_path,
            &changes_text,
            Box::new(|t| with_valid_trailer(t, |b| b.replacen("\no\t", "\nx\t", 1))),
            "without o/n",
        ),
        (
            "changes truncated",
            &changes_path,
            &changes_text,
            Box::new(|t| t[..t.len() - 10].to_vec()),
            "",
        ),
    ];
    let d = dirs(&skel);
    for (what, path, good, edit, expect) in cases {
        let mut perms = fs::metadata(path).unwrap().permissions();
        perms.set_mode(0o644);
        fs::set_permissions(path, perms).unwrap();
        fs::write(path, edit(good)).unwrap();
        let err = if path == record_path.as_path() {
            generation::load(&d, 2).map(|_| ()).unwrap_err()
        } else {
            generation::changes(&d, 1, 2).map(|_| ()).unwrap_err()
        };
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{what}: {msg}");
        assert!(msg.contains("damaged generation file"), "{what}: {msg}");
        assert!(msg.contains(expect), "{what}: {msg}");
        fs::write(path, good).unwrap();
    }
    generation::load(&d, 2).unwrap();
    generation::changes(&d, 1, 2).unwrap();
    // A missing generation is an error naming the file, not "absent".
    let err = generation::load(&d, 9).unwrap_err().to_string();
    assert!(
        err.contains("9.record") && err.contains("not recorded"),
        "{err}"
    );
}

/// Issue 12: after the skel changed (a new generation), `sync` of a view
/// brings the tree to what the view shows; before, it reported the files
/// "unchanged" and left the tree stale.
#[test]
fn sync_of_a_view_after_a_new_skel_generation_brings_the_tree_up_to_date() {
    use std::os::unix::fs::MetadataExt;
    let setup = Setup::new("");
    let skel = setup.build_example_skel("base");
    setup.create_view("base", "w1", "10.0.0.3");
    setup.vskel().args(["sync", "w1"]).assert().success();
    // An incremental sync with nothing changed.
    setup.vskel().args(["sync", "w1"]).assert().success();
    let tree_file = setup.root.join("w1").join(GLOBAL_FILE);
    assert_ne!(fs::read(&tree_file).unwrap(), b"two\n");
    // The skel changes and records generation 2.
    let (_, new_ino) = replace_by_rename(&skel, GLOBAL_FILE, b"two\n");
    assert_eq!(record(&skel).generation, 2);
    setup.vskel().args(["sync", "w1"]).assert().success();
    assert_eq!(fs::read(&tree_file).unwrap(), b"two\n");
    assert_eq!(
        fs::metadata(&tree_file).unwrap().ino(),
        new_ino,
        "the tree's global file is the new skel inode"
    );
}
