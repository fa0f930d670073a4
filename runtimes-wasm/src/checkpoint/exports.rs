//! Exposes a module's state to the host: every mutable global and the memory get an export.
//!
//! A context's checkpoint must capture every mutable global, including those the module keeps
//! private (CPython's and QuickJS's `__stack_pointer`, wasi-libc's heap bookkeeping). The
//! compiled module is this rewrite of the interpreter: the export section gains
//! `soulbox_global_<index>` for each mutable defined global (by absolute index, which never
//! depends on a build's addresses) and `soulbox_memory` for memory 0; every other section is
//! copied byte for byte, so code and function indices are untouched.

use crate::error::RuntimeError;
use wasm_encoder::{ExportKind, ExportSection, Module, RawSection};
use wasmparser::{Parser, Payload, TypeRef};

/// Prefix of a mutable global's export name; the suffix is its absolute index.
pub const GLOBAL_EXPORT_PREFIX: &str = "soulbox_global_";
/// Export name of memory 0.
pub const MEMORY_EXPORT: &str = "soulbox_memory";

/// Returns `wasm` with its mutable globals and its memory exported (see the module docs).
/// Refuses a module that imports a mutable global or a memory (its state would live outside
/// the instance) or that has no memory.
pub fn export_state(wasm: &[u8]) -> Result<Vec<u8>, RuntimeError> {
    let bad = |e: wasmparser::BinaryReaderError| RuntimeError::Wasm(format!("exporting state: {e}"));
    let refuse = |what: &str| RuntimeError::Wasm(format!("a context of this module cannot be checkpointed: {what}"));
    let (mut imported_globals, mut mutable, mut memories) = (0u32, Vec::new(), 0u32);
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(bad)? {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    match import.map_err(bad)?.ty {
                        TypeRef::Global(global) if global.mutable => return Err(refuse("it imports a mutable global")),
                        TypeRef::Global(_) => imported_globals += 1,
                        TypeRef::Memory(_) => return Err(refuse("it imports its memory")),
                        _ => {}
                    }
                }
            }
            Payload::GlobalSection(reader) => {
                for (defined, global) in reader.into_iter().enumerate() {
                    if global.map_err(bad)?.ty.mutable {
                        mutable.push(imported_globals + u32::try_from(defined).unwrap_or(u32::MAX));
                    }
                }
            }
            Payload::MemorySection(reader) => memories += reader.count(),
            _ => {}
        }
    }
    if memories == 0 {
        return Err(refuse("it has no memory"));
    }
    let mut extra: Vec<(String, ExportKind, u32)> =
        mutable.iter().map(|index| (format!("{GLOBAL_EXPORT_PREFIX}{index}"), ExportKind::Global, *index)).collect();
    extra.push((MEMORY_EXPORT.to_owned(), ExportKind::Memory, 0));
    append_exports(wasm, &extra)
}

/// Returns `wasm` with `extra` exports (name, kind, index) appended to its export section;
/// every other section is copied byte for byte. Refuses a module without an export section.
pub(crate) fn append_exports(wasm: &[u8], extra: &[(String, ExportKind, u32)]) -> Result<Vec<u8>, RuntimeError> {
    let bad = |e: wasmparser::BinaryReaderError| RuntimeError::Wasm(format!("adding exports: {e}"));
    let mut module = Module::new();
    let mut exported = false;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(bad)?;
        if let Payload::ExportSection(reader) = &payload {
            let mut exports = ExportSection::new();
            for export in reader.clone() {
                let export = export.map_err(bad)?;
                exports.export(export.name, export_kind(export.kind), export.index);
            }
            for (name, kind, index) in extra {
                exports.export(name, *kind, *index);
            }
            module.section(&exports);
            exported = true;
        } else if let Some((id, range)) = payload.as_section() {
            module.section(&RawSection { id, data: &wasm[range] });
        }
    }
    if !exported {
        return Err(RuntimeError::Wasm("the module has no export section to add exports to".into()));
    }
    Ok(module.finish())
}

/// How many instructions in `wasm` can change a table or drop a segment after instantiation
/// (`table.set`, `table.grow`, `table.fill`, `table.copy`, `table.init`, `elem.drop`,
/// `data.drop`). A checkpoint does not save tables, so a module whose count is not zero cannot
/// be checkpointed faithfully.
pub fn table_mutations(wasm: &[u8]) -> Result<usize, RuntimeError> {
    use wasmparser::Operator as O;
    let bad = |e: wasmparser::BinaryReaderError| RuntimeError::Wasm(format!("scanning code: {e}"));
    let mut count = 0;
    for payload in Parser::new(0).parse_all(wasm) {
        if let Payload::CodeSectionEntry(body) = payload.map_err(bad)? {
            let mut reader = body.get_operators_reader().map_err(bad)?;
            while !reader.eof() {
                let mutates = matches!(
                    reader.read().map_err(bad)?,
                    O::TableSet { .. }
                        | O::TableGrow { .. }
                        | O::TableFill { .. }
                        | O::TableCopy { .. }
                        | O::TableInit { .. }
                        | O::ElemDrop { .. }
                        | O::DataDrop { .. }
                );
                count += usize::from(mutates);
            }
        }
    }
    Ok(count)
}

/// The encoder's kind for a parsed export's kind.
pub(crate) fn export_kind(kind: wasmparser::ExternalKind) -> ExportKind {
    match kind {
        wasmparser::ExternalKind::Func | wasmparser::ExternalKind::FuncExact => ExportKind::Func,
        wasmparser::ExternalKind::Table => ExportKind::Table,
        wasmparser::ExternalKind::Memory => ExportKind::Memory,
        wasmparser::ExternalKind::Global => ExportKind::Global,
        wasmparser::ExternalKind::Tag => ExportKind::Tag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_each_mutable_global_by_absolute_index_and_the_memory() {
        let wat = r#"(module
            (import "env" "g" (global i32))
            (global (mut i32) (i32.const 1))
            (global i64 (i64.const 2))
            (global (mut f64) (f64.const 3))
            (memory 1)
            (export "memory" (memory 0)))"#;
        let wasm = wat::parse_str(wat).unwrap();
        let out = export_state(&wasm).unwrap();
        let mut names = Vec::new();
        for payload in Parser::new(0).parse_all(&out) {
            if let Payload::ExportSection(reader) = payload.unwrap() {
                for export in reader {
                    let export = export.unwrap();
                    names.push((export.name.to_owned(), export.index));
                }
            }
        }
        let expected = [("memory", 0), ("soulbox_global_1", 1), ("soulbox_global_3", 3), ("soulbox_memory", 0)];
        assert_eq!(names, expected.map(|(n, i)| (n.to_owned(), i)));
        wasmparser::validate(&out).unwrap();
    }

    #[test]
    fn refuses_state_that_lives_outside_the_instance() {
        let imports_memory =
            wat::parse_str(r#"(module (import "env" "m" (memory 1)) (export "x" (memory 0)))"#).unwrap();
        assert!(export_state(&imports_memory).unwrap_err().to_string().contains("imports its memory"));
        let mutable_import =
            wat::parse_str(r#"(module (import "env" "g" (global (mut i32))) (memory 1) (export "m" (memory 0)))"#)
                .unwrap();
        assert!(export_state(&mutable_import).unwrap_err().to_string().contains("mutable global"));
    }
}
