//! One trainable model for every training stage: an [`Mlp`] (`--hidden`) or a sequential [`Net`]
//! (`--arch`). The trainers (epochs, checkpoints, bias adjustment, export) see only [`Model`], so
//! both kinds train, resume, stop early and save the same way; each call does exactly what the
//! wrapped network's own method does, so an MLP trains bit for bit as it does on its own.

use crate::onnx::{self, net::ARCH_KEY};
use crate::{
    DistillLoss, LossParts, Mlp, Net, NetWorkspace, Optimizer, Result, Workspace, layer::Layer,
};
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2};
use std::collections::HashMap;
use std::path::Path;

/// A network a training stage trains.
#[derive(Clone, Debug, PartialEq)]
pub enum Model {
    Mlp(Mlp),
    Net(Net),
}

/// The buffers a [`Model`]'s training steps reuse; made for the model's kind on first use.
#[derive(Default)]
pub enum ModelWorkspace {
    #[default]
    Empty,
    Mlp(Workspace),
    Net(NetWorkspace),
}

impl ModelWorkspace {
    /// The logits of the last training step (empty before the first).
    pub fn logits(&self) -> ArrayView2<'_, f32> {
        match self {
            ModelWorkspace::Mlp(ws) => ws.logits(),
            ModelWorkspace::Net(ws) => ws.logits(),
            ModelWorkspace::Empty => ArrayView2::from_shape((0, 0), &[]).expect("empty"),
        }
    }
}

impl From<Mlp> for Model {
    fn from(m: Mlp) -> Self {
        Model::Mlp(m)
    }
}

impl From<Net> for Model {
    fn from(n: Net) -> Self {
        Model::Net(n)
    }
}

impl Model {
    /// `"mlp"` or `"cnn"` when the net has a convolution, else `"net"`: for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Model::Mlp(_) => "mlp",
            Model::Net(n) if n.layers.iter().any(|l| matches!(l, Layer::Conv(_))) => "cnn",
            Model::Net(_) => "net",
        }
    }

    /// Values per input row.
    pub fn inputs(&self) -> usize {
        match self {
            Model::Mlp(m) => m.inputs(),
            Model::Net(n) => n.inputs(),
        }
    }

    /// The width of the output: the last layer's, or the folded head's.
    pub fn classes(&self) -> usize {
        match self {
            Model::Mlp(m) => m.classes(),
            Model::Net(n) => n.classes(),
        }
    }

    /// Trained values (weights and biases; batch norm's scale and shift).
    pub fn parameters(&self) -> usize {
        match self {
            Model::Mlp(m) => m.parameters(),
            Model::Net(n) => n.parameters(),
        }
    }

    /// The `(rows, cols)` of each parameter layer's weight matrix, for [`Optimizer::new`].
    pub fn shapes(&self) -> Vec<(usize, usize)> {
        match self {
            Model::Mlp(m) => m.shapes(),
            Model::Net(n) => n.shapes(),
        }
    }

    /// The folded head, when the model is a specialist.
    pub fn fold(&self) -> Option<&crate::Fold> {
        match self {
            Model::Mlp(m) => m.fold.as_ref(),
            Model::Net(n) => n.fold.as_ref(),
        }
    }

    /// Evaluation-mode logits for `x`.
    pub fn forward(&self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        match self {
            Model::Mlp(m) => m.forward(x),
            Model::Net(n) => n.forward(x),
        }
    }

    /// One optimisation step ([`Mlp::train_step`] or [`Net::train_step`]); `ws` is remade when it
    /// holds the other kind's buffers.
    #[allow(clippy::too_many_arguments)]
    pub fn train_step(
        &mut self,
        x: ArrayView2<f32>,
        soft: Option<ArrayView2<f32>>,
        labels: Option<&[u32]>,
        loss: &DistillLoss,
        opt: &mut Optimizer,
        epoch: usize,
        seed: u64,
        ws: &mut ModelWorkspace,
    ) -> Result<LossParts> {
        match self {
            Model::Mlp(m) => {
                if !matches!(ws, ModelWorkspace::Mlp(_)) {
                    *ws = ModelWorkspace::Mlp(Workspace::default());
                }
                let ModelWorkspace::Mlp(w) = ws else {
                    unreachable!("set above")
                };
                m.train_step(x, soft, labels, loss, opt, epoch, seed, w)
            }
            Model::Net(n) => {
                if !matches!(ws, ModelWorkspace::Net(_)) {
                    *ws = ModelWorkspace::Net(NetWorkspace::default());
                }
                let ModelWorkspace::Net(w) = ws else {
                    unreachable!("set above")
                };
                n.train_step(x, soft, labels, loss, opt, epoch, seed, w)
            }
        }
    }

    /// Adds `delta` to output `class`'s logit through the last layer's bias (see
    /// [`Mlp::adjust_bias`]).
    pub fn adjust_bias(&mut self, class: usize, delta: f32) -> Result<()> {
        match self {
            Model::Mlp(m) => m.adjust_bias(class, delta),
            Model::Net(n) => n.adjust_bias(class, delta),
        }
    }

    /// The model with a folded head keeping `keep` of its classes (see [`crate::fold`]).
    pub fn folded(self, keep: &[u32]) -> Result<Self> {
        Ok(match self {
            Model::Mlp(m) => Model::Mlp(m.folded(keep)?),
            Model::Net(n) => Model::Net(n.folded(keep)?),
        })
    }

    /// Each parameter layer's weight matrix and bias, in layer order and of [`Model::shapes`]
    /// (batch norm's scale as a `[1, C]` matrix): what the optimiser updates and a checkpoint
    /// saves.
    pub fn params_mut(&mut self) -> Vec<(ArrayViewMut2<'_, f32>, &mut Array1<f32>)> {
        match self {
            Model::Mlp(m) => m
                .layers
                .iter_mut()
                .map(|l| (l.w.view_mut(), &mut l.b))
                .collect(),
            Model::Net(n) => n.layers.iter_mut().filter_map(Layer::params_mut).collect(),
        }
    }

    /// As [`Model::params_mut`], read only.
    pub fn params(&self) -> Vec<(ArrayView2<'_, f32>, &Array1<f32>)> {
        match self {
            Model::Mlp(m) => m.layers.iter().map(|l| (l.w.view(), &l.b)).collect(),
            Model::Net(n) => n.layers.iter().filter_map(Layer::params).collect(),
        }
    }

    /// State that is not trained by the optimiser but changes in training: each batch norm's
    /// running mean and variance, in layer order (none for an MLP). A checkpoint saves them
    /// after the parameters.
    pub fn buffers_mut(&mut self) -> Vec<&mut Array1<f32>> {
        match self {
            Model::Mlp(_) => Vec::new(),
            Model::Net(n) => n
                .layers
                .iter_mut()
                .filter_map(|l| match l {
                    Layer::BatchNorm(bn) => Some([&mut bn.running_mean, &mut bn.running_var]),
                    _ => None,
                })
                .flatten()
                .collect(),
        }
    }

    /// As [`Model::buffers_mut`], read only.
    pub fn buffers(&self) -> Vec<&Array1<f32>> {
        match self {
            Model::Mlp(_) => Vec::new(),
            Model::Net(n) => n
                .layers
                .iter()
                .filter_map(|l| match l {
                    Layer::BatchNorm(bn) => Some([&bn.running_mean, &bn.running_var]),
                    _ => None,
                })
                .flatten()
                .collect(),
        }
    }

    /// Saves the model as ONNX at `path`, atomically, with `metadata` and `preprocess` as its
    /// first nodes ([`onnx::save_preprocessed`] or [`onnx::save_net`], which adds the architecture
    /// and input shape): the file takes raw rows, the model preprocessed ones.
    pub fn save(
        &self,
        path: &Path,
        metadata: &[(String, String)],
        preprocess: Option<onnx::Preprocess>,
    ) -> Result<()> {
        match self {
            Model::Mlp(m) => onnx::save_preprocessed(m, path, metadata, preprocess),
            Model::Net(n) => onnx::save_net(n, path, metadata, preprocess),
        }
    }

    /// Loads a model saved by [`Model::save`]: a net when the file's metadata records an
    /// architecture ([`ARCH_KEY`]), else an MLP ([`onnx::load_preprocessed`]). Returns the
    /// metadata too; the file's preprocessing, if any, is there under
    /// [`onnx::net::PREPROCESS_KEY`], and the model takes rows after it.
    pub fn load(path: &Path) -> Result<(Model, HashMap<String, String>)> {
        if onnx::metadata(path)?.contains_key(ARCH_KEY) {
            let l = onnx::load_net(path)?;
            Ok((Model::Net(l.net), l.metadata))
        } else {
            let l = onnx::load_preprocessed(path)?;
            Ok((Model::Mlp(l.mlp), l.metadata))
        }
    }
}
