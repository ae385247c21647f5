"""SGPTNodeParser in LlamaIndex's own pipeline, and SGPTEmbedding's warnings and input checks."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from llama_index.core import Settings, SimpleDirectoryReader, VectorStoreIndex
from llama_index.core.schema import MetadataMode, NodeRelationship

from sgpt_qdrant import SGPTEmbedding, SGPTNodeParser
from sgpt_qdrant.embedding import EmptyTextWarning, TruncationWarning
from sgpt_qdrant.testing import gpt2_tokenizer
from sgpt_qdrant.testing.samples import ADMONITIONS, RST, changelog

REF = gpt2_tokenizer()


def ref_len(text: str) -> int:
    return len(REF(text.strip(), add_special_tokens=False)["input_ids"])


@pytest.fixture(scope="module")
def embed_model(tiny_model_dir):
    return SGPTEmbedding(model_name=str(tiny_model_dir), device="cpu", embed_batch_size=64)


@pytest.fixture()
def docs_dir(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "release-notes.md").write_text(changelog(40, seed=5)[0])
    (tmp_path / "docs" / "dependencies.md").write_text(ADMONITIONS)
    (tmp_path / "docs" / "bees.rst").write_text(RST)
    return tmp_path / "docs"


def test_index_from_documents_truncates_nothing(docs_dir, embed_model):
    docs = SimpleDirectoryReader(str(docs_dir)).load_data()
    parser = SGPTNodeParser.from_embedding(embed_model)
    before = embed_model.truncated_count
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncationWarning)
        index = VectorStoreIndex.from_documents(docs, transformations=[parser], embed_model=embed_model)
    assert embed_model.truncated_count == before
    nodes = list(index.docstore.docs.values())
    by_id = {d.doc_id: d for d in docs}
    assert len(nodes) > 20
    for node in nodes:
        embedded = node.get_content(metadata_mode=MetadataMode.EMBED)
        assert embedded == node.text and ref_len(embedded) <= 75  # metadata kept, not embedded
        assert node.metadata["file_name"] in {"release-notes.md", "dependencies.md", "bees.rst"}
        source = by_id[node.ref_doc_id]
        assert source.text[node.start_char_idx:node.end_char_idx] == node.text
    first = [n for n in nodes if NodeRelationship.NEXT in n.relationships and NodeRelationship.PREVIOUS
             not in n.relationships]
    assert len(first) == len(docs)  # one chain of nodes per document


def test_default_llamaindex_parser_warns_about_cut_text(docs_dir, embed_model):
    docs = SimpleDirectoryReader(str(docs_dir)).load_data()
    with pytest.warns(TruncationWarning, match=r"texts were longer than 75 tokens and were cut \(\d+ tokens not "
                      r"embedded.*SGPTNodeParser"):
        VectorStoreIndex.from_documents(docs, embed_model=embed_model)


@pytest.mark.slow  # over half a second: full suite only, so the quick loop stays under a minute
def test_settings_node_parser_and_embedded_metadata(docs_dir, embed_model, tiny_model_dir):
    docs = SimpleDirectoryReader(str(docs_dir)).load_data()
    parser = SGPTNodeParser(str(tiny_model_dir), embed_metadata=True)
    assert parser.limit == 75
    saved = Settings._node_parser, Settings._transformations
    Settings._transformations = None  # as in a fresh process: the default transformations follow node_parser
    Settings.node_parser = parser
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", TruncationWarning)
            index = VectorStoreIndex.from_documents(docs, embed_model=embed_model)
    finally:
        Settings._node_parser, Settings._transformations = saved
    for node in index.docstore.docs.values():
        embedded = node.get_content(metadata_mode=MetadataMode.EMBED)
        assert "file_path: " in embedded and node.text in embedded  # LlamaIndex's own metadata text
        assert ref_len(embedded) <= 75


def test_empty_and_wrong_type_inputs(embed_model):
    with pytest.warns(EmptyTextWarning, match="2 empty or whitespace-only texts"):
        vectors = embed_model.get_text_embedding_batch(["", "real text", "  \n "])
    eos = embed_model.encoder.encode_ids([[REF.eos_token_id]])[0]
    for v in (vectors[0], vectors[2]):
        assert np.allclose(v, eos, atol=1e-6) and np.linalg.norm(v) > 0
    score = embed_model.similarity(vectors[0], vectors[1])
    assert not math.isnan(score)
    with pytest.raises(TypeError, match=r"texts\[1\]: expected str, got NoneType"):
        embed_model.get_text_embedding_batch(["fine", None])
    with pytest.raises(TypeError, match=r"texts\[0\]: expected str, got int"):
        embed_model.get_text_embedding_batch([7])


def test_truncation_warning_counts(embed_model):
    long = " ".join(["word"] * 100)  # 100 tokens: 25 cut
    with pytest.warns(TruncationWarning, match=r"1 of 2 texts .* \(25 tokens not embedded"):
        embed_model.get_text_embedding_batch([long, "short"])
