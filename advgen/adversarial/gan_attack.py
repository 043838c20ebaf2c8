"""The IDSGAN-style attack: a generator rewrites the modifiable features, a substitute learns the detector.

A generator takes an encoded attack row, the row's mask (which columns it may change) and noise, and
writes the encoded slots of the modifiable columns. Its output is made real in the forward pass:
decoded by the tabular transform (types, ranges, resolution), functional cells copied bit for bit from
the attack row, repaired against the rules fitted on real traffic, and encoded again; the gradient
passes straight through that projection (straight-through estimator: the forward pass sees the
repaired row, the backward pass the generator's raw output, softmaxed for one-hots).

The detector is a black box. A substitute discriminator learns it from its answers (IDSGAN's loop):
it is trained on every row asked about so far (a replay buffer: normal rows, original attack rows,
and the generator's rows of every round, each labelled by the black box, with its attack probability
when allowed), class-balanced, so that no query is used once and thrown away. The generator is trained
to push the substitute's attack logit below ``-margin``, a margin that carries the rows past the
boundary the substitute knows rather than onto it (rows on the boundary of one detector fall either
side of another's). Optionally a realism critic, trained to tell the rows from real normal traffic,
adds a term that keeps them looking like normal traffic.

At the end, each row is disguised with fresh noise and, if queries remain, asked about; rows the
black box still flags get new draws (``final_tries``), the candidate it scores lowest kept.

The query budget is split up front (:data:`WARMUP_SHARE`): the substitute's warm-up (normal and
original attack rows asked about once) may spend at most half of it, so that the generator always has
the other half to train and disguise with; the final check of every disguised row is kept back only
where one training round still fits beside it; a budget below :func:`min_query_budget` is refused
before anything is asked.

Everything the attack has learnt is one checkpoint (tensors, state dicts and JSON, read back with
``torch.load(weights_only=True)``), so training resumes and a saved generator disguises new rows
without queries.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from advgen.adversarial.base import EvasionAttack
from advgen.adversarial.blackbox import QueryBudgetExhausted
from advgen.adversarial.rows import merge_rows, rows_to_disguise
from advgen.adversarial.space import AttackSpace, put
from advgen.errors import CheckpointError, InvalidDataError

Y_MAX = 5.0
CHECKPOINT_PLUGIN = "advgen.adversarial.gan"
# The substitute's warm-up may spend at most this share of a query budget; the rest is the attack's
# (training rounds, then the final check). Half: the warm-up teaches the substitute where the boundary
# is, the rounds teach it (and the generator) where the generator's rows fall, and neither is any use
# without the other. With the default budget (50,000) and warm-up (3,000) the share never binds.
WARMUP_SHARE = 0.5
WARMUP = "substitute:"  # the black box's log: what the warm-up asked (see ``query_split``)


@dataclass
class GanConfig:
    """Training settings of the GAN attack (defaults: the DoS settings measured in docs/adversarial.md)."""

    rounds: int = 120  # query rounds; each asks about ``query_batch`` generated rows
    query_batch: int = 200
    d_steps: int = 20  # substitute updates a round
    g_steps: int = 10  # generator updates a round
    batch: int = 256
    noise: int = 16
    hidden: int = 256
    lr_g: float = 5e-4
    lr_d: float = 1e-3
    normal_queries: int = 2000  # normal rows asked about once, to start the substitute
    attack_queries: int = 1000  # original attack rows asked about once
    margin: float = 3.0
    explore: float = 0.5  # share of each round's queried rows that are generated rows with columns redrawn at random
    explore_rate: float = 0.3  # chance that an exploring row redraws each modifiable column
    tau: float = 1.0  # Gumbel-softmax temperature of one-hot outputs while training
    substitutes: int = 3  # substitutes trained on their own draws of the buffer; the generator fools the most suspicious
    select: int = 8  # candidates a row drawn when disguising; the one the substitutes find least suspicious is kept
    smooth: float = 0.0  # std of noise on the modifiable numerics the substitutes judge in the generator step
    neighbours: int = 1  # jittered copies judged a row; the most suspicious counts
    jitter: float = 0.0  # half the exploring rows: the generator's numerics plus noise of this std
    realism: float = 0.0  # weight of the realism critic's term (0: off)
    final_tries: int = 3  # re-draws for rows the black box still flags at the end
    checkpoint_every: int = 20  # rounds

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GanConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise InvalidDataError(f"unknown GAN settings {sorted(unknown)}; known: {', '.join(sorted(known))}")
        cfg = cls(**d)
        cfg.check()
        return cfg

    def check(self) -> None:
        for name in ("rounds", "query_batch", "batch", "noise", "hidden", "substitutes", "select", "neighbours"):
            if getattr(self, name) < 1:
                raise InvalidDataError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("d_steps", "g_steps", "normal_queries", "attack_queries", "final_tries", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise InvalidDataError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("explore", "explore_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InvalidDataError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        for name in ("lr_g", "lr_d", "margin", "realism", "tau", "smooth", "jitter"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                raise InvalidDataError(f"{name} must be a finite number >= 0, got {v}")


def min_query_budget(config: GanConfig) -> int:
    """The smallest query budget the attack trains with: a warm-up of one round's rows within its share
    (:data:`WARMUP_SHARE`), and one training round beside it."""
    return max(math.ceil(config.query_batch / WARMUP_SHARE), 2 * config.query_batch)


def check_query_budget(budget: int | None, config: GanConfig) -> None:
    """One line, before anything is asked, when ``budget`` is too small to train anything."""
    least = min_query_budget(config)
    if budget is not None and budget < least:
        raise InvalidDataError(
            f"a query budget of {budget:,} is too small to train the attack: it needs at least {least:,} (a warm-up "
            f"of {config.query_batch:,} queries for the substitute and one training round of {config.query_batch:,}); "
            "raise --query-budget or lower --query-batch"
        )


def warmup_sizes(normal: int, attack: int, budget: int | None) -> tuple[int, int]:
    """(normal rows, attack rows) the warm-up asks about: as wanted, or, where that passes
    :data:`WARMUP_SHARE` of ``budget``, the share, split between the two in the wanted proportion."""
    cap = None if budget is None else int(budget * WARMUP_SHARE)
    if cap is None or normal + attack <= cap:
        return normal, attack
    k_normal = int(round(cap * normal / (normal + attack)))
    return k_normal, cap - k_normal


# --- nets ----------------------------------------------------------------------------------------


def _mlp(d_in: int, hidden: int, d_out: int, dropout: float = 0.0) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(d_in, hidden), nn.LeakyReLU(0.2)]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers += [nn.Linear(hidden, hidden), nn.LeakyReLU(0.2)]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(hidden, d_out))
    return nn.Sequential(*layers)


class Generator(nn.Module):
    """(encoded row, column mask, noise) -> raw encoded values of the modifiable slots.

    Numeric slots come out bounded to the encoding's range; one-hot slots as logits.
    """

    def __init__(self, dim: int, n_columns: int, noise: int, hidden: int, numeric: torch.Tensor, d_out: int):
        super().__init__()
        self.noise = noise
        self.net = _mlp(dim + n_columns + noise, hidden, d_out)
        self.register_buffer("numeric", numeric.to(torch.bool))

    def forward(self, enc: torch.Tensor, colmask: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([enc, colmask, z], dim=1))

    def overshoot(self, raw: torch.Tensor) -> torch.Tensor:
        """Penalty for numerics beyond the encoding's range and for runaway logits: without it, a value
        pinned at the range's end keeps drifting outward and its column stops learning."""
        num = F.relu(raw.abs() - Y_MAX) ** 2
        logits = F.relu(raw.abs() - 8.0) ** 2
        return torch.where(self.numeric, num, logits).mean()


class Substitute(nn.Module):
    """Encoded row -> logit that the black box calls it an attack."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = _mlp(dim, hidden, 1, dropout=0.1)

    def forward(self, enc: torch.Tensor) -> torch.Tensor:
        return self.net(enc).squeeze(1)


# --- the attack ----------------------------------------------------------------------------------


class GanAttack(EvasionAttack):
    """IDSGAN's attack with a replay-trained substitute, margin and repaired straight-through outputs.

    ``normal_rows``: real normal traffic the attacker holds (the detector's normal training rows, as in
    IDSGAN). ``fit(rows)`` trains on attack rows (queries), ``generate(rows)`` trains first if needed,
    then disguises. ``progress`` gets one line now and then; ``run_dir`` receives the checkpoint.
    """

    name = "gan"

    def __init__(
        self, *args: Any, normal_rows: pd.DataFrame, config: GanConfig | None = None,
        progress: Callable[[str], None] | None = None, run_dir: str | Path | None = None,
        category_map: dict[str, str] | None = None, **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.category_map = dict(category_map) if category_map else None
        self.config = config or GanConfig()
        self.config.check()
        self.normal_rows = normal_rows.reset_index(drop=True)
        self.say = progress or (lambda _m: None)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.fitted = False
        self.round = 0
        self.history: list[dict[str, float]] = []
        self.stopped: str | None = None
        # with ``keep_missed``, the rows made while training that the black box called normal: its blind
        # spots, which hardening adds to the detector's training data
        self.keep_missed = False
        self.missed: list[pd.DataFrame] = []
        # the classes of the rows it was trained on: a saved generator disguises rows of these only
        # (advgen.adversarial.rows.rows_to_disguise); None: not known (a checkpoint from before)
        self.trained_classes: list[str] | None = None
        self.notes: list[str] = []  # what the run should tell (warm-up capped, rows left unchanged)
        torch.manual_seed(self.seed)
        self.rng = np.random.default_rng(self.seed)
        self._build()

    # --- layout --------------------------------------------------------------------------------

    def _build(self) -> None:
        space = self.space
        names = space.names
        # every column some class may change gets a slot in the generator's output
        any_mod = [c for c in names if any(c in v for v in self.threat.modifiable.values())
                   or (self.threat.default is not None and c in self.threat.default)]
        if not any_mod:
            raise InvalidDataError("nothing is modifiable under this threat model: every feature is functional")
        self.mod_columns = any_mod
        self.mod_idx = torch.as_tensor(space.slot_index(any_mod))
        numeric, groups, col_of_pos = [], {}, []
        pos = 0
        for s in space.slots.values():
            if s.column not in set(any_mod):
                continue
            w = s.end - s.start
            numeric += [not s.onehot] * w
            if s.onehot:
                groups.setdefault(w, []).append(pos)
            col_of_pos += [names.index(s.column)] * w
            pos += w
        self.onehot_groups = {w: torch.as_tensor(starts) for w, starts in groups.items()}
        self.col_of_pos = torch.as_tensor(col_of_pos)
        self.numeric = torch.as_tensor(numeric)
        cfg = self.config
        self.G = Generator(space.dim, len(names), cfg.noise, cfg.hidden, self.numeric, len(numeric))
        self.D = nn.ModuleList([Substitute(space.dim, cfg.hidden) for _ in range(cfg.substitutes)])
        self.R = Substitute(space.dim, cfg.hidden) if cfg.realism > 0 else None
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, betas=(0.5, 0.9))
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=(0.5, 0.9))
        self.opt_r = torch.optim.Adam(self.R.parameters(), lr=cfg.lr_d, betas=(0.5, 0.9)) if self.R is not None else None
        self.buf_x = torch.zeros((0, space.dim))
        self.buf_y = torch.zeros(0)
        self.normal_enc = (torch.as_tensor(space.encode(self.normal_rows)) if len(self.normal_rows)
                           else torch.zeros((0, space.dim)))

    def _relax(self, raw: torch.Tensor, sample: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(relaxed output, hard output for decoding): numerics clamped to the encoding's range; one-hot
        slots softmaxed, with Gumbel noise when ``sample`` (the hard choice is then the noisy argmax, so
        training tries other categories than the current favourite)."""
        num = raw.clamp(-Y_MAX, Y_MAX)
        soft = torch.where(self.numeric, num, raw)
        hard = soft.detach().clone()
        if not self.onehot_groups:
            return soft, hard
        soft = soft.clone()
        for w, starts in self.onehot_groups.items():
            idx = starts.unsqueeze(1) + torch.arange(w).unsqueeze(0)  # [slots, w]
            logits = raw[:, idx]
            if sample:
                u = torch.rand_like(logits).clamp(1e-6, 1 - 1e-6)
                logits = logits - torch.log(-torch.log(u))
            probs = torch.softmax(logits / self.config.tau, dim=2)
            soft[:, idx.reshape(-1)] = probs.reshape(raw.shape[0], -1)
            onehot = F.one_hot(probs.argmax(dim=2), w).to(raw.dtype)
            hard[:, idx.reshape(-1)] = onehot.reshape(raw.shape[0], -1)
        return soft, hard

    def suspicion(self, enc: torch.Tensor) -> torch.Tensor:
        """The most suspicious substitute's attack logit per row."""
        return torch.stack([d(enc) for d in self.D]).amax(dim=0)

    def _judged(self, enc: torch.Tensor, mask: np.ndarray) -> torch.Tensor:
        """The substitutes' suspicion of a row's neighbourhood rather than the point: its modifiable
        numerics jittered by ``smooth`` standard deviations (rows whose neighbours also pass sit deeper in
        the normal region, where other detectors agree)."""
        if self.config.smooth <= 0:
            return self.suspicion(enc)
        may = torch.as_tensor(mask, dtype=torch.float32)[:, self.col_of_pos] * self.numeric
        judged = []
        for _ in range(self.config.neighbours):
            noise = torch.zeros_like(enc)
            noise[:, self.mod_idx] = self.config.smooth * torch.randn(len(enc), len(self.mod_idx)) * may
            judged.append(self.suspicion(enc + noise))
        return torch.stack(judged).amax(dim=0)

    # --- one pass through the generator and the repair ----------------------------------------

    def _forward(self, x: pd.DataFrame, enc: torch.Tensor, mask: np.ndarray, up: np.ndarray, z: torch.Tensor | None = None,
                 grad: bool = True, explore: float = 0.0, sample: bool | None = None) -> tuple[torch.Tensor, pd.DataFrame, torch.Tensor | None]:
        """(encoded disguised rows, with a straight-through gradient when ``grad``; the disguised rows;
        the generator's raw output when ``grad``). ``explore``: chance that each modifiable column is
        redrawn at random (exploration queries)."""
        colmask = torch.as_tensor(mask, dtype=torch.float32)
        if z is None:
            z = torch.randn(len(x), self.config.noise)
        with torch.set_grad_enabled(grad):
            raw = self.G(enc, colmask, z)
            soft, hard_out = self._relax(raw, sample=(grad or explore > 0) if sample is None else sample)
        full = enc.clone()
        full[:, self.mod_idx] = hard_out
        if explore > 0:
            full[:, self.mod_idx] = self._explore(full[:, self.mod_idx], explore)
        rows = self.space.realise(full, x, mask, up)
        hard = torch.as_tensor(self.space.encode(rows))
        if not grad:
            return hard, rows, None
        st = soft + (hard[:, self.mod_idx] - soft).detach()
        may = colmask[:, self.col_of_pos] > 0
        out = enc.clone()
        out[:, self.mod_idx] = torch.where(may, st, enc[:, self.mod_idx])
        return out, rows, raw

    def _explore(self, slots: torch.Tensor, rate: float) -> torch.Tensor:
        """Redraw each modifiable column with chance ``rate``: numerics from N(0, 1) (the encoded
        marginal of real traffic), one-hots uniformly."""
        out = slots.clone()
        n = len(out)
        cols = torch.unique(self.col_of_pos)
        for c in cols.tolist():
            pos = torch.nonzero(self.col_of_pos == c).reshape(-1)
            pick = torch.rand(n) < rate
            if not pick.any():
                continue
            if len(pos) == 1 and bool(self.numeric[pos[0]]):
                out[pick, pos[0]] = torch.randn(int(pick.sum()))
            else:
                k = torch.randint(0, len(pos), (int(pick.sum()),))
                block = torch.zeros(int(pick.sum()), len(pos))
                block[torch.arange(len(k)), k] = 1.0
                rows = torch.nonzero(pick).reshape(-1)
                out[rows.unsqueeze(1), pos.unsqueeze(0)] = block
        if self.config.jitter > 0:
            # half the exploring rows are instead the generator's row with its numerics jittered: what the
            # detector says next to the generator's rows, where the smoothed generator step looks
            local = torch.rand(n) < 0.5
            jittered = slots + self.config.jitter * torch.randn_like(slots) * self.numeric
            out = torch.where(local.unsqueeze(1), jittered, out)
        return out

    # --- training ------------------------------------------------------------------------------

    def _ask(self, rows: pd.DataFrame, enc: torch.Tensor, what: str) -> None:
        y = self.blackbox.answer(rows, what=what)
        self.buf_x = torch.cat([self.buf_x, enc.detach()])
        self.buf_y = torch.cat([self.buf_y, torch.as_tensor(y, dtype=torch.float32)])

    def _affordable(self, want: int, reserve: int) -> int:
        left = self.blackbox.remaining
        return want if left is None else max(0, min(want, left - reserve))

    def _d_step(self) -> float:
        """Substitutes: predict the black box's answer on every row asked about (classes balanced), each
        on batches of its own."""
        n = len(self.buf_y)
        pos = self.buf_y.mean().clamp(0.05, 0.95)
        self.D.train()
        loss = torch.zeros(())
        for d in self.D:
            idx = torch.as_tensor(self.rng.integers(0, n, min(self.config.batch, n)))
            x, y = self.buf_x[idx], self.buf_y[idx]
            w = torch.where(y >= 0.5, 0.5 / pos, 0.5 / (1 - pos))
            loss = loss + F.binary_cross_entropy_with_logits(d(x), y, weight=w)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return float(loss.detach()) / len(self.D)

    def _r_step(self, fake: torch.Tensor) -> float:
        """Realism critic: tell real normal rows (0) from disguised rows (1)."""
        assert self.R is not None and self.opt_r is not None
        real = self.normal_enc[torch.as_tensor(self.rng.integers(0, len(self.normal_enc), len(fake)))]
        logits = self.R(torch.cat([real, fake.detach()]))
        target = torch.cat([torch.zeros(len(real)), torch.ones(len(fake))])
        loss = F.binary_cross_entropy_with_logits(logits, target)
        self.opt_r.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_r.step()
        return float(loss.detach())

    def _g_step(self, x: pd.DataFrame, enc: torch.Tensor, mask: np.ndarray, up: np.ndarray) -> tuple[float, torch.Tensor]:
        """Generator: push the substitute's attack logit below -margin (and look real, with realism on)."""
        out, _, raw = self._forward(x, enc, mask, up)
        self.D.eval()
        loss = F.softplus(self._judged(out, mask) + self.config.margin).mean() + self.G.overshoot(raw)
        if self.R is not None:
            self.R.eval()
            loss = loss + self.config.realism * F.softplus(self.R(out)).mean()
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        return float(loss.detach()), out.detach()

    def _note(self, message: str) -> None:
        self.notes.append(message)
        self.say(message)

    def fit(self, x: pd.DataFrame, reserve: int = 0) -> GanAttack:
        """Train on attack rows ``x``; stop early, keeping ``reserve`` queries for the final check of the
        disguised rows, when the budget runs out. The warm-up spends at most :data:`WARMUP_SHARE` of the
        budget; ``reserve`` is kept only where one training round still fits beside it."""
        x = x.reset_index(drop=True)
        if len(x) == 0:
            raise InvalidDataError("no attack rows to train on")
        cfg = self.config
        mask, up = self.masks(x)
        classes = sorted(set(self.row_classes(x).astype(str).tolist()))
        self.trained_classes = sorted(set(self.trained_classes or []) | set(classes))
        enc_all = torch.as_tensor(self.space.encode(x))
        budget = self.blackbox.budget
        if self.round == 0 and len(self.buf_y) == 0:
            check_query_budget(budget, cfg)
            want = (min(cfg.normal_queries, len(self.normal_rows)), min(cfg.attack_queries, len(x)))
            k_normal, k_attack = warmup_sizes(*want, budget)
            if (k_normal, k_attack) != want:
                self._note(f"warm-up: {k_normal + k_attack:,} queries for the substitute instead of {sum(want):,}, "
                           f"as it may spend at most {WARMUP_SHARE:.0%} of the {budget:,}-query budget")
            k = self._affordable(k_normal, 0)
            if k:
                pick = np.sort(self.rng.choice(len(self.normal_rows), k, replace=False))
                self._ask(self.normal_rows.iloc[pick], self.normal_enc[pick], "substitute: normal rows")
            k = self._affordable(k_attack, 0)
            if k:
                pick = np.sort(self.rng.choice(len(x), k, replace=False))
                self._ask(x.iloc[pick], enc_all[pick], "substitute: attack rows")
        left = self.blackbox.remaining
        if left is not None and reserve and self.round < cfg.rounds and left - reserve < cfg.query_batch:
            self._note(f"the final check of the disguised rows ({reserve:,} queries) does not fit beside a training "
                       f"round in the {left:,} queries left: training gets them, and the final check is skipped")
            reserve = 0
        start = time.perf_counter()
        while self.round < cfg.rounds:
            k = self._affordable(cfg.query_batch, reserve)
            if k == 0:
                self.stopped = (
                    f"query budget reached after {self.round} of {cfg.rounds} training rounds "
                    f"({self.blackbox.queries:,} queries used, {reserve:,} kept for the final disguise)"
                )
                self.say(self.stopped)
                break
            pick = self.rng.integers(0, len(x), k)
            n_explore = int(round(k * cfg.explore))
            with torch.no_grad():
                parts = []
                for lo, hi, rate in ((0, k - n_explore, 0.0), (k - n_explore, k, cfg.explore_rate)):
                    if hi > lo:
                        p = pick[lo:hi]
                        h, r, _ = self._forward(x.iloc[p].reset_index(drop=True), enc_all[p], mask[p], up[p], grad=False,
                                                explore=rate)
                        parts.append((h, r))
                hard = torch.cat([h for h, _ in parts])
                rows = pd.concat([r for _, r in parts], ignore_index=True)
            self.D.eval()
            with torch.no_grad():
                guess = torch.sigmoid(self.suspicion(hard))
            self._ask(rows, hard, "training: generated rows")
            answer = self.buf_y[-k:]
            if self.keep_missed:
                self.missed.append(rows[(answer < 0.5).numpy()])
            own = slice(0, max(1, k - n_explore))  # the generator's own rows, not the exploring ones
            evaded = float((answer[own] < 0.5).float().mean())
            agree = float(((guess >= 0.5) == (answer >= 0.5)).float().mean())
            d_loss = [self._d_step() for _ in range(cfg.d_steps if len(self.buf_y) else 0)]
            g_loss = []
            for _ in range(cfg.g_steps):
                b = self.rng.integers(0, len(x), cfg.batch)
                loss, out = self._g_step(x.iloc[b].reset_index(drop=True), enc_all[b], mask[b], up[b])
                g_loss.append(loss)
                if self.R is not None:
                    self._r_step(out)
            self.round += 1
            rec = {"round": self.round, "queries": self.blackbox.queries, "evaded": evaded, "substitute_agrees": agree,
                   "d_loss": float(np.mean(d_loss)) if d_loss else float("nan"),
                   "g_loss": float(np.mean(g_loss)) if g_loss else float("nan")}
            self.history.append(rec)
            if self.round % 10 == 0 or self.round == cfg.rounds:
                self.say(f"round {self.round}/{cfg.rounds}: {evaded:.1%} of this round's rows evade, substitute agrees on "
                         f"{agree:.1%}, "
                         f"{self.blackbox.queries:,} queries, {time.perf_counter() - start:.0f} s")
            if self.run_dir is not None and cfg.checkpoint_every and self.round % cfg.checkpoint_every == 0:
                self.save(self.run_dir / CHECKPOINT_NAME)
        self.fitted = True
        if self.run_dir is not None:
            self.save(self.run_dir / CHECKPOINT_NAME)
        return self

    # --- disguising ----------------------------------------------------------------------------

    def _split(self, x: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(each row's class, which rows this generator disguises): those of the classes it was trained on
        (:func:`~advgen.adversarial.rows.rows_to_disguise`, the runtime's rule too), with its notes told."""
        label = self.space.label
        classes = self.row_classes(x) if label in x.columns else None
        classes, take, notes = rows_to_disguise(classes, self.trained_classes, len(x), label)
        for note in notes:
            self._note(note)
        return classes, take

    def _masks_of(self, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.threat.check(classes)
        return self.threat.mask(classes), self.threat.up_mask(classes)

    def disguise(self, x: pd.DataFrame, tries: int | None = None, chunk: int = 4096) -> pd.DataFrame:
        """Disguise ``x`` with the trained generator. With ``tries`` > 0 and queries left, rows the black
        box flags get up to ``tries`` new draws; without, no query is made. Rows of classes the generator
        was not trained on come back unchanged (a note counts them)."""
        x = x.reset_index(drop=True)
        classes, take = self._split(x)
        if take.all():
            return self._disguise(x, classes, tries, chunk)
        if not take.any():
            return x.copy()
        adv = self._disguise(x[take].reset_index(drop=True), classes[take], tries, chunk)
        return merge_rows(x, take, adv)

    def _disguise(self, x: pd.DataFrame, classes: np.ndarray, tries: int | None, chunk: int) -> pd.DataFrame:
        tries = self.config.final_tries if tries is None else tries
        mask, up = self._masks_of(classes)
        parts = []
        self.G.eval()
        self.D.eval()
        for s in range(0, len(x), chunk):
            sub = x.iloc[s : s + chunk].reset_index(drop=True)
            enc = torch.as_tensor(self.space.encode(sub))
            best, best_score = None, None
            for k in range(self.config.select):
                with torch.no_grad():
                    hard, rows, _ = self._forward(sub, enc, mask[s : s + chunk], up[s : s + chunk], grad=False,
                                                  sample=k > 0)
                    score = (torch.stack([self._judged(hard, mask[s : s + chunk]) for _ in range(8)]).mean(dim=0).numpy()
                             if self.config.select > 1 else np.zeros(len(sub)))
                if best is None:
                    best, best_score = rows, score
                    continue
                better = np.flatnonzero(score < best_score)
                best_score[better] = score[better]
                for col in best.columns:
                    put(best, col, better, rows[col].to_numpy()[better])
            parts.append(best)
        out = pd.concat(parts, ignore_index=True) if parts else x.copy()
        if tries <= 0:
            return out
        try:
            score = self.blackbox.answer(out, what="final: disguised rows")
        except QueryBudgetExhausted as exc:
            self.say(f"no queries left to check the disguised rows ({exc})")
            return out
        for _ in range(tries):
            flagged = np.flatnonzero(score >= 0.5)
            left = self.blackbox.remaining
            if left is not None:
                flagged = flagged[:left]
            if len(flagged) == 0:
                break
            sub = x.iloc[flagged].reset_index(drop=True)
            enc = torch.as_tensor(self.space.encode(sub))
            with torch.no_grad():
                _, cand, _ = self._forward(sub, enc, mask[flagged], up[flagged], grad=False, sample=True)
            s2 = self.blackbox.answer(cand, what="final: re-drawn rows")
            better = s2 < score[flagged]
            rows = flagged[better]
            score[rows] = s2[better]
            for col in out.columns:
                put(out, col, rows, cand[col].to_numpy()[better])
        return out

    def generate(self, x: pd.DataFrame) -> pd.DataFrame:
        x = x.reset_index(drop=True)
        if not self.fitted:
            reserve = int(len(x) * 1.25) if self.config.final_tries > 0 else 0
            self.fit(x, reserve=reserve)
        return self.disguise(x)

    # --- checkpoints ---------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "step": self.round,
            "config": asdict(self.config),
            "spec": {"space": self.space.to_dict(), "threat": self.threat.to_dict(), "history": self.history,
                     "queries": self.blackbox.queries, "detector": self.blackbox.name, "seed": self.seed,
                     "fitted": self.fitted, "rng": self.rng.bit_generator.state, "stopped": self.stopped,
                     "category_map": self.category_map, "trained_classes": self.trained_classes,
                     "queries_by_purpose": self.blackbox.queries_by_purpose(), "notes": self.notes},
            "plugin": CHECKPOINT_PLUGIN,
            "generator": self.G.state_dict(),
            "discriminator": self.D.state_dict(),
            "realism": self.R.state_dict() if self.R is not None else {},
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "opt_r": self.opt_r.state_dict() if self.opt_r is not None else {},
            "buffer_x": self.buf_x,
            "buffer_y": self.buf_y,
            "torch_rng": torch.get_rng_state(),
        }

    def save(self, path: str | Path) -> Path:
        from advgen.checkpoint import save_checkpoint

        save_checkpoint(path, self.state())
        return Path(path)

    def load_state(self, payload: dict[str, Any]) -> None:
        """Continue from a checkpoint written by :meth:`save` (nets, optimisers, buffer, counters)."""
        if payload.get("plugin") != CHECKPOINT_PLUGIN:
            raise CheckpointError("the checkpoint is not a GAN attack's (advgen evade writes attack.pt)")
        spec = payload["spec"]
        try:
            self.G.load_state_dict(payload["generator"])
            self.D.load_state_dict(payload["discriminator"])
            self.opt_g.load_state_dict(payload["opt_g"])
            self.opt_d.load_state_dict(payload["opt_d"])
            if self.R is not None and payload.get("realism"):
                self.R.load_state_dict(payload["realism"])
                self.opt_r.load_state_dict(payload["opt_r"])  # type: ignore[union-attr]
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"the checkpoint does not fit this attack (other data, mask or settings): {str(exc)[:200]}") from None
        self.buf_x, self.buf_y = payload["buffer_x"].float(), payload["buffer_y"].float()
        if self.buf_x.shape[1:] != (self.space.dim,) or len(self.buf_x) != len(self.buf_y):
            raise CheckpointError("the checkpoint's query buffer does not fit this attack's encoding")
        self.round = int(payload["step"])
        self.history = list(spec.get("history", []))
        self.fitted = bool(spec.get("fitted", False))
        self.stopped = spec.get("stopped")
        self.blackbox.queries = int(spec.get("queries", 0))
        earlier = spec.get("queries_by_purpose")
        if isinstance(earlier, dict) and sum(int(v) for v in earlier.values()) == self.blackbox.queries:
            self.blackbox.log.extend((str(k), int(v)) for k, v in earlier.items())
        else:  # a checkpoint from before the log was saved
            self.blackbox.log.append(("resumed: queries of the earlier run", self.blackbox.queries))
        trained = spec.get("trained_classes")
        self.trained_classes = [str(c) for c in trained] if isinstance(trained, list) and trained else None
        self.notes = [str(n) for n in spec.get("notes") or []]
        try:
            self.rng.bit_generator.state = spec["rng"]
            torch.set_rng_state(payload["torch_rng"])
        except (KeyError, TypeError, ValueError, RuntimeError):
            raise CheckpointError("the checkpoint's random state is unreadable") from None

    def query_split(self) -> dict[str, Any]:
        """How the black box's queries were spent: the substitute's warm-up against the attack's own
        (training rounds, final check), beside the budget and the warm-up's cap."""
        by = self.blackbox.queries_by_purpose()
        warmup = sum(v for k, v in by.items() if k.startswith(WARMUP))
        training = sum(v for k, v in by.items() if k.startswith("training:"))
        final = sum(v for k, v in by.items() if k.startswith("final:"))
        unsplit = sum(v for k, v in by.items() if k.startswith("resumed:"))  # a checkpoint without its log
        budget = self.blackbox.budget
        out = {"warmup": warmup, "attack": self.blackbox.queries - warmup - unsplit, "training": training,
               "final": final, "budget": budget, "warmup_share": WARMUP_SHARE,
               "warmup_cap": None if budget is None else int(budget * WARMUP_SHARE)}
        if unsplit:
            out["earlier_run_unsplit"] = unsplit
        return out

    # --- export --------------------------------------------------------------------------------

    def disguise_with_noise(self, x: pd.DataFrame, z: torch.Tensor) -> pd.DataFrame:
        """``x`` disguised with the given noise ``z`` ``[len(x), noise]``: one draw a row (the generator's
        own output, no substitute picks among candidates) and no query. This is what a generator exported
        by ``advgen export`` computes; the export checks the two against each other on the same rows."""
        x = x.reset_index(drop=True)
        classes, take = self._split(x)
        if not take.all():
            if not take.any():
                return x.copy()
            return merge_rows(x, take, self.disguise_with_noise(x[take], z[torch.as_tensor(take)]))
        mask, up = self._masks_of(classes)
        self.G.eval()
        with torch.no_grad():
            enc = torch.as_tensor(self.space.encode(x))
            _, rows, _ = self._forward(x, enc, mask, up, z=z.to(torch.float32), grad=False, sample=False)
        return rows


CHECKPOINT_NAME = "attack.pt"


def load_attack_checkpoint(path: str | Path) -> dict[str, Any]:
    """A GAN attack checkpoint, read safely (no code runs)."""
    from advgen.checkpoint import load_checkpoint

    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT_NAME
    if not p.is_file():
        raise CheckpointError(f"no attack checkpoint at {p}")
    payload = load_checkpoint(p)
    if payload.get("plugin") != CHECKPOINT_PLUGIN:
        raise CheckpointError(f"{p} is not a GAN attack checkpoint")
    return payload
