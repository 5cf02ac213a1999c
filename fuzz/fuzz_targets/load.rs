//! Fuzzes the network file reader: `Network::from_bytes` must never panic, must fail only with a format or version
//! error, and a network it accepts must serialize, read back as an equal network, and evaluate.

#![no_main]

use bitlogic::{Encoder, Error, EvalOptions, Input, Matrix, Network};
use libfuzzer_sys::fuzz_target;

/// Evaluating allocates buffers as wide as the network; past these sizes the target only checks loading.
const MAX_INPUTS: usize = 4096;
const MAX_WIDTH: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let net = match Network::from_bytes(data) {
        Ok(net) => net,
        Err(Error::Format(_) | Error::Version { .. }) => return,
        Err(other) => panic!("from_bytes failed with an unexpected error kind: {other:?}"),
    };

    let bytes = net.to_bytes().expect("an accepted network serializes");
    let back = Network::from_bytes(&bytes).expect("a serialized network reads back");
    assert_eq!(back, net, "to_bytes -> from_bytes changed the network");

    let options = EvalOptions { threads: Some(1), ..EvalOptions::default() };
    let cols = net.num_inputs();
    if cols > MAX_INPUTS || net.max_width() > MAX_WIDTH {
        return;
    }
    // Four samples, built from the fuzz input so that different files see different values.
    let rows = 4;
    let byte = |i: usize| data.get(i % data.len().max(1)).copied().unwrap_or(0);
    let (scores, labels) = match net.encoder() {
        Encoder::Bits { .. } => {
            let bits: Vec<u8> = (0..rows * cols).map(|i| (byte(i) >> (i % 8)) & 1).collect();
            let input = Input::Bits(Matrix::c_order(&bits, rows, cols).expect("a C-ordered view"));
            (net.scores(input, &options), net.predict(input, &options))
        }
        Encoder::Thresholds(_) => {
            let features: Vec<f32> = (0..rows * cols).map(|i| byte(i) as f32 / 16.0 - 8.0).collect();
            let input = Input::F32(Matrix::c_order(&features, rows, cols).expect("a C-ordered view"));
            (net.scores(input, &options), net.predict(input, &options))
        }
    };
    let scores = scores.expect("valid samples evaluate");
    let labels = labels.expect("valid samples predict");
    let k = net.num_classes();
    assert_eq!(scores.len(), rows * k);
    assert_eq!(labels.len(), rows);
    let group = (net.output_width() / k) as i32;
    for (row, &label) in scores.chunks(k).zip(&labels) {
        assert!(row.iter().all(|&s| (0..=group).contains(&s)), "a score outside 0..={group}: {row:?}");
        let best = *row.iter().max().unwrap();
        assert_eq!(label, row.iter().position(|&s| s == best).unwrap() as i64, "argmax of {row:?}");
    }
});
