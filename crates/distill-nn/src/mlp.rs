//! A multilayer perceptron of ReLU hidden layers and a linear output layer, with its training step.

use crate::fold::{self, Fold};
use crate::gemm::{flops, sgemm, sgemm_serial};
use crate::linear::{Init, Linear};
use crate::loss::{DistillLoss, LossParts};
use crate::optim::{Optimizer, OptimizerConfig};
use crate::sparse::{self, SparseBatch};
use crate::{NnError, Result, dropout};
use distill_core::rng::Rng;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis, Zip};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Architecture and regularisation of a network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    /// Layer widths from input to output, e.g. `[784, 1200, 1200, 10]`.
    pub sizes: Vec<usize>,
    /// Dropout rate on the input during training.
    #[serde(default)]
    pub input_dropout: f32,
    /// Dropout rate on every hidden layer during training.
    #[serde(default)]
    pub hidden_dropout: f32,
    /// Bound on the length of each unit's incoming weight vector.
    #[serde(default)]
    pub max_norm: Option<f32>,
}

/// The most weights a network may hold: 2³¹ float32 values (8 GiB), before the optimiser's state
/// (as large again for SGD's momentum, twice for Adam's moments) and the gradients. A wider
/// network is refused by [`MlpConfig::validate`] before anything is allocated, rather than
/// aborting when an allocation fails.
pub const MAX_WEIGHTS: usize = 1 << 31;

impl MlpConfig {
    /// The network's weights and biases (`None` when the count overflows `usize`).
    pub fn weight_count(&self) -> Option<usize> {
        self.sizes.windows(2).try_fold(0usize, |total, w| {
            w[0].checked_add(1)?.checked_mul(w[1])?.checked_add(total)
        })
    }

    /// Checks the widths (at least two, all above zero, at most [`MAX_WEIGHTS`] weights in all),
    /// the dropout rates (in `[0, 1)`) and the max-norm bound (above 0).
    pub fn validate(&self) -> Result<()> {
        if self.sizes.len() < 2 || self.sizes.contains(&0) {
            return Err(NnError::Shape(format!(
                "a network needs an input and an output width, all above zero; got {:?}",
                self.sizes
            )));
        }
        if self.weight_count().is_none_or(|n| n > MAX_WEIGHTS) {
            return Err(NnError::Shape(format!(
                "a network of widths {:?} holds more than the {MAX_WEIGHTS} weights a network may \
                 hold; choose narrower layers",
                self.sizes
            )));
        }
        for (name, rate) in [
            ("input dropout", self.input_dropout),
            ("hidden dropout", self.hidden_dropout),
        ] {
            if !(0.0..1.0).contains(&rate) {
                return Err(NnError::Shape(format!("{name} {rate} must be in [0, 1)")));
            }
        }
        if let Some(c) = self.max_norm
            && c.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
        {
            return Err(NnError::Shape(format!("max-norm {c} must be above 0")));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    pub config: MlpConfig,
    pub layers: Vec<Linear>,
    /// A folded output head on the last layer (a specialist's), or `None`: the last layer's
    /// outputs are the logits.
    pub fold: Option<Fold>,
}

/// Buffers reused from one training step to the next.
pub struct Workspace {
    rows: usize,
    /// `acts[0]` is the (dropped-out) input, `acts[l]` the output of layer `l - 1`.
    acts: Vec<Array2<f32>>,
    /// `dz[l]`: gradient of the loss with respect to layer `l`'s pre-activation output.
    dz: Vec<Array2<f32>>,
    /// Weight gradients, only for optimisers that need them whole (Adam).
    grads: Vec<Array2<f32>>,
    /// The input batch in compressed form, for the first layer's sparse kernels.
    sparse: SparseBatch,
    /// When the first layer uses the sparse kernels.
    pub sparse_input: SparseInput,
    /// Whether the last step's first layer used them.
    sparse_used: bool,
    /// The folded logits of the last step and the loss's gradient with respect to them, for a
    /// network with a folded head.
    folded: Option<(Array2<f32>, Array2<f32>)>,
}

impl Default for Workspace {
    /// A workspace with the first-layer policy [`SparseInput::from_env`].
    fn default() -> Self {
        Workspace {
            rows: 0,
            acts: Vec::new(),
            dz: Vec::new(),
            grads: Vec::new(),
            sparse: SparseBatch::default(),
            sparse_input: SparseInput::from_env(),
            sparse_used: false,
            folded: None,
        }
    }
}

/// When a training step runs the first layer on the sparse kernels of [`crate::sparse`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SparseInput {
    /// When the batch's share of nonzero inputs is at most [`sparse::DENSITY_MAX`] and its
    /// grouped form's share of stored values at most [`sparse::GROUPED_DENSITY_MAX`] (the
    /// default).
    #[default]
    Auto,
    /// Always (for tests and benchmarks).
    Always,
    /// Never: dense GEMMs only (for tests and benchmarks).
    Never,
}

impl SparseInput {
    /// [`SparseInput::Auto`], unless the environment variable `DISTILL_SPARSE_INPUT` is `always`
    /// or `never`: a diagnostic for measuring what the sparse kernels buy on a data set (the
    /// results differ only by float rounding), not a setting to train with.
    pub fn from_env() -> Self {
        match std::env::var("DISTILL_SPARSE_INPUT").as_deref() {
            Ok("always") => SparseInput::Always,
            Ok("never") => SparseInput::Never,
            _ => SparseInput::Auto,
        }
    }
}

impl Workspace {
    fn ensure(&mut self, rows: usize, sizes: &[usize]) {
        if self.rows == rows && self.acts.len() == sizes.len() {
            return;
        }
        self.rows = rows;
        self.acts = sizes.iter().map(|&w| Array2::zeros((rows, w))).collect();
        self.dz = sizes[1..]
            .iter()
            .map(|&w| Array2::zeros((rows, w)))
            .collect();
    }

    /// A workspace whose steps run the first layer as `policy` says.
    pub fn with_sparse_input(policy: SparseInput) -> Self {
        Workspace {
            sparse_input: policy,
            ..Workspace::default()
        }
    }

    /// Whether the last training step ran the first layer on the sparse kernels.
    pub fn used_sparse_input(&self) -> bool {
        self.sparse_used
    }

    /// The logits of the last training step.
    pub fn logits(&self) -> ArrayView2<'_, f32> {
        if let Some((f, _)) = &self.folded {
            return f.view();
        }
        self.acts
            .last()
            .map(|a| a.view())
            .unwrap_or(ArrayView2::from_shape((0, 0), &[]).expect("empty"))
    }
}

impl Mlp {
    /// A network with He-normal weights and zero biases drawn from `seed`.
    pub fn new(config: MlpConfig, seed: u64) -> Result<Self> {
        Self::with_init(config, seed, Init::He)
    }

    /// A network with freshly initialised weights drawn from `seed` as `init` says.
    pub fn with_init(config: MlpConfig, seed: u64, init: Init) -> Result<Self> {
        config.validate()?;
        let mut rng = Rng::derive(seed, 0x1417);
        let layers = config
            .sizes
            .windows(2)
            .map(|w| Linear::init(w[0], w[1], init, &mut rng))
            .collect();
        Ok(Mlp {
            config,
            layers,
            fold: None,
        })
    }

    pub fn inputs(&self) -> usize {
        self.config.sizes[0]
    }

    /// The width of the network's output: its last layer's, or its folded head's.
    pub fn classes(&self) -> usize {
        match &self.fold {
            Some(f) => f.outputs(),
            None => *self.config.sizes.last().unwrap_or(&0),
        }
    }

    /// The network with a folded head keeping `keep` of its last layer's classes (see
    /// [`crate::fold`]).
    pub fn folded(mut self, keep: &[u32]) -> Result<Self> {
        let total = *self.config.sizes.last().unwrap_or(&0);
        self.fold = Some(Fold::new(keep, total)?);
        Ok(self)
    }

    pub fn parameters(&self) -> usize {
        self.layers.iter().map(|l| l.w.len() + l.b.len()).sum()
    }

    pub fn shapes(&self) -> Vec<(usize, usize)> {
        self.layers
            .iter()
            .map(|l| (l.inputs(), l.outputs()))
            .collect()
    }

    /// GEMM floating-point operations of one training step on `rows` examples.
    pub fn train_step_flops(&self, rows: usize) -> f64 {
        self.layers
            .iter()
            .enumerate()
            .map(|(l, layer)| {
                let f = flops(rows, layer.inputs(), layer.outputs());
                if l == 0 { 2.0 * f } else { 3.0 * f }
            })
            .sum()
    }

    /// Logits for `x` (`[N, inputs]`), computed in chunks.
    pub fn forward(&self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        if x.ncols() != self.inputs() {
            return Err(NnError::Shape(format!(
                "input has {} features per row, the network expects {}",
                x.ncols(),
                self.inputs()
            )));
        }
        let mut out = Array2::zeros((x.nrows(), self.classes()));
        const CHUNK: usize = 1024;
        for (xc, mut oc) in x
            .axis_chunks_iter(Axis(0), CHUNK)
            .zip(out.axis_chunks_iter_mut(Axis(0), CHUNK))
        {
            let mut a = xc.to_owned();
            for (l, layer) in self.layers.iter().enumerate() {
                let mut z = Array2::zeros((a.nrows(), layer.outputs()));
                layer.forward_into(a.view(), z.view_mut(), l + 1 < self.layers.len(), 0.0, 0);
                a = z;
            }
            match &self.fold {
                Some(f) => f.forward(a.view(), oc),
                None => oc.assign(&a),
            }
        }
        Ok(out)
    }

    /// One optimisation step on a batch: forward with dropout, the distillation loss, backward,
    /// and the optimiser's update (with the max-norm constraint). `seed` draws the dropout masks.
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
        ws: &mut Workspace,
    ) -> Result<LossParts> {
        let n = x.nrows();
        if x.ncols() != self.inputs() {
            return Err(NnError::Shape(format!(
                "batch has {} features per row, the network expects {}",
                x.ncols(),
                self.inputs()
            )));
        }
        let sizes = self.config.sizes.clone();
        let last = self.layers.len() - 1;
        ws.ensure(n, &sizes);
        if matches!(opt.config, OptimizerConfig::Adam { .. }) && ws.grads.len() != self.layers.len()
        {
            ws.grads = self
                .layers
                .iter()
                .map(|l| Array2::zeros(l.w.raw_dim()))
                .collect();
        }
        ws.acts[0].assign(&x);
        dropout::apply(
            &mut ws.acts[0].view_mut(),
            self.config.input_dropout,
            Rng::derive(seed, 0).next_u64(),
        );
        let sparse_input = match ws.sparse_input {
            SparseInput::Auto => {
                sparse::density(ws.acts[0].view()) <= sparse::DENSITY_MAX && {
                    ws.sparse.build(ws.acts[0].view());
                    ws.sparse.grouped_density() <= sparse::GROUPED_DENSITY_MAX
                }
            }
            SparseInput::Always => {
                ws.sparse.build(ws.acts[0].view());
                true
            }
            SparseInput::Never => false,
        };
        ws.sparse_used = sparse_input;
        for l in 0..=last {
            let (prev, next) = ws.acts.split_at_mut(l + 1);
            let hidden = l < last;
            let rate = if hidden {
                self.config.hidden_dropout
            } else {
                0.0
            };
            let mask_seed = Rng::derive(seed, l as u64 + 1).next_u64();
            let layer = &self.layers[l];
            if l == 0 && sparse_input {
                let bias = layer.b.as_slice().expect("a layer's bias is contiguous");
                ws.sparse.forward(layer.w.view(), bias, next[0].view_mut());
                dropout::bias_relu_dropout(&mut next[0].view_mut(), None, hidden, rate, mask_seed);
            } else {
                layer.forward_into(prev[l].view(), next[0].view_mut(), hidden, rate, mask_seed);
            }
        }
        let parts = fold::head_loss(
            self.fold.as_ref(),
            ws.acts[last + 1].view(),
            soft,
            labels,
            loss,
            &mut ws.folded,
            ws.dz[last].view_mut(),
        )?;

        let hidden_scale = 1.0 / (1.0 - self.config.hidden_dropout);
        let lr = opt.config.learning_rate(epoch);
        let momentum = opt.config.momentum(epoch);
        opt.step += 1;
        for l in (0..=last).rev() {
            if l > 0 {
                let (lower, upper) = ws.dz.split_at_mut(l);
                sgemm(
                    1.0,
                    upper[0].view(),
                    self.layers[l].w.t(),
                    0.0,
                    &mut lower[l - 1].view_mut(),
                );
                relu_backward(lower[l - 1].view_mut(), ws.acts[l].view(), hidden_scale);
            }
            let input = ws.acts[l].view();
            let dz = ws.dz[l].view();
            let state = &mut opt.state[l];
            let layer = &mut self.layers[l];
            match opt.config {
                OptimizerConfig::Sgd { .. } => {
                    let norms = if l == 0 && sparse_input {
                        ws.sparse.weight_update(
                            dz,
                            -lr,
                            momentum,
                            state.m_w.view_mut(),
                            Some(layer.w.view_mut()),
                            self.config.max_norm.is_some(),
                        )
                    } else {
                        sgd_update(
                            layer.w.view_mut(),
                            state.m_w.view_mut(),
                            input,
                            dz,
                            lr,
                            momentum,
                            self.config.max_norm.is_some(),
                        )
                    };
                    let db = Linear::bias_grad(dz);
                    Zip::from(&mut state.m_b)
                        .and(&db)
                        .for_each(|v, &g| *v = momentum * *v - lr * g);
                    layer.b += &state.m_b;
                    if let (Some(c), Some(norms)) = (self.config.max_norm, norms) {
                        layer.scale_columns_to(&norms, c);
                    }
                    continue;
                }
                OptimizerConfig::Adam {
                    beta1, beta2, eps, ..
                } => {
                    let g = &mut ws.grads[l];
                    if l == 0 && sparse_input {
                        ws.sparse
                            .weight_update(dz, 1.0, 0.0, g.view_mut(), None, false);
                    } else {
                        sgemm(1.0, input.t(), dz, 0.0, &mut g.view_mut());
                    }
                    let db = Linear::bias_grad(dz);
                    let t = opt.step as i32;
                    let c1 = 1.0 - beta1.powi(t);
                    let c2 = 1.0 - beta2.powi(t);
                    let step = lr * c2.sqrt() / c1;
                    let adam = |w: &mut f32, m: &mut f32, v: &mut f32, g: f32| {
                        *m = beta1 * *m + (1.0 - beta1) * g;
                        *v = beta2 * *v + (1.0 - beta2) * g * g;
                        *w -= step * *m / (v.sqrt() + eps * c2.sqrt());
                    };
                    Zip::from(&mut layer.w)
                        .and(&mut state.m_w)
                        .and(&mut state.v_w)
                        .and(&*g)
                        .par_for_each(|w, m, v, &g| adam(w, m, v, g));
                    Zip::from(&mut layer.b)
                        .and(&mut state.m_b)
                        .and(&mut state.v_b)
                        .and(&db)
                        .for_each(|w, m, v, &g| adam(w, m, v, g));
                }
            }
            if let Some(c) = self.config.max_norm {
                layer.apply_max_norm(c);
            }
        }
        Ok(parts)
    }

    /// Adds `delta` to output `class`'s logit through its bias (the paper's per-class bias
    /// adjustment). Behind a folded head, the dustbin's logit moves by adding `delta` to the bias
    /// of every class folded into it (`LSE(z + δ) = LSE(z) + δ`).
    pub fn adjust_bias(&mut self, class: usize, delta: f32) -> Result<()> {
        let classes = self.classes();
        let last = self
            .layers
            .last_mut()
            .ok_or_else(|| NnError::Shape("the network has no layers".into()))?;
        if class >= classes {
            return Err(NnError::Shape(format!(
                "class {class} does not exist: the network has classes 0 to {}",
                classes - 1
            )));
        }
        fold::adjust_bias(self.fold.as_ref(), &mut last.b, class, delta);
        Ok(())
    }
}

/// SGD with momentum on one weight matrix `w` (`[in, out]`) with velocity `v`:
/// `v = momentum * v - lr * inputᵀ · dz`, then `w += v`. With `norms`, also returns each column's
/// Euclidean norm after the update (for max-norm).
///
/// Fused by blocks of rows: each block's velocity is computed by a single-threaded GEMM and added
/// to its weights while both are still in that core's cache, instead of a threaded GEMM over the
/// whole velocity followed by a second pass over `v` and `w` from memory (about a third of the
/// step's memory traffic at 800 units). The blocks are fixed, so the result does not depend on
/// the thread count; per element the GEMM sums the batch in the same order as a whole-matrix
/// [`sgemm`]. Column norms are accumulated over fixed 16-row chunks in a fixed order.
#[allow(clippy::too_many_arguments)]
fn sgd_update(
    mut w: ArrayViewMut2<f32>,
    mut v: ArrayViewMut2<f32>,
    input: ArrayView2<f32>,
    dz: ArrayView2<f32>,
    lr: f32,
    momentum: f32,
    norms: bool,
) -> Option<Vec<f32>> {
    /// Rows per block: 64 × 800 floats of weights and of velocity, 400 KiB together.
    const BLOCK: usize = 64;
    let cols = w.ncols();
    let partial: Vec<Vec<Vec<f32>>> = w
        .axis_chunks_iter_mut(Axis(0), BLOCK)
        .into_par_iter()
        .zip(v.axis_chunks_iter_mut(Axis(0), BLOCK).into_par_iter())
        .enumerate()
        .map(|(i, (mut wb, mut vb))| {
            let start = i * BLOCK;
            let end = start + wb.nrows();
            let rows_t = input.slice(ndarray::s![.., start..end]).reversed_axes();
            sgemm_serial(-lr, rows_t, dz, momentum, &mut vb);
            if let (Some(ws), Some(vs)) = (wb.as_slice_mut(), vb.as_slice()) {
                for (a, b) in ws.iter_mut().zip(vs) {
                    *a += b;
                }
            } else {
                wb += &vb;
            }
            if !norms {
                return Vec::new();
            }
            sparse::norm_partials(wb.view())
        })
        .collect();
    norms.then(|| sparse::column_norms(partial, cols))
}

/// `g = g * scale` where the layer's output `a` is above 0, else 0 (ReLU's and inverted
/// dropout's backward pass: a dropped unit's output is 0), over blocks of rows in parallel.
fn relu_backward(mut g: ArrayViewMut2<f32>, a: ArrayView2<f32>, scale: f32) {
    const ROWS: usize = 16;
    g.axis_chunks_iter_mut(Axis(0), ROWS)
        .into_par_iter()
        .zip(a.axis_chunks_iter(Axis(0), ROWS).into_par_iter())
        .for_each(|(mut gb, ab)| match (gb.as_slice_mut(), ab.as_slice()) {
            (Some(gs), Some(as_)) => {
                // Branch-free (a mask on the bits): about half the units are off in any row, at
                // random, and a branch per element mispredicted often enough to make this pass
                // cost as much as a tenth of the step. Same bits as the `if` below (+0 where off).
                for (g, &a) in gs.iter_mut().zip(as_) {
                    let keep = 0u32.wrapping_sub(u32::from(a > 0.0));
                    *g = f32::from_bits((*g * scale).to_bits() & keep);
                }
            }
            _ => Zip::from(&mut gb)
                .and(&ab)
                .for_each(|g, &a| *g = if a > 0.0 { *g * scale } else { 0.0 }),
        });
}

/// Rows `start..start + len` of `x` as a contiguous copy (for gathering shuffled batches).
pub fn gather_rows(x: ArrayView2<f32>, rows: &[usize], mut out: ArrayViewMut2<f32>) {
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(rows.par_iter())
        .for_each(|(mut o, &r)| o.assign(&x.row(r)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::Schedule;
    use distill_core::math::softmax;
    use ndarray::s;

    fn net(dropout: f32) -> Mlp {
        Mlp::new(
            MlpConfig {
                sizes: vec![5, 7, 6, 3],
                input_dropout: dropout,
                hidden_dropout: dropout,
                max_norm: None,
            },
            3,
        )
        .unwrap()
    }

    #[test]
    fn a_network_beyond_max_weights_is_refused_before_allocating() {
        let config = |sizes: Vec<usize>| MlpConfig {
            sizes,
            input_dropout: 0.0,
            hidden_dropout: 0.0,
            max_norm: None,
        };
        assert_eq!(config(vec![5, 7, 3]).weight_count(), Some(6 * 7 + 8 * 3));
        assert_eq!(config(vec![usize::MAX, 2]).weight_count(), None);
        // 784 inputs to 10^8 hidden units: 7.9e10 weights, refused without allocating them.
        let e = Mlp::new(config(vec![784, 100_000_000, 10]), 1).unwrap_err();
        assert!(
            e.to_string().contains("more than the 2147483648 weights"),
            "{e}"
        );
        assert!(Mlp::new(config(vec![usize::MAX / 2, usize::MAX / 2, 2]), 1).is_err());
    }

    fn full_loss(m: &Mlp, x: &Array2<f32>, p: &Array2<f32>, y: &[u32], loss: &DistillLoss) -> f64 {
        let logits = m.forward(x.view()).unwrap();
        let mut g = Array2::zeros(logits.raw_dim());
        loss.loss_and_grad(logits.view(), Some(p.view()), Some(y), g.view_mut())
            .unwrap()
            .total()
    }

    /// Every weight and bias gradient of the full loss, through all layers, against central finite
    /// differences. A plain SGD step with lr 1 and momentum 0 moves each parameter by minus its
    /// gradient, which is how the analytic gradient is read back.
    ///
    /// Run on the dense first layer and on the sparse kernels, with an input that has zeros.
    #[test]
    fn every_gradient_matches_finite_differences() {
        for policy in [SparseInput::Never, SparseInput::Always] {
            gradients_match_finite_differences(policy);
        }
    }

    fn gradients_match_finite_differences(policy: SparseInput) {
        let mut rng = Rng::new(9);
        let mut x = Array2::from_shape_simple_fn((4, 5), || rng.uniform());
        x[[0, 1]] = 0.0;
        x[[2, 3]] = 0.0;
        x.column_mut(4).fill(0.0);
        let teacher = Array2::from_shape_simple_fn((4, 3), || rng.normal() * 2.0);
        let y: Vec<u32> = (0..4).map(|_| rng.below(3) as u32).collect();
        let loss = DistillLoss {
            temperature: 3.0,
            alpha: 0.7,
        };
        let p = softmax(teacher.view(), 3.0);
        let m0 = net(0.0);
        let mut stepped = m0.clone();
        let cfg = OptimizerConfig::sgd(1.0, 0.0);
        let mut opt = Optimizer::new(cfg, &m0.shapes());
        let mut ws = Workspace::with_sparse_input(policy);
        stepped
            .train_step(
                x.view(),
                Some(p.view()),
                Some(&y),
                &loss,
                &mut opt,
                0,
                1,
                &mut ws,
            )
            .unwrap();
        let h = 1e-2f32;
        let mut checked = 0;
        for l in 0..m0.layers.len() {
            let (rows, cols) = m0.layers[l].w.dim();
            for i in 0..rows {
                for j in 0..cols {
                    let analytic = (m0.layers[l].w[[i, j]] - stepped.layers[l].w[[i, j]]) as f64;
                    let mut plus = m0.clone();
                    plus.layers[l].w[[i, j]] += h;
                    let mut minus = m0.clone();
                    minus.layers[l].w[[i, j]] -= h;
                    let fd = (full_loss(&plus, &x, &p, &y, &loss)
                        - full_loss(&minus, &x, &p, &y, &loss))
                        / (2.0 * h as f64);
                    assert!(
                        (analytic - fd).abs() < 3e-3 * (1.0 + fd.abs()),
                        "{policy:?}: W{l}[{i},{j}]: {analytic} vs {fd}"
                    );
                    checked += 1;
                }
            }
            for j in 0..cols {
                let analytic = (m0.layers[l].b[j] - stepped.layers[l].b[j]) as f64;
                let mut plus = m0.clone();
                plus.layers[l].b[j] += h;
                let mut minus = m0.clone();
                minus.layers[l].b[j] -= h;
                let fd = (full_loss(&plus, &x, &p, &y, &loss)
                    - full_loss(&minus, &x, &p, &y, &loss))
                    / (2.0 * h as f64);
                assert!(
                    (analytic - fd).abs() < 3e-3 * (1.0 + fd.abs()),
                    "b{l}[{j}]: {analytic} vs {fd}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, m0.parameters());
        assert_eq!(ws.used_sparse_input(), policy == SparseInput::Always);
    }

    /// A 784-wide input with MNIST-like blank margins: rows of pixels in [0, 1] that are nonzero
    /// only inside a centred square.
    fn sparse_images(rows: usize, seed: u64) -> Array2<f32> {
        let mut rng = Rng::new(seed);
        Array2::from_shape_fn((rows, 784), |(_, k)| {
            let (r, c) = (k / 28, k % 28);
            if (9..19).contains(&r) && (8..20).contains(&c) && rng.uniform() < 0.6 {
                rng.uniform()
            } else {
                0.0
            }
        })
    }

    /// Several SGD and Adam steps (with max-norm and dropout) of a net whose first layer runs on
    /// the sparse kernels: the same bits on 1 thread and on 3, and within float rounding of the
    /// dense first layer.
    #[test]
    fn sparse_first_layer_is_thread_count_exact_and_matches_dense() {
        let x = sparse_images(40, 5);
        let y: Vec<u32> = (0..40).map(|i| (i % 3) as u32).collect();
        let sgd = OptimizerConfig::sgd(0.05, 0.9);
        let adam = OptimizerConfig::Adam {
            lr: 0.001,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            schedule: Schedule::Constant,
        };
        for cfg in [sgd, adam] {
            let run = |policy: SparseInput, threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("pool");
                pool.install(|| {
                    let mut m = Mlp::new(
                        MlpConfig {
                            sizes: vec![784, 70, 3],
                            input_dropout: 0.1,
                            hidden_dropout: 0.2,
                            max_norm: Some(2.0),
                        },
                        4,
                    )
                    .expect("net");
                    let mut opt = Optimizer::new(cfg.clone(), &m.shapes());
                    let mut ws = Workspace::with_sparse_input(policy);
                    for step in 0..4 {
                        m.train_step(
                            x.view(),
                            None,
                            Some(&y),
                            &DistillLoss::hard(),
                            &mut opt,
                            0,
                            step,
                            &mut ws,
                        )
                        .expect("step");
                        assert_eq!(ws.used_sparse_input(), policy == SparseInput::Auto);
                    }
                    m
                })
            };
            let sparse = run(SparseInput::Auto, 1);
            assert_eq!(sparse, run(SparseInput::Auto, 3), "{cfg:?}");
            let dense = run(SparseInput::Never, 2);
            for (a, b) in sparse.layers.iter().zip(&dense.layers) {
                for (p, q) in a.w.iter().chain(&a.b).zip(b.w.iter().chain(&b.b)) {
                    assert!(
                        (p - q).abs() <= 1e-5 * (1.0 + q.abs()),
                        "{cfg:?}: {p} vs {q}"
                    );
                }
            }
        }
    }

    /// The automatic choice: the sparse kernels for MNIST-like input, dense GEMMs for dense input
    /// and for input that is sparse but scattered so that the grouped form would store most of it.
    #[test]
    fn automatic_choice_follows_the_measured_density() {
        let mut rng = Rng::new(6);
        let scattered =
            Array2::from_shape_simple_fn((32, 784), || if rng.uniform() < 0.3 { 1.0 } else { 0.0 });
        let dense = Array2::from_shape_simple_fn((32, 784), || rng.uniform() + 0.1);
        for (x, sparse) in [
            (sparse_images(32, 1), true),
            (dense, false),
            (scattered, false),
        ] {
            let mut m = Mlp::new(
                MlpConfig {
                    sizes: vec![784, 20, 3],
                    input_dropout: 0.0,
                    hidden_dropout: 0.0,
                    max_norm: None,
                },
                1,
            )
            .expect("net");
            let cfg = OptimizerConfig::sgd(0.01, 0.9);
            let mut opt = Optimizer::new(cfg, &m.shapes());
            let mut ws = Workspace::with_sparse_input(SparseInput::Auto);
            let y = vec![0u32; 32];
            m.train_step(
                x.view(),
                None,
                Some(&y),
                &DistillLoss::hard(),
                &mut opt,
                0,
                0,
                &mut ws,
            )
            .expect("step");
            assert_eq!(ws.used_sparse_input(), sparse);
        }
    }

    #[test]
    fn seeded_steps_are_reproducible_and_dropout_changes_them() {
        let mut rng = Rng::new(2);
        let x = Array2::from_shape_simple_fn((8, 5), || rng.uniform());
        let y: Vec<u32> = (0..8).map(|i| (i % 3) as u32).collect();
        let run = |seed: u64| {
            let mut m = net(0.3);
            let cfg = OptimizerConfig::Adam {
                lr: 0.01,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                schedule: Schedule::Constant,
            };
            let mut opt = Optimizer::new(cfg, &m.shapes());
            let mut ws = Workspace::default();
            for step in 0..5 {
                m.train_step(
                    x.view(),
                    None,
                    Some(&y),
                    &DistillLoss::hard(),
                    &mut opt,
                    0,
                    seed + step,
                    &mut ws,
                )
                .unwrap();
            }
            m
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(100));
    }

    /// The fused block-wise SGD update gives the same bits as a whole-matrix threaded GEMM
    /// followed by `w += v`, on 1 thread and on 3, and its column norms match the weights'.
    #[test]
    fn fused_sgd_update_matches_the_two_pass_update_on_any_thread_count() {
        let mut rng = Rng::new(8);
        let (batch, inputs, outputs) = (37, 150, 45);
        let input = Array2::from_shape_simple_fn((batch, inputs), || rng.normal());
        let dz = Array2::from_shape_simple_fn((batch, outputs), || rng.normal() * 0.1);
        let w0 = Array2::from_shape_simple_fn((inputs, outputs), || rng.normal());
        let v0 = Array2::from_shape_simple_fn((inputs, outputs), || rng.normal() * 0.01);
        let (lr, momentum) = (0.05f32, 0.9f32);
        let mut v_ref = v0.clone();
        sgemm(-lr, input.t(), dz.view(), momentum, &mut v_ref.view_mut());
        let w_ref = &w0 + &v_ref;
        let norms_ref = crate::linear::column_norms(w_ref.view());
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let (mut w, mut v) = (w0.clone(), v0.clone());
            let norms = pool
                .install(|| {
                    sgd_update(
                        w.view_mut(),
                        v.view_mut(),
                        input.view(),
                        dz.view(),
                        lr,
                        momentum,
                        true,
                    )
                })
                .unwrap();
            assert_eq!(v, v_ref, "{threads} threads");
            assert_eq!(w, w_ref, "{threads} threads");
            for (a, b) in norms.iter().zip(&norms_ref) {
                assert!((a - b).abs() <= 1e-5 * b, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn max_norm_bounds_every_unit() {
        let mut m = net(0.0);
        for l in &mut m.layers {
            l.w.mapv_inplace(|v| v * 10.0);
        }
        m.config.max_norm = Some(0.5);
        let mut rng = Rng::new(2);
        let x = Array2::from_shape_simple_fn((8, 5), || rng.uniform());
        let y: Vec<u32> = (0..8).map(|i| (i % 3) as u32).collect();
        let cfg = OptimizerConfig::sgd(0.01, 0.5);
        let mut opt = Optimizer::new(cfg, &m.shapes());
        m.train_step(
            x.view(),
            None,
            Some(&y),
            &DistillLoss::hard(),
            &mut opt,
            0,
            0,
            &mut Workspace::default(),
        )
        .unwrap();
        for l in &m.layers {
            for n in crate::linear::column_norms(l.w.view()) {
                assert!(n <= 0.5 + 1e-5, "{n}");
            }
        }
    }

    #[test]
    fn batch_slices_match_whole_forward() {
        let m = net(0.0);
        let mut rng = Rng::new(4);
        let x = Array2::from_shape_simple_fn((2100, 5), || rng.uniform());
        let all = m.forward(x.view()).unwrap();
        let part = m.forward(x.slice(s![1500.., ..])).unwrap();
        assert_eq!(all.slice(s![1500.., ..]), part);
    }
}
