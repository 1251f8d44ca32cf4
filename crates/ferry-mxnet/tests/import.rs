//! Import behaviour that does not need the shared corpus.

use ferry_mxnet::import::import_symbol;
use ferry_mxnet::read_symbol;
use std::collections::HashMap;

#[test]
fn unknown_ops_are_listed_in_one_error() {
    let json = br#"{"nodes": [
        {"op": "null", "name": "data", "inputs": []},
        {"op": "FancyOp", "name": "a", "inputs": [[0, 0, 0]]},
        {"op": "OtherOp", "name": "b", "inputs": [[1, 0, 0]]},
        {"op": "FancyOp", "name": "c", "inputs": [[2, 0, 0]]}
    ], "arg_nodes": [0], "heads": [[3, 0, 0]]}"#;
    let sym = read_symbol(json).unwrap();
    let e = import_symbol(&sym, &HashMap::new(), &HashMap::new()).unwrap_err().to_string();
    assert!(e.contains("FancyOp (2)") && e.contains("OtherOp (1)"), "{e}");
}

#[test]
fn outputs_keep_mxnet_names_and_order() {
    let json = br#"{"nodes": [
        {"op": "null", "name": "data", "inputs": []},
        {"op": "SliceChannel", "name": "s", "attrs": {"num_outputs": "2"}, "inputs": [[0, 0, 0]]},
        {"op": "relu", "name": "r", "inputs": [[1, 1, 0]]}
    ], "arg_nodes": [0], "heads": [[2, 0, 0], [1, 0, 0]]}"#;
    let sym = read_symbol(json).unwrap();
    let shapes = HashMap::from([("data".to_string(), vec![2, 4])]);
    let m = import_symbol(&sym, &HashMap::new(), &shapes).unwrap();
    let names: Vec<&str> = m.graph.outputs.iter().map(|o| m.graph.values[*o].name.as_str()).collect();
    assert_eq!(names, ["r_output", "s_output0"]);
    let input = &m.graph.values[m.graph.inputs[0]];
    assert_eq!(input.ty.to_string(), "f32[2,4]");
}

/// Found by fuzzing (fuzz/, target mxnet_symbol): a head naming an output its node does not have
/// panicked on a map lookup.
#[test]
fn a_head_naming_a_missing_output_is_an_error() {
    let json = br#"{"nodes": [{"op": "null", "name": "data", "inputs": []},
        {"op": "_copy", "name": "op0", "inputs": [[0, 0, 0]]}],
        "arg_nodes": [0], "node_row_ptr": [0, 1, 2], "heads": [[0, 5, 0]],
        "attrs": {"mxnet_version": ["int", 10901]}}"#;
    let sym = read_symbol(json).unwrap();
    let e = import_symbol(&sym, &HashMap::new(), &HashMap::new()).unwrap_err().to_string();
    assert!(e.contains("graph output 5 of node 0 does not exist"), "{e}");
}

/// Found by fuzzing (fuzz/, target mxnet_symbol): an edge reading output 10^18 of a node sized
/// an outputs list by it (capacity overflow).
#[test]
fn an_edge_reading_a_huge_output_index_is_an_error() {
    let json = br#"{"nodes": [{"op": "null", "name": "data", "inputs": []},
        {"op": "_copy", "name": "op0", "inputs": [[0, 0, 0]]},
        {"op": "_copy", "name": "op1", "inputs": [[1, 1111111111111111110, 0]]}],
        "arg_nodes": [0], "node_row_ptr": [0, 1, 2, 3], "heads": [[2, 0, 0]],
        "attrs": {"mxnet_version": ["int", 10901]}}"#;
    let sym = read_symbol(json).unwrap();
    let e = import_symbol(&sym, &HashMap::new(), &HashMap::new()).unwrap_err().to_string();
    assert!(e.contains("ferry reads at most 65536 outputs of one node"), "{e}");
}

/// Found by fuzzing (fuzz/, target mxnet_symbol): SliceChannel's num_outputs sized a list
/// (capacity overflow).
#[test]
fn a_split_into_absurdly_many_outputs_is_an_error() {
    let json = br#"{"nodes": [{"op": "null", "name": "data", "inputs": []},
        {"op": "SliceChannel", "name": "op0", "attrs": {"num_outputs": "1000000000000000000"},
        "inputs": [[0, 0, 0]]}],
        "arg_nodes": [0], "node_row_ptr": [0, 1, 2], "heads": [[1, 0, 0]],
        "attrs": {"mxnet_version": ["int", 10901]}}"#;
    let sym = read_symbol(json).unwrap();
    let e = import_symbol(&sym, &HashMap::new(), &HashMap::new()).unwrap_err().to_string();
    assert!(e.contains("splits into at most 65536"), "{e}");
}

/// Found by fuzzing (fuzz/, target mxnet_symbol): an absurd RNN state_size overflowed the
/// parameter-vector offsets when the parameter's shape was not known.
#[test]
fn an_rnn_with_an_absurd_state_size_is_an_error() {
    let rnn = |state_size: &str, layers: &str| {
        let json = format!(
            r#"{{"nodes": [{{"op": "null", "name": "data", "attrs": {{"__shape__": "(5, 1, 4)"}}, "inputs": []}},
            {{"op": "null", "name": "params", "inputs": []}},
            {{"op": "null", "name": "state", "inputs": []}},
            {{"op": "null", "name": "cell", "inputs": []}},
            {{"op": "RNN", "name": "rnn0", "attrs": {{"mode": "lstm", "num_layers": "{layers}",
              "state_size": "{state_size}", "state_outputs": "True"}},
              "inputs": [[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]]}}],
            "arg_nodes": [0, 1, 2, 3], "node_row_ptr": [0, 1, 2, 3, 4, 7], "heads": [[4, 0, 0]],
            "attrs": {{"mxnet_version": ["int", 10901]}}}}"#
        );
        let sym = read_symbol(json.as_bytes()).unwrap();
        import_symbol(&sym, &HashMap::new(), &HashMap::new()).map(|_| ()).map_err(|e| e.to_string())
    };
    rnn("8", "2").expect("a sane LSTM imports");
    let e = rnn("4611686018427387904", "8").unwrap_err();
    assert!(e.contains("parameter count overflows"), "{e}");
    let e = rnn("8", "1000000000000").unwrap_err();
    assert!(e.contains("more than ferry accepts"), "{e}");
}

/// Found by fuzzing (fuzz/, target mxnet_symbol): `_arange` with a start of 13.8M and no stop
/// built a 13.8M-element constant, slow enough to trip the fuzzer's timeout.
#[test]
fn an_arange_beyond_the_constant_cap_is_an_error() {
    let arange = |start: &str| {
        let json = format!(
            r#"{{"nodes": [{{"op": "_arange", "name": "op0", "attrs": {{"start": "{start}"}}, "inputs": []}}],
            "arg_nodes": [], "node_row_ptr": [0, 1], "heads": [[0, 0, 0]],
            "attrs": {{"mxnet_version": ["int", 10901]}}}}"#
        );
        let sym = read_symbol(json.as_bytes()).unwrap();
        import_symbol(&sym, &HashMap::new(), &HashMap::new()).map(|_| ()).map_err(|e| e.to_string())
    };
    arange("1000").expect("a small range imports");
    let e = arange("13796705").unwrap_err();
    assert!(e.contains("too large to store as a constant"), "{e}");
}
