//! Resumable training state: the network, the optimiser's state and where in which epoch training
//! stopped. A JSON header followed by the raw little-endian f32 arrays, written atomically: each
//! parameter layer's weights and biases with the optimiser's moments, then the model's buffers
//! (batch norm's running statistics; none for an MLP).

use crate::record::EpochRecord;
use crate::{Result, TrainError};
use distill_nn::optim::LayerState;
use distill_nn::{Model, Optimizer};
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};
use std::path::Path;

const MAGIC: &[u8] = b"DISTILL-CKPT-1\n";

/// Where training stands.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Progress {
    /// Fingerprint of the settings that must not change on resume.
    pub fingerprint: String,
    /// Epoch in progress (0-based) and the next batch of it.
    pub epoch: usize,
    pub batch: usize,
    pub optimizer_steps: u64,
    /// Sums over the batches of the epoch in progress.
    pub partial: EpochSums,
    pub history: Vec<EpochRecord>,
    pub best_val_errors: Option<usize>,
}

/// Running sums over an epoch's batches.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct EpochSums {
    pub rows: usize,
    /// Sums over rows of the unweighted soft (`T² * KL`) and hard (cross-entropy) terms.
    pub soft: f64,
    pub hard: f64,
    pub errors: usize,
    pub seconds: f64,
}

#[derive(Serialize, Deserialize)]
struct Header {
    progress: Progress,
    shapes: Vec<(usize, usize)>,
    second_moment: bool,
}

fn arrays<'a>(model: &'a Model, opt: &'a Optimizer) -> Vec<&'a [f32]> {
    let mut out = Vec::new();
    for ((w, b), s) in model.params().into_iter().zip(&opt.state) {
        for a in [
            w.to_slice(),
            b.as_slice(),
            s.m_w.as_slice(),
            s.m_b.as_slice(),
            s.v_w.as_slice(),
            s.v_b.as_slice(),
        ]
        .into_iter()
        .flatten()
        {
            out.push(a);
        }
    }
    out.extend(model.buffers().into_iter().filter_map(|b| b.as_slice()));
    out
}

/// Saves the state atomically.
pub fn save(path: &Path, model: &Model, opt: &Optimizer, progress: &Progress) -> Result<()> {
    let header = Header {
        progress: progress.clone(),
        shapes: model.shapes(),
        second_moment: opt.state.first().is_some_and(|s| !s.v_w.is_empty()),
    };
    let json = serde_json::to_vec(&header).map_err(|e| TrainError::invalid(e.to_string()))?;
    distill_core::atomic::write_with(path, |w| {
        w.write_all(MAGIC)?;
        w.write_all(&(json.len() as u64).to_le_bytes())?;
        w.write_all(&json)?;
        for a in arrays(model, opt) {
            let bytes: Vec<u8> = a.iter().flat_map(|v| v.to_le_bytes()).collect();
            w.write_all(&bytes)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// The most a checkpoint of `model` may hold: its header (at most
/// [`distill_core::input::MAX_TEXT_BYTES`]), for each layer the weights, the biases and as many
/// values twice over for the optimiser's moments, and the buffers.
fn size_limit(model: &Model) -> u64 {
    let buffers: u64 = model.buffers().iter().map(|b| b.len() as u64).sum();
    let values: u64 = model
        .shapes()
        .iter()
        .map(|&(i, o)| 3 * (i as u64 + 1) * o as u64)
        .sum::<u64>()
        + buffers;
    (MAGIC.len() as u64 + 8)
        .saturating_add(distill_core::input::MAX_TEXT_BYTES)
        .saturating_add(values.saturating_mul(4))
}

/// Restores the state into `model` and `opt` (already built from the same configuration). Only a
/// regular file no larger than such a network's checkpoint can be is read.
pub fn load(path: &Path, model: &mut Model, opt: &mut Optimizer) -> Result<Progress> {
    let err = |message: String| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message,
    };
    let bytes = distill_core::input::read("--resume", path, size_limit(model))?;
    let rest = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| err("not a distill checkpoint".into()))?;
    if rest.len() < 8 {
        return Err(err("truncated checkpoint".into()));
    }
    let len =
        u64::from_le_bytes(rest[..8].try_into().map_err(|_| err("bad header".into()))?) as usize;
    let body = &rest[8..];
    if body.len() < len {
        return Err(err("truncated checkpoint header".into()));
    }
    let header: Header =
        serde_json::from_slice(&body[..len]).map_err(|e| err(format!("bad header: {e}")))?;
    if header.shapes != model.shapes() {
        return Err(err(format!(
            "the checkpoint holds a network of layer shapes {:?}, but the settings give {:?}",
            header.shapes,
            model.shapes()
        )));
    }
    let second = opt.state.first().is_some_and(|s| !s.v_w.is_empty());
    if header.second_moment != second {
        return Err(err("the checkpoint was made with another optimiser".into()));
    }
    let mut values = body[len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    let mut take2 = |r: usize, c: usize| -> Result<Array2<f32>> {
        let v: Vec<f32> = values.by_ref().take(r * c).collect();
        if v.len() != r * c {
            return Err(err("truncated checkpoint data".into()));
        }
        Array2::from_shape_vec((r, c), v).map_err(|e| err(e.to_string()))
    };
    for ((mut w, b), state) in model.params_mut().into_iter().zip(opt.state.iter_mut()) {
        let (i, o) = w.dim();
        w.assign(&take2(i, o)?);
        *b = Array1::from(take2(1, o)?.into_raw_vec_and_offset().0);
        let (vi, vo) = if second { (i, o) } else { (0, 0) };
        *state = LayerState {
            m_w: take2(i, o)?,
            m_b: Array1::from(take2(1, o)?.into_raw_vec_and_offset().0),
            v_w: take2(vi, vo)?,
            v_b: Array1::from(take2(1, vo)?.into_raw_vec_and_offset().0),
        };
    }
    for b in model.buffers_mut() {
        let n = b.len();
        *b = Array1::from(take2(1, n)?.into_raw_vec_and_offset().0);
    }
    opt.step = header.progress.optimizer_steps;
    Ok(header.progress)
}
