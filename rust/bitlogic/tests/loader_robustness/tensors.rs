//! The tensors: missing, extra, of the wrong dtype or shape, or holding bad values (FORMAT.md sections 3 and 4).

use serde_json::json;

use crate::common::*;
use crate::fixtures::*;

#[test]
fn tensor_defects_are_named() {
    let (description, tensors) = parts();
    let names: Vec<String> = tensors.iter().map(|t| t.name.clone()).collect();
    // Missing.
    for name in &names {
        let fewer: Vec<RawTensor> = tensors.iter().filter(|t| &t.name != name).cloned().collect();
        expect_format(&file(&description, &fewer), &[name]);
    }
    // Wrong dtype (same byte size where possible, so only the dtype is wrong).
    for name in &names {
        let mut t = tensors.clone();
        let entry = tensor(&mut t, name);
        entry.dtype = match entry.dtype {
            "U32" => "I32",
            "I32" => "U32",
            "F32" => "I32",
            _ => "I8",
        };
        expect_format(&file(&description, &t), &[name]);
    }
    // Wrong shape with the same number of elements: transposed, flattened, or with a unit dimension added.
    for name in &names {
        let mut t = tensors.clone();
        let entry = tensor(&mut t, name);
        entry.shape = match entry.shape.len() {
            1 => vec![entry.shape[0], 1],
            _ => entry.shape.iter().rev().copied().collect(),
        };
        if entry.shape.len() == 2 && entry.shape[0] == entry.shape[1] {
            entry.shape = vec![entry.shape[0] * entry.shape[1]];
        }
        expect_format(&file(&description, &t), &[name]);
    }
    // Too many or too few rows.
    let mut t = tensors.clone();
    let ops = tensor(&mut t, "layers.0.ops");
    ops.shape = vec![9];
    ops.data.push(0);
    expect_format(&file(&description, &t), &["layers.0.ops"]);
    // Binary weight rows sized for the wrong input width.
    let mut t = tensors.clone();
    let weights = tensor(&mut t, "layers.2.weights");
    weights.shape = vec![4, 2];
    weights.data = weights.data.iter().flat_map(|&b| [b, 0]).collect();
    expect_format(&file(&description, &t), &["layers.2.weights"]);
    // Extra tensors.
    for extra in ["layers.3.inputs", "encoder.bias", "head.weights"] {
        let mut t = tensors.clone();
        t.push(RawTensor::new(extra, "U8", vec![1], vec![0]));
        let message = expect_format(&file(&description, &t), &[]);
        assert!(message.contains(&format!("{extra},")) || message.ends_with(extra), "names {extra:?}: {message}");
    }
    // A thresholds tensor for a bits encoder.
    let bits = RefNet { encoder: RefEncoder::Bits(6), ..template() };
    let (bits_description, mut bits_tensors) = bits.file_parts();
    bits_tensors.insert(0, tensors[0].clone());
    expect_format(&file(&bits_description, &bits_tensors), &["encoder.thresholds"]);
}

#[test]
fn value_defects_are_named() {
    let (description, tensors) = parts();
    let with = |name: &str, f: &dyn Fn(&mut Vec<u8>)| {
        let mut t = tensors.clone();
        f(&mut tensor(&mut t, name).data);
        file(&description, &t)
    };
    // Wires at or beyond the input width: gate A and B (input width 6), a LUT wire (8), for every position.
    for (name, index, width) in [("layers.0.inputs", 0, 6u32), ("layers.0.inputs", 15, 6), ("layers.1.inputs", 11, 8)] {
        for wire in [width, width + 1, u32::MAX] {
            let bytes = with(name, &|d| d[4 * index..4 * index + 4].copy_from_slice(&wire.to_le_bytes()));
            let layer = &name[..8].replace("layers.", "layer ");
            expect_format(&bytes, &[layer, &wire.to_string()]);
        }
    }
    // Op codes above 15.
    for op in [16u8, 17, 128, 255] {
        expect_format(&with("layers.0.ops", &|d| d[7] = op), &["layer 0", &op.to_string()]);
    }
    // LUT padding bits (entries 4..8 of an arity-2 table).
    for bit in 4..8 {
        expect_format(&with("layers.1.tables", &|d| d[5] |= 1 << bit), &["layer 1"]);
    }
    // Binary weight padding bits (inputs 6 and 7 of a 6-input row).
    for bit in 6..8 {
        expect_format(&with("layers.2.weights", &|d| d[3] |= 1 << bit), &["layer 2"]);
    }
    // NaN thresholds, quiet, negative and signalling.
    for nan in [f32::NAN.to_bits(), (-f32::NAN).to_bits(), 0x7f80_0001, 0xffc0_0000] {
        let bytes = with("encoder.thresholds", &|d| d[12..16].copy_from_slice(&nan.to_le_bytes()));
        expect_format(&bytes, &["encoder", "NaN"]);
    }
    // The head's width must divide into the classes.
    let mut d = description.clone();
    d["head"]["num_classes"] = json!(3);
    expect_format(&file(&d, &tensors), &["head", "3"]);
}

#[test]
fn zero_counts_are_format_errors() {
    // Width 0 with empty tensors that match it.
    let mut reference = template();
    reference.layers.truncate(1);
    let (mut d, mut t) = reference.file_parts();
    d["layers"][0]["width"] = json!(0);
    for tensor in &mut t[1..] {
        tensor.shape[0] = 0;
        tensor.data.clear();
    }
    expect_format(&file(&d, &t), &["layer 0"]);

    // No encoder inputs, no thresholds per feature, no features.
    let (mut d, mut t) = RefNet { layers: Vec::new(), ..template() }.file_parts();
    d["encoder"]["thresholds_per_feature"] = json!(0);
    t[0].shape = vec![3, 0];
    t[0].data.clear();
    expect_format(&file(&d, &t), &["encoder"]);
    d["encoder"]["num_features"] = json!(0);
    d["encoder"]["thresholds_per_feature"] = json!(2);
    t[0].shape = vec![0, 2];
    expect_format(&file(&d, &t), &["encoder"]);
    let (mut d, t) = RefNet { encoder: RefEncoder::Bits(2), layers: Vec::new(), ..template() }.file_parts();
    d["encoder"]["num_inputs"] = json!(0);
    expect_format(&file(&d, &t), &["encoder"]);
}
