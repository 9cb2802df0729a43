"""Results render in Jupyter: chat as markdown with usage and timing, arrays as previews."""

from __future__ import annotations

import numpy as np

from localinfer.client.results import (
    ChatResult,
    Embeddings,
    ModelInfo,
    ModelList,
    Stats,
    Timing,
    Transcription,
    TranscriptSegment,
    Usage,
    statistics_from,
)


def test_chat_reply_renders_its_text_with_usage_and_timing() -> None:
    result = ChatResult(
        text="**Paris**, of course.",
        model="m",
        finish_reason="stop",
        usage=Usage(10, 4, 14),
        timing=Timing(0.5, 12.0, 30.0, 100.0, total_ms=45.0, first_token_ms=13.0),
    )
    markdown = result._repr_markdown_()
    assert markdown.startswith("**Paris**, of course.")
    for part in ("10 prompt + 4 completion tokens", "100.0 tok/s", "first token 13.0 ms"):
        assert part in markdown
    assert str(result) == "**Paris**, of course." and "Paris" in repr(result)


def test_embeddings_show_shape_and_a_preview() -> None:
    vectors = np.eye(8, 400, dtype=np.float32)
    embeddings = Embeddings(vectors, "minilm", Usage(8, 0, 8), tuple(f"text {i}" for i in range(8)))
    rendered = embeddings._repr_html_()
    assert "8 x 400 float32" in rendered and "minilm" in rendered
    assert rendered.count("<tr>") == 6  # five rows and "… 3 more"
    assert repr(embeddings) == "Embeddings(model='minilm', shape=(8, 400))"
    assert np.asarray(embeddings, dtype=np.float64).dtype == np.float64
    table = embeddings.similarity()
    assert table.matrix.shape == (8, 8) and "<table>" in table._repr_html_()
    assert table.most_similar(0, k=1)[0][0] == "text 0"


def test_transcription_models_and_stats_render() -> None:
    transcription = Transcription(
        "Hello there.",
        "whisper",
        "english",
        2.0,
        (TranscriptSegment(0, 0.0, 1.5, " Hello there."),),
    )
    assert "> Hello there." in transcription._repr_markdown_()
    assert "0.00" in transcription._repr_markdown_()
    models = ModelList((ModelInfo("a", "chat"),))
    assert "<td>a</td><td>chat</td>" in models._repr_html_()
    raw = {"submitted": 3, "cancelled": 1, "latency_ms": {"p50": 2.5, "p95": None}, "extra": 1}
    stats = Stats({"a": statistics_from(raw)})
    assert stats["a"].cancelled == 1 and stats["a"].latency_p50_ms == 2.5
    assert stats["a"].raw["extra"] == 1 and "<th>a</th>" in stats._repr_html_()
