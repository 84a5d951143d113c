"""A matplotlib figure on an Agg canvas (no pyplot, no global state) and its PNG bytes."""

from __future__ import annotations

import io
import warnings

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["new_figure", "to_png"]


def new_figure(height: float = 3.2, width: float = 7.5) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def to_png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():  # tick-placement notes on odd ranges are not errors
        warnings.filterwarnings("ignore", message="AutoDateLocator", category=UserWarning)
        fig.tight_layout()
        fig.savefig(buf, format="png")
    return buf.getvalue()
