"""Tabular rows decoded with torch where the generator made them (a GPU), checked on the CPU.

The decoder is the one the ONNX export puts after the generator (quantile lookups, argmaxes, joint
tables: torch ops only), run on the device of the rows it is given; the host only assembles the
DataFrame. The meta device stands in for a GPU here: it runs the same ops on shapes alone, and a
tensor copied to the CPU on the way would fail. tests/test_cuda.py decodes on a real GPU and compares
with the CPU.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from advgen.api import train
from advgen.domain import Domain
from advgen_tabular import TabularDomain
from advgen_tabular.transform import TableTransform, frame_from_arrays


@pytest.fixture(scope="module")
def table_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("decode")
    rng = np.random.default_rng(0)
    n = 400
    kind = rng.choice(["benign", "scan", "flood"], n, p=[0.6, 0.25, 0.15])
    pd.DataFrame({
        "Proto": np.where(kind == "flood", "udp", rng.choice(["tcp", "udp", "icmp"], n)),
        "Flag": rng.choice(["SF", "S0", "REJ"], n),
        "Bytes": rng.integers(40, 5000, n),
        "Duration": rng.exponential(3.0, n).round(2),
        "Label": kind,
    }).to_csv(folder / "flows.csv", index=False)
    return train({"plugin": "tabular", "data": str(folder / "flows.csv"), "label": "Label", "steps": 4,
                  "batch_size": 64, "n_samples": 0, "device": "cpu", "threads": 1, "out": str(folder / "run"),
                  "options": {"hidden": 32, "d_hidden": 32, "embed_dim": 8, "n_quantiles": 65}})


def test_table_decodes_where_its_rows_are(table_run):
    spec = table_run.spec
    domain = table_run.domain
    assert domain.decodes_on_device and not Domain.decodes_on_device
    info = TableTransform.from_dict(spec["transform"]).output_info()
    x = torch.empty(7, spec["shape"][0], device="meta")
    num, cat = domain.decode_tensors(x, spec)
    assert num.device.type == cat.device.type == "meta"
    assert num.shape == (7, len(info["numeric"])) and num.dtype == torch.float64
    assert cat.shape == (7, len(info["categorical"])) and cat.dtype == torch.int64
    decoder = domain.decoder(spec, "meta")
    assert {b.device.type for b in decoder.buffers()} == {"meta"}
    assert domain.decoder(spec, "meta") is decoder and domain.decoder(spec) is not decoder
    with pytest.raises(Exception, match="width"):
        domain.decode_tensors(torch.empty(7, spec["shape"][0] + 1, device="meta"), spec)


def test_sampled_rows_equal_the_transforms_cpu_decode(table_run):
    """Rows from Run.sample and from iter_samples are the transform's own CPU decode of the same
    encoded rows, with each row's class as its label."""
    x, cond = table_run.sample_encoded(300, seed=4)
    rows = table_run.sample(300, seed=4)
    transform = TableTransform.from_dict(table_run.spec["transform"])
    reference = frame_from_arrays(*transform.decode_arrays(x), transform.output_info())
    for name in reference.columns:
        assert rows[name].tolist() == reference[name].tolist(), name
    classes = np.asarray(table_run.spec["conditions"]["classes"], dtype=object)
    assert rows["Label"].tolist() == classes[cond].tolist()
    pieces = pd.concat(list(table_run.iter_samples(300, seed=4)), ignore_index=True)
    pd.testing.assert_frame_equal(pieces, rows)
    assert isinstance(TabularDomain().decode(x[:5], cond[:5], table_run.spec), pd.DataFrame)
