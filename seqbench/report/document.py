"""The report as plain data (sections of text, tables and figures), so Markdown and HTML render the same thing."""

from __future__ import annotations

from dataclasses import dataclass, field

MISSING = "–"


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    bold: set[tuple[int, int]] = field(default_factory=set)  # (row, column) cells to emphasise (best per column)


@dataclass
class Figure:
    name: str  # file stem, e.g. "order_ml-100k"
    caption: str
    png: bytes


@dataclass
class Section:
    title: str
    text: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


@dataclass
class Document:
    title: str
    preamble: list[str]  # lines: tracking URI, code versions, dataset hashes, how to open the UI
    sections: list[Section]
