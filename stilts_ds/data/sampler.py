"""Multi-task sampling and data-parallel row batching for training and evaluation.

Four pieces, all pure numpy (no deepspeed, no ray), all seeded and resumable:

- ``task_weights(sizes, strategy, fixed=...)`` turns example counts into a sampling
  distribution over tasks: ``"proportional"`` (default), ``"temperature"`` (T5 / XLM-R
  style, with an optional cap on huge tasks) or ``"uniform"``; ``fixed`` pins the share of
  some tasks (``{"mlm": 0.2}``: one step in five is MLM) and the others split the rest.
- ``TaskSampler(weights, seed)`` draws tasks. Every rank builds it from the same weights and
  seed, so every rank picks the same task at every draw and the ZeRO collectives line up.
- ``RowBatcher(n_rows, batch_size, rank=, world_size=, seed=)`` yields row indices of one
  task's ``Features`` table for this rank. Training: one stream of rows per task, the same on
  every rank and for every world size (a fresh seeded permutation per epoch, epochs
  concatenated); each call takes the next ``batch_size x world_size`` rows of the stream and
  gives rank ``r`` the ``r``-th block of ``batch_size``. ``mode="eval"`` instead walks rows
  ``rank::world_size`` once, in order, no padding.
  ``group_by_length=True`` (with the rows' ``lengths``) orders each epoch so that a
  micro-batch holds rows of similar length (see "Length grouping" below).
- ``StepSchedule(sampler, batchers, grad_accum, sample_per=)`` says what each micro-batch of
  this rank trains on: the task, its rows and the draw count that seeds per-batch randomness
  (MLM masks). ``sample_per="step"`` (default, jiant's recipe) draws one task per optimizer
  step and takes every gradient-accumulation micro-batch of the step from it;
  ``"micro_batch"`` draws one per micro-batch.

Because the row stream does not depend on the world size and a step's micro-batches come
from one task, an optimizer step trains on the same task and the same rows, in the same
micro-batches, whether its global batch is split over workers or over accumulation steps:
1 worker x accumulation 2 and 2 workers x accumulation 1 run the same optimization.

Length grouping (``RowBatcher(..., group_by_length=True, lengths=..., grad_accum=...)``,
Hugging Face Trainer's ``group_by_length``): collation trims a batch to its longest row, so a
batch of one long and many short rows pays for the long one everywhere. Grouping reorders
each epoch's seeded permutation (the same permutation as without grouping) so that rows of
similar length train together:

1. The unit is the *step block*: the rows one draw of the task takes over all ranks,
   ``batch_size x world_size x grad_accum`` (``grad_accum``: the schedule's under
   ``sample_per="step"``, 1 under ``"micro_batch"``). It is the global batch of an optimizer
   step, which is what stays fixed when workers are traded for accumulation steps (1 x 2 and
   2 x 1 both have a block of ``2 x batch_size``); ``batch_size x world_size`` alone would not.
2. Step blocks line up with the stream: optimizer steps take whole blocks from stream
   position 0 on, so epoch ``e`` begins ``(-e x n_rows) mod block`` rows before its first
   block boundary. Those head rows finish the step that began in the previous epoch.
3. The rest of the epoch is cut into windows of ``group_window`` blocks (default 50, as in
   Hugging Face's mega-batches); each window is sorted by length, longest first (a stable
   sort, ties keep the permutation's order), and cut into blocks; the window's full blocks
   are shuffled by the epoch's generator (seeded by ``seed + epoch``, drawn after the
   permutation), so long and short steps interleave; a short last block stays at the end.
4. Ranks split a block as they split any batch of the stream (rank ``r``: the ``r``-th
   ``batch_size`` rows of each ``batch_size x world_size``), so ranks get neighbours in
   length order and step at about the same pace.

Each epoch is still a permutation of the rows (every row exactly once), the order depends
only on (seed, epoch, lengths, step block, window), never on the world size as such, and
resuming is exact as without grouping. Length grouping applies to training only.

Usage (one training worker)::

    weights = task_weights({"mnli": len(mnli), "squad_v1": len(squad)}, "temperature", temperature=2.0)
    batchers = {t: RowBatcher(len(feats[t]), micro_batch, rank=rank, world_size=ws, seed=cfg.seed)
                for t in weights}
    # or, length-grouped: RowBatcher(feats[t], micro_batch, rank=rank, world_size=ws, seed=cfg.seed,
    #                                group_by_length=True, grad_accum=accum)   # lengths from feats[t]
    schedule = StepSchedule(TaskSampler(weights, seed=cfg.seed), batchers, grad_accum=accum)
    while engine.global_steps < total:
        mb = schedule.next()                   # mb.task, mb.rows (indices into feats[mb.task]), mb.draw
        batch = fmt.collate(feats[mb.task], mb.rows, seed=cfg.seed, step=mb.draw)
        ...
    client_state = schedule.state_dict()      # {"sampler": ..., "batchers": {task: ...}}

Checkpoints are taken at optimizer-step boundaries; resume by calling ``load_state_dict`` on
objects built with the same arguments, and the run continues exactly the sequence an
uninterrupted run would have produced.

Evaluation::

    for rows in RowBatcher(len(feats), eval_batch, rank=rank, world_size=ws, mode="eval"):
        ...  # ranks get unequal counts; gather {guid: prediction} and merge afterwards

Under ZeRO-3 every forward pass is a collective (parameters are gathered), so an eval loop
must run the same number of forward passes on every rank: run ``max_batches`` passes and
give ranks that ran out a dummy batch whose outputs are dropped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Literal, Mapping

import numpy as np

from stilts_ds.errors import StiltsError

Strategy = Literal["proportional", "temperature", "uniform"]
STRATEGIES = ("proportional", "temperature", "uniform")


class SamplerError(StiltsError, ValueError):
    """Bad sampling configuration or a checkpointed state that does not fit this run.

    Both a ``StiltsError`` (the CLI prints it without a traceback) and a ``ValueError``.
    """


def task_weights(
    sizes: Mapping[str, int],
    strategy: Strategy = "proportional",
    temperature: float = 2.0,
    cap: int | None = None,
    fixed: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Sampling probability per task, summing to 1, in the order of ``sizes``.

    ``fixed`` (the config's ``weights``) gives some tasks a fixed share in (0, 1); the other
    tasks split ``1 - sum(fixed)`` by ``strategy``. Raw text for MLM is counted in blocks,
    not examples, so a size-based share would say nothing about how much MLM a run does:
    a fixed share does. Listing every task asks for shares summing to 1.

    - ``proportional``: p_i = n_i / sum(n).
    - ``temperature``: p_i proportional to (n_i / N)^(1/T), renormalised; T = 1 is
      proportional, larger T flattens towards uniform (T5, XLM-R multilingual sampling).
    - ``uniform``: p_i = 1 / k.

    ``cap`` replaces n_i by min(n_i, cap) before anything else (T5's "examples-proportional
    mixing with an artificial limit"), so one huge task (QQP, 364k rows) cannot swamp the
    mixture; it applies to ``proportional`` and ``temperature`` and is meaningless for
    ``uniform``. ``temperature`` is read only by the ``temperature`` strategy.
    """
    if strategy not in STRATEGIES:
        raise SamplerError(f"unknown sampling strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    if not sizes:
        raise SamplerError("no tasks to sample from: give at least one task with its number of training rows")
    bad = {name: n for name, n in sizes.items() if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n <= 0}
    if bad:
        raise SamplerError(
            f"task sizes must be positive row counts; tasks with no training rows: {bad}; "
            "prepare their data (stilts-ds prepare) or remove them from the task mixture"
        )
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, np.integer)) or cap <= 0):
        raise SamplerError(f"cap must be a positive number of rows or None, got {cap!r}")
    if strategy == "temperature" and not (
        isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0
    ):
        raise SamplerError(f"temperature must be a positive finite number (1 = proportional), got {temperature!r}")

    if fixed:
        return _with_fixed_shares(sizes, fixed, strategy, temperature, cap)
    names = list(sizes)
    if strategy == "uniform":
        return {name: 1.0 / len(names) for name in names}
    counts = np.array([min(int(sizes[n]), int(cap)) if cap is not None else int(sizes[n]) for n in names], dtype=np.float64)
    probs = counts / counts.sum()
    if strategy == "temperature":
        # Work in log space: (n/N)^(1/T) underflows for tiny tasks at small T otherwise.
        logits = np.log(probs) / float(temperature)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
    return {name: float(p) for name, p in zip(names, probs)}


def check_fixed_shares(fixed: Mapping[str, float], tasks) -> None:
    """Raise SamplerError unless ``fixed`` names only ``tasks``, with shares in (0, 1) that
    leave room for the other tasks (or sum to 1 when every task is listed). The config calls
    this too, so a bad ``weights`` fails when the config loads, not in a worker."""
    tasks = list(tasks)
    unknown = sorted(set(fixed) - set(tasks))
    if unknown:
        raise SamplerError(f"weights name {unknown}, which are not trained in this phase (tasks: {tasks}); "
                           "list them under tasks or remove them from weights")
    bad = {t: w for t, w in fixed.items()
           if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or not 0 < w < 1}
    if bad:
        raise SamplerError(f"weights must be shares in (0, 1), got {bad}")
    total = float(sum(fixed.values()))
    rest = [t for t in tasks if t not in fixed]
    if rest and total >= 1 - 1e-9:
        raise SamplerError(f"weights {dict(fixed)} sum to {total:.3f} and leave nothing for {rest}; "
                           "lower them (sum < 1) or give every task a weight")
    if not rest and abs(total - 1) > 1e-6:
        raise SamplerError(f"weights give every task a share but sum to {total:.3f}, not 1")


def _with_fixed_shares(sizes, fixed, strategy, temperature, cap) -> dict[str, float]:
    check_fixed_shares(fixed, sizes)
    total = float(sum(fixed.values()))
    rest = [t for t in sizes if t not in fixed]
    shares = {t: float(w) for t, w in fixed.items()}
    if rest:
        others = task_weights({t: sizes[t] for t in rest}, strategy, temperature=temperature, cap=cap)
        shares.update({t: (1 - total) * p for t, p in others.items()})
    norm = sum(shares.values())
    return {t: shares[t] / norm for t in sizes}


class TaskSampler:
    """Seeded draw of tasks, identical on every rank: ``StepSchedule`` draws once per
    optimizer step (or once per micro-batch) and ``steps`` counts the draws.

    Tasks are kept in sorted name order, so two ranks that built their weight dict in
    different orders still draw the same sequence. ``state_dict()`` holds the generator's
    exact state; ``load_state_dict`` on a sampler built with the same weights continues
    the sequence where the checkpoint left it.
    """

    def __init__(self, weights: Mapping[str, float], seed: int):
        if not weights:
            raise SamplerError("TaskSampler needs at least one task weight")
        probs = {k: float(v) for k, v in weights.items()}
        bad = {k: v for k, v in probs.items() if not math.isfinite(v) or v < 0}
        if bad or sum(probs.values()) <= 0:
            raise SamplerError(f"task weights must be finite, non-negative and not all zero, got {dict(weights)}")
        self.tasks: tuple[str, ...] = tuple(sorted(probs))
        p = np.array([probs[t] for t in self.tasks], dtype=np.float64)
        self.probs = p / p.sum()
        self._cdf = np.cumsum(self.probs)
        self._cdf[-1] = 1.0  # a rounding shortfall must not leave a gap above the last task
        self.seed = int(seed)
        self._rng = np.random.Generator(np.random.PCG64(self.seed))
        self.steps = 0

    def next(self) -> str:
        """The next task drawn."""
        # One uniform draw per task and a search in the CDF: the sequence depends only on
        # PCG64 and float64 arithmetic, not on the internals of Generator.choice.
        u = self._rng.random()
        i = int(np.searchsorted(self._cdf, u, side="right"))
        self.steps += 1
        return self.tasks[min(i, len(self.tasks) - 1)]

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        return self.next()

    def state_dict(self) -> dict[str, Any]:
        return {
            "tasks": list(self.tasks),
            "probs": [float(x) for x in self.probs],
            "seed": self.seed,
            "steps": self.steps,
            "rng": self._rng.bit_generator.state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if list(state["tasks"]) != list(self.tasks) or not np.allclose(state["probs"], self.probs, rtol=0, atol=1e-12):
            raise SamplerError(
                f"sampler checkpoint was taken with tasks/weights {dict(zip(state['tasks'], state['probs']))}, "
                f"this run has {dict(zip(self.tasks, self.probs.tolist()))}; resume with the same task mixture "
                "or start a fresh run"
            )
        if int(state["seed"]) != self.seed:
            raise SamplerError(f"sampler checkpoint has seed {state['seed']}, this run {self.seed}; resume with the same seed")
        self._rng.bit_generator.state = state["rng"]
        self.steps = int(state["steps"])


class RowBatcher:
    """Row indices of one task's Features table for one data-parallel rank.

    ``mode="train"`` (infinite): the task's rows form one stream, the same on every rank and
    for every world size: epoch ``e`` is the permutation seeded by ``seed + e`` (as torch's
    DistributedSampler seeds its epochs), and the epochs follow each other. Each ``next()``
    takes the next ``batch_size x world_size`` rows of the stream and returns this rank's
    block of them (rank ``r``: the ``r``-th ``batch_size`` rows), continuing into the next epoch
    when this one runs out. Ranks thus get disjoint stream positions and exactly ``batch_size``
    rows each (every rank does the same number of forward passes), and nothing is padded:
    ``W`` ranks taking one call each read, block for block, the rows one rank reads in ``W``
    calls, so how a global batch is split over workers does not change what it holds.
    ``state_dict() == {"epoch", "position", "layout": "stream"}`` (position: rows of the
    epoch taken by all ranks together) and is the same on every rank.

    ``group_by_length=True`` (training only) reorders each epoch's permutation so that rows
    of similar length train together (the module docstring's "Length grouping"): ``lengths``
    gives each row's length (default: ``n_rows.columns["lengths"]`` when ``n_rows`` is a
    ``Features`` table; a per-choice array ``[N, C]`` counts a row's longest choice),
    ``grad_accum`` the micro-batches each draw of this task trains (the schedule's
    ``grad_accum`` under ``sample_per="step"``, 1 under ``"micro_batch"``) and
    ``group_window`` how many step blocks are sorted together. The state then also holds
    ``"group_by_length": {"block", "window"}`` (rows), and a state taken mid-epoch under
    another grouping is refused (the epoch's order differs: rows would repeat or be skipped).

    ``mode="eval"`` (finite): rank ``r`` takes rows ``r::world_size`` in order, no shuffle,
    no padding, so every row is seen exactly once across ranks; the last batch may be
    short and ranks may get different numbers of rows (gather by guid afterwards).
    """

    def __init__(
        self,
        n_rows: int | Any,
        batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        mode: Literal["train", "eval"] = "train",
        group_by_length: bool = False,
        lengths: Any = None,
        grad_accum: int = 1,
        group_window: int = 50,
    ):
        n = n_rows if isinstance(n_rows, (int, np.integer)) else len(n_rows)
        if mode not in ("train", "eval"):
            raise SamplerError(f"RowBatcher mode must be 'train' or 'eval', got {mode!r}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise SamplerError(f"rank {rank} is not in [0, world_size={world_size})")
        if batch_size < 1:
            raise SamplerError(f"batch_size must be at least 1, got {batch_size}")
        if n < 0 or (n == 0 and mode == "train"):
            raise SamplerError(f"cannot train on a table of {n} rows; prepare the task's data first")
        self.n_rows = int(n)
        self.batch_size = int(batch_size)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.seed = int(seed)
        self.mode = mode
        # Evaluation: the rows this rank owns. Training: rows per rank per epoch, rounded up.
        if mode == "train":
            self.rows_per_rank = -(-self.n_rows // self.world_size)
        else:
            self.rows_per_rank = len(range(self.rank, self.n_rows, self.world_size))
        self.epoch = 0
        self.position = 0  # train: rows of the epoch's permutation taken (all ranks); eval: this rank's
        self._perm_epoch: int | None = None
        self._perm: np.ndarray | None = None
        self.group_by_length = bool(group_by_length)
        self.lengths: np.ndarray | None = None
        self.block_rows = self.window_rows = 0
        if self.group_by_length:
            self._setup_grouping(n_rows, lengths, grad_accum, group_window)

    def _setup_grouping(self, table: Any, lengths: Any, grad_accum: int, group_window: int) -> None:
        if self.mode != "train":
            raise SamplerError("group_by_length orders training epochs; evaluation walks its rows in order")
        for name, value in (("grad_accum", grad_accum), ("group_window", group_window)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise SamplerError(f"{name} must be a positive integer, got {value!r}")
        if lengths is None:
            columns = getattr(table, "columns", None)
            if not isinstance(columns, Mapping) or "lengths" not in columns:
                raise SamplerError("group_by_length needs the rows' lengths: pass lengths= or a Features table "
                                   "with a 'lengths' column")
            lengths = columns["lengths"]
        lengths = np.asarray(lengths)
        if lengths.ndim > 1:  # per choice (multiple choice): a row is as long as its longest choice
            lengths = lengths.reshape(len(lengths), -1).max(axis=1)
        if lengths.shape != (self.n_rows,) or not np.issubdtype(lengths.dtype, np.number):
            raise SamplerError(f"group_by_length needs one length per row: {self.n_rows} rows, lengths of shape "
                               f"{lengths.shape}")
        self.lengths = lengths.astype(np.int64)
        self.block_rows = self.batch_size * self.world_size * int(grad_accum)
        self.window_rows = self.block_rows * int(group_window)

    # -- evaluation helpers ------------------------------------------------------------

    @property
    def max_batches(self) -> int:
        """Eval: the most batches any rank gets (rank 0 owns the largest share)."""
        most = -(-self.n_rows // self.world_size)
        return -(-most // self.batch_size)

    def __len__(self) -> int:
        """Eval: this rank's number of batches. Train: calls that cover one epoch."""
        if self.mode == "train":
            return -(-self.n_rows // (self.batch_size * self.world_size))
        return -(-self.rows_per_rank // self.batch_size)

    # -- iteration ---------------------------------------------------------------------

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._perm_epoch != epoch:
            rng = np.random.default_rng(self.seed + epoch)
            perm = rng.permutation(self.n_rows).astype(np.int64)
            self._perm = self._grouped(perm, epoch, rng) if self.group_by_length else perm
            self._perm_epoch = epoch
        return self._perm

    def _grouped(self, perm: np.ndarray, epoch: int, rng: np.random.Generator) -> np.ndarray:
        """Epoch ``epoch``'s permutation in length-grouped order (module docstring, steps 2-3)."""
        block, window = self.block_rows, self.window_rows
        # Optimizer steps take whole blocks from stream position 0: this epoch starts ``head``
        # rows before a block boundary (0 when the epochs so far filled whole blocks).
        head = min((-epoch * self.n_rows) % block, self.n_rows)
        parts = [self._longest_first(perm[:head])]
        for start in range(head, self.n_rows, window):
            rows = self._longest_first(perm[start : start + window])
            full = len(rows) // block
            order = rng.permutation(full)
            parts.append(rows[: full * block].reshape(full, block)[order].reshape(-1))
            parts.append(rows[full * block :])  # a short last block (the epoch's end) stays last
        out = np.concatenate(parts)
        assert len(out) == self.n_rows
        return out

    def _longest_first(self, rows: np.ndarray) -> np.ndarray:
        return rows[np.argsort(-self.lengths[rows], kind="stable")]

    def _take(self, count: int) -> np.ndarray:
        """The next ``count`` rows of the stream, advancing it (every rank takes the same)."""
        parts = []
        while count:
            take = self._permutation(self.epoch)[self.position : self.position + count]
            parts.append(take)
            count -= len(take)
            self.position += len(take)
            if self.position == self.n_rows:
                self.epoch, self.position = self.epoch + 1, 0
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def next(self) -> np.ndarray:
        """The next batch of row indices (int64 array)."""
        if self.mode == "eval":
            if self.position >= self.rows_per_rank:
                raise StopIteration
            start = self.rank + self.position * self.world_size
            stop_pos = min(self.position + self.batch_size, self.rows_per_rank)
            rows = np.arange(start, self.rank + stop_pos * self.world_size, self.world_size, dtype=np.int64)
            self.position = stop_pos
            return rows
        block = self._take(self.batch_size * self.world_size)
        return block[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]

    def __iter__(self) -> Iterator[np.ndarray]:
        return self

    def __next__(self) -> np.ndarray:
        return self.next()

    # -- checkpointing -----------------------------------------------------------------

    def _grouping_state(self) -> dict[str, int] | None:
        return {"block": self.block_rows, "window": self.window_rows} if self.group_by_length else None

    def state_dict(self) -> dict[str, Any]:
        state = {"epoch": self.epoch, "position": self.position, "layout": STREAM}
        if self.group_by_length:
            state["group_by_length"] = self._grouping_state()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        epoch, position = int(state["epoch"]), int(state["position"])
        saved = state.get("group_by_length")
        saved = {k: int(v) for k, v in saved.items()} if saved else None
        if self.mode == "train" and position and saved != self._grouping_state():
            def describe(g):
                return f"grouped by length in blocks of {g['block']} rows, windows of {g['window']}" if g else \
                    "not grouped by length"
            raise SamplerError(
                f"batcher state {dict(state)} was taken mid-epoch with the epoch {describe(saved)}; this run's "
                f"epochs are {describe(self._grouping_state())}, so continuing would repeat some rows of the "
                "epoch and skip others: resume with the same group_by_length, global batch and window")
        # Before the stream layout a position counted this rank's rows of a padded shard:
        # the same number at world size 1, another meaning at any other.
        if self.mode == "train" and state.get("layout") != STREAM and self.world_size != 1:
            raise SamplerError(
                f"batcher state {dict(state)} is from a stilts-ds version that sharded each epoch per rank; "
                f"it cannot be continued at world size {self.world_size}: start the run afresh")
        limit = self.n_rows if self.mode == "train" else self.rows_per_rank
        if epoch < 0 or not 0 <= position <= limit:
            raise SamplerError(
                f"batcher state {dict(state)} does not fit a table of {self.n_rows} rows over {self.world_size} "
                f"ranks; resume with the same data and world size"
            )
        self.epoch, self.position = epoch, position


# RowBatcher.state_dict's "layout": positions count the rows of the whole stream (all ranks).
STREAM = "stream"
SAMPLE_PER = ("step", "micro_batch")


@dataclass(frozen=True)
class MicroBatch:
    """What one forward/backward pass of one rank trains on."""

    task: str
    rows: np.ndarray  # row indices into the task's Features table
    # The sampler's draw count, this batch's draw included: seeds per-batch randomness
    # (MLM masks, with the run's seed and each row's guid). Under sample_per="step" it is the
    # optimizer step (1-based), so every micro-batch of a step, on every rank, shares it.
    draw: int


class StepSchedule:
    """The micro-batches a rank trains on, one optimizer step after another.

    ``grad_accum`` micro-batches make an optimizer step. ``sample_per="step"`` (jiant's
    recipe) draws one task per optimizer step and takes all of the step's micro-batches from
    it; ``"micro_batch"`` draws a task for every micro-batch. Every rank builds the schedule
    from the same sampler arguments, so all ranks train the same task in every micro-batch.
    ``state_dict()`` is ``{"sampler": ..., "batchers": {task: ...}}`` and may only be taken
    between optimizer steps (where checkpoints are); ``load_state_dict`` continues there.
    """

    def __init__(self, sampler: TaskSampler, batchers: Mapping[str, RowBatcher], grad_accum: int,
                 sample_per: str = "step"):
        if sample_per not in SAMPLE_PER:
            raise SamplerError(f"sample_per must be one of {', '.join(SAMPLE_PER)}, got {sample_per!r}")
        if isinstance(grad_accum, bool) or not isinstance(grad_accum, (int, np.integer)) or grad_accum < 1:
            raise SamplerError(f"grad_accum must be a positive integer, got {grad_accum!r}")
        missing = sorted(set(sampler.tasks) - set(batchers))
        if missing:
            raise SamplerError(f"no row batcher for sampled task(s) {missing}")
        self.sampler = sampler
        self.batchers = dict(batchers)
        self.grad_accum = int(grad_accum)
        self.sample_per = sample_per
        self._micro = 0  # micro-batches of the current optimizer step already taken
        self._task: str | None = None

    @property
    def at_step_boundary(self) -> bool:
        """Whether the next micro-batch starts an optimizer step."""
        return self._micro == 0

    def next(self) -> MicroBatch:
        if self.sample_per == "micro_batch" or self._micro == 0:
            self._task = self.sampler.next()
        rows = self.batchers[self._task].next()
        self._micro = (self._micro + 1) % self.grad_accum
        return MicroBatch(self._task, rows, self.sampler.steps)

    def step(self) -> list[MicroBatch]:
        """The micro-batches of the next optimizer step."""
        if not self.at_step_boundary:
            raise SamplerError("step() called inside an optimizer step")
        return [self.next() for _ in range(self.grad_accum)]

    def __iter__(self) -> Iterator[MicroBatch]:
        return self

    def __next__(self) -> MicroBatch:
        return self.next()

    def state_dict(self) -> dict[str, Any]:
        if not self.at_step_boundary:
            raise SamplerError(f"the schedule is {self._micro} of {self.grad_accum} micro-batches into an optimizer "
                               "step: checkpoint between optimizer steps")
        return {"sampler": self.sampler.state_dict(),
                "batchers": {t: b.state_dict() for t, b in sorted(self.batchers.items())}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])
        saved = dict(state["batchers"])
        if set(saved) != set(self.batchers):
            raise SamplerError(f"checkpointed row batchers of {sorted(saved)}, this run trains "
                               f"{sorted(self.batchers)}; resume with the same tasks")
        for t, b in self.batchers.items():
            b.load_state_dict(saved[t])
        self._micro, self._task = 0, None
