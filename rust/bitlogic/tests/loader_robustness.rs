//! The loader against malformed files.
//!
//! - A mutation property test: valid files of several kinds (from the engine's writer and from the independent
//!   writer in `common`) are truncated, bit-flipped, given wrong header lengths, and edited as JSON (numbers made
//!   huge, negative or fractional, keys removed and added, kinds and versions changed). `from_bytes` must never
//!   panic, must stay within a memory budget proportional to the file, and must either fail with a format or
//!   version error or return a network that serializes again and evaluates.
//! - Targeted tests: every defect listed in FORMAT.md section 4 is a format (or version) error whose message names
//!   the tensor or key at fault.
//! - Headers claiming enormous sizes fail at once, without allocating for them.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use bitlogic::{random_network, BitOrder, Error, EvalOptions, Input, LayerKind, Matrix, Network};
use common::*;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------------------------
// Allocation accounting
// ---------------------------------------------------------------------------------------------------------------

/// Counts the bytes requested by each thread (never decremented), so a test can bound what one call allocates.
struct Counting;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

fn note(bytes: usize) {
    // `try_with`: the slot may already be gone while a thread is being torn down.
    let _ = ALLOCATED.try_with(|a| a.set(a.get().saturating_add(bytes)));
}

// SAFETY: every call is forwarded unchanged to the system allocator; only a thread-local counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f`, returning its result, the bytes it allocated on this thread, and how long it took.
fn measured<T>(f: impl FnOnce() -> T) -> (T, usize, Duration) {
    let before = ALLOCATED.with(Cell::get);
    let start = Instant::now();
    let out = f();
    let elapsed = start.elapsed();
    (out, ALLOCATED.with(Cell::get) - before, elapsed)
}

/// What a loader may allocate for a file of `len` bytes: a constant plus a multiple of the file (unpacking a
/// table byte into a word is 8x; parsing and the network's own copies add some more).
fn allocation_budget(len: usize) -> usize {
    (1 << 20) + 64 * len
}

// ---------------------------------------------------------------------------------------------------------------
// Base files
// ---------------------------------------------------------------------------------------------------------------

/// A network from one of `common`'s strategies, picked deterministically.
fn sample_net(strategy: impl Strategy<Value = RefNet>, seed: u64) -> RefNet {
    let mut runner = TestRunner::new_with_rng(
        proptest::test_runner::Config::default(),
        proptest::test_runner::TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &{
            let mut s = [0u8; 32];
            s[..8].copy_from_slice(&seed.to_le_bytes());
            s
        }),
    );
    let mut net = strategy.new_tree(&mut runner).expect("a network").current();
    // Taus that print and parse exactly, so that a re-serialized network compares equal.
    net.tau = [1.0, 10.0, 2.5, 0.75][seed as usize % 4];
    net
}

/// Valid files of several kinds: every layer kind, both encoders, no layers, annotations; written by the engine and
/// by the independent writer (whose tensor order differs).
fn base_files() -> Vec<Vec<u8>> {
    let mut nets: Vec<RefNet> = Vec::new();
    for (i, kind) in [Kind::Gates, Kind::Luts(2), Kind::Luts(5), Kind::Luts(8), Kind::Binary].into_iter().enumerate() {
        nets.push(sample_net(network_strategy(Just(kind).boxed(), 2), 100 + i as u64));
    }
    for seed in 0..4 {
        nets.push(sample_net(network_strategy(kind_strategy().boxed(), 3), seed));
    }
    nets.push(sample_net(network_strategy(kind_strategy().boxed(), 0), 7));
    let mut files = Vec::new();
    for net in &nets {
        files.push(net.build().to_bytes().unwrap());
        files.push(net.file_bytes());
    }
    files.push(random_network(20, &[16, 8], 2, LayerKind::Gates, 1).unwrap().to_bytes().unwrap());
    files
}

// ---------------------------------------------------------------------------------------------------------------
// Mutations
// ---------------------------------------------------------------------------------------------------------------

/// Which JSON document an edit applies to.
#[derive(Clone, Copy, Debug)]
enum Doc {
    /// The safetensors header (tensor entries and `__metadata__`).
    Header,
    /// The network description inside `__metadata__.network`.
    Description,
}

/// What to do at the chosen JSON node.
#[derive(Clone, Debug)]
enum Edit {
    Set(Value),
    Remove,
    AddKey(String, Value),
    Wrap,
}

#[derive(Clone, Debug)]
enum Mutation {
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

fn interesting_number() -> impl Strategy<Value = Value> {
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

fn interesting_string() -> impl Strategy<Value = Value> {
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
        "8",
        "{}",
        "null",
    ])
    .prop_map(|s| json!(s))
}

fn interesting_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => interesting_number(),
        3 => interesting_string(),
        1 => prop::sample::select(vec![json!(null), json!(true), json!([]), json!({}), json!([0]), json!([0, 0])]),
    ]
}

fn interesting_key() -> impl Strategy<Value = String> {
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

fn edit_strategy() -> impl Strategy<Value = Edit> {
    prop_oneof![
        5 => interesting_value().prop_map(Edit::Set),
        2 => Just(Edit::Remove),
        2 => (interesting_key(), interesting_value()).prop_map(|(k, v)| Edit::AddKey(k, v)),
        1 => Just(Edit::Wrap),
    ]
}

fn header_length_strategy() -> impl Strategy<Value = u64> {
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

fn mutation_strategy() -> impl Strategy<Value = Mutation> {
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

/// The header length, header text and data buffer of a file, when its framing is intact.
fn frame(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let header = bytes.get(8..8usize.checked_add(n)?)?;
    Some((header, &bytes[8 + n..]))
}

/// Replaces the header of a framed file, writing the new length (or keeping the old one).
fn reframe(bytes: &[u8], header: &[u8], keep_length: bool) -> Vec<u8> {
    let (old, data) = frame(bytes).expect("framed");
    let mut out = assemble(header, data);
    if keep_length {
        out[..8].copy_from_slice(&(old.len() as u64).to_le_bytes());
    }
    out
}

/// A step into a JSON document.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Item(usize),
}

fn paths(value: &Value, prefix: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
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

fn node_mut<'a>(mut value: &'a mut Value, path: &[Step]) -> &'a mut Value {
    for step in path {
        value = match step {
            Step::Key(k) => &mut value[k.as_str()],
            Step::Item(i) => &mut value[*i],
        };
    }
    value
}

/// Applies `edit` at the node `node` picks among all nodes of `doc`.
fn edit_json(doc: &mut Value, node: Index, edit: &Edit) {
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
fn mutate_json(bytes: &[u8], doc: Doc, node: Index, edit: &Edit, keep_length: bool) -> Option<Vec<u8>> {
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

fn apply(bytes: Vec<u8>, mutation: &Mutation) -> Vec<u8> {
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

/// A few valid samples for `net`, when its input is small enough to build.
fn evaluate_some(net: &Network) -> Result<(), TestCaseError> {
    let options = EvalOptions { threads: Some(1), ..Default::default() };
    let cols = net.num_inputs();
    let empty: &[u8] = &[];
    let none = match net.encoder() {
        bitlogic::Encoder::Bits { .. } => Input::Bits(Matrix::new(empty, 0, cols, cols, 1).unwrap()),
        bitlogic::Encoder::Thresholds(_) => Input::U8(Matrix::new(empty, 0, cols, cols, 1).unwrap()),
    };
    prop_assert_eq!(net.scores(none, &options).map_err(|e| TestCaseError::fail(e.to_string()))?.len(), 0);
    if cols > 4096 || net.max_width() > 1 << 16 {
        return Ok(());
    }
    let rows = 3;
    let bits: Vec<u8> = (0..rows * cols).map(|i| (i % 3 == 0) as u8).collect();
    let floats: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.37 - 1.0).collect();
    let input = match net.encoder() {
        bitlogic::Encoder::Bits { .. } => Input::Bits(Matrix::c_order(&bits, rows, cols).unwrap()),
        bitlogic::Encoder::Thresholds(_) => Input::F32(Matrix::c_order(&floats, rows, cols).unwrap()),
    };
    let scores = net.scores(input, &options).map_err(|e| TestCaseError::fail(format!("scores: {e}")))?;
    prop_assert_eq!(scores.len(), rows * net.num_classes());
    let labels = net.predict(input, &options).map_err(|e| TestCaseError::fail(format!("predict: {e}")))?;
    prop_assert!(labels.iter().all(|&l| (0..net.num_classes() as i64).contains(&l)));
    Ok(())
}

/// The loader's contract on arbitrary bytes.
fn check_loader(bytes: &[u8]) -> Result<(), TestCaseError> {
    let (result, allocated, _) = measured(|| Network::from_bytes(bytes));
    prop_assert!(
        allocated <= allocation_budget(bytes.len()),
        "from_bytes allocated {} bytes for a file of {}",
        allocated,
        bytes.len()
    );
    match result {
        Ok(net) => {
            let again = net.to_bytes().map_err(|e| TestCaseError::fail(format!("re-serializing: {e}")))?;
            let back = Network::from_bytes(&again).map_err(|e| TestCaseError::fail(format!("re-reading: {e}")))?;
            prop_assert_eq!(&back, &net);
            evaluate_some(&net)
        }
        Err(Error::Format(_) | Error::Version { .. }) => Ok(()),
        Err(other) => Err(TestCaseError::fail(format!("unexpected error kind: {other:?}"))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, max_shrink_iters: 4000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_files_never_panic(
        base in any::<Index>(),
        mutations in prop::collection::vec(mutation_strategy(), 1..=4),
    ) {
        thread_local! {
            static BASES: Vec<Vec<u8>> = base_files();
        }
        let bytes = BASES.with(|bases| base.get(bases).clone());
        let mutated = mutations.iter().fold(bytes, apply);
        check_loader(&mutated)?;
    }

    /// Arbitrary bytes, and arbitrary bytes behind a plausible header length.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256), framed in any::<bool>()) {
        let mut bytes = bytes;
        if framed && bytes.len() >= 8 {
            let n = (bytes.len() - 8) as u64 / 2;
            bytes[..8].copy_from_slice(&n.to_le_bytes());
        }
        check_loader(&bytes)?;
    }
}

#[test]
fn unmutated_base_files_load() {
    for bytes in base_files() {
        check_loader(&bytes).unwrap();
        Network::from_bytes(&bytes).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Targeted defects (FORMAT.md section 4)
// ---------------------------------------------------------------------------------------------------------------

/// A small network using every layer kind: thresholds encoder (3 features x 2), gates (8), LUTs of arity 2 (6,
/// so the single table byte has 4 padding bits), binary (4 outputs of 6 inputs, 2 padding bits), 2 classes.
fn template() -> RefNet {
    RefNet {
        encoder: RefEncoder::Thresholds {
            order: BitOrder::FeatureMajor,
            thresholds: vec![vec![0.0, 1.0], vec![-1.0, f32::INFINITY], vec![0.5, 0.5]],
        },
        layers: vec![
            RefLayer::Gates((0..8).map(|g| RefGate { a: g % 6, b: (g + 1) % 6, op: g as u8 + 3 }).collect()),
            RefLayer::Luts {
                arity: 2,
                luts: (0..6)
                    .map(|l| RefLut { wires: vec![l, 7 - l], entries: vec![l % 2 == 0, true, false, l % 3 == 0] })
                    .collect(),
            },
            RefLayer::Binary {
                inputs: 6,
                neurons: (0..4)
                    .map(|o| RefNeuron { weights: (0..6).map(|j| (j + o) % 3 == 0).collect(), threshold: o + 1 })
                    .collect(),
            },
        ],
        num_classes: 2,
        tau: 2.0,
        info: Default::default(),
        pack_here: false,
    }
}

/// The template's description and tensors, for editing.
fn parts() -> (Value, Vec<RawTensor>) {
    template().file_parts()
}

fn file(description: &Value, tensors: &[RawTensor]) -> Vec<u8> {
    write_container(&standard_metadata(description), tensors)
}

fn tensor<'a>(tensors: &'a mut [RawTensor], name: &str) -> &'a mut RawTensor {
    tensors.iter_mut().find(|t| t.name == name).unwrap_or_else(|| panic!("no tensor {name}"))
}

/// Loads `bytes`, expecting a format error whose message contains every one of `needles`.
#[track_caller]
fn expect_format(bytes: &[u8], needles: &[&str]) -> String {
    match Network::from_bytes(bytes) {
        Err(Error::Format(message)) => {
            for needle in needles {
                assert!(message.contains(needle), "the message should name {needle:?}: {message}");
            }
            message
        }
        other => panic!("expected a format error naming {needles:?}, got {other:?}"),
    }
}

#[test]
fn template_loads() {
    let reference = template();
    let net = Network::from_bytes(&reference.file_bytes()).unwrap();
    assert_eq!(net, reference.build());
}

#[test]
fn malformed_containers_are_format_errors() {
    let good = template().file_bytes();
    let (header, data) = frame(&good).map(|(h, d)| (h.to_vec(), d.to_vec())).unwrap();
    for len in 0..8 {
        expect_format(&good[..len], &[]);
    }
    // Header length beyond the file, and absurd.
    for n in [header.len() as u64 + data.len() as u64 + 1, u64::MAX, 1 << 40, 100_000_001] {
        let mut bad = good.clone();
        bad[..8].copy_from_slice(&n.to_le_bytes());
        expect_format(&bad, &[]);
    }
    // Not UTF-8, not JSON, not an object.
    let mut bad_utf8 = header.clone();
    bad_utf8[1] = 0xff;
    expect_format(&assemble(&bad_utf8, &data), &[]);
    for text in ["", "{", "[]", "\"x\"", "null", "{\"__metadata__\": {}} x"] {
        expect_format(&assemble(text.as_bytes(), &[]), &[]);
    }
    // Data buffer longer or shorter than the tensors.
    let mut longer = good.clone();
    longer.push(0);
    expect_format(&longer, &[]);
    expect_format(&good[..good.len() - 1], &[]);
    // Trailing spaces in the header (the safetensors alignment padding) are fine.
    let mut padded = header.clone();
    padded.extend_from_slice(b"    ");
    Network::from_bytes(&assemble(&padded, &data)).unwrap();
}

/// Rewrites the tensor entries of the template's header with `f`.
fn with_header_entries(f: impl Fn(&mut serde_json::Map<String, Value>)) -> Vec<u8> {
    let good = template().file_bytes();
    let (header, data) = frame(&good).unwrap();
    let mut outer: Value = serde_json::from_slice(header).unwrap();
    f(outer.as_object_mut().unwrap());
    assemble(outer.to_string().as_bytes(), data)
}

#[test]
fn bad_tensor_offsets_and_dtypes_are_format_errors() {
    // A gap, an overlap, a size that does not match the shape, reversed offsets, an unknown dtype.
    let shifted = |delta: i64| {
        with_header_entries(move |h| {
            for (name, t) in h.iter_mut() {
                if name != "__metadata__" && t["data_offsets"][0].as_u64().unwrap() > 0 {
                    let [b, e] = [0, 1].map(|i| t["data_offsets"][i].as_i64().unwrap() + delta);
                    t["data_offsets"] = json!([b, e]);
                }
            }
        })
    };
    expect_format(&shifted(1), &[]);
    expect_format(&shifted(-1), &[]);
    expect_format(&with_header_entries(|h| h["layers.0.ops"]["shape"] = json!([9])), &[]);
    expect_format(&with_header_entries(|h| h["layers.0.ops"]["data_offsets"] = json!([40, 32])), &[]);
    expect_format(&with_header_entries(|h| h["layers.0.ops"]["data_offsets"] = json!([-1, 8])), &[]);
    expect_format(&with_header_entries(|h| h["layers.0.ops"]["dtype"] = json!("X9")), &[]);
    expect_format(&with_header_entries(|h| h["layers.0.ops"]["shape"] = json!([-8])), &[]);
    expect_format(&with_header_entries(|h| h["layers.0.ops"]["shape"] = json!("8")), &[]);
    expect_format(&with_header_entries(|h| drop(h["layers.0.ops"].as_object_mut().unwrap().remove("dtype"))), &[]);
}

/// Eight tensors of 2^61 - 1 bytes each claim offsets up to 2^64 - 8: adding the header length to the end of the
/// data overflows. The loader must still return an error (a debug build must not panic on the overflow).
#[test]
fn offsets_near_the_top_of_u64_are_format_errors() {
    let size = (1u64 << 61) - 1;
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), standard_metadata(&parts().0));
    for i in 0..8u64 {
        header.insert(
            format!("t{i}"),
            json!({"dtype": "U8", "shape": [size], "data_offsets": [i * size, (i + 1) * size]}),
        );
    }
    let (_, allocated, elapsed) = measured(|| {
        let result = std::panic::catch_unwind(|| {
            Network::from_bytes(&assemble(Value::Object(header).to_string().as_bytes(), &[]))
        });
        match result {
            Ok(Err(Error::Format(_))) => {}
            Ok(other) => panic!("expected a format error, got {other:?}"),
            Err(_) => panic!("from_bytes panicked on tensor offsets summing past u64::MAX"),
        }
    });
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    assert!(allocated < 1 << 20, "{allocated} bytes");
}

#[test]
fn metadata_defects_are_named() {
    let (description, tensors) = parts();
    let network = description.to_string();
    let with = |metadata: Value| write_container(&metadata, &tensors);
    expect_format(&with(Value::Null), &["__metadata__"]);
    expect_format(&with(json!({"format_version": "1.0", "network": network})), &["`format`"]);
    expect_format(&with(json!({"format": "bitlogic", "network": network})), &["format_version"]);
    expect_format(&with(json!({"format": "bitlogic", "format_version": "1.0"})), &["network"]);
    expect_format(&with(json!({"format": "safetensors", "format_version": "1.0", "network": network})), &["format"]);
    expect_format(
        &with(json!({"format": "bitlogic", "format_version": "1.0", "network": network, "author": "me"})),
        &["author"],
    );
    // Metadata values must be strings (the safetensors rule).
    expect_format(&with(json!({"format": "bitlogic", "format_version": 1.0, "network": network})), &[]);
    expect_format(&with(json!({"format": "bitlogic", "format_version": "1.0", "network": description})), &[]);
    for version in ["x", "1", "1.0.0", "", "1.x", "-1.0", "1.-0", " 1.0", "99999999999.0"] {
        let bytes = with(json!({"format": "bitlogic", "format_version": version, "network": network}));
        expect_format(&bytes, &["format_version"]);
    }
}

#[test]
fn versions_follow_the_versioning_rule() {
    let (description, tensors) = parts();
    let network = description.to_string();
    let with_version = |version: &str, network: &str| {
        write_container(&json!({"format": "bitlogic", "format_version": version, "network": network}), &tensors)
    };
    for version in ["2.0", "0.9", "3.1", "10.0"] {
        match Network::from_bytes(&with_version(version, &network)) {
            Err(e @ Error::Version { .. }) => {
                let message = e.to_string();
                assert!(message.contains(version) && message.contains("1.0"), "{message}");
            }
            other => panic!("version {version}: expected a version error, got {other:?}"),
        }
    }
    // A newer minor version of major 1 is read...
    for version in ["1.0", "1.9", "1.10", "1.123"] {
        let net = Network::from_bytes(&with_version(version, &network)).unwrap();
        assert_eq!(net, template().build(), "{version}");
    }
    // ...and a construct it adds that this reader does not know is an error naming the construct.
    let mut newer = description.clone();
    newer["layers"][0]["kind"] = json!("conv");
    expect_format(&with_version("1.9", &newer.to_string()), &["conv"]);
    let mut newer = description.clone();
    newer["encoder"]["kind"] = json!("one_hot");
    expect_format(&with_version("1.9", &newer.to_string()), &["one_hot"]);
    let mut newer = description.clone();
    newer["head"]["normalize"] = json!(true);
    expect_format(&with_version("1.9", &newer.to_string()), &["normalize"]);
    let mut skip = description.clone();
    skip["layers"][1]["sources"] = json!([0, 1]);
    expect_format(&with_version("1.9", &skip.to_string()), &["sources"]);
}

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

#[test]
fn tensor_defects_are_named() {
    let (description, tensors) = parts();
    let names: Vec<String> = tensors.iter().map(|t| t.name.clone()).collect();
    // Missing.
    for name in &names {
        let fewer: Vec<RawTensor> = tensors.iter().filter(|t| &t.name != name).cloned().collect();
        expect_format(&file(&description, &fewer), &[name]);
    }
    // Wrong dtype (same byte size where possible, so only the dtype is wrong).
    for name in &names {
        let mut t = tensors.clone();
        let entry = tensor(&mut t, name);
        entry.dtype = match entry.dtype {
            "U32" => "I32",
            "I32" => "U32",
            "F32" => "I32",
            _ => "I8",
        };
        expect_format(&file(&description, &t), &[name]);
    }
    // Wrong shape with the same number of elements: transposed, flattened, or with a unit dimension added.
    for name in &names {
        let mut t = tensors.clone();
        let entry = tensor(&mut t, name);
        entry.shape = match entry.shape.len() {
            1 => vec![entry.shape[0], 1],
            _ => entry.shape.iter().rev().copied().collect(),
        };
        if entry.shape.len() == 2 && entry.shape[0] == entry.shape[1] {
            entry.shape = vec![entry.shape[0] * entry.shape[1]];
        }
        expect_format(&file(&description, &t), &[name]);
    }
    // Too many or too few rows.
    let mut t = tensors.clone();
    let ops = tensor(&mut t, "layers.0.ops");
    ops.shape = vec![9];
    ops.data.push(0);
    expect_format(&file(&description, &t), &["layers.0.ops"]);
    // Binary weight rows sized for the wrong input width.
    let mut t = tensors.clone();
    let weights = tensor(&mut t, "layers.2.weights");
    weights.shape = vec![4, 2];
    weights.data = weights.data.iter().flat_map(|&b| [b, 0]).collect();
    expect_format(&file(&description, &t), &["layers.2.weights"]);
    // Extra tensors.
    for extra in ["layers.3.inputs", "encoder.bias", "head.weights"] {
        let mut t = tensors.clone();
        t.push(RawTensor::new(extra, "U8", vec![1], vec![0]));
        let message = expect_format(&file(&description, &t), &[]);
        assert!(message.contains(&format!("{extra},")) || message.ends_with(extra), "names {extra:?}: {message}");
    }
    // A thresholds tensor for a bits encoder.
    let bits = RefNet { encoder: RefEncoder::Bits(6), ..template() };
    let (bits_description, mut bits_tensors) = bits.file_parts();
    bits_tensors.insert(0, tensors[0].clone());
    expect_format(&file(&bits_description, &bits_tensors), &["encoder.thresholds"]);
}

#[test]
fn value_defects_are_named() {
    let (description, tensors) = parts();
    let with = |name: &str, f: &dyn Fn(&mut Vec<u8>)| {
        let mut t = tensors.clone();
        f(&mut tensor(&mut t, name).data);
        file(&description, &t)
    };
    // Wires at or beyond the input width: gate A and B (input width 6), a LUT wire (8), for every position.
    for (name, index, width) in [("layers.0.inputs", 0, 6u32), ("layers.0.inputs", 15, 6), ("layers.1.inputs", 11, 8)] {
        for wire in [width, width + 1, u32::MAX] {
            let bytes = with(name, &|d| d[4 * index..4 * index + 4].copy_from_slice(&wire.to_le_bytes()));
            let layer = &name[..8].replace("layers.", "layer ");
            expect_format(&bytes, &[layer, &wire.to_string()]);
        }
    }
    // Op codes above 15.
    for op in [16u8, 17, 128, 255] {
        expect_format(&with("layers.0.ops", &|d| d[7] = op), &["layer 0", &op.to_string()]);
    }
    // LUT padding bits (entries 4..8 of an arity-2 table).
    for bit in 4..8 {
        expect_format(&with("layers.1.tables", &|d| d[5] |= 1 << bit), &["layer 1"]);
    }
    // Binary weight padding bits (inputs 6 and 7 of a 6-input row).
    for bit in 6..8 {
        expect_format(&with("layers.2.weights", &|d| d[3] |= 1 << bit), &["layer 2"]);
    }
    // NaN thresholds, quiet, negative and signalling.
    for nan in [f32::NAN.to_bits(), (-f32::NAN).to_bits(), 0x7f80_0001, 0xffc0_0000] {
        let bytes = with("encoder.thresholds", &|d| d[12..16].copy_from_slice(&nan.to_le_bytes()));
        expect_format(&bytes, &["encoder", "NaN"]);
    }
    // The head's width must divide into the classes.
    let mut d = description.clone();
    d["head"]["num_classes"] = json!(3);
    expect_format(&file(&d, &tensors), &["head", "3"]);
}

#[test]
fn zero_counts_are_format_errors() {
    // Width 0 with empty tensors that match it.
    let mut reference = template();
    reference.layers.truncate(1);
    let (mut d, mut t) = reference.file_parts();
    d["layers"][0]["width"] = json!(0);
    for tensor in &mut t[1..] {
        tensor.shape[0] = 0;
        tensor.data.clear();
    }
    expect_format(&file(&d, &t), &["layer 0"]);

    // No encoder inputs, no thresholds per feature, no features.
    let (mut d, mut t) = RefNet { layers: Vec::new(), ..template() }.file_parts();
    d["encoder"]["thresholds_per_feature"] = json!(0);
    t[0].shape = vec![3, 0];
    t[0].data.clear();
    expect_format(&file(&d, &t), &["encoder"]);
    d["encoder"]["num_features"] = json!(0);
    d["encoder"]["thresholds_per_feature"] = json!(2);
    t[0].shape = vec![0, 2];
    expect_format(&file(&d, &t), &["encoder"]);
    let (mut d, t) = RefNet { encoder: RefEncoder::Bits(2), layers: Vec::new(), ..template() }.file_parts();
    d["encoder"]["num_inputs"] = json!(0);
    expect_format(&file(&d, &t), &["encoder"]);
}

// ---------------------------------------------------------------------------------------------------------------
// Enormous claims
// ---------------------------------------------------------------------------------------------------------------

/// How long refusing an enormous claim may take. Honouring one (walking or allocating 2^31 entries) takes tens of
/// seconds; the bound leaves room for debug code on a loaded two-core machine, and the allocation bounds are the
/// precise check.
const FAST: Duration = Duration::from_secs(2);

/// Loads `bytes`, asserting it fails with a format error quickly ([`FAST`]) and without allocating more than a
/// mebibyte.
#[track_caller]
fn fails_fast(bytes: &[u8], needles: &[&str]) {
    let (message, allocated, elapsed) = measured(|| expect_format(bytes, needles));
    assert!(elapsed < FAST, "took {elapsed:?}: {message}");
    assert!(allocated < 1 << 20, "allocated {allocated} bytes: {message}");
}

const HUGE: u64 = (1 << 31) - 1;

/// A description with `encoder`, `layers` and a one-class head.
fn described(encoder: &Value, layers: Value) -> Value {
    json!({"encoder": encoder, "layers": layers, "head": {"kind": "group_sum", "num_classes": 1, "tau": 1.0}})
}

#[test]
fn enormous_widths_fail_fast() {
    let bits_encoder = json!({"kind": "bits", "num_inputs": 4});
    let tiny_gates = [
        RawTensor::new("layers.0.inputs", "U32", vec![1, 2], vec![0; 8]),
        RawTensor::new("layers.0.ops", "U8", vec![1], vec![6]),
    ];
    for width in [HUGE, u32::MAX as u64, 1 << 31] {
        // The description claims a huge layer; the tensors are tiny and say so.
        let d = described(&bits_encoder, json!([{"kind": "gates", "width": width, "sources": [0]}]));
        fails_fast(&file(&d, &tiny_gates), &["layers.0.inputs"]);

        // The tensors' shapes agree with the description, but the data is not there.
        let metadata = standard_metadata(&d);
        let header = json!({
            "__metadata__": metadata,
            "layers.0.inputs": {"dtype": "U32", "shape": [width, 2], "data_offsets": [0, 8]},
            "layers.0.ops": {"dtype": "U8", "shape": [width], "data_offsets": [8, 9]},
        });
        fails_fast(&assemble(header.to_string().as_bytes(), &[0; 9]), &[]);

        // Huge LUT layers of the largest arity.
        let d = described(&bits_encoder, json!([{"kind": "luts", "width": width, "arity": 8, "sources": [0]}]));
        let tensors = [
            RawTensor::new("layers.0.inputs", "U32", vec![1, 8], vec![0; 32]),
            RawTensor::new("layers.0.tables", "U8", vec![1, 32], vec![0; 32]),
        ];
        fails_fast(&file(&d, &tensors), &["layers.0.inputs"]);

        // A huge binary layer, and a binary layer over a huge encoder.
        let d = described(&bits_encoder, json!([{"kind": "binary", "width": width, "sources": [0]}]));
        let tensors = [
            RawTensor::new("layers.0.weights", "U8", vec![1, 1], vec![0]),
            RawTensor::new("layers.0.thresholds", "I32", vec![1], vec![0; 4]),
        ];
        fails_fast(&file(&d, &tensors), &["layers.0.weights"]);
        let huge_encoder = json!({"kind": "bits", "num_inputs": width});
        let d = described(&huge_encoder, json!([{"kind": "binary", "width": 1, "sources": [0]}]));
        fails_fast(&file(&d, &tensors), &[]);

        // A huge threshold encoder.
        let encoder = json!({
            "kind": "thresholds",
            "num_features": width,
            "thresholds_per_feature": width,
            "bit_order": "feature_major",
        });
        let d = described(&encoder, json!([]));
        fails_fast(
            &file(&d, &[RawTensor::new("encoder.thresholds", "F32", vec![1, 1], vec![0; 4])]),
            &["encoder.thresholds"],
        );
        let header = json!({
            "__metadata__": standard_metadata(&d),
            "encoder.thresholds": {"dtype": "F32", "shape": [width, width], "data_offsets": [0, 4]},
        });
        fails_fast(&assemble(header.to_string().as_bytes(), &[0; 4]), &[]);
    }
    // Shapes whose element count overflows.
    let header = json!({
        "__metadata__": standard_metadata(&described(&bits_encoder, json!([]))),
        "x": {"dtype": "U32", "shape": [u64::MAX, u64::MAX, 2], "data_offsets": [0, 0]},
    });
    fails_fast(&assemble(header.to_string().as_bytes(), &[]), &[]);
    // Many layers described, none present.
    let layers: Vec<Value> = (0..20_000).map(|i| json!({"kind": "gates", "width": HUGE, "sources": [i]})).collect();
    let d = described(&bits_encoder, json!(layers));
    let bytes = file(&d, &tiny_gates);
    let (_, allocated, elapsed) = measured(|| expect_format(&bytes, &["layers.0.inputs"]));
    assert!(elapsed < FAST, "{elapsed:?}");
    assert!(allocated < allocation_budget(bytes.len()), "{allocated} bytes for a file of {}", bytes.len());
}

/// A network that is only an enormous encoder is valid and small on disk: it loads quickly without allocating for
/// its width, and an empty batch evaluates.
#[test]
fn enormous_encoder_without_layers_loads_without_allocating() {
    let d = described(&json!({"kind": "bits", "num_inputs": HUGE}), json!([]));
    let bytes = file(&d, &[]);
    let (net, allocated, elapsed) = measured(|| Network::from_bytes(&bytes));
    let net = net.unwrap();
    assert!(elapsed < FAST, "{elapsed:?}");
    assert!(allocated < 1 << 20, "{allocated} bytes");
    assert_eq!(net.num_inputs(), HUGE as usize);
    let input = Input::Bits(Matrix::new(&[], 0, HUGE as usize, HUGE as usize, 1).unwrap());
    assert_eq!(net.scores(input, &EvalOptions::default()).unwrap(), Vec::<i32>::new());
    assert_eq!(Network::from_bytes(&net.to_bytes().unwrap()).unwrap(), net);
    // One past the engine's width limit is refused.
    let d = described(&json!({"kind": "bits", "num_inputs": HUGE + 1}), json!([]));
    fails_fast(&file(&d, &[]), &["encoder"]);
}
