"""One escaping helper per target language for text that reaches generated code as a comment or a literal.

The Basis schema (symbolic/schema.py) already restricts every field to small grammars; these helpers are the
second wall, so that no text (a path on the command line, a future field) can end a comment or a literal early:
each returns one line of printable ASCII that stays inside the construct it is written into.
"""

from __future__ import annotations

_PRINTABLE = {chr(c) for c in range(0x20, 0x7F)}


def _one_line(text: str) -> str:
    """Printable ASCII on one line: any other character becomes \\uXXXX (\\UXXXXXXXX beyond the BMP)."""
    out = []
    for ch in str(text):
        if ch in _PRINTABLE:
            out.append(ch)
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "".join(out)


def python_comment(text: str) -> str:
    """Body of a Python '# ...' comment: one line, so nothing after it is code."""
    return _one_line(text)


def python_docstring(text: str) -> str:
    """Text inside a Python triple-quoted docstring: no quote or backslash can end it or escape from it."""
    return _one_line(text).replace("\\", "\\\\").replace('"', "'")


def python_string(text: str) -> str:
    """A Python string literal (with its quotes) holding exactly `text`."""
    return ascii(str(text))


def c_comment(text: str) -> str:
    """Body of a C/C++ '// ...' comment: one line, no trailing backslash (a line continuation), no trigraphs,
    no '*/' (so it is also safe inside a block comment)."""
    body = _one_line(text).replace("??", "?\\?").replace("*/", "* /")
    return body + " " if body.endswith("\\") else body


def c_string(text: str) -> str:
    """A C/C++ string literal (with its quotes) holding exactly `text`: quotes, backslashes and '?' escaped,
    everything outside printable ASCII written as octal escapes of its UTF-8 bytes."""
    out = ['"']
    for byte in str(text).encode("utf-8"):
        ch = chr(byte)
        if ch in '"\\?':
            out.append("\\" + ch)
        elif ch in _PRINTABLE:
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    out.append('"')
    return "".join(out)


def markdown_code(text: str) -> str:
    """Text for a Markdown code span or indented code line: one line, no backtick."""
    return _one_line(text).replace("`", "'")


FILTERS = {
    "py_comment": python_comment,
    "py_doc": python_docstring,
    "py_str": python_string,
    "c_comment": c_comment,
    "c_str": c_string,
    "md_code": markdown_code,
}
