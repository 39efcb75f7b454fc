"""Prefix caching in the serving simulator: which of a request's prompt tokens an engine takes from
KV it already holds instead of computing them, and which KV blocks the running sequences share.

Requests share one prefix (a system prompt; perf/serving_load.py): request i's first `pf[i]`
prompt tokens are the first `pf[i]` tokens of it. Two models, chosen by Scheduler.prefix_cache:

BlockCache ("blocks", "blocks-partial"): vLLM V1's automatic prefix caching, SGLang's radix cache,
  TensorRT-LLM's block reuse. Blocks enter the cache as soon as a step has filled them with prefix
  tokens; a request admitted later skips the cached part of its prefix (vLLM: whole blocks only;
  SGLang: page size 1, so every token; TensorRT-LLM: also a partly matched last block, which it
  copies). Cached blocks are held once in the pool and shared by every running sequence that uses
  them; they stay resident (every later request wants them, so an LRU pool never evicts them under
  load). Requests admitted before a block is cached compute it themselves and hold their own copy.

LlamaSlots ("slots"): llama-server (llama.cpp 0c1e570, tools/server/server-context.cpp). Each slot
  keeps the tokens of its last request; a request goes to the idle slot whose tokens share the
  largest fraction of its prompt (above slot_prompt_similarity 0.1), else to the least recently
  used slot, which first trades its state through the host-RAM prompt cache (--cache-ram 8192 MiB:
  the cached state that keeps the most, if at least a quarter of it matches). Every launch also
  saves the idle slots to that cache (--cache-idle-slots; with a unified KV cache it then clears
  them). n_past is the common prefix of the slot's tokens and the new prompt, except on models with
  sliding-window layers (without --swa-full) or recurrent layers: their cache cannot roll back to
  an arbitrary position, so the prefix is reused only while the window still holds what the new
  tokens need, or from a context checkpoint (made before the last n_ubatch + 4 and 4 prompt tokens,
  and, for chat requests, where the last user message starts). No memory is shared between slots.
"""

from __future__ import annotations

import numpy as np

SLOT_SIMILARITY = 0.1  # common/common.h slot_prompt_similarity
CACHE_RAM_BYTES = 8192 * 2**20  # common/common.h cache_ram_mib
F_KEEP_LOAD = 0.25  # server_prompt_cache::load: "don't trash large prompts"
F_KEEP_SAVE = 0.5  # get_available_slot: a similar slot that would lose more saves its state first
CHECKPOINT_TAIL = 4  # server-context.cpp checkpoint_offsets {4 + n_ubatch, 4}


class BlockCache:
    """Shared KV blocks of the prefix in a paged engine. `blocks_for` is the simulator's count of
    blocks for a number of cached tokens; `group`: simulated requests stand for this many each."""

    def __init__(self, sched, pf: np.ndarray, blocks_for, block_tokens: int, group: float = 1.0):
        self.pf = pf
        self.top = int(pf.max()) if len(pf) else 0
        self.bs = max(int(block_tokens), 1)
        self.partial = sched.prefix_cache == "blocks-partial"
        self.blocks_for = blocks_for
        self.group = max(float(group), 1.0)
        self.cached = 0  # prefix tokens whose KV is in the cache
        self.shared = np.zeros(len(pf), dtype=np.int64)  # blocks each request uses without owning
        self.hits = 0  # prompt tokens taken from the cache

    def _shared_blocks(self, tokens: int) -> int:
        full = tokens // self.bs * self.bs
        return int(self.blocks_for(full)) if full else 0

    def peek(self, i: int) -> tuple[int, int]:
        """(prompt tokens request i takes from the cache, blocks of them it shares)."""
        p = min(int(self.pf[i]), self.cached)
        if p <= 0:
            return 0, 0
        r = p if self.partial else p // self.bs * self.bs
        return r, self._shared_blocks(p)

    def commit(self, i: int, reused: int, shared: int) -> None:
        self.shared[i] = shared
        self.hits += reused

    def after_step(self, rid: np.ndarray, ctx: np.ndarray) -> int:
        """Blocks the running sequences have filled with prefix tokens enter the cache; the sequence
        that filled them no longer owns them. Returns blocks to give back to the free count (grouped
        runs: the cache holds one copy, not one per request of the group)."""
        if self.cached >= self.top or len(rid) == 0:
            return 0
        cov = np.minimum(self.pf[rid], ctx // self.bs * self.bs)
        j = int(np.argmax(cov))
        new = int(cov[j])
        if new <= self.cached:
            return 0
        gained = self._shared_blocks(new) - self._shared_blocks(self.cached)
        self.shared[int(rid[j])] += gained
        self.cached = new
        if self.group > 1.0:
            return gained - int(np.ceil(gained / self.group))
        return 0

    def release(self, ids: np.ndarray, tokens=None, t: float = 0.0) -> int:
        """Blocks of finishing (or preempted) requests that stay in the pool: the shared ones."""
        s = int(self.shared[ids].sum())
        self.shared[ids] = 0
        return s


class _State:
    """What one slot (or one entry of the host prompt cache) holds: the tokens of one request."""

    __slots__ = ("pf", "prompt", "tokens", "ckpts")

    def __init__(self, pf: int, prompt: int, tokens: int, ckpts: tuple):
        self.pf, self.prompt, self.tokens, self.ckpts = pf, prompt, tokens, ckpts


class LlamaSlots:
    """llama-server's slots and host-RAM prompt cache, for requests that share a prefix.

    swa: the model's sliding window where llama-server must keep to it (0: none, or --swa-full);
    swa_cells: cells per sequence of its window layers (PAD(window + n_ubatch, 256)); recurrent:
    layers with a state that cannot roll back; state_bytes(tokens): the size of a saved state;
    chat: requests are chat messages whose last user message starts right after the prefix."""

    def __init__(self, n_slots: int, pf: np.ndarray, prompt: np.ndarray, unified: bool, ubatch: int,
                 swa: int = 0, swa_cells: int = 0, recurrent: bool = False, chat: bool = True,
                 state_bytes=None, cache_bytes: int = CACHE_RAM_BYTES):
        self.n = max(int(n_slots), 1)
        self.pf, self.prompt = pf, prompt
        self.unified, self.ubatch = unified, int(ubatch or 512)
        self.swa, self.cells, self.recurrent, self.chat = int(swa), int(swa_cells), recurrent, chat
        self.state_bytes = state_bytes or (lambda tokens: 0.0)
        self.limit = cache_bytes
        self.slots: list[_State | None] = [None] * self.n
        self.busy = [-1] * self.n  # request id running in each slot
        self.t_last = [-1.0] * self.n
        self.ram: list[_State] = []  # the host prompt cache, oldest first
        self.in_ram: set[int] = set()
        self.ram_bytes = 0.0
        self.shared = np.zeros(len(pf), dtype=np.int64)  # slots share no memory
        self.of: dict[int, int] = {}  # request id -> slot
        self.start: dict[int, int] = {}  # request id -> n_past it started from
        self.hits = 0
        self._plan: tuple | None = None

    # -- what the server would do for request i (no state changes)
    def _lcp(self, st: _State | None, i: int) -> int:
        return 0 if st is None else min(st.pf, int(self.pf[i]))

    def _choose(self, i: int):
        """(slot, state it will hold, RAM entry loaded or None, save the slot's state first)."""
        n_new = int(self.prompt[i])
        best, f_best = None, 0.0
        for s in range(self.n):
            if self.busy[s] >= 0 or self.slots[s] is None:
                continue
            f = self._lcp(self.slots[s], i) / n_new
            if f > f_best and f > SLOT_SIMILARITY:
                best, f_best = s, f
        update = False
        if best is not None:
            st = self.slots[best]
            update = self._lcp(st, i) / max(st.tokens, 1) < F_KEEP_SAVE
        else:
            t_min = None
            for s in range(self.n):  # least recently used; ties: the last of them (t_last <= t)
                if self.busy[s] < 0 and (t_min is None or self.t_last[s] <= t_min):
                    best, t_min = s, self.t_last[s]
            update = True
        if best is None:
            return None
        st = self.slots[best]
        entry = None
        if update:  # prompt_save of the slot's state, then prompt_load of the cached state that keeps most
            lcp = self._lcp(st, i)
            keep = lcp / st.tokens if st is not None and st.tokens else -1.0
            sim = lcp / n_new
            for e in self._ram_after_save(st):
                lc = self._lcp(e, i)
                k = lc / max(e.tokens, 1)
                if k < F_KEEP_LOAD:
                    continue
                if keep < k and sim < lc / n_new:
                    keep, sim, entry = k, lc / n_new, e
        return best, (entry if entry is not None else st), entry, update

    def _ram_after_save(self, st: _State | None) -> list:
        """The host cache's entries once `st` is saved (the oldest go when it is over its size)."""
        if st is None or id(st) in self.in_ram:
            return self.ram
        size = self.state_bytes(st.tokens)
        if self.limit and size > self.limit:
            return self.ram
        out, total = self.ram + [st], self.ram_bytes + size
        k = 0
        while self.limit and len(out) - k > 1 and total > self.limit:
            total -= self.state_bytes(out[k].tokens)
            k += 1
        return out[k:]

    def _n_past(self, st: _State | None, i: int) -> int:
        """Prompt tokens of request i taken from the slot's cache (server-context.cpp: n_past is the
        common prefix; with window or recurrent layers, only while the memory still holds them)."""
        lcp = self._lcp(st, i)
        if lcp <= 0:
            return 0
        n_new = int(self.prompt[i])
        if not self.swa and not self.recurrent:
            return min(lcp, n_new - 1)
        thold = max(0, lcp - self.swa)
        pos_min = max(0, st.tokens - self.cells) if self.swa else st.tokens - 1
        if pos_min < thold:
            return min(lcp, n_new - 1)
        for c in reversed(st.ckpts):  # the most recent checkpoint that still holds what is needed
            if c - 1 > lcp:
                continue
            c_min = max(0, c - self.cells) if self.swa else c - 1
            if c_min < thold or c_min == 0:
                pos_next = min(lcp, max(c_min + 1, c - 1))
                return min(pos_next, c, n_new - 1)
        return 0

    def _checkpoints(self, i: int, n_past: int, kept: tuple) -> tuple:
        """Context checkpoints a slot holds after request i's prompt, processed from n_past: the ones
        it kept (those at or below n_past), then one at the start of each batch that ends near the
        prompt's end (the prompt is cut before its last n_ubatch + 4 and its last 4 tokens) and, for
        chat requests, where the last user message starts (taken to be where the prefix ends)."""
        if not self.swa and not self.recurrent:
            return ()
        L = int(self.prompt[i])
        out = [c for c in kept if c - 1 <= n_past]
        marks = {c for c in (L - CHECKPOINT_TAIL - self.ubatch, L - CHECKPOINT_TAIL) if c > n_past}
        if self.chat and int(self.pf[i]) > n_past:
            marks.add(int(self.pf[i]))
        if n_past > 0 and n_past >= L - CHECKPOINT_TAIL - self.ubatch:
            marks.add(n_past)  # the first batch already ends near the prompt's end
        for c in sorted(marks):
            out = [x for x in out if x != c] + [c]
        return tuple(out[-32:])  # n_ctx_checkpoints

    def peek(self, i: int) -> tuple[int, int]:
        ch = self._choose(i)
        if ch is None:
            return 0, 0
        self._plan = (i, ch)
        return self._n_past(ch[1], i), 0

    def commit(self, i: int, reused: int, shared: int) -> None:
        ch = self._plan[1] if self._plan is not None and self._plan[0] == i else self._choose(i)
        self._plan = None
        if ch is None:  # no idle slot (the simulator admits only while one is free)
            return
        s, st, entry, update = ch
        if update and self.slots[s] is not None:
            self._save(self.slots[s])
        if entry is not None:
            self.ram = [e for e in self.ram if e is not entry]
            self.in_ram.discard(id(entry))
            self.ram_bytes -= self.state_bytes(entry.tokens)
        self.slots[s] = st
        self.busy[s] = i
        self.of[i] = s
        self.start[i] = reused
        self.hits += reused
        for k in range(self.n):  # --cache-idle-slots: idle slots go to the host cache
            if self.busy[k] < 0 and self.slots[k] is not None:
                if id(self.slots[k]) not in self.in_ram:
                    self._save(self.slots[k])
                if self.unified:
                    self.slots[k] = None

    def _save(self, st: _State | None) -> None:
        self.ram = self._ram_after_save(st)
        self.in_ram = {id(e) for e in self.ram}
        self.ram_bytes = sum(self.state_bytes(e.tokens) for e in self.ram)

    def after_step(self, rid, ctx) -> int:
        return 0

    def release(self, ids: np.ndarray, tokens: np.ndarray | None = None, t: float = 0.0) -> int:
        """Finishing requests leave their tokens in their slots (`tokens`: the KV cells they hold)."""
        for k, i in enumerate(ids):
            i = int(i)
            s = self.of.pop(i, None)
            if s is None:
                continue
            n_past = self.start.pop(i, 0)
            held = self.slots[s]
            kept = held.ckpts if held is not None else ()
            total = int(tokens[k]) if tokens is not None else int(self.prompt[i])
            self.slots[s] = _State(int(self.pf[i]), int(self.prompt[i]), total, self._checkpoints(i, n_past, kept))
            self.busy[s] = -1
            self.t_last[s] = t
        return 0


def cache_for(sched, cost, pf: np.ndarray, prompt: np.ndarray, block_tokens: int, blocks_for,
              group: float = 1.0, chat: bool = True):
    """The prefix cache of `sched`'s engine, or None when it computes every prompt token."""
    kind = sched.prefix_cache
    if kind in ("blocks", "blocks-partial"):
        return BlockCache(sched, pf, blocks_for, block_tokens, group)
    if kind == "slots":
        return LlamaSlots(sched.max_seqs, pf, prompt, unified=sched.slot_tokens is None, ubatch=sched.ubatch or 512,
                          chat=chat, **_llama_memory(cost))
    return None


def _llama_memory(cost) -> dict:
    """llama-server's window, window cells, recurrent layers and saved-state size for the plan."""
    x = getattr(cost, "x", None)
    if x is None:
        return {}
    from ..sources.arch import describe
    from . import llama_cpp_buffers as lcb
    from .engine_profiles import settings

    st = settings(x.plan)
    wins = [w for w in lcb.windows(x.spec) if w]
    swa = 0 if st.swa_full or not wins else max(wins)
    cells = lcb.pad(swa + st.n_ubatch, 256) if swa else 0
    recurrent = any(ly.recurrent for ly in describe(x.spec).layers)
    full = sum(p.kv_bytes_per_ctx for p in x.parts)
    win = sum(p.swa_kv_bytes for p in x.parts)

    def state_bytes(tokens: int) -> float:
        return tokens * full + min(tokens, cells or tokens) * win

    return {"swa": swa, "swa_cells": cells, "recurrent": recurrent, "state_bytes": state_bytes}
