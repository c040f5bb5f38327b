use std::fmt;
use std::str::FromStr;

use ort::ep::ExecutionProviderDispatch;

use crate::error::{Result, RuntimeError};
use crate::library::Runtime;

/// Which ONNX Runtime execution provider runs a model. Parsed from and shown as `cpu`, `cuda` or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Provider {
    /// ONNX Runtime's CPU provider.
    #[default]
    Cpu,
    /// The CUDA provider; loading a model fails with [`RuntimeError::CudaUnavailable`] when CUDA cannot be used.
    Cuda,
    /// CUDA when it can be used, otherwise the CPU, with a note saying so.
    Auto,
}

impl Provider {
    /// The accepted spellings, for help texts.
    pub const VARIANTS: [&'static str; 3] = ["cpu", "cuda", "auto"];
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::Auto => "auto",
        })
    }
}

/// Serialized as it is shown (`cpu`, `cuda`, `auto`), e.g. in `metrics.json` and the store's
/// report.
impl serde::Serialize for Provider {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl FromStr for Provider {
    type Err = RuntimeError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda),
            "auto" => Ok(Self::Auto),
            _ => Err(RuntimeError::UnknownProvider {
                given: s.to_string(),
            }),
        }
    }
}

/// The CUDA provider registration, or why there cannot be one.
pub(crate) fn cuda_dispatch(
    runtime: &Runtime,
) -> std::result::Result<ExecutionProviderDispatch, String> {
    cuda_dispatch_impl(runtime)
}

#[cfg(feature = "cuda")]
fn cuda_dispatch_impl(runtime: &Runtime) -> std::result::Result<ExecutionProviderDispatch, String> {
    use ort::ep::ExecutionProvider;

    match ort::ep::CUDA::is_available() {
        Ok(true) => Ok(ort::ep::CUDA::default().build().error_on_failure()),
        Ok(false) => Err(format!(
            "the ONNX Runtime library at {} was built without CUDA (it is the CPU-only `onnxruntime` package)",
            runtime.library().display()
        )),
        Err(e) => Err(format!("cannot list ONNX Runtime's providers: {e}")),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_dispatch_impl(
    _runtime: &Runtime,
) -> std::result::Result<ExecutionProviderDispatch, String> {
    Err("this build of distill was compiled without its `cuda` feature (rebuild with `--features cuda`)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_every_variant() {
        for name in Provider::VARIANTS {
            let provider: Provider = name.parse().unwrap();
            assert_eq!(provider.to_string(), name);
        }
        assert_eq!(" CUDA ".parse::<Provider>().unwrap(), Provider::Cuda);
        let err = "tpu".parse::<Provider>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown execution provider `tpu`; expected cpu, cuda or auto"
        );
        assert!(err.is_user_error());
    }
}
