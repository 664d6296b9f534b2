"""A user's own table: reading `.csv`, `.tsv` and `.parquet` files with pandas, and giving each
column its role (numeric, category, boolean, or left out and why).

Reading: the delimiter of a text file is sniffed (`,` `;` tab `|`), UTF-8 with or without a BOM
(UTF-16 with one) is read as such, any other encoding falls back to Windows-1252 with a note; a text
file compressed with gzip, bzip2, xz or zip (one file in the archive) is read as it is, recognised by
its first bytes whatever its name;
pandas' usual missing markers (empty, NA, NaN, null, None, N/A, ...) and `?` are missing values.
pandas and pyarrow are imported here only, so the built-in data sets never pay for them.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import errno
import io
import json
import os
import re
import stat
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from mlpkit.errors import ConfigError

EXTRA_MISSING = ["?"]  # besides pandas' own markers: the UCI repository's convention
DELIMITERS = ",;\t|"
PARQUET_MAGIC = b"PAR1"
LINE_SCAN_BYTES = 200 * 2 ** 20  # files up to this size are scanned for the line of a row a message names


# ---------------------------------------------------------------------------
# Files


@dataclass
class TextFormat:
    """How a delimited text file is written: what pandas needs to read it."""

    sep: str = ","
    encoding: str = "utf-8-sig"
    note: str = ""  # said to the user when the encoding was a fallback
    skip: int = 0  # blank lines (nothing but spaces, tabs or delimiters) before the header
    compression: Optional[str] = None  # gzip | bz2 | xz | zip | zstd (pandas' names), None for plain text
    sep_line: bool = False  # the first line is Excel's `sep=;`, which names the delimiter (counted in skip)

    def as_encoding(self, encoding: str, note: str = "") -> "TextFormat":
        """The same file read in another encoding."""
        return replace(self, encoding=encoding, note=note)


def check_file(path: Any, key: str = "data.path") -> str:
    """`path` as a string when it names a readable, non-empty regular file; else a ConfigError saying
    what it is instead (missing, a broken link or a link loop, a directory, a pipe or device, unreadable)."""
    if path is None or str(path).strip() == "":
        raise ConfigError(f"{key} is not set; give the path of a .csv, .tsv or .parquet file")
    path = str(path)
    wanted = "give the path of a .csv, .tsv or .parquet file"
    try:
        info = os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise ConfigError(f"{key}={path!r} is a symbolic link loop (the links point at each other and "
                              f"never reach a file); {wanted}") from None
        if err.errno == errno.ENOENT and os.path.lexists(path):
            raise ConfigError(f"{key}={path!r} is a broken symbolic link (to {os.readlink(path)!r}, which does "
                              "not exist)") from None
        if err.errno == errno.ENOENT and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", path):
            raise ConfigError(f"{key}={path!r} is a URL; mlpkit reads local files only (nothing is downloaded): "
                              "download it first (curl -O, or your browser) and give the file's path") from None
        if err.errno == errno.ENOENT:
            home = os.path.expanduser(path)
            hint = f" (a leading ~ is not expanded here; write {home!r})" if home != path and \
                os.path.exists(home) else ""
            raise ConfigError(f"{key}={path!r}: no such file{hint}") from None
        if err.errno == errno.ENOTDIR:
            raise ConfigError(f"{key}={path!r}: a part of the path before the file name is a file, not a "
                              "directory") from None
        if err.errno == errno.EACCES:
            raise ConfigError(f"{key}={path!r} cannot be reached (permission denied on a directory of its "
                              "path)") from None
        raise ConfigError(f"{key}={path!r} cannot be read ({err.strerror or err})") from None
    mode = info.st_mode
    if stat.S_ISDIR(mode):
        raise ConfigError(f"{key}={path!r} is a directory; {wanted}")
    if not stat.S_ISREG(mode):
        what = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or
                stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
        raise ConfigError(f"{key}={path!r} is {what}, not a regular file; {wanted}")
    try:
        os.close(os.open(path, os.O_RDONLY))
    except PermissionError:
        raise ConfigError(f"{key}={path!r} cannot be read (permission denied)") from None
    except OSError as err:
        raise ConfigError(f"{key}={path!r} cannot be read ({err.strerror or err})") from None
    if info.st_size == 0:
        raise ConfigError(f"{key}={path!r} is empty; it needs a header row and data rows")
    return path


def arrow_to_pandas(data: Any):
    """A pyarrow Table or RecordBatch as a DataFrame, decimal columns as float64: numbers, as the same values
    written in a CSV file are (pandas would give Python Decimal objects, which are not); a named pandas index
    stored in the file is a column, as it is in the file (pandas would make it the frame's index, which
    mlpkit would not read)."""
    import pyarrow as pa

    for i, f in enumerate(data.schema):
        if pa.types.is_decimal(f.type):
            # through the decimal text: arrow's direct cast rounds -0.57 to -0.5700000000000001
            data = data.set_column(i, f.name, data.column(i).cast(pa.string()).cast(pa.float64()))
    df = data.to_pandas()
    named = [n for n in df.index.names if n is not None]
    if named:  # a DataFrame's named index (df.set_index("b").to_parquet): a column of the table, not row labels
        df = df.reset_index(level=named)
    return df


def is_parquet(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == PARQUET_MAGIC


# The first bytes of each compression pandas reads, and its name there.
COMPRESSIONS = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"), (b"PK\x03\x04", "zip"),
                (b"\x28\xb5\x2f\xfd", "zstd"))


def compression_of(path: str, key: str = "data.path") -> Optional[str]:
    """The compression of a text table from its first bytes (None: plain text); ConfigError for an archive
    that is not one compressed table (an Excel workbook, a zip of several files) or a compression that
    cannot be read here."""
    with open(path, "rb") as fh:
        magic = fh.read(6)
    kind = next((name for start, name in COMPRESSIONS if magic.startswith(start)), None)
    if kind == "zip":
        import zipfile

        try:
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if not n.endswith("/")]
        except (zipfile.BadZipFile, OSError) as err:
            raise ConfigError(f"{key}={path!r} starts as a zip archive does but cannot be opened as one ({err}); "
                              "give a .csv, .tsv or .parquet file, or a zip archive of one") from None
        if any(n.startswith("xl/") or n == "[Content_Types].xml" for n in names):
            raise ConfigError(f"{key}={path!r} is an Excel workbook, not a table of delimited text; save it as "
                              "CSV (UTF-8) or Parquet")
        if len(names) != 1:
            raise ConfigError(f"{key}={path!r} is a zip archive of {len(names)} files; a zipped table must hold "
                              "exactly one .csv or .tsv file (unzip it and give the file's path)")
    if kind == "zstd":
        import importlib.util

        if importlib.util.find_spec("zstandard") is None:
            raise ConfigError(f"{key}={path!r} is compressed with zstd, which needs the zstandard package here "
                              "(pip install zstandard), or decompress it first (zstd -d)")
    return kind


def _head_bytes(path: str, compression: Optional[str], size: int, key: str) -> bytes:
    """The first `size` bytes of the file's text, decompressed."""
    if compression is None:
        with open(path, "rb") as fh:
            return fh.read(size)
    try:
        if compression == "zip":
            import zipfile

            with zipfile.ZipFile(path) as archive, archive.open(archive.namelist()[-1]) as fh:
                return fh.read(size)
        if compression == "zstd":
            import zstandard

            with open(path, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as fh:
                return fh.read(size)
        opener = {"gzip": "gzip", "bz2": "bz2", "xz": "lzma"}[compression]
        with __import__(opener).open(path, "rb") as fh:
            return fh.read(size)
    except Exception as err:  # a truncated or damaged archive: EOFError, OSError, LZMAError, ...
        raise ConfigError(f"{key}={path!r} is a damaged {compression} file ({type(err).__name__}: "
                          f"{str(err).splitlines()[0][:200] if str(err) else 'unreadable'})") from None


def sniff_format(path: str, key: str = "data.path") -> TextFormat:
    """The compression (from the first bytes), the encoding (from a BOM, else UTF-8) and the delimiter of
    a text table, from its first 64 KB of text."""
    compression = compression_of(path, key)
    head = _head_bytes(path, compression, 1 << 16, key)
    encoding = "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    elif b"\x00" in head:
        kind = " (an Excel workbook?)" if head.startswith(b"\xd0\xcf\x11\xe0") else ""  # .xls: OLE2
        raise ConfigError(f"{key}={path!r} is not a readable .csv, .tsv or .parquet table: it holds binary "
                          f"data{kind}; save it as CSV (UTF-8) or Parquet")
    text = head.decode(encoding, errors="replace").lstrip("\ufeff")
    if len(head) == 1 << 16 and "\n" in text:
        text = text[:text.rindex("\n")]  # whole lines only
    lines = text.splitlines(keepends=True)
    skip = 0
    while skip < len(lines) and lines[skip].strip(" \t\r\n\f\v" + DELIMITERS) == "":
        skip += 1  # blank lines (an empty spreadsheet row: only delimiters) above the header
    if skip == len(lines) and len(head) < 1 << 16:
        raise ConfigError(f"{key}={path!r} holds only blank lines; it needs a header row and data rows")
    directive = re.fullmatch(r'"?sep=(.)"?', lines[skip].rstrip("\r\n")) if skip < len(lines) else None
    named = directive.group(1) if directive and directive.group(1) in DELIMITERS else None
    skip += named is not None  # Excel's first line naming the delimiter: not the header
    text = "".join(lines[skip:])
    lower = path.lower()
    if named:
        _check_first_row(text, named, skip, path, key)
        return TextFormat(named, encoding, skip=skip, compression=compression, sep_line=True)
    if _is_json(text, lower):
        raise ConfigError(f"{key}={path!r} holds JSON, not a table of delimited text; mlpkit reads .csv, .tsv "
                          "and .parquet files: save it as one (pandas: pd.read_json(path).to_csv(...))")
    if re.sub(r"\.(gz|bz2|xz|zip|zst)$", "", lower).endswith((".tsv", ".tab")):
        _check_first_row(text, "\t", skip, path, key)
        return TextFormat("\t", encoding, skip=skip, compression=compression)
    try:
        sep = csv.Sniffer().sniff(text, delimiters=DELIMITERS).delimiter
    except csv.Error:
        sep = ","
    # The sniffer may settle on a delimiter that splits the header into one column (e.g. a
    # single-column sample); prefer the candidate that splits it into the most columns then.
    header = text.splitlines()[0] if text else ""
    widths = {c: len(next(csv.reader([header], delimiter=c), [])) for c in DELIMITERS}
    if widths.get(sep, 0) <= 1 and max(widths.values()) > 1:
        sep = max(widths, key=widths.get)
    _check_first_row(text, sep, skip, path, key)
    return TextFormat(sep, encoding, skip=skip, compression=compression)


_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _fields_text(line: int, saw: int, want: int, sep: Optional[str]) -> str:
    named = f" ({_sep_name(sep)})" if sep else ""
    return (f"line {line} has {saw} fields where the header names {want} columns: a value that holds the "
            f"delimiter{named} needs quotes (\"1,234.50\"), or the line has a delimiter too many")


def _check_first_row(text: str, sep: str, skip: int, path: str, key: str) -> None:
    """ConfigError when the first data row has more fields than the header and the extra ones hold values:
    pandas would quietly drop them (or, without index_col=False, shift every column by one). Empty extra
    fields (each line ending in a delimiter) lose nothing and are read; then every row of the sample (the
    file's first 64 KB) is checked the same way, as pandas drops a later row's value there too."""
    # universal newlines: a file of classic Mac line ends (\r alone) reads as pandas reads it
    reader = csv.reader(io.StringIO(text, newline=None), delimiter=sep, skipinitialspace=True)
    try:
        header = next(reader, [])
    except csv.Error:  # a sample the csv module cannot parse: pandas' own reading says what is wrong
        return
    line = reader.line_num
    trailing = False  # the first data row ends in empty fields past the header's: so may the others
    for row in _rows(reader):
        if any(f.strip() for f in row):  # a data row (pandas skips blank lines)
            if len(row) > len(header) and any(f.strip() for f in row[len(header):]):
                here = skip + line + 1
                if len(header) == 1 and not trailing:
                    raise ConfigError(f"{key}={path!r}: the first line ({header[0][:60]!r}) has one field and line "
                                      f"{here} has {len(row)}: if the header is on a later line, delete the lines "
                                      "above it (a title, a note)")
                raise ConfigError(f"{key}={path!r}: {_fields_text(here, len(row), len(header), sep)}")
            if not trailing and len(row) <= len(header):
                return  # pandas reads the rest as the header says, and its own error names a longer row
            trailing = True  # index_col=False would drop a later row's value there: the sample's rows are read
        line = reader.line_num


def _rows(reader) -> Iterator[List[str]]:
    """The rows of a csv reader until one it cannot parse."""
    try:
        yield from reader
    except csv.Error:
        return


def read_error_detail(err: BaseException, sep: Optional[str] = None, kind: bool = False) -> str:
    """What a reader's error says, in one line (`kind`: after its type's name); a row with a field too many
    explained."""
    text = str(err).strip()
    found = _FIELDS.search(text)
    if found:
        want, line, saw = (int(g) for g in found.groups())
        return _fields_text(line, saw, want, sep)
    if kind:
        return f"{type(err).__name__}: {text.splitlines()[0][:200] if text else 'unreadable'}"
    return text.splitlines()[0][:200] if text else type(err).__name__


def _is_json(text: str, lower: str) -> bool:
    """A JSON document or JSON lines (the first line an object or array, or a lone bracket that opens one),
    where a table's header was expected."""
    first = text.lstrip().split("\n", 1)[0].strip()
    if not first.startswith(("{", "[")):
        return False
    if lower.endswith((".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz")) or first in ("{", "["):
        return True
    try:
        json.loads(first)
    except ValueError:
        return first.startswith("[{") or first.startswith('{"')  # one long line cut off by the 64 KB read
    return True


def _read_options(fmt: TextFormat) -> Dict[str, Any]:
    return dict(sep=fmt.sep, encoding=fmt.encoding, na_values=EXTRA_MISSING, keep_default_na=True,
                skipinitialspace=True, engine="c", skiprows=fmt.skip, compression=fmt.compression,
                index_col=False)  # never the first column as an index when a data row has a field too many


def _read_text(path: str, fmt: TextFormat, **kwargs):
    """pd.read_csv with the sniffed format; a file that is not UTF-8 is read as Windows-1252."""
    import warnings

    import pandas as pd

    # lines that end in a delimiter: an empty field past the header's, which index_col=False leaves out (the
    # rows of the first 64 KB are checked to hold no value there by sniff_format)
    warnings.filterwarnings("ignore", message="Length of header or names does not match length of data",
                            category=pd.errors.ParserWarning)

    try:
        return pd.read_csv(path, **_read_options(fmt), **kwargs), fmt
    except UnicodeDecodeError as err:
        if fmt.encoding == "utf-16":
            raise
        bad = err.object[err.start:err.start + 1].hex() if hasattr(err, "object") else "?"
        fallback = fmt.as_encoding("cp1252", note=f"the file is not UTF-8 (byte 0x{bad} at position "
                              f"{err.start}); it was read as Windows-1252 (cp1252). Save it as UTF-8 if "
                              "its accented letters come out wrong")
        try:
            return pd.read_csv(path, **_read_options(fallback), **kwargs), fallback
        except UnicodeDecodeError:  # bytes cp1252 leaves undefined: latin-1 maps every byte
            fallback.encoding = "latin-1"
            return pd.read_csv(path, **_read_options(fallback), **kwargs), fallback


def read_table(path: str, key: str = "data.path") -> Tuple[Any, List[str]]:
    """The whole file as a DataFrame, and notes for the log. ConfigError for an unreadable file.
    `df.attrs["mlpkit_source"]` says where its rows come from, for messages naming a line (line_of)."""
    import pandas as pd

    path = check_file(path, key)
    notes: List[str] = []
    fmt: Optional[TextFormat] = None
    try:
        if is_parquet(path):
            import pyarrow.parquet as pq

            raw_names = [str(c) for c in pq.ParquetFile(path).schema_arrow.names]
            df = arrow_to_pandas(pq.read_table(path))
            df.columns = [str(c) for c in df.columns]
        else:
            fmt = sniff_format(path, key)
            df, fmt = _read_text(path, fmt)
            raw_names = _raw_header(path, fmt)
            blank = fmt.skip - fmt.sep_line
            if blank:
                notes.append(f"{key}: {blank} blank line{'s' if blank > 1 else ''} before the header "
                             f"skipped; the header is line {fmt.skip + 1}")
            if fmt.sep_line:
                notes.append(f"{key}: the line 'sep={fmt.sep}' (Excel's way to name the delimiter) is not a row; "
                             f"the header is line {fmt.skip + 1}")
            if fmt.note:
                notes.append(f"{key}: {fmt.note}")
            if fmt.sep != ",":
                notes.append(f"{key}: columns separated by {_sep_name(fmt.sep)}")
            if fmt.sep == ";":
                df = _decimal_commas(df, notes)
    except ConfigError:
        raise
    except pd.errors.EmptyDataError:
        raise ConfigError(f"{key}={path!r} holds no table (no header row)") from None
    except (pd.errors.ParserError, ValueError, OSError, UnicodeError) as err:
        first = read_error_detail(err, None if fmt is None else fmt.sep)
        raise ConfigError(f"{key}={path!r} is not a readable .csv, .tsv or .parquet table ({first})") from None
    except Exception as err:  # pyarrow's own errors for a damaged parquet file
        raise ConfigError(f"{key}={path!r} is not a readable table ({type(err).__name__}: "
                          f"{str(err).splitlines()[0][:200] if str(err) else 'unreadable'})") from None
    _check_header(df, raw_names, path, key)
    if len(df) == 0:
        raise ConfigError(f"{key}={path!r} has a header but no data rows")
    df.attrs["mlpkit_source"] = {"path": path, "sep": None if fmt is None else fmt.sep,
                                 "encoding": None if fmt is None else fmt.encoding,
                                 "skip": 0 if fmt is None else fmt.skip,
                                 "compression": None if fmt is None else fmt.compression}
    return df, notes


def _raw_header(path: str, fmt: TextFormat) -> List[str]:
    """The header row as written (pandas renames a repeated `x` to `x.1`, which hides the repeat)."""
    import pandas as pd

    options = {**_read_options(fmt), "keep_default_na": False, "na_values": None}
    try:
        row = pd.read_csv(path, header=None, nrows=1, dtype=str, **options)
    except pd.errors.EmptyDataError:
        return []
    return ["" if v != v else str(v) for v in row.iloc[0].tolist()] if len(row) else []


def line_of(df, row: int) -> str:
    """Where data row `row` (0 = the first, in the frame read_table returned) is in its file: 'line N'
    for a text file (counting quoted fields that span lines), 'row N' for Parquet or a frame."""
    source = getattr(df, "attrs", {}).get("mlpkit_source")
    if not source or not source.get("sep"):
        return f"row {row + 1}"
    try:
        if os.path.getsize(source["path"]) > LINE_SCAN_BYTES:  # counting lines would take seconds
            return f"data row {row + 1}"
        if source.get("compression"):  # counting lines means decompressing the file again
            return f"data row {row + 1}"
        with open(source["path"], encoding=source["encoding"], newline="") as fh:
            for _ in range(source["skip"]):
                fh.readline()
            reader = csv.reader(fh, delimiter=source["sep"], skipinitialspace=True)
            next(reader)  # the header
            seen, before = 0, reader.line_num
            for record in reader:
                if record and any(field.strip() for field in record) or len(record) > 1:
                    if seen == row:
                        return f"line {source['skip'] + before + 1}"
                    seen += 1
                before = reader.line_num
    except (OSError, UnicodeError, csv.Error, StopIteration):
        pass
    return f"data row {row + 1}"


def _sep_name(sep: str) -> str:
    return {"\t": "tabs", ";": "semicolons", "|": "vertical bars"}.get(sep, repr(sep))


_DECIMAL_COMMA = re.compile(r"^[+-]?(\d{1,3}(\.\d{3})+|\d*),\d+$")
# 3,14 / 1.234,56 / 7; not 1.234 alone, which pandas reads as a decimal point wherever a chunk of the file
# holds no decimal comma: thousands dots only beside a decimal comma, so every chunk reads a value alike
_COMMA_NUMBER = re.compile(r"^[+-]?(\d{1,3}(\.\d{3})+,\d+|\d*(,\d+)?)$")


def _decimal_commas(df, notes: List[str]):
    """`;`-separated files often write decimals with a comma (3,14), and thousands with dots beside it
    (1.234,56): a text column of such numbers, one of them at least with a decimal comma, becomes numbers."""
    import pandas as pd

    converted = []
    for name in df.columns:
        s = df[name]
        if s.dtype.kind in "biufcM":
            continue
        values = s.dropna().astype(str).str.strip()
        if len(values) and values.str.match(_DECIMAL_COMMA).any() and values.str.match(_COMMA_NUMBER).all():
            text = s.astype(str).str.strip().str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
            df[name] = pd.to_numeric(text.where(s.notna()), errors="coerce")
            converted.append(str(name))
    if converted:
        notes.append(f"decimal commas (3,14; with thousands dots 1.234,56) read as numbers in: {', '.join(converted)}")
    return df


def _check_header(df, raw_names: Sequence[str], path: str, key: str) -> None:
    names = [str(c) for c in df.columns]
    seen = set()
    for name in raw_names:  # as written: `v` and `v.1` are two names, `v` twice is one name twice
        if name.strip() and name in seen:
            raise ConfigError(f"{key}={path!r}: the column name {name!r} appears more than once in the "
                              "header; give each column its own name")
        seen.add(name)
    unnamed = [c for c in names if c.startswith("Unnamed: ")]
    if unnamed and len(unnamed) == len(names):
        raise ConfigError(f"{key}={path!r}: the first row is not a header of column names")
    if len(names) < 2 and key == "data.path":  # new rows to predict may hold one feature and no target
        raise ConfigError(f"{key}={path!r} has {len(names)} column ({names[0]!r}); it needs at least one "
                          "feature column and a target column (is the delimiter , ; tab or |?)")


def header_of(path: str, key: str = "input") -> List[str]:
    """The column names of a table, without reading its rows."""
    if is_parquet(path):
        import pyarrow.parquet as pq

        return [str(c) for c in pq.ParquetFile(path).schema_arrow.names]
    fmt = sniff_format(path, key)
    df, _ = _read_text(path, fmt, nrows=0)
    return [str(c) for c in df.columns]


def read_names(raw: Sequence[str], names: Sequence[Any]) -> List[str]:
    """The header as written (`raw`, from _raw_header), each empty field by the name pandas reads it by
    (`names`, pandas' columns of the same file: `Unnamed: <position>`), which is the name training knows it
    by (R's write.csv leaves the row names' header field empty)."""
    if len(raw) != len(names):
        return list(raw)
    return [written if written.strip() else str(name) for written, name in zip(raw, names)]


def _check_repeats(names: Sequence[Any], wanted: set, path: str, key: str) -> None:
    """A ConfigError when a column that is read is named twice in the header: which one is meant?"""
    from collections import Counter

    counts = Counter(str(n) for n in names)
    for name in sorted({n for n, k in counts.items() if k > 1} & wanted):
        raise ConfigError(f"{key} {path!r}: the column name {name!r} appears more than once in the header; "
                          "give each column its own name")


def iter_chunks(path: str, columns: Sequence[str], text_columns: Sequence[str] = (),
                chunk_rows: int = 50_000, key: str = "input") -> Iterator[Any]:
    """The file's `columns` as DataFrames of up to `chunk_rows` rows, in file order; `text_columns`
    are read as the text written in the file (category values), the rest as pandas infers them."""
    wanted = set(columns)
    if is_parquet(path):
        import pyarrow.parquet as pq

        _check_repeats(pq.ParquetFile(path).schema_arrow.names, wanted, path, key)
        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows, columns=list(columns)):
            yield arrow_to_pandas(batch)
        return
    fmt = sniff_format(path, key)
    try:
        raw = _raw_header(path, fmt)
    except UnicodeDecodeError:
        raw = _raw_header(path, fmt.as_encoding("cp1252"))
    _check_repeats(raw, wanted, path, key)
    text = {c: str for c in text_columns}
    # every column is parsed, the wanted ones kept: with usecols= pandas drops the fields of a row that has
    # more than the header (an unquoted 1,000.00) in silence, where without it the row is an error
    def keep(names):
        return [name for name in read_names(raw, names) if name in wanted]

    done = 0  # rows yielded: a restart after a decoding error must not yield them again
    try:
        reader, fmt = _read_text(path, fmt, dtype=text, chunksize=chunk_rows)
        for chunk in reader:
            chunk = chunk[keep(chunk.columns)]
            yield _decimal_commas(chunk, []) if fmt.sep == ";" else chunk
            done += len(chunk)
    except UnicodeDecodeError:  # a later chunk is not UTF-8: start again as Windows-1252, after `done` rows
        reader, _ = _read_text(path, fmt.as_encoding("cp1252"), dtype=text, chunksize=chunk_rows)
        for chunk in reader:
            if done >= len(chunk):
                done -= len(chunk)
                continue
            chunk, done = chunk.iloc[done:][keep(chunk.columns)], 0
            yield _decimal_commas(chunk, []) if fmt.sep == ";" else chunk


# ---------------------------------------------------------------------------
# Column roles


@dataclass
class Column:
    """One column of the table and what became of it."""

    name: str
    kind: str  # numeric | category | boolean | dropped
    missing: int = 0
    categories: Optional[int] = None  # distinct values (categories, booleans)
    reason: str = ""  # why it was left out
    codes: str = "text"  # how values are written: text | number | boolean (categories); date (numeric)
    date_format: Optional[str] = None  # a date column's format (strftime codes): read as days since 1970
    inputs: int = 0  # model inputs it became (filled once the preprocessing is fitted)
    vocabulary: Optional[List[str]] = None  # a category's values in the train split, sorted (index = code)
    scale: float = 1.0  # a numeric column is divided by this power of two first (its train values' size)
    out_of_range: int = 0  # values infinite or too large for the column's scale: counted in `missing`
    encoding: str = "onehot"  # a category's inputs: onehot | code (one input holding its code; data.onehot_max)
    rare: List[int] = field(default_factory=list)  # code: vocabulary indices sharing the last code with unseen values

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass
class Roles:
    columns: List[Column] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    # each category column's values as (codes, distinct values) from the one hashing pass that found its
    # distinct values (pandas.factorize: -1 for missing, the distinct values in order of appearance)
    factorized: Dict[str, Tuple[np.ndarray, Any]] = field(default_factory=dict, repr=False)

    @property
    def numeric(self) -> List[str]:
        return [c.name for c in self.columns if c.kind == "numeric"]

    @property
    def categorical(self) -> List[str]:
        return [c.name for c in self.columns if c.kind in ("category", "boolean")]

    @property
    def used(self) -> List[Column]:
        return [c for c in self.columns if c.kind != "dropped"]


def target_column(columns: Sequence[Any], target: Optional[str], path: Any) -> str:
    """data.target's column of a table with these columns (None: the last), or a ConfigError naming the
    columns, with the closest name."""
    names = [str(c) for c in columns]
    target = names[-1] if target is None else str(target)
    if target not in names:
        close = suggest(target, names)
        hint = f" (did you mean {close!r}?)" if close is not None else ""
        raise ConfigError(f"data.target={target!r} is not a column of {path}{hint}; columns: {', '.join(names)}")
    return target


def suggest(name: str, names: Sequence[str]) -> Optional[str]:
    """The column a mistyped `name` most likely means: the same name in other case or without
    surrounding spaces first, else the closest by difflib (case ignored); None when none is close."""
    names = [str(n) for n in names]
    folded = name.strip().casefold()
    same = [n for n in names if n.strip().casefold() == folded]
    if same:
        return same[0]
    by_fold = {}
    for n in names:
        by_fold.setdefault(n.strip().casefold(), n)
    close = difflib.get_close_matches(folded, list(by_fold), n=1, cutoff=0.6)
    return by_fold[close[0]] if close else None


def unknown_column(key: str, name: str, names: Sequence[str], where: str = "the table") -> ConfigError:
    """The error for `key` naming a column that is not there, with the likeliest meant one."""
    close = suggest(name, names)
    hint = f" (did you mean {close!r}?)" if close is not None else ""
    shown = ", ".join(names) if len(names) <= 40 else ", ".join(names[:40]) + f", ... ({len(names)} in all)"
    return ConfigError(f"{key} names {name!r}, which is not a column of {where}{hint}; columns: {shown}")


def _unknown_columns(key: str, asked: Sequence[str], names: Sequence[str]) -> None:
    for name in asked:
        if name not in names:
            raise unknown_column(key, name, names)


def _as_list(value: Any) -> List[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def assign_roles(df, target: str, drop: Any = (), categorical: Any = ()) -> Roles:
    """Each feature column's role, from its values and data.drop / data.categorical."""
    names = [str(c) for c in df.columns]
    drop, categorical = _as_list(drop), _as_list(categorical)
    _unknown_columns("data.drop", drop, names)
    _unknown_columns("data.categorical", categorical, names)
    if target in drop:
        raise ConfigError(f"data.drop names the target column {target!r}; leave it out of data.drop")
    if target in categorical:
        raise ConfigError(f"data.categorical names the target column {target!r}; the target's kind is set "
                          "by data.task (binary or multiclass for classes)")
    import pandas as pd

    roles = Roles()
    for name in names:
        if name == target:
            continue
        s = df[name]
        missing = int(s.isna().sum())
        col = Column(name, "numeric", missing)
        number = s.dtype.kind in "iuf" and name not in categorical
        n_inf, codes = 0, None
        objects = s.dtype == object  # numpy objects (a Parquet list or record column among them), not text
        if number or objects:
            present = s.dropna()
            if s.dtype.kind == "f" and name not in categorical:  # inf is missing to the model: not a value
                finite = np.isfinite(present.to_numpy())
                n_inf = int(len(present) - finite.sum())
                present = present[finite] if n_inf else present
        nested = objects and _nested(present)
        if number or nested:
            # a number column needs only "one value or more": its min and max, no hashing of every row
            distinct = None
            n_distinct = 2 if nested else 0 if len(present) == 0 else 1 if present.min() == present.max() else 2
        else:
            # once: the checks below read the distinct values (in order of appearance, as Series.unique
            # gives them), not every row, and a category column is later put in order as these codes
            codes, distinct = pd.factorize(s.array if isinstance(s.dtype, pd.api.extensions.ExtensionDtype)
                                           else s.to_numpy(), use_na_sentinel=True)
            n_distinct = len(distinct)
        n_present = len(s) - missing - n_inf
        first_value = distinct[0] if distinct is not None and n_distinct else present.iloc[0] if n_present else None
        if name in drop:
            col.kind, col.reason = "dropped", "data.drop"
        elif nested:
            col.kind, col.reason = "dropped", "nested values (lists or records) are not used"
            roles.notes.append(f"column {name!r} is left out: it holds lists or records, not one value per row")
        elif n_present == 0:
            col.kind, col.reason = "dropped", "every value is missing" + (" or infinite" if n_inf else "")
            col.missing += n_inf
            roles.notes.append(f"column {name!r} is left out: {col.reason}")
        elif n_distinct == 1:
            col.kind, col.reason = "dropped", "constant"
            col.missing += n_inf
            also = f" (and {n_inf} infinite, treated as missing)" if n_inf else ""
            roles.notes.append(f"column {name!r} is left out: it holds one value ({str(first_value)!r}) "
                               f"in every row{also}")
        elif _is_boolean(s, distinct):
            col.kind, col.categories, col.codes = "boolean", n_distinct, "boolean"
        elif s.dtype.kind in "iuf":
            if name in categorical:
                col.kind, col.categories, col.codes = "category", n_distinct, "number"
            elif _counts_rows(present):
                roles.warnings.append(
                    f"column {name!r} counts the rows in file order ({present.iloc[0]:g}, {present.iloc[1]:g}, "
                    f"...): if it is a row number or an id, leave it out with {drop_override(name)}")
        elif s.dtype.kind == "M":  # a column of timestamps (a Parquet timestamp or date): as text dates are
            col.codes, col.date_format = "date", ISO_DATES
            roles.notes.append(f"column {name!r} holds dates and times: used as a number, days since "
                               "1970-01-01 (UTC)")
        elif s.dtype.kind == "m":
            col.kind, col.reason = "dropped", "durations are not used"
            roles.notes.append(f"column {name!r} is left out: it holds durations")
        elif name not in categorical and (fmt := _date_format(distinct)) is not None:
            col.codes, col.date_format = "date", fmt
            roles.notes.append(f"column {name!r} holds dates ({fmt}): used as a number, days since 1970-01-01")
        elif name not in categorical and _formatted_number_column(distinct):
            shown = ", ".join(repr(str(v).strip()) for v in distinct[:2])
            roles.notes.append(f"column {name!r} holds numbers written with a currency sign, thousands "
                               f"separators or a percent sign ({shown}, ...): read as the numbers without them")
        elif n_distinct == n_present and name not in categorical and n_present > 2:
            col.kind, col.reason = "dropped", "identifier (every value distinct)"
            roles.notes.append(f"column {name!r} is left out: it holds text with a different value in "
                               "every row, so it can only be an identifier")
        else:
            col.kind, col.categories = "category", n_distinct
            mostly_numbers = _mostly_numbers(distinct)
            if mostly_numbers is not None:
                first = int(np.flatnonzero((s.astype(str).str.strip() == mostly_numbers).to_numpy())[0])
                roles.warnings.append(
                    f"column {name!r} holds numbers but also text such as {mostly_numbers!r} (at "
                    f"{line_of(df, first)}); it is used as a category. Mark missing values in it as empty "
                    "cells or NA to use it as a number")
        if codes is not None and col.kind in ("category", "boolean") and s.dtype.kind not in "iufb" and \
                not isinstance(s.dtype, pd.CategoricalDtype):  # a Categorical already holds its codes
            roles.factorized[name] = (_small_codes(codes, n_distinct), distinct)
        roles.columns.append(col)
    if not roles.used:
        raise ConfigError("no feature column is left to train on: "
                          + "; ".join(f"{c.name!r} ({c.reason})" for c in roles.columns)
                          if roles.columns else "the table holds only the target column")
    return roles


def _small_codes(codes: np.ndarray, n: int) -> np.ndarray:
    """pandas.factorize's codes (-1: missing) in the smallest signed integer type that holds `n` of them."""
    for dtype in (np.int8, np.int16, np.int32):
        if n < np.iinfo(dtype).max:
            return codes.astype(dtype)
    return codes


def _nested(present) -> bool:
    """A column of lists, arrays or records (a Parquet list, map or struct column), from its first values."""
    return any(isinstance(v, (list, tuple, dict, set, np.ndarray)) for v in present.iloc[:100])


def drop_override(name: str) -> str:
    """`data.drop=[name]` as a shell command line takes it (quoted where Hydra or the shell need it)."""
    if re.fullmatch(r"[A-Za-z_][\w.-]*", name):
        return f"data.drop=[{name}]"
    return "'data.drop=[\"" + name.replace("'", "'\\''").replace('"', '\\"') + "\"]'"


def _is_boolean(s, distinct) -> bool:
    """A True/False column: bool, or text whose distinct values (in order of appearance) are true/false."""
    if s.dtype.kind == "b":
        return True
    if s.dtype.kind in "iuf" or len(distinct) == 0:
        return False
    values = {str(v).strip().lower() for v in distinct[:3]}
    return len(values) <= 2 and values <= {"true", "false"}


_DATE_LIKE = re.compile(r"^\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?$")


# '$5,251', '1,234.50', '-€3.5', '52.5%', '12 %': a number with thousands separators (commas every three
# digits), a currency sign before it or a percent sign after it
_FORMATTED_NUMBER = re.compile(r"^[-+]?[$€£¥]?\s?[-+]?(?=\.?\d)(\d{1,3}(,\d{3})+|\d*)(\.\d+)?\s?%?$")
_NUMBER_SIGNS = re.compile(r"[$€£¥,%\s]")


def _per_distinct(values, parse: Callable[[Any], np.ndarray]) -> np.ndarray:
    """`parse` (text -> float64) applied once to each distinct present value, as stripped text, and taken
    back to every row; NaN where a value is missing. A table repeats its values: this is the parse of a
    column of a million rows in the time of its few thousand distinct ones."""
    import pandas as pd

    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    out = np.full(len(codes), np.nan)
    present = codes >= 0
    out[present] = parse(pd.Series(uniques, dtype=object).astype(str).str.strip())[codes[present]]
    return out


def formatted_numbers(values) -> np.ndarray:
    """Numbers written with thousands separators, a currency or a percent sign ('$5,251', '1,234.5',
    '52.5%') as floats (5251, 1234.5, 52.5); NaN for any other value."""
    import pandas as pd

    def parse(text):
        numbers = text.str.replace(_NUMBER_SIGNS, "", regex=True).where(text.str.match(_FORMATTED_NUMBER))
        return pd.to_numeric(numbers, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)

    return _per_distinct(pd.Series(values, dtype=object), parse)


def lenient_numbers(values) -> Tuple[np.ndarray, np.ndarray]:
    """(values as float64, as a numeric column reads them: what pandas parses, then numbers written with
    separators or signs; NaN for missing values and any other text; which values were read only as such
    formatted numbers)."""
    import pandas as pd

    s = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    numbers = np.array(pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan))
    text = np.isnan(numbers) & s.notna().to_numpy()
    if text.any():
        numbers[text] = formatted_numbers(s.to_numpy(dtype=object)[text])
    return numbers, text & ~np.isnan(numbers)


def _formatted_number_column(distinct) -> bool:
    """A text column whose every distinct value is a number, some of them with separators or signs."""
    import pandas as pd

    values = pd.Series(distinct, dtype=object).astype(str).str.strip()
    head = values[:2000]
    if not len(values) or not head.str.match(_FORMATTED_NUMBER).all() or \
            not values.str.contains(r"[$€£¥,%]").any():
        return False
    return bool(values.str.match(_FORMATTED_NUMBER).all())


ISO_DATES = "ISO8601"  # pandas' name for any ISO 8601 date or time: the format of a column of timestamps


def _date_format(distinct) -> Optional[str]:
    """The format of a text column whose values are dates (2007-11-11, 11/11/2007, 25/12/2007 ...; at least
    95% of its distinct values, given in order of appearance), else None. Day and month: the order that
    reads more of the values, month first where both read all of them (as pandas guesses)."""
    import warnings

    import pandas as pd
    from pandas.tseries.api import guess_datetime_format

    values = pd.Series(distinct[:2000]).astype(str).str.strip()
    if not len(values) or values.str.match(_DATE_LIKE).mean() < 0.95:
        return None
    best: Optional[Tuple[str, float]] = None
    for dayfirst in (False, True):  # 03/01/2015: month first unless a day over 12 says otherwise (25/12/2020)
        fmt = guess_datetime_format(values.iloc[0], dayfirst=dayfirst)
        if fmt is None or (best is not None and fmt == best[0]):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            share = float(pd.to_datetime(values, format=fmt, errors="coerce").notna().mean())
        if best is None or share > best[1]:
            best = (fmt, share)
    return best[0] if best is not None and best[1] >= 0.95 else None  # the odd impossible date becomes missing


def to_days(s, fmt: str) -> np.ndarray:
    """A date column as float days since 1970-01-01 (NaN where missing or not a date in `fmt`); times with
    an offset, and timestamps with a time zone, count in UTC. A column of timestamps is read as it is; a
    column of text by `fmt` (strftime codes, or ISO_DATES: any ISO 8601 date or time, as a file written
    from a column of timestamps holds)."""
    import pandas as pd

    def days(parsed) -> np.ndarray:
        since = (parsed.dt.tz_localize(None) - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)
        return since.to_numpy(dtype=np.float64, na_value=np.nan)

    if s.dtype.kind == "M":
        return days(pd.to_datetime(s, utc=True))
    return _per_distinct(s, lambda text: days(pd.to_datetime(text, format=fmt, errors="coerce", utc=True)))


def _counts_rows(present) -> bool:
    """An integer column whose values go up by one from row to row (a row number)."""
    if len(present) < 3:
        return False
    v = present.to_numpy(dtype=np.float64)
    return bool(np.all(v == np.round(v)) and np.all(np.diff(v) == 1))


def _mostly_numbers(distinct) -> Optional[str]:
    """A text value of a column whose other distinct values are numbers (at least 90% of them), else None."""
    import pandas as pd

    values = pd.Series(distinct).astype(str).str.strip()  # distinct values: cheap on large tables
    numbers = pd.Series(lenient_numbers(values)[0], index=values.index)  # '$5,251' counts
    share = float(numbers.notna().mean())
    if 0.9 <= share < 1.0:
        return str(values[numbers.isna()].iloc[0])
    return None


def canonical_categories(s, codes: str):
    """A category column's values as strings, written the same whichever way the file was read
    (415 and 415.0 as '415', True and 'true' as 'True'); missing values stay missing. A Series."""
    import pandas as pd

    present = s.notna()
    if codes == "number":
        nums = pd.to_numeric(s if s.dtype.kind in "iufb" else s.astype(str).str.strip(), errors="coerce")
        v = nums.to_numpy(dtype=np.float64, na_value=np.nan)
        text = s.astype(str).str.strip().to_numpy(dtype=object)
        finite = np.isfinite(v)
        whole = finite & (v == np.round(v)) & (np.abs(v) < 2 ** 62)
        text[whole] = v[whole].astype(np.int64).astype(str)
        other = finite & ~whole
        text[other] = v[other].astype(str)
        out = pd.Series(text, index=s.index, dtype=object)
    elif codes == "boolean":
        text = s.astype(str).str.strip()
        lower = text.str.lower()
        out = text.mask(lower == "true", "True").mask(lower == "false", "False")
    else:
        out = s.astype(str).str.strip()
    return out.where(present)


TABLE_ROWS = 40  # the column table shows at most this many feature columns, the plain numeric ones left out first


def format_columns(columns: Sequence[Column], target: str, task: str, n_target_missing: int = 0) -> str:
    """The column table the log shows at start. A wide table shows every column that is not a plain number
    (a category, a date, one left out, one with missing values) first, up to TABLE_ROWS in all, in file
    order, and counts the rest by kind."""
    shown = list(columns)
    if len(columns) > TABLE_ROWS:
        plain = [c.kind == "numeric" and c.codes != "date" and not c.missing for c in columns]
        order = sorted(range(len(columns)), key=lambda i: plain[i])[:TABLE_ROWS]  # stable: file order within
        shown = [columns[i] for i in sorted(order)]
    rows = [("column", "kind", "missing", "categories", "inputs")]
    for c in shown:
        kind = f"left out: {c.reason}" if c.kind == "dropped" else c.kind
        if c.kind == "category" and c.codes == "number":
            kind = "category (numeric codes)"
        if c.codes == "date":
            kind = "numeric (date, days)"
        if c.encoding == "code":
            kind += ", one code input"
        rows.append((c.name, kind, str(c.missing), "-" if c.categories is None else str(c.categories),
                     str(c.inputs)))
    rows.append((target, f"target ({task})", str(n_target_missing), "-", "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for j, r in enumerate(rows):
        lines.append(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}  "
                     f"{r[4]:>{widths[4]}}")
        if j == 0:
            lines.append("-" * len(lines[0]))
    if len(shown) < len(columns):
        kept = {id(c) for c in shown}
        rest = Counter("left out" if c.kind == "dropped" else c.kind for c in columns if id(c) not in kept)
        kinds = ", ".join(f"{n:,} {k}" for k, n in rest.items())
        lines.insert(len(lines) - 1, f"... {len(columns) - len(shown):,} more columns ({kinds}; every column: "
                                     "preprocessing.json in the run directory)")
    total = sum(c.inputs for c in columns)
    used = sum(1 for c in columns if c.kind != "dropped")
    lines.append("-" * len(lines[0]))
    lines.append(f"{used} of {len(columns)} feature columns used; {total} model inputs")
    return "\n".join(lines)
