//! Probability teachers are stored as logits; their tempered softmax must be the teacher's own
//! tempered distribution, for any f32 probability (tiny, subnormal, zero), checked against NumPy
//! (fixtures/gen_tempered_probs.py, float64).

use distill_core::math::{probabilities_to_logits, softmax};
use ndarray::Array2;

#[test]
fn tempered_softmax_of_stored_probabilities_matches_numpy() {
    let text = include_str!("fixtures/tempered_probs.json");
    let fixture: serde_json::Value = serde_json::from_str(text).expect("fixture is JSON");
    let rows: Vec<Vec<f32>> = serde_json::from_value(fixture["probabilities"].clone()).unwrap();
    let (n, c) = (rows.len(), rows[0].len());
    let p = Array2::from_shape_vec((n, c), rows.concat()).unwrap();
    let logits = probabilities_to_logits(p.view());
    assert!(
        logits.iter().all(|v| v.is_finite()),
        "stored logits must be finite"
    );
    let temperatures = fixture["temperatures"].as_object().unwrap();
    assert_eq!(temperatures.len(), 3);
    for (t, expected) in temperatures {
        let t: f32 = t.parse().unwrap();
        let expected: Vec<Vec<f64>> = serde_json::from_value(expected.clone()).unwrap();
        let q = softmax(logits.view(), t);
        for (i, row) in expected.iter().enumerate() {
            for (j, &e) in row.iter().enumerate() {
                let got = f64::from(q[[i, j]]);
                assert!(
                    (got - e).abs() <= 1e-6 + 1e-5 * e,
                    "T = {t}, row {i}, class {j}: {got} vs NumPy {e}"
                );
            }
        }
    }
}
