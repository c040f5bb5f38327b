//! The layers of a [`crate::Net`] behind one forward/backward interface on flat rows: every
//! activation is `[N, values per example]`, images in NCHW order.

use crate::arch::{LayerSpec, Shape};
use crate::batchnorm::{BatchNorm2d, BnScratch};
use crate::conv::{Conv2d, ConvScratch};
use crate::gemm::sgemm;
use crate::linear::{Init, Linear};
use crate::pool::{self, Window};
use distill_core::rng::Rng;
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2, Axis, Zip};

/// One layer with its parameters and geometry.
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    Conv(Conv2d),
    MaxPool(Window),
    AvgPool(Window),
    Gap,
    BatchNorm(BatchNorm2d),
    Flatten,
    Linear(Linear),
    Relu,
    Dropout(f32),
}

/// What one layer's training-mode forward pass keeps for its backward pass.
#[derive(Default)]
pub enum Scratch {
    #[default]
    None,
    Conv(ConvScratch),
    /// Max pooling's winning index per output.
    Arg(Vec<u32>),
    Bn(BnScratch),
    /// Dropout's mask: `1 / (1 - rate)` where kept, 0 where dropped.
    Mask(Array2<f32>),
}

impl Layer {
    /// The layer `spec` on input `shape` giving `out` (shapes from [`crate::Arch::shapes`]), its
    /// weights drawn from `rng` as `init` says (batch norm starts at scale 1, shift 0).
    pub fn build(spec: &LayerSpec, shape: Shape, out: Shape, init: Init, rng: &mut Rng) -> Layer {
        let (c, h, w) = match shape {
            Shape::Image { c, h, w } => (c, h, w),
            Shape::Flat(n) => (n, 1, 1),
        };
        match *spec {
            LayerSpec::Conv {
                out: o,
                kernel,
                stride,
                pad,
            } => Layer::Conv(Conv2d {
                lin: Linear::init(c * kernel * kernel, o, init, rng),
                window: Window::new(c, h, w, kernel, stride, pad),
            }),
            LayerSpec::MaxPool { kernel, stride } => {
                Layer::MaxPool(Window::new(c, h, w, kernel, stride, 0))
            }
            LayerSpec::AvgPool { kernel, stride } => {
                Layer::AvgPool(Window::new(c, h, w, kernel, stride, 0))
            }
            LayerSpec::Gap => Layer::Gap,
            LayerSpec::BatchNorm => Layer::BatchNorm(BatchNorm2d::new(c, h * w)),
            LayerSpec::Flatten => Layer::Flatten,
            LayerSpec::Fc(_) => Layer::Linear(Linear::init(shape.len(), out.len(), init, rng)),
            LayerSpec::Relu => Layer::Relu,
            LayerSpec::Dropout(p) => Layer::Dropout(p),
        }
    }

    /// The weight matrix and bias of a layer that has parameters (batch norm's scale as a
    /// `[1, C]` matrix), for the optimiser.
    pub fn params_mut(&mut self) -> Option<(ArrayViewMut2<'_, f32>, &mut Array1<f32>)> {
        match self {
            Layer::Conv(c) => Some((c.lin.w.view_mut(), &mut c.lin.b)),
            Layer::Linear(l) => Some((l.w.view_mut(), &mut l.b)),
            Layer::BatchNorm(bn) => Some((bn.gamma.view_mut().insert_axis(Axis(0)), &mut bn.beta)),
            _ => None,
        }
    }

    /// As [`Layer::params_mut`], read only.
    pub fn params(&self) -> Option<(ArrayView2<'_, f32>, &Array1<f32>)> {
        match self {
            Layer::Conv(c) => Some((c.lin.w.view(), &c.lin.b)),
            Layer::Linear(l) => Some((l.w.view(), &l.b)),
            Layer::BatchNorm(bn) => Some((bn.gamma.view().insert_axis(Axis(0)), &bn.beta)),
            _ => None,
        }
    }

    /// The `(rows, cols)` of the weight matrix of [`Layer::params_mut`].
    pub fn param_shape(&self) -> Option<(usize, usize)> {
        self.params().map(|(w, _)| w.dim())
    }

    /// `out` for input `x`: in training mode when `train` holds the dropout mask's seed.
    pub fn forward(
        &self,
        x: ArrayView2<f32>,
        mut out: ArrayViewMut2<f32>,
        s: &mut Scratch,
        train: Option<u64>,
    ) {
        match self {
            Layer::Conv(conv) => {
                if !matches!(s, Scratch::Conv(_)) {
                    *s = Scratch::Conv(ConvScratch::default());
                }
                let Scratch::Conv(cs) = s else { unreachable!() };
                conv.forward(x, out, cs);
            }
            Layer::MaxPool(wd) => {
                let len = out.len();
                if !matches!(s, Scratch::Arg(a) if a.len() == len) {
                    *s = Scratch::Arg(vec![0; len]);
                }
                let Scratch::Arg(arg) = s else { unreachable!() };
                pool::max_forward(wd, x, out, arg);
            }
            Layer::AvgPool(wd) => pool::avg_forward(wd, x, out),
            Layer::Gap => pool::gap_forward(x, out),
            Layer::BatchNorm(bn) => match train {
                None => bn.forward_eval(x, out),
                Some(_) => {
                    if !matches!(s, Scratch::Bn(_)) {
                        *s = Scratch::Bn(BnScratch::default());
                    }
                    let Scratch::Bn(b) = s else { unreachable!() };
                    bn.forward_train(x, out, b);
                }
            },
            Layer::Flatten => out.assign(&x),
            Layer::Linear(lin) => lin.forward_into(x, out, false, 0.0, 0),
            Layer::Relu => Zip::from(&mut out)
                .and(&x)
                .par_for_each(|o, &v| *o = v.max(0.0)),
            Layer::Dropout(rate) => match train {
                Some(seed) if *rate > 0.0 => {
                    if !matches!(s, Scratch::Mask(m) if m.dim() == x.dim()) {
                        *s = Scratch::Mask(Array2::zeros(x.dim()));
                    }
                    let Scratch::Mask(mask) = s else {
                        unreachable!()
                    };
                    mask.fill(1.0);
                    crate::dropout::apply(&mut mask.view_mut(), *rate, seed);
                    Zip::from(&mut out)
                        .and(&x)
                        .and(&*mask)
                        .par_for_each(|o, &v, &m| *o = v * m);
                }
                _ => out.assign(&x),
            },
        }
    }

    /// Given the layer's input `x`, output `y` and the loss's gradient `dy` with respect to `y`,
    /// writes the parameter gradients into `grad` (for layers with parameters) and the input
    /// gradient into `dx` when asked. `s` is the scratch of the training-mode forward pass.
    pub fn backward(
        &self,
        x: ArrayView2<f32>,
        y: ArrayView2<f32>,
        dy: ArrayView2<f32>,
        dx: Option<ArrayViewMut2<f32>>,
        s: &mut Scratch,
        grad: Option<&mut (Array2<f32>, Array1<f32>)>,
    ) {
        match (self, s, grad) {
            (Layer::Conv(conv), Scratch::Conv(cs), Some((gw, gb))) => {
                conv.backward(x, dy, dx, cs, gw, gb)
            }
            (Layer::BatchNorm(bn), Scratch::Bn(b), Some((gw, gb))) => {
                let mut g = gw.row_mut(0).to_owned();
                bn.backward(dy, dx, b, &mut g, gb);
                gw.row_mut(0).assign(&g);
            }
            (Layer::Linear(lin), _, Some((gw, gb))) => {
                sgemm(1.0, x.t(), dy, 0.0, &mut gw.view_mut());
                gb.assign(&Linear::bias_grad(dy));
                if let Some(mut dx) = dx {
                    sgemm(1.0, dy, lin.w.t(), 0.0, &mut dx);
                }
            }
            (layer, s, _) => {
                let Some(mut dx) = dx else { return };
                match (layer, s) {
                    (Layer::MaxPool(_), Scratch::Arg(arg)) => pool::max_backward(dy, arg, dx),
                    (Layer::AvgPool(wd), _) => pool::avg_backward(wd, dy, dx),
                    (Layer::Gap, _) => pool::gap_backward(dy, dx),
                    (Layer::Relu, _) => Zip::from(&mut dx)
                        .and(&dy)
                        .and(&y)
                        .par_for_each(|d, &g, &y| *d = if y > 0.0 { g } else { 0.0 }),
                    (Layer::Dropout(_), Scratch::Mask(mask)) => Zip::from(&mut dx)
                        .and(&dy)
                        .and(&*mask)
                        .par_for_each(|d, &g, &m| *d = g * m),
                    _ => dx.assign(&dy),
                }
            }
        }
    }
}
