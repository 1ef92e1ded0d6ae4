"""One look for every figure: journal sizes, fonts, colour-blind-safe palettes, embedded fonts.

Figures are built with the object API (`matplotlib.figure.Figure` + an Agg canvas), never pyplot,
so nothing here touches a global figure manager and figures can be drawn in worker threads.
matplotlib reads some settings (font sizes, embedded font types) from rcParams at draw and save time;
rather than changing them for the whole process, every render and save runs inside `styled()`, a
temporary `rc_context` guarded by one lock, so two threads exporting at once never see each other's
settings half-applied.

Colours: every output symbol k has one colour (Okabe & Ito's colour-blind-safe set) in every figure;
ordered quantities (residency time, noise level, epoch) use viridis or cividis.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# --- sizes ------------------------------------------------------------------------------------------

WIDTHS = {"single": 3.5, "double": 7.2}  # inches: one journal column, two columns
MAX_HEIGHT = 9.0  # inches: a full page leaves room for the caption
PNG_DPI = 300

# --- colours ----------------------------------------------------------------------------------------

# Okabe & Ito (2008). Output k always gets OUTPUT_COLORS[k % 8]; the order puts the three most
# distinct hues first because the study's HMMs have three outputs.
OKABE_ITO = {
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "green": "#009E73",
    "orange": "#E69F00",
    "purple": "#CC79A7",
    "sky": "#56B4E9",
    "yellow": "#F0E442",
    "black": "#000000",
}
OUTPUT_COLORS = tuple(OKABE_ITO.values())
HMM_COLOR = "#7F7F7F"  # the reference process: neutral grey
RNN_COLOR = "#0072B2"
DIFF_CMAP = "RdBu_r"  # diverging, ColorBrewer: colour-blind safe
SEQ_CMAP = "viridis"
SEQ_CMAP_ALT = "cividis"
# Categories that are not outputs take Paul Tol's "muted" colour-blind-safe set, so they are never
# mistaken for an output symbol.
TOL_MUTED = (
    "#332288",
    "#88CCEE",
    "#44AA99",
    "#117733",
    "#999933",
    "#DDCC77",
    "#CC6677",
    "#882255",
    "#AA4499",
)
GROUP_COLORS = {  # residency groups (also the cluster and kick points of noise sensitivity)
    "transition": "#CC6677",
    "kick-zone": "#999933",
    "cluster": "#332288",
    "other": "#AAAAAA",
}
SET_COLORS = {  # ablation sets
    "kick": "#882255",
    "noise": "#44AA99",
    "control": "#7F7F7F",
}
POINT_STYLES = {"cluster": "-", "kick": "--"}


def output_color(k: int) -> str:
    """The colour of output symbol k, the same in every figure."""
    return OUTPUT_COLORS[int(k) % len(OUTPUT_COLORS)]


def output_gid(k: int) -> str:
    """Artist id of anything coloured by output k (tests and SVG editors can find them)."""
    return f"output-{int(k)}"


def sequential(n: int, cmap: str = SEQ_CMAP, lo: float = 0.0, hi: float = 0.85) -> list:
    """n colours along a colour-blind-safe sequential map (the light yellow end left out)."""
    cm = mpl.colormaps[cmap]
    return [cm(v) for v in np.linspace(lo, hi, max(n, 1))][:n]


def set_color(name: str, index: int) -> str:
    return SET_COLORS.get(name, TOL_MUTED[index % len(TOL_MUTED)])


def robust_limits(points: np.ndarray, pad: float = 0.08, q: float = 1.0):
    """(xlim, ylim) holding the central 100 - 2q percent of finite 2-D points, padded: one diverging
    trajectory should not shrink all others to a dot. None when there are no finite points."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if not len(pts):
        return None
    lo, hi = np.percentile(pts, q, axis=0), np.percentile(pts, 100 - q, axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    lo, hi = lo - pad * span, hi + pad * span
    return (lo[0], hi[0]), (lo[1], hi[1])


# --- fonts and rc -----------------------------------------------------------------------------------

_FONT_PREFERENCE = ("Arial", "Helvetica", "Liberation Sans", "Nimbus Sans", "DejaVu Sans")


@functools.lru_cache(maxsize=1)
def font_family() -> str:
    """The first installed preferred sans font (asking only for installed ones avoids warnings)."""
    from matplotlib import font_manager

    for name in _FONT_PREFERENCE:
        try:
            path = font_manager.findfont(name, fallback_to_default=False)
        except ValueError:
            continue
        if path.lower().endswith((".ttf", ".otf", ".ttc")):
            return name
    return "DejaVu Sans"


STYLE_PATH = Path(__file__).with_name("hmmrnn.mplstyle")


@functools.lru_cache(maxsize=1)
def _style_file() -> dict[str, Any]:
    return dict(mpl.rc_params_from_file(str(STYLE_PATH), use_default_template=False))


def rc() -> dict[str, Any]:
    """The settings every figure is drawn and saved with: the shipped hmmrnn.mplstyle, with the
    font list narrowed to fonts that are installed (asking for missing ones only warns)."""
    return {**_style_file(), "font.sans-serif": [font_family(), "DejaVu Sans"]}


_LOCK = threading.RLock()


@contextlib.contextmanager
def styled() -> Iterator[None]:
    """Temporary style (a lock keeps concurrent renders from mixing settings)."""
    with _LOCK, mpl.rc_context(rc()):
        yield


def renderer(fn: Callable[..., Figure]) -> Callable[..., Figure]:
    """Decorate a renderer: checks `width` and draws inside the shared style."""

    @functools.wraps(fn)
    def wrapper(result, *, width: str = "double", **kwargs) -> Figure:
        if width not in WIDTHS:
            raise ValueError(f"width must be 'single' or 'double', got {width!r}")
        with styled():
            return fn(result, width=width, **kwargs)

    return wrapper


def new_figure(width: str = "double", height: float | None = None, aspect: float = 0.62) -> Figure:
    """A Figure with an Agg canvas and constrained layout; height in inches (or width x aspect)."""
    w = WIDTHS[width]
    h = min(height if height is not None else w * aspect, MAX_HEIGHT)
    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)
    fig.set_layout_engine("constrained")
    return fig


def panel_label(ax, letter: str) -> None:
    """Bold panel letter at the top-left, outside the axes (part of the layout)."""
    ax.annotate(
        letter,
        xy=(0.0, 1.0),
        xycoords="axes fraction",
        xytext=(-6.0, 4.0),
        textcoords="offset points",
        ha="right",
        va="baseline",
        fontsize=9,
        fontweight="bold",
    )


def label_panels(axes) -> None:
    for i, ax in enumerate(axes):
        panel_label(ax, "abcdefghijklmnopqrstuvwxyz"[i % 26])


def hide_unused(axes, used: int) -> None:
    for ax in list(axes)[used:]:
        ax.set_visible(False)
