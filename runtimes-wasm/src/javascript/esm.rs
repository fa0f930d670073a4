//! ES module syntax in a global script: `import`, `export`, top-level `await`, `import.meta`.
//!
//! QuickJS runs a program as a global script (a module would need a module loader inside the
//! guest, and its `await` a loop that blocks the host's). Programs models write are often
//! modules, as Node 22 detects them: `import fs from "fs"`, `export function`, `await` at the
//! top level. [`to_script`] rewrites just those pieces on the host, in place, so every other
//! line and column stays the user's own:
//!
//! - `import x from "m"`, `import * as x from "m"` → `var x = require("m");`;
//!   `import { a, b as c } from "m"` → `var { a, b: c } = require("m");`; `import "m"` →
//!   `require("m");`. Only the built-in modules exist (`require` says so for anything else).
//! - `export` before a declaration is removed; `export default <expression>` (or an anonymous
//!   function or class) becomes `module.exports.default = ...`; `export { ... }` is removed
//!   and `export ... from "m"` becomes `require("m");` (nothing imports a script's exports).
//! - `import(...)` calls `__soulbox_import` (a promise of the module's namespace: its exports
//!   plus `default`); `import.meta` is `{ url: "file:///[eval]", filename, dirname }`.
//! - A top-level `await` (outside every function and class) marks the script async: QuickJS
//!   evaluates it with `JS_EVAL_FLAG_ASYNC`, so it runs until its first `await` and the event
//!   loop carries on with it; its failure is reported as an unhandled rejection.
//!
//! A replaced piece that spanned several lines is followed by as many newlines, so the lines
//! after it keep their numbers. Imports become `var`s, so a context cell that imports again
//! does not fail; they are not hoisted, and a module's strict mode is not imposed. Code that
//! does not parse as a module (sloppy-mode syntax, a syntax error) is left as it is: QuickJS
//! runs it as before and reports its own errors. A program that mentions none of `import`,
//! `export` or `await` is not parsed at all.

use swc_common::{BytePos, Span, Spanned};
use swc_ecma_ast::{
    ArrowExpr, Callee, Class, DefaultDecl, ForOfStmt, Function, ImportDecl, ImportSpecifier, MetaPropExpr,
    MetaPropKind, Module, ModuleDecl, ModuleItem,
};
use swc_ecma_parser::{EsSyntax, Parser, StringInput, Syntax};
use swc_ecma_visit::{Visit, VisitWith};

/// What `import.meta` becomes (the script's name is `<cmdline>`, its module `/[eval]` as Node's).
const IMPORT_META: &str = r#"({ url: "file:///[eval]", filename: "/[eval]", dirname: "/" })"#;
/// The guest function `import(...)` calls (`node/modules.js`).
const DYNAMIC_IMPORT: &str = "__soulbox_import";
/// Where swc's positions start (position 0 is its "no position").
const START: u32 = 1;

/// A program ready to be evaluated as a global script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The program, its module syntax rewritten.
    pub code: String,
    /// It awaits at the top level: evaluate it as an async script.
    pub top_level_await: bool,
}

/// `code` as a global script (see the module's documentation).
pub fn to_script(code: &str) -> Script {
    let unchanged = || Script { code: code.to_owned(), top_level_await: false };
    if !["import", "export", "await"].iter().any(|word| code.contains(word)) {
        return unchanged();
    }
    let Some(module) = parse_module(code) else {
        return unchanged();
    };
    let mut edits = Vec::new();
    for item in &module.body {
        if let ModuleItem::ModuleDecl(declaration) = item {
            edits.extend(rewrite(code, declaration));
        }
    }
    let mut finder = Finder::default();
    module.visit_with(&mut finder);
    edits.extend(finder.edits);
    if edits.is_empty() && !finder.top_level_await {
        return unchanged();
    }
    Script { code: apply(code, edits), top_level_await: finder.top_level_await }
}

fn parse_module(code: &str) -> Option<Module> {
    let end = START + u32::try_from(code.len()).ok()?;
    let syntax =
        Syntax::Es(EsSyntax { import_attributes: true, explicit_resource_management: true, ..Default::default() });
    let mut parser = Parser::new(syntax, StringInput::new(code, BytePos(START), BytePos(end)), None);
    let module = parser.parse_module().ok()?;
    parser.take_errors().is_empty().then_some(module)
}

/// A byte range of the source and what replaces it.
struct Edit {
    start: usize,
    end: usize,
    text: String,
}

impl Edit {
    fn new(span: Span, text: impl Into<String>) -> Self {
        Edit { start: offset(span.lo), end: offset(span.hi), text: text.into() }
    }
}

fn offset(position: BytePos) -> usize {
    position.0.saturating_sub(START) as usize
}

fn source(code: &str, span: Span) -> &str {
    code.get(offset(span.lo)..offset(span.hi)).unwrap_or_default()
}

fn rewrite(code: &str, declaration: &ModuleDecl) -> Option<Edit> {
    let require = |src: Span| format!("require({})", source(code, src));
    let head = |span: Span, rest: Span| Span::new(span.lo, rest.lo);
    match declaration {
        ModuleDecl::Import(import) => Some(Edit::new(import.span, import_statement(code, import)?)),
        ModuleDecl::ExportDecl(export) => Some(Edit::new(head(export.span, export.decl.span()), "")),
        ModuleDecl::ExportDefaultDecl(export) => {
            let named = match &export.decl {
                DefaultDecl::Class(class) => class.ident.is_some(),
                DefaultDecl::Fn(function) => function.ident.is_some(),
                DefaultDecl::TsInterfaceDecl(_) => true,
            };
            let text = if named { "" } else { "module.exports.default = " };
            Some(Edit::new(head(export.span, export.decl.span()), text))
        }
        ModuleDecl::ExportDefaultExpr(export) => {
            Some(Edit::new(head(export.span, export.expr.span()), "module.exports.default = "))
        }
        ModuleDecl::ExportNamed(export) if export.type_only => Some(Edit::new(export.span, "")),
        ModuleDecl::ExportNamed(export) => {
            let text = export.src.as_ref().map(|src| format!("{};", require(src.span))).unwrap_or_default();
            Some(Edit::new(export.span, text))
        }
        ModuleDecl::ExportAll(export) => Some(Edit::new(export.span, format!("{};", require(export.src.span)))),
        _ => None,
    }
}

/// The `require` an import declaration becomes; `None` for a type-only import (TypeScript's
/// stripper has removed those already).
fn import_statement(code: &str, import: &ImportDecl) -> Option<String> {
    let required = format!("require({})", source(code, import.src.span));
    if import.type_only {
        return None;
    }
    let mut whole = Vec::new();
    let mut named = Vec::new();
    for specifier in &import.specifiers {
        match specifier {
            ImportSpecifier::Default(default) => whole.push(source(code, default.local.span).to_owned()),
            ImportSpecifier::Namespace(namespace) => whole.push(source(code, namespace.local.span).to_owned()),
            ImportSpecifier::Named(one) if one.is_type_only => {}
            ImportSpecifier::Named(one) => {
                let local = source(code, one.local.span);
                named.push(match &one.imported {
                    Some(imported) => format!("{}: {local}", source(code, imported.span())),
                    None => local.to_owned(),
                });
            }
        }
    }
    let destructure = (!named.is_empty()).then(|| format!("{{ {} }}", named.join(", ")));
    Some(match (whole.first(), destructure) {
        (None, None) => format!("{required};"),
        (None, Some(names)) => format!("var {names} = {required};"),
        (Some(first), None) => format!("var {first} = {required};"),
        (Some(first), Some(names)) => format!("var {first} = {required}, {names} = {first};"),
    })
}

/// Finds `import(...)`, `import.meta` and top-level `await`.
#[derive(Default)]
struct Finder {
    /// How many functions and classes enclose the node being visited.
    depth: usize,
    top_level_await: bool,
    edits: Vec<Edit>,
}

impl Finder {
    fn nested<T: VisitWith<Self>>(&mut self, node: &T) {
        self.depth += 1;
        node.visit_children_with(self);
        self.depth -= 1;
    }
}

impl Visit for Finder {
    fn visit_function(&mut self, node: &Function) {
        self.nested(node);
    }

    fn visit_arrow_expr(&mut self, node: &ArrowExpr) {
        self.nested(node);
    }

    fn visit_class(&mut self, node: &Class) {
        self.nested(node);
    }

    fn visit_await_expr(&mut self, node: &swc_ecma_ast::AwaitExpr) {
        self.top_level_await |= self.depth == 0;
        node.visit_children_with(self);
    }

    fn visit_for_of_stmt(&mut self, node: &ForOfStmt) {
        self.top_level_await |= node.is_await && self.depth == 0;
        node.visit_children_with(self);
    }

    fn visit_callee(&mut self, node: &Callee) {
        if let Callee::Import(import) = node {
            self.edits.push(Edit::new(import.span, DYNAMIC_IMPORT));
        }
        node.visit_children_with(self);
    }

    fn visit_meta_prop_expr(&mut self, node: &MetaPropExpr) {
        if node.kind == MetaPropKind::ImportMeta {
            self.edits.push(Edit::new(node.span, IMPORT_META));
        }
    }
}

/// `code` with `edits` applied; each replaced range's newlines follow its replacement.
fn apply(code: &str, mut edits: Vec<Edit>) -> String {
    edits.sort_by_key(|edit| edit.start);
    let mut out = String::with_capacity(code.len() + 64);
    let mut at = 0;
    for edit in edits {
        if edit.start < at || edit.end > code.len() {
            continue; // overlapping (cannot happen for top-level items): keep the first
        }
        out.push_str(&code[at..edit.start]);
        out.push_str(&edit.text);
        let replaced = &code[edit.start..edit.end];
        let newlines = replaced.matches('\n').count();
        if newlines == 0 && edit.text.is_empty() {
            out.push_str(&" ".repeat(replaced.chars().count()));
        }
        out.push_str(&"\n".repeat(newlines));
        at = edit.end;
    }
    out.push_str(&code[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(code: &str) -> String {
        to_script(code).code
    }

    #[test]
    fn a_program_without_module_syntax_is_left_alone() {
        let code = "const x = 1;\nconsole.log(x)";
        assert_eq!(to_script(code), Script { code: code.into(), top_level_await: false });
        // Sloppy-mode code that is no module is run as it is.
        let sloppy = "with (Math) { console.log(PI) } // import";
        assert_eq!(script(sloppy), sloppy);
    }

    #[test]
    fn imports_become_requires_on_the_same_lines() {
        assert_eq!(script("import fs from 'fs';\nfs.x()"), "var fs = require('fs');\nfs.x()");
        assert_eq!(script("import * as path from \"node:path\""), "var path = require(\"node:path\");");
        assert_eq!(
            script("import { readFileSync, promises as p } from 'fs'; go()"),
            "var { readFileSync, promises: p } = require('fs'); go()"
        );
        assert_eq!(script("import os, { EOL } from 'os'"), "var os = require('os'), { EOL } = os;");
        assert_eq!(script("import 'fs';"), "require('fs');");
        let multi = script("import {\n  a,\n  b,\n} from 'util';\nfail()");
        assert_eq!(multi, "var { a, b } = require('util');\n\n\n\nfail()");
    }

    #[test]
    fn exports_lose_their_keyword_and_keep_their_columns() {
        assert_eq!(script("export const x = 1;"), "       const x = 1;");
        assert_eq!(script("export function f() {}"), "       function f() {}");
        assert_eq!(script("export default function g() {}"), "               function g() {}");
        assert_eq!(script("export default 42;"), "module.exports.default = 42;");
        assert_eq!(script("export default class {}"), "module.exports.default = class {}");
        assert_eq!(script("const a = 1;\nexport { a };"), "const a = 1;\n             ");
        assert_eq!(script("export * from 'fs';"), "require('fs');");
    }

    #[test]
    fn top_level_await_makes_an_async_script_and_nested_await_does_not() {
        assert!(to_script("const r = await Promise.resolve(1);").top_level_await);
        assert!(to_script("for await (const x of xs) {}").top_level_await);
        assert!(!to_script("async function f() { await 1 }\nf()").top_level_await);
        assert!(!to_script("const f = async () => { await 1 };").top_level_await);
        assert!(!to_script("class A { async m() { await 1 } }").top_level_await);
        // Untouched apart from the flag.
        assert_eq!(script("await 1;"), "await 1;");
    }

    #[test]
    fn dynamic_import_and_import_meta_are_provided() {
        assert_eq!(script("const m = await import('fs');"), "const m = await __soulbox_import('fs');");
        assert_eq!(
            script("async function f() { return import('os') }"),
            "async function f() { return __soulbox_import('os') }"
        );
        assert!(script("console.log(import.meta.url)").starts_with("console.log(({ url: \"file:///[eval]\""));
    }

    #[test]
    fn a_syntax_error_is_left_for_quickjs_to_report() {
        let code = "import { from 'fs'";
        assert_eq!(script(code), code);
    }
}
