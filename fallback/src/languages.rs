//! How each language runs in a container: the file its code goes in, and the command that
//! compiles (if needed) and runs it. Arguments follow as `"$@"`; compiled programs go to
//! `/tmp`, so the workspace holds only what the program itself writes.

use soulbox_engine::Language;

/// A language's recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recipe {
    /// The file the code is written to, in the workspace.
    pub file: &'static str,
    /// The shell command that runs it (`$@`: the request's arguments).
    pub command: &'static str,
}

/// The recipe for `language`; `None` for a language this backend does not know.
pub fn recipe(language: Language) -> Option<Recipe> {
    let (file, command) = match language {
        Language::Python => ("main.py", r#"exec python3 main.py "$@""#),
        Language::JavaScript => ("main.js", r#"exec node main.js "$@""#),
        Language::Bash => ("main.sh", r#"exec bash main.sh "$@""#),
        Language::C => ("main.c", r#"gcc -O2 -o /tmp/main main.c -lm && exec /tmp/main "$@""#),
        Language::Cpp => ("main.cpp", r#"g++ -O2 -o /tmp/main main.cpp && exec /tmp/main "$@""#),
        Language::Go => ("main.go", r#"exec go run main.go "$@""#),
        Language::Java => ("Main.java", r#"exec java Main.java "$@""#),
        Language::Ruby => ("main.rb", r#"exec ruby main.rb "$@""#),
        Language::Php => ("main.php", r#"exec php main.php "$@""#),
        _ => return None,
    };
    Some(Recipe { file, command })
}

/// `command` with `args` bound to `"$@"` (each quoted for the shell).
pub fn with_args(command: &str, args: &[String]) -> String {
    if args.is_empty() {
        return command.to_owned();
    }
    let quoted: Vec<String> = args.iter().map(|a| format!("'{}'", a.replace('\'', r#"'\''"#))).collect();
    format!("set -- {}; {command}", quoted.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_has_a_recipe_and_arguments_are_quoted() {
        for language in Language::ALL.into_iter().filter(|language| language.runs_in_containers()) {
            let recipe = recipe(language).expect("a recipe");
            assert!(recipe.command.contains(recipe.file), "{language}");
        }
        assert_eq!(recipe(Language::TypeScript), None, "TypeScript runs in WebAssembly only");
        assert_eq!(with_args("run", &[]), "run");
        assert_eq!(with_args("run \"$@\"", &["a b".into(), "it's".into()]), r#"set -- 'a b' 'it'\''s'; run "$@""#);
    }
}
