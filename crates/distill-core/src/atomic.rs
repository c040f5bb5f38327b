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
        let file = File::create(&tmp).map_err(|e| {
            CoreError::invalid(format!(
                "{}: cannot create a file in the output folder {} ({e})",
                dest.display(),
                parent.display()
            ))
        })?;
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

    /// Flushes to disk and renames into place; on failure the temporary file is removed. Then
    /// removes what killed earlier runs left of the same destination (see [`remove_stale_temps`]).
    pub fn commit(mut self) -> Result<()> {
        let result = match self.file.take() {
            Some(file) => file.sync_all().map_err(|e| CoreError::io(&self.tmp, e)),
            None => Ok(()),
        }
        .and_then(|()| {
            std::fs::rename(&self.tmp, &self.dest).map_err(|e| CoreError::io(&self.dest, e))
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
            return result;
        }
        remove_stale_temps(&self.dest);
        Ok(())
    }
}

/// The temporary-file name pattern of `dest`: `.NAME.PID.tmp` beside it.
fn temp_prefix(dest: &Path) -> Option<String> {
    dest.file_name()
        .map(|n| format!(".{}.", n.to_string_lossy()))
}

/// Removes `.NAME.PID.tmp` files beside `dest` left by processes that no longer run (a SIGKILL
/// gives a writer no chance to clean up). A temp file of a live process is left alone: it may be
/// another run writing the same output. Where liveness cannot be told (no `/proc`), nothing is
/// removed.
pub fn remove_stale_temps(dest: &Path) {
    let Some(prefix) = temp_prefix(dest) else {
        return;
    };
    if !Path::new("/proc/self").exists() {
        return;
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some(pid) = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Checks an output path before any work is done, so that a mistake costs nothing:
/// - its folder must exist (and be a folder);
/// - it must not be an existing folder;
/// - it must not be one of the stage's `inputs` (same path, or another name of the same file),
///   which writing would destroy.
///
/// `flag` names the option in messages (e.g. `--out`); each input is `(flag, path)`.
pub fn check_output(flag: &str, dest: &Path, inputs: &[(&str, &Path)]) -> Result<()> {
    let bad = |message: String| {
        Err(CoreError::invalid(format!(
            "{flag} {}: {message}",
            dest.display()
        )))
    };
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if parent.exists() && !parent.is_dir() {
        return bad(format!(
            "{} is a file, not a folder; choose an output path inside a folder",
            parent.display()
        ));
    }
    if !parent.is_dir() {
        return bad(format!(
            "the output folder {} does not exist; create it first",
            parent.display()
        ));
    }
    if dest.is_dir() {
        return bad("this is an existing folder; give a file name inside it".into());
    }
    if dest.file_name().is_none() {
        return bad("not a file name".into());
    }
    let probe = parent.join(format!(".distill-write-probe-{}", std::process::id()));
    if let Err(e) = File::create(&probe) {
        return bad(format!(
            "cannot create files in the folder {} ({e}); choose a folder you can write to",
            parent.display()
        ));
    }
    let _ = std::fs::remove_file(&probe);
    for (input_flag, input) in inputs {
        if same_file(dest, input) {
            return bad(format!(
                "this is also the input {input_flag} {}; writing the output would destroy it: \
                 choose another output path",
                input.display()
            ));
        }
    }
    Ok(())
}

/// [`check_output`] of `--out` for a stage that runs ONNX models on a data set (distill-teach,
/// distill-eval): the output must be none of the `--model` files and not the `--data` file.
pub fn check_output_of_model_run<'a>(
    dest: &Path,
    models: impl IntoIterator<Item = &'a Path>,
    data: &Path,
) -> Result<()> {
    let mut inputs: Vec<(&str, &Path)> = models.into_iter().map(|m| ("--model", m)).collect();
    inputs.push(("--data", data));
    check_output("--out", dest, &inputs)
}

/// Whether `a` and `b` name the same existing file (hard links and symlinks included), or the
/// same path when neither exists yet.
pub fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
    }
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_commit_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        let mut f = AtomicFile::create(&dest).unwrap();
        f.file().write_all(b"data").unwrap();
        // The destination becomes a non-empty folder: the rename must fail.
        std::fs::create_dir(&dest).unwrap();
        std::fs::write(dest.join("x"), b"x").unwrap();
        assert!(f.commit().is_err());
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            left,
            vec!["out.bin".to_string()],
            "temporary file left behind"
        );
    }

    #[test]
    fn a_commit_removes_temporary_files_of_dead_writers_only() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("s.parquet");
        // No process has pid 4294967295 (above the kernel's pid_max).
        let dead = dir.path().join(".s.parquet.4294967295.tmp");
        let other = dir.path().join(".t.parquet.4294967295.tmp");
        for p in [&dead, &other] {
            std::fs::write(p, b"half").unwrap();
        }
        write_bytes(&dest, b"whole").unwrap();
        assert!(!dead.exists(), "stale temporary file of a dead writer kept");
        assert!(other.exists(), "another output's temporary file removed");
        assert_eq!(std::fs::read(&dest).unwrap(), b"whole");
    }

    #[test]
    fn outputs_are_checked_against_inputs_and_folders() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("m.onnx");
        std::fs::write(&input, b"model").unwrap();
        let err = check_output("--out", &input, &[("--model", &input)]).unwrap_err();
        assert!(err.to_string().contains("would destroy it"), "{err}");
        let link = dir.path().join("link.onnx");
        std::fs::hard_link(&input, &link).unwrap();
        let err = check_output("--out", &link, &[("--model", &input)]).unwrap_err();
        assert!(err.to_string().contains("would destroy it"), "{err}");
        let err = check_output("--out", dir.path(), &[]).unwrap_err();
        assert!(err.to_string().contains("existing folder"), "{err}");
        let err = check_output("--out", &input.join("x.json"), &[]).unwrap_err();
        assert!(err.to_string().contains("is a file, not a folder"), "{err}");
        check_output(
            "--out",
            &dir.path().join("new.json"),
            &[("--model", &input)],
        )
        .unwrap();
    }
}
