//! The committed fuzz corpus (`fuzz/corpus/TARGET/`: the seeds, and every input a fuzz run found
//! that once crashed, hung or blew up) replayed through the fuzz targets' own bodies
//! (`fuzz/src/TARGET.rs`, the same code libFuzzer drives through `scripts/fuzz`), in the normal test
//! suite and without libFuzzer: a regression of any finding fails here. Nothing but the binary's
//! code and temporary files; a few seconds.

#[path = "../../fuzz/src/lib.rs"]
mod matih_fuzz;

use std::path::Path;
use std::time::{Duration, Instant};

/// Runs every file of `fuzz/corpus/TARGET/` through `run`; each input must finish in `limit`.
fn replay(target: &str, run: fn(&[u8]), limit: Duration) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    for file in &files {
        let input = std::fs::read(file).unwrap();
        let start = Instant::now();
        run(&input);
        let took = start.elapsed();
        assert!(took < limit, "{} took {took:?} (more than {limit:?})", file.display());
    }
    files.len()
}

#[test]
fn the_fuzz_corpus_replays_without_a_finding() {
    let limit = Duration::from_secs(10);
    let mut total = 0;
    for (target, run) in [
        ("spec", matih_fuzz::spec::run as fn(&[u8])),
        ("platform", matih_fuzz::platform::run),
        ("planfile", matih_fuzz::planfile::run),
        ("state", matih_fuzz::state::run),
        ("serve", matih_fuzz::serve::run),
        ("addr", matih_fuzz::addr::run),
        ("pgurl", matih_fuzz::pgurl::run),
    ] {
        total += replay(target, run, limit);
    }
    let _ = std::fs::remove_dir_all(matih_fuzz::serve::state_dir());
    assert!(total >= 30, "{total} inputs");
}
