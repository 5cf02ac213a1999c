//! The one atomic file write of the crate (and of the Python package, through the bindings): a file is either its
//! old content or the whole new content, never a mix or a truncated file, even when several threads or processes
//! write the same path at once, or the machine stops half-way.
//!
//! The bytes go to a temporary file in the target's directory (so the rename stays on one file system) with a name
//! no other writer uses — the process id and a process-wide counter — are flushed to disk, and the file is renamed
//! over the target, which replaces it in one step; the directory is then flushed too, so that the rename itself
//! survives a crash. Concurrent writers each rename a complete file: the last rename wins, and a reader sees one of
//! the complete files.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Temporary files made by this process so far: with the process id, a name no other writer uses.
static TEMPORARY_FILES: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` atomically (see the module documentation). On failure the target is untouched, the
/// temporary file is removed, and the error names `path` and the step that failed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |what: &str, source| Error::Io { context: format!("cannot {what} {}", path.display()), source };
    let file_name = path.file_name().ok_or_else(|| Error::Io {
        context: format!("cannot write {}: the path does not name a file", path.display()),
        source: std::io::ErrorKind::InvalidInput.into(),
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let n = TEMPORARY_FILES.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{}.{}-{n}.tmp", file_name.to_string_lossy(), std::process::id()));
    let result = (|| {
        // `create_new`: never write into a file someone else made, even a stale one of a crashed process.
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| io("create a temporary file for", e))?;
        file.write_all(bytes).map_err(|e| io("write", e))?;
        file.sync_all().map_err(|e| io("flush", e))?;
        drop(file);
        fs::rename(&tmp, path).map_err(|e| io("replace", e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    sync_dir(&dir).map_err(|e| io("flush the directory of", e))
}

/// Flushes a directory's entries (the rename) to disk. Only Unix systems can open a directory for this; elsewhere
/// the rename is as durable as the file system makes it.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bitlogic-atomic-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn writes_replace_the_file_and_leave_no_temporary_file() {
        let dir = scratch_dir("replace");
        let path = dir.join("out.bin");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second, longer").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second, longer");
        let names: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["out.bin"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_path() {
        let dir = scratch_dir("missing");
        let path = dir.join("no such dir").join("out.bin");
        let message = write_atomic(&path, b"x").unwrap_err().to_string();
        assert!(message.contains("cannot create a temporary file for") && message.contains("out.bin"), "{message}");
        assert!(matches!(write_atomic(Path::new("/"), b"x"), Err(Error::Io { .. })));
        fs::remove_dir_all(&dir).unwrap();
    }
}
