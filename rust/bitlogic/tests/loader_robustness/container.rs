//! The safetensors container: framing, header JSON, tensor offsets and dtypes (FORMAT.md section 1).

use std::time::Duration;

use bitlogic::{Error, Network};
use serde_json::{json, Value};

use crate::alloc::measured;
use crate::common::*;
use crate::fixtures::*;

#[test]
fn template_loads() {
    let reference = template();
    let net = Network::from_bytes(&reference.file_bytes()).unwrap();
    assert_eq!(net, reference.build());
}

#[test]
fn malformed_containers_are_format_errors() {
    let good = template().file_bytes();
    let (header, data) = frame(&good).map(|(h, d)| (h.to_vec(), d.to_vec())).unwrap();
    for len in 0..8 {
        expect_format(&good[..len], &[]);
    }
    // Header length beyond the file, and absurd.
    for n in [header.len() as u64 + data.len() as u64 + 1, u64::MAX, 1 << 40, 100_000_001] {
        let mut bad = good.clone();
        bad[..8].copy_from_slice(&n.to_le_bytes());
        expect_format(&bad, &[]);
    }
    // Not UTF-8, not JSON, not an object.
    let mut bad_utf8 = header.clone();
    bad_utf8[1] = 0xff;
    expect_format(&assemble(&bad_utf8, &data), &[]);
    for text in ["", "{", "[]", "\"x\"", "null", "{\"__metadata__\": {}} x"] {
        expect_format(&assemble(text.as_bytes(), &[]), &[]);
    }
    // Data buffer longer or shorter than the tensors.
    let mut longer = good.clone();
    longer.push(0);
    expect_format(&longer, &[]);
    expect_format(&good[..good.len() - 1], &[]);
    // Trailing spaces in the header (the safetensors alignment padding) are fine.
    let mut padded = header.clone();
    padded.extend_from_slice(b"    ");
    Network::from_bytes(&assemble(&padded, &data)).unwrap();
}

/// Rewrites the tensor entries of the template's header with `f`.
pub(crate) fn with_header_entries(f: impl Fn(&mut serde_json::Map<String, Value>)) -> Vec<u8> {
    let good = template().file_bytes();
    let (header, data) = frame(&good).unwrap();
    let mut outer: Value = serde_json::from_slice(header).unwrap();
    f(outer.as_object_mut().unwrap());
    assemble(outer.to_string().as_bytes(), data)
}

#[test]
fn bad_tensor_offsets_and_dtypes_are_format_errors() {
    // A gap, an overlap, a size that does not match the shape, reversed offsets, an unknown dtype.
    let shifted = |delta: i64| {
        with_header_entries(move |h| {
            for (name, t) in h.iter_mut() {
                if name != "__metadata__" && t["data_offsets"][0].as_u64().unwrap() > 0 {
                    let [b, e] = [0, 1].map(|i| t["data_offsets"][i].as_i64().unwrap() + delta);
                    t["data_offsets"] = json!([b, e]);
                }
            }
        })
    };
    expect_format(&shifted(1), &[]);
    expect_format(&shifted(-1), &[]);
    expect_format(&with_header_entries(|h| h["layers.0.ops"]["shape"] = json!([9])), &[]);
    expect_format(&with_header_entries(|h| h["layers.0.ops"]["data_offsets"] = json!([40, 32])), &[]);
    expect_format(&with_header_entries(|h| h["layers.0.ops"]["data_offsets"] = json!([-1, 8])), &[]);
    expect_format(&with_header_entries(|h| h["layers.0.ops"]["dtype"] = json!("X9")), &[]);
    expect_format(&with_header_entries(|h| h["layers.0.ops"]["shape"] = json!([-8])), &[]);
    expect_format(&with_header_entries(|h| h["layers.0.ops"]["shape"] = json!("8")), &[]);
    expect_format(&with_header_entries(|h| drop(h["layers.0.ops"].as_object_mut().unwrap().remove("dtype"))), &[]);
}

/// Eight tensors of 2^61 - 1 bytes each claim offsets up to 2^64 - 8: adding the header length to the end of the
/// data overflows. The loader must still return an error (a debug build must not panic on the overflow).
#[test]
fn offsets_near_the_top_of_u64_are_format_errors() {
    let size = (1u64 << 61) - 1;
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), standard_metadata(&parts().0));
    for i in 0..8u64 {
        header.insert(
            format!("t{i}"),
            json!({"dtype": "U8", "shape": [size], "data_offsets": [i * size, (i + 1) * size]}),
        );
    }
    let (_, allocated, elapsed) = measured(|| {
        let result = std::panic::catch_unwind(|| {
            Network::from_bytes(&assemble(Value::Object(header).to_string().as_bytes(), &[]))
        });
        match result {
            Ok(Err(Error::Format(_))) => {}
            Ok(other) => panic!("expected a format error, got {other:?}"),
            Err(_) => panic!("from_bytes panicked on tensor offsets summing past u64::MAX"),
        }
    });
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    assert!(allocated < 1 << 20, "{allocated} bytes");
}
