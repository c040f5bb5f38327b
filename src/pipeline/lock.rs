//! The lock file beside a pipeline (`mnist.yaml` → `mnist.lock`, YAML): per stage, the SHA-256 of
//! its resolved arguments, of each input and of each output, written atomically after the stage
//! completes (and marked `started` while it runs, so a stage killed half-way is run again), and the
//! version of distill that ran it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::error::{PipelineError, Result};

pub const SCHEMA: u32 = 1;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Lock {
    pub schema: u32,
    #[serde(default)]
    pub stages: BTreeMap<String, Entry>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// The stage began and has not completed (it is running, failed or was killed).
    Started,
    Complete,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    pub kind: String,
    pub state: State,
    /// SHA-256 of the resolved arguments (see `Stage::args_hash`).
    pub args: String,
    /// The command line, for people reading the lock.
    pub command: String,
    /// Path → SHA-256 of each input that exists.
    #[serde(default)]
    pub deps: BTreeMap<String, String>,
    /// Path → SHA-256 of each output that exists after the stage.
    #[serde(default)]
    pub outs: BTreeMap<String, String>,
    #[serde(default)]
    pub seconds: f64,
    /// The stage's printed report, shown again when the stage is skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
    /// The version of distill that ran the stage; another version runs it again. Locks written
    /// before this was recorded have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// The lock file's path for a pipeline file.
pub fn lock_path(pipeline: &Path) -> PathBuf {
    pipeline.with_extension("lock")
}

impl Lock {
    /// Reads the lock; a missing one is empty, and so is an unreadable one (with a note).
    pub fn read(path: &Path) -> (Lock, Option<String>) {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (Lock::empty(), None),
            Err(e) => {
                return (
                    Lock::empty(),
                    Some(format!("{}: {e}; every stage runs", path.display())),
                );
            }
        };
        match serde_norway::from_str::<Lock>(&text) {
            Ok(l) if l.schema == SCHEMA => (l, None),
            Ok(l) => (
                Lock::empty(),
                Some(format!(
                    "{}: lock schema {} is not {SCHEMA}; every stage runs",
                    path.display(),
                    l.schema
                )),
            ),
            Err(e) => (
                Lock::empty(),
                Some(format!(
                    "{}: not a lock file ({e}); every stage runs",
                    path.display()
                )),
            ),
        }
    }

    pub fn empty() -> Lock {
        Lock {
            schema: SCHEMA,
            stages: BTreeMap::new(),
        }
    }

    /// Writes the lock atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_norway::to_string(self).map_err(|e| {
            PipelineError::io(path, std::io::Error::other(format!("cannot encode: {e}")))
        })?;
        distill_core::atomic::write_bytes(path, text.as_bytes())?;
        Ok(())
    }
}

/// Content hashes of files and folders, remembered by path, size and modification time for the
/// length of one run (the data folder is read by most stages).
#[derive(Default)]
pub struct HashCache {
    seen: Mutex<HashMap<PathBuf, Seen>>,
}

/// A file's size, modification time and hash.
type Seen = (u64, Option<SystemTime>, String);

impl HashCache {
    /// SHA-256 of a file's bytes, or of a folder's files (their relative paths and hashes, sorted;
    /// hidden files such as in-progress temporary files left out). `None` when `path` is missing.
    pub fn hash(&self, path: &Path) -> Result<Option<String>> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(PipelineError::io(path, e)),
        };
        if meta.is_dir() {
            let mut files = Vec::new();
            list_files(path, Path::new(""), &mut files)?;
            files.sort();
            let mut h = sha2::Sha256::new();
            for f in files {
                let digest = self.hash(&path.join(&f))?.unwrap_or_default();
                h.update(f.to_string_lossy().as_bytes());
                h.update([0u8]);
                h.update(digest.as_bytes());
                h.update([b'\n']);
            }
            return Ok(Some(distill_core::hex(&h.finalize())));
        }
        let key = (meta.len(), meta.modified().ok());
        if let Ok(seen) = self.seen.lock()
            && let Some((len, mtime, digest)) = seen.get(path)
            && (*len, *mtime) == key
            && mtime.is_some()
        {
            return Ok(Some(digest.clone()));
        }
        let digest = distill_core::sha256_file(path)?;
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(path.to_path_buf(), (key.0, key.1, digest.clone()));
        }
        Ok(Some(digest))
    }

    /// Forgets what is known about `path` (a stage is about to write it).
    pub fn forget(&self, path: &Path) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.retain(|p, _| !p.starts_with(path));
        }
    }
}

fn list_files(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let dir = root.join(rel);
    let entries = std::fs::read_dir(&dir).map_err(|e| PipelineError::io(&dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| PipelineError::io(&dir, e))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let rel = rel.join(&name);
        let ty = entry.file_type().map_err(|e| PipelineError::io(&dir, e))?;
        if ty.is_dir() {
            list_files(root, &rel, out)?;
        } else {
            out.push(rel);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_hash_their_files_not_their_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"1").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b"), b"2").unwrap();
        let h = HashCache::default();
        let before = h.hash(dir.path()).unwrap().unwrap();
        std::fs::write(dir.path().join(".b.123.tmp"), b"x").unwrap();
        assert_eq!(h.hash(dir.path()).unwrap().unwrap(), before);
        std::fs::write(dir.path().join("sub/b"), b"22").unwrap();
        assert_ne!(h.hash(dir.path()).unwrap().unwrap(), before);
        assert_eq!(h.hash(&dir.path().join("missing")).unwrap(), None);
        // sha256("1"), from `printf 1 | sha256sum`.
        assert_eq!(
            h.hash(&dir.path().join("a")).unwrap().unwrap(),
            "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b"
        );
    }
}
