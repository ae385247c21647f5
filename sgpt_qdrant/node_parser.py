"""``sgpt-ingest``'s chunker as a LlamaIndex node parser, so that no node is cut at embedding time.

LlamaIndex's default splitter counts another tokenizer's tokens and embeds the file metadata with
the text, so most of its nodes are longer than SGPT's 75 tokens and are silently truncated.
:class:`SGPTNodeParser` counts the model's own tokens on exactly what the embedding model gets,
``node.get_content(MetadataMode.EMBED)``:

* by default no metadata is embedded (every key is added to ``excluded_embed_metadata_keys``, as
  ``sgpt-ingest`` stores metadata without embedding it), so the 75 tokens are all text;
* with ``embed_metadata=True`` the metadata LlamaIndex would embed is counted in the budget, and
  a document whose metadata alone does not leave room for text is refused with a clear error.

Nodes carry exact ``start_char_idx``/``end_char_idx`` offsets into their document's text and the
usual SOURCE / PREVIOUS / NEXT relationships.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.node_parser import NodeParser
from llama_index.core.node_parser.node_utils import build_nodes_from_splits
from llama_index.core.schema import BaseNode, Document, MetadataMode, TextNode
from llama_index.core.utils import get_tqdm_iterable
from pydantic import Field, PrivateAttr

from .checkpoint import DEFAULT_MODEL, load_tokenizer, peek, resolve_model_name

from .chunk import Counter, chunk_text


def model_tokenizer(model: str) -> tuple[Any, int]:
    """The checkpoint's tokenizer and token limit (as modules.json lays it out), without its weights."""
    root, _dim, limit = peek(model)
    tokenizer, _ = load_tokenizer(root)
    return tokenizer, limit


class SGPTNodeParser(NodeParser):
    """Nodes of at most the model's token limit, on Markdown/reST structure (see ``docs/chunking.md``)."""

    model_name: str = Field(default=DEFAULT_MODEL, description="Checkpoint whose tokenizer counts tokens.")
    max_tokens: int | None = Field(default=None, description="Token limit; None uses the model's (75).")
    chunk_overlap: int = Field(default=0, ge=0, description="Tokens of a split unit repeated in the next node.")
    embed_metadata: bool = Field(default=False, description="Embed the node metadata LlamaIndex would embed "
                                 "(counted in the limit); False excludes every key from embedding.")

    _tokenizer: Any = PrivateAttr()
    _limit: int = PrivateAttr()

    def __init__(self, model_name: str | None = None, *, tokenizer: Any = None, **kwargs: Any) -> None:
        model_name = resolve_model_name(model_name)  # explicit > $SGPT_MODEL > the Hub id
        super().__init__(model_name=model_name, **kwargs)
        if tokenizer is None:
            tokenizer, model_limit = model_tokenizer(model_name)
        else:
            model_limit = 75
        self._tokenizer = tokenizer
        self._limit = int(self.max_tokens or model_limit)
        if self.chunk_overlap >= self._limit:
            raise ValueError(f"chunk_overlap must be below the {self._limit}-token limit, got {self.chunk_overlap}")

    @classmethod
    def from_embedding(cls, embedding: Any, **kwargs: Any) -> SGPTNodeParser:
        """The parser for an :class:`~sgpt_qdrant.SGPTEmbedding`: its tokenizer, its limit."""
        encoder = embedding.encoder
        kwargs.setdefault("max_tokens", encoder.max_length)
        return cls(embedding.model_name, tokenizer=encoder.tokenizer, **kwargs)

    @classmethod
    def class_name(cls) -> str:
        return "SGPTNodeParser"

    @property
    def limit(self) -> int:
        return self._limit

    def _parse_nodes(self, nodes: Sequence[BaseNode], show_progress: bool = False, **kwargs: Any) -> list[BaseNode]:
        out: list[BaseNode] = []
        for node in get_tqdm_iterable(nodes, show_progress, "Parsing nodes"):
            out.extend(self._split_node(node))
        return out

    def _split_node(self, node: BaseNode) -> list[TextNode]:
        text = node.get_content(metadata_mode=MetadataMode.NONE)
        counter = Counter(self._tokenizer, self._limit)
        budget = self._limit
        if self.embed_metadata:
            budget -= self._metadata_tokens(node, counter)
            if budget < 8:
                raise ValueError(f"document {node.node_id}: its embedded metadata takes {self._limit - budget} "
                                 f"of {self._limit} tokens; exclude keys with excluded_embed_metadata_keys "
                                 "or use embed_metadata=False")
        while True:
            chunks = chunk_text(text, self._tokenizer, budget, min(self.chunk_overlap, budget - 1))
            built = build_nodes_from_splits([c.text for c in chunks], node, id_func=self.id_func)
            for chunk, child in zip(chunks, built):
                child.start_char_idx, child.end_char_idx = chunk.start, chunk.end
                if self.include_metadata:
                    child.metadata = {**node.metadata, **child.metadata}
                if not self.embed_metadata:
                    child.excluded_embed_metadata_keys = sorted(set(child.excluded_embed_metadata_keys)
                                                                | set(child.metadata))
            if all(counter.count(n.get_content(metadata_mode=MetadataMode.EMBED)) <= self._limit for n in built):
                return built
            budget -= 2  # BPE merged across the metadata/text seam: try a little smaller
            if budget < 8:
                raise ValueError(f"document {node.node_id}: cannot fit text and embedded metadata in "
                                 f"{self._limit} tokens")

    def _metadata_tokens(self, node: BaseNode, counter: Counter) -> int:
        probe = TextNode(text="x", metadata=dict(node.metadata),
                         excluded_embed_metadata_keys=list(node.excluded_embed_metadata_keys),
                         metadata_template=node.metadata_template, metadata_separator=node.metadata_separator,
                         text_template=node.text_template)
        return counter.count(probe.get_content(metadata_mode=MetadataMode.EMBED)) - counter.count("x")

    def _postprocess_parsed_nodes(self, nodes: list[BaseNode], parent_doc_map: dict[str, Document]) -> list[BaseNode]:
        spans = {n.node_id: (n.start_char_idx, n.end_char_idx) for n in nodes if isinstance(n, TextNode)}
        nodes = super()._postprocess_parsed_nodes(nodes, parent_doc_map)
        for n in nodes:  # LlamaIndex re-finds offsets by text search; ours are exact
            if n.node_id in spans:
                n.start_char_idx, n.end_char_idx = spans[n.node_id]
            if not self.embed_metadata:  # keys merged in from the parent document
                n.excluded_embed_metadata_keys = sorted(set(n.excluded_embed_metadata_keys) | set(n.metadata))
        return nodes
