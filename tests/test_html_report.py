"""`xmc certify --html`: one self-contained file, opened in Debian's headless Chromium as a user
would (playwright-core): no console or page errors, no request leaves the file, every plot laid out
with its marks drawn, failures linked to their replay commands; a screenshot is kept."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from simulator.html_report import claims, strip_plot
from tests.conftest import ROOT
from xmc.cli import main

pytestmark = pytest.mark.interop

BROWSER = ROOT / "interop" / "browser"
SCENARIOS = [
    str(ROOT / "scenarios" / f"{n}.toml") for n in ("f25_failover_primary_crash_mid_chase", "f19_reject_during_chase")
]


def _need_browser() -> None:
    missing = [
        what
        for what, ok in (
            ("chromium", shutil.which("chromium")),
            ("node", shutil.which("node")),
            ("playwright-core", (BROWSER / "node_modules" / "playwright-core").is_dir()),
        )
        if not ok
    ]
    if missing:
        how = "scripts/bootstrap installs them (apt-get install chromium nodejs npm; npm ci in interop/browser)"
        if os.environ.get("CI"):
            pytest.fail(f"{', '.join(missing)} missing in CI: {how}")
        pytest.skip(f"{', '.join(missing)} not installed: {how}")


def _open(report, shot) -> dict:
    out = subprocess.run(
        ["node", str(BROWSER / "open_report.js"), str(report), str(shot)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def failing(tmp_path_factory):
    """A certification with a failed run: f19 asked for more episodes than it can have."""
    d = tmp_path_factory.mktemp("html")
    bad = d / "f19_asks_too_much.toml"
    bad.write_text(
        f'extends = "{ROOT / "scenarios" / "f19_reject_during_chase.toml"}"\n'
        '[scenario]\nname = "f19_asks_too_much"\ndescription = "asks for more episodes than it can have"\n[expect]\nmin_episodes = 1000\n'
    )
    html = d / "report.html"
    assert (
        main(["certify", *SCENARIOS, str(bad), "--seeds", "2", "-j", "1", "--out", str(d / "c"), "--html", str(html)])
        == 1
    )
    return d, html


def test_the_report_renders_in_a_real_browser(failing, record_property):
    _need_browser()
    d, html = failing
    shot = d / "report.png"
    seen = _open(html, shot)
    record_property("screenshot", str(shot))
    print(f"screenshot: {shot}")
    assert seen["console_errors"] == [] and seen["page_errors"] == [] and seen["failed_requests"] == []
    assert seen["external_requests"] == []  # self-contained: opens with no network
    assert seen["verdict"] == "FAIL"
    titles = [p["title"] for p in seen["plots"]]
    assert {"legged time", "signal to both acks", "failover: crash to standby active"} <= set(titles)
    assert any(t.startswith("episode ") for t in titles)
    for p in seen["plots"]:
        assert p["width"] > 100 and p["height"] > 20 and p["drawn"] > 0, p
    assert seen["failure_links"] and all(link["target"] for link in seen["failure_links"])
    assert "xmc run " in " ".join(seen["replay_commands"]) and any("--seed 1" in c for c in seen["replay_commands"])
    assert shot.stat().st_size > 20_000


def test_the_report_names_failures_claims_and_coverage(failing):
    _, html = failing
    text = html.read_text()
    assert "f19_asks_too_much" in text and "min_episodes" in text and "id='fail-f19_asks_too_much-s1'" in text
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text
    for claim in ("re-order within 300 ms", "takeover within 500 ms", "recovery success", "audit query"):
        assert claim in text
    assert "Rare paths reached" in text and "failover" in text


def test_claims_are_measured_not_assumed():
    episode = {"outcome": "BALANCED", "recovery": {"chase_attempts": 1, "legged_ms": 250.0}}
    slow = {"outcome": "BALANCED", "recovery": {"chase_attempts": 2, "legged_ms": 450.0}}
    rep = {
        "episodes": [episode, slow],
        "recovery": {"legged": 2, "repaired_in_budget": {"successes": 2}},
        "failover": {"failovers": [{"active_ms": 480.0}, {"active_ms": 700.0}]},
    }
    rows = {c[0].split(" ")[0]: c for c in claims([rep], 12.0)}
    assert rows["re-order"][1].startswith("1/2 chased")
    assert rows["takeover"][1].startswith("1/2 failovers")
    assert rows["audit"][3] == "within"
    assert claims([rep], 2500.0)[-1][3] == "beyond"


def test_a_plot_draws_every_value():
    svg = strip_plot("legged", [("a", [1.0, 2.0, 300.0]), ("b", [])])
    assert svg.count('class="dot"') == 3 and svg.count('class="median"') == 1 and "<text" in svg
    assert strip_plot("nothing", [("a", [])]) == ""


def test_a_scenario_name_cannot_leave_the_text_or_attribute_it_is_written_in(tmp_path):
    """A failed run's anchor was the raw scenario name inside id='...' and href='#...': a name with an
    apostrophe wrote its own attributes (onmouseover=...) into the desk's report. Every element and
    attribute of the report is one the report itself writes, whatever the name holds."""
    from html.parser import HTMLParser

    name = "x' onmouseover='alert(1)' <script>alert(2)</script> &amp;"
    text = (ROOT / "scenarios" / "cu_hg_spread.toml").read_text().replace("duration_s = 300", "duration_s = 20")
    path = tmp_path / "odd.toml"
    path.write_text(text.replace('name = "cu_hg_spread"', f"name = '''{name}'''"))
    report = tmp_path / "r.html"
    assert main(["certify", str(path), "--seeds", "1", "--out", str(tmp_path / "o"), "--html", str(report)]) == 1

    class Tags(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: list[str] = []
            self.attrs: set[str] = set()
            self.ids: set[str] = set()
            self.hrefs: set[str] = set()

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            for key, value in attrs:
                self.attrs.add(key)
                if key == "id":
                    self.ids.add(value)
                if key == "href" and value.startswith("#"):
                    self.hrefs.add(value[1:])

    page = Tags()
    page.feed(report.read_text())
    assert "<script>alert(2)" not in report.read_text() and "alert(2)" in report.read_text()  # written, as text
    assert not any(a.startswith("on") for a in page.attrs), page.attrs
    assert page.hrefs and page.hrefs <= page.ids  # every link to a failure lands on it
