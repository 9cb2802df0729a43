"""A stand-in for Kokoro's ONNX graph, built in the test: no weights can be downloaded here.

It has Kokoro v1.0's interface, as the Hub's export has it: ``input_ids`` (int64, 1 x L,
padded with 0 at both ends), ``style`` (float32, 1 x 256) and ``speed`` (float32, 1) in,
``waveform`` (float32, N) out. It says a tone: ``SAMPLES_PER_TOKEN / speed`` samples a
token, louder for a louder style, so a test can see that tokens, speed and voice reach it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

SAMPLES_PER_TOKEN = 600
STYLE_ROWS = 510


def build_graph(path: Path) -> Path:
    """Write the tiny graph to ``path``."""
    const = {
        "one": np.array(1, dtype=np.int64),
        "rate": np.array(float(SAMPLES_PER_TOKEN), dtype=np.float32),
        "zero_f": np.array(0.0, dtype=np.float32),
        "one_f": np.array(1.0, dtype=np.float32),
        "pitch": np.array(0.07, dtype=np.float32),
        "floor": np.array(0.1, dtype=np.float32),
    }
    nodes = [
        helper.make_node(
            "Constant",
            [],
            [name],
            value=helper.make_tensor(
                name, helper.np_dtype_to_tensor_dtype(value.dtype), [], [value.item()]
            ),
        )
        for name, value in const.items()
    ]
    nodes += [
        helper.make_node("Shape", ["input_ids"], ["shape"]),
        helper.make_node("Gather", ["shape", "one"], ["length"], axis=0),
        helper.make_node("Cast", ["length"], ["length_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["length_f", "rate"], ["at_speed_one"]),
        helper.make_node("Squeeze", ["speed"], ["speed_s"]),
        helper.make_node("Div", ["at_speed_one", "speed_s"], ["frames"]),
        helper.make_node("Range", ["zero_f", "frames", "one_f"], ["t"]),
        helper.make_node("Mul", ["t", "pitch"], ["phase"]),
        helper.make_node("Sin", ["phase"], ["tone"]),
        helper.make_node("Abs", ["style"], ["style_abs"]),
        helper.make_node("ReduceMean", ["style_abs"], ["loudness"], keepdims=0),
        helper.make_node("Add", ["loudness", "floor"], ["gain"]),
        helper.make_node("Mul", ["tone", "gain"], ["waveform"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_kokoro",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "L"]),
            helper.make_tensor_value_info("style", TensorProto.FLOAT, [1, 256]),
            helper.make_tensor_value_info("speed", TensorProto.FLOAT, [1]),
        ],
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["N"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def style(loudness: float) -> np.ndarray:
    """A voice's style table: every row ``loudness`` (so the gain is ``loudness + 0.1``)."""
    return np.full((STYLE_ROWS, 1, 256), loudness, dtype=np.float32)


def hub_layout(root: Path) -> Path:
    """The Hub export's files: ``onnx/model.onnx`` and raw ``voices/<name>.bin``."""
    build_graph(root / "onnx" / "model.onnx")
    (root / "voices").mkdir(parents=True, exist_ok=True)
    style(0.2).tofile(root / "voices" / "af_heart.bin")
    style(0.6).tofile(root / "voices" / "bm_george.bin")
    return root


def release_layout(root: Path) -> Path:
    """kokoro-onnx's release files: ``kokoro-v1.0.onnx`` and the ``voices-v1.0.bin`` archive."""
    build_graph(root / "kokoro-v1.0.onnx")
    with open(root / "voices-v1.0.bin", "wb") as archive:
        np.savez(archive, af_sky=style(0.3), ff_siwis=style(0.3))
    return root
