use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::logging::LogLevel;

use crate::error::{Result, RuntimeError};

/// The loaded ONNX Runtime: where it came from and its process-wide environment.
#[derive(Debug)]
pub struct Runtime {
    library: PathBuf,
    cuda_provider_library: bool,
    notes: Vec<String>,
    environment: Environment,
}

impl Runtime {
    /// The shared library that was loaded.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// Whether `libonnxruntime_providers_cuda.so` sits beside the loaded library (an `onnxruntime-gpu` install).
    pub fn has_cuda_provider_library(&self) -> bool {
        self.cuda_provider_library
    }

    /// Things worth telling the user about the set-up (for example CUDA libraries that could not be preloaded).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    pub(crate) fn environment(&self) -> &Environment {
        &self.environment
    }
}

/// The message of a failed first initialisation, kept so that later calls fail the same way.
#[derive(Debug, Clone)]
enum InitFailure {
    NotFound {
        searched: String,
        system_error: String,
    },
    Load {
        path: PathBuf,
        message: String,
    },
    Environment {
        message: String,
    },
}

impl From<InitFailure> for RuntimeError {
    fn from(failure: InitFailure) -> Self {
        match failure {
            InitFailure::NotFound {
                searched,
                system_error,
            } => RuntimeError::LibraryNotFound {
                searched,
                system_error,
            },
            InitFailure::Load { path, message } => RuntimeError::LibraryLoad { path, message },
            InitFailure::Environment { message } => RuntimeError::Environment { message },
        }
    }
}

static RUNTIME: OnceLock<std::result::Result<Runtime, InitFailure>> = OnceLock::new();

/// Finds and loads ONNX Runtime once per process and returns it; later calls return the same result.
///
/// The library is looked for, in this order:
/// 1. `ORT_DYLIB_PATH`, when set and not empty (a relative path with a folder in it is taken from the current
///    directory; a failure to load it is an error, not a reason to look further);
/// 2. the project's `.venv` (`.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so*`, as
///    installed by `make setup`), searched in the current directory and each of its parents, then beside the
///    running executable and its parents, then in the source checkout this crate was built from;
/// 3. the system's `libonnxruntime.so`, through the dynamic loader's usual search path.
///
/// ONNX Runtime's own log is limited to fatal messages: every error it reports also comes back
/// as a `Result`, which distill reports with the file and a hint, so its raw (ANSI-coloured) log
/// line would only repeat it. Set `ORT_LOG` (e.g. `ORT_LOG=warning`) to leave ONNX Runtime's
/// default log level in place.
///
/// With the `cuda` feature, when the library has its CUDA provider beside it and NVIDIA's pip packages are
/// installed in the same `site-packages` (`nvidia/*/lib`, as `onnxruntime-gpu[cuda,cudnn]` brings them), their
/// CUDA and cuDNN libraries are preloaded so that the CUDA provider finds them without `LD_LIBRARY_PATH`. This is
/// best effort: a library that fails to preload is reported in [`Runtime::notes`], and CUDA is then only usable if
/// the system provides it.
pub fn init() -> Result<&'static Runtime> {
    RUNTIME
        .get_or_init(load)
        .as_ref()
        .map_err(|failure| failure.clone().into())
}

fn load() -> std::result::Result<Runtime, InitFailure> {
    let (builder, library) = open_library()?;
    let mut notes = Vec::new();
    let cuda_provider_library = library
        .parent()
        .is_some_and(|dir| dir.join("libonnxruntime_providers_cuda.so").is_file());
    if cuda_provider_library {
        preload_cuda(&library, &mut notes);
    }
    let environment = builder
        .with_name("distill")
        .with_telemetry(false)
        .build()
        .map_err(|e| InitFailure::Environment {
            message: e.to_string(),
        })?;
    if std::env::var_os("ORT_LOG").is_none() {
        environment.set_log_level(LogLevel::Fatal);
    }
    Ok(Runtime {
        library,
        cuda_provider_library,
        notes,
        environment,
    })
}

fn open_library()
-> std::result::Result<(ort::environment::EnvironmentBuilder, PathBuf), InitFailure> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let mut path = PathBuf::from(path);
        if path.is_relative() && path.components().count() > 1 {
            path = std::path::absolute(&path).unwrap_or(path);
        }
        return ort::init_from(&path)
            .map(|builder| (builder, path.clone()))
            .map_err(|e| InitFailure::Load {
                path,
                message: format!("{e} (from ORT_DYLIB_PATH)"),
            });
    }
    let roots = search_roots();
    for root in &roots {
        if let Some(path) = venv_library(root) {
            return ort::init_from(&path)
                .map(|builder| (builder, path.clone()))
                .map_err(|e| InitFailure::Load {
                    path,
                    message: e.to_string(),
                });
        }
    }
    let system = PathBuf::from(format!(
        "{}onnxruntime{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    ort::init_from(&system)
        .map(|builder| (builder, system))
        .map_err(|e| InitFailure::NotFound {
            searched: describe_roots(&roots),
            system_error: e.to_string(),
        })
}

/// Directories whose `.venv` may hold the library, nearest first, without duplicates.
fn search_roots() -> Vec<PathBuf> {
    let mut starts = Vec::new();
    if let Ok(dir) = std::env::current_dir() {
        starts.push(dir);
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        starts.push(dir);
    }
    starts.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."));
    let mut roots: Vec<PathBuf> = Vec::new();
    for start in starts {
        let start = start.canonicalize().unwrap_or(start);
        for dir in start.ancestors() {
            if !roots.iter().any(|r| r == dir) {
                roots.push(dir.to_path_buf());
            }
        }
    }
    roots
}

fn describe_roots(roots: &[PathBuf]) -> String {
    let shown: Vec<String> = roots
        .iter()
        .map(|r| format!("{}/.venv", r.display()))
        .collect();
    shown.join(", ")
}

/// The ONNX Runtime library inside `root/.venv`, if there is one.
fn venv_library(root: &Path) -> Option<PathBuf> {
    let lib = root.join(".venv").join("lib");
    let mut pythons: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("python3"))
        .map(|entry| entry.path())
        .collect();
    pythons.sort();
    pythons.into_iter().rev().find_map(|python| {
        let capi = python.join("site-packages/onnxruntime/capi");
        let mut candidates: Vec<PathBuf> = std::fs::read_dir(&capi)
            .ok()?
            .filter_map(|entry| entry.ok())
            .filter(|entry| {
                entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with("libonnxruntime.so")
            })
            .map(|entry| entry.path())
            .collect();
        // The longest name is the fully versioned file (`libonnxruntime.so.1.31.1`), which always exists.
        candidates.sort_by_key(|p| p.as_os_str().len());
        candidates.pop()
    })
}

#[cfg(feature = "cuda")]
fn preload_cuda(library: &Path, notes: &mut Vec<String>) {
    // library = site-packages/onnxruntime/capi/libonnxruntime.so.*
    let Some(site_packages) = library
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
    else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(site_packages.join("nvidia")) else {
        return;
    };
    let mut lib_dirs: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path().join("lib"))
        .filter(|dir| dir.is_dir())
        .collect();
    lib_dirs.sort();
    let wanted = ort::ep::cuda::CUDA_DYLIBS
        .iter()
        .chain(ort::ep::cuda::CUDNN_DYLIBS.iter());
    for name in wanted {
        let Some(path) = lib_dirs
            .iter()
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
        else {
            continue;
        };
        if let Err(e) = ort::util::preload_dylib(path.as_path()) {
            notes.push(format!("could not preload {}: {e}", path.display()));
        }
    }
}

#[cfg(not(feature = "cuda"))]
fn preload_cuda(_library: &Path, _notes: &mut Vec<String>) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_library_in_a_venv() {
        let root = tempfile::tempdir().unwrap();
        let capi = root
            .path()
            .join(".venv/lib/python3.11/site-packages/onnxruntime/capi");
        std::fs::create_dir_all(&capi).unwrap();
        assert_eq!(venv_library(root.path()), None);
        std::fs::write(capi.join("libonnxruntime.so.1.31.1"), b"").unwrap();
        std::fs::write(capi.join("libonnxruntime_providers_shared.so"), b"").unwrap();
        assert_eq!(
            venv_library(root.path()),
            Some(capi.join("libonnxruntime.so.1.31.1"))
        );
    }

    #[test]
    fn search_roots_start_at_the_current_directory() {
        let roots = search_roots();
        let cwd = std::env::current_dir().unwrap().canonicalize().unwrap();
        assert_eq!(roots.first(), Some(&cwd));
        assert!(roots.iter().any(|r| r == Path::new("/")));
    }
}
