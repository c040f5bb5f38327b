//! The `.metrics.csv` training records written by distill-train.

use super::{bad, read_text};
use crate::ReportError;
use std::path::{Path, PathBuf};

/// One epoch of a `.metrics.csv` training record.
#[derive(Clone, Debug, PartialEq)]
pub struct Epoch {
    pub epoch: usize,
    pub loss: Option<f64>,
    pub train_error: Option<f64>,
    pub val_error: Option<f64>,
    pub val_loss: Option<f64>,
    pub seconds: Option<f64>,
}

/// A model's training record.
#[derive(Clone, Debug)]
pub struct TrainLog {
    /// The model's name: the file name without `.metrics.csv`.
    pub name: String,
    pub path: PathBuf,
    pub epochs: Vec<Epoch>,
}

/// The columns a training record must have.
const REQUIRED_COLUMNS: [&str; 3] = ["epoch", "loss", "train_error"];

/// Reads a `.metrics.csv` written by distill-train: a header naming the columns (in any order),
/// then one row per epoch; empty cells are missing values.
pub fn read_train_log(path: &Path) -> Result<TrainLog, ReportError> {
    let text = read_text(path)?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(bad(
            path,
            "the file is empty: expected a header `epoch,learning_rate,...,train_error,val_error,...` and one row per epoch; train the model again",
        ));
    };
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    for required in REQUIRED_COLUMNS {
        if !columns.contains(&required) {
            return Err(bad(
                path,
                format!(
                    "the header has no `{required}` column (found `{header}`): expected distill-train's training record"
                ),
            ));
        }
    }
    let at = |name: &str| columns.iter().position(|c| *c == name);
    let (epoch_at, loss_at, train_at) = (at("epoch"), at("loss"), at("train_error"));
    let (val_at, val_loss_at, seconds_at) = (at("val_error"), at("val_loss"), at("seconds"));
    let mut epochs = Vec::new();
    for (n, line) in lines {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != columns.len() {
            return Err(bad(
                path,
                format!(
                    "line {}: {} cells, expected {} (one per header column); the file is damaged: train the model again",
                    n + 1,
                    cells.len(),
                    columns.len()
                ),
            ));
        }
        let number = |i: Option<usize>| -> Result<Option<f64>, ReportError> {
            let Some(i) = i else { return Ok(None) };
            let cell = cells[i];
            if cell.is_empty() {
                return Ok(None);
            }
            match cell.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(Some(v)),
                _ => Err(bad(
                    path,
                    format!(
                        "line {}, column `{}`: `{cell}` is not a finite number; the file is damaged: train the model again",
                        n + 1,
                        columns[i]
                    ),
                )),
            }
        };
        for i in 0..cells.len() {
            number(Some(i))?;
        }
        let epoch = number(epoch_at)?
            .filter(|e| *e >= 0.0 && e.fract() == 0.0)
            .ok_or_else(|| {
                bad(
                    path,
                    format!(
                        "line {}, column `epoch`: expected a whole number of epochs",
                        n + 1
                    ),
                )
            })? as usize;
        epochs.push(Epoch {
            epoch,
            loss: number(loss_at)?,
            train_error: number(train_at)?,
            val_error: number(val_at)?,
            val_loss: number(val_loss_at)?,
            seconds: number(seconds_at)?,
        });
    }
    if epochs.is_empty() {
        return Err(bad(
            path,
            "a header but no epoch rows: the training stopped before its first epoch ended; train the model again",
        ));
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.strip_suffix(".metrics.csv").unwrap_or(n).to_string())
        .unwrap_or_else(|| path.display().to_string());
    Ok(TrainLog {
        name,
        path: path.to_path_buf(),
        epochs,
    })
}
