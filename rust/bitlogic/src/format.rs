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

#[cfg(test)]
mod tests {
    use safetensors::tensor::SafeTensors;
    use serde_json::{json, Value};

    use super::*;
    use crate::model::layers::conv::testing;
    use crate::{ConvBinaryLayer, ConvGateLayer, ConvLutLayer, Geometry, OrPoolLayer, SplitMix64};

    /// conv_gates (3 x 7 x 7 -> 4 x 4 x 4, stride 2, padding 1) -> or_pool (-> 4 x 2 x 2) -> conv_binary (-> 3 x 2 x 2,
    /// padding 1) -> conv_luts (-> 2 x 1 x 1): every spatial kind, reading layers as well as the encoder.
    fn spatial_network() -> Network {
        let mut rng = SplitMix64::new(61);
        let g0 = Geometry::new([3, 7, 7], [3, 3], [2, 2], [1, 1]).unwrap();
        let leaves = testing::random_leaves(&mut rng, &g0, 4 * 8);
        let ops = (0..4 * 7).map(|_| (rng.next_u64() % 16) as u8).collect();
        let gates = ConvGateLayer::new(g0, 3, leaves, ops).unwrap();
        let pool = OrPoolLayer::new([4, 4, 4], [2, 2], [2, 2]).unwrap();
        let g2 = Geometry::new([4, 2, 2], [3, 3], [1, 1], [1, 1]).unwrap();
        let weights: Vec<u8> = (0..3 * 36).map(|_| (rng.next_u64() & 1) as u8).collect();
        let binary = ConvBinaryLayer::from_unpacked(g2, &weights, vec![-2, 0, 3], 1).unwrap();
        let g3 = Geometry::new([3, 2, 2], [2, 2], [1, 1], [0, 0]).unwrap();
        let leaves = testing::random_leaves(&mut rng, &g3, 2 * 5);
        let entries: Vec<u8> = (0..2 * 32).map(|_| (rng.next_u64() & 1) as u8).collect();
        let luts = ConvLutLayer::from_unpacked(g3, 5, leaves, &entries).unwrap();
        let layers =
            vec![Layer::ConvGates(gates), Layer::OrPool(pool), Layer::ConvBinary(binary), Layer::ConvLuts(luts)];
        testing::network(147, layers)
    }

    /// A tensor as the writer collects it: name, dtype, shape and bytes.
    type Tensor = (String, Dtype, Vec<usize>, Vec<u8>);

    /// The bytes of `net` with its description and tensors changed by `edit` (the digest recomputed).
    fn edited(net: &Network, edit: impl FnOnce(&mut Value, &mut Vec<Tensor>)) -> Vec<u8> {
        let bytes = net.to_bytes().unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let mut tensors: Vec<_> = (file.tensors().into_iter())
            .map(|(name, t)| (name, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
            .collect();
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        let mut description: Value = serde_json::from_str(&header.metadata().as_ref().unwrap()["network"]).unwrap();
        edit(&mut description, &mut tensors);
        let metadata = serde_json::Map::from_iter([
            ("format".to_string(), FORMAT_NAME.into()),
            ("format_version".to_string(), FORMAT_VERSION.into()),
            ("network".to_string(), description.to_string().into()),
        ]);
        write::container(tensors, metadata).unwrap()
    }

    fn format_error(bytes: &[u8]) -> String {
        match Network::from_bytes(bytes) {
            Err(Error::Format(m)) => m,
            other => panic!("expected a format error, got {other:?}"),
        }
    }

    #[test]
    fn spatial_layers_round_trip_with_their_keys() {
        let net = spatial_network();
        let mut rng = SplitMix64::new(62);
        // `outputs` checks the round trip through the bytes and every evaluation path.
        let bits = testing::outputs(&net, &testing::random_bits(&mut rng, 150, 147));
        assert!(bits.iter().any(|row| row != &bits[0]), "constant outputs");
        let bytes = net.to_bytes().unwrap();
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        let metadata = header.metadata().as_ref().unwrap();
        assert_eq!(metadata["format_version"], "1.2");
        let description: Value = serde_json::from_str(&metadata["network"]).unwrap();
        assert_eq!(
            description["layers"][0],
            json!({"kind": "conv_gates", "width": 64, "depth": 3, "out_channels": 4, "input_shape": [3, 7, 7],
                   "kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1], "sources": [0]})
        );
        assert_eq!(
            description["layers"][1],
            json!({"kind": "or_pool", "width": 16, "input_shape": [4, 4, 4], "kernel_size": [2, 2], "stride": [2, 2],
                   "sources": [1]})
        );
        assert_eq!(description["layers"][2]["pad_value"], json!(1));
        assert_eq!(description["layers"][3]["arity"], json!(5));
        let stats = net.stats();
        assert_eq!(stats.gates, 4 * 7 * 16 + 16 * 3, "tree gates and pool ORs of every position");
        assert_eq!(stats.binary_weights, 3 * 4 * 36);
        assert_eq!(stats.luts.get(&5), Some(&2));
        assert_eq!(stats.bytes, 4 * (8 * 12 + 7) + 3 * (5 + 4) + 2 * (5 * 12 + 4));
    }

    #[test]
    fn bad_spatial_descriptions_are_format_errors_naming_the_key() {
        let net = spatial_network();
        let layer = |i: usize, f: &dyn Fn(&mut Value)| format_error(&edited(&net, |d, _| f(&mut d["layers"][i])));
        let m = layer(0, &|l| l["width"] = json!(63));
        assert!(m.contains("`layers[0].width` is 63, expected 64: 4 channels of [4, 4] positions"), "{m}");
        let m = layer(0, &|l| l["depth"] = json!(9));
        assert!(m.contains("`layers[0].depth` is 9, expected 1..=8"), "{m}");
        let m = layer(2, &|l| l["pad_value"] = json!(2));
        assert!(m.contains("`layers[2].pad_value` is 2, expected 0 or 1"), "{m}");
        let m = layer(3, &|l| l["arity"] = json!(0));
        assert!(m.contains("`layers[3].arity` is 0"), "{m}");
        let m = layer(0, &|l| l["out_channels"] = json!(0));
        assert!(m.contains("`layers[0].out_channels` is 0, expected >= 1"), "{m}");
        let m = layer(0, &|l| {
            l.as_object_mut().unwrap().remove("padding");
        });
        assert!(m.contains("of kind \"conv_gates\" needs the key `padding`"), "{m}");
        let m = layer(1, &|l| l["padding"] = json!([0, 0]));
        assert!(m.contains("of kind \"or_pool\" does not take the key `padding`"), "{m}");
        let m = layer(0, &|l| l["arity"] = json!(2));
        assert!(m.contains("does not take the key `arity`"), "{m}");
        let m = layer(0, &|l| l["input_shape"] = json!([3, 7]));
        assert!(m.contains("layers[0].input_shape"), "{m}");
        let m = layer(0, &|l| l["input_shape"] = json!([3, 7, 6]));
        assert!(m.contains("layer 0 (conv_gates): input_shape [3, 7, 6] holds 126 bits, but the layer's input has 147"));
        let m = layer(0, &|l| l["kernel_size"] = json!([10, 3]));
        assert!(m.contains("layer 0: conv_gates layer: kernel_size [10, 3] does not fit"), "{m}");
        let m = layer(1, &|l| l["stride"] = json!([0, 2]));
        assert!(m.contains("or_pool layer: stride [0, 2], expected every value >= 1"), "{m}");
        // A dense kind takes none of the spatial keys.
        let dense = testing::network(4, vec![Layer::Gates(crate::GateLayer::new(vec![[0, 1]], vec![6]).unwrap())]);
        let m = format_error(&edited(&dense, |d, _| d["layers"][0]["stride"] = json!([1, 1])));
        assert!(m.contains("of kind \"gates\" does not take the key `stride`"), "{m}");
    }

    #[test]
    fn bad_spatial_tensors_are_format_errors() {
        let net = spatial_network();
        let tensor = |name: &str, f: &dyn Fn(&mut Tensor)| {
            format_error(&edited(&net, |_, tensors| f(tensors.iter_mut().find(|t| t.0 == name).unwrap())))
        };
        let m = tensor("layers.0.leaves", &|t| {
            t.2 = vec![4, 4, 6];
        });
        assert!(m.contains("tensor `layers.0.leaves` has shape [4, 4, 6], expected [4, 8, 3]"), "{m}");
        let m = tensor("layers.0.leaves", &|t| t.3[0..4].copy_from_slice(&3u32.to_le_bytes()));
        assert!(m.contains("layer 0: conv_gates layer: leaf 0 of channel 0 is [3, "), "{m}");
        let m = tensor("layers.0.ops", &|t| t.3[5] = 16);
        assert!(m.contains("op code 16, expected 0..=15"), "{m}");
        let m = tensor("layers.2.weights", &|t| t.3[4] |= 0x10);
        assert!(m.contains("conv_binary layer: the weight row of channel 0 has bits set beyond its 36 weights"), "{m}");
        let m = tensor("layers.2.thresholds", &|t| t.1 = Dtype::U32);
        assert!(m.contains("tensor `layers.2.thresholds` has dtype U32, expected I32"), "{m}");
        let m = tensor("layers.3.tables", &|t| t.0 = "layers.3.table".into());
        assert!(m.contains("tensor `layers.3.tables` is missing"), "{m}");
        // or_pool has no tensors: one more is an error.
        let extra = edited(&net, |_, tensors| tensors.push(("layers.1.ops".into(), Dtype::U8, vec![1], vec![0])));
        assert!(format_error(&extra).contains("the file holds 7 tensors but the description uses 6"));
    }

    #[test]
    fn huge_declared_spatial_layers_load_without_allocating_and_refuse_to_compile() {
        // 2^30 output positions from a file of a few hundred bytes: the reader allocates nothing in proportion, and
        // the compiler refuses the unrolled form before building it.
        let g = Geometry::new([1, 1 << 15, 1 << 15], [1, 1], [1, 1], [0, 0]).unwrap();
        let pool = Layer::OrPool(OrPoolLayer::new([1, 1 << 15, 1 << 15], [2, 2], [1, 1]).unwrap());
        let gates = Layer::ConvGates(ConvGateLayer::new(g, 8, vec![[0, 0, 0]; 256], vec![6; 255]).unwrap());
        let net = Network::new(Encoder::bits(1 << 30).unwrap(), vec![gates, pool], 1, 1.0).unwrap();
        let bytes = net.to_bytes().unwrap();
        assert!(bytes.len() < 8192, "{} bytes", bytes.len());
        let net = Network::from_bytes(&bytes).unwrap();
        let e = net.prepare().unwrap_err();
        assert!(e.to_string().contains("too large to evaluate"), "{e}");
    }
}
