//! Reading an input file whole, safely: only regular files (a device such as `/dev/zero` or a
//! FIFO would never end, or block), and never more than a documented limit, so that a wrong path
//! fails with a message instead of exhausting memory or hanging.

use crate::{CoreError, Result};
use std::io::Read;
use std::path::Path;

/// The most an ONNX model file may hold: 2 GiB, protobuf's own limit on one message (larger
/// models keep their weights in external-data files, which are read by ONNX Runtime).
pub const MAX_MODEL_BYTES: u64 = 2 << 30;

/// The most a settings or text input read whole may hold (a sidecar `MODEL.onnx.yaml`, a
/// subsets or manifest YAML, `metrics.json`, a pipeline file, a lock, a training log): 64 MiB,
/// far above any file the stages write.
pub const MAX_TEXT_BYTES: u64 = 64 << 20;

/// Refuses an input that does not exist, naming the flag that gave it and what writes it
/// (`written_by`, e.g. "the teach stage (distill-teach --out)"), so a user who skipped a stage is
/// told which one to run rather than shown the operating system's "No such file".
pub fn require_exists(flag: &str, path: &Path, written_by: &str) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    Err(CoreError::invalid(format!(
        "{flag}: {} does not exist; check the path, or run {written_by} first, which writes it",
        path.display()
    )))
}

/// Refuses `path` unless it is a regular file (symlinks followed). `flag` names the option that
/// gave it in the message (none when empty).
pub fn check_regular(flag: &str, path: &Path) -> Result<std::fs::Metadata> {
    let flag = if flag.is_empty() {
        String::new()
    } else {
        format!("{flag}: ")
    };
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
            CoreError::io(path, e)
        }
        _ if is_symlink_loop(path) => CoreError::format(
            path,
            format!(
                "{flag}this is a symbolic link that never reaches a file (a loop: {e}); point it \
                 at the file, or give the file's own path"
            ),
        ),
        _ => CoreError::format(path, format!("{flag}cannot read it ({e})")),
    })?;
    if meta.is_file() {
        return Ok(meta);
    }
    Err(CoreError::format(
        path,
        format!(
            "{flag}this is {}, not a regular file; give the path of a file",
            kind_of(&meta)
        ),
    ))
}

/// Whether `path` is a symbolic link whose chain of targets loops (it exists as a link, and
/// following it fails with the system's "too many levels of symbolic links").
fn is_symlink_loop(path: &Path) -> bool {
    /// ELOOP on Linux and the BSDs/macOS.
    const ELOOP: [i32; 2] = [40, 62];
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
        && std::fs::metadata(path)
            .err()
            .and_then(|e| e.raw_os_error())
            .is_some_and(|c| ELOOP.contains(&c))
}

/// What a non-regular file is, in words.
pub fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if meta.is_dir() {
        "a folder"
    } else if meta.is_file() {
        "a file"
    } else {
        "not a file"
    }
}

fn too_big(flag: &str, path: &Path, size: String, limit: u64) -> CoreError {
    CoreError::format(
        path,
        format!(
            "{flag}: the file holds {size} bytes, more than the {limit} this input may hold; \
             check that this is the right file"
        ),
    )
}

/// Refuses `path` unless it is a regular file of at most `limit` bytes, for a reader that opens
/// it itself.
pub fn check_bounded(flag: &str, path: &Path, limit: u64) -> Result<std::fs::Metadata> {
    let meta = check_regular(flag, path)?;
    if meta.len() > limit {
        return Err(too_big(flag, path, meta.len().to_string(), limit));
    }
    Ok(meta)
}

/// The bytes of the regular file `path`, refused (before reading) when it is larger than `limit`
/// bytes, and never read past `limit` if it grows meanwhile.
pub fn read(flag: &str, path: &Path, limit: u64) -> Result<Vec<u8>> {
    let meta = check_bounded(flag, path, limit)?;
    let file = std::fs::File::open(path).map_err(|e| CoreError::io(path, e))?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| CoreError::io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(too_big(flag, path, format!("more than {limit}"), limit));
    }
    Ok(bytes)
}

/// The text of the regular file `path` (UTF-8), at most `limit` bytes; see [`read`].
pub fn read_to_string(flag: &str, path: &Path, limit: u64) -> Result<String> {
    let bytes = read(flag, path, limit)?;
    String::from_utf8(bytes).map_err(|e| {
        CoreError::format(
            path,
            format!(
                "{flag}: not UTF-8 text (invalid byte at offset {}); check that this is the \
                 right file",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_and_folders_are_refused_and_sizes_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let e = read("--model", Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert!(
            e.to_string().contains("a device, not a regular file"),
            "{e}"
        );
        let e = read("--metrics", dir.path(), 10).unwrap_err();
        assert!(
            e.to_string().contains("a folder, not a regular file"),
            "{e}"
        );
        let fifo = dir.path().join("fifo");
        let ok = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            let e = read("--subsets", &fifo, 10).unwrap_err();
            assert!(e.to_string().contains("a FIFO"), "{e}");
        }
        #[cfg(unix)]
        {
            let looped = dir.path().join("loop.onnx");
            std::os::unix::fs::symlink("loop.onnx", &looped).unwrap();
            let e = read("--model", &looped, 10).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!(
                    "{}: --model: this is a symbolic link that never reaches a file (a loop",
                    looped.display()
                )),
                "{e}"
            );
        }
        let file = dir.path().join("f.yaml");
        std::fs::write(&file, b"0123456789").unwrap();
        assert_eq!(read("--x", &file, 10).unwrap(), b"0123456789");
        let e = read("--x", &file, 9).unwrap_err();
        assert!(e.to_string().contains("more than the 9"), "{e}");
        std::fs::write(&file, [0xffu8, 0]).unwrap();
        assert!(read_to_string("--x", &file, 10).is_err());
    }
}
