#!/usr/bin/env python3
"""A plain PyTorch GPT-2 (float32, CPU) in llm.c's parameter layout, the
reference that torch_gpt2_check.sh compares ballast's model with.

  torch_gpt2.py train MODEL TOKENS OUT --B N --T N --steps N --lr X
      --beta1 X --beta2 X --eps X --wd X [--clip X]
  torch_gpt2.py compare LOSSES_A LOSSES_B MODEL_A MODEL_B
      [--loss-rtol X] [--param-rtol X] [--key-bias-atol X]

train reads an llm.c model file (version 3, float32) and an llm.c token
file, runs `steps` steps of torch.optim.AdamW (weight decay on wte, wpe,
qkvw, attprojw, fcw and fcprojw; none on the biases and LayerNorm
parameters) with torch.nn.utils.clip_grad_norm_ when --clip is above 0,
prints "step S loss L norm G" per step and writes the final parameters to
OUT as an llm.c model file. The batches are gpt2_train_ref.c's: step s
(from 0) reads window s mod (N // W) of W = B * (T + 1) consecutive tokens,
sequence b from token b * (T + 1) on, inputs its first T tokens and
targets the T after the first.

compare prints the largest differences of two runs and exits 1 when a
loss differs by more than loss-rtol relative, or a tensor of the final
parameters by more than param-rtol in relative norm, ||a - b|| / ||b||.
One slice is held to an absolute bound instead: the key third of qkvb.
Adding a vector to every key adds the same number to all of a query's
scores, which the softmax ignores, so the key bias's gradient is exactly 0
and each side's is float rounding (about 1e-11 in the check's model,
against 1e-4 and more for the query and value biases). AdamW divides by
sqrt(v) + eps, which turns such noise into steps of a fraction of lr, in
directions that differ between the two libraries: the key bias drifts by
a few 1e-6 on both sides, differently. It is compared as
max |a - b| <= key-bias-atol.
"""
import argparse
import math
import sys

import numpy as np

HEADER_WORDS = 256
MODEL_MAGIC, MODEL_VERSION = 20240326, 3
TOKENS_MAGIC, TOKENS_VERSION = 20240520, 1
NAMES = ["wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
         "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb"]
DECAYED = {"wte", "wpe", "qkvw", "attprojw", "fcw", "fcprojw"}


def shapes(maxT, V, L, NH, C, Vp):
    """Each tensor's shape, in file order (runtime/model/gpt2_file.h)."""
    return [(Vp, C), (maxT, C), (L, C), (L, C), (L, 3 * C, C), (L, 3 * C),
            (L, C, C), (L, C), (L, C), (L, C), (L, 4 * C, C), (L, 4 * C),
            (L, C, 4 * C), (L, C), (C,), (C,)]


def read_model(path):
    """The header (256 int32) and the tensors (name -> float32 array)."""
    data = open(path, "rb").read()
    header = np.frombuffer(data[:4 * HEADER_WORDS], dtype="<i4").copy()
    if header[0] != MODEL_MAGIC or header[1] != MODEL_VERSION:
        sys.exit(f"torch_gpt2: {path}: not an llm.c float32 model file")
    cfg = [int(x) for x in header[2:8]]  # maxT, V, L, NH, C, Vp
    flat = np.frombuffer(data[4 * HEADER_WORDS:], dtype="<f4")
    tensors, at = {}, 0
    for name, shape in zip(NAMES, shapes(*cfg)):
        count = math.prod(shape)
        tensors[name] = flat[at:at + count].reshape(shape).astype(np.float32)
        at += count
    if at != flat.size:
        sys.exit(f"torch_gpt2: {path}: {flat.size} floats, the config needs {at}")
    return header, tensors


def write_model(path, header, tensors):
    with open(path, "wb") as f:
        f.write(header.astype("<i4").tobytes())
        for name in NAMES:
            f.write(np.ascontiguousarray(tensors[name], dtype="<f4").tobytes())


def read_tokens(path):
    data = open(path, "rb").read()
    header = np.frombuffer(data[:4 * HEADER_WORDS], dtype="<i4")
    if header[0] != TOKENS_MAGIC or header[1] != TOKENS_VERSION:
        sys.exit(f"torch_gpt2: {path}: not an llm.c token file")
    count = int(header[2])
    return np.frombuffer(data[4 * HEADER_WORDS:4 * HEADER_WORDS + 2 * count], dtype="<u2")


def forward(torch, F, p, cfg, idx, targets):
    """The mean cross-entropy of GPT-2 over (B, T) inputs and targets."""
    maxT, V, L, NH, C, Vp = cfg
    B, T = idx.shape
    hs = C // NH
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    x = p["wte"][idx] + p["wpe"][:T]
    for l in range(L):
        h = F.layer_norm(x, (C,), p["ln1w"][l], p["ln1b"][l], eps=1e-5)
        q, k, v = F.linear(h, p["qkvw"][l], p["qkvb"][l]).split(C, dim=2)
        q, k, v = (z.view(B, T, NH, hs).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
        att = F.softmax(att.masked_fill(~causal, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        x = x + F.linear(y, p["attprojw"][l], p["attprojb"][l])
        h = F.layer_norm(x, (C,), p["ln2w"][l], p["ln2b"][l], eps=1e-5)
        h = F.gelu(F.linear(h, p["fcw"][l], p["fcb"][l]), approximate="tanh")
        x = x + F.linear(h, p["fcprojw"][l], p["fcprojb"][l])
    x = F.layer_norm(x, (C,), p["lnfw"], p["lnfb"], eps=1e-5)
    logits = x @ p["wte"].t()  # (B, T, Vp), tied to the embedding
    return F.cross_entropy(logits[:, :, :V].reshape(-1, V), targets.reshape(-1))


def train(a):
    import torch
    import torch.nn.functional as F

    header, tensors = read_model(a.model)
    cfg = [int(x) for x in header[2:8]]
    tokens = read_tokens(a.tokens).astype(np.int64)
    W = a.B * (a.T + 1)
    windows = tokens.size // W
    if windows < 1:
        sys.exit("torch_gpt2: too few tokens for one batch")
    p = {n: torch.nn.Parameter(torch.from_numpy(t.copy())) for n, t in tensors.items()}
    groups = [{"params": [p[n] for n in NAMES if n in DECAYED], "weight_decay": a.wd},
              {"params": [p[n] for n in NAMES if n not in DECAYED], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=a.lr, betas=(a.beta1, a.beta2), eps=a.eps)
    params = [p[n] for n in NAMES]
    for s in range(a.steps):
        win = torch.from_numpy(tokens[(s % windows) * W:(s % windows + 1) * W].copy())
        win = win.view(a.B, a.T + 1)
        opt.zero_grad(set_to_none=True)
        loss = forward(torch, F, p, cfg, win[:, :-1], win[:, 1:])
        loss.backward()
        if a.clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, a.clip)
        else:
            norm = torch.linalg.vector_norm(torch.stack([q.grad.norm() for q in params]))
        opt.step()
        print(f"step {s + 1} loss {loss.item():.9g} norm {norm.item():.9g}")
    write_model(a.out, header, {n: p[n].detach().numpy() for n in NAMES})


def read_losses(path):
    return np.array([float(line.split()[3]) for line in open(path) if line.startswith("step ")])


def split_key_bias(tensors, C):
    """Moves qkvb's key third (its columns [C, 2C)) to the entry "qkvb.k"."""
    qkvb = tensors["qkvb"]
    tensors["qkvb.k"] = qkvb[:, C:2 * C]
    tensors["qkvb"] = np.concatenate([qkvb[:, :C], qkvb[:, 2 * C:]], axis=1)


def compare(a):
    la, lb = read_losses(a.losses_a), read_losses(a.losses_b)
    if la.size == 0 or la.size != lb.size:
        print(f"compare: {la.size} and {lb.size} steps")
        return 1
    loss_rel = np.abs(la - lb) / np.abs(lb)
    header, ta = read_model(a.model_a)
    _, tb = read_model(a.model_b)
    C = int(header[6])
    split_key_bias(ta, C)
    split_key_bias(tb, C)
    worst, worst_name, elem = 0.0, "", 0.0
    for n in NAMES:
        d = ta[n].astype(np.float64) - tb[n].astype(np.float64)
        rel = np.linalg.norm(d) / max(np.linalg.norm(tb[n].astype(np.float64)), 1e-30)
        if rel > worst:
            worst, worst_name = rel, n
        elem = max(elem, float(np.max(np.abs(d))))
    key = float(np.max(np.abs(ta["qkvb.k"].astype(np.float64) - tb["qkvb.k"])))
    print(f"compare: {la.size} steps, max loss difference {loss_rel.max():.3g} relative "
          f"(step {int(loss_rel.argmax()) + 1}); final parameters: max per-tensor "
          f"||a - b|| / ||b|| {worst:.3g} ({worst_name}), max |a - b| {elem:.3g}; "
          f"key bias max |a - b| {key:.3g}")
    ok = loss_rel.max() <= a.loss_rtol and worst <= a.param_rtol and key <= a.key_bias_atol
    print("compare: ok" if ok else
          f"compare: FAILED (limits: losses {a.loss_rtol:g}, parameters {a.param_rtol:g}, "
          f"key bias {a.key_bias_atol:g})")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description="A PyTorch GPT-2 in llm.c's layout.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    for name in ("model", "tokens", "out"):
        t.add_argument(name)
    for name in ("B", "T", "steps"):
        t.add_argument("--" + name, type=int, required=True)
    for name in ("lr", "beta1", "beta2", "eps", "wd"):
        t.add_argument("--" + name, type=float, required=True)
    t.add_argument("--clip", type=float, default=0.0)
    c = sub.add_parser("compare")
    for name in ("losses_a", "losses_b", "model_a", "model_b"):
        c.add_argument(name)
    c.add_argument("--loss-rtol", type=float, default=1e-5)
    c.add_argument("--param-rtol", type=float, default=1e-4)
    c.add_argument("--key-bias-atol", type=float, default=1e-4)
    a = ap.parse_args()
    if a.cmd == "train":
        train(a)
        return 0
    return compare(a)


if __name__ == "__main__":
    sys.exit(main())
