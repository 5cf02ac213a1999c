//! The digest of the data (format 1.1, FORMAT.md section 2): the writer records it, the reader verifies it, and a
//! damaged data byte is a format error naming both digests instead of a different network.

use bitlogic::{random_network, Error, LayerKind, Network, FORMAT_VERSION};
use serde_json::{json, Value};

use crate::common::*;
use crate::fixtures::*;

/// The metadata of a framed file.
fn metadata(bytes: &[u8]) -> Value {
    let (header, _) = frame(bytes).unwrap();
    serde_json::from_slice::<Value>(header).unwrap()["__metadata__"].clone()
}

/// Every file the engine writes is of version 1.2 (whatever kinds it holds) and records the SHA-256 of its data,
/// computed here independently.
#[test]
fn the_writer_records_the_digest_of_the_data() {
    assert_eq!(FORMAT_VERSION, "1.2");
    let nets = [
        template().build(),
        crate::spatial::spatial_template().build(),
        RefNet { layers: Vec::new(), encoder: RefEncoder::Bits(4), ..template() }.build(),
        random_network(20, &[16, 8], 2, LayerKind::Luts { arity: 3 }, 1).unwrap(),
    ];
    for net in nets {
        let bytes = net.to_bytes().unwrap();
        let metadata = metadata(&bytes);
        assert_eq!(metadata["format_version"], json!("1.2"));
        let keys: Vec<&String> = metadata.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["data_sha256", "format", "format_version", "network"]);
        let (_, data) = frame(&bytes).unwrap();
        assert_eq!(metadata["data_sha256"], json!(sha256_hex(data)));
        assert_eq!(Network::from_bytes(&bytes).unwrap(), net);
    }
}

/// Flipping any bit of the data of a 1.1 file, written by the engine or by the independent writer, is a format
/// error that names the key and both digests.
#[test]
fn a_damaged_data_byte_names_both_digests() {
    let files = [template().build().to_bytes().unwrap(), template().file_bytes_v1_1()];
    for good in files {
        let (header, data) = frame(&good).unwrap();
        let recorded = sha256_hex(data);
        let start = 8 + header.len();
        for i in 0..data.len() {
            for bit in [0, 7] {
                let mut bad = good.clone();
                bad[start + i] ^= 1 << bit;
                let found = sha256_hex(&bad[start..]);
                expect_format(&bad, &["data_sha256", &recorded, &found]);
            }
        }
    }
}

/// The independent writer's 1.1 file loads as the network the 1.0 file holds.
#[test]
fn version_1_1_files_of_the_independent_writer_load() {
    let net = Network::from_bytes(&template().file_bytes_v1_1()).unwrap();
    assert_eq!(net, Network::from_bytes(&template().file_bytes()).unwrap());
    assert_eq!(net, template().build());
}

#[test]
fn digest_defects_are_named() {
    let (description, tensors) = parts();
    let network = description.to_string();
    let v1_1 = with_digest(json!({"format": "bitlogic", "format_version": "1.1", "network": network}), &tensors);
    let recorded = v1_1["data_sha256"].as_str().unwrap().to_string();
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut metadata = v1_1.clone();
        edit(&mut metadata);
        write_container(&metadata, &tensors)
    };
    Network::from_bytes(&with(&|_| {})).unwrap();
    // Missing in a 1.1 (or later) file.
    for version in ["1.1", "1.2"] {
        let bytes = with(&|m| {
            m["format_version"] = json!(version);
            m.as_object_mut().unwrap().remove("data_sha256");
        });
        expect_format(&bytes, &["data_sha256", "missing", version]);
    }
    // Present in a 1.0 file, which has no such key.
    expect_format(&with(&|m| m["format_version"] = json!("1.0")), &["data_sha256", "1.0"]);
    // Not 64 lowercase hexadecimal digits.
    let upper = recorded.to_uppercase();
    let short = &recorded[1..];
    let long = format!("{recorded}0");
    let spaced = format!(" {}", &recorded[1..]);
    for bad in [upper.as_str(), short, long.as_str(), spaced.as_str(), "", "sha256:00"] {
        expect_format(&with(&|m| m["data_sha256"] = json!(bad)), &["data_sha256", "hexadecimal"]);
    }
    // Well formed, but of other data.
    let other = sha256_hex(b"other data");
    expect_format(&with(&|m| m["data_sha256"] = json!(other)), &["data_sha256", &other, &recorded]);
}

/// The digest is checked before the tensors are read, so a damaged file is reported as damaged, not as whatever
/// its damage happens to look like (here, an op code above 15).
#[test]
fn the_digest_is_checked_before_the_tensors() {
    let good = template().build().to_bytes().unwrap();
    let (header, data) = frame(&good).unwrap();
    let ops = serde_json::from_slice::<Value>(header).unwrap()["layers.0.ops"]["data_offsets"][0].as_u64().unwrap();
    let mut bad = good.clone();
    bad[8 + header.len() + ops as usize] = 200;
    let message = expect_format(&bad, &["data_sha256", &sha256_hex(data)]);
    assert!(!message.contains("200"), "{message}");
    // The same damage in a 1.0 file, which has no digest, is caught by the value checks.
    let good = template().file_bytes();
    let (header, _) = frame(&good).unwrap();
    let ops = serde_json::from_slice::<Value>(header).unwrap()["layers.0.ops"]["data_offsets"][0].as_u64().unwrap();
    let mut bad = good.clone();
    bad[8 + header.len() + ops as usize] = 200;
    match Network::from_bytes(&bad) {
        Err(Error::Format(message)) => assert!(message.contains("200") && message.contains("layer 0"), "{message}"),
        other => panic!("expected a format error, got {other:?}"),
    }
}
