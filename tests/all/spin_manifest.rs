//! `spin.toml` is valid against Spin's manifest schema and matches what the build produces:
//! its routes cover the facade's, its source is where the facade build writes, its build
//! command builds the facade, and outbound hosts are only Dropbox's.

use std::path::Path;

fn manifest() -> (toml::Value, serde_json::Value) {
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let text = std::fs::read_to_string(root.join("spin.toml")).expect("spin.toml at the repository root");
    let value: toml::Value = toml::from_str(&text).expect("spin.toml is TOML");
    let json = serde_json::to_value(&value).unwrap();
    (value, json)
}

#[test]
fn spin_toml_validates_against_the_manifest_schema() {
    // Spin's manifest schema, vendored so the test does not depend on where the checkout sits;
    // when the team's reference copy is beside the checkout, the two must agree.
    let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    let text = std::fs::read_to_string(root.join("tests/data/spin-manifest-v2.schema.json")).unwrap();
    if let Ok(reference) = std::fs::read_to_string(root.join("../shared/reference/spin-manifest-v2.schema.json")) {
        assert_eq!(text, reference, "tests/data's schema drifted from shared/reference");
    }
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let (_, json) = manifest();
    let errors: Vec<String> = validator.iter_errors(&json).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "spin.toml violates the schema: {errors:#?}");
    // And the validator does reject a broken manifest (so the check above means something).
    let mut broken = json.clone();
    broken["trigger"]["http"][0]["route"] = serde_json::json!(42);
    broken["unknown_key"] = serde_json::json!(true);
    assert!(!validator.is_valid(&broken));
}

/// Spin route match: exact, or a `/...` wildcard prefix.
pub(crate) fn spin_route_matches(route: &str, path: &str) -> bool {
    match route.strip_suffix("/...") {
        Some(prefix) => path.starts_with(&format!("{prefix}/")),
        None => route == path,
    }
}

#[test]
fn routes_source_and_build_match_the_facade() {
    let (_, m) = manifest();
    let routes: Vec<&str> =
        m["trigger"]["http"].as_array().unwrap().iter().map(|t| t["route"].as_str().unwrap()).collect();
    for pattern in coco_dropbox::facade::ROUTES {
        let example = pattern.replace("{id}", "dropbox");
        assert!(routes.iter().any(|r| spin_route_matches(r, &example)), "no Spin route serves {pattern}: {routes:?}");
    }
    for t in m["trigger"]["http"].as_array().unwrap() {
        assert_eq!(t["component"], "dropbox");
    }
    let component = &m["component"]["dropbox"];
    // Built from the one list's `spin` line (the Spin variables' build), to where ./dev puts it.
    let spin = coco_host::paths::component("spin");
    assert_eq!(spin.features, "spin", "the Spin build reads Spin variables");
    assert_eq!(component["build"]["command"].as_str().unwrap(), "./dev components spin");
    assert_eq!(
        component["source"].as_str().unwrap(),
        "target/components/spin.wasm",
        "source is where the build command writes the component"
    );
    assert!(spin.built_path().ends_with(component["source"].as_str().unwrap()));
    let hosts: Vec<&str> =
        component["allowed_outbound_hosts"].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
    assert!(!hosts.is_empty());
    for h in hosts {
        assert!(h.starts_with("https://") && h.ends_with(".dropboxapi.com"), "{h} is not a Dropbox API host");
    }
}

#[test]
fn component_variables_are_the_ones_the_facade_reads_and_map_to_declared_secrets() {
    let (_, m) = manifest();
    let declared = m["variables"].as_object().expect("[variables]");
    let component_vars = m["component"]["dropbox"]["variables"].as_object().expect("[component.dropbox.variables]");
    for (name, value) in component_vars {
        assert!(
            coco_dropbox::facade::SPIN_VARIABLES.iter().any(|(v, _)| v == name),
            "{name} is not a variable the facade reads"
        );
        let template = value.as_str().unwrap();
        let app_var = template.trim_start_matches("{{").trim_end_matches("}}").trim();
        assert!(declared.contains_key(app_var), "{name} = {template}: no application variable {app_var}");
    }
    for required in ["client_id", "client_secret", "state_secret", "api_token", "callback_url", "callback_token"] {
        assert!(component_vars.contains_key(required), "{required} is not passed to the component");
    }
    for secret in ["client_secret", "state_secret", "api_token", "callback_token"] {
        let app_var = component_vars[secret].as_str().unwrap().trim_start_matches("{{").trim_end_matches("}}").trim();
        assert_eq!(declared[app_var]["secret"], true, "{app_var} must be a secret variable");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_spin_build_imports_spin_variables_and_exports_the_http_handler() {
    let path = coco_e2e::built("spin");
    let engine = wasmtime_engine();
    let component = wasmtime::component::Component::from_file(&engine, &path).expect("a valid component");
    let ty = component.component_type();
    let imports: Vec<String> = ty.imports(&engine).map(|(n, _)| n.to_string()).collect();
    let exports: Vec<String> = ty.exports(&engine).map(|(n, _)| n.to_string()).collect();
    assert!(imports.iter().any(|i| i == "fermyon:spin/variables@2.0.0"), "{imports:?}");
    assert!(exports.iter().any(|e| e.starts_with("wasi:http/incoming-handler@0.2")), "{exports:?}");
    assert!(!imports.iter().any(|i| i.starts_with("wasi:filesystem") || i.starts_with("wasi:sockets")), "{imports:?}");
}

fn wasmtime_engine() -> wasmtime::Engine {
    wasmtime::Engine::default()
}
