"""Document readers: parse_pdf, parse_docx, parse_pptx, parse_latex, printing the text they hold.

Each imports its library when called, so ``from corral_skills import *`` costs none of them.
"""

from __future__ import annotations

from collections.abc import Callable
import os

from ._text import as_path, print_error


def parse_pdf(file_path: str) -> None:
    """Prints the text of a PDF file, page by page, each page after an `@@ Page N @@` line.

    Args:
        file_path: str: The path of the PDF file.
    """

    def pages(path: str) -> str:
        from pypdf import PdfReader

        reader = PdfReader(path)
        return "".join(f"@@ Page {i} @@\n{page.extract_text()}\n\n" for i, page in enumerate(reader.pages, 1)).strip()

    _read(file_path, "PDF", pages)


def parse_docx(file_path: str) -> None:
    """Prints the text of a Word (.docx) file, paragraph by paragraph, each after an `@@ Page N @@` line.

    Args:
        file_path: str: The path of the .docx file.
    """

    def paragraphs(path: str) -> str:
        import docx

        document = docx.Document(path)
        return "".join(f"@@ Page {i} @@\n{p.text}\n\n" for i, p in enumerate(document.paragraphs, 1))

    _read(file_path, "DOCX", paragraphs)


def parse_latex(file_path: str) -> None:
    """Prints a LaTeX file as plain text, its markup resolved.

    Args:
        file_path: str: The path of the .tex file.
    """

    def text(path: str) -> str:
        from pylatexenc.latex2text import LatexNodes2Text

        with open(path, encoding="utf-8", errors="replace") as f:
            return LatexNodes2Text().latex_to_text(f.read()).strip()

    _read(file_path, "LaTex", text)


def parse_pptx(file_path: str) -> None:
    """Prints the text of a PowerPoint (.pptx) file, slide by slide, each after an `@@ Slide N @@` line.

    Args:
        file_path: str: The path of the .pptx file.
    """

    def slides(path: str) -> str:
        from pptx import Presentation

        rows: list[str] = []
        for i, slide in enumerate(Presentation(path).slides, 1):
            rows.append(f"@@ Slide {i} @@")
            rows += [shape.text for shape in slide.shapes if hasattr(shape, "text")]
        return "\n".join(rows)

    _read(file_path, "PowerPoint", slides)


def _read(file_path: str, kind: str, extract: Callable[[str], str]) -> None:
    file_path = as_path(file_path)
    if not os.path.isfile(file_path):
        print_error(f"File {file_path} not found.")
        return
    try:
        text = extract(file_path)
    except Exception as exc:  # noqa: BLE001 - a damaged document is the agent's to hear about, not to crash on
        print_error(f"Error reading {kind} file: {exc}")
        return
    print(f"[Reading {kind} file from {file_path}]")
    print(text)
