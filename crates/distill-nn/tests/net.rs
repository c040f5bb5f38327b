//! `Net` and `Arch`: gradients against finite differences, reproducibility, learning, and the
//! architecture grammar.

#![allow(clippy::unwrap_used)]

use distill_core::math::softmax;
use distill_core::rng::Rng;
use distill_nn::arch::parse_input_shape;
use distill_nn::layer::Layer;
use distill_nn::{
    Arch, DistillLoss, Mlp, MlpConfig, Net, NetWorkspace, Optimizer, OptimizerConfig, Schedule,
    Shape,
};
use ndarray::Array2;

fn image(c: usize, h: usize, w: usize) -> Shape {
    Shape::Image { c, h, w }
}

fn randn(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = Rng::new(seed);
    Array2::from_shape_simple_fn((rows, cols), || rng.normal())
}

/// The weights of parameter layer `p` (batch norm's scale as a `[1, C]` row) and its bias.
fn param(net: &mut Net, p: usize) -> (ndarray::ArrayViewMut2<'_, f32>, &mut ndarray::Array1<f32>) {
    net.layers
        .iter_mut()
        .filter_map(Layer::params_mut)
        .nth(p)
        .unwrap()
}

/// Every weight and bias gradient of the training-mode loss (dropout masks fixed by the seed,
/// batch norm on batch statistics) against central finite differences in f32 with h = 3e-4 (small enough that no ReLU or max-pool window changes side within ±h here; at 1e-3 one does).
/// Each parameter's gradient flows through the input gradient of every later layer, so this
/// checks every layer's input gradient except the first layer's (which the engine does not
/// compute). Inputs are continuous random values, so max-pool windows have no ties.
///
/// Tolerance: the loss (about 1) is summed in f32, so its rounding error (~1e-7 relative) over
/// 2h gives ~3e-4 noise; 2e-3 + 1e-2 · |fd| leaves room for that and for the curvature term
/// O(h²), while a wrong gradient (a factor, a transposition, a missed term) misses by far more.
fn check_gradients(arch: &str, input: Shape, classes: usize, rows: usize) {
    let arch: Arch = arch.parse().unwrap();
    let net = Net::new(arch.clone(), input, classes, 7).unwrap();
    let x = randn(rows, input.len(), 3);
    let teacher = randn(rows, classes, 4) * 2.0;
    let labels: Vec<u32> = (0..rows).map(|r| (r % classes) as u32).collect();
    let loss = DistillLoss {
        temperature: 2.0,
        alpha: 0.6,
    };
    let p = softmax(teacher.view(), 2.0);
    let value = |net: &Net| {
        let mut n = net.clone();
        n.gradients(
            x.view(),
            Some(p.view()),
            Some(&labels),
            &loss,
            11,
            &mut NetWorkspace::default(),
        )
        .unwrap()
        .total()
    };
    let mut ws = NetWorkspace::default();
    net.clone()
        .gradients(x.view(), Some(p.view()), Some(&labels), &loss, 11, &mut ws)
        .unwrap();
    let h = 3e-4f32;
    let mut checked = 0;
    for (pi, (gw, gb)) in ws.gradients().iter().enumerate() {
        let cells = gw.len() + gb.len();
        for k in 0..cells {
            let bump = |net: &mut Net, d: f32| {
                let (mut w, b) = param(net, pi);
                if k < w.len() {
                    let cols = w.ncols();
                    w[[k / cols, k % cols]] += d;
                } else {
                    b[k - w.len()] += d;
                }
            };
            let (mut plus, mut minus) = (net.clone(), net.clone());
            bump(&mut plus, h);
            bump(&mut minus, -h);
            let fd = (value(&plus) - value(&minus)) / (2.0 * h as f64);
            let analytic = if k < gw.len() {
                gw.as_slice().unwrap()[k]
            } else {
                gb[k - gw.len()]
            } as f64;
            assert!(
                (analytic - fd).abs() < 2e-3 + 1e-2 * fd.abs(),
                "{arch}: parameter layer {pi}, value {k}: analytic {analytic}, finite difference {fd}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, net.parameters());
}

#[test]
fn conv_bn_maxpool_dropout_fc_gradients_match_finite_differences() {
    check_gradients(
        "conv:3:3:p1,bn,relu,maxpool:2,conv:4:2:s2:p1,relu,flatten,fc:5,relu,dropout:0.3,fc",
        image(2, 6, 6),
        3,
        4,
    );
}

#[test]
fn strided_conv_avgpool_bn_gap_gradients_match_finite_differences() {
    check_gradients(
        "conv:4:3:s2:p1,avgpool:2:s1,bn,relu,gap,flatten,fc",
        image(2, 7, 7),
        3,
        5,
    );
}

/// A small CNN with every kind of layer and both optimisers.
fn run_steps(threads: usize, cfg: &OptimizerConfig, seed: u64) -> Net {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let arch: Arch = "conv:4:3:p1,bn,relu,maxpool:2,conv:6:3,relu,avgpool:2,flatten,fc:10,relu,dropout:0.5,fc"
            .parse()
            .unwrap();
        let mut net = Net::new(arch, image(1, 12, 12), 3, 5).unwrap();
        net.max_norm = Some(1.5);
        let x = randn(20, 144, 8);
        let y: Vec<u32> = (0..20).map(|i| (i % 3) as u32).collect();
        let mut opt = Optimizer::new(cfg.clone(), &net.shapes());
        let mut ws = NetWorkspace::default();
        for step in 0..3 {
            net.train_step(
                x.view(),
                None,
                Some(&y),
                &DistillLoss::hard(),
                &mut opt,
                0,
                seed + step,
                &mut ws,
            )
            .unwrap();
        }
        net
    })
}

#[test]
fn seeded_steps_are_bit_identical_on_any_thread_count() {
    let adam = OptimizerConfig::Adam {
        lr: 0.01,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        schedule: Schedule::Constant,
    };
    for cfg in [OptimizerConfig::sgd(0.05, 0.9), adam] {
        let one = run_steps(1, &cfg, 1);
        assert_eq!(one, run_steps(1, &cfg, 1), "{cfg:?}");
        assert_eq!(one, run_steps(3, &cfg, 1), "{cfg:?}");
        assert_ne!(
            one,
            run_steps(1, &cfg, 2),
            "{cfg:?}: the seed draws the masks"
        );
    }
}

/// Two classes told apart by where a bright bar lies (left or right half): a tiny CNN learns it
/// in a few steps.
#[test]
fn a_tiny_cnn_learns_a_synthetic_task() {
    let mut rng = Rng::new(3);
    let rows = 64;
    let mut x = Array2::<f32>::zeros((rows, 64));
    let y: Vec<u32> = (0..rows).map(|r| (r % 2) as u32).collect();
    for r in 0..rows {
        let col = if y[r] == 0 {
            rng.below(3)
        } else {
            5 + rng.below(3)
        };
        for i in 0..8 {
            x[[r, i * 8 + col]] = 1.0;
        }
        for v in x.row_mut(r).iter_mut() {
            *v += 0.1 * rng.normal();
        }
    }
    let arch: Arch = "conv:4:3:p1,relu,maxpool:2,flatten,fc".parse().unwrap();
    let mut net = Net::new(arch, image(1, 8, 8), 2, 1).unwrap();
    let mut opt = Optimizer::new(OptimizerConfig::sgd(0.1, 0.9), &net.shapes());
    let mut ws = NetWorkspace::default();
    let mut losses = Vec::new();
    for step in 0..30 {
        let parts = net
            .train_step(
                x.view(),
                None,
                Some(&y),
                &DistillLoss::hard(),
                &mut opt,
                0,
                step,
                &mut ws,
            )
            .unwrap();
        losses.push(parts.hard);
    }
    assert!(
        losses[29] < 0.2 * losses[0],
        "loss fell from {} to {}",
        losses[0],
        losses[29]
    );
    let logits = net.forward(x.view()).unwrap();
    let correct = (0..rows)
        .filter(|&r| (logits[[r, 1]] > logits[[r, 0]]) == (y[r] == 1))
        .count();
    assert_eq!(correct, rows);
}

/// `Arch::mlp` on flat input computes what `Mlp` computes with the same weights.
#[test]
fn the_mlp_shorthand_matches_mlp() {
    let mlp = Mlp::new(
        MlpConfig {
            sizes: vec![12, 9, 7, 4],
            input_dropout: 0.0,
            hidden_dropout: 0.0,
            max_norm: None,
        },
        2,
    )
    .unwrap();
    let arch = Arch::mlp(&[9, 7], 0.5);
    assert_eq!(
        arch.to_string(),
        "flatten,fc:9,relu,dropout:0.5,fc:7,relu,dropout:0.5,fc"
    );
    let mut net = Net::new(arch, Shape::Flat(12), 4, 1).unwrap();
    let mut lins = net.layers.iter_mut().filter_map(|l| match l {
        Layer::Linear(lin) => Some(lin),
        _ => None,
    });
    for layer in &mlp.layers {
        *lins.next().unwrap() = layer.clone();
    }
    let x = randn(6, 12, 1);
    let (a, b) = (
        mlp.forward(x.view()).unwrap(),
        net.forward(x.view()).unwrap(),
    );
    assert_eq!(a, b);
    assert_eq!(net.parameters(), mlp.parameters());
}

#[test]
fn folded_net_outputs_the_fold_of_its_logits() {
    let arch: Arch = "conv:2:3,relu,flatten,fc".parse().unwrap();
    let net = Net::new(arch, image(1, 5, 5), 5, 3).unwrap();
    let x = randn(4, 25, 2);
    let full = net.forward(x.view()).unwrap();
    let folded = net.clone().folded(&[1, 3]).unwrap();
    assert_eq!(folded.classes(), 3);
    let f = folded.forward(x.view()).unwrap();
    for r in 0..4 {
        assert_eq!(f[[r, 0]], full[[r, 1]]);
        assert_eq!(f[[r, 1]], full[[r, 3]]);
        let lse = [0, 2, 4]
            .iter()
            .map(|&c| (full[[r, c]] as f64).exp())
            .sum::<f64>()
            .ln();
        assert!(
            (f[[r, 2]] as f64 - lse).abs() < 1e-5,
            "{} vs {lse}",
            f[[r, 2]]
        );
    }
}

#[test]
fn arch_strings_round_trip_and_serialise_as_token_lists() {
    let text = "conv:32:5,relu,maxpool:2,conv:64:5:p2,bn,relu,maxpool:3:s2,avgpool:2:s1,conv:8:3:s2:p1,gap,flatten,fc:512,relu,dropout:0.5,fc";
    let arch: Arch = text.parse().unwrap();
    assert_eq!(arch.to_string(), text);
    assert_eq!(arch.to_string().parse::<Arch>().unwrap(), arch);
    let json = serde_json::to_string(&arch).unwrap();
    assert!(json.starts_with(r#"["conv:32:5","relu","#), "{json}");
    assert_eq!(serde_json::from_str::<Arch>(&json).unwrap(), arch);
    let one: Arch = serde_json::from_str(&format!("\"{text}\"")).unwrap();
    assert_eq!(one, arch);
    let spaced: Arch = "conv:8:3:p1:s2 , relu ,flatten, fc".parse().unwrap();
    assert_eq!(spaced.to_string(), "conv:8:3:s2:p1,relu,flatten,fc");
}

#[test]
fn bad_arch_strings_name_the_token_and_what_was_expected() {
    for (text, want) in [
        ("conv:32", "token 'conv:32': expected conv:OUT:K"),
        (
            "conv:x:5",
            "expected an output channel count (a whole number), found 'x'",
        ),
        ("conv:8:3:q1", "expected sS or pP, found 'q1'"),
        ("maxpool:2:3", "expected sS, found '3'"),
        ("dropout:1.5", "expected a rate in [0, 1), found '1.5'"),
        ("relu:2", "'relu' takes no arguments"),
        ("pool:2", "unknown layer 'pool'"),
        ("", "an empty architecture"),
    ] {
        let e = text.parse::<Arch>().unwrap_err().to_string();
        assert!(e.contains(want), "{text}: {e}");
    }
}

#[test]
fn shapes_are_inferred_and_misfits_are_refused() {
    let arch: Arch =
        "conv:32:5,relu,maxpool:2,conv:64:5:p2,relu,maxpool:2,flatten,fc:512,relu,dropout:0.5,fc"
            .parse()
            .unwrap();
    let shapes = arch.shapes(image(1, 28, 28), 10).unwrap();
    assert_eq!(shapes[0], image(32, 24, 24));
    assert_eq!(shapes[2], image(32, 12, 12));
    assert_eq!(shapes[5], image(64, 6, 6));
    assert_eq!(shapes[6], Shape::Flat(2304));
    assert_eq!(*shapes.last().unwrap(), Shape::Flat(10));
    for (text, input, want) in [
        (
            "conv:4:7,flatten,fc",
            image(1, 5, 5),
            "layer 1 ('conv:4:7'): a 7x7 kernel is larger than its padded input 5x5",
        ),
        (
            "fc:10,fc",
            image(1, 5, 5),
            "layer 1 ('fc:10'): needs a flat vector but gets an image [1, 5, 5]; put flatten before it",
        ),
        (
            "flatten,conv:2:1,fc",
            image(1, 5, 5),
            "layer 2 ('conv:2:1'): needs an image",
        ),
        (
            "flatten,fc,fc",
            image(1, 5, 5),
            "layer 2 ('fc'): only the last fc may leave out its width",
        ),
        ("conv:2:3,relu", image(1, 5, 5), "must end in fc"),
        (
            "flatten,fc:3",
            image(1, 5, 5),
            "must end in fc with one unit per class (4)",
        ),
        (
            "conv:2:3:s0,flatten,fc",
            image(1, 5, 5),
            "stride must be above 0",
        ),
    ] {
        let arch: Arch = text.parse().unwrap();
        let e = arch.shapes(input, 4).unwrap_err().to_string();
        assert!(e.contains(want), "{text}: {e}");
        assert!(Net::new(arch, input, 4, 1).is_err());
    }
    assert_eq!(parse_input_shape("3,32,32").unwrap(), image(3, 32, 32));
    let e = parse_input_shape("28,28").unwrap_err().to_string();
    assert!(e.contains("expected C,H,W"), "{e}");
}

#[test]
fn bad_batches_and_optimisers_are_refused() {
    let arch: Arch = "conv:2:3,relu,flatten,fc".parse().unwrap();
    let mut net = Net::new(arch, image(1, 5, 5), 3, 3).unwrap();
    let e = net.forward(randn(2, 24, 1).view()).unwrap_err().to_string();
    assert!(
        e.contains("input has 24 values per row") && e.contains("expects 25"),
        "{e}"
    );
    let mut opt = Optimizer::new(OptimizerConfig::sgd(0.1, 0.9), &[(3, 4)]);
    let e = net
        .train_step(
            randn(2, 25, 1).view(),
            None,
            Some(&[0, 1]),
            &DistillLoss::hard(),
            &mut opt,
            0,
            0,
            &mut NetWorkspace::default(),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("Optimizer::new(config, &net.shapes())"), "{e}");
}
