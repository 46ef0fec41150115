//! Files and directories only their owner can read: the state directory (sled's files, lock
//! holders), the progress feeds and the notification outbox hold tenant names, resource
//! attributes, e-mail addresses and webhook payloads, and the outbox is also something other
//! processes act on. Directories matih creates are `0700` and files `0600` (on Unix; elsewhere the
//! platform's defaults). Directories that already exist are left as they are: an operator may have
//! chosen their mode.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// `fs::create_dir_all`, with every directory it creates made `0700`.
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// `options` with new files created `0600`.
pub fn options(mut options: OpenOptions) -> OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// `File::create`, the file `0600` when it is new.
pub fn create(path: &Path) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.write(true).create(true).truncate(true);
    options(o).open(path)
}

/// `fs::write`, the file `0600` when it is new.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    create(path)?.write_all(bytes)
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn created_directories_and_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b");
        create_dir_all(&deep).unwrap();
        assert_eq!((mode(&dir.path().join("a")), mode(&deep)), (0o700, 0o700));
        write(&deep.join("f"), b"x").unwrap();
        assert_eq!(mode(&deep.join("f")), 0o600);
        let mut o = OpenOptions::new();
        o.create(true).append(true);
        options(o).open(deep.join("g")).unwrap();
        assert_eq!(mode(&deep.join("g")), 0o600);
    }

    #[test]
    fn the_state_directory_and_its_lock_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let _store = crate::state::SledStore::open(&state).unwrap();
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join("matih.lock")), 0o600);
    }
}
