//! Opening an ONNX Runtime session for a model file: the session options (threads, log level), the
//! execution provider with its fallback to CPU, and load errors that say what to change.

use std::path::Path;

use ort::session::Session;
use ort::session::builder::SessionBuilder;

use crate::error::{Result, RuntimeError};
use crate::external::external_data_locations;
use crate::library::Runtime;
use crate::provider::{Provider, cuda_dispatch};

fn session_builder(runtime: &Runtime, threads: usize) -> Result<SessionBuilder> {
    let environment = |e: ort::Error| RuntimeError::Environment {
        message: e.to_string(),
    };
    let builder = Session::builder(runtime.environment()).map_err(environment)?;
    if threads == 0 {
        return Ok(builder);
    }
    builder
        .with_intra_threads(threads)
        .map_err(|e| environment(e.into()))
}

fn commit(mut builder: SessionBuilder, path: &Path) -> Result<Session> {
    builder
        .commit_from_file(path)
        .map_err(|e| load_error(path, &e))
}

/// Refuses, before ONNX Runtime reads anything, a model that is not a regular file of at most
/// [`distill_core::input::MAX_MODEL_BYTES`], and external-data files that are missing or not
/// regular files (a device such as `/dev/zero` or a FIFO would never end, or block).
pub(crate) fn check_model_files(path: &Path) -> Result<()> {
    use distill_core::input::{MAX_MODEL_BYTES, kind_of};
    let refuse = |message: String| RuntimeError::ModelLoad {
        path: path.to_path_buf(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| refuse(format!("cannot read it: {e}")))?;
    if !meta.is_file() {
        return Err(refuse(format!(
            "this is {}, not a regular file; give the path of an .onnx file",
            kind_of(&meta)
        )));
    }
    if meta.len() > MAX_MODEL_BYTES {
        return Err(refuse(format!(
            "the file holds {} bytes, more than the {MAX_MODEL_BYTES} an ONNX model file can \
             (protobuf's limit); keep large weights in external data files",
            meta.len()
        )));
    }
    let bytes = distill_core::input::read("--model", path, MAX_MODEL_BYTES)
        .map_err(|e| refuse(e.to_string()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    for location in external_data_locations(&bytes) {
        let data = dir.join(&location);
        match std::fs::metadata(&data) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RuntimeError::ExternalDataMissing {
                    path: path.to_path_buf(),
                    data_path: data,
                });
            }
            Err(e) => {
                return Err(refuse(format!(
                    "cannot read its external data file {} ({e})",
                    data.display()
                )));
            }
            Ok(m) if !m.is_file() => {
                return Err(refuse(format!(
                    "its external data file {} is {}, not a regular file; copy the weights file \
                     next to the model",
                    data.display(),
                    kind_of(&m)
                )));
            }
            Ok(_) => {}
        }
    }
    Ok(())
}

/// The error for a model ONNX Runtime refused, naming a missing external data file when that is the cause.
fn load_error(path: &Path, error: &ort::Error) -> RuntimeError {
    if let Ok(bytes) =
        distill_core::input::read("--model", path, distill_core::input::MAX_MODEL_BYTES)
    {
        let dir = path.parent().unwrap_or(Path::new("."));
        if let Some(missing) = external_data_locations(&bytes)
            .into_iter()
            .map(|location| dir.join(location))
            .find(|data| !data.is_file())
        {
            return RuntimeError::ExternalDataMissing {
                path: path.to_path_buf(),
                data_path: missing,
            };
        }
    }
    let message = error.message().trim().to_string();
    let message = if error.code() == ort::ErrorCode::InvalidProtobuf {
        format!(
            "{message} (the file is not a complete ONNX model: it may be corrupt or truncated; export it again)"
        )
    } else {
        message
    };
    RuntimeError::ModelLoad {
        path: path.to_path_buf(),
        message,
    }
}

/// Opens the session on the requested provider; returns it with the provider actually used.
pub(crate) fn open_session(
    runtime: &Runtime,
    path: &Path,
    provider: Provider,
    threads: usize,
    notes: &mut Vec<String>,
) -> Result<(Session, Provider)> {
    let on_cpu = || commit(session_builder(runtime, threads)?, path);
    if provider == Provider::Cpu {
        return Ok((on_cpu()?, Provider::Cpu));
    }
    let cuda = cuda_dispatch(runtime).and_then(|ep| {
        session_builder(runtime, threads)
            .map_err(|e| e.to_string())?
            .with_execution_providers([ep])
            .map_err(|e| e.to_string())
    });
    let mut reason = match cuda {
        Ok(builder) => match commit(builder, path) {
            Ok(session) => return Ok((session, Provider::Cuda)),
            Err(e) => e.to_string(),
        },
        Err(reason) => reason,
    };
    for note in runtime.notes() {
        reason.push_str("; ");
        reason.push_str(note);
    }
    // A model that also fails on the CPU is the model's problem, not CUDA's: report that instead.
    let session = on_cpu()?;
    if provider == Provider::Cuda {
        return Err(RuntimeError::CudaUnavailable { reason });
    }
    notes.push(format!(
        "CUDA is not available ({reason}); running {} on the CPU",
        path.display()
    ));
    Ok((session, Provider::Cpu))
}
