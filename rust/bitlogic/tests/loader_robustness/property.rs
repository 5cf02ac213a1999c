//! The mutation property test: valid files of several kinds, mutated, must never make the loader panic or overrun
//! its memory budget, and must either fail with a format or version error or load a network that serializes again
//! and evaluates.

use bitlogic::{random_network, Error, EvalOptions, Input, LayerKind, Matrix, Network};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::{TestCaseError, TestRunner};

use crate::alloc::{allocation_budget, measured};
use crate::common::*;
use crate::mutate::apply;
use crate::mutation::mutation_strategy;

/// A network from one of `common`'s strategies, picked deterministically.
pub(crate) fn sample_net(strategy: impl Strategy<Value = RefNet>, seed: u64) -> RefNet {
    let mut runner = TestRunner::new_with_rng(
        proptest::test_runner::Config::default(),
        proptest::test_runner::TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &{
            let mut s = [0u8; 32];
            s[..8].copy_from_slice(&seed.to_le_bytes());
            s
        }),
    );
    let mut net = strategy.new_tree(&mut runner).expect("a network").current();
    // Taus that print and parse exactly, so that a re-serialized network compares equal.
    net.tau = [1.0, 10.0, 2.5, 0.75][seed as usize % 4];
    net
}

/// Valid files of several kinds: every layer kind (the spatial ones also in image stacks), both encoders, no layers, annotations, format 1.0 and 1.1;
/// written by the engine and by the independent writer (whose tensor order differs).
pub(crate) fn base_files() -> Vec<Vec<u8>> {
    let mut nets: Vec<RefNet> = Vec::new();
    for (i, kind) in Kind::examples().into_iter().enumerate() {
        nets.push(sample_net(network_strategy(Just(kind).boxed(), 2), 100 + i as u64));
    }
    for seed in 0..4 {
        nets.push(sample_net(network_strategy(kind_strategy().boxed(), 3), seed));
    }
    nets.push(sample_net(network_strategy(kind_strategy().boxed(), 0), 7));
    // Convolutional stacks over images, and the targeted tests' network of every spatial kind.
    for seed in 0..3 {
        nets.push(sample_net(spatial_network_strategy(3, 1), 200 + seed));
    }
    nets.push(crate::spatial::spatial_template());
    let mut files = Vec::new();
    for net in &nets {
        files.push(net.build().to_bytes().unwrap());
        // The independent writer's files of both versions: in 1.0 ones damaged data reaches the value checks, in
        // 1.1 ones the digest stops it.
        files.push(net.file_bytes());
        files.push(net.file_bytes_v1_1());
    }
    files.push(random_network(20, &[16, 8], 2, LayerKind::Gates, 1).unwrap().to_bytes().unwrap());
    files
}

/// A few valid samples for `net`, when its input is small enough to build.
pub(crate) fn evaluate_some(net: &Network) -> Result<(), TestCaseError> {
    let options = EvalOptions { threads: Some(1), ..Default::default() };
    let cols = net.num_inputs();
    let empty: &[u8] = &[];
    let none = match net.encoder() {
        bitlogic::Encoder::Bits { .. } => Input::Bits(Matrix::new(empty, 0, cols, cols, 1).unwrap()),
        bitlogic::Encoder::Thresholds(_) => Input::U8(Matrix::new(empty, 0, cols, cols, 1).unwrap()),
    };
    prop_assert_eq!(net.scores(none, &options).map_err(|e| TestCaseError::fail(e.to_string()))?.len(), 0);
    if cols > 4096 || net.max_width() > 1 << 16 {
        return Ok(());
    }
    let rows = 3;
    let bits: Vec<u8> = (0..rows * cols).map(|i| (i % 3 == 0) as u8).collect();
    let floats: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.37 - 1.0).collect();
    let input = match net.encoder() {
        bitlogic::Encoder::Bits { .. } => Input::Bits(Matrix::c_order(&bits, rows, cols).unwrap()),
        bitlogic::Encoder::Thresholds(_) => Input::F32(Matrix::c_order(&floats, rows, cols).unwrap()),
    };
    let scores = net.scores(input, &options).map_err(|e| TestCaseError::fail(format!("scores: {e}")))?;
    prop_assert_eq!(scores.len(), rows * net.num_classes());
    let labels = net.predict(input, &options).map_err(|e| TestCaseError::fail(format!("predict: {e}")))?;
    prop_assert!(labels.iter().all(|&l| (0..net.num_classes() as i64).contains(&l)));
    Ok(())
}

/// The loader's contract on arbitrary bytes.
pub(crate) fn check_loader(bytes: &[u8]) -> Result<(), TestCaseError> {
    let (result, allocated, _) = measured(|| Network::from_bytes(bytes));
    prop_assert!(
        allocated <= allocation_budget(bytes.len()),
        "from_bytes allocated {} bytes for a file of {}",
        allocated,
        bytes.len()
    );
    match result {
        Ok(net) => {
            let again = net.to_bytes().map_err(|e| TestCaseError::fail(format!("re-serializing: {e}")))?;
            let back = Network::from_bytes(&again).map_err(|e| TestCaseError::fail(format!("re-reading: {e}")))?;
            prop_assert_eq!(&back, &net);
            evaluate_some(&net)
        }
        Err(Error::Format(_) | Error::Version { .. }) => Ok(()),
        Err(other) => Err(TestCaseError::fail(format!("unexpected error kind: {other:?}"))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, max_shrink_iters: 4000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_files_never_panic(
        base in any::<Index>(),
        mutations in prop::collection::vec(mutation_strategy(), 1..=4),
    ) {
        thread_local! {
            static BASES: Vec<Vec<u8>> = base_files();
        }
        let bytes = BASES.with(|bases| base.get(bases).clone());
        let mutated = mutations.iter().fold(bytes, apply);
        check_loader(&mutated)?;
    }

    /// Arbitrary bytes, and arbitrary bytes behind a plausible header length.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256), framed in any::<bool>()) {
        let mut bytes = bytes;
        if framed && bytes.len() >= 8 {
            let n = (bytes.len() - 8) as u64 / 2;
            bytes[..8].copy_from_slice(&n.to_le_bytes());
        }
        check_loader(&bytes)?;
    }
}

#[test]
fn unmutated_base_files_load() {
    for bytes in base_files() {
        check_loader(&bytes).unwrap();
        Network::from_bytes(&bytes).unwrap();
    }
}
