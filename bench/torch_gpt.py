#!/usr/bin/env python3
"""PyTorch peer of `ballast-train --model gpt2`: a plain float32 GPT-2 trained
on the CPU on the bytes of a text file, in one process or with
DistributedDataParallel over gloo under mpirun. bench_gpt.sh runs it next to
ballast-train; see bench/README.md (bench_gpt).

Needs Debian's python3-torch (run it with /usr/bin/python3).

  torch_gpt.py --text FILE --threads 1                    one process
  torch_gpt.py --text FILE --threads 2 --sdpa             fused attention
  mpirun -np 2 --bind-to none torch_gpt.py --ddp --text FILE --threads 1
                                                          DDP, B / 2 sequences per rank

The model is GPT-2 in llm.c's shapes, bench/torch_gpt_model.py's (shared
with bench/torch_gpt_gpu.py; tests/torch_gpt2.py has the same choices),
with the token table unpadded (V rows): token and position embeddings; L
pre-LN blocks (LayerNorm, causal self-attention with one fused QKV
Linear(C, 3C) and a projection Linear(C, C), residual; LayerNorm,
Linear(C, 4C), GELU (tanh), Linear(4C, C), residual); a final LayerNorm; the
head tied to the token embedding; the mean cross-entropy over the B * T
targets. GPT-2's initialisation: weights N(0, 0.02^2), the two residual
projections N(0, (0.02 / sqrt(2L))^2), biases 0, LayerNorms 1 and 0. AdamW
(betas 0.9, 0.95, eps 1e-8) with weight decay on the >= 2-D parameters only,
the gradient's global norm clipped to --clip (0: no clipping). The learning
rate follows ballast-train's schedule (runtime/lm/lm_schedule.c), set per
step in the optimizer's param_groups: step s (0-based) uses lr * (s + 1) / W
for s < W (--warmup W, default 0), then lr (--lr-schedule constant, the
default) or, with cosine,
lr_min + 0.5 * (1 + cos(pi * (s - W) / (S - W))) * (lr - lr_min).

Data: token i is byte i of the file (vocab 256). A sequence is T + 1
consecutive tokens starting at a multiple of T (input its first T, target
the T after the first); each step draws B starts at random from a generator
seeded by --seed, the same on every rank; with --ddp rank r trains on
sequences r * B / P .. (r + 1) * B / P - 1 of that global batch.

Validation (--val-fraction X > 0; default 0, none): as ballast-train
without --val-tokens, the last floor(N * X) of the file's N tokens are held
out and the batches are drawn from the first N - floor(N * X) alone. After
the last step rank 0 evaluates the final model (eval mode, no_grad) on the
first min(--val-sequences, (Nval - 1) // T) sequences of the held-out
stream (sequence i: its tokens i * T .. i * T + T), the mean per-token
cross-entropy over their targets, as bl_lm_trainer_evaluate computes it.

Timing: the training loop only (after start-up, data loading, model
creation and, with --ddp, a barrier), all S steps including the first,
ending with a barrier: tokens_per_s = S * B * T / that wall time, as
ballast-train's summary counts. Rank 0 prints an info line and
  summary: steps=S tokens_per_s=X train_loss=Y last_loss=Z [val_loss=V]
(train_loss: the mean loss of the last min(S, 100) steps over the global
batch; last_loss: the last step's; val_loss, with --val-fraction > 0, the
validation loss above; the evaluation is outside the timed loop)."""
import argparse
import math
import os
import sys
import time

p = argparse.ArgumentParser(description="PyTorch GPT-2 training throughput (ballast's peer).")
p.add_argument("--n-layer", type=int, default=4)
p.add_argument("--n-head", type=int, default=4)
p.add_argument("--n-embd", type=int, default=256)
p.add_argument("--seq-len", type=int, default=128, help="T, also the position table's size")
p.add_argument("--vocab", type=int, default=256)
p.add_argument("--batch", type=int, default=16, help="global batch B, in sequences")
p.add_argument("--steps", type=int, default=30)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--weight-decay", type=float, default=0.1)
p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
               help="after the warm-up: constant, or a cosine decay to --lr-min at the last step")
p.add_argument("--warmup", type=int, default=0, help="linear warm-up steps: lr * (s + 1) / W")
p.add_argument("--lr-min", type=float, default=0.0, help="the cosine schedule's floor")
p.add_argument("--val-fraction", type=float, default=0.0,
               help="hold out the last floor(N * X) tokens for validation (0: none)")
p.add_argument("--val-sequences", type=int, default=64,
               help="evaluate on at most N held-out sequences (0: all)")
p.add_argument("--clip", type=float, default=1.0, help="max global gradient norm (0: none)")
p.add_argument("--threads", type=int, default=1, help="intra-op threads per process")
p.add_argument("--text", required=True, help="the training text; its bytes are the tokens")
p.add_argument("--seed", type=int, default=1)
p.add_argument("--sdpa", action="store_true",
               help="attention by F.scaled_dot_product_attention(is_causal=True)")
p.add_argument("--ddp", action="store_true",
               help="DistributedDataParallel over gloo; rank and size from mpirun's "
                    "OMPI_COMM_WORLD_RANK and OMPI_COMM_WORLD_SIZE")
p.add_argument("--port", type=int, default=int(os.environ.get("MASTER_PORT", "29547")),
               help="the gloo rendezvous port on 127.0.0.1 (default $MASTER_PORT or 29547)")
a = p.parse_args()

# The BLAS reads these when it loads: set them before torch is imported.
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(a.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch_gpt_model import GPT2  # noqa: E402


def die(msg):
    sys.exit(f"torch_gpt.py: {msg}")


def lr_at(s):
    """ballast's bl_lr_at: the learning rate of step s (0-based)."""
    if s < a.warmup:
        return a.lr * (s + 1) / a.warmup
    if a.lr_schedule == "constant":
        return a.lr
    if s >= a.steps:
        return a.lr_min
    done = (s - a.warmup) / (a.steps - a.warmup)
    return a.lr_min + 0.5 * (1.0 + math.cos(math.pi * done)) * (a.lr - a.lr_min)


@torch.no_grad()
def evaluate(model, val, T, max_seqs):
    """The mean per-token cross-entropy over the first sequences of val."""
    n = (val.numel() - 1) // T
    if max_seqs > 0:
        n = min(n, max_seqs)
    was_training = model.training
    model.eval()
    offsets = torch.arange(T + 1)
    total = 0.0
    for at in range(0, n, 64):
        k = min(64, n - at)
        win = val[(torch.arange(at, at + k) * T).unsqueeze(1) + offsets]  # (k, T + 1)
        total += model(win[:, :-1], win[:, 1:]).item() * k * T  # the mean over k * T targets
    model.train(was_training)
    return total / (n * T)


def main():
    L, NH, C, T, V, B = a.n_layer, a.n_head, a.n_embd, a.seq_len, a.vocab, a.batch
    for name in ("n_layer", "n_head", "n_embd", "seq_len", "vocab", "batch", "steps",
                 "threads"):
        if getattr(a, name) < 1:
            die(f"--{name.replace('_', '-')} must be at least 1")
    if C % NH:
        die(f"--n-head {NH} does not divide --n-embd {C}")
    if a.warmup < 0:
        die("--warmup must be >= 0")
    if a.lr_schedule == "cosine":
        if a.steps <= a.warmup:
            die(f"--lr-schedule cosine: --steps {a.steps} must exceed --warmup {a.warmup}")
        if not 0.0 <= a.lr_min <= a.lr:
            die(f"--lr-min {a.lr_min} must be in [0, --lr {a.lr}]")
    if not 0.0 <= a.val_fraction < 1.0:
        die(f"--val-fraction {a.val_fraction} must be in [0, 1)")
    if a.val_sequences < 0:
        die("--val-sequences must be >= 0")
    if a.sdpa and not hasattr(F, "scaled_dot_product_attention"):
        die(f"--sdpa needs torch >= 2.0 (F.scaled_dot_product_attention); this is torch "
            f"{torch.__version__}")
    rank, world = 0, 1
    if a.ddp:
        try:
            rank = int(os.environ["OMPI_COMM_WORLD_RANK"])
            world = int(os.environ["OMPI_COMM_WORLD_SIZE"])
        except KeyError:
            die("--ddp: run it under mpirun (OMPI_COMM_WORLD_RANK/SIZE are not set)")
        if B % world:
            die(f"--batch {B} is not a multiple of the {world} ranks")
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)

    data = np.fromfile(a.text, dtype=np.uint8)
    if data.max(initial=0) >= V:
        die(f"--vocab {V}: {a.text} has byte {int(data.max())}")
    tokens = torch.from_numpy(data.astype(np.int64))
    ntok = tokens.numel()
    val = None
    if a.val_fraction > 0:  # ballast-train's split: the last floor(N * X) tokens
        nval = int(ntok * a.val_fraction)
        val = tokens[ntok - nval:]
        tokens = tokens[:ntok - nval]
        if nval < T + 1:
            die(f"--val-fraction {a.val_fraction}: {nval} held-out tokens, fewer than one "
                f"sequence of {T + 1}")
    nseq = (tokens.numel() - 1) // T  # starts 0, T, 2T, ... with T + 1 tokens after them
    if nseq < 1:
        die(f"{a.text}: {tokens.numel()} training tokens, fewer than one sequence of {T + 1}")
    offsets = torch.arange(T + 1)

    if a.ddp:
        os.environ["MASTER_ADDR"] = "127.0.0.1"
        os.environ["MASTER_PORT"] = str(a.port)
        dist.init_process_group("gloo", rank=rank, world_size=world)

    torch.manual_seed(a.seed)
    model = GPT2(L, NH, C, T, V, attention="sdpa" if a.sdpa else "eager")
    nparams = sum(q.numel() for q in model.parameters())  # wte counted once (tied)
    formula = 12 * L * C * C + 13 * L * C + V * C + T * C + 2 * C
    if nparams != formula:
        die(f"{nparams} parameters, the formula 12LC^2 + 13LC + VC + TC + 2C gives {formula}")
    net = nn.parallel.DistributedDataParallel(model) if a.ddp else model
    decay = [q for q in model.parameters() if q.dim() >= 2]
    no_decay = [q for q in model.parameters() if q.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    params = list(model.parameters())
    gen = torch.Generator().manual_seed(a.seed)
    local = B // world
    losses = torch.zeros(a.steps)

    if rank == 0:
        print(f"torch_gpt: torch {torch.__version__}, "
              f"{'DDP (gloo) np=' + str(world) if a.ddp else 'one process'}, "
              f"threads/rank={torch.get_num_threads()}, "
              f"attention={'sdpa' if a.sdpa else 'eager'}, L={L} NH={NH} C={C} T={T} V={V} "
              f"B={B} ({local}/rank), params={nparams} (12LC^2+13LC+VC+TC+2C={formula}), "
              f"text={a.text} ({ntok} bytes, {nseq} training sequence starts"
              f"{'' if val is None else f', {val.numel()} held out'}), "
              f"lr={a.lr} {a.lr_schedule} warmup={a.warmup}"
              f"{f' lr_min={a.lr_min}' if a.lr_schedule == 'cosine' else ''}", flush=True)

    if a.ddp:
        dist.barrier()
    t0 = time.perf_counter()
    for s in range(a.steps):
        starts = torch.randint(0, nseq, (B,), generator=gen)[rank * local:(rank + 1) * local]
        win = tokens[(starts * T).unsqueeze(1) + offsets]  # (local, T + 1)
        lr = lr_at(s)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss = net(win[:, :-1], win[:, 1:])
        loss.backward()
        if a.clip > 0:
            torch.nn.utils.clip_grad_norm_(params, a.clip)
        opt.step()
        losses[s] = loss.detach()
    if a.ddp:
        dist.barrier()
    wall = time.perf_counter() - t0

    if a.ddp:  # the global batch's loss: the mean of the ranks' (equal-sized) shares
        dist.all_reduce(losses)
        losses /= world
    if rank == 0:
        tail = losses[-min(a.steps, 100):]
        # Rank 0 alone, on the module itself (not DDP's wrapper): every rank holds
        # the same parameters.
        vl = "" if val is None else f" val_loss={evaluate(model, val, T, a.val_sequences):.6f}"
        print(f"summary: steps={a.steps} tokens_per_s={a.steps * B * T / wall:.1f} "
              f"train_loss={tail.mean().item():.6f} last_loss={losses[-1].item():.6f} "
              f"step_ms={1e3 * wall / a.steps:.2f}{vl}", flush=True)
    if a.ddp:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
