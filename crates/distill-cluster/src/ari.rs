//! The adjusted Rand index (Hubert & Arabie, 1985): agreement of two partitions of the same items,
//! 1 for identical partitions (up to renaming), about 0 for independent ones.

use std::collections::HashMap;

fn pairs(n: u64) -> f64 {
    (n * n.saturating_sub(1)) as f64 / 2.0
}

/// The adjusted Rand index of two labelings of the same items (`a.len() == b.len()`; extra items
/// of the longer one are ignored). Two trivial partitions that agree (all items together, or all
/// apart) score 1, as in scikit-learn.
pub fn ari(a: &[usize], b: &[usize]) -> f64 {
    let n = a.len().min(b.len());
    let mut table: HashMap<(usize, usize), u64> = HashMap::new();
    let mut rows: HashMap<usize, u64> = HashMap::new();
    let mut cols: HashMap<usize, u64> = HashMap::new();
    for (&x, &y) in a.iter().zip(b).take(n) {
        *table.entry((x, y)).or_default() += 1;
        *rows.entry(x).or_default() += 1;
        *cols.entry(y).or_default() += 1;
    }
    let index: f64 = table.values().map(|&v| pairs(v)).sum();
    let sum_a: f64 = rows.values().map(|&v| pairs(v)).sum();
    let sum_b: f64 = cols.values().map(|&v| pairs(v)).sum();
    let total = pairs(n as u64);
    if total == 0.0 {
        return 1.0;
    }
    let expected = sum_a * sum_b / total;
    let max = (sum_a + sum_b) / 2.0;
    if max == expected {
        return 1.0;
    }
    (index - expected) / (max - expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_up_to_renaming_is_one() {
        assert_eq!(ari(&[0, 0, 1, 1, 2], &[5, 5, 3, 3, 9]), 1.0);
        assert_eq!(ari(&[0, 0, 0], &[1, 1, 1]), 1.0);
        assert_eq!(ari(&[0, 1, 2], &[2, 0, 1]), 1.0);
    }

    // By hand for a = [0,0,0,1,1,1], b = [0,0,1,1,2,2]: the contingency table has cells 2,1,1,2,
    // so index = 1 + 0 + 0 + 1 = 2; rows 3,3 give sum_a = 6; columns 2,2,2 give sum_b = 3;
    // expected = 6·3/15 = 1.2; max = 4.5; ARI = (2 - 1.2) / (4.5 - 1.2) = 0.8 / 3.3.
    #[test]
    fn hand_computed_value() {
        let v = ari(&[0, 0, 0, 1, 1, 1], &[0, 0, 1, 1, 2, 2]);
        assert!((v - 0.8 / 3.3).abs() < 1e-12, "{v}");
    }

    // scikit-learn 1.9.1 (throwaway venv): sklearn.metrics.adjusted_rand_score(
    //   [0,0,1,1,2,2,3,3,3,0], [1,1,0,0,0,2,2,3,3,1]) -> 0.543918918918919
    //   [0,1,2,3], [0,0,1,1]                          -> 0.0
    #[test]
    fn matches_scikit_learn() {
        let v = ari(
            &[0, 0, 1, 1, 2, 2, 3, 3, 3, 0],
            &[1, 1, 0, 0, 0, 2, 2, 3, 3, 1],
        );
        assert!((v - 0.543918918918919).abs() < 1e-12, "{v}");
        assert_eq!(ari(&[0, 1, 2, 3], &[0, 0, 1, 1]), 0.0);
    }
}
