"""`gpuplan serve`: the web page and HTTP API (cli.py calls register)."""

from __future__ import annotations

import typer

from ..requests import LOG_LEVELS


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(host: str = typer.Option("127.0.0.1", help="address to bind; 0.0.0.0 exposes it to your network"),
              port: int = typer.Option(8000, help="TCP port"),
              log_level: str = typer.Option("info", help="uvicorn log level: " + ", ".join(LOG_LEVELS)),
              workers: int = typer.Option(1, help="worker processes (planning is CPU-bound)"),
              time_budget: float = typer.Option(60.0, help="seconds of computing one API request (a plan, a comparison) may"
                                                           " use before it stops with 503")):
        """Start the web page and HTTP API (open http://HOST:PORT/, API docs at /docs)."""
        from ..requests import ServeRequest

        req = ServeRequest.parse("cli", host=host, port=port, log_level=log_level, workers=workers,
                                  time_budget=time_budget)
        host, port, log_level, workers = req.host, req.port, req.log_level, req.workers
        import os

        import uvicorn

        from .app import create_app
        from .limits import BUDGET_ENV, start_workers, uvicorn_settings

        if host not in ("127.0.0.1", "localhost", "::1"):
            typer.echo(f"note: binding {host}: anyone who can reach this address can use the planner", err=True)
        typer.echo(f"gpuplan web: http://{'[' + host + ']' if ':' in host else host}:{port}/", err=True)
        start_workers()
        os.environ[BUDGET_ENV] = repr(req.time_budget)  # worker processes build their app from the environment
        if workers > 1:  # uvicorn starts each worker from an import string
            uvicorn.run("gpuplan.web.app:create_app", factory=True, host=host, port=port,
                        log_level=log_level.lower(), workers=workers, **uvicorn_settings())
        else:
            uvicorn.run(create_app(), host=host, port=port, log_level=log_level.lower(), **uvicorn_settings())
