"""A serving simulator: requests arrive, the engine's scheduler admits them while KV blocks
are free (paged blocks of the engine's size, preemption by recompute when the pool runs
out), runs prompt chunks mixed with decode steps under a token budget per step, and every
step takes the time the perf model gives it (perf/serving_step.py).

Exact about the scheduler, not a closed formula; pure and deterministic (the load is seeded).
Runs of identical decode steps (no prompt work, nobody admitted, nobody finishing) are taken
as one chunk and costed with numpy, so a simulation is a few hundred Python iterations.

Requests that share a prompt prefix (Load.shared_prefix, a trace's prefix_tokens) skip the part of
it the engine has cached, and paged engines hold its blocks once (perf/serving_prefix.py); without
a prefix the simulator builds no cache and runs exactly as it did before prefixes were modelled.

Results use the names of vLLM's serving benchmark (benchmarks/benchmark_serving.py):
TTFT, TPOT, ITL, E2EL (mean, median, p90, p99, in ms), request, output and total token
throughput, and goodput under latency targets.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import InputError
from .serving_engines import Scheduler
from .serving_load import Load, prefixes_of, requests_of
from .serving_step import StepCost

KMAX = 1 << 16  # longest chunk of identical steps costed at once
RUNNING = ("rid", "ctx", "gen", "left", "blocks", "last", "rout")  # per running sequence
ALL = slice(None)  # every running sequence decodes
NONE = np.zeros(0, dtype=np.int64)
PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class StopRule:
    """End a run early once it is sure to miss its targets: more than `share` of the requests
    numbered `first` and later waited longer than `ttft_s` before their first token, or, once those
    requests run, 64 decode steps in a row each took over tpot_margin x `tpot_s`."""

    ttft_s: float | None = None
    share: float = 0.1
    first: int = 0
    tpot_s: float | None = None  # also stop when decode steps run this much slower for a while
    tpot_margin: float = 1.3


@dataclass(frozen=True)
class Targets:
    """Latency targets a request must meet to count toward goodput (seconds; None: no target)."""

    ttft_s: float | None = None
    tpot_s: float | None = None
    e2el_s: float | None = None

    def met(self, ttft, tpot, e2el) -> np.ndarray:
        ok = np.ones(len(ttft), dtype=bool)
        for lim, v in ((self.ttft_s, ttft), (self.tpot_s, tpot), (self.e2el_s, e2el)):
            if lim is not None:
                ok &= v <= lim
        return ok


def stats_ms(values: np.ndarray, weights: np.ndarray | None = None) -> dict:
    """mean, median, p90, p99 in milliseconds (weighted when weights are given)."""
    if len(values) == 0:
        return {"mean": None, "median": None, "p90": None, "p99": None}
    v = np.asarray(values, dtype=float) * 1e3
    if weights is None:
        q = np.percentile(v, PERCENTILES)
        mean = float(v.mean())
    else:
        w = np.asarray(weights, dtype=float)
        order = np.argsort(v, kind="stable")
        v, w = v[order], w[order]
        cw = np.cumsum(w)
        q = [v[min(np.searchsorted(cw, p / 100 * cw[-1]), len(v) - 1)] for p in PERCENTILES]
        mean = float((v * w).sum() / cw[-1])
    return {"mean": round(mean, 3), "median": round(float(q[0]), 3), "p90": round(float(q[1]), 3),
            "p99": round(float(q[2]), 3)}


@dataclass
class SimResult:
    completed: int
    rejected: int
    duration_s: float
    request_throughput: float  # requests/s
    output_throughput: float  # generated tokens/s
    total_token_throughput: float  # prompt + generated tokens/s
    ttft_ms: dict
    tpot_ms: dict
    itl_ms: dict
    e2el_ms: dict
    goodput: float | None  # requests/s that met the targets
    steps: int
    preemptions: int
    mean_batch: float  # sequences per decode step, weighted by time
    peak_kv_fraction: float  # most of the KV pool in use at once
    kv_limited: bool  # requests waited for KV blocks (not for a sequence slot)
    seq_limited: bool  # requests waited because max_seqs sequences were running
    steady_output_throughput: float  # generated tokens/s while the load was full (after warm-up)
    notes: list[str] = field(default_factory=list)
    aborted: bool = False  # ended early by a StopRule: the figures cover only part of the load
    slow_stop: bool = False  # ... because its decode steps were too slow for the TPOT target
    # per-request arrays (seconds), for callers that want more than the summary
    index: np.ndarray | None = None  # request numbers of the completed requests
    arrival: np.ndarray | None = None
    ttft: np.ndarray | None = None
    e2el: np.ndarray | None = None
    tpot: np.ndarray | None = None
    prefix_hit_tokens: int = 0  # prompt tokens taken from the engine's prefix cache instead of computed
    reused: np.ndarray | None = None  # per completed request: prompt tokens it took from the cache


class _Sim:
    """Simulator state. Running sequences live in numpy arrays (id, tokens cached, tokens
    generated, prompt tokens still to process, KV blocks held, time of the last token), in
    admission order, so the newest is the last one (the one preemption picks)."""

    def __init__(self, cost: StepCost, sched: Scheduler, load: Load, kv_tokens: int,
                 stop: StopRule | None = None):
        self.cost, self.sched, self.load = cost, sched, load
        self.stop = stop
        self.late = 0
        self.slow_steps = 0  # decode steps in a row slower than the StopRule's TPOT bound
        self.aborted = False
        self.bs = max(sched.block_tokens, 1)
        self.free = int(kv_tokens // self.bs)
        self.pool = max(self.free, 1)
        a, p, o = requests_of(load)
        self.arr, self.prompt, self.out = a, p, o
        n = len(a)
        self.n = n
        self.first = np.full(n, np.nan)
        self.finish = np.full(n, np.nan)
        self.start = a.copy()
        self.closed = load.kind in ("users", "batch")
        limit = kv_tokens if sched.slot_tokens is None else min(kv_tokens, sched.slot_tokens)
        self.too_long = (p + o) > limit
        self.prompt_left = p.astype(np.int64).copy()
        self.gen_done = np.zeros(n, dtype=np.int64)
        self.waiting: deque[int] = deque()
        # the API server's front end (perf/serving_frontend.py): a request reaches `waiting` only once
        # the one front-end process has served it (FIFO, frontend_serial_s each) and frontend_s more
        # have passed; both 0: straight to `waiting`, exactly as before the front end was modelled
        self.fe_lat, self.fe_ser = float(sched.frontend_s), float(sched.frontend_serial_s)
        self.fe_on = self.fe_lat > 0 or self.fe_ser > 0
        self.fe_q: deque[tuple[float, int]] = deque()  # (time it reaches the scheduler, request)
        self.fe_free = -math.inf  # when the front end finishes the request it serves last
        self.nxt = 0
        self.initial: deque[int] = deque()
        if self.closed:
            first = np.flatnonzero(a >= 0)
            self.nxt = len(first)
            self.initial = deque(int(i) for i in first[np.argsort(a[first], kind="stable")])
        z = np.zeros(0, dtype=np.int64)
        self.rid, self.ctx, self.gen, self.left, self.blocks = z, z.copy(), z.copy(), z.copy(), z.copy()
        self.rout = z.copy()  # output length of each running sequence
        self.last = np.zeros(0)
        self.t = 0.0
        self.steps = 0
        self.preempt = 0
        self.itl_v: list[np.ndarray] = []
        self.itl_w: list[float] = []  # the weight of every value of the matching itl_v array
        self.log_t: list[np.ndarray] = []
        self.log_out: list[np.ndarray] = []
        self.batch_time = 0.0
        self.busy = 0.0
        self.peak_used = 0
        self.kv_wait = False
        self.seq_wait = False
        self.last_admit = 0.0
        self.chunk_cap = KMAX
        self.swa_frac = getattr(cost, "kv_swa_frac", 0.0)
        r = sched.reserve
        self.ratio = r[0] if r else None
        self.ratio_min = r[1] if r else 0.0
        self.ratio_step = (r[0] - r[1]) / r[2] if r else 0.0
        # prefix caching (perf/serving_prefix.py): None when no request shares a prefix or the engine
        # computes every prompt token, and then nothing below changes
        self.pc = None
        pf = prefixes_of(load)
        if pf is not None and sched.prefix_cache:
            from .serving_prefix import cache_for

            group = cost.w if isinstance(cost, _Grouped) else 1.0
            self.pc = cache_for(sched, cost, pf, p, self.bs, self._blocks_for, group, load.chat)
            self.reused = np.zeros(n, dtype=np.int64)  # prompt tokens each request took from the cache

    # -- arrivals
    def release(self):
        if self.closed:
            while self.initial and self.arr[self.initial[0]] <= self.t + 1e-12:
                self._enqueue(self.initial.popleft())
        else:
            while self.nxt < self.n and self.arr[self.nxt] <= self.t + 1e-12:
                self._enqueue(self.nxt)
                self.nxt += 1
        while self.fe_q and self.fe_q[0][0] <= self.t + 1e-12:
            self.waiting.append(self.fe_q.popleft()[1])

    def _enqueue(self, i: int):
        if self.too_long[i]:
            if self.closed:
                self._next_closed(self.t)  # rejected at once; its user sends the next request
            return
        self.start[i] = self.t if self.arr[i] < 0 else self.arr[i]
        if self.fe_on:
            done = max(float(self.start[i]), self.fe_free) + self.fe_ser
            self.fe_free = done
            self.fe_q.append((done + self.fe_lat, i))
            return
        self.waiting.append(i)

    def _next_closed(self, t: float):
        if self.nxt < self.n:
            i = self.nxt
            self.nxt += 1
            self.arr[i] = t
            self._enqueue(i)

    def next_arrival(self) -> float | None:
        """When the next request reaches the scheduler (or the front end, which then says when)."""
        if self.closed:
            na = float(self.arr[self.initial[0]]) if self.initial else None
        else:
            na = float(self.arr[self.nxt]) if self.nxt < self.n else None
        if self.fe_q:
            na = self.fe_q[0][0] if na is None else min(na, self.fe_q[0][0])
        return na

    # -- blocks
    def _blocks_for(self, tokens):
        """KV blocks a sequence of `tokens` cached tokens holds; sliding-window layers keep only
        their window, so those count min(tokens, window)."""
        f, w = self.swa_frac, self.cost.window
        if f and w:
            units = (1.0 - f) * tokens + f * np.minimum(tokens, w)
            return -(-np.ceil(units).astype(np.int64) // self.bs)
        return -(-tokens // self.bs)

    def _reserved(self) -> float:
        """Tokens SGLang keeps for the remaining output of running requests."""
        if self.ratio is None or len(self.rid) == 0:
            return 0.0
        rem = np.maximum(self.rout - self.gen, 0)
        return float(np.minimum(rem, 4096).sum() * self.ratio)

    def _preempt_last(self):
        """Free the most recently admitted sequence; it recomputes later (vLLM V1, SGLang retract)."""
        i = int(self.rid[-1])
        gen = int(self.gen[-1])
        self.free += int(self.blocks[-1])
        if self.pc is not None:
            self.free -= self.pc.release(self.rid[-1:], self.ctx[-1:], self.t)
        for name in RUNNING:
            setattr(self, name, getattr(self, name)[:-1])
        self.preempt += 1
        if self.ratio is not None:
            self.ratio = self.sched.reserve[0]
        self.prompt_left[i] = int(self.prompt[i]) + gen
        self.gen_done[i] = gen
        self.waiting.appendleft(i)

    def _dec(self) -> np.ndarray:
        return np.flatnonzero(self.left == 0)

    def run(self) -> None:
        s = self.sched
        guard = 0
        while True:
            guard += 1
            if guard > 2_000_000:
                raise RuntimeError("serving simulation did not finish")
            if self.aborted or (self.stop is not None and self._hopeless()):
                return
            self.release()
            if len(self.rid) == 0 and not self.waiting:
                na = self.next_arrival()
                if na is None:
                    if self.closed and self.nxt < self.n:
                        self._next_closed(self.t)
                        continue
                    return
                self.t = max(self.t, na)
                continue
            pmask = self.left > 0
            prefilling = bool(pmask.any())
            dec = np.flatnonzero(~pmask) if prefilling else ALL
            n_dec = len(self.rid) - int(pmask.sum()) if prefilling else len(self.rid)
            # every decoding sequence needs room for the token it writes this step (at most one
            # new block each: count exactly only when the pool is nearly full)
            need = n_dec
            if self.free < 2 * n_dec:
                need = int((self._blocks_for(self.ctx[dec] + 1) - self.blocks[dec]).sum())
            while need > self.free and len(self.rid) > 1:
                self._preempt_last()
                pmask = self.left > 0
                prefilling = bool(pmask.any())
                dec = np.flatnonzero(~pmask)
                n_dec = len(dec)
                need = int((self._blocks_for(self.ctx[dec] + 1) - self.blocks[dec]).sum())
            if need > self.free:
                raise InputError("one sequence needs more KV cache than the engine's whole pool")
            pf = self._plan_prefill(n_dec, need, prefilling)
            if (s.policy == "prefill-first" and pf) or (s.policy == "static" and prefilling):
                dec, n_dec = NONE, 0
            if not pf and n_dec == 0:
                na = self.next_arrival()
                if na is None or na <= self.t:
                    # nothing runs, nothing can be admitted and nothing else arrives: one request
                    # needs more of the pool at once than the engine can give it
                    raise InputError("the engine cannot schedule one request of this length on this plan's KV"
                                     " cache (its prompt chunk and cache need more than the pool holds at once);"
                                     " plan shorter prompts or more GPU memory")
                self.t = na
                continue
            if not pf and self._admission_blocked(n_dec, prefilling):
                self._chunk(dec, n_dec)
            elif not self._long_prompt(dec, n_dec, pf):
                self._step(dec, n_dec, pf)

    def _admission_blocked(self, n_dec: int, prefilling: bool) -> bool:
        """True when no new prompt work can start before a running sequence finishes."""
        s = self.sched
        if prefilling:
            return False
        if not self.waiting or s.policy == "static":
            return True  # arrivals end the chunk (see _chunk)
        if len(self.rid) >= s.max_seqs:
            self.seq_wait = True
            return True
        budget = s.budget_tokens - (n_dec if s.policy == "mixed" else 0)
        if budget <= 0:
            return True
        head = self.waiting[0]
        first = int(self.prompt_left[head])
        r = shb = 0
        if self.pc is not None:
            r, shb = self.pc.peek(head)
            first -= r
        chunk = min(first, budget, s.chunk_tokens or first)
        if self._blocks_for(r + chunk) - shb > self.free:
            self.kv_wait = True
            return True
        if self.ratio is not None:
            # SGLang's PrefillAdder.add_one_req: the whole remaining prompt and the clipped output
            # must fit beside the running requests' reserve (their clipped remaining output times
            # the decaying new_token_ratio), even when the prompt is then prefilled in chunks
            f_new = min(int(self.out[head]) - int(self.gen_done[head]), 4096)
            room = self.free * self.bs - first - f_new
            rem = self._reserved() / self.ratio if self.ratio > 0 else 0.0
            if first + f_new > self.free * self.bs - self._reserved():
                # admitted once the decaying ratio falls to room / reserved: that many steps on
                need = room / rem if rem > 0 else -1.0
                if need < self.ratio_min or self.ratio_step <= 0:
                    return True  # only a finishing request makes room
                self.chunk_cap = max(1, math.ceil((self.ratio - need) / self.ratio_step))
                return True
        return False

    def _plan_prefill(self, n_dec: int, dec_blocks: int = 0, prefilling: bool = True) -> list[tuple[int, int, bool]]:
        """Prompt chunks for this step: (running index, or -1 - request id to admit; tokens; admit).
        `dec_blocks` blocks go to this step's decode tokens first; `prefilling` False: no running
        sequence has prompt left."""
        s = self.sched
        budget = s.budget_tokens - (n_dec if s.policy == "mixed" else 0)
        out: list[tuple[int, int, bool]] = []
        free = self.free - dec_blocks
        if not prefilling and not self.waiting:
            return out
        for j in (np.flatnonzero(self.left > 0) if prefilling else ()):
            if budget <= 0:
                break
            left = int(self.left[j])
            chunk = min(left, budget, s.chunk_tokens or left)
            if s.chunk_tokens is None and chunk < left:
                if out:  # whole prompts only: it waits for a step of its own
                    continue
                chunk = left
            room = (int(self.blocks[j]) + free) * self.bs - int(self.ctx[j])
            chunk = min(chunk, room)
            if chunk <= 0:
                continue
            free -= int(self._blocks_for(int(self.ctx[j]) + chunk) - self.blocks[j])
            out.append((int(j), chunk, False))
            budget -= chunk
        if s.policy == "static" and len(self.rid):
            return out
        running = len(self.rid)
        room_tokens = free * self.bs - self._reserved()
        for i in self.waiting:
            if budget <= 0 or running >= s.max_seqs:
                if running >= s.max_seqs:
                    self.seq_wait = True
                break
            left = int(self.prompt_left[i])
            r = shb = 0
            if self.pc is not None:  # the part of its prompt already in the cache is not computed
                r, shb = self.pc.peek(i)
                left -= r
            chunk = min(left, budget, s.chunk_tokens or left)
            if s.chunk_tokens is None and chunk < left:
                if out:
                    break
                chunk = left
            if s.policy == "static":  # static batches hold room for the whole sequence
                need = int(self._blocks_for(left + int(self.out[i]) - int(self.gen_done[i])))
            elif r:
                need = int(self._blocks_for(r + chunk)) - shb
            else:
                need = int(self._blocks_for(chunk))
            if need > free:
                self.kv_wait = True
                break
            if self.ratio is not None:  # SGLang: the whole request must fit (see _admission_blocked)
                future = min(int(self.out[i]) - int(self.gen_done[i]), 4096)
                if left + future > room_tokens:
                    self.kv_wait = True
                    break
                room_tokens -= left + future
            if r:
                free -= int(self._blocks_for(r + chunk)) - shb
            else:
                free -= int(self._blocks_for(chunk))
            if self.pc is not None:
                self.pc.commit(i, r, shb)
                self.reused[i] = r
            out.append((-1 - i, chunk, True))
            budget -= chunk
            running += 1
        return out

    def _hopeless(self) -> bool:
        """StopRule: requests still waiting past the TTFT target count as late too."""
        st = self.stop
        if st.tpot_s is not None and self.slow_steps >= 64:
            self.aborted = True
            return True
        if st.ttft_s is None:
            return False
        waiting_late = 0
        limit = self.t - st.ttft_s
        for i in self.waiting:
            if self.start[i] > limit:
                break
            if i >= st.first:
                waiting_late += 1
        if self.late + waiting_late > st.share * (self.n - st.first):
            self.aborted = True
        return self.aborted

    def _admit(self, ids: list[int]):
        for i in ids:
            self.waiting.remove(i)
        self.last_admit = self.t
        st = self.stop
        if st is not None and st.ttft_s is not None:
            for i in ids:
                if i >= st.first and self.t - self.start[i] > st.ttft_s and np.isnan(self.first[i]):
                    self.late += 1
            if self.late > st.share * (self.n - st.first):
                self.aborted = True
        k = len(ids)
        ids_a = np.array(ids, dtype=np.int64)
        self.rid = np.concatenate([self.rid, ids_a])
        self.gen = np.concatenate([self.gen, self.gen_done[ids_a]])
        if self.pc is None:
            self.ctx = np.concatenate([self.ctx, np.zeros(k, dtype=np.int64)])
            self.left = np.concatenate([self.left, self.prompt_left[ids_a]])
            self.blocks = np.concatenate([self.blocks, np.zeros(k, dtype=np.int64)])
        else:  # cached prompt tokens are in its context from the start; shared blocks are not its own
            r = self.reused[ids_a]
            self.ctx = np.concatenate([self.ctx, r])
            self.left = np.concatenate([self.left, self.prompt_left[ids_a] - r])
            self.blocks = np.concatenate([self.blocks, self.pc.shared[ids_a]])
        self.last = np.concatenate([self.last, np.full(k, self.t)])
        self.rout = np.concatenate([self.rout, self.out[ids_a]])

    def _long_prompt(self, dec, n_dec: int, pf) -> bool:
        """Steps that repeat while one long prompt is processed in budget-sized chunks (nothing else
        can be admitted: the chunk takes the whole budget): costed together like decode chunks.
        Returns False when this step is not such a run."""
        s = self.sched
        if len(pf) != 1 or pf[0][2] or s.policy == "static":
            return False
        j, c, _ = pf[0]
        left = int(self.left[j])
        budget = s.budget_tokens - (n_dec if s.policy == "mixed" else 0)
        if c != budget or left < 3 * c:
            return False
        if s.policy == "prefill-first":
            dec, n_dec = NONE, 0
        if isinstance(dec, slice):
            dec = np.flatnonzero(self.left == 0)
        k = left // c - 1  # the last chunk, which ends the prompt, runs as an ordinary step
        if n_dec:
            k = min(k, int((self.rout[dec] - self.gen[dec]).min()))
        k = min(k, KMAX)
        if k < 2:
            return False
        ctx = self.ctx[dec]
        p0 = int(self.ctx[j])

        def blocks_needed(kk: int) -> int:
            nb = int((self._blocks_for(ctx + kk) - self.blocks[dec]).sum()) if n_dec else 0
            return nb + int(self._blocks_for(p0 + c * kk) - self.blocks[j])

        if blocks_needed(k) > self.free:
            k = _last_fitting(0, k, lambda kk: blocks_needed(kk) <= self.free)
            if k < 2:
                return False
        i = np.arange(k, dtype=float)
        w = self.cost.window
        dec_kv = float(ctx.sum()) + n_dec * i
        dec_swa = (np.minimum(ctx.mean() + i, w) * n_dec if w and n_dec else 0.0)
        pos = p0 + c * i
        d = np.asarray(self.cost.mixed_array(n_dec, dec_kv, dec_swa, c, pos, c * pos + c * (c + 1) / 2), dtype=float)
        d = np.broadcast_to(d, (k,)).copy() if d.ndim == 0 else d
        ends = self.t + np.cumsum(d)
        if n_dec:
            self.itl_v.append(ends[0] - self.last[dec])
            self.itl_w.append(1.0)
            if k > 1:
                self.itl_v.append(d[1:])
                self.itl_w.append(float(n_dec))
            self.ctx[dec] += k
            self.gen[dec] += k
            self.last[dec] = float(ends[-1])
            nb = self._blocks_for(self.ctx[dec])
            self.free -= int((nb - self.blocks[dec]).sum())
            self.blocks[dec] = nb
        self.ctx[j] += c * k
        self.left[j] -= c * k
        b = int(self._blocks_for(int(self.ctx[j])))
        self.free -= b - int(self.blocks[j])
        self.blocks[j] = b
        self.log_t.append(ends)
        self.log_out.append(np.full(k, n_dec))
        self.steps += k
        self.busy += float(d.sum())
        self.batch_time += float(d.sum()) * n_dec
        if self.ratio is not None and n_dec:
            self.ratio = max(self.ratio - k * self.ratio_step, self.ratio_min)
        if self.pc is not None:
            self.free += self.pc.after_step(self.rid, self.ctx)
        self.peak_used = max(self.peak_used, self.pool - self.free)
        self.t = float(ends[-1])
        self._finish_done()
        return True

    def _step(self, dec, n_dec: int, pf: list[tuple[int, int, bool]]):
        new = [-1 - j for j, _, admit in pf if admit]
        base = len(self.rid)
        if new:
            if isinstance(dec, slice):  # the admitted ones prefill: name the decoders explicitly
                dec = np.arange(base)
            self._admit(new)
        pj, pc = [], []
        q = 0
        for j, chunk, admit in pf:
            if admit:
                j = base + q
                q += 1
            pj.append(j)
            pc.append(chunk)
        ctx = self.ctx
        w = self.cost.window
        if n_dec:
            dctx = ctx[dec]
            dec_kv = float(dctx.sum())
            dec_swa = float(np.minimum(dctx, w).sum()) if w else 0.0
        else:
            dec_kv = dec_swa = 0.0
        pf_tokens = sum(pc)
        pf_kv = pf_attn = 0.0
        for j, c in zip(pj, pc):
            x = float(ctx[j])
            pf_kv += x
            pf_attn += c * x + c * (c + 1) / 2
        dt = self.cost.mixed(n_dec, dec_kv, dec_swa, pf_tokens, pf_kv, pf_attn, len(pj))
        t_end = self.t + dt
        self.steps += 1
        if self.stop is not None and self.stop.tpot_s is not None and n_dec:
            slow = dt > self.stop.tpot_margin * self.stop.tpot_s and self.nxt > self.stop.first
            self.slow_steps = self.slow_steps + 1 if slow else 0
        if self.ratio is not None and n_dec:
            self.ratio = max(self.ratio - self.ratio_step, self.ratio_min)
        self.busy += dt
        self.batch_time += dt * n_dec
        if n_dec:
            self.itl_v.append(t_end - self.last[dec])
            self.itl_w.append(1.0)
            ctx[dec] += 1
            self.gen[dec] += 1
            self.last[dec] = t_end
        produced = n_dec
        for j, c in zip(pj, pc):
            ctx[j] += c
            self.left[j] -= c
            if self.left[j] == 0:
                i = self.rid[j]
                if self.first[i] != self.first[i]:  # NaN: the first token
                    self.first[i] = t_end
                else:
                    self.itl_v.append(np.array([t_end - self.last[j]]))
                    self.itl_w.append(1.0)
                self.gen[j] += 1
                self.last[j] = t_end
                produced += 1
        if n_dec:
            nb = self._blocks_for(ctx[dec])
            self.free -= int((nb - self.blocks[dec]).sum())
            self.blocks[dec] = nb
        for j in pj:
            b = int(self._blocks_for(int(ctx[j])))
            self.free -= b - int(self.blocks[j])
            self.blocks[j] = b
        if self.pc is not None and pj:
            self.free += self.pc.after_step(self.rid, ctx)
        self.log_t.append(np.array([t_end]))
        self.log_out.append(np.array([produced]))
        self.peak_used = max(self.peak_used, self.pool - self.free)
        self.t = t_end
        self._finish_done()

    def _chunk(self, dec, n: int):
        """k identical decode steps (same sequences; only their contexts grow)."""
        ctx = self.ctx[dec]
        outs = self.rout[dec]
        held = self.blocks[dec]
        k = max(int(min((outs - self.gen[dec]).min(), KMAX, self.chunk_cap)), 1)
        self.chunk_cap = KMAX

        def blocks_needed(kk: int) -> int:
            return int((self._blocks_for(ctx + kk) - held).sum())

        if blocks_needed(k) > self.free:  # the pool fills during the chunk: stop where it does
            k = _last_fitting(1, k, lambda kk: blocks_needed(kk) <= self.free)
        j = np.arange(k)
        kv = float(ctx.sum()) + n * j
        w = self.cost.window
        swa = np.minimum(ctx.mean() + j, w) * n if w else 0.0
        d = np.asarray(self.cost.time(n, n, kv.astype(float), swa), dtype=float)
        d = np.broadcast_to(d, (k,)).copy() if d.ndim == 0 else d
        na = self.next_arrival()
        # an arrival can change the schedule only if it could be admitted at once
        if (na is not None and not self.waiting and self.sched.policy != "static"
                and len(self.rid) < self.sched.max_seqs):
            hit = int(np.searchsorted(self.t + np.cumsum(d), na - 1e-12))
            if hit < k:
                k = hit + 1
                d = d[:k]
        ends = self.t + np.cumsum(d)
        t_end = float(ends[-1])
        self.itl_v.append(ends[0] - self.last[dec])
        self.itl_w.append(1.0)
        if k > 1:
            self.itl_v.append(d[1:])
            self.itl_w.append(float(n))
        self.log_t.append(ends)
        self.log_out.append(np.full(k, n))
        self.steps += k
        if self.stop is not None and self.stop.tpot_s is not None:
            if self.nxt > self.stop.first and float(d.min()) > self.stop.tpot_margin * self.stop.tpot_s:
                self.slow_steps += k
            else:
                self.slow_steps = 0
        if self.ratio is not None:
            self.ratio = max(self.ratio - k * self.ratio_step, self.ratio_min)
        self.busy += float(d.sum())
        self.batch_time += float(d.sum()) * n
        self.ctx[dec] += k
        self.gen[dec] += k
        self.last[dec] = t_end
        nb = self._blocks_for(self.ctx[dec])
        self.free -= int((nb - self.blocks[dec]).sum())
        self.blocks[dec] = nb
        self.peak_used = max(self.peak_used, self.pool - self.free)
        self.t = t_end
        self._finish_done()

    def _finish_done(self):
        done = (self.left == 0) & (self.gen >= self.rout)
        if not done.any():
            return
        ids = self.rid[done]
        self.finish[ids] = self.t
        self.free += int(self.blocks[done].sum())
        if self.pc is not None:
            self.free -= self.pc.release(ids, self.ctx[done], self.t)
        keep = ~done
        for name in RUNNING:
            setattr(self, name, getattr(self, name)[keep])
        if self.closed:
            for _ in range(len(ids)):
                self._next_closed(self.t)


def _last_fitting(lo: int, hi: int, fits) -> int:
    """The largest k in [lo, hi) with fits(k), by bisection: fits(lo) is taken as true, fits(hi)
    as false, and fits is monotone (more steps never need fewer KV blocks)."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


class _Grouped:
    """Step costs of a run in which every simulated request stands for `w` identical requests
    moving in lockstep: each step carries w times the tokens, sequences and cached context."""

    def __init__(self, cost: StepCost, w: float):
        self.c, self.w = cost, w
        self.window = cost.window
        self.kv_swa_frac = getattr(cost, "kv_swa_frac", 0.0)

    def time(self, tokens, n_seqs, kv_tokens, swa_tokens=0.0, attn_tokens=None):
        w = self.w
        return self.c.time(np.multiply(tokens, w), np.multiply(n_seqs, w), np.multiply(kv_tokens, w),
                           np.multiply(swa_tokens, w), None if attn_tokens is None else np.multiply(attn_tokens, w))

    def mixed(self, n_dec, dec_kv, dec_swa, pf_tokens, pf_kv, pf_attn, n_pf):
        w = self.w
        return self.c.mixed(n_dec * w, dec_kv * w, dec_swa * w, pf_tokens * w, pf_kv * w, pf_attn * w, n_pf * w)

    def mixed_array(self, n_dec, dec_kv, dec_swa, pf_tokens, pf_kv, pf_attn):
        w = self.w
        return self.c.mixed_array(n_dec * w, np.multiply(dec_kv, w), np.multiply(dec_swa, w), pf_tokens * w,
                                  np.multiply(pf_kv, w), np.multiply(pf_attn, w))


def simulate(cost: StepCost, sched: Scheduler, load: Load, kv_tokens: int,
             targets: Targets | None = None, stop: StopRule | None = None, group: float = 1.0) -> SimResult:
    """Run `load` through an engine with `sched`'s rules, a KV pool of `kv_tokens` tokens, and
    step times from `cost`. With `stop`, a run sure to miss its TTFT target ends early
    (result.aborted).

    `group` > 1 (planning runs of many users): every request of `load` stands for `group`
    identical requests that arrive, run and finish together. The pool, the sequence limit and the
    token budget are shared out per group, each step costs what its `group` times larger batch
    costs, and the result counts every request (per-request arrays stay per group; `index` is
    scaled so that request numbers keep their meaning). Exact when the groups' requests are
    identical, which the planning loads' cohorts and quantized lengths make them nearly."""
    if kv_tokens < 1:
        raise InputError("the engine has no room for a KV cache on this hardware")
    if group > 1.0:
        # the front end serves each of a group's requests: a group keeps it busy `group` times longer
        res = simulate(_Grouped(cost, group), replace(sched, max_seqs=sched.max_seqs / group,
                                                      budget_tokens=max(1, int(sched.budget_tokens / group)),
                                                      frontend_serial_s=sched.frontend_serial_s * group),
                       load, max(1, int(kv_tokens / group)), targets, stop)
        g = group
        return replace(res, completed=round(res.completed * g), rejected=round(res.rejected * g),
                       request_throughput=res.request_throughput * g, output_throughput=res.output_throughput * g,
                       total_token_throughput=res.total_token_throughput * g,
                       goodput=None if res.goodput is None else res.goodput * g,
                       preemptions=round(res.preemptions * g), mean_batch=res.mean_batch * g,
                       steady_output_throughput=res.steady_output_throughput * g,
                       index=np.round(res.index * g).astype(np.int64),
                       prefix_hit_tokens=round(res.prefix_hit_tokens * g),
                       notes=res.notes + [f"simulated in groups of {g:.1f} identical requests"])
    sim = _Sim(cost, sched, load, kv_tokens, stop)
    sim.run()
    done = ~np.isnan(sim.finish)
    rejected = int(sim.too_long.sum())
    start = sim.start[done]
    first = sim.first[done]
    fin = sim.finish[done]
    out = sim.out[done].astype(float)
    prompt = sim.prompt[done].astype(float)
    ttft = first - start
    e2el = fin - start
    tpot = np.where(out > 1, (e2el - ttft) / np.maximum(out - 1, 1), 0.0)
    t0 = float(start.min()) if len(start) else 0.0
    duration = float(fin.max() - t0) if len(fin) else 0.0
    itl_v = np.concatenate(sim.itl_v) if sim.itl_v else np.zeros(0)
    itl_w = np.repeat(np.asarray(sim.itl_w, dtype=float), [len(v) for v in sim.itl_v]) if sim.itl_v else None
    good = None
    if targets is not None and duration > 0:
        good = float(targets.met(ttft, tpot, e2el).sum() / duration)
    log_t = np.concatenate(sim.log_t) if sim.log_t else np.zeros(0)
    log_out = np.concatenate(sim.log_out) if sim.log_out else np.zeros(0)
    steady = _steady(sim, log_t, log_out, duration, out.sum())
    notes = []
    if rejected:
        notes.append(f"{rejected} request(s) longer than the KV room of one sequence were rejected")
    hits = int(sim.pc.hits) if sim.pc is not None else 0
    if sim.fe_on:
        notes.append(f"front end: {sim.fe_lat * 1e3:g} ms per request before the scheduler, "
                     f"{sim.fe_ser * 1e3:g} ms of one front-end process each (at most {1 / sim.fe_ser:,.0f} requests/s)"
                     if sim.fe_ser > 0 else f"front end: {sim.fe_lat * 1e3:g} ms per request before the scheduler")
    if sim.pc is not None:
        notes.append(f"prefix cache: {hits:,} of {int(sim.prompt.sum()):,} prompt tokens taken from cached KV")
    return SimResult(
        completed=int(done.sum()), rejected=rejected, duration_s=duration,
        request_throughput=float(done.sum() / duration) if duration else 0.0,
        output_throughput=float(out.sum() / duration) if duration else 0.0,
        total_token_throughput=float((out.sum() + prompt.sum()) / duration) if duration else 0.0,
        ttft_ms=stats_ms(ttft), tpot_ms=stats_ms(tpot[out > 1]), itl_ms=stats_ms(itl_v, itl_w),
        e2el_ms=stats_ms(e2el), goodput=good, steps=sim.steps, preemptions=sim.preempt,
        mean_batch=sim.batch_time / sim.busy if sim.busy else 0.0,
        peak_kv_fraction=sim.peak_used / sim.pool if sim.pool else 0.0,
        kv_limited=sim.kv_wait, seq_limited=sim.seq_wait, steady_output_throughput=steady,
        notes=notes, index=np.flatnonzero(done), arrival=start, ttft=ttft, e2el=e2el, tpot=tpot,
        aborted=sim.aborted, slow_stop=sim.aborted and sim.slow_steps >= 64, prefix_hit_tokens=hits,
        reused=sim.reused[done] if sim.pc is not None else None)


def _steady(sim: _Sim, log_t, log_out, duration: float, total_out: float) -> float:
    """Output tokens/s while the load was full: from the first round's end (closed loop: the
    `users`-th completion; offline: the first completion) to the last admission, after which
    the queue drains. The whole run when that window is empty."""
    whole = float(total_out / duration) if duration else 0.0
    if len(log_t) == 0:
        return whole
    fin = np.sort(sim.finish[~np.isnan(sim.finish)])
    if len(fin) < 2:
        return whole
    k = min(sim.load.users, len(fin)) if sim.closed else 1
    t_a, t_b = fin[k - 1], sim.last_admit
    if sim.load.kind in ("rate", "trace"):  # while requests keep arriving
        t_a, t_b = fin[0], float(np.nanmax(sim.arr))
    if t_b <= t_a:
        return whole
    sel = (log_t > t_a) & (log_t <= t_b)
    return float(log_out[sel].sum() / (t_b - t_a))
