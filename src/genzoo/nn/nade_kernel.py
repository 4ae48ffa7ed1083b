"""NADE's likelihood and its O(D H) gradient [1, Algorithm 1], computed in cache-sized blocks of steps.

With the subpixels taken in the generation order (step t sees subpixel o(t); time-major tensors)::

    a_0 = c,   a_{t+1} = a_t + W_{o(t)}[x_t]            (N, H)  pre-activations; W_j[x] = x W_j (binary)
    h_t = sigmoid(a_t)                                          or row x of W_j (one-hot inputs)
    l_t = h_t V_{o(t)}^T + b_{o(t)}                      (N, K)  logits: K = 1 (Bernoulli), else levels
    log p(x) = sum_t log p(x_t | l_t)                    (N,)    nats

The forward pass is that running sum, one step at a time: the textbook recursion, so ``a_t`` is bitwise
independent of ``x_t`` and later subpixels (each a_t is the same sequence of additions whatever follows).
For binary data each step is three calls on (N, H) slices that stay in cache (sigmoid, output product,
running sum; two (N, H) tensors take turns holding a); the rest is batched over a block of B steps, a
(B, N, H) buffer of h_t sized to stay in cache: the logits' gradients, dL/dV, h_t (1 - h_t). One-hot
inputs run the running sum and the sigmoid on the block buffer and the output layer as one batched
product per block. Nothing of size (N, D, H) is ever stored.

The backward is [1, Algorithm 1] in blocks: with g_t = dL/dl_t (N, K),

    dL/dV_{o(t)} = g_t^T h_t,   dL/db_{o(t)} = sum_n g_t,   da_t = (g_t V_{o(t)}) * h_t (1 - h_t)
    G_t = sum_{t' > t} da_{t'}  (a reverse running sum),    dL/dW_{o(t)}[x] = x_t^T G_t (binary),
                                                            rows x_t of W_{o(t)} += G_t (one-hot)
    dL/dc = sum_n G_{-1}                                    (G_{-1} = the sum of every da_t)

When gradients are needed, each block's backward runs right after its forward, while its h_t are still
in the buffer (nothing is recomputed), for the unweighted sum_n log p(x_n): G_t is then summed in three
parts, each in reverse order and none by subtraction: the later steps of the block (at once), the later
blocks of its group of about sqrt(D/B) blocks (when the group ends), the later groups (at the end).
A backward whose incoming gradient is the same for every image (any mean or sum of log p: the loss)
scales those; any other takes the plain reverse pass, each block recomputed from its stored start.

[1] H. Larochelle, I. Murray. The Neural Autoregressive Distribution Estimator. AISTATS 2011.
"""

from __future__ import annotations

import math
import threading

import torch
import torch.nn.functional as F

BLOCK_ELEMENTS = 1 << 20  # a block of B steps holds B * N * H floats: 4 MiB in fp32 (measured best on one core)
WORKSPACE_ELEMENTS = 1 << 24  # scratch kept between calls (CPU): fresh pages cost more than the math here


def default_block(batch: int, hidden: int, steps: int) -> int:
    """Steps per block: ``BLOCK_ELEMENTS`` floats per (B, N, H) block buffer, at least 1, at most D."""
    return max(1, min(steps, BLOCK_ELEMENTS // max(1, batch * hidden)))


class _Workspace(threading.local):
    """Scratch tensors reused from call to call (one set per thread). On a CPU a freshly allocated
    buffer of this size costs a page fault per 4 KiB on first touch, several times its arithmetic."""

    def __init__(self):
        self.tensors: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple, like: torch.Tensor) -> torch.Tensor:
        if like.device.type != "cpu" or math.prod(shape) > WORKSPACE_ELEMENTS:
            return torch.empty(shape, dtype=like.dtype, device=like.device)
        tensor = self.tensors.get(name)
        if tensor is None or tensor.shape != shape or tensor.dtype != like.dtype:
            tensor = self.tensors[name] = torch.empty(shape, dtype=like.dtype)
        return tensor


_WORKSPACE = _Workspace()


def _log_prob_and_grad(logits: torch.Tensor, xo: torch.Tensor, binary: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-step log p(x_t | l_t) (B, N) and its gradient with respect to the logits."""
    if binary:
        xf = xo.to(logits.dtype)
        return -F.binary_cross_entropy_with_logits(logits, xf, reduction="none"), xf - torch.sigmoid(logits)
    log_softmax = torch.log_softmax(logits, -1)
    index = xo.unsqueeze(-1)
    grad = -log_softmax.exp()
    grad.scatter_add_(-1, index, torch.ones_like(index, dtype=grad.dtype))
    return log_softmax.gather(-1, index).squeeze(-1), grad


class _Kernel:
    """One call: ordered inputs ``xo`` (D, N), parameters W (D, k_in, H), c (H,), V (D, K, H), b (D, K)."""

    def __init__(self, xo, order, W, c, V, b, block: int):
        self.d, self.n = xo.shape
        self.k_in, self.h = W.shape[1], W.shape[2]
        self.binary = self.k_in == 1
        self.xo, self.order = xo, order
        self.W2, self.c, self.V, self.b = W.reshape(-1, self.h), c, V, b  # W2 rows: (subpixel, input level)
        self.block = max(1, min(int(block), self.d))
        self.num_blocks = -(-self.d // self.block)
        self.group = math.isqrt(self.num_blocks - 1) + 1  # blocks per group: about sqrt(D/B)
        if self.binary:
            self.xf = xo.to(W.dtype)  # (D, N) 0/1 values
            # per-step views, made once: indexing inside the step loops costs more than the arithmetic
            self.x_columns = self.xf.unsqueeze(-1).unbind(0)  # x_t as (N, 1)
            self.W_steps = self.W2.index_select(0, order).unbind(0)  # W_{o(t)}: (H,)
            self.V_steps = V[:, 0].index_select(0, order)  # V_{o(t)}: (D, H)
            self.V_rows = self.V_steps.unbind(0)
        else:
            self.rows = order[:, None] * self.k_in + xo  # (D, N) the row of W2 each image adds at step t

    def bounds(self, index: int) -> tuple[int, int]:
        return index * self.block, min(index * self.block + self.block, self.d)

    def scratch(self, name: str, *shape: int) -> torch.Tensor:
        return _WORKSPACE.get(name, shape, self.c)

    def preactivations(self, out: torch.Tensor, s: int, e: int, a_next: torch.Tensor | None) -> None:
        """One-hot inputs: given ``out[0]`` = a_s, fill ``out[1:e-s]`` with a_{s+1} .. a_{e-1}, ``a_next`` with a_e."""
        last = e - s - 1
        terms = self.scratch("terms", self.block * self.n, self.h)[: (e - s) * self.n]
        torch.index_select(self.W2, 0, self.rows[s:e].reshape(-1), out=terms)
        terms = terms.view(e - s, self.n, self.h)
        for t in range(last):
            torch.add(out[t], terms[t], out=out[t + 1])
        if a_next is not None:
            torch.add(out[last], terms[last], out=a_next)

    def output_rows(self, s: int, e: int) -> torch.Tensor:
        """V_{o(t)} for the steps of a block: (B, K, H)."""
        return self.V.index_select(0, self.order[s:e])

    def run_block(self, s: int, e: int, hidden, a, spare, logits=None) -> tuple[torch.Tensor, torch.Tensor]:
        """h_s .. h_{e-1} into ``hidden`` from ``a`` holding a_s, and (if given) their logits without the bias
        into ``logits[s:e]``; returns (the tensor now holding a_e, a free one): ``a`` and ``spare`` are two
        (N, H) tensors used in turn, so that the running sum never leaves the cache."""
        if self.binary:  # one step at a time: sigmoid, output product, running sum; all on cached (N, H) slices
            for t, h in zip(range(s, e), hidden.unbind(0)):
                torch.sigmoid(a, out=h)
                if logits is not None:
                    torch.mv(h, self.V_rows[t], out=logits[t])
                if t + 1 < self.d:
                    torch.addcmul(a, self.x_columns[t], self.W_steps[t], out=spare)
                    a, spare = spare, a
            return a, spare
        hidden[0].copy_(a)
        self.preactivations(hidden, s, e, spare if e < self.d else None)
        hidden.sigmoid_()
        if logits is not None:
            torch.bmm(hidden, self.output_rows(s, e).transpose(1, 2), out=logits[s:e])
        return (spare, a) if e < self.d else (a, spare)

    def forward(self, *, with_log_prob: bool = False, fuse: bool = False) -> dict:
        """Logits (D, N) binary or (D, N, K); with ``with_log_prob`` also log p(x_t | x_<t) (D, N) and its
        gradient with respect to the logits; with ``fuse`` also the gradients of sum_n log p(x_n)."""
        d, n, h, B = self.d, self.n, self.h, self.block
        new = {"dtype": self.c.dtype, "device": self.c.device}
        logits = torch.empty((d, n) if self.binary else (d, n, self.b.shape[1]), **new)
        log_prob = torch.empty(d, n, **new) if with_log_prob or fuse else None
        grad_logits = torch.empty_like(logits) if with_log_prob or fuse else None
        bias = self.b.index_select(0, self.order)  # (D, 1) broadcasts over binary logits (D, N)
        bias = bias if self.binary else bias[:, None]
        hidden = self.scratch("hidden", B, n, h)
        a, spare = self.scratch("a", n, h).copy_(self.c.expand(n, h)), self.scratch("spare", n, h)
        if fuse:
            grad_a = self.scratch("grad_a", B, n, h)
            in_group = self.scratch("block_sums", self.group, n, h)
            group_sums = self.scratch("group_sums", -(-self.num_blocks // self.group), n, h)
            self.start_grads()
        for k in range(self.num_blocks):
            s, e = self.bounds(k)
            block = hidden[: e - s]
            a, spare = self.run_block(s, e, block, a, spare, logits)
            logits[s:e] += bias[s:e]
            if grad_logits is not None:
                log_prob[s:e], grad_logits[s:e] = _log_prob_and_grad(logits[s:e], self.xo[s:e], self.binary)
            if fuse:
                self.block_backward(s, e, block, grad_a[: e - s], grad_logits[s:e], in_group[k % self.group].zero_())
                if k % self.group == self.group - 1 or k == self.num_blocks - 1:
                    self.finish_group(k // self.group, in_group, group_sums)
        out = {"logits": logits, "log_prob": log_prob, "grad_logits": grad_logits}
        if fuse:
            G = self.scratch("G", n, h).zero_()
            for g in range(len(group_sums) - 1, -1, -1):  # the later groups' terms, latest first
                first, last = g * self.group, min(g * self.group + self.group, self.num_blocks) - 1
                if g < len(group_sums) - 1:
                    self.add_later_terms(self.bounds(first)[0], self.bounds(last)[1], G)
                G += group_sums[g]
            out["grads"] = self.finish_grads(G, grad_logits)
        return out

    def finish_group(self, g: int, in_group: torch.Tensor, group_sums: torch.Tensor) -> None:
        """The terms of the later blocks within group ``g``, latest first; its sum of da into group_sums[g]."""
        first, last = g * self.group, min(g * self.group + self.group, self.num_blocks) - 1
        G = group_sums[g].zero_()
        for k in range(last, first - 1, -1):
            if k < last:
                self.add_later_terms(*self.bounds(k), G)
            G += in_group[k - first]

    def add_later_terms(self, s: int, e: int, G: torch.Tensor) -> None:
        """dL/dW_{o(t)}[x_t] += x_t^T G for the steps s..e-1 (G: a sum of da over steps after them)."""
        if self.binary:
            self.grad_W_steps[s:e, 0].addmm_(self.xf[s:e], G)
        else:
            for t in range(s, e):
                self.grad_W2.index_add_(0, self.rows[t], G)

    def block_backward(self, s, e, hidden, grad_a, g, G) -> None:
        """The gradients of V and W from the steps s..e-1, given their h_t (``hidden``, may be overwritten) and
        the logits' gradients ``g`` (B, N[, K]). ``G`` (N, H) holds the sum of da over the steps after the
        block (zero: those terms come later, from ``add_later_terms``); this block's da are added to it."""
        if self.binary:  # da_t = g_t q_t with q_t = V_{o(t)} h_t (1 - h_t); the running sum G_t stays in cache
            torch.bmm(g[:, None, :], hidden, out=self.grad_V_steps[s:e])
            q = torch.ops.aten.sigmoid_backward.grad_input(
                self.V_steps[s:e, None].expand_as(hidden), hidden, grad_input=grad_a
            ).unbind(0)
            g = g[:, :, None].unbind(0)
            for t in range(e - 1, s - 1, -1):
                torch.mv(G.t(), self.xf[t], out=self.grad_W_steps[t, 0])  # x_t^T G_t
                G.addcmul_(q[t - s], g[t - s])
            return
        last = e - s - 1
        torch.bmm(g.transpose(1, 2), hidden, out=self.grad_V_steps[s:e])
        torch.bmm(g, self.output_rows(s, e), out=grad_a)  # dL/dh_t = g_t V_{o(t)}
        torch.ops.aten.sigmoid_backward.grad_input(grad_a, hidden, grad_input=grad_a)  # da_t = dh_t h_t (1 - h_t)
        after, da = hidden.unbind(0), grad_a.unbind(0)  # h is spent: the buffer now holds G_t
        after[last].copy_(G)
        for t in range(last - 1, -1, -1):
            torch.add(after[t + 1], da[t + 1], out=after[t])
        self.grad_W2.index_add_(0, self.rows[s:e].reshape(-1), hidden.reshape(-1, self.h))
        torch.add(after[0], da[0], out=G)

    def start_grads(self) -> None:
        """Gradient accumulators; V's (and binary W's) rows in step order, scattered to subpixels at the end."""
        self.grad_V_steps = torch.empty_like(self.V)
        if self.binary:
            self.grad_W_steps = torch.empty(self.d, 1, self.h, dtype=self.W2.dtype, device=self.W2.device)
        else:
            self.grad_W2 = torch.zeros_like(self.W2)

    def finish_grads(self, G: torch.Tensor, grad_logits: torch.Tensor) -> tuple:
        """(dW2, dc, dV, db), given G = the sum of every da_t and the logits' gradients."""
        grad_V = torch.empty_like(self.V).index_copy_(0, self.order, self.grad_V_steps)
        if self.binary:
            grad_W2 = torch.empty_like(self.W2).index_copy_(0, self.order, self.grad_W_steps[:, 0])
        else:
            grad_W2 = self.grad_W2
        grad_b = torch.empty_like(self.b).index_copy_(0, self.order, grad_logits.sum(1).reshape(self.d, -1))
        return grad_W2, G.sum(0), grad_V, grad_b

    def backward(self, grad_logits: torch.Tensor) -> tuple:
        """The plain reverse pass for logits' gradients ``grad_logits``: blocks latest first, each
        recomputed from its start a_s (the starts from one more forward running sum, bit for bit)."""
        n, h, B = self.n, self.h, self.block
        starts = torch.empty(self.num_blocks, n, h, dtype=self.c.dtype, device=self.c.device)
        hidden, grad_a = self.scratch("hidden", B, n, h), self.scratch("grad_a", B, n, h)
        a, spare = self.scratch("a", n, h).copy_(self.c.expand(n, h)), self.scratch("spare", n, h)
        for k in range(self.num_blocks):
            s, e = self.bounds(k)
            starts[k].copy_(a)
            a, spare = self.run_block(s, e, hidden[: e - s], a, spare)
        self.start_grads()
        G = self.scratch("G", n, h).zero_()  # the sum of da over the steps after the current block
        for k in range(self.num_blocks - 1, -1, -1):
            s, e = self.bounds(k)
            a.copy_(starts[k])
            self.run_block(s, e, hidden[: e - s], a, spare)
            self.block_backward(s, e, hidden[: e - s], grad_a[: e - s], grad_logits[s:e], G)
        return self.finish_grads(G, grad_logits)


def nade_logits(xo, order, W, c, V, b, block: int | None = None) -> torch.Tensor:
    """Logits of every step in the ordering (no autograd): (D, N) for binary data, else (D, N, K).

    ``xo`` (D, N) LongTensor: xo[t] = subpixel order[t] of every image. Parameters as in NADE:
    W (D, k_in, H), c (H,), V (D, K, H), b (D, K), indexed by flat subpixel.
    """
    with torch.no_grad():
        block = block or default_block(xo.shape[1], W.shape[2], xo.shape[0])
        return _Kernel(xo, order, W, c, V, b, block).forward()["logits"]


class NADELogProb(torch.autograd.Function):
    """log p(x) (N,) in nats, with the blocked O(D H) backward of [1, Algorithm 1] (see the module)."""

    @staticmethod
    def forward(ctx, xo, order, W, c, V, b, block):
        kernel = _Kernel(xo, order, W, c, V, b, block)
        needs_grad = any(ctx.needs_input_grad[2:6])
        out = kernel.forward(with_log_prob=True, fuse=needs_grad)
        if needs_grad:
            ctx.save_for_backward(xo, order, W, c, V, b)
            ctx.grad_logits, ctx.grads, ctx.block = out["grad_logits"], out["grads"], block
        return out["log_prob"].sum(0)

    @staticmethod
    def backward(ctx, grad_out):
        xo, order, W, c, V, b = ctx.saved_tensors
        if grad_out.numel() and bool((grad_out == grad_out[0]).all()):
            grads = [g * grad_out[0] for g in ctx.grads]
        else:
            weights = grad_out[None, :] if ctx.grad_logits.dim() == 2 else grad_out[None, :, None]
            grads = _Kernel(xo, order, W, c, V, b, ctx.block).backward(ctx.grad_logits * weights)
        return None, None, grads[0].view_as(W), grads[1], grads[2], grads[3], None


def nade_log_prob(xo, order, W, c, V, b, block: int | None = None) -> torch.Tensor:
    """log p(x) of each image (N,), nats; differentiable in W, c, V, b (O(D H) memory per image).

    ``xo`` (D, N) LongTensor: xo[t] = subpixel order[t] of every image (time-major); ``block``: steps
    per block (default: ``default_block``). The block size changes the speed, not the running sums.
    """
    block = int(block or default_block(xo.shape[1], W.shape[2], xo.shape[0]))
    return NADELogProb.apply(xo, order, W, c, V, b, block)
