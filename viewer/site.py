"""The static site: `index.html` (overview), `episodes/<slug>.html` (one per episode asked for) and
`static/` (CSS, the pages' scripts, vendored uPlot). Each page carries its data inline as JSON, so
the site opens from disk (browsers refuse `fetch` of `file://` URLs) and needs no network."""
from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from armdata.errors import UsageError
from armdata.viewer.dataset import overview
from armdata.viewer.episode import episode_data, slug

log = logging.getLogger(__name__)


class ViewError(UsageError):
    """The dataset or the episodes asked for cannot be viewed."""

HERE = Path(__file__).parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"


def inline_json(data: Any) -> str:
    """JSON safe inside a <script> element (no `</script>` or `<!--` can end it early)."""
    return json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")


def render(template: str, title: str, data: Any) -> str:
    text = (TEMPLATES / template).read_text(encoding="utf-8")
    return text.replace("{{TITLE}}", title.replace("&", "&amp;").replace("<", "&lt;")) \
        .replace("{{DATA}}", inline_json(data))


def pick_episodes(kept: list[str], count: int | None, named: list[str] | None) -> list[str]:
    """The episodes to render: those named (each must exist), else the first `count` kept."""
    if named:
        missing = [e for e in named if e not in kept]
        if missing:
            raise ViewError(f"episode {missing[0]!r} has no kept rows in this dataset; "
                            f"e.g. {kept[:3]}")
        return list(dict.fromkeys(named))
    return kept[:count]


def write_site(output: Path, out: Path, count: int | None, named: list[str] | None,
               decode: Callable[[list[dict[str, Any]]], dict[int, Any]],
               rerun: bool = False) -> tuple[Path, list[str]]:
    """Write the site for the built dataset `output` into `out`; returns `out/index.html` and the
    episodes rendered. With `rerun`, episode pages link their `.rrd` recording (written later)."""
    start = time.perf_counter()
    summary, rejections = overview(output)
    kept = [e["id"] for e in summary["episodes"] if e["length"]]
    chosen = pick_episodes(kept, count, named)
    pages = {eid: f"episodes/{slug(eid)}.html" for eid in chosen}
    summary["pages"] = pages
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(STATIC, out / "static", dirs_exist_ok=True)
    (out / "index.html").write_text(render("overview.html", summary["name"], summary),
                                    encoding="utf-8")
    log.info("overview of %d episodes in %.1fs", len(summary["episodes"]),
             time.perf_counter() - start)
    for k, eid in enumerate(chosen):
        data = episode_data(output, eid, out / "episodes", decode, rejections)
        siblings = [Path(pages[chosen[j]]).name if 0 <= j < len(chosen) else None
                    for j in (k - 1, k + 1)]
        data.update(dataset=summary["name"], prev=siblings[0], next=siblings[1],
                    rerun=f"{slug(eid)}.rrd" if rerun else None)
        (out / pages[eid]).write_text(render("episode.html", eid, data), encoding="utf-8")
    log.info("%d episode pages in %.1fs", len(chosen), time.perf_counter() - start)
    return out / "index.html", chosen
