//! Classification metrics of one model's (or ensemble's) predicted probabilities against the labels.
//!
//! Every function here is pure: it takes `[N, C]` probabilities (rows summing to one) and `N` labels, each
//! below `C` (callers check this; a larger label panics on indexing), and returns plain numbers. The
//! predicted class of a row is its first largest probability ([`distill_core::math::argmax_rows`]), and
//! every metric breaks ties the same way, so top-1 accuracy is exactly `1 - error rate`.

pub use distill_core::math::error_count;
use distill_core::math::{PROB_FLOOR, argmax_rows};
pub use distill_core::metrics::{ReliabilityBin, Summary, TopK};
use ndarray::ArrayView2;

/// Number of equal-width confidence bins of the expected calibration error.
pub const ECE_BINS: usize = 15;

/// The `k` of top-k accuracy that are reported, where the class count allows (`k < C`, and always `k = 1`).
pub const TOP_K: [usize; 3] = [1, 2, 5];

/// All metrics of [`Summary`] at once.
pub fn summarize(probs: ArrayView2<f32>, labels: &[u32]) -> Summary {
    let classes = probs.ncols();
    let predicted = argmax_rows(probs);
    let confusion = confusion_matrix(&predicted, labels, classes);
    let per_class_rows: Vec<usize> = confusion.iter().map(|row| row.iter().sum()).collect();
    let per_class_errors: Vec<usize> = confusion
        .iter()
        .enumerate()
        .map(|(c, row)| row.iter().sum::<usize>() - row[c])
        .collect();
    let errors = per_class_errors.iter().sum();
    let rows = labels.len();
    let top_k = TOP_K
        .iter()
        .filter(|&&k| k == 1 || k < classes)
        .map(|&k| TopK {
            k,
            accuracy: top_k_accuracy(probs, labels, k),
        })
        .collect();
    Summary {
        rows,
        errors,
        error_rate: ratio(errors, rows),
        per_class_errors,
        per_class_rows,
        confusion,
        nll: nll(probs, labels),
        ece: ece(probs, labels, ECE_BINS),
        top_k,
        reliability: reliability(probs, labels, ECE_BINS),
    }
}

/// `confusion[true][predicted]`: how many rows of each true class were predicted as each class.
pub fn confusion_matrix(predicted: &[usize], labels: &[u32], classes: usize) -> Vec<Vec<usize>> {
    let mut confusion = vec![vec![0usize; classes]; classes];
    for (&p, &y) in predicted.iter().zip(labels) {
        confusion[y as usize][p] += 1;
    }
    confusion
}

/// Mean negative log-likelihood of the labels, `mean(-ln max(p[label], 1e-12))`, in nats.
///
/// The floor ([`PROB_FLOOR`]) caps one row's contribution at about 27.6, so that a single confidently wrong
/// row of a probability model that outputs an exact 0 does not make the mean infinite.
pub fn nll(probs: ArrayView2<f32>, labels: &[u32]) -> f64 {
    if labels.is_empty() {
        return 0.0;
    }
    let total: f64 = probs
        .rows()
        .into_iter()
        .zip(labels)
        .map(|(row, &y)| -f64::from(row[y as usize].max(PROB_FLOOR)).ln())
        .sum();
    total / labels.len() as f64
}

/// Expected calibration error with `bins` equal-width confidence bins (Guo et al., 2017).
///
/// A row's confidence is its largest probability; bin `b` holds the rows with confidence in
/// `(b / bins, (b + 1) / bins]` (confidence 0 goes to bin 0). ECE is `sum over bins of (n_b / N) *
/// |accuracy_b - mean confidence_b|`, where accuracy is the share of the bin's rows whose predicted class is
/// the label. Empty bins contribute nothing.
pub fn ece(probs: ArrayView2<f32>, labels: &[u32], bins: usize) -> f64 {
    if labels.is_empty() {
        return 0.0;
    }
    let n = labels.len() as f64;
    reliability(probs, labels, bins)
        .iter()
        .filter(|b| b.rows > 0)
        .map(|b| {
            let m = b.rows as f64;
            (m / n) * (b.correct as f64 / m - b.confidence).abs()
        })
        .sum()
}

/// The `bins` equal-width confidence bins of [`ece`], in order, empty ones included (none for
/// `bins == 0`).
pub fn reliability(probs: ArrayView2<f32>, labels: &[u32], bins: usize) -> Vec<ReliabilityBin> {
    if bins == 0 {
        return Vec::new();
    }
    let predicted = argmax_rows(probs);
    let mut count = vec![0usize; bins];
    let mut correct = vec![0usize; bins];
    let mut confidence = vec![0f64; bins];
    for ((row, &p), &y) in probs.rows().into_iter().zip(&predicted).zip(labels) {
        let conf = f64::from(row[p]);
        let bin = ((conf * bins as f64).ceil() as usize).clamp(1, bins) - 1;
        count[bin] += 1;
        confidence[bin] += conf;
        if p == y as usize {
            correct[bin] += 1;
        }
    }
    (0..bins)
        .map(|b| ReliabilityBin {
            lower: b as f64 / bins as f64,
            upper: (b + 1) as f64 / bins as f64,
            rows: count[b],
            correct: correct[b],
            confidence: if count[b] > 0 {
                confidence[b] / count[b] as f64
            } else {
                0.0
            },
        })
        .collect()
}

/// Share of rows whose label is among the `k` most probable classes.
///
/// The label's rank is the number of classes with a larger probability plus the number of earlier classes
/// with an equal one (the tie rule of the predicted class); the row counts when that rank is below `k`.
pub fn top_k_accuracy(probs: ArrayView2<f32>, labels: &[u32], k: usize) -> f64 {
    let hits = probs
        .rows()
        .into_iter()
        .zip(labels)
        .filter(|(row, y)| {
            let y = **y as usize;
            let py = row[y];
            let rank = row
                .iter()
                .enumerate()
                .filter(|&(j, &v)| v > py || (v == py && j < y))
                .count();
            rank < k
        })
        .count();
    ratio(hits, labels.len())
}

/// Share of positions where two lists of predicted classes agree.
pub fn agreement(a: &[usize], b: &[usize]) -> f64 {
    let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
    ratio(same, a.len().min(b.len()))
}

fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};

    /// Six rows, three classes; row 4 is a tie between classes 0 and 2 (predicted 0). No confidence lies on
    /// a bin edge of the 15-bin ECE.
    fn fixture() -> (Array2<f32>, Vec<u32>) {
        let probs = array![
            [0.7f32, 0.2, 0.1],
            [0.1, 0.78, 0.12],
            [0.3, 0.28, 0.42],
            [0.5, 0.4, 0.1],
            [0.45, 0.1, 0.45],
            [0.05, 0.13, 0.82],
        ];
        (probs, vec![0, 1, 0, 1, 2, 2])
    }

    // Predicted classes (first maximum): [0, 1, 2, 0, 0, 2]; labels [0, 1, 0, 1, 2, 2].
    // Errors: rows 2 (0→2), 3 (1→0), 4 (2→0), so 3 errors, rate 0.5.
    #[test]
    fn errors_and_confusion() {
        let (p, y) = fixture();
        assert_eq!(error_count(p.view(), &y), 3);
        let s = summarize(p.view(), &y);
        assert_eq!(s.rows, 6);
        assert_eq!(s.errors, 3);
        assert_eq!(s.error_rate, 0.5);
        assert_eq!(
            s.confusion,
            vec![vec![1, 0, 1], vec![1, 1, 0], vec![1, 0, 1]]
        );
        assert_eq!(s.per_class_rows, vec![2, 2, 2]);
        assert_eq!(s.per_class_errors, vec![1, 1, 1]);
    }

    // NumPy (/work/main/.venv/bin/python), p the fixture as np.float32, y = [0, 1, 0, 1, 2, 2]:
    //   -np.mean(np.log(p[np.arange(6), y].astype(np.float64)))  -> 0.6203930847774347
    // (the mean of -ln 0.7, 0.78, 0.3, 0.4, 0.45, 0.82, each rounded to float32 first);
    //   -np.log(np.float64(np.float32(1e-12)))                    -> 27.631021119924352 (the floor).
    #[test]
    fn nll_matches_numpy() {
        let (p, y) = fixture();
        assert!((nll(p.view(), &y) - 0.620_393_084_777_434_7).abs() < 1e-9);
        let zero = array![[1.0f32, 0.0]];
        let capped = nll(zero.view(), &[1]);
        assert!((capped - 27.631_021_119_924_352).abs() < 1e-9, "{capped}");
    }

    // Confidences [0.7, 0.78, 0.42, 0.5, 0.45, 0.82], correct [1, 1, 0, 0, 0, 1].
    // 15 bins of width 1/15: 0.7 → bin 10 (0.667, 0.733]; 0.78 → bin 11 (0.733, 0.8];
    // 0.42 and 0.45 → bin 6 (0.4, 0.467]; 0.5 → bin 7 (0.467, 0.533]; 0.82 → bin 12 (0.8, 0.867].
    // ECE = (1/6)|1-0.7| + (1/6)|1-0.78| + (2/6)|0-0.435| + (1/6)|0-0.5| + (1/6)|1-0.82|
    //     = (0.3 + 0.22 + 0.87 + 0.5 + 0.18) / 6 = 2.07 / 6 = 0.345.
    // NumPy, binning with np.linspace(0, 1, 16) and (conf > lo) & (conf <= hi) on the float32 confidences,
    // gives 0.3450000037749608.
    #[test]
    fn ece_matches_hand_computation() {
        let (p, y) = fixture();
        let e = ece(p.view(), &y, ECE_BINS);
        assert!((e - 0.345_000_003_774_960_8).abs() < 1e-9, "{e}");
        let one_bin = ece(p.view(), &y, 1);
        let mean_conf = (0.7 + 0.78 + 0.42 + 0.5 + 0.45 + 0.82) / 6.0;
        assert!((one_bin - (mean_conf - 0.5f64)).abs() < 1e-6, "{one_bin}");
    }

    #[test]
    fn reliability_bins_hold_every_row_once() {
        let (p, y) = fixture();
        let bins = reliability(p.view(), &y, ECE_BINS);
        assert_eq!(bins.len(), ECE_BINS);
        assert_eq!(bins.iter().map(|b| b.rows).sum::<usize>(), 6);
        assert_eq!(bins.iter().map(|b| b.correct).sum::<usize>(), 3);
        assert!((bins[14].upper - 1.0).abs() < 1e-12 && bins[0].lower == 0.0);
        // Confidence 0.7 lies in (10/15, 11/15]: bin 10, a correct row alone there.
        assert_eq!((bins[10].rows, bins[10].correct), (1, 1));
        assert!((bins[10].confidence - 0.7).abs() < 1e-6);
        let one = reliability(p.view(), &y, 1);
        let mean_conf = (0.7 + 0.78 + 0.42 + 0.5 + 0.45 + 0.82) / 6.0;
        assert_eq!((one[0].rows, one[0].correct), (6, 3));
        assert!((one[0].confidence - mean_conf).abs() < 1e-6);
    }

    // Label ranks (larger, plus equal earlier): row0 0, row1 0, row2 1 (only 0.42 > 0.3),
    // row3 1, row4 1 (class 0 equal and earlier), row5 0. top-1: 3/6, top-2: 6/6.
    #[test]
    fn top_k_breaks_ties_like_argmax() {
        let (p, y) = fixture();
        assert_eq!(top_k_accuracy(p.view(), &y, 1), 0.5);
        assert_eq!(top_k_accuracy(p.view(), &y, 2), 1.0);
        let s = summarize(p.view(), &y);
        let ks: Vec<usize> = s.top_k.iter().map(|t| t.k).collect();
        assert_eq!(ks, vec![1, 2]);
        assert_eq!(s.top_k[0].accuracy, 1.0 - s.error_rate);
    }

    #[test]
    fn agreement_counts_equal_predictions() {
        assert_eq!(agreement(&[0, 1, 2, 0], &[0, 1, 1, 1]), 0.5);
        assert_eq!(agreement(&[], &[]), 0.0);
    }
}
