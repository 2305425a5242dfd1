import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINE_REFERENCE = re.compile(r"\[`([^`]+)`\]\((?:\.\./)?([\w./]+\.py)#L(\d+)\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_line_reference_points_at_the_code_it_names(page):
    """A reference [`text`](file.py#L12) must land on the one line of the file holding `text`: the docs move
    with the code, and an anchor found on two lines could land on the wrong one."""
    references = LINE_REFERENCE.findall(page.read_text())
    for text, file, line in references:
        lines = (ROOT / file).read_text().splitlines()
        found = [i + 1 for i, content in enumerate(lines) if text in content]
        assert len(found) == 1, f"{page.name}: `{text}` is on lines {found} of {file}: an anchor names one line"
        assert found == [int(line)], f"{page.name}: `{text}` is at {file} line {found[0]}; run python docs/relink.py"


def test_the_docs_refer_to_no_file_users_do_not_have():
    for path in [*PAGES, *ROOT.glob("*.py"), *ROOT.glob("common/*.py")]:
        assert "DESIGN" not in path.read_text(), path


def test_the_stage_pages_reference_their_equations():
    stage1, stage2 = (ROOT / "docs" / "stage1.md").read_text(), (ROOT / "docs" / "stage2.md").read_text()
    assert "eq. (1)" in stage1 and len(LINE_REFERENCE.findall(stage1)) > 15
    assert "eq. (2)" in stage2 and len(LINE_REFERENCE.findall(stage2)) > 8
