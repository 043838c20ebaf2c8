"""Which orderings ``a <= b`` the decoder keeps, and in what order it applies them.

The validators find orderings that hold in the real rows (``shortest_word <= avg_word <=
longest_word``, ``srv_count <= count``); a generator that learned each column's distribution still
breaks them in a share of its rows (a phishing table, 1,500 steps: 12-34% of rows per ordering). With
``--option keep_order=true`` the decoder keeps them as it keeps computed columns: where a row has
``a > b``, ``b`` becomes ``a`` at ``b``'s resolution (:meth:`advgen_tabular.transform.TableDecoder._keep_orders`).
It is off by default because it costs realism: on that table all-rules validity rose from 4.0% to 47.8%
while the KS complement fell from 0.961 to 0.951 and the logistic realism AUC rose from 0.719 to 0.839
(the top of a chain such as ``longest_words_raw`` is raised to the largest of its lower bounds). Swapping
the two values instead did worse (validity 35.2%, AUC 0.898).

Left to their own rules: a column another computes (``derived``, which the decoder computes after) and
a rate decoded as a fraction of a count (raising it would break the fraction). Two columns that are
equal in every real row give ``a <= b`` and ``b <= a``: only the first is kept, so the orderings form
a chain without cycles, applied so that every ordering into a column comes before those out of it.
"""

from __future__ import annotations

from typing import Any, Iterable


def order_chain(rules: Iterable[dict[str, Any]], exclude: Iterable[str] = ()) -> list[dict[str, str]]:
    """The ``order`` rules among ``rules`` the decoder keeps, as ``{"a", "b"}``, lower bounds first."""
    left_out = set(exclude)
    edges: list[tuple[str, str]] = []
    above: dict[str, set[str]] = {}  # column -> columns an ordering already puts at or above it
    for r in rules:
        if r.get("type") != "order" or r["a"] in left_out or r["b"] in left_out:
            continue
        a, b = r["a"], r["b"]
        if a in _reach(above, b):
            continue  # b <= ... <= a is kept already: a <= b as well would be a cycle
        edges.append((a, b))
        above.setdefault(a, set()).add(b)
    rank = _topological_rank(edges)
    return [{"a": a, "b": b} for a, b in sorted(edges, key=lambda e: (rank[e[1]], rank[e[0]]))]


def _reach(above: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in above.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _topological_rank(edges: list[tuple[str, str]]) -> dict[str, int]:
    """Each column's place in an order where every ``a`` comes before its ``b`` (edges are acyclic)."""
    nodes = sorted({c for e in edges for c in e})
    into = {c: 0 for c in nodes}
    out: dict[str, list[str]] = {c: [] for c in nodes}
    for a, b in edges:
        into[b] += 1
        out[a].append(b)
    ready = [c for c in nodes if into[c] == 0]
    rank: dict[str, int] = {}
    while ready:
        c = ready.pop(0)
        rank[c] = len(rank)
        for b in out[c]:
            into[b] -= 1
            if into[b] == 0:
                ready.append(b)
    return rank
