"""Views: curves of an experiment's logs, rebuilt after each logger flush.

>>> engine.view = views.factory(engine)        # from the `view` option; hooks registered
>>> views.rebuild("logs/mnist")                 # what `bootstrap-repro view DIR` does

The ``view`` option is a list of items ``<logname>:<key>`` (``logs:train_epoch.loss``;
``+`` overlays several in one subplot), a dict ``{name: plotly|tensorboard, items,
file_name}``, or a list of such dicts.  ``view.html`` is small (data only) and loads
``plotly-<version>.min.js`` from beside it.  This package imports neither torch nor
plotly's Python API.
"""

from bootstrap_repro.views._base import END_HOOKS, FLUSH_HOOKS, BaseView, MultiView, Prefix, engine_logs, snapshot_logs
from bootstrap_repro.views._factory import check_logged, check_view_option, factory, make_view, rebuild
from bootstrap_repro.views._items import (
    DEFAULT_LOG,
    VIEW_NAMES,
    Item,
    Panel,
    ViewSpec,
    default_items,
    load_logs,
    parse_item,
    parse_items,
    parse_view_option,
    read_log,
    series,
    unlogged,
)
from bootstrap_repro.views._plotly import (
    NO_DATA,
    Decimation,
    SubplotSpec,
    TraceSpec,
    View,
    asset_cache_dir,
    decimate,
    ensure_plotly_js,
    plotly_js_source,
    plotly_js_version,
    render_html,
    shares,
    write_html,
)
from bootstrap_repro.views._tensorboard import MISSING_TENSORBOARD, TensorboardView

#: The seed's class name for the plotly view.
Plotly = View

__all__ = [
    "factory",
    "rebuild",
    "make_view",
    "BaseView",
    "View",
    "Plotly",
    "TensorboardView",
    "MultiView",
    "FLUSH_HOOKS",
    "END_HOOKS",
    "engine_logs",
    "Item",
    "Panel",
    "ViewSpec",
    "VIEW_NAMES",
    "DEFAULT_LOG",
    "parse_item",
    "parse_items",
    "parse_view_option",
    "default_items",
    "read_log",
    "load_logs",
    "series",
    "unlogged",
    "check_logged",
    "check_view_option",
    "SubplotSpec",
    "TraceSpec",
    "NO_DATA",
    "render_html",
    "write_html",
    "decimate",
    "ensure_plotly_js",
    "plotly_js_source",
    "plotly_js_version",
    "asset_cache_dir",
    "MISSING_TENSORBOARD",
]
