"""Tiny ONNX graphs for the tests: any input shape, scores = mean of the image per label."""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

Shape = list[int | str]


def mean_model(
    input_shape: Shape | None = None,
    output_shape: Shape | None = None,
    *,
    labels: int = 1,
    input_name: str = "image",
    output_name: str = "scores",
    input_type: int = TensorProto.FLOAT,
) -> bytes:
    """``scores[N, labels]`` = the mean of each image, repeated per label.

    The declared shapes are what the graph *says*; the computation works for any 4-D input.
    """
    input_shape = input_shape if input_shape is not None else ["N", 1, 4, 4]
    output_shape = output_shape if output_shape is not None else ["N", labels]
    nodes = [
        helper.make_node("Cast", [input_name], ["image_f"], to=TensorProto.FLOAT),
        helper.make_node("Flatten", ["image_f"], ["flat"], axis=1),
        helper.make_node("ReduceMean", ["flat"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Tile", ["mean", "repeats"], [output_name]),
    ]
    repeats = helper.make_tensor("repeats", TensorProto.INT64, [2], [1, labels])
    graph = helper.make_graph(
        nodes,
        "mean",
        [helper.make_tensor_value_info(input_name, input_type, input_shape)],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, output_shape)],
        initializer=[repeats],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())
