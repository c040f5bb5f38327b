//! A sequential network built from an [`Arch`]: convolutions, pooling, batch norm, dropout and
//! fully connected layers, with the same training step, loss and optimisers as [`crate::Mlp`].
//! Input rows are flat `[N, C·H·W]` (NCHW order), as the MLP takes them.

use crate::arch::{Arch, Shape};
use crate::fold::{self, Fold};
use crate::gemm::flops;
use crate::layer::{Layer, Scratch};
use crate::linear::Init;
use crate::loss::{DistillLoss, LossParts};
use crate::mlp::MAX_WEIGHTS;
use crate::optim::{Optimizer, OptimizerConfig};
use crate::{NnError, Result};
use distill_core::rng::Rng;
use ndarray::{Array1, Array2, ArrayView2, Axis, Zip};

#[derive(Clone, Debug, PartialEq)]
pub struct Net {
    arch: Arch,
    input: Shape,
    /// Output shape of each layer.
    shapes: Vec<Shape>,
    pub layers: Vec<Layer>,
    /// A folded output head (a specialist's), or `None`: the last layer's outputs are the logits.
    pub fold: Option<Fold>,
    /// Bound on the length of each convolution filter's and each fc unit's incoming weights.
    pub max_norm: Option<f32>,
}

/// Buffers reused from one training step to the next, and the last step's gradients.
#[derive(Default)]
pub struct NetWorkspace {
    /// `acts[0]` is the input, `acts[l + 1]` layer `l`'s output.
    acts: Vec<Array2<f32>>,
    /// `grads[l]`: the loss's gradient with respect to `acts[l]` (`grads[0]` is not computed).
    grads: Vec<Array2<f32>>,
    scratch: Vec<Scratch>,
    /// Weight and bias gradients of each layer that has parameters, in layer order.
    params: Vec<(Array2<f32>, Array1<f32>)>,
    folded: Option<(Array2<f32>, Array2<f32>)>,
}

impl NetWorkspace {
    /// The weight and bias gradients of the last step's parameter layers, in layer order
    /// (batch norm's scale as a `[1, C]` matrix).
    pub fn gradients(&self) -> &[(Array2<f32>, Array1<f32>)] {
        &self.params
    }

    /// The logits of the last training step.
    pub fn logits(&self) -> ArrayView2<'_, f32> {
        match (&self.folded, self.acts.last()) {
            (Some((f, _)), _) => f.view(),
            (None, Some(a)) => a.view(),
            (None, None) => ArrayView2::from_shape((0, 0), &[]).expect("empty"),
        }
    }
}

impl Net {
    /// A network of `arch` on inputs of `input` with `classes` outputs, its weights drawn from
    /// `seed` as PyTorch's defaults for `Conv2d` and `Linear` are ([`Init::Torch`]).
    pub fn new(arch: Arch, input: Shape, classes: usize, seed: u64) -> Result<Net> {
        Self::with_init(arch, input, classes, seed, Init::Torch)
    }

    /// As [`Net::new`], weights drawn as `init` says.
    pub fn with_init(
        arch: Arch,
        input: Shape,
        classes: usize,
        seed: u64,
        init: Init,
    ) -> Result<Net> {
        let shapes = arch.shapes(input, classes)?;
        let mut count = 0usize;
        let mut prev = input;
        for (spec, &out) in arch.layers.iter().zip(&shapes) {
            use crate::arch::LayerSpec::*;
            let n = match *spec {
                Conv { kernel, .. } => (prev.channels() * kernel * kernel + 1) * out.channels(),
                Fc(_) => (prev.len() + 1) * out.len(),
                BatchNorm => 2 * prev.channels(),
                _ => 0,
            };
            count = count.saturating_add(n);
            prev = out;
        }
        if count > MAX_WEIGHTS {
            return Err(NnError::Shape(format!(
                "the network '{arch}' holds {count} weights, more than the {MAX_WEIGHTS} a \
                 network may hold; choose narrower layers"
            )));
        }
        let mut rng = Rng::derive(seed, 0x2d17);
        let mut prev = input;
        let mut layers = Vec::with_capacity(shapes.len());
        for (spec, &out) in arch.layers.iter().zip(&shapes) {
            layers.push(Layer::build(spec, prev, out, init, &mut rng));
            prev = out;
        }
        Ok(Net {
            arch,
            input,
            shapes,
            layers,
            fold: None,
            max_norm: None,
        })
    }

    pub fn arch(&self) -> &Arch {
        &self.arch
    }

    /// The shape of one input example.
    pub fn input_shape(&self) -> Shape {
        self.input
    }

    pub fn inputs(&self) -> usize {
        self.input.len()
    }

    /// The width of the network's output: its last layer's, or its folded head's.
    pub fn classes(&self) -> usize {
        match &self.fold {
            Some(f) => f.outputs(),
            None => self.shapes.last().map_or(0, Shape::len),
        }
    }

    /// The network with a folded head keeping `keep` of its last layer's classes (see
    /// [`crate::fold`]).
    pub fn folded(mut self, keep: &[u32]) -> Result<Self> {
        let total = self.shapes.last().map_or(0, Shape::len);
        self.fold = Some(Fold::new(keep, total)?);
        Ok(self)
    }

    /// Adds `delta` to output `class`'s logit through the last fc layer's bias, as
    /// [`crate::Mlp::adjust_bias`] does (behind a folded head, the dustbin's logit moves through
    /// the bias of every class folded into it).
    pub fn adjust_bias(&mut self, class: usize, delta: f32) -> Result<()> {
        let classes = self.classes();
        if class >= classes {
            return Err(NnError::Shape(format!(
                "class {class} does not exist: the network has classes 0 to {}",
                classes.saturating_sub(1)
            )));
        }
        let Some(Layer::Linear(last)) = self.layers.last_mut() else {
            return Err(NnError::Shape(format!(
                "the network '{}' does not end in fc; its output bias cannot be adjusted",
                self.arch
            )));
        };
        fold::adjust_bias(self.fold.as_ref(), &mut last.b, class, delta);
        Ok(())
    }

    /// Trained values: weights and biases, batch norm's scale and shift (not its running
    /// statistics), as PyTorch counts `parameters()`.
    pub fn parameters(&self) -> usize {
        self.shapes().iter().map(|&(r, c)| r * c + c).sum()
    }

    /// The `(rows, cols)` of each parameter layer's weight matrix, for [`Optimizer::new`].
    pub fn shapes(&self) -> Vec<(usize, usize)> {
        self.layers.iter().filter_map(Layer::param_shape).collect()
    }

    /// GEMM floating-point operations of one training step on `rows` examples (the convolutions'
    /// and fc layers'; the first layer computes no input gradient).
    pub fn train_step_flops(&self, rows: usize) -> f64 {
        self.layers
            .iter()
            .enumerate()
            .map(|(l, layer)| {
                let f = match layer {
                    Layer::Conv(c) => {
                        flops(rows * c.window.positions(), c.lin.inputs(), c.lin.outputs())
                    }
                    Layer::Linear(lin) => flops(rows, lin.inputs(), lin.outputs()),
                    _ => 0.0,
                };
                if l == 0 { 2.0 * f } else { 3.0 * f }
            })
            .sum()
    }

    fn check_input(&self, x: &ArrayView2<f32>) -> Result<()> {
        if x.ncols() != self.inputs() {
            return Err(NnError::Shape(format!(
                "input has {} values per row, the network '{}' expects {} (an input of {})",
                x.ncols(),
                self.arch,
                self.inputs(),
                self.input
            )));
        }
        Ok(())
    }

    /// Logits for `x` (`[N, C·H·W]`) in evaluation mode (running batch-norm statistics, no
    /// dropout), computed in chunks of rows.
    pub fn forward(&self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        self.check_input(&x)?;
        let mut out = Array2::zeros((x.nrows(), self.classes()));
        const CHUNK: usize = 256;
        let mut scratch: Vec<Scratch> = self.layers.iter().map(|_| Scratch::None).collect();
        for (xc, mut oc) in x
            .axis_chunks_iter(Axis(0), CHUNK)
            .zip(out.axis_chunks_iter_mut(Axis(0), CHUNK))
        {
            let mut a = xc.as_standard_layout().into_owned();
            for ((layer, shape), s) in self.layers.iter().zip(&self.shapes).zip(&mut scratch) {
                let mut z = Array2::zeros((a.nrows(), shape.len()));
                layer.forward(a.view(), z.view_mut(), s, None);
                a = z;
            }
            match &self.fold {
                Some(f) => f.forward(a.view(), oc),
                None => oc.assign(&a),
            }
        }
        Ok(out)
    }

    /// Forward in training mode (dropout masks drawn from `seed`, batch norm on the batch's
    /// statistics, its running statistics updated), the distillation loss and the backward pass:
    /// the gradients are left in [`NetWorkspace::gradients`]. The weights do not move.
    #[allow(clippy::too_many_arguments)]
    pub fn gradients(
        &mut self,
        x: ArrayView2<f32>,
        soft: Option<ArrayView2<f32>>,
        labels: Option<&[u32]>,
        loss: &DistillLoss,
        seed: u64,
        ws: &mut NetWorkspace,
    ) -> Result<LossParts> {
        self.check_input(&x)?;
        let n = x.nrows();
        let count = self.layers.len();
        if ws.acts.len() != count + 1 || ws.acts[0].nrows() != n {
            let widths = std::iter::once(self.inputs()).chain(self.shapes.iter().map(Shape::len));
            ws.acts = widths.map(|w| Array2::zeros((n, w))).collect();
            ws.grads = ws.acts.iter().map(|a| Array2::zeros(a.raw_dim())).collect();
            ws.grads[0] = Array2::zeros((0, 0));
            ws.scratch = self.layers.iter().map(|_| Scratch::None).collect();
            ws.params = self
                .shapes()
                .iter()
                .map(|&(r, c)| (Array2::zeros((r, c)), Array1::zeros(c)))
                .collect();
        }
        ws.acts[0].assign(&x);
        for l in 0..count {
            let (prev, next) = ws.acts.split_at_mut(l + 1);
            let mask_seed = Rng::derive(seed, l as u64 + 1).next_u64();
            let s = &mut ws.scratch[l];
            self.layers[l].forward(prev[l].view(), next[0].view_mut(), s, Some(mask_seed));
            if let (Layer::BatchNorm(bn), Scratch::Bn(b)) = (&mut self.layers[l], &*s) {
                bn.update_running(b, n);
            }
        }
        let parts = fold::head_loss(
            self.fold.as_ref(),
            ws.acts[count].view(),
            soft,
            labels,
            loss,
            &mut ws.folded,
            ws.grads[count].view_mut(),
        )?;
        let mut p = ws.params.len();
        for l in (0..count).rev() {
            let (lower, upper) = ws.grads.split_at_mut(l + 1);
            let dx = (l > 0).then(|| lower[l].view_mut());
            let layer = &self.layers[l];
            let grad = if layer.param_shape().is_some() {
                p -= 1;
                Some(&mut ws.params[p])
            } else {
                None
            };
            layer.backward(
                ws.acts[l].view(),
                ws.acts[l + 1].view(),
                upper[0].view(),
                dx,
                &mut ws.scratch[l],
                grad,
            );
        }
        Ok(parts)
    }

    /// One optimisation step on a batch: [`Net::gradients`], then the optimiser's update (and
    /// the max-norm bound). `seed` draws the dropout masks.
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
        ws: &mut NetWorkspace,
    ) -> Result<LossParts> {
        let shapes = self.shapes();
        let state: Vec<(usize, usize)> = opt.state.iter().map(|s| s.m_w.dim()).collect();
        if state != shapes {
            return Err(NnError::Shape(format!(
                "the optimiser holds state for weight shapes {state:?}, the network has \
                 {shapes:?}; make it with Optimizer::new(config, &net.shapes())"
            )));
        }
        let parts = self.gradients(x, soft, labels, loss, seed, ws)?;
        let lr = opt.config.learning_rate(epoch);
        let momentum = opt.config.momentum(epoch);
        opt.step += 1;
        let params = self.layers.iter_mut().filter(|l| l.param_shape().is_some());
        for ((layer, (gw, gb)), state) in params.zip(&ws.params).zip(&mut opt.state) {
            let (mut w, b) = layer.params_mut().expect("a parameter layer");
            match opt.config {
                OptimizerConfig::Sgd { .. } => {
                    let sgd = |w: &mut f32, m: &mut f32, &g: &f32| {
                        *m = momentum * *m - lr * g;
                        *w += *m;
                    };
                    Zip::from(&mut w)
                        .and(&mut state.m_w)
                        .and(gw)
                        .par_for_each(sgd);
                    Zip::from(b).and(&mut state.m_b).and(gb).for_each(sgd);
                }
                OptimizerConfig::Adam {
                    beta1, beta2, eps, ..
                } => {
                    let t = opt.step as i32;
                    let c1 = 1.0 - beta1.powi(t);
                    let c2 = 1.0 - beta2.powi(t);
                    let step = lr * c2.sqrt() / c1;
                    let adam = |w: &mut f32, m: &mut f32, v: &mut f32, &g: &f32| {
                        *m = beta1 * *m + (1.0 - beta1) * g;
                        *v = beta2 * *v + (1.0 - beta2) * g * g;
                        *w -= step * *m / (v.sqrt() + eps * c2.sqrt());
                    };
                    Zip::from(&mut w)
                        .and(&mut state.m_w)
                        .and(&mut state.v_w)
                        .and(gw)
                        .par_for_each(adam);
                    Zip::from(b)
                        .and(&mut state.m_b)
                        .and(&mut state.v_b)
                        .and(gb)
                        .for_each(adam);
                }
            }
            match (self.max_norm, &mut *layer) {
                (Some(c), Layer::Conv(conv)) => conv.lin.apply_max_norm(c),
                (Some(c), Layer::Linear(lin)) => lin.apply_max_norm(c),
                _ => {}
            }
        }
        Ok(parts)
    }
}
