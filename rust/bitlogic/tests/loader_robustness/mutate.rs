//! Applying a mutation to the bytes of a file.

use proptest::sample::Index;
use serde_json::{json, Value};

use crate::fixtures::{frame, reframe};
use crate::mutation::{Doc, Edit, Mutation};

/// A step into a JSON document.
#[derive(Clone, Debug)]
pub(crate) enum Step {
    Key(String),
    Item(usize),
}

pub(crate) fn paths(value: &Value, prefix: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(prefix.clone());
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                prefix.push(Step::Key(k.clone()));
                paths(v, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                prefix.push(Step::Item(i));
                paths(v, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

pub(crate) fn node_mut<'a>(mut value: &'a mut Value, path: &[Step]) -> &'a mut Value {
    for step in path {
        value = match step {
            Step::Key(k) => &mut value[k.as_str()],
            Step::Item(i) => &mut value[*i],
        };
    }
    value
}

/// Applies `edit` at the node `node` picks among all nodes of `doc`.
pub(crate) fn edit_json(doc: &mut Value, node: Index, edit: &Edit) {
    let mut all = Vec::new();
    paths(doc, &mut Vec::new(), &mut all);
    let path = node.get(&all).clone();
    match edit {
        Edit::Set(v) => *node_mut(doc, &path) = v.clone(),
        Edit::Wrap => {
            let target = node_mut(doc, &path);
            *target = json!([target.take()]);
        }
        Edit::AddKey(k, v) => {
            if let Value::Object(map) = node_mut(doc, &path) {
                map.insert(k.clone(), v.clone());
            }
        }
        Edit::Remove => {
            let Some((last, parent)) = path.split_last() else { return };
            match (node_mut(doc, parent), last) {
                (Value::Object(map), Step::Key(k)) => {
                    map.remove(k);
                }
                (Value::Array(items), Step::Item(i)) => {
                    items.remove(*i);
                }
                _ => {}
            }
        }
    }
}

/// Applies a JSON edit to the header or description; files whose header is no longer JSON are left alone.
pub(crate) fn mutate_json(bytes: &[u8], doc: Doc, node: Index, edit: &Edit, keep_length: bool) -> Option<Vec<u8>> {
    let (header, _) = frame(bytes)?;
    let mut outer: Value = serde_json::from_slice(header).ok()?;
    match doc {
        Doc::Header => edit_json(&mut outer, node, edit),
        Doc::Description => {
            let text = outer.get("__metadata__")?.get("network")?.as_str()?;
            let mut description: Value = serde_json::from_str(text).ok()?;
            edit_json(&mut description, node, edit);
            outer["__metadata__"]["network"] = Value::String(description.to_string());
        }
    }
    Some(reframe(bytes, outer.to_string().as_bytes(), keep_length))
}

pub(crate) fn apply(bytes: Vec<u8>, mutation: &Mutation) -> Vec<u8> {
    let mut bytes = bytes;
    match mutation {
        Mutation::Truncate(at) => {
            let len = at.index(bytes.len() + 1);
            bytes.truncate(len);
        }
        Mutation::Flip(at, x) if !bytes.is_empty() => {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        Mutation::FlipData(at, x) => {
            if let Some((header, data)) = frame(&bytes) {
                if !data.is_empty() {
                    let i = 8 + header.len() + at.index(data.len());
                    bytes[i] ^= x;
                }
            }
        }
        Mutation::Overwrite(at, x) if !bytes.is_empty() => {
            let i = at.index(bytes.len());
            bytes[i] = *x;
        }
        Mutation::Insert(at, new) => {
            let i = at.index(bytes.len() + 1);
            bytes.splice(i..i, new.iter().copied());
        }
        Mutation::Delete(at, n) if !bytes.is_empty() => {
            let i = at.index(bytes.len());
            let end = (i + n).min(bytes.len());
            bytes.drain(i..end);
        }
        Mutation::HeaderLength(n) if bytes.len() >= 8 => bytes[..8].copy_from_slice(&n.to_le_bytes()),
        Mutation::HeaderLengthDelta(d) if bytes.len() >= 8 => {
            let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()).wrapping_add_signed(*d);
            bytes[..8].copy_from_slice(&n.to_le_bytes());
        }
        Mutation::Json { doc, node, edit, keep_length } => {
            if let Some(edited) = mutate_json(&bytes, *doc, *node, edit, *keep_length) {
                bytes = edited;
            }
        }
        Mutation::Version(v) => {
            if let Some((header, _)) = frame(&bytes) {
                if let Ok(mut outer) = serde_json::from_slice::<Value>(header) {
                    if outer.get("__metadata__").is_some_and(Value::is_object) {
                        outer["__metadata__"]["format_version"] = json!(v);
                        bytes = reframe(&bytes, outer.to_string().as_bytes(), false);
                    }
                }
            }
        }
        Mutation::Digits { run, replacement, keep_length } => {
            if let Some((header, _)) = frame(&bytes) {
                let mut runs = Vec::new();
                let mut i = 0;
                while i < header.len() {
                    if header[i].is_ascii_digit() {
                        let start = i;
                        while i < header.len() && header[i].is_ascii_digit() {
                            i += 1;
                        }
                        runs.push(start..i);
                    } else {
                        i += 1;
                    }
                }
                if !runs.is_empty() {
                    let range = run.get(&runs).clone();
                    let mut text = header.to_vec();
                    text.splice(range, replacement.bytes());
                    bytes = reframe(&bytes, &text, *keep_length);
                }
            }
        }
        _ => {}
    }
    bytes
}
