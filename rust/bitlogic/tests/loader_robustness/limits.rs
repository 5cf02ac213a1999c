//! Enormous claims: headers announcing huge widths or shapes fail at once, without allocating for them.

use std::time::Duration;

use bitlogic::{EvalOptions, Input, Matrix, Network};
use serde_json::{json, Value};

use crate::alloc::{allocation_budget, measured};
use crate::common::*;
use crate::fixtures::*;

/// How long refusing an enormous claim may take. Honouring one (walking or allocating 2^31 entries) takes tens of
/// seconds; the bound leaves room for debug code on a loaded two-core machine, and the allocation bounds are the
/// precise check.
pub(crate) const FAST: Duration = Duration::from_secs(2);

/// Loads `bytes`, asserting it fails with a format error quickly ([`FAST`]) and without allocating more than a
/// mebibyte.
#[track_caller]
pub(crate) fn fails_fast(bytes: &[u8], needles: &[&str]) {
    let (message, allocated, elapsed) = measured(|| expect_format(bytes, needles));
    assert!(elapsed < FAST, "took {elapsed:?}: {message}");
    assert!(allocated < 1 << 20, "allocated {allocated} bytes: {message}");
}

pub(crate) const HUGE: u64 = (1 << 31) - 1;

/// A description with `encoder`, `layers` and a one-class head.
pub(crate) fn described(encoder: &Value, layers: Value) -> Value {
    json!({"encoder": encoder, "layers": layers, "head": {"kind": "group_sum", "num_classes": 1, "tau": 1.0}})
}

#[test]
fn enormous_widths_fail_fast() {
    let bits_encoder = json!({"kind": "bits", "num_inputs": 4});
    let tiny_gates = [
        RawTensor::new("layers.0.inputs", "U32", vec![1, 2], vec![0; 8]),
        RawTensor::new("layers.0.ops", "U8", vec![1], vec![6]),
    ];
    for width in [HUGE, u32::MAX as u64, 1 << 31] {
        // The description claims a huge layer; the tensors are tiny and say so.
        let d = described(&bits_encoder, json!([{"kind": "gates", "width": width, "sources": [0]}]));
        fails_fast(&file(&d, &tiny_gates), &["layers.0.inputs"]);

        // The tensors' shapes agree with the description, but the data is not there.
        let metadata = standard_metadata(&d);
        let header = json!({
            "__metadata__": metadata,
            "layers.0.inputs": {"dtype": "U32", "shape": [width, 2], "data_offsets": [0, 8]},
            "layers.0.ops": {"dtype": "U8", "shape": [width], "data_offsets": [8, 9]},
        });
        fails_fast(&assemble(header.to_string().as_bytes(), &[0; 9]), &[]);

        // Huge LUT layers of the largest arity.
        let d = described(&bits_encoder, json!([{"kind": "luts", "width": width, "arity": 8, "sources": [0]}]));
        let tensors = [
            RawTensor::new("layers.0.inputs", "U32", vec![1, 8], vec![0; 32]),
            RawTensor::new("layers.0.tables", "U8", vec![1, 32], vec![0; 32]),
        ];
        fails_fast(&file(&d, &tensors), &["layers.0.inputs"]);

        // A huge binary layer, and a binary layer over a huge encoder.
        let d = described(&bits_encoder, json!([{"kind": "binary", "width": width, "sources": [0]}]));
        let tensors = [
            RawTensor::new("layers.0.weights", "U8", vec![1, 1], vec![0]),
            RawTensor::new("layers.0.thresholds", "I32", vec![1], vec![0; 4]),
        ];
        fails_fast(&file(&d, &tensors), &["layers.0.weights"]);
        let huge_encoder = json!({"kind": "bits", "num_inputs": width});
        let d = described(&huge_encoder, json!([{"kind": "binary", "width": 1, "sources": [0]}]));
        fails_fast(&file(&d, &tensors), &[]);

        // A huge threshold encoder.
        let encoder = json!({
            "kind": "thresholds",
            "num_features": width,
            "thresholds_per_feature": width,
            "bit_order": "feature_major",
        });
        let d = described(&encoder, json!([]));
        fails_fast(
            &file(&d, &[RawTensor::new("encoder.thresholds", "F32", vec![1, 1], vec![0; 4])]),
            &["encoder.thresholds"],
        );
        let header = json!({
            "__metadata__": standard_metadata(&d),
            "encoder.thresholds": {"dtype": "F32", "shape": [width, width], "data_offsets": [0, 4]},
        });
        fails_fast(&assemble(header.to_string().as_bytes(), &[0; 4]), &[]);
    }
    // Shapes whose element count overflows.
    let header = json!({
        "__metadata__": standard_metadata(&described(&bits_encoder, json!([]))),
        "x": {"dtype": "U32", "shape": [u64::MAX, u64::MAX, 2], "data_offsets": [0, 0]},
    });
    fails_fast(&assemble(header.to_string().as_bytes(), &[]), &[]);
    // Many layers described, none present.
    let layers: Vec<Value> = (0..20_000).map(|i| json!({"kind": "gates", "width": HUGE, "sources": [i]})).collect();
    let d = described(&bits_encoder, json!(layers));
    let bytes = file(&d, &tiny_gates);
    let (_, allocated, elapsed) = measured(|| expect_format(&bytes, &["layers.0.inputs"]));
    assert!(elapsed < FAST, "{elapsed:?}");
    assert!(allocated < allocation_budget(bytes.len()), "{allocated} bytes for a file of {}", bytes.len());
}

/// A network that is only an enormous encoder is valid and small on disk: it loads quickly without allocating for
/// its width, and an empty batch evaluates.
#[test]
fn enormous_encoder_without_layers_loads_without_allocating() {
    let d = described(&json!({"kind": "bits", "num_inputs": HUGE}), json!([]));
    let bytes = file(&d, &[]);
    let (net, allocated, elapsed) = measured(|| Network::from_bytes(&bytes));
    let net = net.unwrap();
    assert!(elapsed < FAST, "{elapsed:?}");
    assert!(allocated < 1 << 20, "{allocated} bytes");
    assert_eq!(net.num_inputs(), HUGE as usize);
    let input = Input::Bits(Matrix::new(&[], 0, HUGE as usize, HUGE as usize, 1).unwrap());
    assert_eq!(net.scores(input, &EvalOptions::default()).unwrap(), Vec::<i32>::new());
    assert_eq!(Network::from_bytes(&net.to_bytes().unwrap()).unwrap(), net);
    // One past the engine's width limit is refused.
    let d = described(&json!({"kind": "bits", "num_inputs": HUGE + 1}), json!([]));
    fails_fast(&file(&d, &[]), &["encoder"]);
}
