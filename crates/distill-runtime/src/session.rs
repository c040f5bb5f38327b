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

/// The error for a model ONNX Runtime refused, naming a missing external data file when that is the cause.
fn load_error(path: &Path, error: &ort::Error) -> RuntimeError {
    if let Ok(bytes) = std::fs::read(path) {
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
