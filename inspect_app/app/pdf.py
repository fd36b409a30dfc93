"""A small PDF writer for report pages of text and fixed-width tables (no dependency; PDF 1.4, A4, base-14 fonts).

Enough for a shift report a manager prints: a bold title, then lines of Courier that keep table columns aligned;
long documents flow onto further pages. Text is encoded as WinAnsi (cp1252); characters outside it print as ``?``.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["text_pdf"]

_PAGE_W, _PAGE_H = 595, 842  # A4 in points
_MARGIN = 50
_TITLE_SIZE = 14
_BODY_SIZE = 9
_LEADING = 12


def _escape(text: str) -> bytes:
    """A PDF string literal body: cp1252 bytes with ``\\``, ``(`` and ``)`` escaped."""
    raw = text.encode("cp1252", errors="replace")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def _page_stream(title: str | None, lines: Sequence[str]) -> bytes:
    """Content stream of one page: the title (first page only) and body lines from the top margin down."""
    y = _PAGE_H - _MARGIN
    parts = [b"BT"]
    if title is not None:
        parts.append(b"/F2 %d Tf %d %d Td (%s) Tj" % (_TITLE_SIZE, _MARGIN, y, _escape(title)))
        parts.append(b"/F1 %d Tf 0 -%d Td %d TL" % (_BODY_SIZE, 2 * _LEADING, _LEADING))
    else:
        parts.append(b"/F1 %d Tf %d %d Td %d TL" % (_BODY_SIZE, _MARGIN, y, _LEADING))
    for line in lines:
        parts.append(b"(%s) Tj T*" % _escape(line))
    parts.append(b"ET")
    return b"\n".join(parts)


def text_pdf(title: str, lines: Sequence[str]) -> bytes:
    """A PDF document: ``title`` in bold on the first page, then ``lines`` in Courier, as many pages as needed."""
    per_page = (_PAGE_H - 2 * _MARGIN) // _LEADING
    first = per_page - 2  # the title takes two lines
    chunks = [list(lines[:first])]
    chunks += [list(lines[i:i + per_page]) for i in range(first, len(lines), per_page)]
    # Objects: 1 catalog, 2 pages, 3 Courier, 4 Helvetica-Bold, then per page its page object and content stream.
    font = b"<< /Type /Font /Subtype /Type1 /BaseFont /%s /Encoding /WinAnsiEncoding >>"
    objects: list[bytes] = [b"", b"", font % b"Courier", font % b"Helvetica-Bold"]
    kids = []
    for index, chunk in enumerate(chunks):
        stream = _page_stream(title if index == 0 else None, chunk)
        page_id, content_id = len(objects) + 1, len(objects) + 2
        kids.append(page_id)
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Resources << /Font << /F1 3 0 R "
                       b"/F2 4 0 R >> >> /Contents %d 0 R >>" % (_PAGE_W, _PAGE_H, content_id))
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    objects[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
