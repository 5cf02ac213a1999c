//! proptest strategies for random valid networks of every kind (each kind's layers come from its file in
//! [`kinds`](super::kinds)).

use std::collections::BTreeMap;

use bitlogic::BitOrder;
use proptest::prelude::*;

use super::{kind_strategy, layer_strategy, Kind, RefEncoder, RefLayer, RefNet};

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

/// A network with up to `max_layers` hidden layers whose kinds come from `kinds`; the last layer's width is a
/// multiple of the class count. With no layers, the class count divides the encoder width.
pub fn network_strategy(kinds: BoxedStrategy<Kind>, max_layers: usize) -> impl Strategy<Value = RefNet> {
    let specs = prop::collection::vec((kinds, 1usize..=48), 0..=max_layers);
    let groups = prop_oneof![4 => 1usize..=6, 1 => 7usize..=40];
    (encoder_strategy(), specs, 1usize..=6, groups, any::<bool>(), 0.25f64..20.0, any::<bool>()).prop_flat_map(
        |(encoder, mut specs, classes, group, pack_here, tau, with_info)| {
            let classes_strategy = match specs.last_mut() {
                Some(last) => {
                    last.1 = classes * group;
                    Just(classes).boxed()
                }
                None => {
                    let w = encoder.width();
                    prop::sample::select((1..=w).filter(|k| w % k == 0).collect::<Vec<_>>()).boxed()
                }
            };
            let mut inputs = encoder.width();
            let layers: Vec<BoxedStrategy<RefLayer>> = specs
                .iter()
                .map(|&(kind, width)| {
                    let s = layer_strategy(kind, inputs, width);
                    inputs = width;
                    s
                })
                .collect();
            let info = if with_info {
                BTreeMap::from([("producer".to_string(), "tests".to_string()), ("ü".to_string(), "\"x\"".to_string())])
            } else {
                BTreeMap::new()
            };
            (Just(encoder), layers, classes_strategy).prop_map(move |(encoder, layers, num_classes)| RefNet {
                encoder,
                layers,
                num_classes,
                tau,
                info: info.clone(),
                pack_here,
            })
        },
    )
}

/// Networks of every layer kind, mixed.
pub fn any_network() -> impl Strategy<Value = RefNet> {
    network_strategy(kind_strategy().boxed(), 4)
}
