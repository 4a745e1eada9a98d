"""Replace one benchmark's section of bench/RESULTS.md, keeping every other benchmark's section as it is."""

from __future__ import annotations

from pathlib import Path

RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"
PREAMBLE = [
    "# Benchmark results",
    "",
    "Written by the scripts in `bench/`; each one replaces only its own section.",
    "",
]


def write_section(heading: str, section: str, path: Path = RESULTS_MD) -> None:
    """Put `section` (starting with `heading`, a `## ` line) in place of the old one, or append it."""
    lines = path.read_text().splitlines() if path.exists() else list(PREAMBLE)
    start = next((index for index, line in enumerate(lines) if line.startswith(heading)), None)
    if start is None:
        while lines and not lines[-1].strip():
            lines.pop()
        lines = [*lines, "", *section.splitlines()]
    else:
        end = next((index for index in range(start + 1, len(lines)) if lines[index].startswith("## ")), len(lines))
        following = ["", *lines[end:]] if end < len(lines) else []
        lines = [*lines[:start], *section.rstrip().splitlines(), *following]
    path.write_text("\n".join(lines).rstrip() + "\n")
