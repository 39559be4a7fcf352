"""The basis report: self-contained HTML (no URL), every entry present, deterministic, and it renders in a browser."""

import html.parser
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cartinv.cli import main
from cartinv.symbolic import basis_report
from cartinv.symbolic.basisfile import load

ROOT = Path(__file__).resolve().parent.parent / "generated"
LMAX2 = load(ROOT / "lmax2_deg4" / "lmax2_deg4.json")


class _Balance(html.parser.HTMLParser):
    VOID = {"meta", "br", "path", "use", "rect", "circle"}

    def __init__(self):
        super().__init__()
        self.stack = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()


def _check_page(page: str) -> None:
    assert "http:" not in page and "https:" not in page and "src=" not in page  # nothing to fetch
    parser = _Balance()
    parser.feed(page)
    assert parser.stack == []


def test_report_holds_every_entry_and_no_url():
    page = basis_report.report_html(LMAX2)
    _check_page(page)
    for e in LMAX2.invariants + LMAX2.dropped:
        assert f"<td>{e['id']}</td>" in page
    assert LMAX2.content_hash() in page and "cartinv basis --orders 0,1,2 --degree 4" in page
    assert page.count("<svg") >= 2 * len(LMAX2.invariants)  # a drawing and a rendered formula each


def test_report_is_byte_identical_across_processes(tmp_path):
    import sys

    outs = []
    for k, seed in enumerate(("1", "2")):
        out = tmp_path / f"r{k}.html"
        subprocess.run([sys.executable, "-m", "cartinv.cli", "report", str(ROOT / "lmax2_deg4" / "lmax2_deg4.json"),
                        "-o", str(out)], check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": seed})
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


def test_report_of_an_ace_basis_and_markdown():
    from cartinv.symbolic import ace

    basis = ace.derive_ace_basis(2, 1, 2)
    page = basis_report.report_html(basis)
    _check_page(page)
    assert "cartinv ace --nu 2 --nmax 1 --lmax 2" in page
    md = basis_report.report_markdown(LMAX2)
    assert md.startswith("# cartinv basis lmax2_deg4") and "| D1 | reducible | `T0 T0` | $D_{1} = I_{1}^{2}$ |" in md


def test_relations_are_read_without_eval():
    assert basis_report.relation_tex("D3 = 1/2*I3**2", ["I3", "D3"]) == r"D_{3} = \frac{I_{3}^{2}}{2}"
    assert basis_report.relation_tex("rank unchanged; no polynomial relation", ["I1"]) is None
    assert basis_report.relation_tex("D1 = __import__('os')", ["D1"]) is None


def test_compare_matches_invariants_as_graphs(tmp_path, capsys):
    a, b = (ROOT / n / f"{n}.json" for n in ("lmax3_deg4", "hiphop_lmax3_deg4"))
    out = tmp_path / "cmp.html"
    assert main(["report", str(a), str(b), "-o", str(out)]) == 0
    page = out.read_text()
    _check_page(page)
    assert "The same contraction in both (10)" in page and "Only in lmax3_deg4 (3)" in page
    assert main(["report", str(a), str(b), "--format", "md", "-o", str(out)]) == 2
    assert "HTML only" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium is not installed (apt-get install chromium)")
def test_report_renders_in_a_headless_browser(tmp_path):
    import matplotlib.image

    page = tmp_path / "report.html"
    assert main(["report", str(ROOT / "lmax2_deg4" / "lmax2_deg4.json"), "-o", str(page)]) == 0
    shot = tmp_path / "shot.png"
    proc = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.is_file(), proc.stderr[-2000:]
    assert "CONSOLE" not in proc.stderr  # no console message (error or warning) from the page
    pixels = matplotlib.image.imread(shot)
    assert pixels.std() > 0.05  # not blank
