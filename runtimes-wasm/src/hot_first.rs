//! Hot functions first: renumbers a module's defined functions so that the ones a profile names
//! come first, in the profile's order, and every other function after them in its own order.
//!
//! Why: wasmtime lays a module's compiled functions out in the order of their indices, so the
//! machine code of CPython's 89,000 functions fills 192 MB in the order its linker left them, and
//! the few hundred functions a turn runs (the tokenizer, the parser, the compiler, the
//! evaluation loop, the allocator) sit on as many separate 4 KiB pages. After an idle gap the
//! host has emptied the CPU's caches and TLBs, and every page a turn touches costs a page walk
//! (two-dimensional on a virtual machine, itself missing the caches) before its lines come from
//! memory. Put next to each other, the same functions fill a few hundred KiB.
//!
//! The renumbering changes what is where, not what runs: every reference to a function index
//! (calls, `ref.func`, element segments, exports, the start function, the name section) goes
//! through the same permutation, and imported functions keep their indices. A function pointer
//! in linear memory is a slot of the function table, not a function index, and the element
//! segments fill the same slots with the same functions, so a snapshot's memory and a
//! checkpoint's (memory and globals) mean the same under either order.
//!
//! The profile is a list of function names (the `name` section's), one per line; a name the
//! module lacks is skipped, so a profile taken of one build of an interpreter still helps the
//! next, and an empty profile leaves the order as it was.

use crate::error::RuntimeError;
use std::collections::HashMap;
use wasm_encoder::reencode::{Error as ReencodeError, Reencode, utils};
use wasm_encoder::{CodeSection, FunctionSection, Module, NameMap, NameSection};
use wasmparser::{KnownCustom, Name, Parser, Payload, TypeRef};

/// A list of hot function names, in the order they should be laid out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HotFunctions {
    /// One name per line; blank lines and lines starting with `#` are ignored.
    list: &'static str,
}

impl HotFunctions {
    /// The profile of SoulBox's Python interpreter (both snapshots share its functions): the
    /// functions sampled while turns of typical code ran (see `python/hot-functions.txt`).
    pub(crate) const PYTHON: HotFunctions = HotFunctions { list: include_str!("python/hot-functions.txt") };
    /// No profile: the module's own order.
    pub(crate) const NONE: HotFunctions = HotFunctions { list: "" };

    fn names(&self) -> impl Iterator<Item = &'static str> {
        self.list.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#'))
    }

    /// Identifies the layout this profile gives (part of a compiled module's cache key);
    /// `None` for an empty profile, which leaves a module as it is.
    pub(crate) fn digest(&self) -> Option<String> {
        let names: Vec<&str> = self.names().collect();
        (!names.is_empty()).then(|| blake3::hash(names.join("\n").as_bytes()).to_hex()[..16].to_owned())
    }
}

/// `wasm` with its defined functions renumbered so that `hot`'s come first (see the module
/// docs); the same bytes when `hot` names none of its functions.
pub(crate) fn hot_first(wasm: &[u8], hot: HotFunctions) -> Result<Vec<u8>, RuntimeError> {
    let bad = |e: wasmparser::BinaryReaderError| RuntimeError::Wasm(format!("laying out hot functions: {e}"));
    let shape = Shape::of(wasm).map_err(bad)?;
    let Some(order) = shape.order(hot) else {
        return Ok(wasm.to_vec());
    };
    let mut renumber = Renumber::new(shape.imported, &order);
    let mut module = Module::new();
    renumber
        .parse_core_module(&mut module, Parser::new(0), wasm)
        .map_err(|e| RuntimeError::Wasm(format!("laying out hot functions: {e}")))?;
    Ok(module.finish())
}

/// What the renumbering needs to know before rewriting: how many functions are imported and
/// the names of the defined ones.
struct Shape {
    imported: u32,
    defined: u32,
    /// Function indices by name (C's static functions of different files may share one).
    by_name: HashMap<String, Vec<u32>>,
}

impl Shape {
    fn of(wasm: &[u8]) -> Result<Shape, wasmparser::BinaryReaderError> {
        let mut shape = Shape { imported: 0, defined: 0, by_name: HashMap::new() };
        for payload in Parser::new(0).parse_all(wasm) {
            match payload? {
                Payload::ImportSection(reader) => {
                    for import in reader.into_imports() {
                        if matches!(import?.ty, TypeRef::Func(_) | TypeRef::FuncExact(_)) {
                            shape.imported += 1;
                        }
                    }
                }
                Payload::FunctionSection(reader) => shape.defined = reader.count(),
                Payload::CustomSection(custom) => {
                    if let KnownCustom::Name(names) = custom.as_known() {
                        for name in names {
                            if let Name::Function(map) = name? {
                                for naming in map {
                                    let naming = naming?;
                                    shape.by_name.entry(naming.name.to_owned()).or_default().push(naming.index);
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(shape)
    }

    /// The new order of the defined functions (each entry a defined function's position in
    /// the old order), or `None` when `hot` names none of them.
    fn order(&self, hot: HotFunctions) -> Option<Vec<u32>> {
        let mut placed = vec![false; self.defined as usize];
        let mut order = Vec::with_capacity(self.defined as usize);
        let named = hot.names().filter_map(|name| self.by_name.get(name)).flatten();
        for defined in named.filter_map(|index| index.checked_sub(self.imported)).filter(|d| *d < self.defined) {
            if !std::mem::replace(&mut placed[defined as usize], true) {
                order.push(defined);
            }
        }
        if order.is_empty() {
            return None;
        }
        order.extend((0..self.defined).filter(|d| !placed[*d as usize]));
        Some(order)
    }
}

/// A reencoder that moves every defined function to its new place.
struct Renumber {
    imported: u32,
    /// The new position of each defined function, by its old position.
    new_position: Vec<u32>,
    /// The old position of each defined function, by its new position.
    order: Vec<u32>,
    /// Each defined function's type, by old position (the function section comes first).
    types: Vec<u32>,
}

impl Renumber {
    fn new(imported: u32, order: &[u32]) -> Renumber {
        let mut new_position = vec![0; order.len()];
        for (new, old) in order.iter().enumerate() {
            new_position[*old as usize] = new as u32;
        }
        Renumber { imported, new_position, order: order.to_vec(), types: Vec::new() }
    }
}

impl Reencode for Renumber {
    type Error = std::convert::Infallible;

    fn function_index(&mut self, func: u32) -> Result<u32, ReencodeError<Self::Error>> {
        Ok(match func.checked_sub(self.imported) {
            Some(defined) => self.imported + self.new_position.get(defined as usize).copied().unwrap_or(defined),
            None => func,
        })
    }

    fn parse_function_section(
        &mut self,
        functions: &mut FunctionSection,
        section: wasmparser::FunctionSectionReader<'_>,
    ) -> Result<(), ReencodeError<Self::Error>> {
        for ty in section {
            let ty = self.type_index(ty?)?;
            self.types.push(ty);
        }
        for old in &self.order {
            functions.function(self.types[*old as usize]);
        }
        Ok(())
    }

    fn parse_code_section(
        &mut self,
        code: &mut CodeSection,
        section: wasmparser::CodeSectionReader<'_>,
    ) -> Result<(), ReencodeError<Self::Error>> {
        let mut bodies = Vec::with_capacity(self.order.len());
        for body in section {
            let body = body?;
            let mut function = self.new_function_with_parsed_locals(&body)?;
            let mut reader = body.get_operators_reader()?;
            while !reader.eof() {
                function.instruction(&self.parse_instruction(&mut reader)?);
            }
            bodies.push(function.into_raw_body());
        }
        for old in &self.order {
            code.raw(&bodies[*old as usize]);
        }
        Ok(())
    }

    fn parse_custom_name_subsection(
        &mut self,
        names: &mut NameSection,
        section: Name<'_>,
    ) -> Result<(), ReencodeError<Self::Error>> {
        // A name map must list indices in increasing order: sort after renumbering.
        match section {
            Name::Function(map) => {
                let mut renamed = Vec::new();
                for naming in map {
                    let naming = naming?;
                    renamed.push((self.function_index(naming.index)?, naming.name));
                }
                renamed.sort_unstable_by_key(|(index, _)| *index);
                let mut map = NameMap::new();
                for (index, name) in renamed {
                    map.append(index, name);
                }
                names.functions(&map);
                Ok(())
            }
            // Local and label names are keyed by function too; nothing in SoulBox reads them,
            // and their keys would need the same sorting: they are dropped.
            Name::Local(_) | Name::Label(_) => Ok(()),
            other => utils::parse_custom_name_subsection(self, names, other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Imports one function, defines four; `$last` calls `$first` directly and `$second` through
    /// the table (slot 1), `$start` writes memory before anything runs.
    const WAT: &str = r#"(module
        (import "host" "seven" (func $seven (result i32)))
        (type $get (func (result i32)))
        (memory (export "memory") 1)
        (table 2 funcref)
        (elem (i32.const 0) func $first $second)
        (func $first (result i32) (i32.add (call $seven) (i32.const 1)))
        (func $second (result i32) (i32.const 20))
        (func $start (i32.store (i32.const 0) (i32.const 300)))
        (func $last (export "last") (result i32)
            (i32.add (i32.add (call $first) (call_indirect (type $get) (i32.const 1)))
                     (i32.load (i32.const 0))))
        (start $start))"#;

    fn profile(list: &'static str) -> HotFunctions {
        HotFunctions { list }
    }

    fn function_names(wasm: &[u8]) -> Vec<(u32, String)> {
        let mut names = Vec::new();
        for payload in Parser::new(0).parse_all(wasm) {
            if let Payload::CustomSection(custom) = payload.unwrap()
                && let KnownCustom::Name(reader) = custom.as_known()
            {
                for name in reader {
                    if let Name::Function(map) = name.unwrap() {
                        names.extend(map.into_iter().map(|n| n.unwrap()).map(|n| (n.index, n.name.to_owned())));
                    }
                }
            }
        }
        names
    }

    fn run_last(wasm: &[u8]) -> i32 {
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, wasm).unwrap();
        let mut store = wasmtime::Store::new(&engine, ());
        let seven = wasmtime::Func::wrap(&mut store, || 7i32);
        let instance = wasmtime::Instance::new(&mut store, &module, &[seven.into()]).unwrap();
        let last = instance.get_typed_func::<(), i32>(&mut store, "last").unwrap();
        last.call(&mut store, ()).unwrap()
    }

    #[test]
    fn puts_the_named_functions_first_and_keeps_what_the_module_does() {
        let original = wat::parse_str(WAT).unwrap();
        let laid_out = hot_first(&original, profile("# hottest first\nlast\n\nmissing\nsecond\n")).unwrap();
        wasmparser::Validator::new().validate_all(&laid_out).unwrap();
        let names: Vec<String> = function_names(&laid_out).into_iter().map(|(_, name)| name).collect();
        assert_eq!(names, ["seven", "last", "second", "first", "start"], "imports keep their place");
        assert_eq!(run_last(&original), 8 + 20 + 300);
        assert_eq!(run_last(&laid_out), 8 + 20 + 300, "calls, the table, the start function and exports follow");
    }

    #[test]
    fn a_profile_naming_none_of_the_functions_changes_nothing() {
        let original = wat::parse_str(WAT).unwrap();
        assert_eq!(hot_first(&original, profile("missing\nseven\n")).unwrap(), original, "an import is not moved");
        assert_eq!(hot_first(&original, HotFunctions::NONE).unwrap(), original);
        assert_eq!(HotFunctions::NONE.digest(), None);
        assert_ne!(profile("last\nsecond").digest(), profile("second\nlast").digest(), "the order is the layout");
    }

    #[test]
    fn the_python_profile_names_functions() {
        assert!(HotFunctions::PYTHON.names().count() > 100);
        assert!(HotFunctions::PYTHON.names().any(|name| name == "_PyEval_EvalFrameDefault"));
    }
}
