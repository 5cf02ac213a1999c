//! The format frozen per version: every golden file of `tests/golden/` (see its README) loads, evaluates its stored
//! inputs to its stored scores on every instruction-set path, optimized or not, agrees with the plain evaluator of
//! `common`, and survives a save by today's writer as an equal network. pytest reads the same files
//! (`tests/test_golden.py`).

mod common;

use std::path::{Path, PathBuf};

use bitlogic::{Encoder, EvalOptions, Input, Isa, Network};
use common::{Batch, RefNet, Values};
use safetensors::tensor::{Dtype, SafeTensors};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden")
}

/// Every `v*/NAME.bitlogic`, sorted.
fn golden_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for version in std::fs::read_dir(golden_dir()).expect("tests/golden exists") {
        let version = version.unwrap().path();
        let is_version = version.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('v'));
        if !(version.is_dir() && is_version) {
            continue;
        }
        for entry in std::fs::read_dir(&version).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "bitlogic") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The stored inputs (as a batch) and scores of a golden file.
fn expected(path: &Path, net: &Network) -> (Batch, Vec<i32>) {
    let name = path.file_stem().unwrap().to_str().unwrap();
    let bytes = std::fs::read(path.with_file_name(format!("{name}.expected.safetensors"))).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let inputs = file.tensor("inputs").unwrap();
    let scores = file.tensor("scores").unwrap();
    assert_eq!(scores.dtype(), Dtype::I32);
    let (rows, cols) = (inputs.shape()[0], inputs.shape()[1]);
    assert_eq!(scores.shape(), [rows, net.num_classes()]);
    let scores = scores.data().chunks_exact(4).map(|b| i32::from_le_bytes(b.try_into().unwrap())).collect();
    let data = inputs.data();
    let values = match (inputs.dtype(), net.encoder()) {
        (Dtype::U8, Encoder::Bits { .. }) => Values::Bits(data.to_vec()),
        (Dtype::U8, Encoder::Thresholds(_)) => Values::U8(data.to_vec()),
        (Dtype::F32, Encoder::Thresholds(_)) => {
            Values::F32(data.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect())
        }
        (dtype, _) => panic!("{}: inputs of dtype {dtype:?}", path.display()),
    };
    (Batch { rows, cols, values }, scores)
}

/// The format version a golden file's folder names, `v1.0` -> `1.0`.
fn folder_version(path: &Path) -> String {
    let folder = path.parent().unwrap().file_name().unwrap().to_str().unwrap();
    folder.strip_prefix('v').unwrap().to_string()
}

fn metadata_version(bytes: &[u8]) -> String {
    let (_, header) = SafeTensors::read_metadata(bytes).unwrap();
    header.metadata().as_ref().unwrap()["format_version"].clone()
}

#[test]
fn golden_files_exist_for_versions_1_0_and_1_1() {
    let files = golden_files();
    assert!(files.len() >= 18, "{} golden files", files.len());
    assert!(files.iter().any(|p| folder_version(p) == "1.0"));
    assert!(files.iter().any(|p| folder_version(p) == "1.1"));
}

/// A 1.1 file records the SHA-256 of its data (computed here independently); a 1.0 file has no such key.
#[test]
fn golden_files_of_1_1_record_the_digest_of_their_data() {
    for path in golden_files() {
        let bytes = std::fs::read(&path).unwrap();
        let (header, data) = common::split_container(&bytes);
        let recorded = &header["__metadata__"]["data_sha256"];
        match folder_version(&path).as_str() {
            "1.0" => assert!(recorded.is_null(), "{}", path.display()),
            _ => assert_eq!(recorded.as_str(), Some(common::sha256_hex(&data).as_str()), "{}", path.display()),
        }
    }
}

#[test]
fn golden_files_evaluate_to_their_scores() {
    let mut failures = Vec::new();
    for path in golden_files() {
        let shown = path.strip_prefix(golden_dir()).unwrap().display().to_string();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(metadata_version(&bytes), folder_version(&path), "{shown}: the version of its folder");
        let net = Network::load(&path).unwrap_or_else(|e| panic!("{shown}: {e}"));
        let (batch, want) = expected(&path, &net);
        let input: Input<'_> = batch.input();
        for isa in Isa::supported() {
            for optimize in [true, false] {
                let options = EvalOptions { threads: Some(1), isa: Some(isa), optimize };
                let got = net.scores(input, &options).unwrap();
                if got != want {
                    failures.push(format!("{shown}: {isa:?}, optimize {optimize}"));
                }
            }
        }
        let got = net.scores(input, &EvalOptions::default()).unwrap();
        assert_eq!(got, want, "{shown}: default options");
        let labels = net.predict(input, &EvalOptions::default()).unwrap();
        assert_eq!(labels, common::predictions(&want, net.num_classes()), "{shown}: predict");
        // The plain evaluator, written from FORMAT.md alone, on the network as read.
        assert_eq!(RefNet::from_network(&net).scores(&batch).unwrap(), want, "{shown}: the plain evaluator");
    }
    assert!(failures.is_empty(), "scores differ:\n{}", failures.join("\n"));
}

#[test]
fn golden_files_survive_todays_writer() {
    for path in golden_files() {
        let shown = path.strip_prefix(golden_dir()).unwrap().display().to_string();
        let net = Network::load(&path).unwrap();
        let again = Network::from_bytes(&net.to_bytes().unwrap()).unwrap_or_else(|e| panic!("{shown}: {e}"));
        assert_eq!(again, net, "{shown}");
        assert_eq!(again.info(), net.info(), "{shown}");
        assert_eq!(again.tau().to_bits(), net.tau().to_bits(), "{shown}");
        let dir = std::env::temp_dir().join(format!("bitlogic-golden-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let saved = dir.join("net.bitlogic");
        net.save(&saved).unwrap();
        assert_eq!(Network::load(&saved).unwrap(), net, "{shown}: saved and loaded");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn golden_inputs_are_not_trivial() {
    for path in golden_files() {
        let net = Network::load(&path).unwrap();
        let (batch, want) = expected(&path, &net);
        assert!(batch.rows > 128, "{}: {} rows, more than two words of samples", path.display(), batch.rows);
        assert!(want.iter().min() != want.iter().max(), "{}: every score equal", path.display());
        if let Values::Bits(bits) = &batch.values {
            assert!(bits.iter().all(|&b| b <= 1), "{}: bits other than 0 and 1", path.display());
        }
    }
}
