//! The class-by-class matrices that say which classes an ensemble confuses, and the feature
//! vectors K-means clusters.

use crate::{ClusterError, Result};
use ndarray::{Array1, Array2, ArrayView2, Axis};

/// Which matrix the classes are clustered by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// The second-moment (co-prediction) matrix `E[p pᵀ]` of the ensemble's predicted
    /// distributions: their covariance plus `μ μᵀ` (docs/method.md §5); needs no labels. Called
    /// `covariance` until version 0.2; that spelling is still read.
    #[serde(rename = "second-moment", alias = "covariance")]
    SecondMoment,
    /// Symmetrised, row-normalised confusion matrix of the ensemble's argmax against the labels.
    Confusion,
}

impl std::str::FromStr for Method {
    type Err = ClusterError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "second-moment" | "covariance" => Ok(Method::SecondMoment),
            "confusion" => Ok(Method::Confusion),
            other => Err(ClusterError::Invalid(format!(
                "unknown method '{other}': use second-moment or confusion"
            ))),
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::SecondMoment => "second-moment",
            Method::Confusion => "confusion",
        })
    }
}

/// Rows per GEMM in [`covariance`]; each block's product is added into an `f64` accumulator.
const COVARIANCE_BLOCK: usize = 4096;

/// The column means of `p` and the sum over rows of the centred outer products
/// `Σ (p_r - μ)(p_r - μ)ᵀ`. Means are taken in `f64`; the centred rows go through `f32` GEMMs
/// (`.t().dot()`) of [`COVARIANCE_BLOCK`] rows whose products are summed in `f64`.
fn centred_gram(p: ArrayView2<f32>) -> (Array1<f64>, Array2<f64>) {
    let (n, c) = p.dim();
    let mut mean = Array1::<f64>::zeros(c);
    for row in p.rows() {
        mean.zip_mut_with(&row, |m, &v| *m += v as f64);
    }
    mean /= n.max(1) as f64;
    let mean32 = mean.mapv(|v| v as f32);
    let mut acc = Array2::<f64>::zeros((c, c));
    for block in p.axis_chunks_iter(Axis(0), COVARIANCE_BLOCK) {
        let centred = &block - &mean32;
        let g = centred.t().dot(&centred);
        acc.zip_mut_with(&g, |a, &v| *a += v as f64);
    }
    (mean, acc)
}

/// The `[C, C]` sample covariance (divided by `N - 1`) of the columns of `p` (`[N, C]`, `N ≥ 2`):
/// the paper's matrix.
pub fn covariance(p: ArrayView2<f32>) -> Array2<f64> {
    let (_, gram) = centred_gram(p);
    gram / (p.nrows().max(2) - 1) as f64
}

/// The co-prediction matrix `E[p pᵀ] = cov + μ μᵀ` (population covariance plus the outer product
/// of the means) of the rows of `p`: entry `(i, j)` is the mean over rows of `p_i · p_j`, the
/// mass the ensemble puts on both classes at once.
///
/// This is what the covariance method clusters. Two classes that are never predicted together
/// have covariance `-μ_i μ_j`, not 0; with thousands of classes (the paper's case) that is
/// negligible, but with ten it is as large as the confusions themselves (on MNIST every
/// off-diagonal covariance is negative at `T = 1`), so the baseline is added back.
pub fn co_prediction(p: ArrayView2<f32>) -> Array2<f64> {
    let (mean, gram) = centred_gram(p);
    let n = p.nrows().max(1) as f64;
    let mut m = gram / n;
    for ((i, j), v) in m.indexed_iter_mut() {
        *v += mean[i] * mean[j];
    }
    m
}

/// The confusion matrix of `predicted` against `labels` over `classes` classes, each row divided by
/// its total (rows of classes that never occur stay zero), then symmetrised as `(R + Rᵀ) / 2`.
pub fn confusion(predicted: &[usize], labels: &[u32], classes: usize) -> Array2<f64> {
    let mut m = Array2::<f64>::zeros((classes, classes));
    for (&p, &l) in predicted.iter().zip(labels) {
        if (l as usize) < classes && p < classes {
            m[[l as usize, p]] += 1.0;
        }
    }
    for mut row in m.rows_mut() {
        let total = row.sum();
        if total > 0.0 {
            row /= total;
        }
    }
    let t = m.t().to_owned();
    (m + t) / 2.0
}

/// The off-diagonal confusion mass of each class: the sum of the positive off-diagonal entries
/// of its column. Negative covariances (classes predicted apart) carry no confusion.
pub fn off_diagonal_mass(m: ArrayView2<f64>) -> Vec<f64> {
    (0..m.ncols())
        .map(|j| {
            m.column(j)
                .iter()
                .enumerate()
                .filter(|&(i, &v)| i != j && v > 0.0)
                .map(|(_, &v)| v)
                .sum()
        })
        .collect()
}

/// The positive off-diagonal mass among `members` (ordered pairs, so each pair counts twice, as
/// it does in the total of [`off_diagonal_mass`]).
pub fn mass_within(m: ArrayView2<f64>, members: &[usize]) -> f64 {
    let mut sum = 0.0;
    for &i in members {
        for &j in members {
            if i != j {
                sum += m[[i, j]].max(0.0);
            }
        }
    }
    sum
}

/// The vector K-means clusters each of `classes`: its column of the matrix restricted to
/// `classes`, with negative entries set to zero, its own (diagonal) entry replaced by its largest
/// off-diagonal entry, and scaled to unit length. Row `r` of the result is the feature of
/// `classes[r]`.
///
/// The diagonal (a class's own variance, or its accuracy) is far larger than any off-diagonal
/// entry and would make every class look equally unlike every other; zeroing it would make two
/// classes that only confuse each other orthogonal (`e_k` against `e_j`). Replacing it by the
/// largest off-diagonal entry gives such a pair the same vector. Unit length makes the distance
/// measure co-confusion patterns rather than how often a class is predicted.
pub fn features(m: ArrayView2<f64>, classes: &[usize]) -> Array2<f64> {
    let mut f = Array2::<f64>::zeros((classes.len(), classes.len()));
    for (r, &j) in classes.iter().enumerate() {
        let mut row = f.row_mut(r);
        let mut top = 0.0f64;
        for (k, &i) in classes.iter().enumerate() {
            if i != j {
                let v = m[[i, j]].max(0.0);
                row[k] = v;
                top = top.max(v);
            }
        }
        row[r] = top;
        let norm = row.dot(&row).sqrt();
        if norm > 0.0 {
            row /= norm;
        }
    }
    f
}

/// `m` with rows and columns taken in `order`.
pub fn reorder(m: ArrayView2<f64>, order: &[usize]) -> Array2<f64> {
    let rows = m.select(Axis(0), order);
    rows.select(Axis(1), order)
}

/// The largest absolute difference between two arrays of one shape.
pub fn max_abs_diff<D: ndarray::Dimension>(
    a: ndarray::ArrayView<f64, D>,
    b: ndarray::ArrayView<f64, D>,
) -> f64 {
    a.iter()
        .zip(b.iter())
        .fold(0.0f64, |d, (x, y)| d.max((x - y).abs()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    // NumPy reference (/work/main/.venv/bin/python):
    //   p = np.array([[.7,.2,.1],[.1,.6,.3],[.2,.2,.6],[.5,.4,.1],[.05,.05,.9]], dtype=np.float32)
    //   np.cov(p.astype(np.float64), rowvar=False)
    #[test]
    fn covariance_matches_numpy() {
        let p = array![
            [0.7f32, 0.2, 0.1],
            [0.1, 0.6, 0.3],
            [0.2, 0.2, 0.6],
            [0.5, 0.4, 0.1],
            [0.05, 0.05, 0.9]
        ];
        //   -> [[ 0.0779999973 -0.0017500005 -0.0762499984]
        //       [-0.0017500005  0.0455000037 -0.0437499992]
        //       [-0.0762499984 -0.0437499992  0.1199999954]]
        let expected = array![
            [0.0779999973, -0.0017500005, -0.0762499984],
            [-0.0017500005, 0.0455000037, -0.0437499992],
            [-0.0762499984, -0.0437499992, 0.1199999954]
        ];
        let c = covariance(p.view());
        assert!(max_abs_diff(c.view(), expected.view()) < 1e-7, "{c}");
        //   p64 = p.astype(np.float64); p64.T @ p64 / len(p64)
        //   -> [[0.158499997  0.0885000014 0.0630000017]
        //       [0.0885000014 0.1205000072 0.0810000044]
        //       [0.0630000017 0.0810000044 0.2559999987]]
        let expected = array![
            [0.158499997, 0.0885000014, 0.0630000017],
            [0.0885000014, 0.1205000072, 0.0810000044],
            [0.0630000017, 0.0810000044, 0.2559999987]
        ];
        let m = co_prediction(p.view());
        assert!(max_abs_diff(m.view(), expected.view()) < 1e-7, "{m}");
    }

    #[test]
    fn confusion_is_row_normalised_and_symmetric() {
        let labels = [0u32, 0, 0, 0, 1, 1, 2, 2];
        let predicted = [0usize, 0, 0, 1, 1, 0, 2, 2];
        let m = confusion(&predicted, &labels, 3);
        assert_eq!(m, m.t());
        assert!((m[[0, 1]] - (0.25 + 0.5) / 2.0).abs() < 1e-12);
        assert!((m[[0, 0]] - 0.75).abs() < 1e-12);
        assert_eq!(m[[2, 0]], 0.0);
    }

    #[test]
    fn features_make_a_confused_pair_identical() {
        let m = array![[0.9, 0.3, 0.0], [0.3, 0.8, -0.1], [0.0, -0.1, 0.7]];
        let f = features(m.view(), &[0, 1, 2]);
        let s = std::f64::consts::FRAC_1_SQRT_2;
        assert!(max_abs_diff(f.row(0), array![s, s, 0.0].view()) < 1e-12);
        assert!(max_abs_diff(f.row(1), array![s, s, 0.0].view()) < 1e-12);
        assert_eq!(f.row(2).sum(), 0.0);
        assert_eq!(off_diagonal_mass(m.view()), vec![0.3, 0.3, 0.0]);
        assert!((mass_within(m.view(), &[0, 1]) - 0.6).abs() < 1e-12);
        assert_eq!(reorder(m.view(), &[2, 0, 1])[[0, 0]], 0.7);
    }
}
