//! Shared vocabulary of the distill stages: data sets and their transforms, the soft-target store,
//! tempered softmax and the ensemble's soft targets, deterministic randomness, atomic output files
//! and the error type every stage maps to an exit code.

pub mod atomic;
pub mod bias;
pub mod error;
pub mod input;
pub mod interrupt;
pub mod math;
pub mod metrics;
pub mod names;
pub mod onnx_proto;
pub mod out;
pub mod rng;
pub mod stats;

pub use error::{CoreError, Result};

use serde::{Deserialize, Serialize};

/// Whether a model's output is logits or probabilities: what distill-runtime finds a model
/// outputs, and what a teacher's stored column came from (the one type for both).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// Unnormalised scores (log-probabilities count as logits: their softmax is the
    /// probabilities); stored as they are.
    Logits,
    /// Probabilities that sum to one per row; stored as `ln p` (`math::ZERO_PROB_LOGIT` for
    /// p = 0).
    Probabilities,
}

impl std::fmt::Display for OutputKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutputKind::Logits => "logits",
            OutputKind::Probabilities => "probabilities",
        })
    }
}

/// The most threads a stage may be asked to start (`--threads`, `--ort-threads`): far above any
/// machine's cores, and low enough that a typo (`--threads 100000`) is refused before any thread
/// is made.
pub const MAX_THREADS: usize = 1024;

/// The version of the distill tools, recorded in every file they write.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// SHA-256 of a file's bytes, as lowercase hex, read in blocks. Only a regular file is read (a
/// device such as `/dev/zero` or a FIFO would never end): anything else is an error.
pub fn sha256_file(path: &std::path::Path) -> Result<String> {
    use sha2::Digest;
    use std::io::Read;
    input::check_regular("", path)?;
    let mut file = std::fs::File::open(path).map_err(|e| CoreError::io(path, e))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|e| CoreError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// SHA-256 of `bytes`, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
