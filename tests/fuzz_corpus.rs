//! Every file of the fuzz corpus (`fuzz/corpus/<target>/`: the seeds, and the inputs of
//! every crash the fuzzers found, as regression cases) through the same entry points the
//! fuzz targets call, under the normal test suite: no fuzzer, no sanitizer, no nightly.

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn names_in(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").file_name())
        .filter_map(|n| n.to_str()?.strip_suffix(suffix).map(str::to_owned))
        .collect();
    names.sort();
    names
}

#[test]
fn every_corpus_file_passes_its_target() {
    let mut failed = Vec::new();
    let mut count = 0;
    for (name, target) in berth::fuzzing::TARGETS {
        let dir = fuzz_dir().join("corpus").join(name);
        let files = names_in(&dir, "");
        assert!(!files.is_empty(), "{}: no seeds", dir.display());
        for file in files {
            let path = dir.join(&file);
            let data = std::fs::read(&path).expect("a corpus file");
            count += 1;
            if std::panic::catch_unwind(|| target(&data)).is_err() {
                failed.push(path.display().to_string());
            }
        }
    }
    assert!(
        failed.is_empty(),
        "failing corpus files:\n{}",
        failed.join("\n")
    );
    eprintln!("{count} corpus files passed");
}

/// The fuzz crate has a target for each entry point and a corpus for each target, and
/// nothing else: a target added on one side only fails here, without building `fuzz/`.
#[test]
fn targets_corpus_and_fuzz_crate_agree() {
    let mut names: Vec<String> = berth::fuzzing::TARGETS
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    names.sort();
    assert_eq!(names_in(&fuzz_dir().join("fuzz_targets"), ".rs"), names);
    assert_eq!(names_in(&fuzz_dir().join("corpus"), ""), names);
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for n in &names {
        assert!(
            manifest.contains(&format!("name = \"{n}\"")),
            "fuzz/Cargo.toml has no [[bin]] {n}"
        );
        assert!(berth::fuzzing::target(n).is_some());
    }
}
