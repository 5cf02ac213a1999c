//! proptest strategies for random valid networks of every kind (each kind's layers come from its file in
//! [`kinds`](super::kinds)).

use std::collections::BTreeMap;

use bitlogic::BitOrder;
use proptest::prelude::*;

use super::{
    dense_kind_strategy, image_shape, kind_strategy, layer_strategy, spatial_kind_strategy, spatial_layer_strategy,
    Kind, RefEncoder, RefLayer, RefNet,
};

/// A threshold: mostly from a small set (so duplicates are common, and values that u8 inputs hit), sometimes an
/// infinity, signed zero or a random value.
pub fn threshold_value() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => prop::sample::select(vec![0.0f32, 0.5, 1.0, 1.5, -1.0, 2.0, 127.0, 127.5, 254.5, 255.0]),
        1 => Just(f32::INFINITY),
        1 => Just(f32::NEG_INFINITY),
        1 => Just(-0.0f32),
        3 => -4.0f32..4.0,
    ]
}

/// An encoder: bits, or thresholds in either bit order. Widths past 64 reach the encoder's last, partial window of
/// 64 columns (read overlapping the chunk before), and for bits also the padded short rows below 64.
pub fn encoder_strategy() -> impl Strategy<Value = RefEncoder> {
    let features = prop_oneof![4 => 1usize..=10, 1 => 63usize..=140];
    prop_oneof![
        (1usize..=80).prop_map(RefEncoder::Bits),
        (features, 1usize..=5, any::<bool>()).prop_flat_map(|(features, per, major)| {
            let order = if major { BitOrder::FeatureMajor } else { BitOrder::ThresholdMajor };
            prop::collection::vec(prop::collection::vec(threshold_value(), per), features)
                .prop_map(move |thresholds| RefEncoder::Thresholds { order, thresholds })
        }),
    ]
}

/// The group a layer reads: its width, and its shape `[C, H, W]` where an image encoder or a spatial layer made it.
#[derive(Clone, Copy, Debug)]
pub struct Group {
    pub width: usize,
    pub shape: Option<[usize; 3]>,
}

/// The most outputs a spatial layer over a factored width may have in a mixed network: thin factored shapes with
/// padding grow quickly, and the reference evaluates every output of every sample.
const MAX_FACTORED_SPATIAL_WIDTH: usize = 1024;

/// A layer of `kind` reading `group`: a spatial kind over the group's shape where it has one (else over a shape
/// factored from its width, bounded in size), a dense kind of `width` outputs.
fn next_layer(kind: Kind, group: Group, width: usize) -> BoxedStrategy<RefLayer> {
    match group.shape {
        Some(shape) if kind.is_spatial() => spatial_layer_strategy(kind, shape),
        _ if kind.is_spatial() => layer_strategy(kind, group.width, width)
            .prop_filter("a bounded spatial layer", |l| l.width() <= MAX_FACTORED_SPATIAL_WIDTH)
            .boxed(),
        _ => layer_strategy(kind, group.width, width),
    }
}

/// The layers of `specs` (kind, width of a dense layer) one after another, each reading the group the one before it
/// makes, the first reading `group`.
pub fn stack_strategy(group: Group, specs: Vec<(Kind, usize)>) -> BoxedStrategy<Vec<RefLayer>> {
    let Some((&(kind, width), rest)) = specs.split_first() else { return Just(Vec::new()).boxed() };
    let rest = rest.to_vec();
    next_layer(kind, group, width)
        .prop_flat_map(move |layer| {
            let next = Group { width: layer.width(), shape: layer.output_shape() };
            stack_strategy(next, rest.clone())
                .prop_map(move |tail| std::iter::once(layer.clone()).chain(tail).collect())
        })
        .boxed()
}

/// A network whose encoder (with the shape of its bits, if they are an image) comes from `encoders` and whose layers
/// follow `specs`. A last dense layer's width is made a multiple of the class count; after a spatial layer, or with
/// no layers, the class count divides the last width.
fn network_over(
    encoders: BoxedStrategy<(RefEncoder, Option<[usize; 3]>)>,
    specs: BoxedStrategy<Vec<(Kind, usize)>>,
) -> impl Strategy<Value = RefNet> {
    let groups = prop_oneof![4 => 1usize..=6, 1 => 7usize..=40];
    (encoders, specs, 1usize..=6, groups, any::<bool>(), 0.25f64..20.0, any::<bool>()).prop_flat_map(
        |((encoder, shape), mut specs, classes, group, pack_here, tau, with_info)| {
            let dense_last = specs.last().is_some_and(|(kind, _)| !kind.is_spatial());
            if let Some(last) = specs.last_mut().filter(|_| dense_last) {
                last.1 = classes * group;
            }
            let layers = stack_strategy(Group { width: encoder.width(), shape }, specs);
            let info = if with_info {
                BTreeMap::from([("producer".to_string(), "tests".to_string()), ("ü".to_string(), "\"x\"".to_string())])
            } else {
                BTreeMap::new()
            };
            (Just(encoder), layers).prop_flat_map(move |(encoder, layers)| {
                let classes_strategy = if dense_last {
                    Just(classes).boxed()
                } else {
                    let w = layers.last().map_or(encoder.width(), RefLayer::width);
                    prop::sample::select((1..=w).filter(|k| w % k == 0).collect::<Vec<_>>()).boxed()
                };
                let info = info.clone();
                (Just(encoder), Just(layers), classes_strategy).prop_map(move |(encoder, layers, num_classes)| RefNet {
                    encoder,
                    layers,
                    num_classes,
                    tau,
                    info: info.clone(),
                    pack_here,
                })
            })
        },
    )
}

/// A network with up to `max_layers` hidden layers whose kinds come from `kinds`, over any encoder; spatial layers
/// read the shape the layer before them made, or one factored from its width.
pub fn network_strategy(kinds: BoxedStrategy<Kind>, max_layers: usize) -> impl Strategy<Value = RefNet> {
    let specs = prop::collection::vec((kinds, 1usize..=48), 0..=max_layers).boxed();
    network_over(encoder_strategy().prop_map(|encoder| (encoder, None)).boxed(), specs)
}

/// An encoder whose bits are an image `[C, H, W]` (1..=4 channels of 1..=9 x 1..=9): the bits themselves; one
/// threshold per channel over `H*W` grey pixels, threshold-major, so that channel `t` of pixel `f` is bit
/// `t*H*W + f`; or one threshold per bit, in either order.
pub fn image_encoder_strategy() -> BoxedStrategy<(RefEncoder, Option<[usize; 3]>)> {
    image_shape()
        .prop_flat_map(|shape| {
            let [c, h, w] = shape;
            let per_channel = prop::collection::vec(prop::collection::vec(threshold_value(), c), h * w)
                .prop_map(|thresholds| RefEncoder::Thresholds { order: BitOrder::ThresholdMajor, thresholds });
            let per_bit =
                (prop::collection::vec(threshold_value(), c * h * w), any::<bool>()).prop_map(|(thresholds, major)| {
                    RefEncoder::Thresholds {
                        order: if major { BitOrder::FeatureMajor } else { BitOrder::ThresholdMajor },
                        thresholds: thresholds.into_iter().map(|t| vec![t]).collect(),
                    }
                });
            let encoder = prop_oneof![Just(RefEncoder::Bits(c * h * w)), per_channel, per_bit];
            (encoder, Just(Some(shape)))
        })
        .boxed()
}

/// A convolutional network over an image encoder: 1..=`max_spatial` spatial layers, each reading the shape the one
/// before it made, then up to `max_dense` dense layers.
pub fn spatial_network_strategy(max_spatial: usize, max_dense: usize) -> impl Strategy<Value = RefNet> {
    spatial_network_of(spatial_kind_strategy(), max_spatial, max_dense)
}

/// [`spatial_network_strategy`] with the spatial layers' kinds drawn from `kinds`.
pub fn spatial_network_of(
    kinds: BoxedStrategy<Kind>,
    max_spatial: usize,
    max_dense: usize,
) -> impl Strategy<Value = RefNet> {
    let spatial = prop::collection::vec((kinds, Just(0usize)), 1..=max_spatial);
    let dense = prop::collection::vec((dense_kind_strategy(), 1usize..=48), 0..=max_dense);
    let specs = (spatial, dense).prop_map(|(spatial, dense)| spatial.into_iter().chain(dense).collect()).boxed();
    network_over(image_encoder_strategy(), specs)
}

/// Networks of every layer kind, mixed.
pub fn any_network() -> impl Strategy<Value = RefNet> {
    network_strategy(kind_strategy().boxed(), 4)
}
