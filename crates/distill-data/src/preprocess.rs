//! Preprocessing described once: a scale and a per-channel mean and standard deviation, applied
//! to rows as loaded (`value = (x · scale − mean[c]) / std[c]` for a value `x` of channel `c`),
//! and the horizontal flip augmentation for natural images.
//!
//! Written `scale=S,mean=M,std=D` (every key optional; the defaults are `scale=1`, `mean=0`,
//! `std=1`, the identity), where `M` and `D` are one number for every channel or one per channel
//! separated by `:`, e.g. `mean=0.4914:0.4822:0.4465,std=0.247:0.243:0.261` (CIFAR-10's).

use crate::ImageShape;
use distill_core::rng::Rng;
use distill_core::{CoreError, Result};
use ndarray::ArrayViewMut2;

/// `value = (x · scale − mean[c]) / std[c]`, per channel `c`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Preprocess {
    pub scale: f32,
    /// One value for every channel, or one per channel.
    pub mean: Vec<f32>,
    /// One value for every channel, or one per channel; each positive.
    pub std: Vec<f32>,
}

impl Default for Preprocess {
    fn default() -> Self {
        Preprocess {
            scale: 1.0,
            mean: vec![0.0],
            std: vec![1.0],
        }
    }
}

const USAGE: &str = "write e.g. mean=0.4914:0.4822:0.4465,std=0.247:0.243:0.261 or \
                     scale=255,mean=33.3,std=78.6 (every key optional)";

impl Preprocess {
    /// Parses `scale=S,mean=M,std=D` (see the module's documentation).
    pub fn parse(text: &str) -> Result<Self> {
        let mut p = Preprocess::default();
        for (key, value) in crate::options("preprocessing", text, USAGE)? {
            let numbers = || -> Result<Vec<f32>> {
                value
                    .split(':')
                    .map(|v| v.trim().parse::<f32>().ok().filter(|v| v.is_finite()))
                    .collect::<Option<Vec<f32>>>()
                    .ok_or_else(|| {
                        CoreError::invalid(format!(
                            "preprocessing: {key}={value} is not a number or numbers separated \
                             by ':'; {USAGE}"
                        ))
                    })
            };
            match key.as_str() {
                "scale" => match numbers()?.as_slice() {
                    [s] if *s != 0.0 => p.scale = *s,
                    _ => {
                        return Err(CoreError::invalid(format!(
                            "preprocessing: scale={value} must be one non-zero number; {USAGE}"
                        )));
                    }
                },
                "mean" => p.mean = numbers()?,
                "std" => p.std = numbers()?,
                other => {
                    return Err(CoreError::invalid(format!(
                        "preprocessing: unknown field '{other}'; {USAGE}"
                    )));
                }
            }
        }
        if let Some(s) = p.std.iter().find(|s| **s <= 0.0) {
            return Err(CoreError::invalid(format!(
                "preprocessing: std {s} is not positive; every std must be above 0; {USAGE}"
            )));
        }
        Ok(p)
    }

    /// Whether applying it changes nothing.
    pub fn is_identity(&self) -> bool {
        self.scale == 1.0
            && self.mean.iter().all(|&m| m == 0.0)
            && self.std.iter().all(|&s| s == 1.0)
    }

    /// The canonical text, accepted back by [`Preprocess::parse`], for metadata.
    pub fn describe(&self) -> String {
        let join = |v: &[f32]| {
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(":")
        };
        format!(
            "scale={},mean={},std={}",
            self.scale,
            join(&self.mean),
            join(&self.std)
        )
    }

    /// The channel count this preprocessing is written for (`None`: one value fits any).
    pub fn channels(&self) -> Option<usize> {
        [self.mean.len(), self.std.len()]
            .into_iter()
            .find(|&n| n > 1)
    }

    /// Refuses per-channel values whose count is not the rows' channel count (`image`: the rows'
    /// shape; rows that are not images have one channel).
    pub fn check(&self, image: Option<ImageShape>) -> Result<()> {
        let channels = image.map_or(1, |s| s.channels);
        for (name, v) in [("mean", &self.mean), ("std", &self.std)] {
            if v.len() != 1 && v.len() != channels {
                return Err(CoreError::invalid(format!(
                    "preprocessing: {name} has {} values, but the rows have {channels} channel(s); \
                     give one {name} for all channels or one per channel",
                    v.len()
                )));
            }
        }
        Ok(())
    }

    /// Applies it in place to rows `[N, C·H·W]` of shape `image` (channel-major), or to flat rows
    /// (`None`, one channel).
    pub fn apply(&self, x: &mut ArrayViewMut2<f32>, image: Option<ImageShape>) -> Result<()> {
        self.check(image)?;
        let plane = image.map_or(x.ncols(), |s| s.plane());
        if let Some(shape) = image {
            shape.check_width(x.ncols())?;
        }
        let pick = |v: &[f32], c: usize| if v.len() == 1 { v[0] } else { v[c] };
        for mut row in x.rows_mut() {
            for (i, v) in row.iter_mut().enumerate() {
                let c = i / plane.max(1);
                *v = (*v * self.scale - pick(&self.mean, c)) / pick(&self.std, c);
            }
        }
        Ok(())
    }
}

/// Mirrors one channel-major image row left to right (every channel alike).
pub fn flip_row(row: &mut [f32], shape: ImageShape) {
    for line in row.chunks_exact_mut(shape.width) {
        line.reverse();
    }
}

/// Mirrors each image row of `x` left to right with probability one half, drawn per row from
/// `rng` (the horizontal flip augmentation; seeded, so a run is reproducible).
pub fn flip(x: &mut ArrayViewMut2<f32>, shape: ImageShape, rng: &mut Rng) {
    for mut row in x.rows_mut() {
        if rng.below(2) == 1
            && let Some(values) = row.as_slice_mut()
        {
            flip_row(values, shape);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn per_channel_mean_and_std_on_a_two_channel_toy() {
        // Two rows of a 2-channel 1x2 image: channel 0 then channel 1.
        let mut x = ndarray::array![[0.2f32, 0.4, 0.6, 0.8], [1.0, 0.0, 0.5, 0.25]];
        let p = Preprocess::parse("mean=0.5:0.25,std=0.5:0.25").unwrap();
        p.apply(&mut x.view_mut(), Some(ImageShape::new(2, 1, 2)))
            .unwrap();
        // Expected by hand: channel 0 (x - 0.5) / 0.5, channel 1 (x - 0.25) / 0.25.
        let expected = ndarray::array![[-0.6f32, -0.2, 1.4, 2.2], [1.0, -1.0, 1.0, 0.0]];
        for (a, b) in x.iter().zip(expected.iter()) {
            assert!((a - b).abs() < 1e-6, "{x} vs {expected}");
        }
        let back = Preprocess::parse(&p.describe()).unwrap();
        assert_eq!(back, p);
        let scaled = Preprocess::parse("scale=255,mean=127.5,std=127.5").unwrap();
        let mut y = ndarray::array![[0.0f32, 1.0]];
        scaled.apply(&mut y.view_mut(), None).unwrap();
        assert_eq!(y, ndarray::array![[-1.0f32, 1.0]]);
        assert!(Preprocess::default().is_identity() && !p.is_identity());
    }

    #[test]
    fn bad_preprocessing_is_refused_with_the_field() {
        let three = Preprocess::parse("mean=0.1:0.2:0.3").unwrap();
        let e = three
            .check(Some(ImageShape::gray(2, 2)))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mean has 3 values") && e.contains("1 channel"),
            "{e}"
        );
        for (text, needle) in [
            ("std=0", "not positive"),
            ("mean=a", "mean=a"),
            ("scale=0", "scale=0"),
            ("mean=1,mean=2", "twice"),
            ("gamma=2", "gamma"),
        ] {
            let e = Preprocess::parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn flip_twice_is_the_identity_and_is_seeded_per_row() {
        let shape = ImageShape::new(3, 2, 4);
        let x = Array2::from_shape_fn((40, 24), |(r, i)| (r * 24 + i) as f32);
        let mut once = x.clone();
        for mut row in once.rows_mut() {
            flip_row(row.as_slice_mut().unwrap(), shape);
        }
        assert_eq!(once[[0, 0]], 3.0);
        assert_eq!(once[[0, 8]], 11.0);
        let mut twice = once.clone();
        for mut row in twice.rows_mut() {
            flip_row(row.as_slice_mut().unwrap(), shape);
        }
        assert_eq!(twice, x);

        let (mut a, mut b) = (x.clone(), x.clone());
        flip(&mut a.view_mut(), shape, &mut Rng::new(3));
        flip(&mut b.view_mut(), shape, &mut Rng::new(3));
        assert_eq!(a, b);
        let flipped = (0..40).filter(|&r| a.row(r) == once.row(r)).count();
        let kept = (0..40).filter(|&r| a.row(r) == x.row(r)).count();
        assert_eq!(flipped + kept, 40);
        assert!((8..=32).contains(&flipped), "{flipped} of 40 flipped");
    }
}
