"""The web layer: an HTTP API over gpuplan.api and a single page (static HTML/JS, Plotly served
locally). `gpuplan serve` starts it; `create_app()` builds the FastAPI app."""


def create_app():
    from .app import create_app as _create

    return _create()
