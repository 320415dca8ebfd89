"""`visionlens serve`: the live local explorer (see `visionlens.serve`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import ArgumentError
from .app import app
from .options import ModelSpec, grouped

PANEL = "Explore"


@app.command(rich_help_panel=PANEL)
@grouped
def serve(
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            help="dataset for neighbour search and top patches: a folder, a .txt list of paths, samples or digits",
        ),
    ] = None,
    port: Annotated[int, typer.Option("--port", "-p", help="port to listen on (0: any free one)")] = 8765,
    host: Annotated[
        str, typer.Option("--host", help="address to bind; anything but 127.0.0.1 is reachable from other machines")
    ] = "127.0.0.1",
    cache: Annotated[
        Path | None,
        typer.Option(
            "--cache", help="the server's folder for uploads and cached results (default: ~/.cache/visionlens/serve)"
        ),
    ] = None,
    max_upload: Annotated[int, typer.Option("--max-upload", help="largest upload accepted, in MB")] = 20,
    unit_steps: Annotated[
        int, typer.Option("--unit-steps", help="steps of a unit's feature visualization (more: clearer, slower)")
    ] = 96,
    spec: ModelSpec = ModelSpec(),
) -> None:
    """A live explorer in the browser: upload an image, see its maps, units and neighbours."""
    from ..serve import bind

    if not 0 <= port <= 65535:
        raise ArgumentError(f"`port` must be between 0 and 65535, not {port}")
    if not 8 <= unit_steps <= 512:
        raise ArgumentError(f"`unit_steps` must be between 8 and 512, not {unit_steps}")
    if max_upload < 1:
        raise ArgumentError("`max_upload` must be at least 1 (MB)")
    if dataset is not None:  # a wrong dataset fails before the model loads
        from ..dataset.sources import open_dataset

        if len(open_dataset(dataset)) == 0:
            raise ArgumentError(f"{dataset}: the dataset has no images")
    bind(host, port).close()  # a port in use fails before the model loads too
    from ..serve import serve as run

    run(spec.load(), dataset=dataset, host=host, port=port, root=cache, max_upload_mb=max_upload, unit_steps=unit_steps)
