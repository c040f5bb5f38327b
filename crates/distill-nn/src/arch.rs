//! One description of a sequential network, as a string of comma-separated tokens (the `--arch`
//! grammar) or as a YAML list of the same tokens:
//!
//! | token | layer |
//! |---|---|
//! | `conv:OUT:K[:sS][:pP]` | 2-D convolution, `OUT` channels, `K×K` kernel, stride `S` (1), zero padding `P` (0), with bias |
//! | `maxpool:K[:sS]` | max pooling over `K×K` windows, stride `S` (`K`), no padding |
//! | `avgpool:K[:sS]` | average pooling over `K×K` windows, stride `S` (`K`), no padding |
//! | `gap` | global average pooling: `[C, H, W]` to `[C, 1, 1]` |
//! | `bn` | batch normalisation per channel (momentum 0.1, eps 1e-5, as PyTorch's `BatchNorm2d`) |
//! | `flatten` | `[C, H, W]` to `C·H·W` features, in that (NCHW) order |
//! | `fc:N` | fully connected layer of `N` units; a final `fc` without `N` has one unit per class |
//! | `relu` | ReLU |
//! | `dropout:P` | inverted dropout at rate `P` in `[0, 1)` during training |
//!
//! For example `conv:32:5,relu,maxpool:2,conv:64:5:p2,relu,maxpool:2,flatten,fc:512,relu,dropout:0.5,fc`.
//! [`Arch::shapes`] infers every layer's output shape from the input shape `C,H,W` and refuses a
//! network that does not fit it.

use crate::{NnError, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One layer of an [`Arch`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LayerSpec {
    Conv {
        out: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
    },
    MaxPool {
        kernel: usize,
        stride: usize,
    },
    AvgPool {
        kernel: usize,
        stride: usize,
    },
    Gap,
    BatchNorm,
    Flatten,
    /// `None`: one unit per class (only as the last layer).
    Fc(Option<usize>),
    Relu,
    Dropout(f32),
}

/// The shape of one example between layers: an image `[C, H, W]` or a flat vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Image { c: usize, h: usize, w: usize },
    Flat(usize),
}

impl Shape {
    /// Values per example.
    pub fn len(&self) -> usize {
        match *self {
            Shape::Image { c, h, w } => c * h * w,
            Shape::Flat(n) => n,
        }
    }

    /// Channels of an image; a flat vector counts as `n` channels of `1×1`.
    pub fn channels(&self) -> usize {
        match *self {
            Shape::Image { c, .. } => c,
            Shape::Flat(n) => n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Shape::Image { c, h, w } => write!(f, "[{c}, {h}, {w}]"),
            Shape::Flat(n) => write!(f, "[{n}]"),
        }
    }
}

/// A sequential network's layers (see the module notes for the grammar).
#[derive(Clone, Debug, PartialEq)]
pub struct Arch {
    pub layers: Vec<LayerSpec>,
}

impl Arch {
    /// The MLP of `hidden` ReLU layers (each followed by dropout at `dropout` when above 0) and
    /// an output layer of one unit per class, on flat input: `--hidden 800,800` as an `Arch`.
    pub fn mlp(hidden: &[usize], dropout: f32) -> Arch {
        let mut layers = vec![LayerSpec::Flatten];
        for &h in hidden {
            layers.push(LayerSpec::Fc(Some(h)));
            layers.push(LayerSpec::Relu);
            if dropout > 0.0 {
                layers.push(LayerSpec::Dropout(dropout));
            }
        }
        layers.push(LayerSpec::Fc(None));
        Arch { layers }
    }

    /// The output shape of every layer for an input of `input` and `classes` classes, or an
    /// error naming the first layer that does not fit.
    pub fn shapes(&self, input: Shape, classes: usize) -> Result<Vec<Shape>> {
        if input.is_empty() || classes == 0 {
            return Err(NnError::Shape(format!(
                "a network needs a non-empty input and at least one class; got input {input} and \
                 {classes} classes"
            )));
        }
        let last = self.layers.len().checked_sub(1).ok_or_else(|| {
            NnError::Shape("an architecture needs at least one layer, ending in fc".into())
        })?;
        let mut shape = input;
        let mut out = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            let at = |msg: String| NnError::Shape(format!("layer {} ('{layer}'): {msg}", i + 1));
            let image = |s: Shape| match s {
                Shape::Image { c, h, w } => Ok((c, h, w)),
                Shape::Flat(n) => Err(at(format!(
                    "needs an image [C, H, W] but gets a flat vector of {n} (after flatten or fc); \
                     move it before flatten"
                ))),
            };
            let window = |h: usize, w: usize, k: usize, s: usize, p: usize| {
                if k == 0 || s == 0 {
                    return Err(at("kernel and stride must be above 0".into()));
                }
                if h + 2 * p < k || w + 2 * p < k {
                    return Err(at(format!(
                        "a {k}x{k} kernel is larger than its padded input {}x{} (input {shape})",
                        h + 2 * p,
                        w + 2 * p
                    )));
                }
                Ok(((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1))
            };
            shape = match *layer {
                LayerSpec::Conv {
                    out: o,
                    kernel,
                    stride,
                    pad,
                } => {
                    let (_, h, w) = image(shape)?;
                    if o == 0 {
                        return Err(at("a convolution needs at least one output channel".into()));
                    }
                    let (h, w) = window(h, w, kernel, stride, pad)?;
                    Shape::Image { c: o, h, w }
                }
                LayerSpec::MaxPool { kernel, stride } | LayerSpec::AvgPool { kernel, stride } => {
                    let (c, h, w) = image(shape)?;
                    let (h, w) = window(h, w, kernel, stride, 0)?;
                    Shape::Image { c, h, w }
                }
                LayerSpec::Gap => {
                    let (c, _, _) = image(shape)?;
                    Shape::Image { c, h: 1, w: 1 }
                }
                LayerSpec::BatchNorm => {
                    image(shape)?;
                    shape
                }
                LayerSpec::Flatten => Shape::Flat(shape.len()),
                LayerSpec::Fc(width) => {
                    if let Shape::Image { .. } = shape {
                        return Err(at(format!(
                            "needs a flat vector but gets an image {shape}; put flatten before it"
                        )));
                    }
                    match width {
                        Some(0) => return Err(at("fc needs at least one unit".into())),
                        Some(n) => Shape::Flat(n),
                        None if i == last => Shape::Flat(classes),
                        None => {
                            return Err(at(
                                "only the last fc may leave out its width (one unit per class); \
                                 give this one a width, e.g. fc:512"
                                    .into(),
                            ));
                        }
                    }
                }
                LayerSpec::Relu => shape,
                LayerSpec::Dropout(p) => {
                    if !(0.0..1.0).contains(&p) {
                        return Err(at(format!("dropout rate {p} must be in [0, 1)")));
                    }
                    shape
                }
            };
            out.push(shape);
        }
        if shape != Shape::Flat(classes) || !matches!(self.layers[last], LayerSpec::Fc(_)) {
            return Err(NnError::Shape(format!(
                "the network must end in fc with one unit per class ({classes}); it ends in \
                 '{}' giving {shape}; end it with fc",
                self.layers[last]
            )));
        }
        Ok(out)
    }
}

impl fmt::Display for LayerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LayerSpec::Conv {
                out,
                kernel,
                stride,
                pad,
            } => {
                write!(f, "conv:{out}:{kernel}")?;
                if stride != 1 {
                    write!(f, ":s{stride}")?;
                }
                if pad != 0 {
                    write!(f, ":p{pad}")?;
                }
                Ok(())
            }
            LayerSpec::MaxPool { kernel, stride } | LayerSpec::AvgPool { kernel, stride } => {
                let name = if matches!(self, LayerSpec::MaxPool { .. }) {
                    "maxpool"
                } else {
                    "avgpool"
                };
                write!(f, "{name}:{kernel}")?;
                if stride != kernel {
                    write!(f, ":s{stride}")?;
                }
                Ok(())
            }
            LayerSpec::Gap => f.write_str("gap"),
            LayerSpec::BatchNorm => f.write_str("bn"),
            LayerSpec::Flatten => f.write_str("flatten"),
            LayerSpec::Fc(Some(n)) => write!(f, "fc:{n}"),
            LayerSpec::Fc(None) => f.write_str("fc"),
            LayerSpec::Relu => f.write_str("relu"),
            LayerSpec::Dropout(p) => write!(f, "dropout:{p}"),
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, l) in self.layers.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{l}")?;
        }
        Ok(())
    }
}

const GRAMMAR: &str = "conv:OUT:K[:sS][:pP], maxpool:K[:sS], avgpool:K[:sS], gap, bn, flatten, \
                       fc[:N], relu or dropout:P";

impl std::str::FromStr for LayerSpec {
    type Err = NnError;
    fn from_str(token: &str) -> Result<Self> {
        let token = token.trim();
        let bad = |what: String| {
            NnError::Shape(format!(
                "architecture token '{token}': {what}; the tokens are {GRAMMAR}"
            ))
        };
        let parts: Vec<&str> = token.split(':').collect();
        let number = |s: &str, what: &str| {
            s.parse::<usize>()
                .map_err(|_| bad(format!("expected {what} (a whole number), found '{s}'")))
        };
        let option = |s: &str, prefix: char, what: &str| match s.strip_prefix(prefix) {
            Some(v) => number(v, what).map(Some),
            None => Ok(None),
        };
        let (name, args) = (parts[0], &parts[1..]);
        let no_args = |spec: LayerSpec| {
            if args.is_empty() {
                Ok(spec)
            } else {
                Err(bad(format!("'{name}' takes no arguments")))
            }
        };
        match name {
            "conv" => {
                let [out, kernel, rest @ ..] = args else {
                    return Err(bad(
                        "expected conv:OUT:K, e.g. conv:32:5 or conv:64:3:s2:p1".into(),
                    ));
                };
                let (mut stride, mut pad) = (1, 0);
                for r in rest {
                    if let Some(s) = option(r, 's', "a stride")? {
                        stride = s;
                    } else if let Some(p) = option(r, 'p', "a padding")? {
                        pad = p;
                    } else {
                        return Err(bad(format!("expected sS or pP, found '{r}'")));
                    }
                }
                Ok(LayerSpec::Conv {
                    out: number(out, "an output channel count")?,
                    kernel: number(kernel, "a kernel size")?,
                    stride,
                    pad,
                })
            }
            "maxpool" | "avgpool" => {
                let (kernel, stride) = match args {
                    [k] => {
                        let k = number(k, "a kernel size")?;
                        (k, k)
                    }
                    [k, s] => (
                        number(k, "a kernel size")?,
                        option(s, 's', "a stride")?
                            .ok_or_else(|| bad(format!("expected sS, found '{s}'")))?,
                    ),
                    _ => return Err(bad(format!("expected {name}:K or {name}:K:sS"))),
                };
                Ok(if name == "maxpool" {
                    LayerSpec::MaxPool { kernel, stride }
                } else {
                    LayerSpec::AvgPool { kernel, stride }
                })
            }
            "gap" => no_args(LayerSpec::Gap),
            "bn" => no_args(LayerSpec::BatchNorm),
            "flatten" => no_args(LayerSpec::Flatten),
            "relu" => no_args(LayerSpec::Relu),
            "fc" => match args {
                [] => Ok(LayerSpec::Fc(None)),
                [n] => Ok(LayerSpec::Fc(Some(number(n, "a unit count")?))),
                _ => Err(bad("expected fc or fc:N".into())),
            },
            "dropout" => match args {
                [p] => {
                    let rate = p
                        .parse::<f32>()
                        .ok()
                        .filter(|r| (0.0..1.0).contains(r))
                        .ok_or_else(|| bad(format!("expected a rate in [0, 1), found '{p}'")))?;
                    Ok(LayerSpec::Dropout(rate))
                }
                _ => Err(bad("expected dropout:P, e.g. dropout:0.5".into())),
            },
            _ => Err(bad(format!("unknown layer '{name}'"))),
        }
    }
}

impl std::str::FromStr for Arch {
    type Err = NnError;
    /// Comma-separated tokens.
    fn from_str(s: &str) -> Result<Self> {
        if s.trim().is_empty() {
            return Err(NnError::Shape(format!(
                "an empty architecture; give comma-separated tokens: {GRAMMAR}"
            )));
        }
        Ok(Arch {
            layers: s.split(',').map(str::parse).collect::<Result<_>>()?,
        })
    }
}

impl Serialize for Arch {
    /// A list of tokens.
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_seq(self.layers.iter().map(|l| l.to_string()))
    }
}

impl<'de> Deserialize<'de> for Arch {
    /// A list of tokens, or one comma-separated string.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            One(String),
            List(Vec<String>),
        }
        let text = match Form::deserialize(d)? {
            Form::One(s) => s,
            Form::List(v) => v.join(","),
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses `C,H,W` (e.g. `1,28,28`) into an image shape.
pub fn parse_input_shape(s: &str) -> Result<Shape> {
    let dims: Option<Vec<usize>> = s.split(',').map(|d| d.trim().parse().ok()).collect();
    match dims.as_deref() {
        Some(&[c, h, w]) if c > 0 && h > 0 && w > 0 => Ok(Shape::Image { c, h, w }),
        _ => Err(NnError::Shape(format!(
            "input shape '{s}': expected C,H,W of three whole numbers above 0, e.g. 1,28,28"
        ))),
    }
}
