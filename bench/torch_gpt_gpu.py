#!/usr/bin/env python3
"""PyTorch peer of `ballast-train --model gpt2 --device cuda` for
bench/bench_gpt_gpu.sh: the same GPT-2, optimiser, batch and token file,
trained on one device, each step timed on its own.

  torch_gpt_gpu.py tokens FILE --count N --vocab V [--seed S]
      writes N random tokens in [0, V) as an llm.c token file (header of 256
      int32: magic 20240520, version 1, N; then N uint16), for both sides;
      needs no torch.
  torch_gpt_gpu.py train --tokens FILE --device cuda|cpu [--attention
      eager|sdpa|auto] [--compile] [--bf16] [shape and optimiser flags]

The model is GPT-2 in llm.c's layout, as ballast's: bench/torch_gpt_model.py's,
which bench/torch_gpt.py trains too (the same choices): token and position
embeddings; L pre-LN blocks (LayerNorm, causal self-attention with one fused
QKV Linear(C, 3C) and a projection Linear(C, C), residual; LayerNorm,
Linear(C, 4C), GELU (tanh), Linear(4C, C), residual); a final LayerNorm; the
head tied to the token embedding, whose table has V rounded up to a multiple
of 128 rows (Vp) as llm.c and ballast pad it: the logits are (B, T, Vp) and
the cross-entropy (mean over the B·T targets) reads their first V columns, as
ballast's does. GPT-2's initialisation. AdamW (betas 0.9, 0.95, eps 1e-8;
torch's default implementation) with weight decay on the >= 2-D parameters
only, the gradient's global norm clipped to --clip (0: none), constant lr.

Attention: eager (the default) computes q·kᵀ / sqrt(hs), the causal mask,
softmax and ·v, the scores materialised, as ballast does; sdpa calls
F.scaled_dot_product_attention(is_causal=True) (torch >= 2.0); auto is sdpa
where torch has it, else eager. --compile wraps the model in torch.compile
(torch >= 2.0). --bf16 runs forward and backward under torch.autocast
(bfloat16; the parameters and AdamW stay float32). TF32 is off for matmuls
and cuDNN in every mode (ballast's cuBLAS calls are plain FP32).

Data: the token file's sequences start at multiples of T (input T tokens,
target the T after the first), as ballast's; each step draws B starts from
a generator seeded by --seed (not ballast's generator: the same data and
layout, not the same batches), cuts the (B, T + 1) window on the host and
copies it to the device, as ballast uploads each step's tokens.

Timing: --warmup-steps untimed steps (the first calls, and compilation with
--compile), then --steps timed ones, each on its own: a device
synchronisation, the clock, zero_grad, forward, backward, clipping, the
AdamW step, loss.item() (ballast reads every step's loss as well), a
synchronisation, the clock. Output (one line; the figures are over the timed
steps):
  summary: steps=S tokens_per_s=X step_ms=M step_ms_min=A step_ms_max=B
           first_loss=F last_loss=L params=P peak_mem_gib=G
(tokens_per_s = B·T / the median step time). Exit status 0; 1 when a step
failed; 2 bad usage; 3 when the mode is unavailable here (no CUDA device, no
torch.compile, no bf16), with a line "torch_gpt_gpu: unavailable: REASON".
"""
import argparse
import os
import random
import statistics
import struct
import sys
import time

HEADER_WORDS = 256
TOKENS_MAGIC, TOKENS_VERSION = 20240520, 1
UNAVAILABLE = 3


def die(msg, code=1):
    print(f"torch_gpt_gpu: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


def unavailable(msg):
    print(f"torch_gpt_gpu: unavailable: {msg}", flush=True)
    sys.exit(UNAVAILABLE)


def write_tokens(a):
    if a.count < 2 or not 1 <= a.vocab <= 65536:
        die("tokens: --count must be >= 2 and --vocab in [1, 65536]", 2)
    rng = random.Random(a.seed)
    header = [TOKENS_MAGIC, TOKENS_VERSION, a.count] + [0] * (HEADER_WORDS - 3)
    with open(a.file, "wb") as f:
        f.write(struct.pack(f"<{HEADER_WORDS}i", *header))
        f.write(struct.pack(f"<{a.count}H", *rng.choices(range(a.vocab), k=a.count)))
    return 0


def read_tokens(path):
    with open(path, "rb") as f:
        data = f.read()
    header = struct.unpack_from(f"<{HEADER_WORDS}i", data)
    if header[0] != TOKENS_MAGIC or header[1] != TOKENS_VERSION:
        die(f"{path}: not an llm.c token file")
    count = header[2]
    return struct.unpack_from(f"<{count}H", data, 4 * HEADER_WORDS)


def train(a):
    if a.threads > 0:  # the BLAS reads these when it loads
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(a.threads)
    import torch
    import torch.nn.functional as F
    from torch_gpt_model import GPT2

    L, NH, C, T, V, B = a.n_layer, a.n_head, a.n_embd, a.seq_len, a.vocab, a.batch
    Vp = (V + 127) // 128 * 128
    if min(L, NH, C, T, V, B, a.steps) < 1 or a.warmup_steps < 0 or C % NH:
        die("the shape, --batch and --steps must be positive, and --n-head must divide "
            "--n-embd", 2)
    if a.device == "cuda" and not torch.cuda.is_available():
        unavailable(f"torch {torch.__version__} sees no CUDA device (torch.cuda.is_available() "
                    f"is False; CUDA build: {torch.version.cuda})")
    dev = torch.device(a.device)
    has_sdpa = hasattr(F, "scaled_dot_product_attention")
    attention = ("sdpa" if has_sdpa else "eager") if a.attention == "auto" else a.attention
    if attention == "sdpa" and not has_sdpa:
        unavailable(f"torch {torch.__version__} has no F.scaled_dot_product_attention")
    if a.compile and not hasattr(torch, "compile"):
        unavailable(f"torch {torch.__version__} has no torch.compile (torch >= 2.0)")
    if a.bf16 and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        unavailable(f"{torch.cuda.get_device_name(0)} does not support bfloat16")
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    tokens = torch.tensor(read_tokens(a.tokens), dtype=torch.int64)
    if int(tokens.max()) >= V:
        die(f"{a.tokens}: token {int(tokens.max())} is not below --vocab {V}")
    nseq = (tokens.numel() - 1) // T
    if nseq < 1:
        die(f"{a.tokens}: {tokens.numel()} tokens, fewer than one sequence of {T + 1}")
    torch.manual_seed(a.seed)
    model = GPT2(L, NH, C, T, V, padded_vocab=Vp, attention=attention, device=dev).to(dev)
    nparams = sum(q.numel() for q in model.parameters())
    formula = 12 * L * C * C + 13 * L * C + Vp * C + T * C + 2 * C
    if nparams != formula:
        die(f"{nparams} parameters; 12LC^2 + 13LC + VpC + TC + 2C gives {formula}")
    net = torch.compile(model) if a.compile else model
    decay = [q for q in model.parameters() if q.dim() >= 2]
    no_decay = [q for q in model.parameters() if q.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    params = list(model.parameters())
    gen = torch.Generator().manual_seed(a.seed)
    offsets = torch.arange(T + 1)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    name = torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"
    print(f"torch_gpt_gpu: torch {torch.__version__} on {name}, threads={torch.get_num_threads()}, "
          f"attention={attention} compile={int(a.compile)} "
          f"precision={'bf16 autocast' if a.bf16 else 'fp32'} tf32=off, L={L} NH={NH} C={C} "
          f"T={T} V={V} Vp={Vp} B={B}, params={nparams}, {a.tokens} ({tokens.numel()} tokens)",
          flush=True)

    times, losses = [], []
    for s in range(a.warmup_steps + a.steps):
        starts = torch.randint(0, nseq, (B,), generator=gen)
        win = tokens[(starts * T).unsqueeze(1) + offsets].to(dev)  # (B, T + 1)
        sync()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if a.bf16:
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16):
                loss = net(win[:, :-1], win[:, 1:])
        else:
            loss = net(win[:, :-1], win[:, 1:])
        loss.backward()
        if a.clip > 0:
            torch.nn.utils.clip_grad_norm_(params, a.clip)
        opt.step()
        value = loss.item()
        sync()
        if s >= a.warmup_steps:
            times.append(time.perf_counter() - t0)
            losses.append(value)
    step_s = statistics.median(times)
    peak = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else 0.0
    print(f"summary: steps={a.steps} tokens_per_s={B * T / step_s:.1f} "
          f"step_ms={1e3 * step_s:.3f} step_ms_min={1e3 * min(times):.3f} "
          f"step_ms_max={1e3 * max(times):.3f} first_loss={losses[0]:.6f} "
          f"last_loss={losses[-1]:.6f} params={nparams} peak_mem_gib={peak:.2f}", flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description="PyTorch peer of ballast's GPT-2 on one device.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tokens", help="write random tokens as an llm.c token file")
    t.add_argument("file")
    t.add_argument("--count", type=int, required=True)
    t.add_argument("--vocab", type=int, required=True)
    t.add_argument("--seed", type=int, default=1)
    r = sub.add_parser("train", help="train and time each step")
    r.add_argument("--tokens", required=True, help="an llm.c token file")
    r.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    r.add_argument("--attention", choices=("eager", "sdpa", "auto"), default="eager")
    r.add_argument("--compile", action="store_true", help="torch.compile the model")
    r.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    for flag, default in (("n-layer", 12), ("n-head", 12), ("n-embd", 768), ("seq-len", 1024),
                          ("vocab", 50257), ("batch", 8), ("warmup-steps", 3), ("steps", 10),
                          ("seed", 1), ("threads", 0)):
        r.add_argument("--" + flag, type=int, default=default)
    r.add_argument("--lr", type=float, default=6e-4)
    r.add_argument("--weight-decay", type=float, default=0.1)
    r.add_argument("--clip", type=float, default=1.0)
    a = ap.parse_args()
    return write_tokens(a) if a.cmd == "tokens" else train(a)


if __name__ == "__main__":
    sys.exit(main())
