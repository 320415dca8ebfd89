"""Pages to HTML with jinja2 (autoescape on: every name, label and caption is escaped)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from .core import Link, Page
from .site import Site

ASSETS = ("style.css", "embedmap.js")
# inline, so that no page makes a request for it (an icon fetched after "load" would be cut
# off by the next navigation)
FAVICON = (
    "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'%3E"
    "%3Ccircle cx='16' cy='16' r='13' fill='%231f3b57'/%3E%3Ccircle cx='16' cy='16' r='7' fill='%23f2a541'/%3E"
    "%3Ccircle cx='16' cy='16' r='3' fill='%231f3b57'/%3E%3C/svg%3E"
)
VIEWER = "assets/embedmap.js"


def url(path: str) -> str:
    """A relative link with every unsafe character percent-encoded ('#' kept for anchors)."""
    return quote(path, safe="/#-._~")


def param_text(value: Any) -> str:
    """A parameter's value as caption text: floats in their shortest form (0.15, 1e-05)."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True)
class NavGroup:
    """One heading of the navigation and its links."""

    title: str
    links: Sequence[Link]


def navigation(
    pages: Sequence[Page], order: Sequence[str] = ("Report", "Dataset", "Images", "Layers")
) -> list[NavGroup]:
    """Pages grouped by `group`; groups in `order` first, then in order of appearance."""
    groups: dict[str, list[Link]] = {}
    for g in order:
        groups[g] = []
    for p in pages:
        groups.setdefault(p.group, []).append(Link(p.nav_text or p.title, p.file))
    return [NavGroup(g, links) for g, links in groups.items() if links]


class Renderer:
    """Renders pages with the package's jinja2 templates (autoescaped, strict about undefined
    names) and writes them into the site with the shared navigation."""

    def __init__(self, site: Site, model_name: str, nav: list[NavGroup]) -> None:
        self.site, self.model_name, self.nav = site, model_name, nav
        self.env = Environment(
            loader=PackageLoader("visionlens.report", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["url"] = url
        self.env.filters["param"] = param_text
        self.env.tests["link"] = lambda v: isinstance(v, Link)

    def copy_assets(self) -> None:
        """Write the CSS and JS assets into `assets/` (left alone when unchanged)."""
        static = resources.files("visionlens.report").joinpath("static")
        for name in ASSETS:
            self.site.write_text(f"assets/{name}", static.joinpath(name).read_text(encoding="utf-8"))

    def render(self, page: Page) -> str:
        """The page as HTML, loading its scripts and, when it shows maps, their data and viewer."""
        scripts = list(page.scripts)
        maps = [m for s in page.sections for m in s.maps]
        if maps:  # data files first: the viewer reads window.VL_MAPS when it runs
            scripts += [m.data for m in maps if m.data not in scripts]
            scripts += [VIEWER] if VIEWER not in scripts else []
        return self.env.get_template("page.html").render(
            page=page, nav=self.nav, model_name=self.model_name, scripts=scripts, favicon=FAVICON
        )

    def write(self, page: Page) -> None:
        """Render the page and write it as `page.file`, atomically."""
        self.site.write_text(page.file, self.render(page))
