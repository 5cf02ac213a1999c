//! Property tests of the evaluator against the naive reference in `common`: random valid networks of every layer
//! kind and both encoder kinds, random inputs of every input kind, every batch size boundary of the block scheme,
//! every supported instruction set and thread setting, strided inputs, save/load round trips, and the errors the
//! evaluator must return for bad inputs and settings.

mod common;

use std::collections::BTreeMap;

use bitlogic::{
    random_network, BitOrder, Encoder, Error, EvalOptions, Input, Isa, LayerKind, Matrix, Network, ThresholdEncoder,
};
use common::*;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Batch sizes around the 64-sample word and the block widths of 2, 4 and 8 words.
const BATCHES: [usize; 10] = [1, 63, 64, 65, 129, 257, 511, 512, 513, 1000];
const MAX_BATCH: usize = 1000;
/// The batch of the convolutional networks, whose reference evaluation costs more per sample.
const SPATIAL_BATCH: usize = 300;

/// Every supported instruction set with one, two and the default number of threads, optimized, and on one thread
/// with optimization off.
fn option_grid() -> Vec<EvalOptions> {
    let mut grid = Vec::new();
    for isa in Isa::supported() {
        for threads in [Some(1), Some(2), None] {
            grid.push(EvalOptions { threads, isa: Some(isa), optimize: true });
        }
        grid.push(EvalOptions { threads: Some(1), isa: Some(isa), optimize: false });
    }
    grid
}

fn kind_for(net: &RefNet, choice: usize) -> InputKind {
    let kinds = input_kinds(&net.encoder);
    kinds[choice % kinds.len()]
}

/// Scores and predictions of every batch prefix in [`BATCHES`], under every option in the grid, equal the
/// reference's.
fn check_all_batches(reference: &RefNet, net: &Network, batch: &Batch) -> Result<(), TestCaseError> {
    let k = reference.num_classes;
    let expected = reference.scores(batch).map_err(|e| TestCaseError::fail(format!("reference rejected: {e}")))?;
    let labels = predictions(&expected, k);
    for options in option_grid() {
        for n in BATCHES.into_iter().filter(|&n| n <= batch.rows) {
            let scores = net
                .scores(batch.prefix(n), &options)
                .map_err(|e| TestCaseError::fail(format!("scores failed ({options:?}, {n} rows): {e}")))?;
            if scores[..] != expected[..n * k] {
                let bad = (0..n).find(|&s| scores[s * k..(s + 1) * k] != expected[s * k..(s + 1) * k]).unwrap();
                return Err(TestCaseError::fail(format!(
                    "{options:?}, batch of {n}: sample {bad} scores {:?}, reference {:?}",
                    &scores[bad * k..(bad + 1) * k],
                    &expected[bad * k..(bad + 1) * k]
                )));
            }
            let predicted = net
                .predict(batch.prefix(n), &options)
                .map_err(|e| TestCaseError::fail(format!("predict failed ({options:?}, {n} rows): {e}")))?;
            prop_assert_eq!(&predicted[..], &labels[..n], "predictions, {:?}, batch of {}", options, n);
        }
    }
    Ok(())
}

/// The network built from a plain description reads back as the same description.
fn check_accessors(reference: &RefNet, net: &Network) -> Result<(), TestCaseError> {
    let back = RefNet::from_network(net);
    prop_assert_eq!(&back, &RefNet { pack_here: false, ..reference.clone() });
    let stats = net.stats();
    prop_assert_eq!(stats.num_classes, reference.num_classes);
    prop_assert_eq!(stats.depth, reference.layers.len());
    prop_assert_eq!(stats.num_input_bits, reference.encoder.width());
    prop_assert_eq!(stats.num_inputs, reference.encoder.num_inputs());
    prop_assert_eq!(net.output_width(), reference.output_width());
    Ok(())
}

/// `cases` in release builds (what CI runs); an eighth of them in unoptimized builds, which are ~25x slower here.
fn config(cases: u32) -> ProptestConfig {
    let cases = if cfg!(debug_assertions) { cases.div_ceil(8) } else { cases };
    ProptestConfig { cases, max_shrink_iters: 2000, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config(512))]

    /// Mixed stacks of gates, LUTs of every arity and binary layers, both encoders, every input kind.
    #[test]
    fn mixed_networks_match_reference(reference in any_network(), kind in 0usize..4, seed in any::<u64>()) {
        let net = reference.build();
        check_accessors(&reference, &net)?;
        let batch = random_batch(&reference, kind_for(&reference, kind), MAX_BATCH, seed);
        check_all_batches(&reference, &net, &batch)?;
    }
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn gate_networks_match_reference(
        reference in network_strategy(Just(Kind::Gates).boxed(), 4),
        kind in 0usize..4,
        seed in any::<u64>(),
    ) {
        let net = reference.build();
        let batch = random_batch(&reference, kind_for(&reference, kind), MAX_BATCH, seed);
        check_all_batches(&reference, &net, &batch)?;
    }

    #[test]
    fn lut_networks_of_every_arity_match_reference(
        (reference, kind, seed) in (1usize..=8).prop_flat_map(|arity| {
            (network_strategy(Just(Kind::Luts(arity)).boxed(), 3), 0usize..4, any::<u64>())
        }),
    ) {
        let net = reference.build();
        let batch = random_batch(&reference, kind_for(&reference, kind), MAX_BATCH, seed);
        check_all_batches(&reference, &net, &batch)?;
    }

    #[test]
    fn binary_networks_match_reference(
        reference in network_strategy(Just(Kind::Binary).boxed(), 3),
        kind in 0usize..4,
        seed in any::<u64>(),
    ) {
        let net = reference.build();
        let batch = random_batch(&reference, kind_for(&reference, kind), MAX_BATCH, seed);
        check_all_batches(&reference, &net, &batch)?;
    }

    /// Convolutional stacks over an image encoder (1 to 3 spatial layers of every kind, each reading the shape the
    /// one before it made, then up to one dense layer), on batches up to 300 samples (past four words).
    #[test]
    fn spatial_networks_match_reference(
        reference in spatial_network_strategy(3, 1),
        kind in 0usize..4,
        seed in any::<u64>(),
    ) {
        let net = reference.build();
        check_accessors(&reference, &net)?;
        let batch = random_batch(&reference, kind_for(&reference, kind), SPATIAL_BATCH, seed);
        check_all_batches(&reference, &net, &batch)?;
    }

    /// One spatial layer of each kind straight into GroupSum: every output bit is a class's vote, so no output is
    /// dead and every position's result is compared.
    #[test]
    fn single_spatial_layers_match_reference(
        reference in spatial_network_strategy(1, 0),
        kind in 0usize..4,
        seed in any::<u64>(),
    ) {
        let net = reference.build();
        check_accessors(&reference, &net)?;
        let batch = random_batch(&reference, kind_for(&reference, kind), SPATIAL_BATCH, seed);
        check_all_batches(&reference, &net, &batch)?;
    }

    /// The encoder alone: GroupSum straight over the encoder's bits.
    #[test]
    fn encoder_only_networks_match_reference(
        reference in network_strategy(kind_strategy().boxed(), 0),
        kind in 0usize..4,
        seed in any::<u64>(),
    ) {
        let net = reference.build();
        let batch = random_batch(&reference, kind_for(&reference, kind), MAX_BATCH, seed);
        check_all_batches(&reference, &net, &batch)?;
    }

    /// F-ordered and padded strided views give the C-ordered answer (and the reference's).
    #[test]
    fn strided_inputs_match_c_order(
        reference in any_network(),
        kind in 0usize..4,
        rows in prop_oneof![1usize..=70, 500usize..=530],
        seed in any::<u64>(),
    ) {
        let net = reference.build();
        let batch = random_batch(&reference, kind_for(&reference, kind), rows, seed);
        let expected = reference.scores(&batch).unwrap();
        let c_order = net.scores(batch.input(), &EvalOptions::default()).unwrap();
        prop_assert_eq!(&c_order, &expected);
        for layout in [Layout::F, Layout::Padded] {
            let laid = batch.laid_out(layout);
            for options in option_grid() {
                let scores = net.scores(laid.input(), &options).unwrap();
                prop_assert_eq!(&scores, &expected, "{:?} {:?}", layout, options);
            }
            let labels = net.predict(laid.input(), &EvalOptions::default()).unwrap();
            prop_assert_eq!(labels, predictions(&expected, reference.num_classes));
        }
    }

    /// to_bytes/from_bytes gives back an equal network with identical scores; the engine reads files written by the
    /// independent writer, and writes the tensors and description the format prescribes.
    #[test]
    fn save_load_round_trips(reference in any_network(), kind in 0usize..4, seed in any::<u64>()) {
        check_round_trip(&reference, kind, seed)?;
    }
}

proptest! {
    #![proptest_config(config(48))]

    /// The round trip of [`save_load_round_trips`] for convolutional stacks.
    #[test]
    fn spatial_save_load_round_trips(reference in spatial_network_strategy(3, 1), kind in 0usize..4, seed in any::<u64>()) {
        check_round_trip(&reference, kind, seed)?;
    }

    /// The largest trees and tables of the format (depth 8: 256 leaves and 255 gates per position; 8 inputs: a
    /// 256-entry table) over small images, alone.
    #[test]
    fn deepest_trees_and_widest_tables_match_reference(
        reference in spatial_network_of(
            prop_oneof![Just(Kind::ConvGates(8)), (7usize..=8).prop_map(Kind::ConvLuts)].boxed(), 1, 0
        ),
        kind in 0usize..4,
        seed in any::<u64>(),
    ) {
        let net = reference.build();
        check_accessors(&reference, &net)?;
        let batch = random_batch(&reference, kind_for(&reference, kind), 130, seed);
        check_all_batches(&reference, &net, &batch)?;
    }
}

/// The checks of [`save_load_round_trips`] on one network.
fn check_round_trip(reference: &RefNet, kind: usize, seed: u64) -> Result<(), TestCaseError> {
    let net = reference.build();
    let bytes = net.to_bytes().unwrap();
    let loaded = Network::from_bytes(&bytes).unwrap();
    // Everything but tau first, so that a tau failure (checked last) does not hide another one.
    prop_assert_eq!(loaded.encoder(), net.encoder());
    prop_assert_eq!(loaded.layers(), net.layers());
    prop_assert_eq!(loaded.num_classes(), net.num_classes());
    prop_assert_eq!(loaded.info(), &reference.info);
    let batch = random_batch(reference, kind_for(reference, kind), 200, seed);
    let options = EvalOptions::default();
    prop_assert_eq!(loaded.scores(batch.input(), &options).unwrap(), net.scores(batch.input(), &options).unwrap());
    let labels = loaded.predict(batch.input(), &options).unwrap();
    prop_assert_eq!(labels, net.predict(batch.input(), &options).unwrap());

    // A file from the independent writer, of any version, loads as the same network (FORMAT.md 2: a reader reads the
    // kinds it knows in a file of any 1.x).
    let independent = Network::from_bytes(&reference.file_bytes()).unwrap();
    prop_assert_eq!(independent.encoder(), net.encoder());
    prop_assert_eq!(independent.layers(), net.layers());
    prop_assert_eq!(independent.info(), net.info());
    prop_assert_eq!(&Network::from_bytes(&reference.file_bytes_v1_1()).unwrap(), &independent);
    prop_assert_eq!(&Network::from_bytes(&reference.file_bytes_v1_2()).unwrap(), &independent);

    // The engine's file holds exactly the tensors and description of FORMAT.md.
    let (header, data) = split_container(&bytes);
    let (description, tensors) = reference.file_parts();
    let metadata = header["__metadata__"].as_object().unwrap();
    let mut keys: Vec<&str> = metadata.keys().map(String::as_str).collect();
    keys.sort_unstable();
    prop_assert_eq!(keys, vec!["data_sha256", "format", "format_version", "network"]);
    prop_assert_eq!(metadata["format"].as_str(), Some("bitlogic"));
    prop_assert_eq!(metadata["format_version"].as_str(), Some("1.2"));
    let digest = sha256_hex(&data);
    prop_assert_eq!(metadata["data_sha256"].as_str(), Some(digest.as_str()));
    let text = metadata["network"].as_str().unwrap();
    let written: serde_json::Value = serde_json::from_str(text).unwrap();
    // tau's text is also parsed with the standard library, which rounds correctly whatever serde_json's features.
    prop_assert_eq!(written_tau(text), reference.tau, "tau in {}", text);
    prop_assert_eq!(&written, &description);
    let object = header.as_object().unwrap();
    prop_assert_eq!(object.len(), tensors.len() + 1, "tensors: {:?}", object.keys().collect::<Vec<_>>());
    for t in &tensors {
        let entry = object.get(&t.name).ok_or_else(|| TestCaseError::fail(format!("no tensor {}", t.name)))?;
        prop_assert_eq!(entry["dtype"].as_str(), Some(t.dtype), "{}", t.name);
        prop_assert_eq!(&entry["shape"], &serde_json::json!(t.shape), "{}", t.name);
        let begin = entry["data_offsets"][0].as_u64().unwrap() as usize;
        let end = entry["data_offsets"][1].as_u64().unwrap() as usize;
        prop_assert_eq!(&data[begin..end], &t.data[..], "{}", t.name);
    }

    // Last: the whole network, tau included, is equal after a round trip (and from the independent writer).
    prop_assert_eq!(loaded.tau(), reference.tau, "tau after to_bytes/from_bytes");
    prop_assert_eq!(&loaded, &net);
    prop_assert_eq!(&independent, &net);
    Ok(())
}

/// The number after `"tau":` in a compact description, parsed with the standard library.
fn written_tau(description: &str) -> f64 {
    let start = description.find("\"tau\":").expect("tau is written") + 6;
    let rest = &description[start..];
    let end = rest.find([',', '}']).expect("the number ends");
    rest[..end].parse().expect("tau is a number")
}

/// tau survives a round trip exactly: scores divided by it are the model's logits, and readers compare networks.
#[test]
fn tau_round_trips_exactly() {
    for tau in [15.196346168924153, 0.1, 1.0 / 3.0, 10.0, 2.5e-8, 123456.789, f64::MAX, f64::MIN_POSITIVE] {
        let net = Network::new(Encoder::bits(2).unwrap(), Vec::new(), 1, tau).unwrap();
        let bytes = net.to_bytes().unwrap();
        let (header, _) = split_container(&bytes);
        assert_eq!(written_tau(header["__metadata__"]["network"].as_str().unwrap()), tau, "written tau");
        assert_eq!(Network::from_bytes(&bytes).unwrap().tau(), tau, "tau {tau:e} after to_bytes/from_bytes");
    }
}

#[test]
fn save_and_load_through_a_file() {
    let reference = RefNet {
        encoder: RefEncoder::Thresholds {
            order: BitOrder::ThresholdMajor,
            thresholds: vec![vec![0.5, f32::INFINITY], vec![f32::NEG_INFINITY, -0.0]],
        },
        layers: vec![RefLayer::Gates(RefGates {
            gates: vec![
                RefGate { a: 0, b: 1, op: 6 },
                RefGate { a: 2, b: 3, op: 14 },
                RefGate { a: 3, b: 0, op: 11 },
                RefGate { a: 1, b: 1, op: 8 },
            ],
        })],
        num_classes: 2,
        tau: 3.5,
        info: BTreeMap::from([("name".to_string(), "tiny".to_string())]),
        pack_here: false,
    };
    let net = reference.build();
    let dir = std::env::temp_dir().join(format!("bitlogic-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny.bitlogic");
    net.save(&path).unwrap();
    let loaded = Network::load(&path).unwrap();
    assert_eq!(loaded, net);
    // Saving again replaces the file atomically and leaves no temporary file behind.
    loaded.save(&path).unwrap();
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "{names:?}");
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(matches!(Network::load(&path), Err(Error::Io { .. })));
}

/// FORMAT.md section 5: tensors may appear in the data buffer in any order; readers find them by name. A file
/// whose tensors are laid out in reverse, or shuffled, reads as the same network.
#[test]
fn tensor_order_in_the_data_buffer_does_not_matter() {
    let mut reference = RefNet {
        encoder: RefEncoder::Thresholds { order: BitOrder::FeatureMajor, thresholds: vec![vec![0.0, 0.5, 1.0]; 4] },
        layers: Vec::new(),
        num_classes: 2,
        tau: 1.0,
        info: BTreeMap::new(),
        pack_here: false,
    };
    let mut width = 12;
    for i in 0..12 {
        let layer = match i % 3 {
            0 => RefLayer::Gates(RefGates {
                gates: (0..8).map(|g| RefGate { a: g % width, b: (g + 1) % width, op: 6 }).collect(),
            }),
            1 => RefLayer::Luts(RefLuts {
                arity: 2,
                luts: (0..8)
                    .map(|l| RefLut { wires: vec![l % width, 0], entries: vec![false, true, true, false] })
                    .collect(),
            }),
            _ => RefLayer::Binary(RefBinary {
                inputs: width,
                neurons: (0..8)
                    .map(|o| RefNeuron { weights: (0..width).map(|j| j != o).collect(), threshold: 3 })
                    .collect(),
            }),
        };
        width = layer.width();
        reference.layers.push(layer);
    }
    let net = reference.build();
    let (description, mut tensors) = reference.file_parts();
    let metadata = standard_metadata(&description);
    assert_eq!(Network::from_bytes(&write_container(&metadata, &tensors)).unwrap(), net);
    tensors.reverse();
    assert_eq!(Network::from_bytes(&write_container(&metadata, &tensors)).unwrap(), net);
    let mut rng = Xorshift::new(9);
    for _ in 0..10 {
        for i in (1..tensors.len()).rev() {
            tensors.swap(i, rng.below(i + 1));
        }
        assert_eq!(Network::from_bytes(&write_container(&metadata, &tensors)).unwrap(), net);
    }
}

/// Wider layers than the property tests use: binary layers over several words, LUTs of 7 and 8 inputs (several
/// table words), groups of hundreds of bits, and batches spanning many blocks on every thread setting.
#[test]
fn wide_random_networks_match_reference() {
    let cases: [(usize, &[usize], usize, LayerKind); 6] = [
        (300, &[500, 300], 3, LayerKind::Gates),
        (200, &[130, 129], 3, LayerKind::Binary),
        (100, &[256, 64], 4, LayerKind::Luts { arity: 8 }),
        (70, &[128, 66], 2, LayerKind::Luts { arity: 7 }),
        (65, &[1000], 1, LayerKind::Luts { arity: 6 }),
        (64, &[64, 640], 10, LayerKind::Binary),
    ];
    for (seed, (inputs, widths, classes, kind)) in cases.into_iter().enumerate() {
        let net = random_network(inputs, widths, classes, kind, seed as u64).unwrap();
        let reference = RefNet::from_network(&net);
        let batch = random_batch(&reference, InputKind::Bits, 1500, seed as u64);
        let expected = reference.scores(&batch).unwrap();
        for options in option_grid() {
            assert_eq!(net.scores(batch.input(), &options).unwrap(), expected, "{kind:?} {options:?}");
            let labels = net.predict(batch.input(), &options).unwrap();
            assert_eq!(labels, predictions(&expected, classes), "{kind:?} {options:?}");
        }
    }
}

/// Ties go to the lowest class, including all-equal scores.
#[test]
fn argmax_ties_go_to_the_lowest_class() {
    // Bits straight into GroupSum: 3 classes of 2 bits.
    let net = Network::new(Encoder::bits(6).unwrap(), Vec::new(), 3, 1.0).unwrap();
    let rows: [[u8; 6]; 6] = [
        [0, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 1],
        [0, 0, 1, 0, 1, 0],
        [0, 0, 1, 1, 1, 1],
        [1, 0, 0, 1, 1, 1],
        [0, 1, 1, 0, 0, 0],
    ];
    let flat: Vec<u8> = rows.iter().flatten().copied().collect();
    let input = Input::Bits(Matrix::c_order(&flat, 6, 6).unwrap());
    for options in option_grid() {
        assert_eq!(net.scores(input, &options).unwrap(), vec![0, 0, 0, 2, 2, 2, 0, 1, 1, 0, 2, 2, 1, 1, 2, 1, 1, 0]);
        assert_eq!(net.predict(input, &options).unwrap(), vec![0, 0, 1, 1, 2, 0]);
    }
}

/// Strictly greater, under each input type's comparison rule, at the edges the rule is about.
#[test]
fn threshold_comparisons_follow_the_format() {
    let thresholds = vec![0.1f32, f32::INFINITY, f32::NEG_INFINITY, -0.0, 255.0, 254.5];
    let t = ThresholdEncoder::new(1, 6, BitOrder::FeatureMajor, thresholds).unwrap();
    let net = Network::new(Encoder::Thresholds(t), Vec::new(), 6, 1.0).unwrap();
    let options = EvalOptions::default();
    let bits = |scores: Vec<i32>| scores.chunks(6).map(<[i32]>::to_vec).collect::<Vec<_>>();

    let x32 = [0.1f32, f32_up(0.1), f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, 255.0, 254.5, f32::MAX];
    let got = bits(net.scores(Input::F32(Matrix::c_order(&x32, 9, 1).unwrap()), &options).unwrap());
    assert_eq!(
        got,
        vec![
            vec![0, 0, 1, 1, 0, 0],
            vec![1, 0, 1, 1, 0, 0],
            vec![1, 0, 1, 1, 1, 1],
            vec![0, 0, 0, 0, 0, 0],
            vec![0, 0, 1, 0, 0, 0],
            vec![0, 0, 1, 0, 0, 0],
            vec![1, 0, 1, 1, 0, 1],
            vec![1, 0, 1, 1, 0, 0],
            vec![1, 0, 1, 1, 1, 1],
        ]
    );

    // 0.1f32 widened exactly is 0.100000001490116..., above the f64 0.1. The next f64 above it, and 254.5 + 1e-9,
    // round to the threshold in f32 (giving 0); compared in f64 they are greater (1).
    let t01 = f64::from(0.1f32);
    let x64 = [0.1f64, t01, f64_up(t01), f64_down(t01), 1e300, -1e300, f64::from(254.5f32) + 1e-9];
    let got = bits(net.scores(Input::F64(Matrix::c_order(&x64, 7, 1).unwrap()), &options).unwrap());
    assert_eq!(
        got,
        vec![
            vec![0, 0, 1, 1, 0, 0],
            vec![0, 0, 1, 1, 0, 0],
            vec![1, 0, 1, 1, 0, 0],
            vec![0, 0, 1, 1, 0, 0],
            vec![1, 0, 1, 1, 1, 1],
            vec![0, 0, 1, 0, 0, 0],
            vec![1, 0, 1, 1, 0, 1],
        ]
    );

    let x8 = [0u8, 1, 254, 255];
    let got = bits(net.scores(Input::U8(Matrix::c_order(&x8, 4, 1).unwrap()), &options).unwrap());
    assert_eq!(
        got,
        vec![vec![0, 0, 1, 0, 0, 0], vec![1, 0, 1, 1, 0, 0], vec![1, 0, 1, 1, 0, 0], vec![1, 0, 1, 1, 0, 1]]
    );
}

/// Every op code against the truth table of FORMAT.md 3.3, written out by hand.
#[test]
fn op_codes_follow_the_format_table() {
    let names: [fn(bool, bool) -> bool; 16] = [
        |_, _| false,
        |a, b| a & b,
        |a, b| a & !b,
        |a, _| a,
        |a, b| !a & b,
        |_, b| b,
        |a, b| a ^ b,
        |a, b| a | b,
        |a, b| !(a | b),
        |a, b| !(a ^ b),
        |_, b| !b,
        |a, b| a | !b,
        |a, _| !a,
        |a, b| !a | b,
        |a, b| !(a & b),
        |_, _| true,
    ];
    // One gate per op code, each reading inputs 0 (A) and 1 (B); one class per gate.
    let gates = (0..16).map(|op| RefGate { a: 0, b: 1, op }).collect();
    let reference = RefNet {
        encoder: RefEncoder::Bits(2),
        layers: vec![RefLayer::Gates(RefGates { gates })],
        num_classes: 16,
        tau: 1.0,
        info: BTreeMap::new(),
        pack_here: false,
    };
    let net = reference.build();
    let flat = [0u8, 0, 0, 1, 1, 0, 1, 1];
    for options in option_grid() {
        let scores = net.scores(Input::Bits(Matrix::c_order(&flat, 4, 2).unwrap()), &options).unwrap();
        for (s, pair) in flat.chunks(2).enumerate() {
            for (op, f) in names.iter().enumerate() {
                assert_eq!(scores[s * 16 + op] == 1, f(pair[0] == 1, pair[1] == 1), "op {op} at {pair:?}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------------

fn thresholds_net() -> (RefNet, Network) {
    let reference = RefNet {
        encoder: RefEncoder::Thresholds { order: BitOrder::FeatureMajor, thresholds: vec![vec![0.0, 1.0]; 5] },
        layers: vec![RefLayer::Gates(RefGates { gates: (0..10).map(|g| RefGate { a: g, b: 9 - g, op: 6 }).collect() })],
        num_classes: 2,
        tau: 1.0,
        info: BTreeMap::new(),
        pack_here: false,
    };
    let net = reference.build();
    (reference, net)
}

fn bits_net(inputs: usize) -> Network {
    random_network(inputs, &[32, 20], 4, LayerKind::Gates, 5).unwrap()
}

fn assert_input_error<T: std::fmt::Debug>(result: bitlogic::Result<T>, what: &str) {
    match result {
        Err(Error::Input(_)) => {}
        other => panic!("{what}: expected Error::Input, got {other:?}"),
    }
}

#[test]
fn nan_features_are_input_errors() {
    let (_, net) = thresholds_net();
    for rows in [1, 64, 700] {
        for bad in [0, rows / 2, rows - 1] {
            for feature in [0, 4] {
                let mut x32 = vec![0.5f32; rows * 5];
                x32[bad * 5 + feature] = f32::NAN;
                let mut x64 = vec![0.5f64; rows * 5];
                x64[bad * 5 + feature] = -f64::NAN;
                for options in option_grid() {
                    let m32 = Matrix::c_order(&x32, rows, 5).unwrap();
                    assert_input_error(net.scores(Input::F32(m32), &options), "f32 NaN");
                    assert_input_error(net.predict(Input::F32(m32), &options), "f32 NaN, predict");
                    let m64 = Matrix::c_order(&x64, rows, 5).unwrap();
                    assert_input_error(net.scores(Input::F64(m64), &options), "f64 NaN");
                }
                // The same NaN seen through an F-ordered view.
                let mut f_order = vec![0.5f32; rows * 5];
                f_order[feature * rows + bad] = f32::NAN;
                let m = Matrix::new(&f_order, rows, 5, 1, rows).unwrap();
                assert_input_error(net.scores(Input::F32(m), &EvalOptions::default()), "f32 NaN, F order");
            }
        }
    }
}

#[test]
fn non_bits_are_input_errors() {
    let net = bits_net(21);
    let (_, thresholds) = thresholds_net();
    for rows in [1, 65, 600] {
        // Positions inside the 8-byte fast path, in the remainder, and in the second 64-bit chunk.
        for col in [0, 7, 8, 15, 16, 20] {
            for value in [2u8, 255] {
                let mut x = vec![1u8; rows * 21];
                x[(rows - 1) * 21 + col] = value;
                let c = Matrix::c_order(&x, rows, 21).unwrap();
                for options in option_grid() {
                    assert_input_error(net.scores(Input::Bits(c), &options), "byte 2 in bits");
                    assert_input_error(net.scores(Input::U8(c), &options), "byte 2 in u8 bits");
                }
                let mut f = vec![0u8; rows * 21];
                f[col * rows + rows - 1] = value;
                let m = Matrix::new(&f, rows, 21, 1, rows).unwrap();
                assert_input_error(net.scores(Input::Bits(m), &EvalOptions::default()), "byte 2 in F-order bits");
            }
        }
        // Already-encoded bits for a threshold encoder are checked too.
        let mut x = vec![0u8; rows * 10];
        x[rows * 10 - 1] = 2;
        let m = Matrix::c_order(&x, rows, 10).unwrap();
        assert_input_error(thresholds.scores(Input::Bits(m), &EvalOptions::default()), "byte 2, encoded bits");
    }
    let wide = bits_net(130);
    let mut x = vec![0u8; 3 * 130];
    x[2 * 130 + 129] = 2;
    let m = Matrix::c_order(&x, 3, 130).unwrap();
    assert_input_error(wide.scores(Input::Bits(m), &EvalOptions::default()), "byte 2 in the last chunk");
}

#[test]
fn wrong_column_counts_are_input_errors() {
    let net = bits_net(21);
    let (_, thresholds) = thresholds_net();
    let options = EvalOptions::default();
    for cols in [0, 1, 20, 22, 42] {
        let x = vec![0u8; 4 * cols];
        let m = Matrix::c_order(&x, 4, cols).unwrap();
        assert_input_error(net.scores(Input::Bits(m), &options), "bits");
        assert_input_error(net.scores(Input::U8(m), &options), "u8 bits");
    }
    for cols in [0, 4, 6, 10] {
        let x = vec![0.0f32; 4 * cols];
        assert_input_error(thresholds.scores(Input::F32(Matrix::c_order(&x, 4, cols).unwrap()), &options), "f32");
        let x = vec![0.0f64; 4 * cols];
        assert_input_error(thresholds.scores(Input::F64(Matrix::c_order(&x, 4, cols).unwrap()), &options), "f64");
        let x = vec![0u8; 4 * cols];
        assert_input_error(thresholds.scores(Input::U8(Matrix::c_order(&x, 4, cols).unwrap()), &options), "u8");
    }
    // Encoded bits for a threshold encoder need F * T = 10 columns, not F = 5.
    let x = vec![0u8; 4 * 5];
    assert_input_error(thresholds.scores(Input::Bits(Matrix::c_order(&x, 4, 5).unwrap()), &options), "encoded bits");
    // Even an empty batch is checked.
    assert_input_error(net.scores(Input::Bits(Matrix::c_order(&[], 0, 3).unwrap()), &options), "empty batch");
}

#[test]
fn float_features_for_a_bits_network_are_input_errors() {
    let net = bits_net(8);
    let x32 = vec![0.0f32; 16];
    let x64 = vec![1.0f64; 16];
    for options in option_grid() {
        assert_input_error(net.scores(Input::F32(Matrix::c_order(&x32, 2, 8).unwrap()), &options), "f32");
        assert_input_error(net.predict(Input::F32(Matrix::c_order(&x32, 2, 8).unwrap()), &options), "f32");
        assert_input_error(net.scores(Input::F64(Matrix::c_order(&x64, 2, 8).unwrap()), &options), "f64");
    }
}

/// NEON is part of every aarch64 CPU: the path is always there, and the default unless `BITLOGIC_ISA` says otherwise.
#[cfg(target_arch = "aarch64")]
#[test]
fn neon_is_the_default_on_aarch64() {
    assert_eq!(Isa::supported(), [Isa::Portable, Isa::Neon]);
    if std::env::var_os("BITLOGIC_ISA").is_none() {
        assert_eq!(Isa::default_for_machine().unwrap(), Isa::Neon);
    }
}

#[test]
fn zero_threads_is_a_setting_error() {
    let net = bits_net(8);
    let x = vec![0u8; 16];
    let input = Input::Bits(Matrix::c_order(&x, 2, 8).unwrap());
    for isa in Isa::supported().into_iter().map(Some).chain([None]) {
        let options = EvalOptions { threads: Some(0), isa, ..Default::default() };
        assert!(matches!(net.scores(input, &options), Err(Error::Setting(_))), "{isa:?}");
        assert!(matches!(net.predict(input, &options), Err(Error::Setting(_))), "{isa:?}");
    }
    for isa in Isa::ALL.into_iter().filter(|isa| !isa.is_supported()) {
        let options = EvalOptions { isa: Some(isa), ..Default::default() };
        assert!(matches!(net.scores(input, &options), Err(Error::Setting(_))), "unsupported {isa:?}");
    }
    assert!(matches!(Isa::from_name("sse9"), Err(Error::Setting(_))));
    for isa in Isa::ALL {
        assert_eq!(Isa::from_name(isa.name()).unwrap(), isa);
    }
}

#[test]
fn views_and_buffers_are_checked() {
    let data = [0u8; 12];
    assert!(Matrix::new(&data, 4, 3, 3, 1).is_ok());
    assert!(matches!(Matrix::new(&data, 4, 4, 3, 1), Err(Error::Input(_))));
    assert!(Matrix::new(&data, 3, 4, 1, 3).is_ok());
    assert!(matches!(Matrix::new(&data, 2, 2, usize::MAX, 1), Err(Error::Input(_))));
    assert!(matches!(Matrix::new(&data, 2, 2, 1, usize::MAX / 2 + 1), Err(Error::Input(_))));
    assert!(matches!(Matrix::c_order(&data, 5, 3), Err(Error::Input(_))));
    assert!(matches!(Matrix::c_order(&data, usize::MAX, 2), Err(Error::Input(_))));
    assert!(Matrix::<u8>::new(&[], 0, 5, 5, 1).is_ok());

    let net = bits_net(3);
    let input = Input::Bits(Matrix::c_order(&data, 4, 3).unwrap());
    let options = EvalOptions::default();
    let mut scores = vec![0i32; 4 * 4];
    net.scores_into(input, &mut scores, &options).unwrap();
    assert_eq!(scores, net.scores(input, &options).unwrap());
    assert_input_error(net.scores_into(input, &mut [0; 15], &options), "short score buffer");
    assert_input_error(net.scores_into(input, &mut [0; 17], &options), "long score buffer");
    assert_input_error(net.predict_into(input, &mut [0; 3], &options), "short label buffer");
    let mut labels = vec![9i64; 4];
    net.predict_into(input, &mut labels, &options).unwrap();
    assert_eq!(labels, net.predict(input, &options).unwrap());

    // An empty batch is fine and gives nothing.
    let empty = Input::Bits(Matrix::c_order(&[], 0, 3).unwrap());
    for options in option_grid() {
        assert_eq!(net.scores(empty, &options).unwrap(), Vec::<i32>::new());
        assert_eq!(net.predict(empty, &options).unwrap(), Vec::<i64>::new());
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// Corrupting one value of a valid batch (NaN in a float batch, 2 in a bit batch) makes the engine fail exactly
    /// when the reference does, with an input error, whatever the options.
    #[test]
    fn corrupted_batches_fail_like_the_reference(
        reference in any_network(),
        kind in 0usize..4,
        rows in prop_oneof![1usize..=130, 510usize..=520],
        position in any::<prop::sample::Index>(),
        seed in any::<u64>(),
    ) {
        let net = reference.build();
        let mut batch = random_batch(&reference, kind_for(&reference, kind), rows, seed);
        let at = position.index(batch.rows * batch.cols);
        match &mut batch.values {
            Values::Bits(v) | Values::U8(v) => v[at] = 2,
            Values::F32(v) => v[at] = f32::NAN,
            Values::F64(v) => v[at] = f64::NAN,
        }
        let expected = reference.scores(&batch);
        for options in option_grid() {
            match (&expected, net.scores(batch.input(), &options)) {
                (Ok(e), Ok(got)) => prop_assert_eq!(e, &got),
                (Err(_), Err(Error::Input(_))) => {}
                (e, got) => return Err(TestCaseError::fail(format!("{options:?}: reference {e:?}, engine {got:?}"))),
            }
        }
    }
}

#[test]
fn networks_beyond_the_node_limit_are_refused_without_allocating() {
    // 2^31 - 1 input bits and no layers: a valid network, but its compiled form would need a node per bit.
    let net = Network::new(Encoder::bits(i32::MAX as usize).unwrap(), Vec::new(), 1, 1.0).unwrap();
    for result in [net.prepare().map(|_| ()), net.optimization().map(|_| ())] {
        match result {
            Err(Error::Network(message)) => assert!(message.contains("too large to evaluate"), "{message}"),
            other => panic!("expected a network error, got {other:?}"),
        }
    }
    assert!(bitlogic::MAX_NODES < i32::MAX as usize);
}

#[test]
fn optimization_reports_add_up() {
    let net = random_network(32, &[500, 500, 40], 4, LayerKind::Gates, 7).unwrap();
    let o = net.optimization().unwrap();
    assert_eq!(o.before.total_ops(), 1040, "every gate is one operation before optimization");
    assert_eq!(o.before.ops[2], 1040);
    assert!(o.after.total_ops() < o.before.total_ops());
    assert!(o.passes.dead > 0 && o.passes.constants > 0 && o.passes.wires > 0);
    assert!(o.after.slots <= o.before.slots);
    assert_eq!(o, net.optimization().unwrap(), "built once, reported the same");
}

#[test]
fn packed_bit_planes_match_bits_on_every_path() {
    use bitlogic::{Packed, SplitMix64};
    for (kind, seed) in [(LayerKind::Gates, 1), (LayerKind::Luts { arity: 6 }, 2), (LayerKind::Binary, 3)] {
        let net = random_network(70, &[200, 60], 3, kind, seed).unwrap();
        let mut rng = SplitMix64::new(seed);
        for n in BATCHES {
            let bits: Vec<u8> = (0..n * 70).map(|_| (rng.next_u64() & 1) as u8).collect();
            let words = n.div_ceil(64);
            let mut planes = vec![0u64; 70 * words];
            for (s, row) in bits.chunks_exact(70).enumerate() {
                for (i, &b) in row.iter().enumerate() {
                    planes[i * words + s / 64] |= (b as u64) << (s % 64);
                }
            }
            let bits_input = Input::Bits(Matrix::c_order(&bits, n, 70).unwrap());
            let packed = Input::Packed(Packed::new(&planes, 70, n).unwrap());
            for options in option_grid() {
                assert_eq!(
                    net.scores(packed, &options).unwrap(),
                    net.scores(bits_input, &options).unwrap(),
                    "{kind:?}, {n} samples, {options:?}"
                );
            }
        }
    }
    assert!(matches!(Packed::new(&[0u64; 3], 2, 64), Err(Error::Input(_))), "3 words are not 2 planes of 1");
}

#[test]
fn a_very_deep_network_compiles_without_exhausting_the_stack() {
    // 50 000 layers: every pass must walk it without recursion (a thread's stack is a few megabytes).
    let net = random_network(4, &vec![4; 50_000], 2, LayerKind::Gates, 3).unwrap();
    let handle = std::thread::Builder::new().stack_size(256 << 10).spawn(move || net.prepare().map(|_| ())).unwrap();
    handle.join().expect("no stack overflow").unwrap();
}
