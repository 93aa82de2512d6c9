"""Regenerate the sample text corpus in ``sample_data/books/``.

The corpus is a few MB of real, freely redistributable English text used to
try pymr on (word count and friends).  Every file is extracted from a Debian
package, so nothing is fetched from anywhere but the Debian archive:

* ``jargon-text``    -- The Jargon File 4.4.7 (public domain)
* ``bible-kjv``      -- King James Bible, read with its ``bible`` tool (public domain)
* ``cfi-en``         -- "Copyright Does Not Exist", HTML stripped to text (public domain)
* ``miscfiles``      -- US Constitution and Declaration of Independence (public domain)
* ``python3.11-doc`` -- Python tutorial and HOWTOs, HTML stripped to text (PSF licence)

Run ``python scripts/make_sample_data.py`` from anywhere.  Missing packages are
installed with ``apt-get install -y`` when running as root; otherwise the
script prints the command to run (on a fresh machine run ``apt-get update``
first).  The output is deterministic for the given
package versions, which are recorded in ``sample_data/README.md``.
"""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "sample_data" / "books"
README = ROOT / "sample_data" / "README.md"

PYDOC = Path("/usr/share/doc/python3.11/html")
CFI = Path("/usr/share/doc/cfi-en/html")

TUTORIAL_PAGES = [
    "appetite", "interpreter", "introduction", "controlflow", "datastructures",
    "modules", "inputoutput", "errors", "classes", "stdlib", "stdlib2", "venv",
    "whatnow", "interactive", "floatingpoint", "appendix",
]
HOWTO_PAGES = [
    "pyporting", "cporting", "curses", "descriptor", "enum", "functional",
    "logging", "logging-cookbook", "regex", "sockets", "sorting", "unicode",
    "urllib2", "argparse", "ipaddress", "instrumentation", "annotations",
]
CFI_PAGES = ["preface"] + [f"ch{i}web" for i in range(1, 18)] + ["ottoen"]


# --------------------------------------------------------------------------
# HTML to plain text
# --------------------------------------------------------------------------

BLOCK_TAGS = {
    "p", "div", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "li", "ul",
    "ol", "dl", "dt", "dd", "table", "tr", "td", "th", "blockquote", "section",
}
SKIP_TAGS = {"head", "script", "style"}
SPACE_BEFORE_PUNCT = re.compile(r" +([,;:!?)]|\.(?!\.))(?=[\s,.;:!?()]|$)")
SPACE_AFTER_PAREN = re.compile(r"\( +")


class TextExtractor(HTMLParser):
    """Collect the text of an HTML page as wrapped paragraphs.

    If ``main_only`` is set, only text inside ``<div role="main">`` (the body
    of a Sphinx page) is kept.  ``<pre>`` blocks are kept verbatim.  If
    ``fix_spacing`` is set, stray blanks before punctuation and after "(",
    left by inline tags in hand-written HTML, are removed.
    """

    def __init__(self, main_only: bool, fix_spacing: bool = False) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self._buf: list[str] = []
        self._skip: str | None = None
        self._in_pre = False
        self._main_only = main_only
        self._fix_spacing = fix_spacing
        self._main_depth = 0  # div nesting depth inside the main div

    @property
    def _active(self) -> bool:
        return (not self._main_only or self._main_depth > 0) and self._skip is None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "div" and self._main_only:
            if self._main_depth:
                self._main_depth += 1
            elif attr.get("role") == "main":
                self._main_depth = 1
        if self._skip is None and (
            tag in SKIP_TAGS or (tag == "a" and attr.get("class") == "headerlink")
        ):
            self._skip = tag
        if tag == "pre":
            self._flush()
            self._in_pre = True
        elif tag in BLOCK_TAGS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag == self._skip:
            self._skip = None
        if tag == "pre":
            self._flush()
            self._in_pre = False
        elif tag in BLOCK_TAGS:
            self._flush()
        if tag == "div" and self._main_depth:
            self._main_depth -= 1

    def handle_data(self, data: str) -> None:
        if self._active:
            self._buf.append(data)

    def close(self) -> None:
        super().close()
        self._flush()

    def _flush(self) -> None:
        text, self._buf = "".join(self._buf), []
        if self._in_pre:
            para = "\n".join(line.rstrip() for line in text.strip("\n").splitlines())
        else:
            text = " ".join(text.split())
            if self._fix_spacing:
                text = SPACE_AFTER_PAREN.sub("(", SPACE_BEFORE_PUNCT.sub(r"\1", text))
            para = textwrap.fill(
                text, width=72,
                break_long_words=False, break_on_hyphens=False,
            )
        if para.strip():
            self.paragraphs.append(para)


def html_to_text(
    path: Path, main_only: bool, encoding: str = "utf-8", fix_spacing: bool = False
) -> str:
    parser = TextExtractor(main_only, fix_spacing)
    parser.feed(path.read_bytes().decode(encoding))
    parser.close()
    return "\n\n".join(parser.paragraphs)


# --------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------


def jargon_file() -> str:
    with gzip.open("/usr/share/doc/jargon-text/jargon.txt.gz", "rt", encoding="utf-8") as f:
        return f.read()


def kjv(title: str, verses: str) -> str:
    """Run the ``bible`` tool (pretty-printed, 78 columns) over a verse range."""
    out = subprocess.run(
        ["bible", "-p", "/usr/lib", "-l78", verses],
        stdin=subprocess.DEVNULL, capture_output=True, check=True,
    ).stdout.decode("utf-8")
    return f"The Holy Bible, King James Version: {title}\n{out}"


def us_documents() -> str:
    parts = []
    for name in ("us-declaration", "us-constitution"):
        with gzip.open(f"/usr/share/state/{name}.gz", "rt", encoding="utf-8") as f:
            parts.append(f.read().strip())
    return "\n\n\n\n".join(parts)


def copyright_does_not_exist() -> str:
    pages = [
        html_to_text(CFI / f"{name}.htm", False, "latin-1", fix_spacing=True)
        for name in CFI_PAGES
    ]
    # Drop the "INDEX" navigation link printed at the top of every chapter.
    pages = [page.removeprefix("INDEX").lstrip() for page in pages]
    return "\n\n\n".join(pages)


def python_docs(title: str, section: str, pages: list[str]) -> str:
    texts = [html_to_text(PYDOC / section / f"{name}.html", True) for name in pages]
    return f"{title}\n\n\n" + "\n\n\n".join(texts)


@dataclass(frozen=True)
class Book:
    name: str
    package: str
    origin: str
    licence: str
    build: Callable[[], str]


KJV_DATA = "on /usr/lib/bible.data (from `bible-kjv-text`)"
PSF = "PSF License Version 2"

BOOKS = [
    Book("jargon-file.txt", "jargon-text", "/usr/share/doc/jargon-text/jargon.txt.gz",
         "Public domain", jargon_file),
    Book("kjv-pentateuch.txt", "bible-kjv", f"`bible Gen1:1-Deut34:12` {KJV_DATA}",
         "Public domain", lambda: kjv("The Five Books of Moses", "Gen1:1-Deut34:12")),
    Book("kjv-new-testament.txt", "bible-kjv", f"`bible Matt1:1-Rev22:21` {KJV_DATA}",
         "Public domain", lambda: kjv("The New Testament", "Matt1:1-Rev22:21")),
    Book("copyright-does-not-exist.txt", "cfi-en", f"{CFI}/*.htm",
         "Public domain", copyright_does_not_exist),
    Book("us-declaration-and-constitution.txt", "miscfiles",
         "/usr/share/state/us-declaration.gz, us-constitution.gz",
         "Public domain", us_documents),
    Book("python-tutorial.txt", "python3.11-doc", f"{PYDOC}/tutorial/*.html", PSF,
         lambda: python_docs("The Python Tutorial (Python 3.11)", "tutorial", TUTORIAL_PAGES)),
    Book("python-howtos.txt", "python3.11-doc", f"{PYDOC}/howto/*.html", PSF,
         lambda: python_docs("Python HOWTOs (Python 3.11)", "howto", HOWTO_PAGES)),
]


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------


def package_version(package: str) -> str | None:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Status} ${Version}", package],
        capture_output=True, text=True,
    )
    status, _, version = result.stdout.partition(" ")
    return version if result.returncode == 0 and status == "installed" else None


def ensure_packages(packages: list[str]) -> None:
    missing = [p for p in packages if package_version(p) is None]
    if not missing:
        return
    command = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if os.geteuid() != 0:
        sys.exit(f"missing packages; run: sudo {' '.join(command)}")
    print("+", " ".join(command), flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(command, check=True, env=env)


def normalise(text: str) -> str:
    """Unix line endings, no trailing blanks, exactly one final newline."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip("\n") + "\n"


def write_readme(books: list[Book]) -> None:
    rows = [
        f"| `books/{b.name}` | `{b.package}` {package_version(b.package)} "
        f"| {b.origin} | {b.licence} |"
        for b in books
    ]
    README.write_text(
        "# Sample data\n\n"
        "Real English text for trying pymr jobs such as word count.  Generated by\n"
        "`python scripts/make_sample_data.py` from Debian 12 packages (versions below);\n"
        "do not edit the files by hand.\n\n"
        "| file | Debian package and version | origin | licence |\n"
        "| --- | --- | --- | --- |\n" + "\n".join(rows) + "\n\n"
        "Licence notes, from each package's /usr/share/doc/PACKAGE/copyright:\n\n"
        "- The Jargon File: \"in the public domain, to be freely used, shared, and\n"
        "  modified\" (Eric S. Raymond); please cite it as \"Jargon File 4.4.7\".\n"
        "- King James Version (1611): copyright expired.\n"
        "- Copyright Does Not Exist (Linus Walleij, English translation by Daniel\n"
        "  Arnrup): put in the public domain by author and translator.\n"
        "- US Declaration of Independence and Constitution: US government works, public\n"
        "  domain.\n"
        "- Python documentation: Copyright 2001-2023 Python Software Foundation; All\n"
        "  Rights Reserved.  Licensed under the PSF License Agreement Version 2; code\n"
        "  examples also under the Zero Clause BSD License.\n",
        encoding="utf-8", newline="\n",
    )


def main() -> None:
    ensure_packages(sorted({b.package for b in BOOKS}))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    total = 0
    for book in BOOKS:
        data = normalise(book.build()).encode("utf-8")
        (OUT_DIR / book.name).write_bytes(data)
        total += len(data)
        print(f"{len(data):>9}  {book.name}")
    print(f"{total:>9}  total")
    write_readme(BOOKS)


if __name__ == "__main__":
    main()
