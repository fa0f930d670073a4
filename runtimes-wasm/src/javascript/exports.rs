//! Exposes QuickJS internals the reactor does not export.
//!
//! The QuickJS-NG reactor exports only `qjs_init_argv` and friends, which evaluate one script
//! and return without running promise jobs or flushing `std.out`. Its `name` section still names
//! every function, so SoulBox adds exports for the few internals it drives (looked up by name,
//! never by hard-coded index). The rest of the module is copied byte for byte.

use crate::checkpoint::exports::append_exports;
use crate::error::RuntimeError;
use std::collections::HashMap;
use wasm_encoder::ExportKind;
use wasmparser::{KnownCustom, Name, Parser, Payload};

/// Internal functions exported, as `(internal name, export name)`.
pub const EXTRA_EXPORTS: [(&str, &str); 12] = [
    ("JS_GetRuntime", "soulbox_get_runtime"),
    ("JS_Eval", "soulbox_js_eval"),
    ("JS_ExecutePendingJob", "soulbox_execute_pending_job"),
    ("eval_buf", "soulbox_eval_buf"),
    ("js_std_dump_error", "soulbox_dump_error"),
    // Reading a string value out (the event loop takes `fetch`'s queued requests as JSON).
    ("JS_ToCStringLen2", "soulbox_to_cstring"),
    ("JS_FreeCString", "soulbox_free_cstring"),
    ("JS_FreeValue", "soulbox_free_value"),
    // Unhandled rejections (`rejections.rs`): the thread state, printing a reason, and the
    // tracker that takes an entry off the list.
    ("js_std_cmd", "soulbox_std_cmd"),
    ("js_std_dump_error1", "soulbox_dump_error1"),
    ("js_std_promise_rejection_tracker", "soulbox_track_rejection"),
    // wasi-libc's reading of the environment: a guest of the snapshot reads its own again.
    ("__wasilibc_initialize_environ", "soulbox_initialize_environ"),
];

/// Returns `wasm` with [`EXTRA_EXPORTS`] added to its export section.
pub fn add_internal_exports(wasm: &[u8]) -> Result<Vec<u8>, RuntimeError> {
    let bad = |e: wasmparser::BinaryReaderError| RuntimeError::Wasm(format!("qjs module: {e}"));
    let names = function_names(wasm).map_err(bad)?;
    let mut extra = Vec::with_capacity(EXTRA_EXPORTS.len());
    for (internal, exported) in EXTRA_EXPORTS {
        let index = names
            .get(internal)
            .ok_or_else(|| RuntimeError::Wasm(format!("qjs module has no function named `{internal}`")))?;
        extra.push((exported.to_owned(), ExportKind::Func, *index));
    }
    append_exports(wasm, &extra)
}

fn function_names(wasm: &[u8]) -> Result<HashMap<String, u32>, wasmparser::BinaryReaderError> {
    let mut names = HashMap::new();
    for payload in Parser::new(0).parse_all(wasm) {
        if let Payload::CustomSection(section) = payload?
            && let KnownCustom::Name(reader) = section.as_known()
        {
            for name in reader {
                if let Name::Function(map) = name? {
                    for naming in map {
                        let naming = naming?;
                        names.insert(naming.name.to_owned(), naming.index);
                    }
                }
            }
        }
    }
    Ok(names)
}
