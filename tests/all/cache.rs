//! The compiled-module cache: a corrupt file is detected, discarded and rebuilt.

use soulbox_runtimes_wasm::SoulboxHome;
use soulbox_runtimes_wasm::engine_config::{EngineRole, EngineSettings};
use soulbox_runtimes_wasm::javascript::JavaScript;
use soulbox_runtimes_wasm::manifest;
use soulbox_runtimes_wasm::module_cache::{ModuleCache, ModuleKey};

/// The installed JavaScript runtime, an engine, and an empty cache in a temporary directory.
fn js_and_empty_cache() -> (JavaScript, wasmtime::Engine, tempfile::TempDir, ModuleCache) {
    let home = SoulboxHome::from_env();
    let js = JavaScript::new(&home.runtime_dir(&manifest::runtime("javascript").dir_name()));
    let engine = EngineSettings::default().engine(EngineRole::Run).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = ModuleCache::new(dir.path().to_path_buf(), &engine, false);
    (js, engine, dir, cache)
}

#[test]
fn a_corrupt_cached_module_is_recompiled() {
    let (js, engine, dir, cache) = js_and_empty_cache();
    let key = ModuleKey { name: "javascript".into(), content: js.content_key() };

    let first = cache.load_or_compile(&engine, &key, || js.wasm()).unwrap();
    let cwasm = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .unwrap();
    let good = std::fs::read(&cwasm).unwrap();

    // Flip bytes in the middle of the compiled code: the checksum no longer matches.
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle..middle + 64].iter_mut().for_each(|b| *b ^= 0xff);
    std::fs::write(&cwasm, &bad).unwrap();
    let mut compiled_again = false;
    let second = cache
        .load_or_compile(&engine, &key, || {
            compiled_again = true;
            js.wasm()
        })
        .unwrap();
    assert!(compiled_again, "a corrupt file must not be trusted");
    assert_eq!(std::fs::read(&cwasm).unwrap(), good, "the rebuilt file replaces the corrupt one");

    // A truncated file is also rebuilt; a valid one is loaded without compiling.
    std::fs::write(&cwasm, &good[..100]).unwrap();
    let mut compiled_third = false;
    cache
        .load_or_compile(&engine, &key, || {
            compiled_third = true;
            js.wasm()
        })
        .unwrap();
    assert!(compiled_third);
    let third = cache.load_or_compile(&engine, &key, || panic!("valid cache must not recompile")).unwrap();
    for module in [first, second, third] {
        assert!(module.get_export("qjs_init_argv").is_some());
    }
}

#[test]
fn an_intact_copy_is_rehashed_and_kept_and_stale_modules_are_removed() {
    let (js, engine, dir, cache) = js_and_empty_cache();
    let old = ModuleKey { name: "javascript".into(), content: format!("{}:old-recipe", js.content_key()) };
    cache.load_or_compile(&engine, &old, || js.wasm()).unwrap();
    let cwasm = |dir: &std::path::Path| -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
            .collect();
        files.sort();
        files
    };
    let first = cwasm(dir.path());

    // Rewriting the file with the same bytes changes its metadata: it is hashed again, found
    // intact, and loaded without compiling.
    let bytes = std::fs::read(&first[0]).unwrap();
    std::fs::remove_file(&first[0]).unwrap();
    std::fs::write(&first[0], &bytes).unwrap();
    cache.load_or_compile(&engine, &old, || panic!("an intact file must not be recompiled")).unwrap();

    // A new recipe for the same module and engine replaces the old file.
    let new = ModuleKey { name: "javascript".into(), content: js.content_key() };
    cache.load_or_compile(&engine, &new, || js.wasm()).unwrap();
    let now = cwasm(dir.path());
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now, first);
    let sidecars = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|e| e == "b3"))
        .count();
    assert_eq!(sidecars, 1);
}
