"""`visionlens report`: the static HTML microscope of a model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import ArgumentError
from .app import app
from .options import ModelSpec, grouped, out
from .parsing import comma_list

PANEL = "Report"


@app.command(rich_help_panel=PANEL)
@grouped
def report(
    output: Annotated[Path, typer.Option("--output", "-o", help="folder to write the site into")] = Path("report"),
    images: Annotated[
        str | None,
        typer.Option("--images", "-i", help="folder of images, or comma-separated files / sample names"),
    ] = None,
    dataset: Annotated[
        str,
        typer.Option(
            "--dataset",
            help="dataset for the dataset page and the units' top patches: samples, digits, a folder, "
            "a .txt list of paths, or none",
        ),
    ] = "samples",
    layers: Annotated[
        str | None,
        typer.Option("--layers", "-l", help="comma-separated layer names (default: a few spread over depth)"),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="fewer images, units and steps (a few minutes on a CPU)")
    ] = False,
    max_images: Annotated[int, typer.Option("--max-images", min=1, help="at most this many images get pages")] = 16,
    spec: ModelSpec = ModelSpec(),
) -> None:
    """A browsable static site: model, layers, images, attributions, units, synthesis."""
    from rich.markup import escape

    from ..report import build_report
    from ..report.dataset_page import extension as dataset_extension

    if output.exists() and not output.is_dir():
        raise ArgumentError(f"{output}: exists and is not a folder; give a folder for the report")
    sources: list[str] | None = None
    if images is not None:
        sources = [images] if images.strip() and Path(images).exists() else comma_list(images)
        if not sources:
            raise ArgumentError("--images is empty; give a folder, files or sample names")
    dataset_spec = None if dataset.strip().lower() in ("", "none") else dataset
    extensions = [dataset_extension(dataset_spec)] if dataset_spec else []
    m = spec.load()
    result = build_report(
        m,
        sources,
        comma_list(layers) if layers else None,
        output,
        quick=quick,
        extensions=extensions,
        dataset=dataset_spec,
        max_images=max_images,
        progress=True,
    )
    for name, why in result.skipped:
        out.print(f"[yellow]skipped[/yellow] {escape(name)}: {escape(why)}")
    if result.left_out:
        out.print(f"left out {result.left_out} images beyond --max-images {max_images}")
    st = result.stats
    out.print(
        f"{len(result.pages)} pages, {st.computed} figures made, {st.reused} reused; layers {', '.join(result.layers)}"
    )
    out.print(f"open {result.index.resolve()}")
