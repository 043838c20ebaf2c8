"""advgen datasets bytes2img reads only files inside the corpus: links are skipped and reported."""

from __future__ import annotations

import os

from advgen_images.bytes2img import bytes_to_images


def test_a_link_in_the_corpus_is_not_followed(tmp_path):
    # the audit: fam/shadow -> /etc/shadow became fam/shadow.png, the file's bytes as a training image
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"root:$6$hash:19000:0:99999:7:::\n" * 20)
    corpus = tmp_path / "corpus"
    (corpus / "fam").mkdir(parents=True)
    (corpus / "fam" / "sample.bin").write_bytes(bytes(range(256)) * 8)
    os.symlink(secret, corpus / "fam" / "shadow")
    os.symlink(tmp_path, corpus / "fam" / "up")  # a link to a folder above the corpus
    report = bytes_to_images(corpus, tmp_path / "out")
    assert report.per_class == {"fam": 1}
    assert sorted(p.name for p in (tmp_path / "out" / "fam").iterdir()) == ["sample.bin.png"]
    assert any("shadow" in s and "symbolic link" in s for s in report.skipped)
