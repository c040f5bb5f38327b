//! Writes freshly initialised 784-1200-1200-10 MLPs (the paper's teacher shape), exported by the
//! engine, as `teacher-1.onnx` … `teacher-N.onnx` (seeds 1 … N) into a folder, as stand-in teachers
//! for timing runs such as `scripts/check-cuda.sh`.
//!
//!     cargo run -p distill-teach --example export_mlps -- DIR [N]   (N defaults to 3)

use std::path::PathBuf;
use std::process::ExitCode;

use distill_nn::{Mlp, MlpConfig};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(dir), count) = (args.next().map(PathBuf::from), args.next()) else {
        eprintln!("usage: export_mlps DIR [N]");
        return ExitCode::from(2);
    };
    let Some(count) = count.map_or(Some(3), |c| c.parse::<u64>().ok()) else {
        eprintln!("error: N must be a whole number");
        return ExitCode::from(2);
    };
    for seed in 1..=count {
        let config = MlpConfig {
            sizes: vec![784, 1200, 1200, 10],
            input_dropout: 0.0,
            hidden_dropout: 0.0,
            max_norm: None,
        };
        let path = dir.join(format!("teacher-{seed}.onnx"));
        let saved = Mlp::new(config, seed)
            .map_err(|e| e.to_string())
            .and_then(|m| distill_nn::onnx::save(&m, &path, &[]).map_err(|e| e.to_string()));
        if let Err(e) = saved {
            eprintln!("error: {}: {e}", path.display());
            return ExitCode::from(2);
        }
        println!("{}", path.display());
    }
    ExitCode::SUCCESS
}
