//! The short fuzzing pass `./dev test` runs (`./dev fuzz` is the long one): every target,
//! natively and through the compiled component, with few cases. Run as this package's test so
//! the binary is built with the workspace's features (no second wasmtime build).

#[test]
fn every_target_passes_a_short_fuzzing_pass() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coco-fuzz"))
        .args(["--cases", "20000", "--wasm-cases", "300"])
        .output()
        .expect("run coco-fuzz");
    let table = String::from_utf8_lossy(&out.stdout);
    println!("{table}");
    assert!(out.status.success(), "{table}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(table.contains("| facade request | native | 20000 |"), "{table}");
    assert!(table.contains("| cursor | wasm | 300 |"), "{table}");
    assert!(table.contains("| content file | native | 20000 |"), "{table}");
}
