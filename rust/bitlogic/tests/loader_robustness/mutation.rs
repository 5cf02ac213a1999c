//! The mutations a valid file undergoes, and the proptest strategies that draw them.

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};

/// Which JSON document an edit applies to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Doc {
    /// The safetensors header (tensor entries and `__metadata__`).
    Header,
    /// The network description inside `__metadata__.network`.
    Description,
}

/// What to do at the chosen JSON node.
#[derive(Clone, Debug)]
pub(crate) enum Edit {
    Set(Value),
    Remove,
    AddKey(String, Value),
    Wrap,
}

#[derive(Clone, Debug)]
pub(crate) enum Mutation {
    Truncate(Index),
    Flip(Index, u8),
    /// Flips bits of a byte of the data buffer (wires, op codes, tables, weights, thresholds).
    FlipData(Index, u8),
    Overwrite(Index, u8),
    Insert(Index, Vec<u8>),
    Delete(Index, usize),
    HeaderLength(u64),
    HeaderLengthDelta(i64),
    Json {
        doc: Doc,
        node: Index,
        edit: Edit,
        keep_length: bool,
    },
    Version(String),
    Digits {
        run: Index,
        replacement: String,
        keep_length: bool,
    },
}

pub(crate) fn interesting_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(vec![
            json!(0),
            json!(1),
            json!(2),
            json!(-1),
            json!(i64::MIN),
            json!(255),
            json!(256),
            json!(2147483647u64),
            json!(2147483648u64),
            json!(4294967295u64),
            json!(4294967296u64),
            json!(9007199254740993u64),
            json!(u64::MAX),
            json!(1.5),
            json!(1.0),
            json!(-0.0),
            json!(1e300),
            json!(-1e300),
            json!(f64::MIN_POSITIVE),
        ]),
        any::<u32>().prop_map(|v| json!(v)),
        any::<i64>().prop_map(|v| json!(v)),
        any::<f64>().prop_filter("JSON has no NaN or infinity", |v| v.is_finite()).prop_map(|v| json!(v)),
    ]
}

pub(crate) fn interesting_string() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        "",
        "x",
        "1.0",
        "1.9",
        "2.0",
        "0.9",
        "bitlogic",
        "gates",
        "luts",
        "binary",
        "bits",
        "thresholds",
        "group_sum",
        "feature_major",
        "threshold_major",
        "U8",
        "U32",
        "I32",
        "F32",
        "F64",
        "BOOL",
        "F4",
        "I64",
        "conv",
        "conv_gates",
        "conv_luts",
        "conv_binary",
        "or_pool",
        "8",
        "{}",
        "null",
    ])
    .prop_map(|s| json!(s))
}

pub(crate) fn interesting_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => interesting_number(),
        3 => interesting_string(),
        1 => prop::sample::select(vec![json!(null), json!(true), json!([]), json!({}), json!([0]), json!([0, 0])]),
    ]
}

pub(crate) fn interesting_key() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "extra",
        "width",
        "arity",
        "sources",
        "kind",
        "info",
        "tau",
        "num_classes",
        "num_inputs",
        "bit_order",
        "input_shape",
        "kernel_size",
        "stride",
        "padding",
        "out_channels",
        "depth",
        "pad_value",
        "__metadata__",
        "format",
        "layers.0.extra",
        "encoder.thresholds",
        "layers.99.inputs",
        "dtype",
        "shape",
        "data_offsets",
    ])
    .prop_map(str::to_string)
}

pub(crate) fn edit_strategy() -> impl Strategy<Value = Edit> {
    prop_oneof![
        5 => interesting_value().prop_map(Edit::Set),
        2 => Just(Edit::Remove),
        2 => (interesting_key(), interesting_value()).prop_map(|(k, v)| Edit::AddKey(k, v)),
        1 => Just(Edit::Wrap),
    ]
}

pub(crate) fn header_length_strategy() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        prop::sample::select(vec![
            0,
            1,
            7,
            8,
            100_000_000,
            100_000_001,
            1 << 31,
            1 << 32,
            1 << 63,
            u64::MAX - 7,
            u64::MAX
        ]),
        0u64..4096,
    ]
}

pub(crate) fn mutation_strategy() -> impl Strategy<Value = Mutation> {
    let doc = prop_oneof![Just(Doc::Header), Just(Doc::Description)];
    prop_oneof![
        2 => any::<Index>().prop_map(Mutation::Truncate),
        2 => (any::<Index>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        4 => (any::<Index>(), 1u8..=255).prop_map(|(i, x)| Mutation::FlipData(i, x)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, x)| Mutation::Overwrite(i, x)),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => header_length_strategy().prop_map(Mutation::HeaderLength),
        1 => (-16i64..=16).prop_map(Mutation::HeaderLengthDelta),
        12 => (doc, any::<Index>(), edit_strategy(), prop::bool::weighted(0.1))
            .prop_map(|(doc, node, edit, keep_length)| Mutation::Json { doc, node, edit, keep_length }),
        2 => prop::sample::select(vec![
            "2.0", "1.9", "x", "0.0", "1", "1.0.0", "01.0", "1.01", "", " 1.0", "99999999999.0"
        ])
            .prop_map(|v| Mutation::Version(v.to_string())),
        3 => (
            any::<Index>(),
            prop::sample::select(vec![
                "4294967296", "4294967295", "2147483647", "2147483648", "18446744073709551615",
                "18446744073709551616", "99999999999999999999999999", "-1", "-0", "1.5", "1e3", "1E400", "0", "00",
                "NaN", "1.0", "0x10",
            ]),
            prop::bool::weighted(0.2),
        )
            .prop_map(|(run, r, keep_length)| Mutation::Digits { run, replacement: r.to_string(), keep_length }),
    ]
}
