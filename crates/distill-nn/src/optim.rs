//! Optimisers (SGD with momentum, Adam) and learning-rate schedules. The SGD step folds the
//! momentum update into the weight-gradient GEMM (`v = mu * v - lr * a^T dz`), so the gradient is
//! never materialised.

use crate::{NnError, Result};
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

/// How the learning rate changes from epoch to epoch.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Schedule {
    Constant,
    /// `lr * gamma^epoch`.
    Exponential {
        gamma: f32,
    },
    /// `lr * gamma^(epoch / every)`.
    Step {
        every: usize,
        gamma: f32,
    },
    /// Cosine decay from `lr` to 0 over `epochs`.
    Cosine {
        epochs: usize,
    },
}

impl Schedule {
    /// Factor applied to the base learning rate in (0-based) `epoch`.
    pub fn factor(&self, epoch: usize) -> f32 {
        match *self {
            Schedule::Constant => 1.0,
            Schedule::Exponential { gamma } => gamma.powi(epoch as i32),
            Schedule::Step { every, gamma } => gamma.powi((epoch / every.max(1)) as i32),
            Schedule::Cosine { epochs } => {
                let t = (epoch as f32 / epochs.max(1) as f32).min(1.0);
                0.5 * (1.0 + (std::f32::consts::PI * t).cos())
            }
        }
    }
}

impl std::str::FromStr for Schedule {
    type Err = NnError;
    /// `constant`, `exp:GAMMA`, `step:EVERY:GAMMA` or `cosine:EPOCHS`.
    fn from_str(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split(':').collect();
        let bad = || {
            NnError::Shape(format!(
                "unknown schedule '{s}': use constant, exp:GAMMA (e.g. exp:0.95), step:EVERY:GAMMA \
                 (e.g. step:10:0.5) or cosine:EPOCHS"
            ))
        };
        let f = |x: &str| x.parse::<f32>().map_err(|_| bad());
        let u = |x: &str| x.parse::<usize>().map_err(|_| bad());
        match parts.as_slice() {
            ["constant"] => Ok(Schedule::Constant),
            ["exp", g] => Ok(Schedule::Exponential { gamma: f(g)? }),
            ["step", e, g] => Ok(Schedule::Step {
                every: u(e)?,
                gamma: f(g)?,
            }),
            ["cosine", e] => Ok(Schedule::Cosine { epochs: u(e)? }),
            _ => Err(bad()),
        }
    }
}

/// An optimiser and its hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OptimizerConfig {
    /// SGD with momentum; momentum rises linearly from `momentum_start` to `momentum` over
    /// `momentum_ramp` epochs (Hinton et al.'s dropout recipe), or is constant when the ramp is 0.
    Sgd {
        lr: f32,
        momentum: f32,
        momentum_start: f32,
        momentum_ramp: usize,
        schedule: Schedule,
    },
    Adam {
        lr: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        schedule: Schedule,
    },
}

impl OptimizerConfig {
    /// SGD at a constant learning rate `lr` with constant momentum `momentum` (no ramp, no
    /// schedule).
    pub fn sgd(lr: f32, momentum: f32) -> Self {
        OptimizerConfig::Sgd {
            lr,
            momentum,
            momentum_start: momentum,
            momentum_ramp: 0,
            schedule: Schedule::Constant,
        }
    }

    pub fn learning_rate(&self, epoch: usize) -> f32 {
        match self {
            OptimizerConfig::Sgd { lr, schedule, .. }
            | OptimizerConfig::Adam { lr, schedule, .. } => lr * schedule.factor(epoch),
        }
    }

    pub fn momentum(&self, epoch: usize) -> f32 {
        match *self {
            OptimizerConfig::Sgd {
                momentum,
                momentum_start,
                momentum_ramp,
                ..
            } => {
                if momentum_ramp == 0 || epoch >= momentum_ramp {
                    momentum
                } else {
                    momentum_start
                        + (momentum - momentum_start) * epoch as f32 / momentum_ramp as f32
                }
            }
            OptimizerConfig::Adam { .. } => 0.0,
        }
    }
}

/// Per-layer optimiser state: the first moment (SGD's velocity) and Adam's second moment.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerState {
    pub m_w: Array2<f32>,
    pub m_b: Array1<f32>,
    pub v_w: Array2<f32>,
    pub v_b: Array1<f32>,
}

/// An optimiser with its state for one network.
#[derive(Clone, Debug, PartialEq)]
pub struct Optimizer {
    pub config: OptimizerConfig,
    pub state: Vec<LayerState>,
    /// Steps taken (Adam's bias correction).
    pub step: u64,
}

impl Optimizer {
    /// Fresh state for layers of the given `(inputs, outputs)` shapes.
    pub fn new(config: OptimizerConfig, shapes: &[(usize, usize)]) -> Self {
        let second = matches!(config, OptimizerConfig::Adam { .. });
        let state = shapes
            .iter()
            .map(|&(i, o)| LayerState {
                m_w: Array2::zeros((i, o)),
                m_b: Array1::zeros(o),
                v_w: if second {
                    Array2::zeros((i, o))
                } else {
                    Array2::zeros((0, 0))
                },
                v_b: if second {
                    Array1::zeros(o)
                } else {
                    Array1::zeros(0)
                },
            })
            .collect();
        Optimizer {
            config,
            state,
            step: 0,
        }
    }
}
