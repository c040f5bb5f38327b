//! A specialist's view of the classes: the subset's classes keep their own outputs, every other
//! class is the *dustbin*; labels, soft targets and the dustbin correction in those terms.

use ndarray::{Array2, ArrayView2, Axis, Zip};

/// How the generalist's classes map onto a specialist's outputs: output `k < len` is class
/// `classes[k]`, output `len` is the dustbin (every class not in the subset).
#[derive(Clone, Debug, PartialEq)]
pub struct SubsetMap {
    classes: Vec<u32>,
    /// For each of the generalist's classes, its output (the dustbin for classes outside).
    output_of: Vec<u32>,
}

impl SubsetMap {
    /// `classes` ascending and distinct, each below `total` (checked by the caller).
    pub fn new(classes: &[u32], total: usize) -> Self {
        let dustbin = classes.len() as u32;
        let mut output_of = vec![dustbin; total];
        for (k, &c) in classes.iter().enumerate() {
            output_of[c as usize] = k as u32;
        }
        SubsetMap {
            classes: classes.to_vec(),
            output_of,
        }
    }

    /// The subset's classes, in output order.
    pub fn classes(&self) -> &[u32] {
        &self.classes
    }

    /// The generalist's class count.
    pub fn total(&self) -> usize {
        self.output_of.len()
    }

    /// Outputs of the specialist: the subset's classes and the dustbin.
    pub fn outputs(&self) -> usize {
        self.classes.len() + 1
    }

    /// The dustbin's output.
    pub fn dustbin(&self) -> usize {
        self.classes.len()
    }

    pub fn contains(&self, class: u32) -> bool {
        (self.output_of[class as usize] as usize) < self.classes.len()
    }

    /// The specialist's label for a generalist label: its output, or the dustbin.
    pub fn label(&self, class: u32) -> u32 {
        self.output_of[class as usize]
    }

    pub fn map_labels(&self, labels: &[u32]) -> Vec<u32> {
        labels.iter().map(|&l| self.label(l)).collect()
    }

    /// Distributions over the generalist's classes (`[N, total]`) as distributions over the
    /// specialist's outputs (`[N, len + 1]`): the subset's probabilities as they are, the mass of
    /// every other class summed into the dustbin (summed, not `1 - subset`, so no cancellation).
    pub fn map_probs(&self, probs: ArrayView2<f32>) -> Array2<f32> {
        let mut out = Array2::<f32>::zeros((probs.nrows(), self.outputs()));
        Zip::from(out.axis_iter_mut(Axis(0)))
            .and(probs.axis_iter(Axis(0)))
            .par_for_each(|mut o, p| {
                for (&k, &v) in self.output_of.iter().zip(p.iter()) {
                    o[k as usize] += v;
                }
            });
        out
    }
}

/// The dustbin correction, `ln((1 − π) / π · s / (1 − s))`, for a subset whose classes make up a
/// share `π` of the real data and a share `s` of the training stream.
///
/// Training on a stream where the subset has share `s` instead of `π` multiplies the odds of each
/// subset class against the dustbin by `(s / π) / ((1 − s) / (1 − π))`, the oversampling factor
/// (Bayes' rule with the class priors changed, the class-conditional densities not). Adding its
/// logarithm to the dustbin logit divides those odds by it again, so the specialist's
/// probabilities are calibrated for the real class frequencies. With `s = 1/2` the correction is
/// `ln((1 − π) / π)`.
pub fn dustbin_correction(subset_share: f64, sampled_share: f64) -> f64 {
    ((1.0 - subset_share) / subset_share * sampled_share / (1.0 - sampled_share)).ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn labels_map_to_their_output_or_the_dustbin() {
        let m = SubsetMap::new(&[2, 5, 7], 10);
        assert_eq!((m.outputs(), m.dustbin(), m.total()), (4, 3, 10));
        assert_eq!(
            m.map_labels(&[0, 2, 5, 7, 9, 1]),
            vec![3, 0, 1, 2, 3, 3],
            "subset classes keep their order; the rest is the dustbin"
        );
        assert!(m.contains(5) && !m.contains(6));
    }

    #[test]
    fn soft_targets_keep_the_subset_and_sum_the_rest_into_the_dustbin() {
        let m = SubsetMap::new(&[1, 3], 5);
        let p = array![[0.1f32, 0.2, 0.3, 0.15, 0.25], [0.0, 0.9, 0.0, 0.1, 0.0]];
        let q = m.map_probs(p.view());
        let want = array![[0.2f32, 0.15, 0.65], [0.9, 0.1, 0.0]];
        for (a, b) in q.iter().zip(want.iter()) {
            assert!((a - b).abs() < 1e-6, "{q} vs {want}");
        }
        for row in q.rows() {
            assert!((row.sum() - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn correction_undoes_the_oversampling() {
        // Half/half sampling of a subset that is 10% of the data: the dustbin's odds were cut by 9.
        assert!((dustbin_correction(0.1, 0.5) - 9f64.ln()).abs() < 1e-12);
        // No oversampling, no correction.
        assert!(dustbin_correction(0.3, 0.3).abs() < 1e-12);
        // A subset that is most of the data was undersampled: the correction is negative.
        assert!(dustbin_correction(0.8, 0.5) < 0.0);
        // The corrected posterior: odds p(subset)/p(dustbin) at the sampled priors, divided by the
        // oversampling factor, equal the odds at the true priors.
        let (pi, s) = (0.2f64, 0.5f64);
        let like_ratio = 3.0; // p(x | subset) / p(x | dustbin)
        let odds_train = like_ratio * s / (1.0 - s);
        let odds_true = like_ratio * pi / (1.0 - pi);
        assert!((odds_train / dustbin_correction(pi, s).exp() - odds_true).abs() < 1e-12);
    }
}
