//! `deploy/spinkube/coco-dropbox.yaml`: the SpinApp validates against SpinKube's CRD (vendored
//! in tests/data, unknown fields refused as `kubectl apply --validate=strict` does), provides every
//! variable `spin-kv.toml` requires from the Secret it ships, and backs the `default` key-value
//! store with Redis; the CronJob drives the facade's own routes on the SpinApp's Service.

use std::collections::BTreeSet;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn yaml_documents(path: &str) -> Vec<serde_json::Value> {
    use serde::Deserialize as _;
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde_json::Value::deserialize(d).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect()
}

fn kind<'a>(docs: &'a [serde_json::Value], kind: &str) -> &'a serde_json::Value {
    docs.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("no {kind}"))
}

/// Close every object schema that lists its properties (Kubernetes would prune or, strictly,
/// refuse unknown fields; a JSON Schema validator would let them pass).
fn strict(schema: &mut serde_json::Value) {
    if let Some(map) = schema.as_object_mut() {
        let open = map.get("x-kubernetes-preserve-unknown-fields") == Some(&serde_json::Value::Bool(true));
        if map.contains_key("properties") && !map.contains_key("additionalProperties") && !open {
            map.insert("additionalProperties".into(), false.into());
        }
        for v in map.values_mut() {
            strict(v);
        }
    } else if let Some(items) = schema.as_array_mut() {
        items.iter_mut().for_each(strict);
    }
}

#[test]
fn the_spinapp_validates_against_the_crd_and_provides_what_spin_kv_toml_requires() {
    let crd = &yaml_documents("tests/data/spinapp-crd.yaml")[0];
    let version = crd["spec"]["versions"].as_array().unwrap().iter().find(|v| v["name"] == "v1alpha1").unwrap();
    let mut schema = version["schema"]["openAPIV3Schema"].clone();
    strict(&mut schema);
    let validator = jsonschema::validator_for(&schema).expect("the CRD's schema compiles");

    let docs = yaml_documents("deploy/spinkube/coco-dropbox.yaml");
    let app = kind(&docs, "SpinApp");
    assert_eq!(app["apiVersion"], format!("{}/v1alpha1", crd["spec"]["group"].as_str().unwrap()));
    let errors: Vec<String> = validator.iter_errors(app).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "the SpinApp violates the CRD: {errors:#?}");
    let mut typo = app.clone();
    typo["spec"]["replica"] = 2.into();
    assert!(!validator.is_valid(&typo), "an unknown field is refused");
    let spec = &app["spec"];
    assert_eq!(spec["executor"], "containerd-shim-spin");
    assert!(spec["replicas"].as_u64().unwrap() >= 2, "replicas share the store");

    // Every variable spin-kv.toml requires comes from the shipped Secret; none is unknown.
    let manifest: toml::Value = toml::from_str(&std::fs::read_to_string(root().join("spin-kv.toml")).unwrap()).unwrap();
    let declared = manifest["variables"].as_table().unwrap();
    let required: BTreeSet<&str> = declared
        .iter()
        .filter(|(_, v)| v.get("required").and_then(|r| r.as_bool()) == Some(true))
        .map(|(k, _)| k.as_str())
        .collect();
    let secret = kind(&docs, "Secret");
    let secret_name = secret["metadata"]["name"].as_str().unwrap();
    let secret_keys: BTreeSet<&str> = secret["stringData"].as_object().unwrap().keys().map(String::as_str).collect();
    let mut provided = BTreeSet::new();
    for v in spec["variables"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        assert!(declared.contains_key(name), "{name} is not a variable of spin-kv.toml");
        let r = &v["valueFrom"]["secretKeyRef"];
        assert_eq!(r["name"], secret_name, "{name} comes from the shipped Secret");
        assert!(secret_keys.contains(r["key"].as_str().unwrap()), "{name}: no key {} in the Secret", r["key"]);
        provided.insert(name);
    }
    assert!(required.is_subset(&provided), "missing: {:?}", required.difference(&provided).collect::<Vec<_>>());

    // The store spin-kv.toml names is Redis, shared by the replicas.
    let stores: Vec<&str> = manifest["component"]["dropbox"]["key_value_stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for store in stores {
        let kv = spec["runtimeConfig"]["keyValueStores"].as_array().unwrap().iter().find(|k| k["name"] == store);
        let kv = kv.unwrap_or_else(|| panic!("no runtime config for store {store}"));
        assert_eq!(kv["type"], "redis");
        let url = kv["options"].as_array().unwrap().iter().find(|o| o["name"] == "url").expect("a url option");
        assert!(secret_keys.contains(url["valueFrom"]["secretKeyRef"]["key"].as_str().unwrap()));
    }
}

#[test]
fn the_cronjob_drives_the_facades_routes_on_the_spinapps_service() {
    let docs = yaml_documents("deploy/spinkube/coco-dropbox.yaml");
    let app_name = kind(&docs, "SpinApp")["metadata"]["name"].as_str().unwrap().to_string();
    let cron = kind(&docs, "CronJob");
    assert_eq!(cron["apiVersion"], "batch/v1");
    assert_eq!(cron["spec"]["schedule"].as_str().unwrap().split_whitespace().count(), 5);
    assert_eq!(cron["spec"]["concurrencyPolicy"], "Forbid", "one run at a time");
    let container = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    let env = container["env"].as_array().unwrap();
    let value = |n: &str| env.iter().find(|e| e["name"] == n).unwrap_or_else(|| panic!("no env {n}"));
    assert_eq!(value("FACADE")["value"], format!("http://{app_name}"));
    assert_eq!(value("COCO_API_TOKEN")["valueFrom"]["secretKeyRef"]["key"], "api-token");
    let script = container["args"][0].as_str().unwrap();
    for route in ["$FACADE/datasources", "$FACADE/sync/$id", "X-API-TOKEN: $COCO_API_TOKEN", "has_more"] {
        assert!(script.contains(route), "the script does not use {route}");
    }
    // The routes it calls are the key-value build's.
    assert!(coco_dropbox::facade::KV_ROUTES.contains(&"/datasources"));
    assert!(coco_dropbox::facade::KV_ROUTES.contains(&"/sync/{id}"));
}
