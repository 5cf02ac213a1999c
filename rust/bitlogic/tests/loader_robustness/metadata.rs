//! The `__metadata__` keys and the versioning rule (FORMAT.md section 2).

use bitlogic::{Error, Network, FORMAT_VERSION};
use serde_json::{json, Value};

use crate::common::*;
use crate::fixtures::*;

#[test]
fn metadata_defects_are_named() {
    let (description, tensors) = parts();
    let network = description.to_string();
    let with = |metadata: Value| write_container(&metadata, &tensors);
    expect_format(&with(Value::Null), &["__metadata__"]);
    expect_format(&with(json!({"format_version": "1.0", "network": network})), &["`format`"]);
    expect_format(&with(json!({"format": "bitlogic", "network": network})), &["format_version"]);
    expect_format(&with(json!({"format": "bitlogic", "format_version": "1.0"})), &["network"]);
    expect_format(&with(json!({"format": "safetensors", "format_version": "1.0", "network": network})), &["format"]);
    expect_format(
        &with(json!({"format": "bitlogic", "format_version": "1.0", "network": network, "author": "me"})),
        &["author"],
    );
    // Metadata values must be strings (the safetensors rule).
    expect_format(&with(json!({"format": "bitlogic", "format_version": 1.0, "network": network})), &[]);
    expect_format(&with(json!({"format": "bitlogic", "format_version": "1.0", "network": description})), &[]);
    // Not of the form MAJOR.MINOR (a number too large for any version is a version error, below).
    for version in ["x", "1", "1.0.0", "", "1.x", "-1.0", "1.-0", " 1.0", "1.0 ", "01.0", "1.01", "1.00", "1.0e0"] {
        let bytes = with(json!({"format": "bitlogic", "format_version": version, "network": network}));
        expect_format(&bytes, &["format_version"]);
    }
}

#[test]
fn versions_follow_the_versioning_rule() {
    let (description, tensors) = parts();
    let network = description.to_string();
    // Files of 1.1 and later record the digest of their data.
    let with_version = |version: &str, network: &str| {
        let metadata = json!({"format": "bitlogic", "format_version": version, "network": network});
        let metadata = if version == "1.0" { metadata } else { with_digest(metadata, &tensors) };
        write_container(&metadata, &tensors)
    };
    // Another major, or a number no version has: an error naming both versions.
    let unsupported =
        ["2.0", "0.9", "3.1", "10.0", "99999999999.0", "1.99999999999999999999", "1.4294967296", "4294967297.0"];
    for version in unsupported {
        match Network::from_bytes(&with_version(version, &network)) {
            Err(e @ Error::Version { .. }) => {
                let message = e.to_string();
                assert!(message.contains(version) && message.contains(FORMAT_VERSION), "{message}");
            }
            other => panic!("version {version}: expected a version error, got {other:?}"),
        }
    }
    // A newer minor version of major 1 is read...
    for version in ["1.0", "1.1", "1.9", "1.10", "1.123", "1.4294967295"] {
        let net = Network::from_bytes(&with_version(version, &network)).unwrap();
        assert_eq!(net, template().build(), "{version}");
    }
    // ...and a construct it adds that this reader does not know is an error naming the construct.
    let mut newer = description.clone();
    newer["layers"][0]["kind"] = json!("conv");
    expect_format(&with_version("1.9", &newer.to_string()), &["conv"]);
    let mut newer = description.clone();
    newer["encoder"]["kind"] = json!("one_hot");
    expect_format(&with_version("1.9", &newer.to_string()), &["one_hot"]);
    let mut newer = description.clone();
    newer["head"]["normalize"] = json!(true);
    expect_format(&with_version("1.9", &newer.to_string()), &["normalize"]);
    let mut skip = description.clone();
    skip["layers"][1]["sources"] = json!([0, 1]);
    expect_format(&with_version("1.9", &skip.to_string()), &["sources"]);
}
