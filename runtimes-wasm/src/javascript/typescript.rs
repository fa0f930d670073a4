//! TypeScript: the types removed on the host, then the program run as JavaScript.
//!
//! [`to_javascript`] uses swc's fast type stripper (`swc_ts_fast_strip`, the one behind Node's
//! `--experimental-strip-types`). Type annotations, interfaces, type aliases, generics, `as` and
//! `satisfies`, `declare`, overloads and type-only imports become whitespace, so every line and
//! column of the JavaScript is the user's own: error positions need no mapping. Syntax that
//! needs code generated for it (`enum`, a `namespace` with values, constructor parameter
//! properties such as `constructor(private name: string)`) cannot be stripped, so such a
//! program goes through swc's TypeScript transform instead, which generates that code and
//! reprints the program: its error positions then refer to the generated JavaScript.
//!
//! A program that does not parse becomes one that throws a `SyntaxError` naming the line and
//! column of each problem, so it fails as a JavaScript syntax error does (exit status 1, the
//! error on stderr, or a cell's error).

use std::sync::{Arc, Mutex};
use swc_common::errors::{DiagnosticBuilder, Emitter, HANDLER, Handler};
use swc_common::sync::Lrc;
use swc_common::{GLOBALS, Globals, SourceMap};
use swc_ts_fast_strip::{ErrorCode, Mode, Options, operate};

/// The most problems a syntax error lists.
const MAX_PROBLEMS: usize = 5;

/// `code` as JavaScript: stripped, else transformed, else a `throw` of the syntax error.
pub fn to_javascript(code: &str) -> String {
    match convert(code, Mode::StripOnly) {
        Ok(javascript) => javascript,
        Err(Failure { code: ErrorCode::UnsupportedSyntax, .. }) => match convert(code, Mode::Transform) {
            Ok(javascript) => javascript,
            Err(failure) => failure.as_throw(),
        },
        Err(failure) => failure.as_throw(),
    }
}

/// Why swc refused a program, with its diagnostics (`line:column: message`).
struct Failure {
    code: ErrorCode,
    problems: Vec<String>,
}

impl Failure {
    /// JavaScript that throws a `SyntaxError` describing the problems.
    fn as_throw(&self) -> String {
        let mut message = String::from("TypeScript: ");
        message.push_str(&self.problems.iter().take(MAX_PROBLEMS).cloned().collect::<Vec<_>>().join("; "));
        if self.problems.is_empty() {
            message.push_str("the program could not be compiled");
        }
        let literal = serde_json::to_string(&message).unwrap_or_else(|_| "\"TypeScript: invalid program\"".into());
        format!("throw new SyntaxError({literal});")
    }
}

fn convert(code: &str, mode: Mode) -> Result<String, Failure> {
    let source_map: Lrc<SourceMap> = Lrc::default();
    let problems = Arc::new(Mutex::new(Vec::new()));
    let collector = Collector { source_map: source_map.clone(), problems: problems.clone() };
    let handler = Handler::with_emitter(false, false, Box::new(collector));
    let options = Options { filename: Some("<cmdline>".into()), mode, ..Options::default() };
    let result = GLOBALS
        .set(&Globals::new(), || HANDLER.set(&handler, || operate(&source_map, &handler, code.to_owned(), options)));
    result.map(|output| output.code).map_err(|error| {
        let problems = std::mem::take(&mut *problems.lock().unwrap_or_else(|p| p.into_inner()));
        Failure { code: error.code, problems: if problems.is_empty() { vec![error.message] } else { problems } }
    })
}

/// Collects swc's diagnostics as `line:column: message` (1-based line, 1-based column).
struct Collector {
    source_map: Lrc<SourceMap>,
    problems: Arc<Mutex<Vec<String>>>,
}

impl Emitter for Collector {
    fn emit(&mut self, db: &mut DiagnosticBuilder<'_>) {
        let message = db.message();
        let text = match db.span.primary_span() {
            Some(span) => {
                let at = self.source_map.lookup_char_pos(span.lo);
                format!("{}:{}: {message}", at.line, at.col_display + 1)
            }
            None => message,
        };
        self.problems.lock().unwrap_or_else(|p| p.into_inner()).push(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_become_whitespace_and_positions_stay() {
        let ts = "interface P { x: number }\nconst p: P = { x: 1 } as P;\nfunction id<T>(v: T): T { return v }\nconsole.log(id<number>(p.x));";
        let js = to_javascript(ts);
        assert_eq!(js.len(), ts.len(), "{js}");
        assert_eq!(js.lines().count(), ts.lines().count());
        let column = |text: &str, line: usize, needle: &str| text.lines().nth(line).and_then(|l| l.find(needle));
        assert_eq!(column(&js, 1, "{ x: 1 }"), column(ts, 1, "{ x: 1 }"), "{js}");
        assert_eq!(column(&js, 3, "(p.x)"), column(ts, 3, "(p.x)"), "{js}");
        assert!(!js.contains("interface") && !js.contains("number"), "{js}");
    }

    #[test]
    fn enums_and_parameter_properties_are_transformed() {
        let js = to_javascript(
            "enum Color { Red, Green = 5 }\nclass A { constructor(private n: number) {} }\nconsole.log(Color.Green, new A(2));",
        );
        assert!(js.contains("Color[Color[\"Green\"] = 5]") || js.contains("Color[\"Green\"] = 5"), "{js}");
        assert!(js.contains("this.n = n"), "{js}");
    }

    #[test]
    fn a_program_that_does_not_parse_throws_a_syntax_error_naming_its_line() {
        let js = to_javascript("const a: number = 1;\nlet b = (;\n");
        assert!(js.starts_with("throw new SyntaxError(\"TypeScript: 2:"), "{js}");
    }
}
