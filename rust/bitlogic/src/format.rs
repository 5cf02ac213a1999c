//! Reading and writing network files (docs/FORMAT.md): a safetensors container whose metadata holds a JSON
//! description and whose tensors hold wires, op codes, tables and weights.
//!
//! The reader trusts nothing: the safetensors layer checks that every tensor lies inside the file, the description is
//! parsed strictly (unknown keys and kinds are errors), every expected shape is computed from the description and
//! compared with the tensor *before* anything is allocated, and the network constructors check every value.
//!
//! This module is the container: header, metadata, version and description. Each layer kind reads and writes its
//! own tensors (`model/gates.rs`, `model/luts.rs`, `model/binary.rs`) through the helpers of `tensors`.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{BitOrder, Encoder, Layer, Network, ThresholdEncoder};
use crate::tensors::{check_keys, le_values, LayerEntry, TensorBuffers, Tensors};

/// Value of the `format` metadata key.
pub const FORMAT_NAME: &str = "bitlogic";
/// The format version this crate writes and reads (any 1.x is read).
pub const FORMAT_VERSION: &str = "1.0";
const MAJOR_VERSION: u64 = 1;

// The description is parsed into flat structs (a `kind` string plus every key any kind may have) rather than
// serde-tagged enums: serde buffers tagged enums, which would hide the path of a bad value from the error message.
// `check_keys` and `build` then enforce which keys each kind requires and allows.

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Description {
    encoder: EncoderDesc,
    layers: Vec<LayerDesc>,
    head: HeadDesc,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    info: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EncoderDesc {
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    num_inputs: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    num_features: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    thresholds_per_feature: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bit_order: Option<BitOrderDesc>,
}

#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum BitOrderDesc {
    FeatureMajor,
    ThresholdMajor,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LayerDesc {
    kind: String,
    width: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    arity: Option<u32>,
    sources: Vec<u32>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeadDesc {
    kind: String,
    num_classes: u32,
    tau: f64,
}

impl Network {
    /// Reads a network file.
    pub fn load(path: impl AsRef<Path>) -> Result<Network> {
        let path = path.as_ref();
        let bytes = fs::read(path)
            .map_err(|source| Error::Io { context: format!("cannot read {}", path.display()), source })?;
        Network::from_bytes(&bytes)
    }

    /// Parses the bytes of a network file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Network> {
        check_offsets(bytes)?;
        // `read_metadata` checks that every tensor's offsets lie inside the buffer and match its dtype and shape.
        let (header_len, header) = SafeTensors::read_metadata(bytes).map_err(|e| {
            let culprit = faulty_tensor(bytes).map_or(String::new(), |name| format!(" (tensor `{name}`)"));
            Error::Format(format!("not a safetensors container: {e}{culprit}"))
        })?;
        let data = &bytes[8 + header_len..];
        let metadata = header.metadata().as_ref().ok_or_else(|| {
            Error::Format("the container has no __metadata__; is this a bitlogic network file?".into())
        })?;
        let description = read_description(metadata)?;
        let mut tensors = Tensors { header: &header, data, used: 0 };
        let network = build(description, &mut tensors)?;
        let present = header.tensors();
        if tensors.used != present.len() {
            let mut names: Vec<&str> = present.keys().map(String::as_str).collect();
            names.sort_unstable();
            return Err(Error::Format(format!(
                "the file holds {} tensors but the description uses {}; tensors present: {}",
                present.len(),
                tensors.used,
                names.join(", ")
            )));
        }
        Ok(network)
    }

    /// Serializes the network into the bytes of a network file.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut buffers = TensorBuffers::default();
        let encoder = match &self.encoder() {
            Encoder::Bits { num_inputs } => {
                EncoderDesc { kind: "bits".into(), num_inputs: Some(*num_inputs as u32), ..Default::default() }
            }
            Encoder::Thresholds(t) => {
                buffers.push(
                    "encoder.thresholds".into(),
                    Dtype::F32,
                    vec![t.num_features(), t.per_feature()],
                    t.thresholds().iter().flat_map(|v| v.to_le_bytes()).collect(),
                );
                EncoderDesc {
                    kind: "thresholds".into(),
                    num_features: Some(t.num_features() as u32),
                    thresholds_per_feature: Some(t.per_feature() as u32),
                    bit_order: Some(match t.bit_order() {
                        BitOrder::FeatureMajor => BitOrderDesc::FeatureMajor,
                        BitOrder::ThresholdMajor => BitOrderDesc::ThresholdMajor,
                    }),
                    ..Default::default()
                }
            }
        };
        let layers = (self.layers().iter().enumerate())
            .map(|(i, layer)| {
                let arity = layer.write(i, &mut buffers);
                LayerDesc { kind: layer.kind().into(), width: layer.width() as u32, arity, sources: vec![i as u32] }
            })
            .collect();
        let description = Description {
            encoder,
            layers,
            head: HeadDesc { kind: "group_sum".into(), num_classes: self.num_classes() as u32, tau: self.tau() },
            info: self.info().clone(),
        };
        let json = serde_json::to_string(&description)
            .map_err(|e| Error::Format(format!("cannot serialize the description: {e}")))?;
        let metadata = HashMap::from([
            ("format".to_string(), FORMAT_NAME.to_string()),
            ("format_version".to_string(), FORMAT_VERSION.to_string()),
            ("network".to_string(), json),
        ]);
        let mut views = Vec::with_capacity(buffers.0.len());
        for (name, dtype, shape, data) in &buffers.0 {
            let view = TensorView::new(*dtype, shape.clone(), data)
                .map_err(|e| Error::Format(format!("tensor {name}: {e}")))?;
            views.push((name.as_str(), view));
        }
        safetensors::serialize(views, Some(metadata)).map_err(|e| Error::Format(format!("cannot serialize: {e}")))
    }

    /// Writes the network file atomically: to a temporary file beside `path`, flushed to disk, then renamed over
    /// `path`, so a crash never leaves a truncated network where a good one was.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomic(path.as_ref(), &self.to_bytes()?)
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |what: &str, source| Error::Io { context: format!("cannot {what} {}", path.display()), source };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = path.file_name().ok_or_else(|| Error::Io {
        context: format!("cannot write {}", path.display()),
        source: std::io::ErrorKind::InvalidInput.into(),
    })?;
    let tmp = dir.join(format!(".{}.{}.tmp", file_name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&tmp).map_err(|e| io("create a temporary file for", e))?;
        file.write_all(bytes).map_err(|e| io("write", e))?;
        file.sync_all().map_err(|e| io("flush", e))?;
        fs::rename(&tmp, path).map_err(|e| io("replace", e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn read_description(metadata: &HashMap<String, String>) -> Result<Description> {
    let get = |key: &str| {
        metadata
            .get(key)
            .ok_or_else(|| Error::Format(format!("metadata key `{key}` is missing; is this a bitlogic network file?")))
    };
    let format = get("format")?;
    if format != FORMAT_NAME {
        return Err(Error::Format(format!("metadata `format` is {format:?}, expected {FORMAT_NAME:?}")));
    }
    let version = get("format_version")?;
    let major = parse_version(version)
        .ok_or_else(|| Error::Format(format!("metadata `format_version` is {version:?}, expected \"MAJOR.MINOR\"")))?;
    if major != MAJOR_VERSION {
        return Err(Error::Version { found: version.clone(), supported: FORMAT_VERSION });
    }
    if let Some(extra) = metadata.keys().find(|k| !matches!(k.as_str(), "format" | "format_version" | "network")) {
        return Err(Error::Format(format!(
            "unknown metadata key `{extra}` (file version {version}, this reader implements {FORMAT_VERSION})"
        )));
    }
    let json = &mut serde_json::Deserializer::from_str(get("network")?);
    serde_path_to_error::deserialize(json).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let at = if path == "." { String::new() } else { format!("`{path}`: ") };
        Error::Format(format!(
            "network description: {at}{inner} (file version {version}, this reader implements {FORMAT_VERSION})"
        ))
    })
}

/// The container header as JSON, when the 8-byte length and the header it announces are present and parse.
fn raw_header(bytes: &[u8]) -> Option<(usize, HashMap<String, serde_json::Value>)> {
    let len = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let header = serde_json::from_slice(bytes.get(8..8usize.checked_add(len)?)?).ok()?;
    Some((len, header))
}

/// Rejects any tensor whose byte range ends past the data present in the file. The safetensors layer adds offsets
/// to the header length unchecked, which overflows on offsets near 2^64; bounding them by the file size first keeps
/// every later sum small.
fn check_offsets(bytes: &[u8]) -> Result<()> {
    let Some((len, header)) = raw_header(bytes) else { return Ok(()) };
    let available = bytes.len() - 8 - len;
    for (name, info) in header.iter().filter(|(name, _)| name.as_str() != "__metadata__") {
        let end = info.get("data_offsets").and_then(|o| o.get(1)).and_then(serde_json::Value::as_u64);
        if let Some(end) = end.filter(|&end| end > available as u64) {
            return Err(Error::Format(format!(
                "not a safetensors container: tensor `{name}` ends at byte {end} of a {available}-byte data buffer"
            )));
        }
    }
    Ok(())
}

/// After the safetensors layer rejected a header, finds the first tensor whose byte range disagrees with its dtype
/// and shape, so the error can name it. Returns `None` when the header cannot be read that far.
fn faulty_tensor(bytes: &[u8]) -> Option<String> {
    let (_, header) = raw_header(bytes)?;
    let mut entries: Vec<_> = header.iter().filter(|(name, _)| name.as_str() != "__metadata__").collect();
    entries.sort_by_key(|(name, _)| name.as_str());
    entries.into_iter().find_map(|(name, info)| {
        let info: safetensors::tensor::TensorInfo = match serde_json::from_value(info.clone()) {
            Ok(info) => info,
            Err(_) => return Some(name.clone()),
        };
        let elements = info.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let expected = elements.and_then(|n| n.checked_mul(info.dtype.bitsize())).map(|bits| bits.div_ceil(8));
        let (begin, end) = info.data_offsets;
        (end.checked_sub(begin) != expected).then(|| name.clone())
    })
}

fn parse_version(version: &str) -> Option<u64> {
    let (major, minor) = version.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit());
    (digits(major) && digits(minor)).then(|| major.parse().ok())?
}

fn build(description: Description, tensors: &mut Tensors<'_>) -> Result<Network> {
    let e = &description.encoder;
    let present = [
        ("num_inputs", e.num_inputs.is_some()),
        ("num_features", e.num_features.is_some()),
        ("thresholds_per_feature", e.thresholds_per_feature.is_some()),
        ("bit_order", e.bit_order.is_some()),
    ];
    let encoder = match (e.kind.as_str(), e.num_inputs, e.num_features, e.thresholds_per_feature, e.bit_order) {
        ("bits", Some(num_inputs), None, None, None) => Encoder::bits(num_inputs as usize),
        ("thresholds", None, Some(f), Some(t), Some(order)) => {
            let (f, t) = (f as usize, t as usize);
            let data = tensors.get("encoder.thresholds", Dtype::F32, &[f, t])?;
            let order = match order {
                BitOrderDesc::FeatureMajor => BitOrder::FeatureMajor,
                BitOrderDesc::ThresholdMajor => BitOrder::ThresholdMajor,
            };
            ThresholdEncoder::new(f, t, order, le_values(data, f32::from_le_bytes)).map(Encoder::Thresholds)
        }
        (kind @ ("bits" | "thresholds"), ..) => {
            let required: &[&str] =
                if kind == "bits" { &["num_inputs"] } else { &["num_features", "thresholds_per_feature", "bit_order"] };
            check_keys("the encoder", kind, &present, required)?;
            return Err(Error::Format(format!("network description: the encoder of kind {kind:?} is incomplete")));
        }
        (other, ..) => {
            return Err(Error::Format(format!(
                "network description: `encoder.kind` is {other:?}, expected \"bits\" or \"thresholds\" \
                 (this reader implements format {FORMAT_VERSION})"
            )))
        }
    }
    .map_err(Error::into_format)?;

    let mut layers = Vec::with_capacity(description.layers.len());
    let mut input_width = encoder.num_bits();
    for (i, desc) in description.layers.into_iter().enumerate() {
        if desc.sources.as_slice() != [i as u32] {
            return Err(Error::Format(format!(
                "network description: `layers[{i}].sources` is {:?}, but format {FORMAT_VERSION} requires [{i}] \
                 (each layer reads the one before it)",
                desc.sources
            )));
        }
        let entry = LayerEntry { index: i, width: desc.width as usize, arity: desc.arity, input_width };
        let Some(layer) = Layer::read(&desc.kind, &entry, tensors) else {
            return Err(Error::Format(format!(
                "network description: `layers[{i}].kind` is {:?}, expected {} (this reader implements format \
                 {FORMAT_VERSION})",
                desc.kind,
                quoted_list(&Layer::KINDS)
            )));
        };
        let layer = layer.map_err(|e| match e {
            Error::Network(m) if !m.starts_with("layer ") => Error::Format(format!("layer {i}: {m}")),
            e => e.into_format(),
        })?;
        input_width = layer.width();
        layers.push(layer);
    }
    let head = description.head;
    if head.kind != "group_sum" {
        return Err(Error::Format(format!(
            "network description: `head.kind` is {:?}, expected \"group_sum\" (this reader implements format \
             {FORMAT_VERSION})",
            head.kind
        )));
    }
    Network::new(encoder, layers, head.num_classes as usize, head.tau)
        .map(|n| n.with_info(description.info))
        .map_err(Error::into_format)
}

/// `"a", "b" or "c"`.
fn quoted_list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    match quoted.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_strictly() {
        assert_eq!(parse_version("1.0"), Some(1));
        assert_eq!(parse_version("12.34"), Some(12));
        for bad in ["1", "1.", ".0", "1.0.0", "a.b", "+1.0", "1.-1", " 1.0", "99999999999.0"] {
            assert_eq!(parse_version(bad), None, "{bad}");
        }
    }
}
