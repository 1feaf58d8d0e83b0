"""The GPT-2 that the PyTorch peers of ballast-train train: bench/torch_gpt.py
(on the CPU, in one process or under DistributedDataParallel) and
bench/torch_gpt_gpu.py (on one device). One model, so that the two peers
cannot drift apart.

The model is GPT-2 in llm.c's layout, as ballast's (tests/torch_gpt2.py has
the same choices): token and position embeddings; L pre-LN blocks
(LayerNorm, causal self-attention with one fused QKV Linear(C, 3C) and a
projection Linear(C, C), residual; LayerNorm, Linear(C, 4C), GELU (tanh),
Linear(4C, C), residual); a final LayerNorm; the head tied to the token
embedding; the mean cross-entropy over the B * T targets. GPT-2's
initialisation, as ballast's bl_gpt2_init_params: weights N(0, 0.02^2), the
two residual projections N(0, (0.02 / sqrt(2L))^2), biases 0, LayerNorms 1
and 0, drawn from torch's global generator in the parameters' order.

The token table has Vp rows (padded_vocab; default V, no padding): llm.c and
ballast round V up to a multiple of 128, and then the logits are (B, T, Vp)
and the cross-entropy reads their first V columns alone. Attention is
"eager" (q k^T / sqrt(hs), the causal mask, softmax, @ v, the scores
materialised, as ballast computes it) or "sdpa"
(F.scaled_dot_product_attention(is_causal=True), torch >= 2.0; the caller
checks that torch has it). A batch may be shorter than the position table's
T tokens.

Importing this module imports torch: set the BLAS's thread variables
(OPENBLAS_NUM_THREADS and the like) before importing it."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    """One pre-LN block on (B, T, C) activations, T at most the mask's size."""

    def __init__(self, C, NH, T, attention, device):
        super().__init__()
        self.NH, self.sdpa = NH, attention == "sdpa"
        self.ln_1 = nn.LayerNorm(C, eps=1e-5)
        self.c_attn = nn.Linear(C, 3 * C)
        self.c_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C, eps=1e-5)
        self.c_fc = nn.Linear(C, 4 * C)
        self.mlp_proj = nn.Linear(4 * C, C)
        # A plain attribute, not a buffer: DDP would broadcast a buffer, and gloo
        # cannot broadcast bool tensors. Module.to() does not move it, so it is
        # made on the device that the model will run on.
        self.causal = torch.tril(torch.ones(T, T, dtype=torch.bool, device=device))

    def attention(self, x):
        B, T, C = x.shape
        hs = C // self.NH
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (z.view(B, T, self.NH, hs).transpose(1, 2) for z in (q, k, v))
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
            att = att.masked_fill(~self.causal[:T, :T], float("-inf"))
            y = F.softmax(att, dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))

    def forward(self, x):
        x = x + self.attention(self.ln_1(x))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT2(nn.Module):
    """GPT-2 of L blocks, NH heads, C channels and a position table of T rows
    over a vocabulary of V tokens (padded_vocab rows in the token table).
    forward(idx, targets), both (B, T') int64 with T' <= T, returns the mean
    cross-entropy. The causal mask is made on device (None: the CPU); move
    the model there with .to(device) after creating it."""

    def __init__(self, L, NH, C, T, V, padded_vocab=None, attention="eager", device=None):
        super().__init__()
        self.V = V
        self.Vp = V if padded_vocab is None else padded_vocab
        if self.Vp < V:
            raise ValueError(f"padded_vocab {self.Vp} is below the vocabulary {V}")
        self.wte = nn.Embedding(self.Vp, C)
        self.wpe = nn.Embedding(T, C)
        self.blocks = nn.ModuleList(Block(C, NH, T, attention, device) for _ in range(L))
        self.ln_f = nn.LayerNorm(C, eps=1e-5)
        for name, q in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(q)
            elif "ln_" in name:
                nn.init.ones_(q)
            elif name.endswith("c_proj.weight") or name.endswith("mlp_proj.weight"):
                nn.init.normal_(q, 0.0, 0.02 / math.sqrt(2 * L))
            else:
                nn.init.normal_(q, 0.0, 0.02)

    def forward(self, idx, targets):
        T = idx.shape[1]
        # The whole table when the batch fills it: no slice to differentiate.
        pos = self.wpe.weight if T == self.wpe.num_embeddings else self.wpe.weight[:T]
        x = self.wte(idx) + pos
        for block in self.blocks:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.t()  # (B, T, Vp): the head, tied
        if self.Vp != self.V:  # the padding's columns are no token's
            logits = logits[:, :, :self.V]
        return F.cross_entropy(logits.reshape(-1, self.V), targets.reshape(-1))
