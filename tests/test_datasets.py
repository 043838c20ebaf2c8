"""Dataset registry and loaders: manifests, checksums and downloads, the real NSL-KDD files, and every
kind of dirt a real CSV brings (each case in a tiny file written here)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
import urllib.error
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from advgen.errors import InvalidDataError
from advgen_datasets import KINDS, ROLES, fetch, get_manifest, load_table, registry
from advgen_datasets.manifest import parse_manifest

NSL_FEATURES = (
    "duration protocol_type service flag src_bytes dst_bytes land wrong_fragment urgent hot "
    "num_failed_logins logged_in num_compromised root_shell su_attempted num_root num_file_creations "
    "num_shells num_access_files num_outbound_cmds is_host_login is_guest_login count srv_count "
    "serror_rate srv_serror_rate rerror_rate srv_rerror_rate same_srv_rate diff_srv_rate "
    "srv_diff_host_rate dst_host_count dst_host_srv_count dst_host_same_srv_rate dst_host_diff_srv_rate "
    "dst_host_same_src_port_rate dst_host_srv_diff_host_rate dst_host_serror_rate "
    "dst_host_srv_serror_rate dst_host_rerror_rate dst_host_srv_rerror_rate"
).split()

NSL_FILES = {"train20": "KDDTrain+_20Percent.txt", "test": "KDDTest+.txt", "test21": "KDDTest-21.txt"}
NSL_ROWS = {"train20": 25_192, "test": 22_544, "test21": 11_850}


@pytest.fixture
def empty_data(tmp_path, monkeypatch) -> Path:
    """An empty data dir, and no network: a test that reaches the download path fails loudly."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("ADVGEN_DATA", str(root))

    def no_network(url, dest, *, progress, label):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(fetch, "download_url", no_network)
    return root


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- manifests -------------------------------------------------------------------------------------


def test_every_manifest_parses_with_valid_kinds_and_roles():
    reg = registry()
    assert {"nsl-kdd", "cic-ids2017", "unsw-nb15"} <= set(reg)
    for name, m in reg.items():
        assert m.default_split in m.splits
        for split in m.splits.values():
            layout = m.layout(split)
            assert layout.columns, (name, split.name)
            for c in layout.columns:
                assert c.kind in KINDS and c.role in ROLES, (name, c)
            labels = [c for c in layout.columns if c.role == "label"]
            assert len(labels) == 1 and labels[0].kind == "categorical", name
            names = {c.name for c in layout.columns}
            for group, members in layout.feature_groups.items():
                assert set(members) <= names, (name, group)
            for f in split.files:
                assert f in m.files


def test_nsl_kdd_manifest_has_the_41_standard_features_then_label_and_difficulty():
    layout = get_manifest("nsl-kdd").layouts["default"]
    cols = layout.columns
    assert [c.name for c in cols] == NSL_FEATURES + ["label", "difficulty"]
    assert all(c.role == "feature" for c in cols[:41])
    assert (cols[41].role, cols[42].role) == ("label", "ignored")
    assert [c.name for c in cols if c.kind == "categorical" and c.role == "feature"] == [
        "protocol_type", "service", "flag",
    ]
    groups = layout.feature_groups
    assert groups["intrinsic"] == NSL_FEATURES[0:9]
    assert groups["content"] == NSL_FEATURES[9:22]
    assert groups["time"] == NSL_FEATURES[22:31]
    assert groups["host"] == NSL_FEATURES[31:41]
    assert set(layout.categories) == {"normal", "dos", "probe", "r2l", "u2r"}
    m = get_manifest("nsl-kdd")
    assert set(m.splits) == {"train20", "train", "test", "test21"} and m.default_split == "train20"
    full = m.files["KDDTrain+.txt"]
    assert full.sha256 is None and full.git_sha1 == "20002897492adc110190a10509aa694f26f7f308"
    assert full.rows == 125_973


def test_nsl_kdd_category_map_covers_every_label_in_the_real_files(data_dir):
    cmap = get_manifest("nsl-kdd").layouts["default"].category_map()
    for fname in NSL_FILES.values():
        labels = set(pd.read_csv(data_dir / "nsl-kdd" / fname, header=None, usecols=[41])[41])
        assert labels - set(cmap) == set(), fname
    assert cmap["guess_passwd"] == "r2l" and cmap["mscan"] == "probe" and cmap["apache2"] == "dos"
    assert cmap["sqlattack"] == "u2r" and cmap["normal"] == "normal"


def test_cic_and_unsw_manifests_declare_their_documented_columns():
    cic = get_manifest("cic-ids2017").layouts["default"]
    assert sum(c.role == "feature" for c in cic.columns) == 78
    assert cic.label == "Label" and cic.format.header
    assert "Fwd Header Length.1" in {c.name for c in cic.columns}
    assert len(get_manifest("cic-ids2017").splits["all"].files) == 8
    unsw = get_manifest("unsw-nb15")
    part, raw = unsw.layouts["default"], unsw.layouts["raw"]
    assert len(part.columns) == 45 and part.label == "attack_cat" and part.format.header
    assert len(raw.columns) == 49 and raw.label == "attack_cat" and not raw.format.header
    assert raw.label_missing == "Normal"


@pytest.mark.parametrize(
    "patch, message",
    [
        ({"columns": [{"name": "a", "kind": "number"}, {"name": "y", "kind": "categorical", "role": "label"}]}, "kind 'number'"),
        ({"columns": [{"name": "a", "kind": "count", "role": "target"}]}, "role 'target'"),
        ({"categories": {"x": ["a"], "z": ["a"]}}, "is in categories"),
        ({"splits": {"s": {"files": ["nope.csv"]}}}, "no [files] entry"),
        ({"feature_groups": {"g": ["ghost"]}}, "unknown columns"),
        ({"files": {"f.csv": {"sha256": "abc"}}}, "64 lowercase hex"),
    ],
)
def test_bad_manifests_are_one_line_errors(patch, message):
    base = {
        "name": "toy",
        "description": "toy",
        "columns": [{"name": "a", "kind": "count"}, {"name": "y", "kind": "categorical", "role": "label"}],
        "splits": {"s": {"files": ["f.csv"]}},
        "files": {"f.csv": {}},
    }
    with pytest.raises(InvalidDataError, match="manifest toy.toml") as err:
        parse_manifest({**base, **patch}, "toy.toml")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_users_manifest_in_the_data_dir_registers_a_dataset(empty_data):
    (empty_data / "manifests").mkdir()
    write(
        empty_data / "manifests" / "toy.toml",
        'name = "toy"\ndescription = "a toy"\n'
        'columns = [{name = "bytes", kind = "count"}, {name = "proto", kind = "categorical"},'
        ' {name = "y", kind = "categorical", role = "label"}]\n'
        '[format]\nheader = false\n[splits.all]\nfiles = ["toy.csv"]\n[files."toy.csv"]\nrows = 3\n'
        '[categories]\nbad = ["scan"]\ngood = ["ok"]\n',
    )
    (empty_data / "toy").mkdir()
    write(empty_data / "toy" / "toy.csv", "10,tcp,ok\n20,udp,scan\n30,tcp,ok\n")
    assert "toy" in registry()
    t = load_table("toy")
    assert list(t.df.columns) == ["bytes", "proto", "y"]
    assert t.df["bytes"].tolist() == [10, 20, 30] and t.categories().tolist() == ["good", "bad", "good"]


# --- checksums, downloads, offline ------------------------------------------------------------------


def test_real_nsl_kdd_files_match_their_checksums(data_dir):
    m = get_manifest("nsl-kdd")
    for fname in NSL_FILES.values():
        assert fetch.sha256_file(data_dir / "nsl-kdd" / fname) == m.files[fname].sha256


def test_every_manifest_checksum_matches_the_file_in_the_data_dir(data_dir):
    """Each file a built-in manifest lists and the data dir holds has the manifest's checksum."""
    checked = 0
    for manifest in registry().values():
        for entry in manifest.files.values():
            path = data_dir / manifest.name / entry.name
            if not path.is_file():
                continue
            if entry.sha256:
                assert fetch.sha256_file(path) == entry.sha256, path
                checked += 1
            if entry.git_sha1:
                assert fetch.git_blob_sha1(path) == entry.git_sha1, path
                checked += 1
    assert checked >= 3  # the three NSL-KDD files of the shared data dir


def test_git_blob_id_is_what_git_computes_and_a_mismatch_is_refused(tmp_path, monkeypatch):
    f = tmp_path / "d" / "a.csv"
    f.parent.mkdir()
    f.write_bytes(b"x,y\n1,2\n")
    expected = subprocess.run(["git", "hash-object", str(f)], capture_output=True, text=True, check=True).stdout.strip()
    assert fetch.git_blob_sha1(f) == expected
    monkeypatch.setenv("ADVGEN_DATA", str(tmp_path))
    (tmp_path / "manifests").mkdir()
    text = (
        'name = "d"\ndescription = "x"\ncolumns = [{ name = "x", kind = "count" }, { name = "y", kind = "count" }]\n'
        '[format]\ntype = "csv"\nheader = true\n[splits.s]\nfiles = ["a.csv"]\n'
        f'[files."a.csv"]\ngit_sha1 = "{expected}"\nrows = 1\n'
    )
    m = parse_manifest(tomllib.loads(text), "test")
    fetch.verify_file(m, m.files["a.csv"], f)  # matches: no error
    bad = parse_manifest(tomllib.loads(text.replace(expected, "0" * 40)), "test")
    with pytest.raises(InvalidDataError, match="git blob id"):
        fetch.verify_file(bad, bad.files["a.csv"], f)


def test_checksum_is_computed_once_per_process(data_dir, monkeypatch):
    calls = []
    real = fetch.hashlib.sha256

    def counting():
        calls.append(1)
        return real()

    monkeypatch.setattr(fetch.hashlib, "sha256", counting)
    monkeypatch.setattr(fetch, "_SHA_CACHE", {})
    m = get_manifest("nsl-kdd")
    for _ in range(3):
        fetch.ensure_file(m, "KDDTest-21.txt", download=False)
    assert len(calls) == 1


def test_checksum_mismatch_names_the_file(empty_data):
    target = empty_data / "nsl-kdd" / "KDDTest-21.txt"
    target.parent.mkdir()
    write(target, "0,tcp,http,SF,1,2" + ",0" * 35 + ",normal,21\n")
    with pytest.raises(InvalidDataError, match="checksum mismatch") as err:
        load_table("nsl-kdd", "test21")
    assert str(target) in str(err.value)


def test_file_without_checksum_has_its_row_count_checked(data_dir, empty_data):
    target = empty_data / "nsl-kdd" / "KDDTrain+.txt"
    target.parent.mkdir()
    lines = (data_dir / "nsl-kdd" / "KDDTest-21.txt").read_text().splitlines()[:100]
    write(target, "\n".join(lines) + "\n")
    with pytest.raises(InvalidDataError, match=r"has 100 lines.*expects 125973"):
        load_table("nsl-kdd", "train")


def test_offline_missing_file_says_which_file_to_put_where(empty_data):
    with pytest.raises(InvalidDataError) as err:
        load_table("nsl-kdd", "train")
    msg = str(err.value)
    assert str(empty_data / "nsl-kdd" / "KDDTrain+.txt") in msg
    assert "could not be downloaded" in msg and "network is unreachable" in msg and "\n" not in msg
    assert not list((empty_data / "nsl-kdd").iterdir())  # no half file left behind


def test_missing_file_without_url_gives_the_download_hint(empty_data):
    with pytest.raises(InvalidDataError) as err:
        load_table("cic-ids2017", "friday-ddos")
    msg = str(err.value)
    assert str(empty_data / "cic-ids2017" / "Friday-WorkingHours-Afternoon-DDos.pcap_ISCX.csv") in msg
    assert "MachineLearningCSV.zip" in msg


def test_download_lands_only_when_its_checksum_is_right(data_dir, empty_data, monkeypatch):
    real = (data_dir / "nsl-kdd" / "KDDTest-21.txt").read_bytes()
    payload = {"bytes": real[:-10]}  # a truncated download first

    def fake_download(url, dest, *, progress, label):
        assert url.startswith("https://") and "KDDTest-21" in url
        dest.write_bytes(payload["bytes"])

    monkeypatch.setattr(fetch, "download_url", fake_download)
    target = empty_data / "nsl-kdd" / "KDDTest-21.txt"
    with pytest.raises(InvalidDataError, match="checksum mismatch"):
        load_table("nsl-kdd", "test21")
    assert not target.exists() and not list(target.parent.iterdir())
    payload["bytes"] = real
    t = load_table("nsl-kdd", "test21")
    assert target.read_bytes() == real and len(t.df) == NSL_ROWS["test21"]


def test_real_download_path_with_a_file_url_and_progress_bar(tmp_path, monkeypatch, capsys):
    """The real ``download_url`` (urllib streams file:// like http://), progress bar included."""
    source = write(tmp_path / "src.csv", "1,tcp,ok\n2,udp,scan\n")
    sha = fetch.hashlib.sha256(source.read_bytes()).hexdigest()
    root = tmp_path / "data"
    (root / "manifests").mkdir(parents=True)
    write(
        root / "manifests" / "dl.toml",
        'name = "dl"\ndescription = "download test"\n'
        'columns = [{name = "n", kind = "count"}, {name = "proto", kind = "categorical"},'
        ' {name = "y", kind = "categorical", role = "label"}]\n'
        f'[format]\nheader = false\n[splits.all]\nfiles = ["dl.csv"]\n'
        f'[files."dl.csv"]\nurl = "{source.as_uri()}"\nsha256 = "{sha}"\n',
    )
    monkeypatch.setenv("ADVGEN_DATA", str(root))
    t = load_table("dl", progress=True)
    assert t.df["n"].tolist() == [1, 2] and (root / "dl" / "dl.csv").read_bytes() == source.read_bytes()
    assert "downloading dl.csv" in capsys.readouterr().err


# --- the real NSL-KDD files ---------------------------------------------------------------------------


def test_load_nsl_kdd_train20(data_dir):
    # how long a load takes is a figure for benchmarks/tabular_quality.py --prep, not a test
    t = load_table("nsl-kdd")
    assert (t.name, t.split, t.label) == ("nsl-kdd", "train20", "label")
    assert len(t.df) == NSL_ROWS["train20"]
    # the two columns that are constant in this file are dropped and remembered
    assert t.constants == {"num_outbound_cmds": 0, "is_host_login": 0}
    kept = [f for f in NSL_FEATURES if f not in t.constants]
    assert list(t.df.columns) == kept + ["label"]
    assert [c.name for c in t.columns] == kept + ["label"] and t.columns[-1].role == "label"
    kinds = {c.name: c.kind for c in t.columns}
    assert kinds["service"] == "categorical" and kinds["src_bytes"] == "count"
    assert kinds["logged_in"] == "flag" and kinds["serror_rate"] == "rate" and kinds["su_attempted"] == "count"
    for c in t.columns:
        s = t.df[c.name]
        if c.kind in ("count", "flag"):
            assert s.dtype == np.int64 and s.min() >= 0, c.name
        if c.kind == "flag":
            assert set(s.unique()) <= {0, 1}, c.name
        if c.kind == "rate":
            assert s.dtype == np.float64 and 0 <= s.min() and s.max() <= 1, c.name
        if c.kind == "categorical":
            assert pd.api.types.is_string_dtype(s), c.name
    assert t.df["service"].nunique() > 60 and t.df["src_bytes"].max() > 10**7  # the hard columns are intact
    counts = t.class_counts()
    assert counts["normal"] == 13_449 and counts["neptune"] == 8_282 and counts["guess_passwd"] == 10
    assert t.categories().value_counts().to_dict() == {
        "normal": 13_449, "dos": 9_234, "probe": 2_289, "r2l": 209, "u2r": 11,
    }
    assert t.feature_groups["content"][0] == "hot" and "num_outbound_cmds" not in t.feature_groups["content"]


@pytest.mark.parametrize("split", ["test", "test21"])
def test_load_nsl_kdd_test_files(data_dir, split):
    t = load_table("nsl-kdd", split)
    assert len(t.df) == NSL_ROWS[split]
    assert {"mscan", "apache2", "processtable", "snmpguess"} <= set(t.df["label"])
    assert set(t.categories()) == {"normal", "dos", "probe", "r2l", "u2r"}


def test_test_file_loads_with_the_training_schema(data_dir):
    train = load_table("nsl-kdd", "train20")
    test = load_table("nsl-kdd", "test", schema=train.columns)
    assert test.columns == train.columns
    assert list(test.df.columns) == list(train.df.columns)
    assert (test.df.dtypes == train.df.dtypes).all()
    assert "is_host_login" not in test.df.columns  # constant in training, so not in the schema
    assert "mscan" in set(test.df["label"])  # labels training never saw stay as they are
    assert len(test.df) == NSL_ROWS["test"]


def test_a_file_given_by_path_can_use_a_registered_layout(data_dir, tmp_path):
    lines = (data_dir / "nsl-kdd" / "KDDTest+.txt").read_text().splitlines()[:300]
    p = write(tmp_path / "mine.txt", "\n".join(lines) + "\n")
    t = load_table("nsl-kdd", path=p)
    assert len(t.df) == 300 and t.label == "label" and t.category_map["neptune"] == "dos"


def test_a_headed_export_of_a_headerless_dataset_reads_its_header(data_dir, tmp_path):
    """Samples written by advgen: a header, the derived category beside the label, constants restored."""
    train = load_table("nsl-kdd")
    out = train.df.head(200).copy()
    out["category"] = train.categories().head(200)
    for name, value in train.constants.items():
        out[name] = value
    p = tmp_path / "samples.csv"
    out.to_csv(p, index=False)
    t = load_table("nsl-kdd", path=p)
    assert len(t.df) == 200 and "category" not in t.df.columns and t.label == "label"
    assert "samples.csv starts with a header row; columns are taken from it" in t.notes
    same = load_table("nsl-kdd", path=p, schema=train.columns)
    assert list(same.df.columns) == list(train.df.columns)
    pd.testing.assert_frame_equal(same.df, train.df.head(200))


# --- generic files and their dirt ---------------------------------------------------------------------


def test_inf_and_nan_become_the_column_median_with_a_note(tmp_path):
    p = write(
        tmp_path / "flows.csv",
        "Flow Bytes/s,Flow Packets/s,pkts,Label\n"
        "1.5,Infinity,3,BENIGN\n"
        "inf,2.5,4,BENIGN\n"
        "NaN,3.5,5,DDoS\n"
        "4.5,-inf,,DDoS\n"
        "2.5,4.5,7,DDoS\n",
    )
    t = load_table(path=p, label="Label")
    assert np.isfinite(t.df[["Flow Bytes/s", "Flow Packets/s"]].to_numpy()).all()
    assert t.df["Flow Bytes/s"].tolist() == [1.5, 2.5, 2.5, 4.5, 2.5]  # median of 1.5, 4.5, 2.5
    assert t.df["Flow Packets/s"].tolist() == [3.5, 2.5, 3.5, 3.5, 4.5]
    assert t.df["pkts"].tolist() == [3, 4, 5, 4, 7] and t.df["pkts"].dtype == np.int64
    notes = " | ".join(t.notes)
    assert "infinite values treated as missing in Flow Bytes/s (1), Flow Packets/s (2)" in notes
    assert "filled missing values" in notes and "pkts (1, median 4)" in notes


def test_repeated_header_rows_are_removed(tmp_path):
    header = "dur,bytes,proto,label"
    p = write(tmp_path / "cat.csv", f"{header}\n0.5,10,tcp,a\n1.5,20,udp,b\n{header}\n2.5,30,tcp,a\n")
    t = load_table(path=p, label="label")
    assert len(t.df) == 3
    assert t.df["bytes"].tolist() == [10, 20, 30] and t.column("bytes").kind == "count"
    assert t.column("dur").kind == "continuous" and t.df["dur"].dtype == np.float64
    assert "removed 1 repeated header rows" in t.notes


def test_stray_spaces_in_column_names_are_stripped(tmp_path):
    p = write(tmp_path / "s.csv", " Flow Duration, Total Fwd Packets , Label\n10,1,x\n20,2,y\n30,3,x\n")
    t = load_table(path=p, label="Label")
    assert list(t.df.columns) == ["Flow Duration", "Total Fwd Packets", "Label"]
    assert any("stripped spaces around 3 column names" in n for n in t.notes)


def test_constant_columns_are_dropped_and_remembered(tmp_path):
    p = write(tmp_path / "c.csv", "a,zero,proto,y\n1,0,tcp,n\n2,0,tcp,m\n3,0,tcp,n\n")
    t = load_table(path=p, label="y")
    assert list(t.df.columns) == ["a", "y"]
    assert t.constants == {"zero": 0, "proto": "tcp"}
    assert any("dropped constant columns" in n and "zero=0" in n for n in t.notes)


def test_id_and_timestamp_columns_are_dropped_with_a_note(tmp_path):
    n = 40
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "Flow ID": [f"10.0.0.{i}-10.0.0.9-{1000 + i}-80-6" for i in range(n)],
            " Source IP": [f"192.168.1.{i % 7}" for i in range(n)],
            " Timestamp": pd.date_range("2017-07-07 09:00", periods=n, freq="min").strftime("%d/%m/%Y %H:%M"),
            "seq": np.arange(100, 100 + n),  # numbers the rows: caught by content
            "seen": pd.date_range("2020-01-01", periods=n, freq="h").astype(str),  # timestamps by content
            "pkts": rng.integers(0, 5, n),
            "bytes": rng.integers(0, 10**6, n),
            "Label": ["a", "b"] * (n // 2),
        }
    )
    p = tmp_path / "ids.csv"
    df.to_csv(p, index=False)
    t = load_table(path=p, label="Label")
    assert list(t.df.columns) == ["pkts", "bytes", "Label"]
    note = next(x for x in t.notes if x.startswith("dropped identifier/timestamp columns"))
    for name in ("Flow ID", "Source IP", "Timestamp", "seq", "seen"):
        assert name in note


def test_a_text_column_whose_values_rarely_repeat_is_dropped_as_an_identifier(tmp_path):
    """A URL column with one repeated value in 8,001 rows was kept as 8,000 categories."""
    n = 200
    urls = [f"http://site{i}.example/page" for i in range(n)]
    urls[1] = urls[0]  # not every row has its own value
    hosts = [f"host{i % 120}" for i in range(n)]  # 40 of 200 rows have a value of their own: a category
    df = pd.DataFrame({"url": urls, "host": hosts, "pkts": np.arange(n) % 5, "Label": ["a", "b"] * (n // 2)})
    p = tmp_path / "urls.csv"
    df.to_csv(p, index=False)
    t = load_table(path=p, label="Label")
    assert list(t.df.columns) == ["host", "pkts", "Label"]
    assert "url (198 of its 200 rows have a value no other row has)" in next(
        x for x in t.notes if x.startswith("dropped identifier/timestamp columns"))


def test_missing_label_values_drop_their_rows(tmp_path):
    p = write(tmp_path / "m.csv", "a,b,Label\n1,0.5,x\n2,0.25,\n3,0.75,y\n4,0.5, \n")
    t = load_table(path=p, label="Label")
    assert t.df["a"].tolist() == [1, 3] and t.df["Label"].tolist() == ["x", "y"]
    assert "dropped 2 rows whose Label is missing" in t.notes


def test_unknown_label_column_lists_the_columns(tmp_path):
    p = write(tmp_path / "u.csv", "alpha,beta,gamma\n1,2,x\n3,4,y\n")
    with pytest.raises(InvalidDataError, match=r"label column 'class' is not in .*u\.csv; columns: alpha, beta, gamma"):
        load_table(path=p, label="class")


def test_empty_files_are_clear_errors(tmp_path):
    with pytest.raises(InvalidDataError, match="is empty"):
        load_table(path=write(tmp_path / "empty.csv", ""), label="y")
    with pytest.raises(InvalidDataError, match="has no data rows"):
        load_table(path=write(tmp_path / "header.csv", "a,b,y\n"), label="y")
    with pytest.raises(InvalidDataError, match="data file not found"):
        load_table(path=tmp_path / "absent.csv", label="y")


def test_rows_longer_than_the_header_are_an_error_not_a_shift(tmp_path):
    with pytest.raises(InvalidDataError, match="rows have more fields than its 3 columns"):
        load_table(path=write(tmp_path / "long.csv", "a,b,y\n1,2,3,x\n4,5,6,y\n"), label="y")
    with pytest.raises(InvalidDataError, match="Expected 3 fields in line 3, saw 4"):
        load_table(path=write(tmp_path / "ragged.csv", "a,b,y\n1,2,x\n1,2,3,x\n"), label="y")


def test_kinds_are_inferred_from_values(tmp_path):
    n = 30
    rng = np.random.default_rng(1)
    df = pd.DataFrame(
        {
            "flag": rng.integers(0, 2, n),
            "count": rng.integers(0, 10**8, n),
            "rate": rng.random(n).round(2),
            "cont": rng.normal(size=n),
            "neg_int": rng.integers(-5, 5, n),
            "service": [f"svc{i % 7}" for i in range(n)],
            "y": ["a", "b", "c"] * 10,
        }
    )
    df.loc[0, "rate"], df.loc[1, "rate"] = 0.5, 0.25  # make sure the rate is not integral
    p = tmp_path / "k.csv"
    df.to_csv(p, index=False)
    t = load_table(path=p, label="y")
    assert {c.name: c.kind for c in t.columns} == {
        "flag": "flag", "count": "count", "rate": "rate", "cont": "continuous",
        "neg_int": "continuous", "service": "categorical", "y": "categorical",
    }


def test_a_many_valued_categorical_stays_categorical(tmp_path):
    services = [f"svc_{i}" for i in range(70)]
    rows = "\n".join(f"{services[i % 70]},{i % 3},{'ab'[i % 2]}" for i in range(140))
    t = load_table(path=write(tmp_path / "svc.csv", "service,n,y\n" + rows + "\n"), label="y")
    assert t.column("service").kind == "categorical" and t.df["service"].nunique() == 70


def test_a_schema_file_overrides_kinds_and_roles(tmp_path):
    p = write(tmp_path / "o.csv", "port,bytes,note,flagish,cls\n80,10,x,0,a\n443,20,y,2,b\n80,30,z,1,a\n")
    schema = write(
        tmp_path / "schema.toml",
        'label = "cls"\n'
        '[columns.port]\nkind = "categorical"\n'
        '[columns.note]\nrole = "ignored"\n'
        '[columns.flagish]\nkind = "flag"\n',
    )
    t = load_table(path=p, schema_file=schema)
    assert t.label == "cls"
    assert {c.name: c.kind for c in t.columns} == {
        "port": "categorical", "bytes": "count", "flagish": "count", "cls": "categorical",
    }
    assert t.df["port"].tolist() == ["80", "443", "80"]
    assert any("flagish is declared flag but its values need count" in n for n in t.notes)
    bad = write(tmp_path / "bad.toml", '[columns.port]\nkind = "integer"\n')
    with pytest.raises(InvalidDataError, match="kind 'integer'"):
        load_table(path=p, label="cls", schema_file=bad)


def test_a_generic_test_file_loads_with_a_training_schema(tmp_path):
    train = load_table(
        path=write(tmp_path / "train.csv", "proto,bytes,const,y\ntcp,1,7,a\nudp,2,7,b\ntcp,3,7,a\n"), label="y"
    )
    test = load_table(
        path=write(tmp_path / "test.csv", "y,bytes,proto,extra,const\nc,5,icmp,1,7\na,,tcp,2,7\n"),
        schema=train.columns,
    )
    assert list(test.df.columns) == ["proto", "bytes", "y"]
    assert test.df["proto"].tolist() == ["icmp", "tcp"] and test.df["bytes"].tolist() == [5, 5]
    with pytest.raises(InvalidDataError, match="lacks 1 columns of the training schema: bytes"):
        load_table(path=write(tmp_path / "short.csv", "proto,y\ntcp,a\n"), schema=train.columns)


def test_parquet_files_load_like_csv(tmp_path):
    pytest.importorskip("pyarrow")
    df = pd.DataFrame({" a ": [1.5, 2.5, np.inf], "b": ["x", "y", "x"], "y": [0, 1, 0]})
    p = tmp_path / "t.parquet"
    df.to_parquet(p)
    t = load_table(path=p, label="y")
    assert list(t.df.columns) == ["a", "b", "y"] and t.df["y"].tolist() == ["0", "1", "0"]
    assert t.df["a"].tolist() == [1.5, 2.5, 2.0]


def test_a_headerless_file_gets_numbered_columns(tmp_path):
    t = load_table(path=write(tmp_path / "h.csv", "1,0.5,x\n2,0.25,y\n3,0.75,x\n"), label="column_3")
    assert list(t.df.columns) == ["column_1", "column_2", "column_3"]
    assert any("no header row" in n for n in t.notes)


# --- the shapes of CIC-IDS2017 and UNSW-NB15 -------------------------------------------------------


def test_a_cic_ids2017_shaped_file_loads(empty_data):
    """Header padded with spaces and a repeated name, Infinity/NaN, a repeated header, a cp1252 en
    dash in a label, and the empty rows the Thursday files end with."""
    cols = [c.name for c in get_manifest("cic-ids2017").layouts["default"].columns]
    header = ",".join((" " + c if i % 2 else c).replace("Fwd Header Length.1", "Fwd Header Length") for i, c in enumerate(cols))
    labels = ["BENIGN", "Web Attack \u2013 Brute Force", "Web Attack \u2013 XSS", "DDoS"]
    rows = []
    for i in range(40):
        vals = ["1" if "Flag" in c else str(i * 10 + j) for j, c in enumerate(cols[:-1])]
        vals[cols.index("Flow Bytes/s")] = "Infinity" if i == 3 else ("NaN" if i == 4 else str(12.5 + i))
        rows.append(",".join(vals + [labels[i % 4]]))
    text = "\n".join([header] + rows[:20] + [header] + rows[20:] + [","*(len(cols) - 1)] * 2) + "\n"
    folder = empty_data / "cic-ids2017"
    folder.mkdir()
    (folder / "Friday-WorkingHours-Afternoon-DDos.pcap_ISCX.csv").write_bytes(text.encode("cp1252"))
    t = load_table("cic-ids2017", "friday-ddos")
    assert len(t.df) == 40 and t.df.columns[-1] == "Label"
    assert "Fwd Header Length.1" in t.df.columns and "Destination Port" in t.df.columns
    assert t.class_counts() == {"BENIGN": 10, "Web Attack - Brute Force": 10, "Web Attack - XSS": 10, "DDoS": 10}
    assert set(t.categories()) == {"benign", "web_attack", "dos"}
    assert np.isfinite(t.df["Flow Bytes/s"]).all()
    assert "removed 1 repeated header rows" in t.notes and "dropped 2 rows whose Label is missing" in t.notes


def test_a_unsw_nb15_raw_shaped_file_loads(empty_data):
    """No header, empty attack_cat for normal rows, padded and plural category names, hex and '-' ports."""
    cols = get_manifest("unsw-nb15").layouts["raw"].columns
    cats = ["", " Fuzzers ", "Backdoors", "Exploits"]
    rows = []
    for i in range(24):
        vals = []
        for c in cols:
            if c.name in ("srcip", "dstip"):
                vals.append(f"59.166.0.{i % 5}")
            elif c.name == "sport":
                vals.append("0x000b" if i == 1 else ("-" if i == 2 else str(1000 + i)))
            elif c.kind == "categorical" and c.role == "feature":
                vals.append(["tcp", "udp", "-"][i % 3])
            elif c.name == "attack_cat":
                vals.append(cats[i % 4])
            elif c.kind == "flag":
                vals.append(str(i % 2))
            else:
                vals.append(str(i + 0.5 if c.kind == "continuous" else i))
        rows.append(",".join(vals))
    folder = empty_data / "unsw-nb15"
    folder.mkdir()
    write(folder / "UNSW-NB15_1.csv", "\n".join(rows) + "\n")
    t = load_table("unsw-nb15", "raw1")
    assert t.class_counts() == {"Normal": 6, "Fuzzers": 6, "Backdoor": 6, "Exploits": 6}
    # "0x000b" parses as hex; "-" is no number, so it is filled with the median of the ports that parse
    parsed = [1000, 11] + [1000 + i for i in range(3, 24)]
    median = int(np.median(parsed))
    assert median == 1012
    assert t.df["sport"].tolist()[:4] == [1000, 11, median, 1003] and t.df["sport"].dtype == np.int64
    assert "sport: 1 values are not numbers; treated as missing" in t.notes
    assert f"filled missing values: sport (1, median {median})" in t.notes
    assert not {"srcip", "dstip", "Stime", "Ltime", "Label"} & set(t.df.columns)
    assert set(t.categories()) == {"normal", "attack"}


# --- command line ---------------------------------------------------------------------------------


def _invoke(*args: str):
    from advgen.cli import cli

    return CliRunner().invoke(cli, ["datasets", *args])


@pytest.fixture
def nsl_three_files(data_dir, tmp_path, monkeypatch) -> Path:
    """A data dir holding exactly the three NSL-KDD files of the shared data dir (not KDDTrain+.txt),
    whatever else the user's own data dir holds."""
    root = tmp_path / "three"
    (root / "nsl-kdd").mkdir(parents=True)
    for fname in NSL_FILES.values():
        (root / "nsl-kdd" / fname).symlink_to(data_dir / "nsl-kdd" / fname)
    monkeypatch.setenv("ADVGEN_DATA", str(root))
    return root


def test_cli_list_json(nsl_three_files):
    result = _invoke("list", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    by_name = {d["name"]: d for d in data["datasets"]}
    assert by_name["nsl-kdd"]["files"] == 4 and by_name["nsl-kdd"]["files_present"] == 3


def test_cli_info_json_shows_files_checksums_schema_and_balance(nsl_three_files):
    result = _invoke("info", "nsl-kdd", "--json")
    assert result.exit_code == 0, result.output
    d = json.loads(result.output)
    files = {f["name"]: f for f in d["files"]}
    assert files["KDDTrain+_20Percent.txt"]["checksum"] == "ok" and files["KDDTrain+.txt"]["present"] is False
    assert d["schema"]["features"] == 41 and d["schema"]["label"] == "label"
    assert d["class_balance"]["normal"] == 13_449 and d["categories_balance"]["u2r"] == 11
    text = _invoke("info", "nsl-kdd", "--split", "test")
    assert text.exit_code == 0 and "class balance (test, 22,544 rows)" in text.output


def test_cli_errors_are_one_line(empty_data):
    result = _invoke("info", "no-such-set")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: unknown dataset 'no-such-set'")
    result = _invoke("fetch", "nsl-kdd", "--split", "test21", "--no-progress")
    assert result.exit_code == 1
    assert str(empty_data / "nsl-kdd" / "KDDTest-21.txt") in result.output
    assert result.output.strip().splitlines()[-1] == "Error: 1 of 1 nsl-kdd files are not available: KDDTest-21.txt"


def test_cli_fetch_reports_verified_files(data_dir):
    result = _invoke("fetch", "nsl-kdd", "--split", "train20")
    assert result.exit_code == 0, result.output
    assert "present:" in result.output and "sha256 ok" in result.output


def test_whole_number_labels_written_as_floats_are_one_class_spelled_as_integers(tmp_path):
    # the audit: a label column with two blank rows was written "0.0"/"1.0", so --condition class=1 was refused
    # and a test file spelled "0"/"1" shared no class with training
    from advgen_datasets.table import load_table

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 100).astype(float)
    y[[3, 7]] = np.nan
    pd.DataFrame({"a": rng.normal(size=100), "class": y}).to_csv(tmp_path / "gaps.csv", index=False)
    assert set(load_table(path=str(tmp_path / "gaps.csv"), label="class").df["class"]) == {"0", "1"}
    # labels that are not all whole numbers keep their spelling
    pd.DataFrame({"a": range(6), "y": ["1.5", "2.0", "1.5", "2.0", "1.5", "2.0"]}).to_csv(tmp_path / "f.csv", index=False)
    assert set(load_table(path=str(tmp_path / "f.csv"), label="y").df["y"]) == {"1.5", "2.0"}
    pd.DataFrame({"a": range(6), "y": ["normal", "1.0"] * 3}).to_csv(tmp_path / "m.csv", index=False)
    assert set(load_table(path=str(tmp_path / "m.csv"), label="y").df["y"]) == {"normal", "1.0"}
