//! The network description: required, unknown and ill-typed keys, kinds and values (FORMAT.md section 3).

use bitlogic::{Error, Network};
use serde_json::{json, Value};

use crate::common::*;
use crate::fixtures::*;

#[test]
fn description_key_defects_are_named() {
    let (description, tensors) = parts();
    let check = |edit: &dyn Fn(&mut Value), needles: &[&str]| {
        let mut d = description.clone();
        edit(&mut d);
        expect_format(&file(&d, &tensors), needles);
    };
    // Missing keys.
    for key in ["encoder", "layers", "head"] {
        check(&|d| drop(d.as_object_mut().unwrap().remove(key)), &[key]);
    }
    for key in ["kind", "num_features", "thresholds_per_feature", "bit_order"] {
        check(&|d| drop(d["encoder"].as_object_mut().unwrap().remove(key)), &[key]);
    }
    for key in ["kind", "width", "sources"] {
        check(&|d| drop(d["layers"][0].as_object_mut().unwrap().remove(key)), &[key]);
    }
    check(&|d| drop(d["layers"][1].as_object_mut().unwrap().remove("arity")), &["arity"]);
    for key in ["kind", "num_classes", "tau"] {
        check(&|d| drop(d["head"].as_object_mut().unwrap().remove(key)), &[key]);
    }
    // Unknown keys, at every level.
    check(&|d| d["extra"] = json!(1), &["extra"]);
    check(&|d| d["encoder"]["num_inputs"] = json!(6), &["num_inputs"]);
    check(&|d| d["layers"][0]["arity"] = json!(2), &["arity"]);
    check(&|d| d["layers"][2]["bias"] = json!([0]), &["bias"]);
    check(&|d| d["head"]["temperature"] = json!(1.0), &["temperature"]);
    // Unknown kinds and names.
    check(&|d| d["encoder"]["kind"] = json!("one_hot"), &["one_hot"]);
    check(&|d| d["encoder"]["bit_order"] = json!("column_major"), &["column_major"]);
    check(&|d| d["layers"][1]["kind"] = json!("conv"), &["conv"]);
    check(&|d| d["head"]["kind"] = json!("softmax"), &["softmax"]);
    // Not an object at all.
    for text in ["[]", "{", "1", "\"network\"", ""] {
        let bytes = write_container(&json!({"format": "bitlogic", "format_version": "1.0", "network": text}), &tensors);
        expect_format(&bytes, &["network"]);
    }
    // Sources other than [i].
    for sources in [json!([]), json!([1]), json!([0, 0]), json!([4294967295u64])] {
        check(&|d| d["layers"][0]["sources"] = sources.clone(), &["sources"]);
    }
    // Zero counts and out-of-range values that are well typed.
    check(&|d| d["head"]["num_classes"] = json!(0), &["head"]);
    check(&|d| d["head"]["num_classes"] = json!(3), &["head"]);
    check(&|d| d["head"]["tau"] = json!(0.0), &["tau"]);
    check(&|d| d["head"]["tau"] = json!(-1.5), &["tau"]);
    check(&|d| d["layers"][1]["arity"] = json!(9), &["arity"]);
    check(&|d| d["layers"][1]["arity"] = json!(0), &["arity"]);
}

/// FORMAT.md section 3: "every value has the stated type and range" and section 4: errors name the key. A value of
/// the wrong JSON type, or an integer outside 0..2^32, must be reported with the key it belongs to.
#[test]
fn ill_typed_values_name_their_key() {
    let (description, tensors) = parts();
    type DescriptionEdit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, DescriptionEdit)> = vec![
        ("width", Box::new(|d| d["layers"][0]["width"] = json!("8"))),
        ("width", Box::new(|d| d["layers"][0]["width"] = json!(8.0))),
        ("width", Box::new(|d| d["layers"][0]["width"] = json!(-8))),
        ("width", Box::new(|d| d["layers"][0]["width"] = json!(4294967304u64))),
        ("arity", Box::new(|d| d["layers"][1]["arity"] = json!(2.5))),
        ("num_features", Box::new(|d| d["encoder"]["num_features"] = json!(null))),
        ("thresholds_per_feature", Box::new(|d| d["encoder"]["thresholds_per_feature"] = json!([2]))),
        ("num_classes", Box::new(|d| d["head"]["num_classes"] = json!(true))),
        ("tau", Box::new(|d| d["head"]["tau"] = json!("2.0"))),
        ("sources", Box::new(|d| d["layers"][0]["sources"] = json!(0))),
        ("layers", Box::new(|d| d["layers"] = json!({}))),
        ("info", Box::new(|d| d["info"] = json!({"epochs": 3}))),
    ];
    let mut failures = Vec::new();
    for (key, edit) in &cases {
        let mut d = description.clone();
        edit(&mut d);
        match Network::from_bytes(&file(&d, &tensors)) {
            Err(Error::Format(message)) if message.contains(key) => {}
            Err(Error::Format(message)) => failures.push(format!("{key}: the message does not name it: {message}")),
            other => failures.push(format!("{key}: expected a format error, got {other:?}")),
        }
    }
    assert!(failures.is_empty(), "{} of {} cases:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// `tau` is a JSON number: an integer is as good as a float.
#[test]
fn tau_may_be_written_as_an_integer() {
    let (mut description, tensors) = parts();
    description["head"]["tau"] = json!(10);
    let net = Network::from_bytes(&file(&description, &tensors)).unwrap();
    assert_eq!(net.tau(), 10.0);
}

/// JSON integers written with a fraction or an exponent are not integers (FORMAT.md section 3).
#[test]
fn integers_with_fraction_or_exponent_are_rejected() {
    let (description, tensors) = parts();
    let text = description.to_string();
    assert!(text.contains("\"width\":8"));
    for replacement in ["\"width\":8.0", "\"width\":8e0", "\"width\":0.8e1", "\"width\":8E0"] {
        let bytes = write_container(
            &json!({
                "format": "bitlogic",
                "format_version": "1.0",
                "network": text.replacen("\"width\":8", replacement, 1),
            }),
            &tensors,
        );
        expect_format(&bytes, &[]);
    }
}
