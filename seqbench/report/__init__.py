"""`seqbench report`: the paper's tables and figures from MLflow runs, as Markdown and one self-contained HTML page.

collect (runs -> records) -> aggregate (seeds, tests) -> tables / figures -> document -> render (md, html).
"""

from .build import FORMATS, VIEWS, build_document, write_report, write_study_report

__all__ = ["FORMATS", "VIEWS", "build_document", "write_report", "write_study_report"]
