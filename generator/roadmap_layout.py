"""Layered layout of the roadmap's dependency graph for page 1 of the PDF (top to bottom, like Mermaid's TD).

A small Sugiyama-style layout (Sugiyama, Tagawa and Toda, 1981): each step goes on the row of its longest
dependency chain; an edge that skips rows gets one invisible waypoint per skipped row, which takes a narrow
slot, so long edges run between boxes instead of through them; rows are ordered by the barycentre of their
neighbours in a few up and down sweeps, which removes most crossings in a graph this size.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Box:
    id: str
    x: float  # left, mm
    y: float  # top, mm
    w: float
    h: float

    @property
    def cx(self) -> float:
        return self.x + self.w / 2


@dataclass
class Edge:
    src: str
    dst: str
    points: list[tuple[float, float]]  # polyline from the bottom of src to the top of dst, mm


def levels(ids: list[str], deps: dict[str, list[str]]) -> dict[str, int]:
    """Row of each step: the length of its longest dependency chain (ids are in topological order)."""
    level: dict[str, int] = {}
    for sid in ids:
        level[sid] = 1 + max((level[d] for d in deps[sid]), default=-1)
    return level


def layout(ids: list[str], deps: dict[str, list[str]], *, left: float, width: float, top: float, height: float,
           box_w: float, box_h: float, gap: float = 6.0, waypoint_w: float = 4.0) -> tuple[dict[str, Box], list[Edge]]:
    """Boxes for `ids` (topologically ordered; deps only among ids) and edge polylines, inside the given area."""
    level = levels(ids, deps)
    n_rows = max(level.values()) + 1
    rows: list[list[str]] = [[] for _ in range(n_rows)]
    for sid in ids:
        rows[level[sid]].append(sid)
    # Waypoints: node "src>dst#k" on each row strictly between the rows of src and dst.
    chains: dict[tuple[str, str], list[str]] = {}
    preds: dict[str, list[str]] = {sid: [] for sid in ids}  # neighbours one row up
    for dst in ids:
        for src in deps[dst]:
            chain = [f"{src}>{dst}#{r}" for r in range(level[src] + 1, level[dst])]
            chains[src, dst] = chain
            path = [src] + chain + [dst]
            for upper, lower in zip(path, path[1:]):
                preds.setdefault(lower, []).append(upper)
            for r, node in zip(range(level[src] + 1, level[dst]), chain):
                rows[r].append(node)
    succs: dict[str, list[str]] = {}
    for lower, uppers in preds.items():
        for upper in uppers:
            succs.setdefault(upper, []).append(lower)

    # Narrow the boxes if the widest row would not fit the area.
    for row in rows:
        n_boxes, n_waypoints = sum("#" not in n for n in row), sum("#" in n for n in row)
        room = width - n_waypoints * waypoint_w - gap * (len(row) - 1)
        box_w = min(box_w, room / max(n_boxes, 1))

    def slot(node: str) -> float:
        return waypoint_w if "#" in node else box_w

    def pack(row: list[str]) -> dict[str, float]:
        """Centre x of each node of a row, packed side by side and centred in the area."""
        total = sum(slot(n) for n in row) + gap * (len(row) - 1)
        x, centres = left + (width - total) / 2, {}
        for node in row:
            centres[node] = x + slot(node) / 2
            x += slot(node) + gap
        return centres

    def barycentre(node: str, neighbours: dict[str, list[str]]) -> float:
        near = neighbours.get(node) or []
        return sum(x[m] for m in near) / len(near) if near else x[node]

    def align(row: list[str], want: dict[str, float]) -> None:
        """Move each node towards its wanted x, keeping the order, the gaps and the area's edges."""
        pos = [want[n] for n in row]
        for i in range(1, len(row)):  # push right where nodes overlap
            pos[i] = max(pos[i], pos[i - 1] + (slot(row[i - 1]) + slot(row[i])) / 2 + gap)
        pos[-1] = min(pos[-1], left + width - slot(row[-1]) / 2)
        for i in range(len(row) - 2, -1, -1):  # then left, from the right edge
            pos[i] = min(pos[i], pos[i + 1] - (slot(row[i]) + slot(row[i + 1])) / 2 - gap)
        shift = max(0.0, left + slot(row[0]) / 2 - pos[0])
        x.update({n: p + shift for n, p in zip(row, pos)})

    x: dict[str, float] = {}
    for row in rows:
        x.update(pack(row))
    # Barycentre ordering sweeps, down then up, twice; sorted() is stable, so ties keep the current order.
    for sweep in ("down", "up", "down", "up"):
        order = range(1, n_rows) if sweep == "down" else range(n_rows - 2, -1, -1)
        neighbours = preds if sweep == "down" else succs
        for r in order:
            rows[r].sort(key=lambda n: barycentre(n, neighbours))
            x.update(pack(rows[r]))
    # Then straighten: each node moves towards the mean x of all its neighbours, rows kept in order.
    both = {n: preds.get(n, []) + succs.get(n, []) for n in x}
    for _ in range(20):
        for row in rows:
            align(row, {n: barycentre(n, both) for n in row})
    # Centre the drawing as a whole (aligning drifts it towards one side).
    lo = min(x[n] - slot(n) / 2 for n in x)
    hi = max(x[n] + slot(n) / 2 for n in x)
    x = {n: v + left + (width - (hi - lo)) / 2 - lo for n, v in x.items()}

    pitch = height / n_rows
    boxes = {sid: Box(sid, x[sid] - box_w / 2, top + level[sid] * pitch + (pitch - box_h) / 2, box_w, box_h)
             for sid in ids}
    edges = []
    for (src, dst), chain in chains.items():
        a, b = boxes[src], boxes[dst]
        points = [(a.cx, a.y + a.h)]
        for r, node in zip(range(level[src] + 1, level[dst]), chain):
            row_top = top + r * pitch + (pitch - box_h) / 2
            points += [(x[node], row_top), (x[node], row_top + box_h)]
        points.append((b.cx, b.y))
        edges.append(Edge(src, dst, points))
    return boxes, edges
