"""Re-point the docs' code references after the code moved.

A reference [`text`](file.py#L12) in README.md or docs/*.md gets the line number of the one line
holding `text`; an anchor found on no line or on several stops the relinking (make it name one line).
tests/test_docs.py fails when a reference does not land on its text, or its text is on several lines.

    python docs/relink.py
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = re.compile(r"\[`([^`]+)`\]\(((?:\.\./)?)([\w./]+\.py)#L(\d+)\)")


def relink(page: Path) -> int:
    """Rewrite the references of one page; returns how many moved."""
    moved = 0

    def repoint(match: re.Match) -> str:
        nonlocal moved
        text, prefix, file, line = match.group(1), match.group(2), match.group(3), int(match.group(4))
        lines = (ROOT / file).read_text().splitlines()
        found = [i + 1 for i, content in enumerate(lines) if text in content]
        if len(found) != 1:
            raise SystemExit(f"{page.name}: `{text}` is on lines {found} of {file}: an anchor names one line")
        moved += found[0] != line
        return f"[`{text}`]({prefix}{file}#L{found[0]})"

    page.write_text(REFERENCE.sub(repoint, page.read_text()))
    return moved


if __name__ == "__main__":
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        print(f"{page.relative_to(ROOT)}: {relink(page)} references moved")
