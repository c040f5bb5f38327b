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

/// Checks an output file before any work is done, so that a mistake costs nothing:
/// - its folder must exist (and be a folder) and take new files;
/// - it must not be an existing folder;
/// - it must obey [`check_disjoint`] against the stage's `inputs`.
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
    check_disjoint(&[(flag, dest)], inputs)?;
    let probe = parent.join(format!(".distill-write-probe-{}", std::process::id()));
    if let Err(e) = File::create(&probe) {
        return bad(format!(
            "cannot create files in the folder {} ({e}); choose a folder you can write to",
            parent.display()
        ));
    }
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// The rule every stage and the pipeline apply before any work: an output may not be, contain or
/// sit inside anything the stage reads, and no two outputs may be or contain one another. Paths
/// are compared after following symlinks (of the path and of every folder above it, existing or
/// not yet), and existing files and folders also by device and inode, so that another name of the
/// same file (a hard link, a symlinked folder, a bind mount) is caught too.
///
/// Each entry is `(flag, path)`; the message names both flags and paths and how to fix it.
pub fn check_disjoint(outputs: &[(&str, &Path)], inputs: &[(&str, &Path)]) -> Result<()> {
    for (k, (out_flag, out)) in outputs.iter().enumerate() {
        let bad = |message: String| {
            Err(CoreError::invalid(format!(
                "{out_flag} {}: {message}",
                out.display()
            )))
        };
        for (in_flag, input) in inputs {
            match overlap(out, input) {
                Overlap::None => {}
                Overlap::Same => {
                    return bad(format!(
                        "this is also the input {in_flag} {}; writing the output would destroy \
                         it: choose another output path",
                        input.display()
                    ));
                }
                Overlap::Contains => {
                    return bad(format!(
                        "this folder holds the input {in_flag} {}; writing the output there \
                         would destroy it: choose an output path outside the inputs",
                        input.display()
                    ));
                }
                Overlap::Inside => {
                    return bad(format!(
                        "this is inside the input {in_flag} {}, and writing there would change \
                         what the stage reads: choose an output path outside the inputs",
                        input.display()
                    ));
                }
            }
        }
        for (other_flag, other) in &outputs[k + 1..] {
            if overlap(out, other) != Overlap::None {
                return bad(format!(
                    "this is the same file as {other_flag} {} (or one holds the other); give \
                     each output its own path",
                    other.display()
                ));
            }
        }
    }
    Ok(())
}

/// How an output path relates to an input path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overlap {
    /// Neither is, holds or is inside the other.
    None,
    /// The same file or folder.
    Same,
    /// The output is a folder that holds the input.
    Contains,
    /// The output is inside the input (a folder).
    Inside,
}

/// How `output` relates to `input`: the same file, a folder holding it, or inside it.
pub fn overlap(output: &Path, input: &Path) -> Overlap {
    Place::of(output).overlap(&Place::of(input))
}

/// Where a path leads, for comparing many paths with one another ([`Place::overlap`]) without
/// touching the file system again: the path with symlinks resolved ([`resolve`]), and the device
/// and inode of the file and of each existing folder above it.
#[derive(Clone, Debug)]
pub struct Place {
    resolved: PathBuf,
    id: Option<(u64, u64)>,
    ancestors: Vec<(u64, u64)>,
}

impl Place {
    pub fn of(path: &Path) -> Place {
        let resolved = resolve(path);
        let mut ancestors = Vec::new();
        let mut at = resolved.clone();
        while at.pop() {
            if let Some(id) = file_id(&at) {
                ancestors.push(id);
            }
        }
        Place {
            id: file_id(path),
            resolved,
            ancestors,
        }
    }

    /// The path with every symlink resolved.
    pub fn resolved(&self) -> &Path {
        &self.resolved
    }

    /// How this place (an output) relates to `input`.
    pub fn overlap(&self, input: &Place) -> Overlap {
        if self.resolved == input.resolved || (self.id.is_some() && self.id == input.id) {
            Overlap::Same
        } else if input.resolved.starts_with(&self.resolved)
            || self.id.is_some_and(|id| input.ancestors.contains(&id))
        {
            Overlap::Contains
        } else if self.resolved.starts_with(&input.resolved)
            || input.id.is_some_and(|id| self.ancestors.contains(&id))
        {
            Overlap::Inside
        } else {
            Overlap::None
        }
    }
}

/// The device and inode of an existing file or folder (symlinks followed).
fn file_id(path: &Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// `path` made absolute with every symlink resolved: the longest existing prefix canonicalised,
/// the rest appended with `.` dropped and `..` taken lexically.
pub fn resolve(path: &Path) -> PathBuf {
    use std::path::Component;
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    let components: Vec<Component<'_>> = absolute.components().collect();
    for split in (0..=components.len()).rev() {
        let head: PathBuf = components[..split].iter().collect();
        let Ok(mut base) = std::fs::canonicalize(&head) else {
            continue;
        };
        for c in &components[split..] {
            match c {
                Component::ParentDir => {
                    base.pop();
                }
                Component::Normal(n) => base.push(n),
                _ => {}
            }
        }
        return base;
    }
    absolute
}

/// [`check_output`] of `--out` for a stage that runs ONNX models on a data set (distill-teach,
/// distill-eval): the output must not overlap the `--model` files, their sidecars
/// (`MODEL.yaml`) and external-data files (see [`model_files`]), nor the `--data` file or
/// folder.
pub fn check_output_of_model_run<'a>(
    dest: &Path,
    models: impl IntoIterator<Item = &'a Path>,
    data: &Path,
) -> Result<()> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for m in models {
        files.extend(model_files(m));
    }
    let mut inputs: Vec<(&str, &Path)> = files
        .iter()
        .map(|(f, p)| (f.as_str(), p.as_path()))
        .collect();
    inputs.push(("--data", data));
    check_output("--out", dest, &inputs)
}

/// The sidecar of a model: its file name with `.yaml` appended (`model.onnx.yaml`).
pub fn sidecar_path(model: &Path) -> PathBuf {
    let mut name = model.as_os_str().to_os_string();
    name.push(".yaml");
    PathBuf::from(name)
}

/// Every file a run of the model at `path` reads, each with what it is for messages: the model
/// (`--model`), its sidecar, and the files its initializers keep their data in (read from the
/// model's bytes, at most [`crate::input::MAX_MODEL_BYTES`]; none when the model cannot be read
/// as ONNX). External-data locations are taken relative to the model's folder, as ONNX Runtime
/// does.
pub fn model_files(path: &Path) -> Vec<(String, PathBuf)> {
    let mut files = vec![
        ("--model".to_string(), path.to_path_buf()),
        (
            format!("--model's sidecar of {}", path.display()),
            sidecar_path(path),
        ),
    ];
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if let Ok(bytes) = crate::input::read("--model", path, crate::input::MAX_MODEL_BYTES) {
        use prost::Message;
        if let Ok(model) = crate::onnx_proto::ModelProto::decode(bytes.as_slice()) {
            for location in model.external_data_locations() {
                files.push((
                    format!("--model's external data of {}", path.display()),
                    folder.join(location),
                ));
            }
        }
    }
    files
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
        _ => resolve(a) == resolve(b),
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

    #[test]
    fn no_output_is_contains_or_sits_inside_an_input_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("store")).unwrap();
        std::fs::write(d.join("store/part-1.parquet"), b"p").unwrap();
        std::fs::write(d.join("m.json"), b"{}").unwrap();
        std::os::unix::fs::symlink(d.join("store"), d.join("alias")).unwrap();
        let store = d.join("store");
        let inputs: [(&str, &Path); 2] = [("--store", &store), ("--metrics", &d.join("m.json"))];
        let cases: [(PathBuf, &str); 5] = [
            (d.join("m.json"), "also the input --metrics"),
            (d.join("alias/../m.json"), "also the input --metrics"),
            (d.join("store/new.html"), "inside the input --store"),
            (d.join("alias/new.html"), "inside the input --store"),
            (d.join("alias/part-1.parquet"), "also the input --store"),
        ];
        for (out, want) in cases {
            let e = check_disjoint(&[("--out", &out)], &inputs).unwrap_err();
            let text = e.to_string();
            let ok = text.contains(want)
                || (want.contains("--store") && text.contains("inside the input --store"));
            assert!(ok, "{}: {text}", out.display());
        }
        let e = check_disjoint(&[("--out", d)], &inputs).unwrap_err();
        assert!(e.to_string().contains("holds the input"), "{e}");
        let e = check_disjoint(
            &[("--out", &d.join("a.html")), ("--log", &d.join("./a.html"))],
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("same file as --log"), "{e}");
        check_disjoint(&[("--out", &d.join("r.html"))], &inputs).unwrap();
    }

    #[test]
    fn a_models_sidecar_and_external_data_are_its_inputs() {
        use crate::onnx_proto::{GraphProto, ModelProto, StringStringEntryProto, TensorProto};
        use prost::Message;
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.onnx");
        let tensor = TensorProto {
            data_type: 1,
            external_data: vec![StringStringEntryProto {
                key: "location".into(),
                value: "m.onnx.data".into(),
            }],
            data_location: 1,
            ..Default::default()
        };
        let bytes = ModelProto {
            ir_version: 7,
            graph: Some(GraphProto {
                initializer: vec![tensor],
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec();
        std::fs::write(&model, bytes).unwrap();
        std::fs::write(dir.path().join("m.onnx.data"), b"w").unwrap();
        let data = dir.path().join("data");
        for (out, want) in [("m.onnx.yaml", "sidecar"), ("m.onnx.data", "external data")] {
            let e = check_output_of_model_run(&dir.path().join(out), [model.as_path()], &data)
                .unwrap_err();
            assert!(e.to_string().contains(want), "{out}: {e}");
        }
    }
}
