"""helpers.data.svamp: SVAMP's records read into the suite's columns (on hand-made records in upstream's format), the
local copy or the pinned download (a local HTTP server stands in for GitHub), and, where the real SVAMP.json is
here (``$GRPO_SVAMP_DIR`` or the user cache), its rows and the check that
no training row is one of its problems."""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import threading
from pathlib import Path

import pytest

from helpers.data.answers import normalize_answer
from helpers.data.rows import DataUnavailableError, NoUsableRowsError
from helpers.data.svamp import (
    SVAMP_DIR_ENV,
    SVAMP_SHA256,
    default_svamp_file,
    download_svamp,
    load_svamp,
    svamp_answer,
    svamp_cache_file,
    svamp_rows,
)

# Made-up records in SVAMP.json's format (not upstream's problems), with what each should become.
RECORDS = [
    {"ID": "chal-1", "Body": "Ann had 12 stickers. She gave 5 to Ben.", "Question": "How many stickers does Ann have now?",
     "Equation": "( 12.0 - 5.0 )", "Answer": 7.0, "Type": "Subtraction"},
    {"ID": "chal-2", "Body": "A box holds 6 rows of 4 eggs. If 3 eggs broke", "Question": "How many eggs are whole?",
     "Equation": "( ( 6.0 * 4.0 ) - 3.0 )", "Answer": 21.0, "Type": "Subtraction"},
    {"ID": "chal-3", "Body": "7 cakes are shared by 2 friends.", "Question": "How much cake does each get?",
     "Equation": "( 7.0 / 2.0 )", "Answer": 3.5, "Type": "Common-Division"},
    {"ID": "chal-4", "Body": "He has 8 planks.", "Question": "How many planks does he have?",
     "Equation": "8.0", "Answer": 8.0, "Type": "Common-Division"},
    # dropped: the equation disagrees with the answer; no plain number; code, not arithmetic; no question; not a record
    {"ID": "chal-5", "Body": "Tom had 4 apples and picked 3 more.", "Question": "How many now?",
     "Equation": "( 4.0 + 3.0 )", "Answer": 1.0, "Type": "Addition"},
    {"ID": "chal-6", "Body": "1 pie for 3 people.", "Question": "How much each?",
     "Equation": "( 1.0 / 3.0 )", "Answer": 0.3333333333333333, "Type": "Common-Division"},
    {"ID": "chal-7", "Body": "x", "Question": "y?", "Equation": "__import__('os').getcwd()", "Answer": 0.0, "Type": "?"},
    {"ID": "chal-8", "Body": "Sam has 2 cats.", "Equation": "( 2.0 + 0.0 )", "Answer": 2.0, "Type": "Addition"},
    "not a record",
]


def _write(folder: Path, records=RECORDS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / "SVAMP.json"
    file.write_text(json.dumps(records, indent=4))
    return file


@pytest.fixture()
def no_svamp(monkeypatch, tmp_path):
    """No local copy anywhere: an empty cache, no $GRPO_SVAMP_DIR."""
    monkeypatch.setenv("GRPO_NOTEBOOKS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(SVAMP_DIR_ENV, raising=False)


def test_records_become_rows_with_the_exact_answer():
    rows, dropped = svamp_rows(RECORDS)
    assert dropped == 5
    by_id = {r["id"]: r for r in rows}
    assert sorted(by_id) == ["chal-1", "chal-2", "chal-3", "chal-4"]
    row = by_id["chal-2"]
    assert row["question"] == "A box holds 6 rows of 4 eggs. If 3 eggs broke How many eggs are whole?"
    assert (row["answer"], row["reasoning"], row["difficulty"], row["source"]) == ("21", "(6 * 4) - 3 = 21", 2, "svamp")
    assert row["prompt"][-1] == {"role": "user", "content": row["question"]}
    assert row["completion"][0]["content"].endswith("<answer>21</answer>")
    assert by_id["chal-3"]["answer"] == "3.5" and by_id["chal-4"]["answer"] == "8"
    assert by_id["chal-4"]["difficulty"] == 1  # a bare number: no operation, counted as one step
    # a fixed order by a hash of the ID (not upstream's, which groups variations of one problem), whatever the input order
    assert [r["id"] for r in rows] == [r["id"] for r in svamp_rows(list(reversed(RECORDS)))[0]]
    assert [r["id"] for r in rows] == sorted(by_id, key=lambda i: hashlib.sha256(i.encode()).hexdigest())


def test_answers_come_from_the_equation_and_must_agree():
    assert svamp_answer("( ( 4.0 - 2.0 ) + 3.0 )", 5.0) == ("5", "(4 - 2) + 3 = 5", 2)
    assert svamp_answer("( ( 4.0 - 2.0 ) + 3.0 )", 1.0) is None  # upstream's chal-680 says 1
    assert svamp_answer("( 0.1 + 0.2 )", 0.3)[0] == "0.3"  # exact, not 0.30000000000000004
    for bad in ("( 2.0 ** 3.0 )", "( 1.0 / 0.0 )", "( 1.0 +", "abs(-1)", "True + 1", "'1' + '2'", "1" + "+1" * 5000):
        assert svamp_answer(bad, 8.0) is None, bad


def test_load_a_local_copy(tmp_path, caplog):
    file = _write(tmp_path / "svamp")
    ds = load_svamp(file)
    assert len(ds) == 4 and set(ds.column_names) >= {"prompt", "completion", "answer", "question", "id", "source"}
    assert "4 of 4 usable problems, 5 dropped" in ds.info.description
    assert "NOT the upstream file" in ds.info.description and "not upstream's SVAMP.json" in caplog.text
    assert list(load_svamp(tmp_path / "svamp", limit=2)["id"]) == list(ds["id"])[:2]  # a folder holding it; the first rows
    with pytest.raises(DataUnavailableError, match=r"no SVAMP file at .*; fix: pass SVAMP.json"):
        load_svamp(tmp_path / "elsewhere.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(NoUsableRowsError, match="is not JSON"):
        load_svamp(tmp_path / "bad.json")
    with pytest.raises(NoUsableRowsError, match=r"no usable SVAMP record \(5 dropped"):
        load_svamp(_write(tmp_path / "none", RECORDS[4:]))


def test_where_the_local_copy_is_found(monkeypatch, tmp_path, no_svamp):
    assert default_svamp_file() is None
    with pytest.raises(DataUnavailableError, match=f"no local SVAMP.json; fix: set {SVAMP_DIR_ENV}"):
        load_svamp(download=False)
    cached = _write(svamp_cache_file().parent)
    assert svamp_cache_file() == tmp_path / "cache" / "svamp" / "SVAMP.json" and default_svamp_file() == cached
    monkeypatch.setenv(SVAMP_DIR_ENV, str(tmp_path / "mine"))
    mine = _write(tmp_path / "mine", RECORDS[:1])
    assert default_svamp_file() == mine and len(load_svamp()) == 1  # the variable first: a folder ...
    monkeypatch.setenv(SVAMP_DIR_ENV, str(mine))
    assert default_svamp_file() == mine  # ... or the file itself


class _Server:
    """A local HTTP server answering every GET with ``body`` (GitHub's stand-in)."""

    def __init__(self, body: bytes):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/SVAMP.json"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None


def test_download_checks_the_pinned_digest(tmp_path, monkeypatch, no_svamp):
    body = json.dumps(RECORDS).encode()
    server = _Server(body)
    try:
        dest = tmp_path / "dl" / "SVAMP.json"
        with pytest.raises(DataUnavailableError, match=f"not the pinned {SVAMP_SHA256}; nothing was written"):
            download_svamp(dest, url=server.url)
        assert not dest.parent.exists() or list(dest.parent.iterdir()) == []
        assert download_svamp(dest, url=server.url, sha256=hashlib.sha256(body).hexdigest()).read_bytes() == body
        assert [p.name for p in dest.parent.iterdir()] == ["SVAMP.json"]  # no temporary file left
        # load_svamp with no local copy downloads into the cache, once
        monkeypatch.setattr("helpers.data.svamp.SVAMP_URL", server.url)
        monkeypatch.setattr("helpers.data.svamp.SVAMP_SHA256", hashlib.sha256(body).hexdigest())
        assert len(load_svamp()) == 4 and svamp_cache_file().read_bytes() == body
        server.close()
        assert len(load_svamp()) == 4  # from the cache now
    finally:
        server.close()
    with pytest.raises(DataUnavailableError, match=r"could not be downloaded from .*; fix: put SVAMP.json"):
        download_svamp(tmp_path / "x.json", url=server.url, timeout=2)  # the server is gone
    assert not (tmp_path / "x.json").exists()


# ---------------------------------------------------------------------------------------------
# The real file, where it is here
# ---------------------------------------------------------------------------------------------


@pytest.fixture()
def upstream() -> Path:
    file = default_svamp_file()
    if file is None or hashlib.sha256(file.read_bytes()).hexdigest() != SVAMP_SHA256:
        pytest.skip(f"upstream SVAMP.json not here (set {SVAMP_DIR_ENV}, or let load_svamp download it once)")
    return file


def test_the_upstream_file(upstream):
    ds = load_svamp(upstream)
    assert len(ds) == 999 and "999 of 999 usable problems, 1 dropped" in ds.info.description  # chal-680: 4 - 2 + 3 != 1
    assert "chal-680" not in set(ds["id"]) and len(set(ds["id"])) == 999
    assert all(re.fullmatch(r"\d+", a) for a in ds["answer"])  # every answer a whole number
    assert sorted(set(ds["difficulty"])) == [1, 2]
    first = list(ds["id"][:5])
    assert first == ["chal-737", "chal-810", "chal-170", "chal-763", "chal-838"]  # the fixed order: the same everywhere


def _normal(text: str) -> str:
    """A question reduced to its words and numbers: case, spacing and punctuation ignored, ``$ 3.0`` read as ``3``."""
    tokens = re.findall(r"[^\W\d_]+|\d+(?:\.\d+)?", text.casefold())
    return " ".join(normalize_answer(t) or t if t[0].isdigit() else t for t in tokens)


def _assert_none_is_svamp(training: list[str], upstream: Path) -> None:
    svamp = {_normal(q) for q in load_svamp(upstream)["question"]}
    assert len(svamp) > 950
    found = {_normal(q) for q in training} & svamp
    assert not found, f"{len(found)} training questions are SVAMP problems, e.g. {sorted(found)[:2]}"
    # the check can fail: a SVAMP question slipped into training is found, whatever its spacing and case
    planted = load_svamp(upstream)[7]["question"].upper().replace(" ", "  ")
    assert {_normal(q) for q in [*training[:10], planted]} & svamp


def test_normalised_questions():
    assert _normal("Dan had $ 3.0 left, with him.") == _normal("dan had $3 LEFT with him") == "dan had 3 left with him"
    assert _normal("Dan had $ 3.5 left") != _normal("Dan had $ 35 left")


def test_no_synthetic_training_row_is_a_svamp_problem(upstream):
    """SVAMP is for evaluation only: no synthetic question training can draw (split None, as the SFT and GRPO
    code paths draw them, for the seeds of the published runs; both styles) equals one of SVAMP's after normalising."""
    from helpers.data.synthetic import synthetic_dataset

    training = []
    for seed in (0, 1, 2, 3407):
        training += synthetic_dataset(2000, seed=seed)["question"]
    training += synthetic_dataset(2000, seed=0, style="paraphrased")["question"]
    _assert_none_is_svamp(training, upstream)


def test_no_gsm8k_training_row_is_a_svamp_problem(upstream, gsm8k_dir):
    from helpers.data.gsm8k import load_gsm8k

    training = list(load_gsm8k("train", gsm8k_dir)["question"])
    assert len(training) > 7000
    _assert_none_is_svamp(training, upstream)
