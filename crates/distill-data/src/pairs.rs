//! `mnist-pairs:`: two MNIST digits side by side, a 100-class data set made from real data with
//! nothing to download, whose classes have natural groups of confusable neighbours (a class `ab`
//! is confused with `a'b` and `ab'` whenever digit `a` is confused with `a'`, so e.g. 44, 49, 94
//! and 99 are confused with each other).
//!
//! Written `mnist-pairs:rows=60000,test=10000,seed=1,dir=data/mnist` (every key optional; these
//! are the defaults):
//!
//! - each row is a 28 x 56 image (1,568 features, row-major): the left digit's 28 columns, then
//!   the right digit's;
//! - its class is `10 · left + right`, so class 49 (named "49") is a 4 beside a 9; classes run
//!   from 0 ("00") to 99 ("99");
//! - row `r` of either split has class `r mod 100`, so the classes are balanced and the first `n`
//!   rows cover them evenly; its two digits are drawn at random (seeded) from the MNIST images of
//!   those digits **in the same split**: train pairs are made only of training digits and test
//!   pairs only of test digits, so no test digit is ever seen in training;
//! - `rows` and `test` are the sizes of the train and test splits; `seed` makes every draw
//!   reproducible (train and test draw from two streams of it); `dir` is the folder of the MNIST
//!   IDX files (relative to the working folder).

use super::{Dataset, ImageShape, Split};
use distill_core::rng::Rng;
use distill_core::{CoreError, Result};
use ndarray::Array2;
use rayon::prelude::*;
use std::path::PathBuf;

/// The parameters of a pairs data set; see the module documentation.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PairsSpec {
    /// Rows of the train split.
    pub rows: usize,
    /// Rows of the test split.
    pub test: usize,
    pub seed: u64,
    /// The folder of the MNIST IDX files the digits come from.
    pub dir: PathBuf,
}

/// Height of a pair image.
pub const HEIGHT: usize = 28;
/// Width of a pair image (two 28-pixel digits).
pub const WIDTH: usize = 56;
/// Number of classes ("00" to "99").
pub const CLASSES: usize = 100;

const STREAM_TRAIN: u64 = 0x9A12;
const STREAM_TEST: u64 = 0x9A13;

impl Default for PairsSpec {
    fn default() -> Self {
        PairsSpec {
            rows: 60_000,
            test: 10_000,
            seed: 1,
            dir: PathBuf::from("data/mnist"),
        }
    }
}

impl PairsSpec {
    /// Parses the part after `mnist-pairs:`, e.g. `rows=120000,seed=1`.
    pub fn parse(text: &str) -> Result<Self> {
        let mut spec = PairsSpec::default();
        let usage = "write e.g. mnist-pairs:rows=60000,test=10000,seed=1,dir=data/mnist (every key \
                     optional)";
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').ok_or_else(|| {
                CoreError::invalid(format!(
                    "mnist-pairs data: '{part}' is not key=value; {usage}"
                ))
            })?;
            let value = value.trim();
            let bad = || {
                CoreError::invalid(format!(
                    "mnist-pairs data: '{value}' is not a valid value for {key}; {usage}"
                ))
            };
            match key.trim() {
                "rows" => spec.rows = value.parse().map_err(|_| bad())?,
                "test" => spec.test = value.parse().map_err(|_| bad())?,
                "seed" => spec.seed = value.parse().map_err(|_| bad())?,
                "dir" if !value.is_empty() => spec.dir = PathBuf::from(value),
                "dir" => return Err(bad()),
                other => {
                    return Err(CoreError::invalid(format!(
                        "mnist-pairs data: unknown field '{other}'; {usage}"
                    )));
                }
            }
        }
        if spec.rows == 0 || spec.test == 0 {
            return Err(CoreError::invalid(format!(
                "mnist-pairs data: rows and test must be at least 1; {usage}"
            )));
        }
        Ok(spec)
    }

    /// The canonical argument, every field spelled out (accepted back by [`PairsSpec::parse`]).
    pub fn describe(&self) -> String {
        format!(
            "mnist-pairs:rows={},test={},seed={},dir={}",
            self.rows,
            self.test,
            self.seed,
            self.dir.display()
        )
    }

    /// The name of class `c` ("00" to "99").
    pub fn class_name(c: usize) -> String {
        format!("{:02}", c)
    }

    /// Generates a whole split from the MNIST digits of the same split.
    pub fn load(&self, split: Split) -> Result<Dataset> {
        if !self.dir.is_dir() {
            return Err(CoreError::invalid(format!(
                "mnist-pairs data: dir={} is not a folder; give the folder of the MNIST IDX files \
                 (e.g. dir=data/mnist)",
                self.dir.display()
            )));
        }
        let digits = super::load_mnist(&self.dir, split)?;
        let shape = digits.image.unwrap_or(ImageShape::gray(HEIGHT, HEIGHT));
        if shape != ImageShape::gray(HEIGHT, HEIGHT) {
            let (h, w) = (shape.height, shape.width);
            return Err(CoreError::invalid(format!(
                "mnist-pairs data: the digits in {} are {h}x{w} images; pairs need 28x28 MNIST digits",
                self.dir.display()
            )));
        }
        let digit_labels = digits.require_labels("mnist-pairs")?;
        let mut by_digit: Vec<Vec<usize>> = vec![Vec::new(); 10];
        for (r, &l) in digit_labels.iter().enumerate() {
            by_digit[l as usize].push(r);
        }
        if let Some(d) = by_digit.iter().position(Vec::is_empty) {
            return Err(CoreError::invalid(format!(
                "mnist-pairs data: the {split} split of {} has no image of digit {d}",
                self.dir.display()
            )));
        }
        let (rows, stream) = match split {
            Split::Train => (self.rows, STREAM_TRAIN),
            Split::Test => (self.test, STREAM_TEST),
        };
        let mut rng = Rng::derive(self.seed, stream);
        let labels: Vec<u32> = (0..rows).map(|r| (r % CLASSES) as u32).collect();
        let sources: Vec<(usize, usize)> = labels
            .iter()
            .map(|&label| {
                let (a, b) = (label as usize / 10, label as usize % 10);
                let left = by_digit[a][rng.below(by_digit[a].len())];
                let right = by_digit[b][rng.below(by_digit[b].len())];
                (left, right)
            })
            .collect();
        let mut features = Array2::<f32>::zeros((rows, HEIGHT * WIDTH));
        let src = digits.features.view();
        features
            .as_slice_mut()
            .expect("a new array is contiguous")
            .par_chunks_mut(HEIGHT * WIDTH)
            .zip(sources.par_iter())
            .for_each(|(out, &(left, right))| {
                let (l, r) = (src.row(left), src.row(right));
                for y in 0..HEIGHT {
                    for x in 0..HEIGHT {
                        out[y * WIDTH + x] = l[y * HEIGHT + x];
                        out[y * WIDTH + HEIGHT + x] = r[y * HEIGHT + x];
                    }
                }
            });
        Ok(Dataset {
            name: format!("{}:{split}", self.describe()),
            features,
            labels: Some(labels),
            index: (0..rows as u64).collect(),
            classes: CLASSES,
            image: Some(ImageShape::gray(HEIGHT, WIDTH)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn mnist_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist")
    }

    #[test]
    fn parse_defaults_and_roundtrip() {
        let s = PairsSpec::parse("rows=120000,seed=3").unwrap();
        assert_eq!((s.rows, s.test, s.seed), (120_000, 10_000, 3));
        assert_eq!(s.dir, PathBuf::from("data/mnist"));
        let back = PairsSpec::parse(s.describe().strip_prefix("mnist-pairs:").unwrap()).unwrap();
        assert_eq!(back, s);
        for bad in ["rows=0", "rows=x", "colour=2", "seed", "dir="] {
            let e = PairsSpec::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("mnist-pairs data:"), "{bad}: {e}");
        }
        assert_eq!(PairsSpec::class_name(7), "07");
        assert_eq!(PairsSpec::class_name(94), "94");
    }

    /// Each half of a pair is an MNIST digit of the same split with the label's digit, the splits
    /// never share a digit image, and a seed reproduces the set.
    #[test]
    fn halves_are_digits_of_their_own_split() {
        let spec = PairsSpec {
            rows: 300,
            test: 200,
            seed: 5,
            dir: mnist_dir(),
        };
        let train = spec.load(Split::Train).unwrap();
        let test = spec.load(Split::Test).unwrap();
        assert_eq!(train.features.dim(), (300, 1568));
        assert_eq!(
            (train.classes, train.image),
            (100, Some(ImageShape::gray(28, 56)))
        );
        assert_eq!(
            train.features,
            spec.load(Split::Train).unwrap().features,
            "seeded"
        );
        let other = PairsSpec {
            seed: 6,
            ..spec.clone()
        };
        assert_ne!(other.load(Split::Train).unwrap().features, train.features);
        let digits_train = super::super::load_mnist(&spec.dir, Split::Train).unwrap();
        let digits_test = super::super::load_mnist(&spec.dir, Split::Test).unwrap();
        let half = |row: ndarray::ArrayView1<f32>, right: bool| -> Vec<f32> {
            (0..28)
                .flat_map(|y| (0..28).map(move |x| (y, x)))
                .map(|(y, x)| row[y * 56 + x + if right { 28 } else { 0 }])
                .collect()
        };
        let find = |set: &Dataset, img: &[f32]| -> Option<u32> {
            set.features
                .rows()
                .into_iter()
                .position(|r| r.iter().zip(img).all(|(a, b)| a == b))
                .map(|i| set.labels.as_ref().unwrap()[i])
        };
        for (set, own, other) in [
            (&train, &digits_train, &digits_test),
            (&test, &digits_test, &digits_train),
        ] {
            for r in [0usize, 49, 94, 199] {
                let label = set.labels.as_ref().unwrap()[r];
                assert_eq!(label as usize, r % 100);
                for (right, digit) in [(false, label / 10), (true, label % 10)] {
                    let img = half(set.features.row(r), right);
                    assert_eq!(find(own, &img), Some(digit), "row {r} right={right}");
                    assert_eq!(find(other, &img), None, "row {r} leaks across splits");
                }
            }
        }
    }
}
