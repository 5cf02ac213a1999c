//! The container header as bitlogic reads it itself, beside the safetensors layer, for the checks that layer does not
//! make: no JSON object may hold a key twice (serde keeps the last of repeated keys, so the safetensors layer would
//! silently pick one), a tensor entry holds exactly `dtype`, `shape` and `data_offsets`, and no tensor may end past
//! the data present in the file (the safetensors layer adds offsets unchecked). FORMAT.md section 1.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The keys of a tensor entry.
const ENTRY_KEYS: [&str; 3] = ["dtype", "shape", "data_offsets"];

/// Why a JSON text was refused by [`parse_unique`].
pub(super) enum JsonError {
    /// An object holds a key twice; the message names the key and the object.
    Repeated(String),
    /// The text is not JSON (the caller's own parse then says why).
    Invalid,
}

/// Parses JSON text into a value, refusing any object that holds a key twice.
pub(super) fn parse_unique(text: &[u8]) -> std::result::Result<Value, JsonError> {
    let mut json = serde_json::Deserializer::from_slice(text);
    match serde_path_to_error::deserialize(&mut json) {
        // `end` refuses trailing characters other than whitespace, as `serde_json::from_slice` does.
        Ok(Unique(value)) => json.end().map(|()| value).map_err(|_| JsonError::Invalid),
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            // Parsing into a JSON value accepts every well-formed document, so a data error is the visitor's.
            if inner.classify() == serde_json::error::Category::Data {
                let place = if path == "." { "the top-level object".to_string() } else { format!("`{path}`") };
                Err(JsonError::Repeated(format!("{place}: {inner}")))
            } else {
                Err(JsonError::Invalid)
            }
        }
    }
}

/// A JSON value whose objects hold no key twice.
struct Unique(Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        // JSON text has no NaN or infinity, so the number always exists.
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Unique(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!("the key `{key}` appears twice")));
            }
            let Unique(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// The container header as JSON, with its length: `Ok(None)` when the framing is broken or the header is not a
/// JSON object (the safetensors layer then says why), an error when an object in it holds a key twice.
pub(super) fn read(bytes: &[u8]) -> Result<Option<(usize, Map<String, Value>)>> {
    let Some(len) = bytes.get(..8).and_then(|b| usize::try_from(u64::from_le_bytes(b.try_into().ok()?)).ok()) else {
        return Ok(None);
    };
    let Some(text) = 8usize.checked_add(len).and_then(|end| bytes.get(8..end)) else { return Ok(None) };
    match parse_unique(text) {
        Ok(Value::Object(header)) => Ok(Some((len, header))),
        Ok(_) | Err(JsonError::Invalid) => Ok(None),
        Err(JsonError::Repeated(message)) => Err(Error::Format(format!("the container header: {message}"))),
    }
}

/// The tensor entries of a header: every key but `__metadata__`.
fn entries(header: &Map<String, Value>) -> impl Iterator<Item = (&String, &Value)> {
    header.iter().filter(|(name, _)| name.as_str() != "__metadata__")
}

/// Rejects a key other than `dtype`, `shape` and `data_offsets` in a tensor entry: a key this reader does not know
/// could change how the tensor's bytes are meant to be read.
pub(super) fn check_entries(header: &Map<String, Value>) -> Result<()> {
    for (name, entry) in entries(header) {
        let Some(entry) = entry.as_object() else { continue };
        if let Some(extra) = entry.keys().find(|k| !ENTRY_KEYS.contains(&k.as_str())) {
            return Err(Error::Format(format!(
                "tensor `{name}`: its header entry has the unknown key `{extra}` (an entry holds exactly dtype, shape \
                 and data_offsets)"
            )));
        }
    }
    Ok(())
}

/// Rejects any tensor whose byte range ends past the `available` bytes of the data buffer. The safetensors layer adds
/// offsets to the header length unchecked, which overflows on offsets near 2^64; bounding them by the file size first
/// keeps every later sum small.
pub(super) fn check_offsets(header: &Map<String, Value>, available: usize) -> Result<()> {
    for (name, entry) in entries(header) {
        let end = entry.get("data_offsets").and_then(|o| o.get(1)).and_then(Value::as_u64);
        if let Some(end) = end.filter(|&end| end > available as u64) {
            return Err(Error::Format(format!(
                "not a safetensors container: tensor `{name}` ends at byte {end} of a {available}-byte data buffer"
            )));
        }
    }
    Ok(())
}

/// After the safetensors layer rejected a header, finds the first tensor (by name) whose entry does not parse or
/// whose byte range disagrees with its dtype and shape, so the error can name it.
pub(super) fn faulty_tensor(header: &Map<String, Value>) -> Option<String> {
    let mut entries: Vec<_> = entries(header).collect();
    entries.sort_by_key(|(name, _)| name.as_str());
    entries.into_iter().find_map(|(name, entry)| {
        let info: safetensors::tensor::TensorInfo = match serde_json::from_value(entry.clone()) {
            Ok(info) => info,
            Err(_) => return Some(name.clone()),
        };
        let elements = info.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let expected = elements.and_then(|n| n.checked_mul(info.dtype.bitsize())).map(|bits| bits.div_ceil(8));
        let (begin, end) = info.data_offsets;
        (end.checked_sub(begin) != expected).then(|| name.clone())
    })
}
