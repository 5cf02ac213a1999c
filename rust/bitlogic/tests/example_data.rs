//! The network file the `embedded` example compiles in is exactly the network its documentation describes.

use bitlogic::{Encoder, GateLayer, Layer, Network};

#[test]
fn parity_file_matches_its_construction() {
    let built = Network::new(
        Encoder::bits(4).unwrap(),
        vec![
            Layer::Gates(GateLayer::new(vec![[0, 1], [2, 3]], vec![6, 6]).unwrap()),
            Layer::Gates(GateLayer::new(vec![[0, 1], [0, 1]], vec![9, 6]).unwrap()),
        ],
        2,
        1.0,
    )
    .unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/parity.bitlogic");
    let loaded = Network::load(path).unwrap();
    assert_eq!(loaded.layers(), built.layers());
    assert_eq!(loaded.encoder(), built.encoder());
    assert_eq!(loaded.num_classes(), 2);
    assert_eq!(loaded.info().get("name").map(String::as_str), Some("4-bit parity"));
}
