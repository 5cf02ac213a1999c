//! Reading and writing network files (docs/FORMAT.md): a safetensors container whose metadata holds a JSON
//! description and whose tensors hold wires, op codes, tables and weights.
//!
//! The reader trusts nothing: the safetensors layer checks that every tensor lies inside the file, the description is
//! parsed strictly (unknown keys and kinds are errors), every expected shape is computed from the description and
//! compared with the tensor *before* anything is allocated, and the network constructors check every value.
//!
//! This module is the container: header ([`header`]), metadata, version and digest ([`metadata`]), the description,
//! and the assembled bytes ([`write`]). Each layer kind reads and writes its own tensors and the description keys
//! only it takes (`model/layers/*.rs`) through the helpers of `tensors`.

mod header;
mod metadata;
mod write;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{BitOrder, Encoder, Layer, Network, ThresholdEncoder};
use crate::tensors::{check_keys, le_values, LayerEntry, LayerKeys, TensorBuffers, Tensors};

pub use metadata::{FORMAT_NAME, FORMAT_VERSION};

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    depth: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    out_channels: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    input_shape: Option<[u32; 3]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kernel_size: Option<[u32; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stride: Option<[u32; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    padding: Option<[u32; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pad_value: Option<u32>,
    sources: Vec<u32>,
}

impl LayerDesc {
    /// The description of a layer of kind `kind` and `width` with `keys`, reading group `source`.
    fn new(kind: &str, width: usize, keys: LayerKeys, source: usize) -> Self {
        let LayerKeys { arity, depth, input_shape, kernel_size, stride, padding, out_channels, pad_value } = keys;
        LayerDesc {
            kind: kind.into(),
            width: width as u32,
            arity,
            depth,
            out_channels,
            input_shape,
            kernel_size,
            stride,
            padding,
            pad_value,
            sources: vec![source as u32],
        }
    }

    /// The keys only some kinds take.
    fn keys(&self) -> LayerKeys {
        LayerKeys {
            arity: self.arity,
            depth: self.depth,
            input_shape: self.input_shape,
            kernel_size: self.kernel_size,
            stride: self.stride,
            padding: self.padding,
            out_channels: self.out_channels,
            pad_value: self.pad_value,
        }
    }
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
        // The header as bitlogic parses it: no key twice, tensor entries of three keys, offsets inside the file.
        let raw = header::read(bytes)?;
        if let Some((len, raw)) = &raw {
            header::check_entries(raw)?;
            header::check_offsets(raw, bytes.len() - 8 - len)?;
        }
        // `read_metadata` checks that every tensor's offsets lie inside the buffer and match its dtype and shape.
        let (header_len, header) = SafeTensors::read_metadata(bytes).map_err(|e| {
            let culprit = raw.as_ref().and_then(|(_, raw)| header::faulty_tensor(raw));
            let culprit = culprit.map_or(String::new(), |name| format!(" (tensor `{name}`)"));
            Error::Format(format!("not a safetensors container: {e}{culprit}"))
        })?;
        let data = &bytes[8 + header_len..];
        let metadata = header.metadata().as_ref().ok_or_else(|| {
            Error::Format("the container has no __metadata__; is this a bitlogic network file?".into())
        })?;
        let description = read_description(metadata::check(metadata, data)?)?;
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
                let keys = layer.write(i, &mut buffers);
                LayerDesc::new(layer.kind(), layer.width(), keys, i)
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
        let metadata = serde_json::Map::from_iter([
            ("format".to_string(), FORMAT_NAME.into()),
            ("format_version".to_string(), FORMAT_VERSION.into()),
            ("network".to_string(), json.into()),
        ]);
        write::container(buffers.0, metadata)
    }

    /// Writes the network file atomically ([`crate::write_atomic`]): a crash, or another thread saving the same
    /// path, never leaves a truncated or mixed network where a good one was.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::atomic::write_atomic(path.as_ref(), &self.to_bytes()?)
    }
}

/// Parses the description; objects in it (`info` included) may not hold a key twice.
fn read_description(metadata: metadata::Checked<'_>) -> Result<Description> {
    let version = metadata.version;
    let fail = |at: String, inner: &dyn std::fmt::Display| {
        Error::Format(format!(
            "network description: {at}{inner} (file version {version}, this reader implements {FORMAT_VERSION})"
        ))
    };
    // Repeated keys first: serde would take the last of repeated `info` keys. Text that is not JSON at all gets
    // the message of the typed parse below.
    if let Err(header::JsonError::Repeated(message)) = header::parse_unique(metadata.network.as_bytes()) {
        return Err(fail(String::new(), &message));
    }
    let json = &mut serde_json::Deserializer::from_str(metadata.network);
    serde_path_to_error::deserialize(json).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." { String::new() } else { format!("`{path}`: ") };
        fail(at, e.inner())
    })
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
        let entry = LayerEntry { index: i, width: desc.width as usize, keys: desc.keys(), input_width };
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
