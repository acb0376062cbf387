"""Your own (image, caption) pairs from a CSV or TSV file with a header, as OpenCLIP reads them.

    filepath	title
    images/0001.jpg	a dog running on a beach
    images/0002.png	two cups of coffee on a table

The column names and the separator are OpenCLIP's flags and defaults (``--csv-img-key filepath
--csv-caption-key title --csv-separator "\\t"``). A relative image path is taken from the CSV
file's folder. Only the table is read up front (paths and captions); images are read when a batch
needs them, so memory does not grow with the images.

    >>> import tempfile, os
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "pairs.tsv"), "w") as f:
    ...     _ = f.write("filepath\\ttitle\\na.png\\ta red circle\\n")
    >>> pairs = CsvPairs(os.path.join(folder, "pairs.tsv"))
    >>> len(pairs), pairs.captions[0], pairs.paths[0].name
    (1, 'a red circle', 'a.png')
"""

from __future__ import annotations

import csv
from pathlib import Path

CSV_SUFFIXES = (".csv", ".tsv")


class CsvPairs:
    """The pairs of one CSV/TSV file: ``paths`` (absolute) and ``captions``, in file order."""

    def __init__(self, path, img_key: str = "filepath", caption_key: str = "title",
                 separator: str = "\t"):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no CSV file at {self.path}")
        separator = {"\\t": "\t", "tab": "\t"}.get(separator, separator)  # "\t" from a shell
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"csv separator must be one character, got {separator!r}")
        with self.path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter=separator)
            columns = reader.fieldnames or []
            for flag, key in (("--csv-img-key", img_key), ("--csv-caption-key", caption_key)):
                if key not in columns:
                    raise ValueError(f"{self.path}: {flag} {key!r} is not a column of its header "
                                     f"(columns: {columns}, separator {separator!r})")
            rows = [(row[img_key], row[caption_key]) for row in reader]
        bad = [i + 2 for i, (p, c) in enumerate(rows) if not p or c is None]
        if bad:
            raise ValueError(f"{self.path}: lines {bad[:5]} lack an image path or a caption")
        if not rows:
            raise ValueError(f"{self.path} holds a header but no pairs")
        self.paths = [self.path.parent / p for p, _ in rows]
        self.captions = [c for _, c in rows]

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self):
        return f"CsvPairs({str(self.path)!r}, {len(self)} pairs)"
