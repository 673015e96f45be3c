//! The serverless Spin manifests (`spin-kv.toml`, `spin-cron.toml`) and the `spin` key-value
//! build. The manifests validate against Spin's schema and match the facade; the build's
//! imports and exports are checked, type by type, against Spin's own WIT (tests/data/spin-wit,
//! copied from Spin's repositories), not against our vendored copies.

use std::collections::BTreeMap;
use std::path::Path;

use super::spin_manifest::spin_route_matches;
use wit_parser::{Function, Resolve, Type, TypeDefKind, WorldItem, WorldKey};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn manifest(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(root().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::to_value(toml::from_str::<toml::Value>(&text).expect("TOML")).unwrap()
}

fn template_var(s: &str) -> Vec<&str> {
    s.split("{{").skip(1).filter_map(|p| p.split_once("}}")).map(|(v, _)| v.trim()).collect()
}

#[test]
fn serverless_manifests_validate_and_match_the_key_value_build() {
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("tests/data/spin-manifest-v2.schema.json")).unwrap())
            .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    for name in ["spin-kv.toml", "spin-cron.toml"] {
        let m = manifest(name);
        let errors: Vec<String> = validator.iter_errors(&m).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{name} violates the schema: {errors:#?}");
        let routes: Vec<&str> =
            m["trigger"]["http"].as_array().unwrap().iter().map(|t| t["route"].as_str().unwrap()).collect();
        for pattern in coco_dropbox::facade::ROUTES.iter().chain(&coco_dropbox::facade::KV_ROUTES) {
            let example = pattern.replace("{id}", "0335b4e59c687f2666f7d7e5d5d17686");
            assert!(routes.iter().any(|r| spin_route_matches(r, &example)), "{name}: nothing serves {pattern}");
        }
        let c = &m["component"]["dropbox"];
        assert_eq!(c["key_value_stores"], serde_json::json!(["default"]), "{name}");
        // Built by the one list's `spin-kv` line, where ./dev puts it.
        assert_eq!(c["build"]["command"].as_str().unwrap(), "./dev components spin-kv", "{name}");
        assert_eq!(c["source"].as_str().unwrap(), "target/components/spin-kv.wasm", "{name}");
        assert_eq!(coco_host::paths::component("spin-kv").features, "spin,keyvalue");
        // Outbound: Dropbox's API and the configured Coco Server, nothing else.
        let hosts: Vec<&str> =
            c["allowed_outbound_hosts"].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
        assert_eq!(hosts, ["https://api.dropboxapi.com", "https://{{ coco_server_host }}"], "{name}");
        // Every component variable is one the facade reads, built from declared variables;
        // secrets are declared secret; the Coco URL is built from the same host as the allow-list.
        let declared = m["variables"].as_object().unwrap();
        let vars = c["variables"].as_object().unwrap();
        for (var, value) in vars {
            assert!(coco_dropbox::facade::SPIN_VARIABLES.iter().any(|(v, _)| v == var), "{name}: {var} is not read");
            for app_var in template_var(value.as_str().unwrap()) {
                assert!(declared.contains_key(app_var), "{name}: {var} uses undeclared {app_var}");
            }
        }
        for secret in ["client_secret", "state_secret", "seal_secret", "api_token", "coco_server_token"] {
            let app_var = template_var(vars[secret].as_str().unwrap())[0];
            assert_eq!(declared[app_var]["secret"], true, "{name}: {app_var} must be secret");
        }
        assert_eq!(vars["coco_server_url"], "https://{{ coco_server_host }}");
    }
    // The cron variant: one trigger on the same component, six fields (seconds first).
    let cron = manifest("spin-cron.toml");
    let trigger = &cron["trigger"]["cron"][0];
    assert_eq!(trigger["component"], "dropbox");
    assert_eq!(trigger["cron_expression"].as_str().unwrap().split_whitespace().count(), 6);
    assert!(manifest("spin-kv.toml")["trigger"].get("cron").is_none(), "spin-kv.toml needs no plugin");
}

/// Spin's published WIT, parsed (each file with the package header it has in Spin's tree).
fn spin_resolve() -> Resolve {
    let dir = root().join("tests/data/spin-wit");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let mut resolve = Resolve::default();
    let sources = [
        (
            "spin-kv.wit",
            format!("package fermyon:spin@2.0.0;\n{}\n{}", read("spin-key-value.wit"), read("spin-variables.wit")),
        ),
        (
            "wasi-kv.wit",
            format!(
                "package wasi:keyvalue@0.2.0-draft2;\n{}\n{}",
                read("keyvalue-store.wit"),
                read("keyvalue-atomic.wit")
            ),
        ),
        ("cron.wit", read("spin-cron.wit")),
    ];
    for (name, text) in sources {
        resolve.push_str(name, &text).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
    resolve
}

fn interface_functions(resolve: &Resolve, id: wit_parser::InterfaceId) -> BTreeMap<String, Function> {
    resolve.interfaces[id].functions.iter().map(|(n, f)| (n.clone(), f.clone())).collect()
}

/// Structural equality of two types from two resolves.
fn same_type(a: &Resolve, ta: &Type, b: &Resolve, tb: &Type) -> bool {
    match (ta, tb) {
        (Type::Id(ia), Type::Id(ib)) => same_def(a, *ia, b, *ib),
        (x, y) => std::mem::discriminant(x) == std::mem::discriminant(y) && !matches!(x, Type::Id(_)),
    }
}

fn same_opt(a: &Resolve, ta: &Option<Type>, b: &Resolve, tb: &Option<Type>) -> bool {
    match (ta, tb) {
        (Some(x), Some(y)) => same_type(a, x, b, y),
        (None, None) => true,
        _ => false,
    }
}

fn same_def(a: &Resolve, ia: wit_parser::TypeId, b: &Resolve, ib: wit_parser::TypeId) -> bool {
    let (da, db) = (&a.types[ia], &b.types[ib]);
    match (&da.kind, &db.kind) {
        (TypeDefKind::Type(x), _) => same_type(a, x, b, &Type::Id(ib)),
        (_, TypeDefKind::Type(y)) => same_type(a, &Type::Id(ia), b, y),
        (TypeDefKind::Record(x), TypeDefKind::Record(y)) => {
            x.fields.len() == y.fields.len()
                && x.fields.iter().zip(&y.fields).all(|(f, g)| f.name == g.name && same_type(a, &f.ty, b, &g.ty))
        }
        (TypeDefKind::Variant(x), TypeDefKind::Variant(y)) => {
            x.cases.len() == y.cases.len()
                && x.cases.iter().zip(&y.cases).all(|(f, g)| f.name == g.name && same_opt(a, &f.ty, b, &g.ty))
        }
        (TypeDefKind::Enum(x), TypeDefKind::Enum(y)) => {
            x.cases.iter().map(|c| &c.name).eq(y.cases.iter().map(|c| &c.name))
        }
        (TypeDefKind::Option(x), TypeDefKind::Option(y)) | (TypeDefKind::List(x), TypeDefKind::List(y)) => {
            same_type(a, x, b, y)
        }
        (TypeDefKind::Result(x), TypeDefKind::Result(y)) => {
            same_opt(a, &x.ok, b, &y.ok) && same_opt(a, &x.err, b, &y.err)
        }
        (TypeDefKind::Tuple(x), TypeDefKind::Tuple(y)) => {
            x.types.len() == y.types.len() && x.types.iter().zip(&y.types).all(|(p, q)| same_type(a, p, b, q))
        }
        (TypeDefKind::Handle(x), TypeDefKind::Handle(y)) => {
            let (wit_parser::Handle::Own(p) | wit_parser::Handle::Borrow(p)) = x;
            let (wit_parser::Handle::Own(q) | wit_parser::Handle::Borrow(q)) = y;
            std::mem::discriminant(x) == std::mem::discriminant(y) && same_def(a, *p, b, *q)
        }
        (TypeDefKind::Resource, TypeDefKind::Resource) => da.name == db.name,
        _ => false,
    }
}

fn same_function(a: &Resolve, f: &Function, b: &Resolve, g: &Function) -> bool {
    f.params.len() == g.params.len()
        && f.params.iter().zip(&g.params).all(|(p, q)| same_type(a, &p.ty, b, &q.ty))
        && same_opt(a, &f.result, b, &g.result)
}

fn interface_name(resolve: &Resolve, key: &WorldKey) -> Option<String> {
    match key {
        WorldKey::Interface(id) => resolve.id_of(*id),
        WorldKey::Name(n) => Some(n.clone()),
    }
}

/// The imports Spin 3.x's platform world offers (by interface name), from its world files.
fn spin_platform_imports() -> Vec<String> {
    let dir = root().join("tests/data/spin-wit");
    let mut names = Vec::new();
    for (file, pkg) in [("spin-2.0.0-world.wit", "fermyon:spin"), ("spin-3.0.0-world.wit", "fermyon:spin")] {
        for line in std::fs::read_to_string(dir.join(file)).unwrap().lines() {
            let line = line.trim().trim_end_matches(';');
            if let Some(item) = line.strip_prefix("import ").or_else(|| line.strip_prefix("include ")) {
                names.push(if item.contains(':') { item.to_string() } else { format!("{pkg}/{item}@2.0.0") });
            }
        }
    }
    names
}

#[test]
fn the_spin_key_value_build_uses_spins_wit_exactly() {
    let path = coco_e2e::built("spin-kv");
    let decoded = wit_component::decode(&std::fs::read(&path).unwrap()).expect("a component");
    let (ours, world) = (decoded.resolve(), decoded.package());
    let world = ours.packages[world].worlds.values().next().copied().expect("the component's world");
    let spin = spin_resolve();
    let platform = spin_platform_imports();
    let wasi_kv_from_spin_3 = platform.iter().any(|i| i == "wasi:keyvalue/imports@0.2.0-draft2");
    assert!(wasi_kv_from_spin_3, "Spin 3's platform includes wasi:keyvalue draft2: {platform:?}");

    let mut checked = Vec::new();
    for (key, item) in &ours.worlds[world].imports {
        let WorldItem::Interface { id, .. } = item else { continue };
        let name = interface_name(ours, key).unwrap();
        // Interfaces imported for their types only (records, variants) need nothing from the
        // host: wasmtime, and so Spin, satisfies them without a definition.
        let iface = &ours.interfaces[*id];
        let has_resources = iface.types.values().any(|t| matches!(ours.types[*t].kind, TypeDefKind::Resource));
        if iface.functions.is_empty() && !has_resources {
            continue;
        }
        // wasi:cli/http/io/clocks/random come with every Spin (wasi:cli/imports + outgoing-handler).
        if name.starts_with("wasi:cli/")
            || name.starts_with("wasi:io/")
            || name.starts_with("wasi:clocks/")
            || name.starts_with("wasi:random/")
            || name.starts_with("wasi:http/")
        {
            assert!(name.ends_with("@0.2.0") || name.contains("@0.2."), "{name}");
            continue;
        }
        let spin_id = spin.interfaces.iter().find(|(sid, _)| spin.id_of(*sid).as_deref() == Some(name.as_str()));
        let Some((spin_id, _)) = spin_id else { panic!("{name} is imported but Spin does not provide it") };
        let offered = name.starts_with("wasi:keyvalue/") && wasi_kv_from_spin_3
            || platform.iter().any(|p| p == &name)
            || name.starts_with("fermyon:spin-cron/");
        assert!(offered, "{name} is not in Spin 3's platform world");
        let theirs = interface_functions(&spin, spin_id);
        for (fname, f) in interface_functions(ours, *id) {
            let g = theirs.get(&fname).unwrap_or_else(|| panic!("{name}#{fname}: no such function in Spin's WIT"));
            assert!(same_function(ours, &f, &spin, g), "{name}#{fname}: signature differs from Spin's");
            checked.push(format!("{name}#{fname}"));
        }
    }
    for must in [
        "fermyon:spin/key-value@2.0.0#[method]store.set",
        "fermyon:spin/key-value@2.0.0#[method]store.get-keys",
        "fermyon:spin/variables@2.0.0#get",
        "wasi:keyvalue/atomics@0.2.0-draft2#increment",
        "wasi:keyvalue/store@0.2.0-draft2#open",
    ] {
        assert!(checked.iter().any(|c| c == must), "{must} not imported: {checked:?}");
    }
    // Exports: the HTTP handler and the cron trigger's entry point, with Spin's signature.
    let exports: Vec<String> = ours.worlds[world].exports.keys().filter_map(|k| interface_name(ours, k)).collect();
    assert!(exports.iter().any(|e| e.starts_with("wasi:http/incoming-handler@0.2")), "{exports:?}");
    let cron_world = spin
        .packages
        .iter()
        .flat_map(|(_, p)| p.worlds.values())
        .find(|w| spin.worlds[**w].name == "spin-cron")
        .unwrap();
    let (_, WorldItem::Function(theirs)) = spin.worlds[*cron_world]
        .exports
        .iter()
        .find(|(k, _)| interface_name(&spin, k).as_deref() == Some("handle-cron-event"))
        .unwrap()
    else {
        panic!("Spin's cron world exports a function")
    };
    let (_, WorldItem::Function(f)) = ours.worlds[world]
        .exports
        .iter()
        .find(|(k, _)| interface_name(ours, k).as_deref() == Some("handle-cron-event"))
        .expect("the build exports handle-cron-event")
    else {
        panic!("handle-cron-event is a function")
    };
    assert!(same_function(ours, f, &spin, theirs), "handle-cron-event differs from spin-trigger-cron's");
}
