//! Compiled modules carry no function names: the `name` custom section is dropped before
//! wasmtime compiles a module.
//!
//! wasmtime keeps a module's function names in the compiled artifact's metadata, which every
//! process deserializes when it loads the module: for the Python interpreter (about 90,000
//! functions) that is a vector of 90,000 entries decoded one by one. Measured with `perf` over
//! 30 runs of `soulbox run -e 'print(1+1)'`: decoding the names was about 8% of a run (about
//! 1.2 ms of 15). Names only label wasm frames in trap backtraces, which SoulBox never shows
//! (see `engine_config`: it keeps no address maps for the same reason), and in profilers,
//! which then show `wasm[0]::function[N]`. Every other section is copied byte for byte, so
//! code, function indices and exports are untouched.

use crate::error::RuntimeError;
use wasm_encoder::{Module, RawSection};
use wasmparser::{Parser, Payload};

/// The custom section wasm tools put function, local and module names in.
const NAME_SECTION: &str = "name";

/// `wasm` without its `name` custom section (the same bytes when it has none).
pub(crate) fn without_names(wasm: &[u8]) -> Result<Vec<u8>, RuntimeError> {
    let bad = |e: wasmparser::BinaryReaderError| RuntimeError::Wasm(format!("dropping function names: {e}"));
    let mut module = Module::new();
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(bad)?;
        if let Payload::CustomSection(custom) = &payload
            && custom.name() == NAME_SECTION
        {
            continue;
        }
        if let Some((id, range)) = payload.as_section() {
            module.section(&RawSection { id, data: &wasm[range] });
        }
    }
    Ok(module.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_names(wasm: &[u8]) -> bool {
        Parser::new(0).parse_all(wasm).any(|p| matches!(p, Ok(Payload::CustomSection(c)) if c.name() == NAME_SECTION))
    }

    #[test]
    fn drops_the_name_section_and_keeps_the_module_working() {
        let wat = r#"(module $named
            (func $add (export "add") (param $a i32) (param $b i32) (result i32)
                (i32.add (local.get $a) (local.get $b)))
            (memory (export "memory") 1))"#;
        let named = wat::parse_str(wat).unwrap();
        assert!(has_names(&named), "wat writes names for `$` identifiers");
        let nameless = without_names(&named).unwrap();
        assert!(!has_names(&nameless));
        assert!(nameless.len() < named.len());
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, &nameless).unwrap();
        let mut store = wasmtime::Store::new(&engine, ());
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let add = instance.get_typed_func::<(i32, i32), i32>(&mut store, "add").unwrap();
        assert_eq!(add.call(&mut store, (2, 3)).unwrap(), 5);
        assert!(instance.get_memory(&mut store, "memory").is_some());
    }

    #[test]
    fn a_module_without_names_is_unchanged() {
        let bare = wat::parse_str("(module (memory 1))").unwrap();
        assert!(!has_names(&bare));
        assert_eq!(without_names(&bare).unwrap(), bare);
    }
}
