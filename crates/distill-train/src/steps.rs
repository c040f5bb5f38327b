//! The optimiser step every trainer shares (distill-train's students and teachers,
//! distill-specialists' specialists): gather a batch's rows, draw the step's seed, jitter and flip
//! its images, take the step and refuse a loss that is no longer finite.
//!
//! The seeds are a function of the run's seed, the epoch and the batch only, so a resumed or
//! concurrent run draws the same dropout masks and shifts as an uninterrupted one.

use crate::{Regularisation, Result, TrainError};
use distill_core::rng::Rng;
use distill_data::{ImageShape, Preprocess};
use distill_nn::mlp::gather_rows;
use distill_nn::{DistillLoss, LossParts, Model, ModelWorkspace, Optimizer};
use ndarray::{Array2, ArrayView2};

/// The seed of batch `batch` of epoch `epoch` in a run seeded with `seed`: it draws the batch's
/// dropout masks, image shifts and flips.
pub fn step_seed(seed: u64, epoch: usize, batch: usize) -> u64 {
    Rng::derive(seed, ((epoch as u64) << 32) | batch as u64).next_u64()
}

/// What one run trains on, and the buffers its batches are gathered into.
pub struct BatchTrainer<'a> {
    features: ArrayView2<'a, f32>,
    /// The rows' image shape when they are images (needed by `jitter`).
    image: Option<ImageShape>,
    /// Random translation of each image by up to this many pixels (0: off).
    jitter: usize,
    /// What a raw zero pixel is in the rows, per channel (or one value): what jitter shifts in.
    blank: Vec<f32>,
    /// Mirror each image left to right with probability one half.
    flip: bool,
    /// Soft targets, one row per row of `features`.
    soft: Option<ArrayView2<'a, f32>>,
    /// Hard labels, one per row of `features`.
    labels: Option<&'a [u32]>,
    seed: u64,
    ws: ModelWorkspace,
    x: Array2<f32>,
    s: Array2<f32>,
    y: Vec<u32>,
}

impl<'a> BatchTrainer<'a> {
    /// A trainer on `features` (with `soft` targets and/or `labels`), seeded with `seed`.
    pub fn new(
        features: ArrayView2<'a, f32>,
        soft: Option<ArrayView2<'a, f32>>,
        labels: Option<&'a [u32]>,
        seed: u64,
    ) -> Self {
        BatchTrainer {
            features,
            image: None,
            jitter: 0,
            blank: vec![0.0],
            flip: false,
            soft,
            labels,
            seed,
            ws: ModelWorkspace::default(),
            x: Array2::zeros((0, 0)),
            s: Array2::zeros((0, 0)),
            y: Vec::new(),
        }
    }

    /// Augments the images of each batch as `regularisation` says (rows of shape `image`; nothing
    /// when the rows are not images): shifts each by up to `jitter` pixels, filling with what a raw
    /// zero is after `normalize` (the rows' preprocessing, if any), then mirrors it left to right
    /// with probability one half when `flip` is on. Each draws from its own stream of the step's
    /// seed. Fails when `normalize` does not fit the images' channels.
    pub fn with_augmentation(
        mut self,
        image: Option<ImageShape>,
        regularisation: &Regularisation,
        normalize: Option<&Preprocess>,
    ) -> Result<Self> {
        self.image = image;
        self.jitter = regularisation.jitter;
        self.flip = regularisation.flip;
        if let (Some(p), Some(shape)) = (normalize, image) {
            let mut blank = Array2::zeros((1, shape.channels));
            p.apply(
                &mut blank.view_mut(),
                Some(ImageShape::new(shape.channels, 1, 1)),
            )?;
            self.blank = blank.into_raw_vec_and_offset().0;
        }
        Ok(self)
    }

    /// One optimiser step of `model` on the rows `rows`, batch `batch` of epoch `epoch` (0-based).
    /// A loss that is not finite is an error naming the epoch (1-based) and the batch.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &mut self,
        model: &mut Model,
        loss: &DistillLoss,
        opt: &mut Optimizer,
        epoch: usize,
        batch: usize,
        rows: &[usize],
    ) -> Result<LossParts> {
        let m = rows.len();
        if self.x.nrows() != m {
            self.x = Array2::zeros((m, self.features.ncols()));
            self.s = Array2::zeros((m, self.soft.map_or(0, |s| s.ncols())));
        }
        gather_rows(self.features, rows, self.x.view_mut());
        let seed = step_seed(self.seed, epoch, batch);
        if let (Some(shape), true) = (self.image, self.jitter > 0) {
            let mut rng = Rng::derive(seed, 0x717);
            let x = &mut self.x.view_mut();
            distill_data::jitter_filled(x, shape, self.jitter, &self.blank, &mut rng);
        }
        if let (Some(shape), true) = (self.image, self.flip) {
            let mut rng = Rng::derive(seed, 0xF11B);
            distill_data::flip(&mut self.x.view_mut(), shape, &mut rng);
        }
        if let Some(p) = self.soft {
            gather_rows(p, rows, self.s.view_mut());
        }
        if let Some(l) = self.labels {
            self.y.clear();
            self.y.extend(rows.iter().map(|&r| l[r]));
        }
        let parts = model.train_step(
            self.x.view(),
            self.soft.map(|_| self.s.view()),
            self.labels.map(|_| self.y.as_slice()),
            loss,
            opt,
            epoch,
            seed,
            &mut self.ws,
        )?;
        if !parts.total().is_finite() {
            return Err(TrainError::NonFiniteLoss {
                loss: parts.total(),
                epoch: epoch + 1,
                batch,
            });
        }
        Ok(parts)
    }

    /// Whether the rows have hard labels (and [`BatchTrainer::last_errors`] counts errors).
    pub fn has_labels(&self) -> bool {
        self.labels.is_some()
    }

    /// Errors of the last step's logits against its labels (0 without labels).
    pub fn last_errors(&self) -> usize {
        match self.labels {
            Some(_) => distill_core::math::error_count(self.ws.logits(), &self.y),
            None => 0,
        }
    }
}
