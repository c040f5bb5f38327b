//! Compares two soft-target stores (files or folders of parts) made from the same data and teachers,
//! e.g. a CUDA and a CPU run: same rows, labels and teacher columns, and every stored value within a
//! tolerance.
//!
//!     cargo run -p distill-teach --example compare_stores -- A.parquet B.parquet [--tolerance 1e-4]
//!
//! Prints the largest absolute difference per teacher; exits 0 when all are within the tolerance,
//! 1 when they are not or the stores do not match row for row, 2 on bad arguments or unreadable stores.

use std::path::PathBuf;
use std::process::ExitCode;

use distill_store::read_store;

fn main() -> ExitCode {
    let mut paths: Vec<PathBuf> = Vec::new();
    let mut tolerance = 1e-4f32;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--tolerance" {
            match args.next().and_then(|v| v.parse::<f32>().ok()) {
                Some(t) if t >= 0.0 => tolerance = t,
                _ => {
                    eprintln!("error: --tolerance needs a non-negative number, e.g. 1e-4");
                    return ExitCode::from(2);
                }
            }
        } else {
            paths.push(PathBuf::from(arg));
        }
    }
    let [a_path, b_path] = paths.as_slice() else {
        eprintln!("usage: compare_stores A B [--tolerance 1e-4]");
        return ExitCode::from(2);
    };
    let (a, b) = match (read_store(a_path), read_store(b_path)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if a.meta.top_k != b.meta.top_k {
        // The values compared are what each store keeps; a top-k row expanded by the reader is not
        // the full row, so the two layouts cannot be compared value by value.
        eprintln!(
            "error: {} is a {} store but {} is a {} store; this compares stored values, so both \
             must have the same layout: make them with the same --top-k (or none)",
            a_path.display(),
            a.meta.layout_name(),
            b_path.display(),
            b.meta.layout_name()
        );
        return ExitCode::from(2);
    }
    let names = |s: &distill_store::SoftTargets| -> Vec<String> {
        s.meta.teachers.iter().map(|t| t.name.clone()).collect()
    };
    if a.index != b.index || a.labels != b.labels || names(&a) != names(&b) {
        eprintln!(
            "error: the stores do not hold the same rows and teachers ({} rows, teachers {:?} vs {} rows, teachers {:?})",
            a.len(),
            names(&a),
            b.len(),
            names(&b)
        );
        return ExitCode::from(1);
    }
    let mut worst = 0.0f32;
    for ((t, x), y) in a.meta.teachers.iter().zip(&a.logits).zip(&b.logits) {
        let diff = (x - y).mapv(f32::abs).fold(0.0f32, |m, &v| m.max(v));
        println!("{:<24} max |a - b| = {diff:.3e}", t.name);
        worst = worst.max(diff);
    }
    if worst <= tolerance {
        println!(
            "stores agree: {} rows, largest difference {worst:.3e} <= {tolerance:e}",
            a.len()
        );
        ExitCode::SUCCESS
    } else {
        eprintln!("error: largest difference {worst:.3e} exceeds the tolerance {tolerance:e}");
        ExitCode::from(1)
    }
}
