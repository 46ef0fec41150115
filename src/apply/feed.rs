//! The change feed's files: one append-only JSON-lines file per tenant, `<state>/feed/<slug>.jsonl`,
//! written by the process that applies (through [`super::EventHooks`]) and read by `matih serve`
//! (another process: the sled store is process-exclusive, so while an apply runs the feed is the
//! only thing serve can read). One [`Event`] per line, in the shape `crate::events` documents.
//!
//! Writing never fails or slows the apply beyond one `write` per event: an I/O error is logged
//! once and the feed is given up for that tenant. A file over [`ROTATE_BYTES`] is renamed to
//! `<slug>.jsonl.1` when a run starts.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::events::Event;

/// A feed file larger than this is rotated when a run starts.
pub const ROTATE_BYTES: u64 = 8 * 1024 * 1024;

/// The directory of the feed files inside a state directory.
pub fn feed_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("feed")
}

/// The feed file of a tenant. `slug` must already be checked (a DNS-1123 label).
pub fn feed_file(state_dir: &Path, slug: &str) -> PathBuf {
    feed_dir(state_dir).join(format!("{slug}.jsonl"))
}

/// Opens a tenant's feed file for appending (rotating it when it grew too large); `None`, with a
/// warning logged, when it cannot be written.
pub(super) fn open(state_dir: &Path, slug: &str) -> Option<File> {
    let dir = feed_dir(state_dir);
    let path = feed_file(state_dir, slug);
    let result = (|| {
        crate::state::private::create_dir_all(&dir)?;
        if std::fs::metadata(&path).map(|m| m.len() > ROTATE_BYTES).unwrap_or(false) {
            std::fs::rename(&path, path.with_extension("jsonl.1"))?;
        }
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        crate::state::private::options(options).open(&path)
    })();
    match result {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!("progress feed {} cannot be written: {e}; live progress is off for {slug}", path.display());
            None
        }
    }
}

/// Appends `line` (one serialized event) to `file`; on an error gives the feed up for the tenant.
pub(super) fn append(file: &mut Option<File>, tenant: &str, line: &str) {
    let Some(f) = file.as_mut() else { return };
    if let Err(e) = f.write_all(format!("{line}\n").as_bytes()) {
        tracing::warn!("progress feed of {tenant} cannot be written: {e}; live progress is off for it");
        *file = None;
    }
}

/// Reads a feed incrementally: remembers how far it read and returns only complete new lines.
/// A file that shrank or was replaced (rotation) is read again from its start.
#[derive(Debug, Default)]
pub struct FeedCursor {
    offset: u64,
    partial: Vec<u8>,
}

impl FeedCursor {
    /// New events since the last call; malformed lines are skipped.
    pub fn read_new(&mut self, path: &Path) -> std::io::Result<Vec<Event>> {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        if len < self.offset {
            self.offset = 0;
            self.partial.clear();
        }
        if len == self.offset {
            return Ok(Vec::new());
        }
        f.seek(SeekFrom::Start(self.offset))?;
        let mut buf = Vec::new();
        f.take(len - self.offset).read_to_end(&mut buf)?;
        self.offset += buf.len() as u64;
        self.partial.extend_from_slice(&buf);
        let Some(last_nl) = self.partial.iter().rposition(|b| *b == b'\n') else { return Ok(Vec::new()) };
        let rest = self.partial.split_off(last_nl + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        Ok(complete
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|l| serde_json::from_slice::<Event>(l).ok())
            .collect())
    }
}

/// Every event of a tenant's feed, the rotated file first, oldest first (for the audit endpoint).
pub fn read_all(state_dir: &Path, slug: &str) -> Vec<Event> {
    let path = feed_file(state_dir, slug);
    let mut out = Vec::new();
    for p in [path.with_extension("jsonl.1"), path] {
        if let Ok(f) = File::open(&p) {
            for line in BufReader::new(f).lines() {
                let Ok(line) = line else { break };
                if let Ok(ev) = serde_json::from_str::<Event>(&line) {
                    out.push(ev);
                }
            }
        }
    }
    out
}
