//! Hostile descriptions and tensors of format 1.2's spatial kinds (FORMAT.md 3.7 to 3.11): missing, extra and
//! ill-ranged keys, shapes that do not chain, windows that do not fit, leaves outside the receptive field, tensors
//! of the wrong shape, and enormous geometries that must fail without allocating for them. Every one is a format
//! error naming what is wrong, never a panic.

use serde_json::{json, Value};

use crate::common::*;
use crate::fixtures::*;
use crate::limits::{described, fails_fast, HUGE};

/// A network of every spatial kind over a 2 x 5 x 5 image of bits: conv_gates (2 trees of depth 2, 3 x 3, padding
/// 1: 2 x 5 x 5), or_pool (2 x 2, stride 2: 2 x 2 x 2), conv_luts (3 tables of 3 inputs, 2 x 2, padding [1, 0]:
/// 3 x 3 x 1), conv_binary (2 filters of 3 x 2 x 1 = 6 weights, 2 padding bits, one padding: 2 x 2 x 1), 2 classes.
pub(crate) fn spatial_template() -> RefNet {
    let geometry =
        |input_shape, kernel_size, padding| RefGeometry { input_shape, kernel_size, stride: [1, 1], padding };
    let trees = (0..2)
        .map(|o| RefTree {
            leaves: (0..4).map(|j| [(o + j) % 2, j % 3, (j + 1) % 3]).collect(),
            ops: vec![6, 8 + o as u8, 14],
        })
        .collect();
    let tables = (0..3)
        .map(|o| RefConvTable {
            leaves: (0..3).map(|j| [(o + j) % 2, j % 2, (o + j + 1) % 2]).collect(),
            entries: (0..8).map(|a| (a + o) % 3 == 0).collect(),
        })
        .collect();
    let filters =
        (0..2).map(|o| RefFilter { weights: (0..6).map(|k| (k + o) % 2 == 0).collect(), threshold: o - 1 }).collect();
    RefNet {
        encoder: RefEncoder::Bits(50),
        layers: vec![
            RefLayer::ConvGates(RefConvGates { geometry: geometry([2, 5, 5], [3, 3], [1, 1]), depth: 2, trees }),
            RefLayer::OrPool(RefOrPool {
                geometry: RefGeometry { input_shape: [2, 5, 5], kernel_size: [2, 2], stride: [2, 2], padding: [0, 0] },
            }),
            RefLayer::ConvLuts(RefConvLuts { geometry: geometry([2, 2, 2], [2, 2], [1, 0]), arity: 3, tables }),
            RefLayer::ConvBinary(RefConvBinary {
                geometry: geometry([3, 3, 1], [2, 1], [0, 0]),
                pad_value: 1,
                filters,
            }),
        ],
        num_classes: 2,
        tau: 2.0,
        info: Default::default(),
        pack_here: false,
    }
}

/// Layer `i`'s own keys, besides `kind`, `width` and `sources`.
const KEYS: [&[&str]; 4] = [
    &["input_shape", "kernel_size", "stride", "padding", "out_channels", "depth"],
    &["input_shape", "kernel_size", "stride"],
    &["input_shape", "kernel_size", "stride", "padding", "out_channels", "arity"],
    &["input_shape", "kernel_size", "stride", "padding", "out_channels", "pad_value"],
];

/// The template's description edited by `edit` fails with a format error naming every one of `needles`.
#[track_caller]
fn check(edit: impl Fn(&mut Value), needles: &[&str]) {
    let (mut description, tensors) = spatial_template().file_parts();
    edit(&mut description);
    expect_format(&file(&description, &tensors), needles);
}

#[test]
fn the_spatial_template_loads_from_every_version() {
    let reference = spatial_template();
    let net = reference.build();
    assert_eq!(reference.layers.iter().map(RefLayer::width).collect::<Vec<_>>(), [50, 8, 9, 4]);
    for bytes in [reference.file_bytes(), reference.file_bytes_v1_1(), reference.file_bytes_v1_2()] {
        assert_eq!(bitlogic::Network::from_bytes(&bytes).unwrap(), net);
    }
}

#[test]
fn missing_and_extra_spatial_keys_are_named() {
    for (i, keys) in KEYS.iter().enumerate() {
        for &key in keys.iter() {
            check(|d| drop(d["layers"][i].as_object_mut().unwrap().remove(key)), &[key]);
        }
        check(|d| d["layers"][i]["dilation"] = json!([1, 1]), &["dilation"]);
    }
    // Keys of the other spatial kinds, and of the dense ones.
    check(|d| d["layers"][1]["padding"] = json!([0, 0]), &["padding"]);
    check(|d| d["layers"][1]["out_channels"] = json!(2), &["out_channels"]);
    check(|d| d["layers"][0]["arity"] = json!(2), &["arity"]);
    check(|d| d["layers"][0]["pad_value"] = json!(1), &["pad_value"]);
    check(|d| d["layers"][2]["depth"] = json!(2), &["depth"]);
    check(|d| d["layers"][3]["arity"] = json!(2), &["arity"]);
}

#[test]
fn ill_formed_geometries_are_named() {
    // Arrays of the wrong length or type, and zero sizes.
    for (key, bad) in [
        ("input_shape", json!([2, 5])),
        ("input_shape", json!([2, 5, 5, 1])),
        ("input_shape", json!([0, 5, 10])),
        ("input_shape", json!(50)),
        ("kernel_size", json!([3])),
        ("kernel_size", json!([0, 3])),
        ("kernel_size", json!([3, -1])),
        ("stride", json!([1, 0])),
        ("stride", json!([1.0, 1])),
        ("padding", json!([1, 1, 1])),
        ("padding", json!([-1, 1])),
        ("padding", json!("1")),
    ] {
        check(|d| d["layers"][0][key] = bad.clone(), &[key]);
    }
    check(|d| d["layers"][0]["out_channels"] = json!(0), &["out_channels"]);
    // The wrong input width: C*H*W of 2 x 5 x 4 is 40, the encoder gives 50 (the shape, not the width, is wrong).
    check(|d| d["layers"][0]["input_shape"] = json!([2, 5, 4]), &["input_shape"]);
    check(|d| d["layers"][2]["input_shape"] = json!([2, 1, 2]), &["input_shape"]);
    // Windows larger than the padded input: no output position.
    check(|d| d["layers"][0]["kernel_size"] = json!([8, 3]), &["kernel_size"]);
    check(|d| d["layers"][1]["kernel_size"] = json!([2, 6]), &["kernel_size"]);
    check(|d| d["layers"][3]["kernel_size"] = json!([2, 2]), &["kernel_size"]);
    // A width other than the one the geometry gives.
    for (i, width) in [(0, 49), (1, 9), (2, 3), (3, 0)] {
        check(|d| d["layers"][i]["width"] = json!(width), &["width"]);
    }
}

#[test]
fn spatial_parameters_out_of_range_are_named() {
    for depth in [json!(0), json!(9), json!(-1), json!(2.5)] {
        check(|d| d["layers"][0]["depth"] = depth.clone(), &["depth"]);
    }
    for arity in [json!(0), json!(9), json!(null)] {
        check(|d| d["layers"][2]["arity"] = arity.clone(), &["arity"]);
    }
    for pad_value in [json!(2), json!(-1), json!(0.5), json!(true), json!(255)] {
        check(|d| d["layers"][3]["pad_value"] = pad_value.clone(), &["pad_value"]);
    }
}

/// The template's file with tensor `name` edited by `edit`, failing with a format error naming `needles`.
#[track_caller]
fn check_tensor(name: &str, edit: impl Fn(&mut RawTensor), needles: &[&str]) {
    let (description, mut tensors) = spatial_template().file_parts();
    edit(tensor(&mut tensors, name));
    expect_format(&file(&description, &tensors), needles);
}

#[test]
fn leaves_outside_the_receptive_field_are_named() {
    // Leaf 0 of each conv layer: [c, dy, dx] with c < C = 2, dy < kh, dx < kw (3 x 3, then 2 x 2).
    for (name, layer, kernel) in [("layers.0.leaves", "layer 0", 3u32), ("layers.2.leaves", "layer 2", 2)] {
        for (at, value) in [(0, 2u32), (1, kernel), (2, kernel), (0, u32::MAX), (2, u32::MAX)] {
            let edit = |t: &mut RawTensor| t.data[4 * at..4 * at + 4].copy_from_slice(&value.to_le_bytes());
            check_tensor(name, edit, &[layer]);
        }
    }
}

#[test]
fn spatial_tensor_defects_are_named() {
    // The leaves' and ops' shapes: transposed, flattened, one tree short (with the data to match).
    for (name, shape) in [
        ("layers.0.leaves", vec![4, 2, 3]),
        ("layers.0.leaves", vec![2, 12]),
        ("layers.0.ops", vec![3, 2]),
        ("layers.0.ops", vec![6]),
        ("layers.2.leaves", vec![3, 3, 3, 1]),
        ("layers.2.tables", vec![1, 3]),
        ("layers.3.weights", vec![1, 2]),
        ("layers.3.thresholds", vec![2, 1]),
    ] {
        check_tensor(name, |t| t.shape = shape.clone(), &[name]);
    }
    check_tensor(
        "layers.0.ops",
        |t| {
            t.shape = vec![1, 3];
            t.data.truncate(3);
        },
        &["layers.0.ops"],
    );
    // Wrong dtypes.
    check_tensor("layers.0.leaves", |t| t.dtype = "I32", &["layers.0.leaves"]);
    check_tensor("layers.3.thresholds", |t| t.dtype = "U32", &["layers.3.thresholds"]);
    // Values: an op code past 15, table padding bits (entries 8.. of none: arity 3 fills its byte, so a table
    // longer than its row), weight padding bits (weights 6 and 7 of a 6-weight row).
    check_tensor("layers.0.ops", |t| t.data[2] = 16, &["layer 0", "16"]);
    for bit in 6..8 {
        check_tensor("layers.3.weights", |t| t.data[1] |= 1 << bit, &["layer 3"]);
    }
    // Missing tensors, and a tensor for the pool, which has none.
    let (description, tensors) = spatial_template().file_parts();
    for name in tensors.iter().map(|t| t.name.clone()) {
        let fewer: Vec<RawTensor> = tensors.iter().filter(|t| t.name != name).cloned().collect();
        expect_format(&file(&description, &fewer), &[&name]);
    }
    let mut extra = tensors.clone();
    extra.push(RawTensor::new("layers.1.weights", "U8", vec![1], vec![0]));
    expect_format(&file(&description, &extra), &["layers.1.weights"]);
}

/// Geometries whose sizes are enormous (2^31 - 1 and past it, or products past it) fail at once, without
/// allocating for them, whatever the tensors say.
#[test]
fn enormous_geometries_fail_fast() {
    let bits = |n: u64| json!({"kind": "bits", "num_inputs": n});
    let tiny = [
        RawTensor::new("layers.0.leaves", "U32", vec![1, 2, 3], vec![0; 24]),
        RawTensor::new("layers.0.ops", "U8", vec![1, 1], vec![6]),
    ];
    let conv = |input_shape: Value, kernel: Value, padding: Value, out_channels: u64, width: u64| {
        json!({
            "kind": "conv_gates", "width": width, "depth": 1, "input_shape": input_shape, "kernel_size": kernel,
            "stride": [1, 1], "padding": padding, "out_channels": out_channels, "sources": [0],
        })
    };
    let cases = [
        // A huge image over a tiny encoder, and over a huge one (the output alone would be 2^31 - 1 bits per tree).
        (bits(4), conv(json!([1, 1, HUGE]), json!([1, 1]), json!([0, 0]), 1, HUGE)),
        (bits(HUGE), conv(json!([1, 1, HUGE]), json!([1, 1]), json!([0, 0]), 2, 2 * HUGE)),
        // Products past the bound: C*H*W, C*kh*kw, H'*W', O*H'*W'.
        (bits(4), conv(json!([HUGE, HUGE, 4]), json!([1, 1]), json!([0, 0]), 1, 4)),
        (bits(4), conv(json!([4, 1, 1]), json!([HUGE, HUGE]), json!([HUGE, HUGE]), 1, 1)),
        (bits(1), conv(json!([1, 1, 1]), json!([1, 1]), json!([HUGE, HUGE]), 1, 1)),
        (bits(4), conv(json!([1, 2, 2]), json!([1, 1]), json!([0, 0]), HUGE, 4 * HUGE)),
        // Sizes past u32 and padding that overflows H + 2*ph.
        (bits(4), conv(json!([1, 2, 2]), json!([1, 1]), json!([u32::MAX, 0]), 1, 4)),
        (bits(4), conv(json!([1, 2, 2]), json!([1, 1]), json!([0, 0]), u64::from(u32::MAX) + 1, 4)),
        (bits(4), conv(json!([1, 2, 2]), json!([u64::MAX, 1]), json!([0, 0]), 1, 4)),
    ];
    for (encoder, layer) in cases {
        let d = described(&encoder, json!([layer]));
        fails_fast(&file(&d, &tiny), &[]);
    }
    // A huge pool and a huge binary convolution, with tiny or no tensors.
    let d = described(
        &bits(HUGE),
        json!([{"kind": "or_pool", "width": HUGE, "input_shape": [1, 1, HUGE], "kernel_size": [1, 1],
                "stride": [1, 1], "sources": [0]}]),
    );
    // Valid and without tensors: the pool itself loads, but evaluating it would need a node per bit.
    let _ = bitlogic::Network::from_bytes(&file(&d, &[]));
    let d = described(
        &bits(4),
        json!([{"kind": "conv_binary", "width": HUGE, "pad_value": 1, "input_shape": [1, 2, 2],
                "kernel_size": [1, 1], "stride": [1, 1], "padding": [0, 0], "out_channels": HUGE, "sources": [0]}]),
    );
    let tensors = [
        RawTensor::new("layers.0.weights", "U8", vec![1, 1], vec![0]),
        RawTensor::new("layers.0.thresholds", "I32", vec![1], vec![0; 4]),
    ];
    fails_fast(&file(&d, &tensors), &[]);
}
