//! Repeated JSON keys and extra tensor-entry keys (FORMAT.md section 1): a reader rejects them, naming the key,
//! instead of keeping one of the values as a JSON parser would.

use serde_json::{json, Value};

use crate::common::*;
use crate::fixtures::*;

/// The template's file (version 1.0) with its header text edited by `edit`.
fn with_header_text(edit: impl Fn(&str) -> String) -> Vec<u8> {
    let good = template().file_bytes();
    let (header, _) = frame(&good).unwrap();
    let text = edit(std::str::from_utf8(header).unwrap());
    assert_ne!(text.as_bytes(), header, "the edit changed nothing");
    reframe(&good, text.as_bytes(), false)
}

/// `text` with `insert` placed right after the first occurrence of `after`.
fn insert_after(text: &str, after: &str, insert: &str) -> String {
    let at = text.find(after).unwrap_or_else(|| panic!("{after:?} not in {text}")) + after.len();
    format!("{}{insert}{}", &text[..at], &text[at..])
}

#[test]
fn repeated_keys_in_the_container_header_are_named() {
    // A tensor entry twice (the second is the same, so only the repetition is wrong).
    let bytes = with_header_text(|t| {
        let entry: Value = serde_json::from_str::<Value>(t).unwrap()["layers.0.ops"].clone();
        insert_after(t, "{", &format!("\"layers.0.ops\":{entry},"))
    });
    expect_format(&bytes, &["layers.0.ops", "twice"]);
    // A key of a tensor entry twice.
    let bytes = with_header_text(|t| insert_after(t, "\"layers.0.ops\":{", "\"dtype\":\"U8\","));
    expect_format(&bytes, &["dtype", "layers.0.ops", "twice"]);
    // `__metadata__` twice.
    let bytes = with_header_text(|t| insert_after(t, "{", "\"__metadata__\":{},"));
    expect_format(&bytes, &["__metadata__", "twice"]);
}

#[test]
fn repeated_keys_in_the_metadata_are_named() {
    for (key, value) in
        [("format_version", "2.0"), ("format_version", "1.0"), ("format", "bitlogic"), ("network", "{}")]
    {
        let bytes =
            with_header_text(|t| insert_after(t, "\"__metadata__\":{", &format!("\"{key}\":{},", json!(value))));
        expect_format(&bytes, &[key, "__metadata__", "twice"]);
    }
}

#[test]
fn repeated_keys_in_the_description_are_named() {
    let (description, tensors) = parts();
    let text = description.to_string();
    let file = |network: String| {
        write_container(&json!({"format": "bitlogic", "format_version": "1.0", "network": network}), &tensors)
    };
    // At the top, in the encoder, in a layer, in the head.
    let encoder = description["encoder"].to_string();
    expect_format(&file(insert_after(&text, "{", &format!("\"encoder\":{encoder},"))), &["encoder", "twice"]);
    expect_format(&file(insert_after(&text, "\"encoder\":{", "\"kind\":\"thresholds\",")), &["kind", "twice"]);
    let layer = insert_after(&text, "\"layers\":[{", "\"width\":8,");
    expect_format(&file(layer), &["width", "layers", "twice"]);
    expect_format(&file(insert_after(&text, "\"head\":{", "\"tau\":2.0,")), &["tau", "head", "twice"]);
    // In `info`, where a JSON parser would keep the last value.
    let mut annotated = description.clone();
    annotated["info"] = json!({"producer": "a"});
    let text = insert_after(&annotated.to_string(), "\"info\":{", "\"producer\":\"b\",");
    expect_format(&file(text), &["producer", "info", "twice"]);
}

#[test]
fn info_must_be_an_object_of_strings() {
    let (description, tensors) = parts();
    for info in [json!(null), json!([]), json!("x"), json!({"a": 1}), json!({"a": null}), json!({"a": {"b": "c"}})] {
        let mut d = description.clone();
        d["info"] = info;
        expect_format(&write_container(&standard_metadata(&d), &tensors), &["info"]);
    }
    // Absent and empty are the same.
    let mut d = description.clone();
    d["info"] = json!({});
    let empty = bitlogic::Network::from_bytes(&write_container(&standard_metadata(&d), &tensors)).unwrap();
    assert!(empty.info().is_empty());
    assert_eq!(empty, template().build());
}

#[test]
fn extra_keys_in_a_tensor_entry_are_named() {
    for (key, value) in [("extra", json!(1)), ("byteorder", json!("big")), ("dtype ", json!("U8")), ("", json!(0))] {
        let bytes = with_header_text(|t| {
            let mut header: Value = serde_json::from_str(t).unwrap();
            header["layers.1.tables"][key] = value.clone();
            header.to_string()
        });
        expect_format(&bytes, &["layers.1.tables", &format!("`{key}`")]);
    }
}
