"""Commands that explain one prediction: saliency (gradient, SmoothGrad, guided backprop,
Grad-CAM, guided Grad-CAM) and occlusion."""

from __future__ import annotations

import dataclasses
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from .app import app
from .options import ImageArg, ModelSpec, Output, SaveArray, TargetSpec, grouped, out, output_path, stem, wrote

PANEL = "Attribute"


class SaliencyMethod(str, Enum):
    """The maps `saliency --method` draws."""

    gradient = "gradient"
    smoothgrad = "smoothgrad"
    guided = "guided"
    ig = "ig"
    gradcam = "gradcam"
    gradcam_pp = "gradcam++"
    hirescam = "hirescam"
    xgradcam = "xgradcam"
    layercam = "layercam"
    scorecam = "scorecam"
    ablationcam = "ablationcam"
    eigencam = "eigencam"
    guided_gradcam = "guided-gradcam"
    rollout = "rollout"


CAMS = {"gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "scorecam", "ablationcam", "eigencam"}


class IGBaseline(str, Enum):
    """Where Integrated Gradients' path starts."""

    black = "black"
    blur = "blur"
    uniform = "uniform"
    zero = "zero"


class Baseline(str, Enum):
    """What fills the occluding window."""

    zero = "zero"
    mean = "mean"
    blur = "blur"


@app.command(rich_help_panel=PANEL)
@grouped
def saliency(
    image: ImageArg,
    method: Annotated[SaliencyMethod, typer.Option("--method")] = SaliencyMethod.gradient,
    aim: TargetSpec = TargetSpec(),
    layer: Annotated[
        str | None, typer.Option("--layer", "-l", help="CAM layer (default: the last spatial layer)")
    ] = None,
    samples: Annotated[int, typer.Option(min=1, help="SmoothGrad noisy samples")] = 25,
    noise: Annotated[float, typer.Option(min=0.0, help="SmoothGrad noise, fraction of the input range")] = 0.15,
    steps: Annotated[int, typer.Option(min=1, help="Integrated Gradients path steps")] = 50,
    baseline: Annotated[IGBaseline, typer.Option(help="Integrated Gradients baseline")] = IGBaseline.black,
    softmax: Annotated[bool, typer.Option("--softmax", help="same as --score softmax")] = False,
    spec: ModelSpec = ModelSpec(),
    output: Output = None,
    save_array: SaveArray = False,
) -> None:
    """Where the network looks: gradient, SmoothGrad, guided backprop, Integrated Gradients, the
    CAM family (Grad-CAM, Grad-CAM++, HiResCAM, XGrad-CAM, LayerCAM, Score-CAM, Ablation-CAM,
    Eigen-CAM), guided Grad-CAM, attention rollout (vision transformers)."""
    from .. import attribution as A
    from .. import render
    from ..layers import last_spatial_layer

    path = output_path(output, f"{stem(image)}-saliency-{method.value}.png")
    m = spec.load()
    x = m.prepare(image)
    if softmax:
        aim = dataclasses.replace(aim, score="softmax")
    bound = A.bind(m, x, aim.resolve(m, x))
    name = method.value
    if (name in CAMS or name == "guided-gradcam") and layer is None:
        layer = last_spatial_layer(m, x.shape[-1])
    img = render.hwc(m.to_image(x)[0])
    if method is SaliencyMethod.gradient:
        res = A.saliency(m, x, bound)
        pic = [
            render.Panel(render.colorize(res[0], "inferno"), "|gradient| (max over RGB)"),
            render.Panel(render.overlay(img, res[0], "inferno"), "overlay"),
        ]
    elif method is SaliencyMethod.smoothgrad:
        res = A.smoothgrad(m, x, bound, samples=samples, noise=noise)
        pic = [
            render.Panel(render.colorize(res[0], "inferno"), f"SmoothGrad, {samples} samples, noise {noise}"),
            render.Panel(render.overlay(img, res[0], "inferno"), "overlay"),
        ]
    elif method is SaliencyMethod.guided:
        res = A.guided_backprop(m, x, bound)
        pic = [render.Panel(render.signed_rgb(res[0]), "guided backprop")]
    elif method is SaliencyMethod.ig:
        attr, gap = A.integrated_gradients(m, x, bound, steps=steps, baseline=baseline.value, return_delta=True)
        res = attr
        heat = A.attribution_map(attr)[0]
        pic = [
            render.Panel(render.colorize(heat, "inferno"), f"|IG| summed over RGB, {steps} steps, {baseline.value}"),
            render.Panel(
                render.overlay(img, heat, "inferno"),
                f"overlay (completeness gap {float(gap[0]):.3g} of {float(attr[0].sum() - gap[0]):.3g})",
            ),
        ]
    elif name in CAMS:
        res = A.cam(m, x, bound, method=name, layer=layer)
        pic = [render.Panel(render.overlay(img, res[0], "jet", 0.6), f"{name} at {layer}")]
    elif method is SaliencyMethod.rollout:  # class-independent: how patches flow into the class token
        res = A.attention_rollout(m, x)
        pic = [render.Panel(render.overlay(img, res[0], "jet", 0.6), "attention rollout")]
    else:
        res = A.guided_gradcam(m, x, bound, layer=layer)
        pic = [render.Panel(render.signed_rgb(res[0]), "guided Grad-CAM")]
    render.save_figure(path, [render.Panel(img, "input"), *pic], f"{m.name}: {name} for {bound.label}")
    wrote(path, res[0], save_array)


def _first_readable(m: Any, files: list[Path]) -> Any:
    """The model input of the first of `files` that can be read (what a target is resolved
    on); an `ImageError` naming the first file when none can."""
    from ..errors import ImageError

    first: ImageError | None = None
    for f in files:
        try:
            return m.prepare(str(f))
        except ImageError as e:
            first = first or e
    assert first is not None
    raise ImageError(f"none of the {len(files)} images could be read ({first})")


def _print_profile(stats: dict[str, Any]) -> None:
    """How occlusion ran: the mode and why, windows run, batch size, and seconds per stage."""
    out.print(
        f"{stats['mode']} ({stats['why']}), {stats['forwards']} of {stats['windows']} windows run, "
        f"batch {stats['batch_size']}, {stats['seconds']:.2f} s"
    )
    for stage, secs in stats["stages"].items():
        out.print(f"  {stage:<40s} {secs:7.2f} s")


@app.command(rich_help_panel=PANEL)
@grouped
def occlusion(
    image: Annotated[str, typer.Argument(help="image file, bundled sample name, or a folder of images")],
    window: Annotated[int, typer.Option(help="side of the occluding square, px")] = 16,
    stride: Annotated[int, typer.Option(help="step between windows, px")] = 8,
    baseline: Annotated[Baseline, typer.Option(help="what fills the window")] = Baseline.zero,
    aim: TargetSpec = TargetSpec(),
    logits: Annotated[
        bool, typer.Option("--logits", help="measure the logit drop instead of the probability drop")
    ] = False,
    approx: Annotated[
        bool,
        typer.Option("--approx", help="coarse to fine: every second window, then those where the map peaks (faster)"),
    ] = False,
    profile: Annotated[
        bool, typer.Option("--profile", help="print how the map was computed and the seconds per network segment")
    ] = False,
    batch: Annotated[int, typer.Option("--batch", min=1, help="images of a folder occluded together")] = 8,
    spec: ModelSpec = ModelSpec(),
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="PNG to write (a folder's maps: an output folder)")
    ] = None,
    save_array: SaveArray = False,
) -> None:
    """How much the target's probability drops when each window of the image is covered; a
    folder streams its images, their windows sharing forward passes."""
    from .. import attribution as A
    from .. import render
    from ..attribution.occlusion import occlusion_stream
    from ..dataset.sources import IMAGE_SUFFIXES
    from ..errors import ArgumentError

    folder = Path(image)
    if folder.is_dir():
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise ArgumentError(f"{folder}: no image files found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        outdir = output if output is not None else Path(f"{stem(image)}-occlusion")
        if outdir.suffix.lower() == ".png":
            raise ArgumentError(f"{outdir}: for a folder of images `--output` is a folder, not a .png file")
        m = spec.load()
        target = aim.resolve(m, _first_readable(m, files))
        outdir.mkdir(parents=True, exist_ok=True)
        skipped: list[tuple[Any, str]] = []
        stats: dict[str, Any] = {}
        maps = occlusion_stream(
            m,
            [str(f) for f in files],
            target,
            images_per_batch=batch,
            window=window,
            stride=stride,
            baseline=baseline.value,
            softmax=not logits,
            approximate=approx,
            skipped=skipped,
            stats=stats,
        )
        for src, x1, heat, label in maps:
            img = render.hwc(m.to_image(x1[None])[0])
            path = outdir / f"{Path(src).stem}-occlusion.png"
            render.save_figure(
                path,
                [render.Panel(img, "input"), render.Panel(render.overlay(img, heat.clamp(min=0), "jet", 0.6), label)],
                f"{m.name}: occlusion, window {window}, stride {stride}",
            )
            wrote(path, heat, save_array)
        for _, why in skipped:
            out.print(f"[yellow]skipped[/yellow] {escape(why)}")
        if profile:
            _print_profile(stats)
        return
    path = output_path(output, f"{stem(image)}-occlusion.png")
    m = spec.load()
    x = m.prepare(image)
    target = aim.resolve(m, x)
    stats = {}
    res = A.occlusion(
        m,
        x,
        target,
        window=window,
        stride=stride,
        baseline=baseline.value,
        softmax=not logits,
        approximate=approx,
        stats=stats,
    )
    if profile:
        _print_profile(stats)
    bound = A.bind(m, x, target, softmax=not logits)
    img = render.hwc(m.to_image(x)[0])
    what = "score" if logits or not bound.label.endswith("(softmax)") else "probability"
    heat = res[0].clamp(min=0)
    render.save_figure(
        path,
        [
            render.Panel(img, "input"),
            render.Panel(render.colorize(heat, "inferno"), f"{what} drop (max {float(res[0].max()):.3g})"),
            render.Panel(render.overlay(img, heat, "jet", 0.6), f"window {window}, stride {stride}, {baseline.value}"),
        ],
        f"{m.name}: occlusion for {bound.label}" + (" (approximate)" if approx else ""),
    )
    wrote(path, res[0], save_array)


@app.command(rich_help_panel=PANEL)
@grouped
def evaluate(
    images: Annotated[list[str], typer.Argument(help="image files or bundled sample names")],
    methods: Annotated[
        str | None,
        typer.Option(
            "--methods", help="comma list (default: gradient, smoothgrad, ig, gradcam, gradcam++, scorecam, occlusion)"
        ),
    ] = None,
    metrics: Annotated[
        str, typer.Option("--metrics", help="comma list of deletion, insertion, road")
    ] = "deletion,insertion",
    steps: Annotated[int, typer.Option(min=2, help="points on the deletion and insertion curves")] = 50,
    sanity: Annotated[
        bool, typer.Option("--sanity", help="also run the cascading randomization check on each method (slower)")
    ] = False,
    aim: TargetSpec = TargetSpec(),
    layer: Annotated[
        str | None, typer.Option("--layer", "-l", help="CAM layer (default: the last spatial layer)")
    ] = None,
    spec: ModelSpec = ModelSpec(),
    output: Output = None,
    save_array: SaveArray = False,
) -> None:
    """Which map to trust: attribution methods side by side, with deletion and insertion AUC
    (Petsiuk et al. 2018), ROAD (Rong et al. 2022) and, with --sanity, the cascading
    randomization check (Adebayo et al. 2018); prints a table and writes the curves."""
    from rich.table import Table

    from .. import attribution as A
    from ..attribution.evaluate import check_names
    from ..attribution.metrics import cascading_randomization
    from ..curves import evaluation_figure, randomization_figure
    from ..progress import Progress
    from .parsing import comma_list

    path = output_path(output, f"{stem(images[0])}-evaluate.png")
    names = comma_list(methods) if methods is not None else None
    wanted = comma_list(metrics)
    check_names(names if names is not None else ["gradient"], wanted)  # before the model loads
    m = spec.load()
    x = m.prepare(images)
    check_names(names if names is not None else A.default_methods(m), wanted, m)  # before the progress bar
    target = aim.resolve(m, x)
    with Progress("attribution methods and their metrics", len(names or A.default_methods(m))) as bar:
        ev = A.evaluate(m, x, names, target, metrics=wanted, steps=steps, layer=layer, progress=lambda _: bar.advance())
    sanity_rho: dict[str, float] = {}
    pictures = m.to_image(x)
    written: list[Path] = []
    if sanity:
        for s in ev.scores:

            def method(mm: Any, xx: Any, tt: Any, name: str = s.method) -> Any:
                return A.attribution(mm, xx, name, tt, layer=layer)

            check = cascading_randomization(m, x, method, ev.target)
            sanity_rho[s.method] = float(check.spearman_abs.mean())
            figure = path.with_name(f"{path.stem}-sanity-{s.method}.png")
            written.append(randomization_figure(check, pictures[0], figure, s.method))
    table = Table(title=f"{m.name}: {ev.target.label}, {len(images)} image(s), means; curves of the {ev.score_kind}")
    table.add_column("method")
    table.add_column("seconds", justify="right")
    cols = [("deletion", "deletion AUC (lower better)"), ("insertion", "insertion AUC (higher better)"),
            ("road_morf", "ROAD MoRF (lower better)"), ("road_lerf", "ROAD LeRF (higher better)")]  # fmt: skip
    rows = ev.table()
    shown = [(k, title) for k, title in cols if any(row[k] is not None for row in rows)]
    for _, title in shown:
        table.add_column(title, justify="right")
    if sanity:
        table.add_column("randomized: Spearman of |map| (lower better)", justify="right")
    for row in rows:
        best = [ev.best(k) == row["method"] for k, _ in shown]
        cells = [f"[bold]{row[k]:.3f}[/bold]" if b else f"{row[k]:.3f}" for (k, _), b in zip(shown, best, strict=True)]
        extra = [f"{sanity_rho[row['method']]:.2f}"] if sanity else []
        table.add_row(row["method"], f"{row['seconds']:.2f}", *cells, *extra)
    out.print(table)
    for i in range(x.shape[0]):
        p = path if x.shape[0] == 1 else path.with_name(f"{path.stem}-{stem(images[i])}.png")
        written.append(evaluation_figure(ev, pictures[i], p, index=i))
    arrays = {
        k: [float("nan") if r[k] is None else r[k] for r in rows]
        for k in ("seconds", "deletion", "insertion", "road_morf", "road_lerf")
    }
    for p in written[:-1]:
        out.print(f"wrote {p}")
    wrote(written[-1], {"methods": [r["method"] for r in rows], **arrays}, save_array)
