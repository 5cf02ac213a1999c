//! A network compiled into the program: no file, no Python, nothing to install.
//!
//! `examples/data/parity.bitlogic` is a two-layer gate network that classifies 4-bit inputs as having an even
//! (class 0) or odd (class 1) number of ones. `include_bytes!` places it in the binary; `Network::from_bytes`
//! validates it once at start-up.
//!
//! `cargo run --release --example embedded`

use bitlogic::{EvalOptions, Input, Matrix, Network};

static NETWORK: &[u8] = include_bytes!("data/parity.bitlogic");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let net = Network::from_bytes(NETWORK)?;
    println!(
        "loaded {:?}: {} input bits, {} classes, {} gates",
        net.info().get("name").map_or("network", String::as_str),
        net.num_inputs(),
        net.num_classes(),
        net.stats().gates
    );

    // All sixteen 4-bit inputs, one row each, bits as 0/1 bytes.
    let samples: Vec<u8> = (0..16u8).flat_map(|v| (0..4).map(move |bit| (v >> bit) & 1)).collect();
    let input = Input::Bits(Matrix::c_order(&samples, 16, 4)?);
    let labels = net.predict(input, &EvalOptions::default())?;
    let scores = net.scores(input, &EvalOptions::default())?;

    for (v, &label) in labels.iter().enumerate() {
        let expected = (v as u32).count_ones() as i64 % 2;
        println!(
            "{v:04b} -> class {label} ({}), scores {:?}",
            if label == 0 { "even" } else { "odd" },
            &scores[2 * v..2 * v + 2]
        );
        if label != expected {
            return Err(format!("input {v:04b}: predicted {label}, expected {expected}").into());
        }
    }
    println!("all 16 inputs classified correctly");
    Ok(())
}
