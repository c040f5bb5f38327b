//! A specialist's starting point: the generalist's whole network, with a folded head (see
//! [`distill_nn::fold`]): its outputs are the generalist's logits of the subset's classes and, as
//! the dustbin, the exact log-sum-exp of the generalist's logits of every other class. Before
//! training, a specialist's softmax is therefore the generalist's distribution folded onto the
//! subset and the dustbin, to float precision, and combining untrained specialists with the
//! generalist leaves the generalist's distribution unchanged.
//!
//! The training stage then lowers the dustbin logit by the dustbin correction (see
//! [`crate::targets::dustbin_correction`]), so the start is calibrated for the oversampled stream
//! it trains on; adding the correction back after training undoes exactly that shift.

use crate::targets::SubsetMap;
use crate::{Result, SpecialistsError};
use distill_nn::{Mlp, Model};
use distill_train::Regularisation;

/// The specialist for `map`'s subset, started from `generalist` (see the module documentation),
/// of the generalist's kind and architecture. `regularisation` sets the specialist's max-norm
/// bound and, for an MLP, its dropout; a net's dropout is in its architecture, so a net
/// generalist with `--input-dropout`/`--hidden-dropout` is refused.
pub fn from_generalist(
    generalist: &Model,
    map: &SubsetMap,
    regularisation: &Regularisation,
) -> Result<Model> {
    if generalist.fold().is_some() {
        return Err(SpecialistsError::invalid(
            "the generalist is itself a specialist (its output is folded onto a subset); give the \
             generalist it was trained from",
        ));
    }
    if generalist.classes() != map.total() {
        return Err(SpecialistsError::invalid(format!(
            "the generalist has {} classes, the subsets {}",
            generalist.classes(),
            map.total()
        )));
    }
    let start = match generalist {
        Model::Mlp(g) => {
            let config = regularisation.mlp_config(g.config.sizes.clone());
            config.validate()?;
            Model::Mlp(Mlp {
                config,
                ..g.clone()
            })
        }
        Model::Net(g) => {
            if regularisation.input_dropout > 0.0 || regularisation.hidden_dropout > 0.0 {
                return Err(SpecialistsError::invalid(format!(
                    "--input-dropout/--hidden-dropout apply to an MLP generalist; this generalist \
                     is the network '{}', whose dropout is in its architecture (its dropout \
                     layers train the specialists too); leave the two flags out",
                    g.arch()
                )));
            }
            let mut net = g.clone();
            net.max_norm = regularisation.max_norm;
            Model::Net(net)
        }
    };
    Ok(start.folded(map.classes())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use distill_core::math::softmax;
    use distill_core::rng::Rng;
    use distill_nn::MlpConfig;
    use ndarray::Array2;

    #[test]
    fn starts_as_the_generalist_folded_onto_the_subset() {
        let g = Model::Mlp(
            Mlp::new(
                MlpConfig {
                    sizes: vec![6, 16, 12, 8],
                    input_dropout: 0.0,
                    hidden_dropout: 0.0,
                    max_norm: None,
                },
                7,
            )
            .unwrap(),
        );
        let map = SubsetMap::new(&[1, 4, 6], 8);
        let mut rng = Rng::new(3);
        let x = Array2::from_shape_simple_fn((600, 6), || rng.uniform() * 4.0);
        let reg = Regularisation {
            input_dropout: 0.0,
            hidden_dropout: 0.0,
            max_norm: None,
            jitter: 0,
            flip: false,
        };
        let s = from_generalist(&g, &map, &reg).unwrap();
        assert_eq!(s.classes(), 4);
        assert_eq!(s.params(), g.params());
        let q = softmax(s.forward(x.view()).unwrap().view(), 1.0);
        let folded = map.map_probs(softmax(g.forward(x.view()).unwrap().view(), 1.0).view());
        for (a, b) in q.iter().zip(folded.iter()) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        assert!(from_generalist(&s, &map, &reg).is_err());
    }
}
