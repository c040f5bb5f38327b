//! Summary statistics of repeated measurements (timings in evaluation and benchmarks), and the
//! name of the CPU they were measured on.

/// The CPU model named in /proc/cpuinfo ("unknown CPU" where there is none): every speed figure
/// says which machine it came from.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The median of `values`, which it sorts in place: the middle value for an odd count, the mean
/// of the two middle values for an even count, 0 for none.
///
/// Meant for NaN-free input; a NaN sorts after every number ([`f64::total_cmp`]), so it never
/// panics but may be returned.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if !values.len().is_multiple_of(2) {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_count_is_the_middle_value() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [5.0, -1.0, 9.0, 0.5, 7.0]), 5.0);
        assert_eq!(median(&mut [4.25]), 4.25);
    }

    #[test]
    fn median_of_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&mut [10.0, -2.0]), 4.0);
    }

    #[test]
    fn median_of_nothing_is_zero_and_input_ends_sorted() {
        assert_eq!(median(&mut []), 0.0);
        let mut v = [3.0, -1.0, 2.0, 0.0];
        assert_eq!(median(&mut v), 1.0);
        assert_eq!(v, [-1.0, 0.0, 2.0, 3.0]);
    }
}
