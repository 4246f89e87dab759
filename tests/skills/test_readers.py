"""parse_pdf, parse_docx, parse_pptx, parse_latex on real files made here."""

from __future__ import annotations

from corral_skills import parse_docx, parse_latex, parse_pdf, parse_pptx


def _pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF: one page per text, each drawing it in Helvetica."""
    n = len(pages)
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(n))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode()]
    font = 3 + 2 * n
    for i, text in enumerate(pages):
        stream = f"BT /F1 24 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font} 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def test_parse_pdf_prints_each_page_after_its_header(tmp_path, capsys):
    path = tmp_path / "test.pdf"
    path.write_bytes(_pdf(["Hello, this is a test PDF document.", "And a second page."]))
    parse_pdf(str(path))
    assert capsys.readouterr().out == (
        f"[Reading PDF file from {path}]\n"
        "@@ Page 1 @@\nHello, this is a test PDF document.\n\n"
        "@@ Page 2 @@\nAnd a second page.\n"
    )


def test_parse_docx_prints_each_paragraph_as_a_page(tmp_path, capsys):
    import docx

    path = tmp_path / "test.docx"
    document = docx.Document()
    document.add_paragraph("Hello, this is a test document.")
    document.add_paragraph("This is the second paragraph.")
    document.save(str(path))
    parse_docx(str(path))
    assert capsys.readouterr().out == (
        f"[Reading DOCX file from {path}]\n"
        "@@ Page 1 @@\nHello, this is a test document.\n\n"
        "@@ Page 2 @@\nThis is the second paragraph.\n\n\n"
    )


def test_parse_pptx_prints_each_slide_and_its_shapes(tmp_path, capsys):
    from pptx import Presentation

    path = tmp_path / "test.pptx"
    deck = Presentation()
    for title in ("Hello, this is the first test PPTX slide.", "Hello, this is the second test PPTX slide."):
        deck.slides.add_slide(deck.slide_layouts[0]).shapes.title.text = title
    deck.save(str(path))
    parse_pptx(str(path))
    assert capsys.readouterr().out == (
        f"[Reading PowerPoint file from {path}]\n"
        "@@ Slide 1 @@\nHello, this is the first test PPTX slide.\n\n"
        "@@ Slide 2 @@\nHello, this is the second test PPTX slide.\n\n"
    )


def test_parse_latex_prints_the_text_without_markup(tmp_path, capsys):
    path = tmp_path / "test.tex"
    path.write_text(
        "\\documentclass{article}\n\\begin{document}\nHello, this is a \\textbf{test} LaTeX document.\n"
        "\\end{document}\n"
    )
    parse_latex(str(path))
    assert capsys.readouterr().out == f"[Reading LaTex file from {path}]\nHello, this is a test LaTeX document.\n"


def test_a_missing_document_is_an_error(capsys):
    for parse in (parse_pdf, parse_docx, parse_pptx, parse_latex):
        parse("/unexist/doc")
    assert capsys.readouterr().out == "ERROR: File /unexist/doc not found.\n" * 4


def test_a_damaged_document_is_an_error_not_an_exception(tmp_path, capsys):
    path = tmp_path / "bad.pptx"
    path.write_text("not a zip")
    parse_pptx(str(path))
    parse_docx(str(path))
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ERROR: Error reading PowerPoint file: ")
    assert out[1].startswith("ERROR: Error reading DOCX file: ")
    assert len(out) == 2


def test_a_damaged_pdf_is_an_error(tmp_path, capsys):
    path = tmp_path / "bad.pdf"
    path.write_text("%PDF-nonsense")
    parse_pdf(str(path))
    assert capsys.readouterr().out.startswith("ERROR: Error reading PDF file: ")
