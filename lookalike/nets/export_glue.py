"""LightGlue exported in steps, for an adaptive run on ONNX Runtime (runtime.run_adaptive).

Why: the one-graph export (lookalike.nets.export.LightGlueGraph) runs all nine layers on
every keypoint, ~80 GFLOP a pair at 1,024 keypoints a side: ~1 s a pair on two cores. LightGlue
was designed to do far less: it stops after the layer where enough points are confident
(depth confidence) and drops, between layers, the points it is sure will not match (width
confidence). Both are decisions on data, between layers, which one traced graph cannot take.
So the network is exported in pieces, each a small graph with dynamic batch and keypoint
counts, and a numpy driver (lookalike.nets.runtime.run_adaptive) runs them and takes the
decisions in between:

- `GlueStart`: input projection and the positional encoding (kornia's learnable Fourier
  features, as the rotary embedding's cos/sin pair).
- `GlueLayer` (one graph per layer `index`): the self and cross blocks on padded sets with
  masks, and, except after the last layer, the two heads the decisions read: the token
  confidence (early exit) and the layer's matchability (pruning), as probabilities.
- `GlueAssign` (one graph per layer): the layer's assignment head (final projection, dual
  softmax with matchability) and kornia's `filter_matches`: mutual best above the threshold.

The blocks are LightGlueGraph's own (same arithmetic, masks and constant matrices), so the
steps equal the one graph when every layer runs and nothing is pruned.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from lookalike.nets.export import OPSET, LightGlueGraph


class GlueStart(LightGlueGraph):
    """keypoints B x M x 2 (normalised), descriptors B x M x D_in -> the input of layer 0:
    desc B x M x d and the rotary encoding 2 x B x 1 x M x d_head."""

    def forward(self, keypoints, descriptors):
        return self.model.input_proj(descriptors), self._encode(keypoints)


class GlueLayer(LightGlueGraph):
    """Transformer layer `index` on padded pairs (valid0 B x M, valid1 B x N mark the real
    points) -> next0, next1 (the new desc0, desc1), and before the last layer also
    confidence0/1 (token confidence) and matchability0/1 (the layer's assignment head),
    B x M / B x N each."""

    def __init__(self, model, index: int):
        super().__init__(model)
        self.index = int(index)
        self.last = self.index == len(model.transformers) - 1

    def forward(self, desc0, desc1, encoding0, encoding1, valid0, valid1):
        layer = self.model.transformers[self.index]
        bias0 = torch.where(valid0, 0.0, -1e9)[:, None, :, None]  # B x 1 x M x 1
        bias1 = torch.where(valid1, 0.0, -1e9)[:, None, :, None]
        desc0 = self._self_biased(layer.self_attn, desc0, encoding0, bias0)
        desc1 = self._self_biased(layer.self_attn, desc1, encoding1, bias1)
        desc0, desc1 = self._cross_biased(layer.cross_attn, desc0, desc1, bias0, bias1)
        if self.last:
            return desc0, desc1
        token = self.model.token_confidence[self.index].token  # Linear(d, 1), Sigmoid
        head = self.model.log_assignment[self.index]
        return (desc0, desc1, token(desc0)[..., 0], token(desc1)[..., 0],
                torch.sigmoid(head.matchability(desc0))[..., 0],
                torch.sigmoid(head.matchability(desc1))[..., 0])

    # Padding is kept out of attention by a bias of -1e9 on padded keys, folded into the
    # attention's product as one more column of the queries (ones) and of the keys (the
    # bias): LightGlueGraph's select over each whole attention map cost a quarter of a
    # layer's time on a CPU, an added bias map as much. Real entries get q.k + 0, exactly
    # the unpadded values; a padded query's row attends to real keys and is discarded.
    def _self_biased(self, block, x, encoding, bias):
        qkv = block.Wqkv(x)
        qkv = qkv.reshape(qkv.shape[0], qkv.shape[1], block.num_heads, block.head_dim, 3)
        qkv = qkv.transpose(1, 2)
        q, k, v = qkv[..., 0], qkv[..., 1], qkv[..., 2]
        q, k = self._rotate(encoding, q), self._rotate(encoding, k)
        ones = torch.ones_like(q[..., :1])
        q = torch.cat([q, ones], -1)
        k = torch.cat([k, bias.expand_as(ones)], -1)
        sim = q @ k.transpose(-1, -2) * block.head_dim ** -0.5
        context = F.softmax(sim, dim=-1) @ v
        message = block.out_proj(self._merge(context))
        return x + block.ffn(torch.cat([x, message], -1))

    def _cross_biased(self, block, x0, x1, bias0, bias1):
        def heads(t):
            return t.reshape(t.shape[0], t.shape[1], block.heads, -1).transpose(1, 2)

        qk0, qk1 = heads(block.to_qk(x0)), heads(block.to_qk(x1))
        v0, v1 = heads(block.to_v(x0)), heads(block.to_v(x1))
        qk0, qk1 = qk0 * block.scale ** 0.5, qk1 * block.scale ** 0.5
        ones0, ones1 = torch.ones_like(qk0[..., :1]), torch.ones_like(qk1[..., :1])
        qk0 = torch.cat([qk0, ones0, bias0.expand_as(ones0)], -1)
        qk1 = torch.cat([qk1, bias1.expand_as(ones1), ones1], -1)
        sim = qk0 @ qk1.transpose(-1, -2)  # B x H x M x N, + bias1 on columns, bias0 on rows
        m0 = F.softmax(sim, dim=-1) @ v1
        m1 = F.softmax(sim.transpose(-1, -2), dim=-1) @ v0
        m0, m1 = block.to_out(self._merge(m0)), block.to_out(self._merge(m1))
        return (x0 + block.ffn(torch.cat([x0, m0], -1)),
                x1 + block.ffn(torch.cat([x1, m1], -1)))


class GlueAssign(LightGlueGraph):
    """Assignment head `index` on padded pairs -> matches0 B x M (index into image 1's
    points, or -1) and their probabilities scores0 B x M."""

    def __init__(self, model, index: int):
        super().__init__(model)
        self.index = int(index)

    def forward(self, desc0, desc1, valid0, valid1):
        pair = valid0[:, :, None] & valid1[:, None, :]
        return self._assign(self.model.log_assignment[self.index], desc0, desc1, pair)


def _axes(names) -> dict:
    """Dynamic axes: batch and keypoint count (m for image 0's tensors, n for image 1's)."""
    axes = {}
    for name in names:
        side = "n" if name.endswith("1") else "m"
        axes[name] = ({1: "batch", 3: side} if name.startswith("encoding")
                      else {0: "batch", 1: side})
    return axes


def _export(graph, example, names, outputs, path) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on constants it keeps
        torch.onnx.export(graph.eval(), tuple(example), str(path), opset_version=OPSET,
                          dynamo=False, input_names=names, output_names=outputs,
                          dynamic_axes=_axes(names + outputs))


def _examples(model):
    """Two padded pairs of uneven sizes: (keypoints, descriptors, valid) for 40 and 30."""
    generator = torch.Generator().manual_seed(0)
    found = []
    for count in (40, 30):
        keypoints = torch.rand(2, count, 2, generator=generator) * 2 - 1
        descriptors = F.normalize(torch.randn(2, count, int(model.conf.input_dim),
                                              generator=generator), dim=-1)
        valid = torch.ones(2, count, dtype=torch.bool)
        valid[1, count - 5:] = False
        found.append((keypoints, descriptors, valid))
    return found


def export_glue_step(model, step: str, index: int, path) -> None:
    """Write LightGlue's `step` ("start", "layer" or "assign"; `index` = the layer) to
    `path` (model: a kornia LightGlue with its weights)."""
    (k0, d0, v0), (k1, d1, v1) = _examples(model)
    start = GlueStart(model).eval()
    if step == "start":
        _export(start, (k0, d0), ["keypoints", "descriptors"], ["desc", "encoding"], path)
        return
    with torch.no_grad():
        x0, e0 = start(k0, d0)
        x1, e1 = start(k1, d1)
    if step == "layer":
        graph = GlueLayer(model, index)
        outputs = ["next0", "next1"]
        if not graph.last:
            outputs += ["confidence0", "confidence1", "matchability0", "matchability1"]
        _export(graph, (x0, x1, e0, e1, v0, v1),
                ["desc0", "desc1", "encoding0", "encoding1", "valid0", "valid1"], outputs, path)
    elif step == "assign":
        _export(GlueAssign(model, index), (x0, x1, v0, v1),
                ["desc0", "desc1", "valid0", "valid1"], ["matches0", "scores0"], path)
    else:
        raise ValueError(f"unknown LightGlue step {step!r}")
