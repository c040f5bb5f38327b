//! Shared vocabulary of the distill stages: data sets and their transforms, the soft-target store,
//! tempered softmax and the ensemble's soft targets, deterministic randomness, atomic output files
//! and the error type every stage maps to an exit code.

pub mod atomic;
pub mod bias;
pub mod data;
pub mod error;
pub mod interrupt;
pub mod math;
pub mod onnx_proto;
pub mod parquet_guard;
pub mod rng;
pub mod store;
pub mod topk;

pub use error::{CoreError, Result};

/// The version of the distill tools, recorded in every file they write.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// SHA-256 of a file's bytes, as lowercase hex.
pub fn sha256_file(path: &std::path::Path) -> Result<String> {
    use sha2::Digest;
    use std::io::Read;
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
