//! Outputs are written to a temporary file beside their destination and renamed into place, so an
//! interrupted stage never leaves a file that a later stage would take as complete.

use crate::{CoreError, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// A file being written; it appears at its destination only when [`AtomicFile::commit`] succeeds.
/// Dropped without commit, the temporary file is removed.
pub struct AtomicFile {
    dest: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
}

impl AtomicFile {
    /// Starts writing `dest`. The destination's folder must exist already; it is not created, so a
    /// typo in an output path is an error rather than a stray folder.
    pub fn create(dest: &Path) -> Result<Self> {
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(CoreError::invalid(format!(
                "{}: the output folder {} does not exist; create it first",
                dest.display(),
                parent.display()
            )));
        }
        let name = dest
            .file_name()
            .ok_or_else(|| CoreError::invalid(format!("{}: not a file name", dest.display())))?;
        let tmp = parent.join(format!(
            ".{}.{}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        let file = File::create(&tmp).map_err(|e| CoreError::io(&tmp, e))?;
        Ok(AtomicFile {
            dest: dest.to_path_buf(),
            tmp,
            file: Some(file),
        })
    }

    /// The open temporary file.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("file is present until commit")
    }

    /// A second handle on the temporary file, for writers that take ownership of one.
    pub fn try_clone(&self) -> Result<File> {
        self.file
            .as_ref()
            .expect("file is present until commit")
            .try_clone()
            .map_err(|e| CoreError::io(&self.tmp, e))
    }

    pub fn destination(&self) -> &Path {
        &self.dest
    }

    /// Flushes to disk and renames into place.
    pub fn commit(mut self) -> Result<()> {
        if let Some(file) = self.file.take() {
            file.sync_all().map_err(|e| CoreError::io(&self.tmp, e))?;
        }
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| CoreError::io(&self.dest, e))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.is_some() {
            self.file = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `dest` atomically with the bytes `write` produces.
pub fn write_with(
    dest: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let mut out = AtomicFile::create(dest)?;
    {
        let mut w = BufWriter::new(out.file());
        write(&mut w).map_err(|e| CoreError::io(dest, e))?;
        w.flush().map_err(|e| CoreError::io(dest, e))?;
    }
    out.commit()
}

/// Writes `dest` atomically with `bytes`.
pub fn write_bytes(dest: &Path, bytes: &[u8]) -> Result<()> {
    write_with(dest, |w| w.write_all(bytes))
}
